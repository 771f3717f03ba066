"""Prompt-guided selection: pure functions from (Segmentation, Prompt) to Selection.

Selection runs on the network-resolution masks; only the picked objects are upsampled.

Rules (measured against FastSAM's and ultralytics' rules by ``make eval``; see the README):

* **Points.** A mask is a candidate when it contains no background point. The object is the
  *smallest* candidate that contains every foreground point: a click on a cup standing on a table
  lies in both the cup and the table masks and means the cup; a click on the bare table top lies
  only in the table mask. When no single mask holds every foreground point, the smallest candidate
  under each point is taken and they are merged into one object.
* **Boxes.** Each box picks its own object: among masks overlapping the box, the one with the highest
  mask-box IoU times box-box IoU (the mask fills the box *and* its extent matches the box), and the
  pick is clipped to the box, since the user drew its bounds. Below ``min_box_iou`` it is ``no_match``.
* **Points and boxes.** The box bounds and the points refine: inside each box only masks that hold the
  box's foreground points and no background point compete.
* **Text.** An injected scorer ranks candidates (see ``fastsam_ros.text``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastsam_ros.types import BACKGROUND, FOREGROUND, Box, Prompt, Segmentation, SelectedObject, Selection, Status


@dataclass(frozen=True)
class SelectionParams:
    """Thresholds that turn weak matches into an explicit ``no_match``."""

    min_box_iou: float = 0.05  # a box whose best score is below this selects nothing


class InvalidPrompt(ValueError):
    """A prompt that cannot mean anything on this image (the message says why)."""


def select(segmentation: Segmentation, prompt: Prompt, params: SelectionParams = SelectionParams()) -> Selection:
    """Answer a point and/or box prompt on one frame's instances."""
    try:
        validate_prompt(prompt, segmentation.image_shape)
    except InvalidPrompt as error:
        return Selection.failed(prompt.id, Status.INVALID, str(error))
    if prompt.text:
        return Selection.failed(prompt.id, Status.ERROR, "text prompts need a text scorer (CLIP)")
    if len(segmentation) == 0:
        return Selection.failed(prompt.id, Status.NO_MATCH, "no instances were found in this frame")

    points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(prompt.labels if prompt.labels else [FOREGROUND] * len(points), dtype=np.int64)
    if prompt.boxes:
        outcomes = [_select_in_box(segmentation, box, points, labels, params) for box in prompt.boxes]
        objects = tuple(obj for obj, _ in outcomes if obj is not None)
        misses = [f"box {i}: {why}" for i, (obj, why) in enumerate(outcomes) if obj is None]
        if not objects:
            return Selection.failed(prompt.id, Status.NO_MATCH, "; ".join(misses))
        return Selection(prompt.id, Status.OK, "; ".join(misses), objects)
    obj, why = _select_by_points(segmentation, points, labels)
    if obj is None:
        return Selection.failed(prompt.id, Status.NO_MATCH, why)
    return Selection(prompt.id, Status.OK, why, (obj,))


def validate_prompt(prompt: Prompt, image_shape: tuple[int, int]) -> None:
    """Raise :class:`InvalidPrompt` for anything that has no meaning on an image of ``image_shape``."""
    height, width = image_shape
    if prompt.is_empty:
        raise InvalidPrompt("the prompt has no points, boxes or text")
    if prompt.labels and len(prompt.labels) != len(prompt.points):
        raise InvalidPrompt(f"{len(prompt.points)} points but {len(prompt.labels)} labels")
    for label in prompt.labels:
        if label not in (FOREGROUND, BACKGROUND):
            raise InvalidPrompt(f"unknown point label {label!r}: use 1 (foreground) or 0 (background)")
    for x, y in prompt.points:
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidPrompt(f"point ({x}, {y}) is not a finite number")
        if not (0 <= x < width and 0 <= y < height):
            raise InvalidPrompt(f"point ({x:g}, {y:g}) lies outside the {width}x{height} image")
    if prompt.points and FOREGROUND not in (prompt.labels or (FOREGROUND,)):
        raise InvalidPrompt("background points alone select nothing: add a foreground point")
    for box in prompt.boxes:
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise InvalidPrompt(f"box {box} needs four finite numbers x1, y1, x2, y2")
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            raise InvalidPrompt(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is inverted or empty: need x1 < x2 and y1 < y2")
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise InvalidPrompt(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) reaches outside the {width}x{height} image")


def _point_hits(segmentation: Segmentation, points: np.ndarray) -> np.ndarray:
    """``(N, K)`` bool: does instance i contain point k."""
    if len(points) == 0:
        return np.zeros((len(segmentation), 0), dtype=bool)
    cells = segmentation.geometry.to_mask_coords(points)
    return segmentation.masks[:, cells[:, 1], cells[:, 0]]


def _smallest(areas: np.ndarray, candidates: np.ndarray) -> int | None:
    indices = np.flatnonzero(candidates)
    return int(indices[np.argmin(areas[indices])]) if indices.size else None


def _select_by_points(
    segmentation: Segmentation, points: np.ndarray, labels: np.ndarray
) -> tuple[SelectedObject | None, str]:
    hits = _point_hits(segmentation, points)
    foreground = hits[:, labels == FOREGROUND]
    allowed = ~hits[:, labels == BACKGROUND].any(axis=1)

    whole = _smallest(segmentation.areas, allowed & foreground.all(axis=1))
    if whole is not None:
        picked = [whole]
    else:
        per_point = [_smallest(segmentation.areas, allowed & foreground[:, k]) for k in range(foreground.shape[1])]
        picked = sorted({i for i in per_point if i is not None})
    if not picked:
        return None, "no mask contains a foreground point without also containing a background point"
    score = float(segmentation.scores[picked].max())
    mask = _union_at_image_resolution(segmentation, picked)
    if not mask.any():
        return None, "the selected mask vanished when upsampled to image resolution"
    return SelectedObject.from_mask(mask, score, tuple(picked)), ""


def box_scores(segmentation: Segmentation, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: IoU of its mask with the box region, and IoU of its box with the box.

    Intersections are counted on network-resolution masks, only over the overlap of both boxes.
    """
    boxes = segmentation.boxes.astype(np.float64)
    x1, y1, x2, y2 = box
    ix1, iy1 = np.maximum(boxes[:, 0], x1), np.maximum(boxes[:, 1], y1)
    ix2, iy2 = np.minimum(boxes[:, 2], x2), np.minimum(boxes[:, 3], y2)
    overlap = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    box_area = (x2 - x1) * (y2 - y1)
    inst_box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    box_iou = overlap / np.maximum(box_area + inst_box_area - overlap, 1e-9)

    mask_iou = np.zeros(len(segmentation))
    pixel_area = 1.0 / segmentation.geometry.gain**2  # image pixels per mask cell
    for i in np.flatnonzero(overlap > 0):
        mx1, my1, mx2, my2 = segmentation.geometry.box_to_mask_coords((ix1[i], iy1[i], ix2[i], iy2[i]))
        inside = np.count_nonzero(segmentation.masks[i, my1:my2, mx1:mx2]) * pixel_area
        mask_iou[i] = inside / max(box_area + segmentation.areas[i] - inside, 1e-9)
    return mask_iou, box_iou


def _select_in_box(
    segmentation: Segmentation, box: Box, points: np.ndarray, labels: np.ndarray, params: SelectionParams
) -> tuple[SelectedObject | None, str]:
    mask_iou, box_iou = box_scores(segmentation, box)
    score = mask_iou * box_iou
    if len(points):
        x1, y1, x2, y2 = box
        inside = (points[:, 0] >= x1) & (points[:, 0] < x2) & (points[:, 1] >= y1) & (points[:, 1] < y2)
        hits = _point_hits(segmentation, points)
        keep = ~hits[:, labels == BACKGROUND].any(axis=1)
        keep &= hits[:, (labels == FOREGROUND) & inside].all(axis=1)
        score = np.where(keep, score, 0.0)
    best = int(np.argmax(score))
    if mask_iou[best] < params.min_box_iou or score[best] <= 0:
        return None, f"best mask IoU {mask_iou[best]:.3f} is below min_box_iou {params.min_box_iou:g}"
    mask = _union_at_image_resolution(segmentation, [best], clip=box)
    if not mask.any():
        return None, "the best mask has no pixels inside the box"
    return SelectedObject.from_mask(mask, float(mask_iou[best]), (best,)), ""


def _union_at_image_resolution(segmentation: Segmentation, indices: list[int], clip: Box | None = None) -> np.ndarray:
    """Upsample only the region the picked instances (and ``clip``) cover, and merge them."""
    height, width = segmentation.image_shape
    region = segmentation.boxes[indices]
    x0 = max(int(np.floor(region[:, 0].min())) - 2, 0)
    y0 = max(int(np.floor(region[:, 1].min())) - 2, 0)
    x1 = min(int(np.ceil(region[:, 2].max())) + 2, width)
    y1 = min(int(np.ceil(region[:, 3].max())) + 2, height)
    if clip is not None:
        x0, y0 = max(x0, int(np.floor(clip[0]))), max(y0, int(np.floor(clip[1])))
        x1, y1 = min(x1, int(np.ceil(clip[2]))), min(y1, int(np.ceil(clip[3])))
    full = np.zeros((height, width), dtype=bool)
    if x1 <= x0 or y1 <= y0:
        return full
    merged = np.logical_or.reduce(segmentation.masks[indices], axis=0)
    full[y0:y1, x0:x1] = segmentation.geometry.upsample_region(merged, x0, y0, x1, y1)
    return full
