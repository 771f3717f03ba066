"""Prompt-guided selection: pure functions from (Segmentation, Prompt) to Selection.

Selection runs on the network-resolution masks; only the picked objects are upsampled.

Rules (``make eval`` measures them against FastSAM's published rules and ultralytics' ``prompt()``):

* **Points.** A mask is a candidate when it holds every foreground point. The object is the *smallest*
  candidate: a click on a cup standing on a table lies in both the cup and the table masks and means the
  cup; a click on the bare table top lies only in the table mask. A background point vetoes every mask
  that holds it, so the pick falls to a smaller mask that leaves the unwanted part out. When the veto
  leaves no candidate (the segmentation has no mask that separates the two points), the smallest candidate
  is taken anyway and the masks under the background points that hold no foreground point are cut out of
  it: a click on a table top whose mask covers the cup, with a background click on the cup, gives the table
  without the cup. An answer never contains a background point: when no mask and no cut-out separates the
  points, the answer is ``no_match`` saying so. When no single mask holds every foreground point, the
  smallest candidate under each point is taken and they are merged into one object. A point in no mask
  selects nothing (``no_match``).
* **Boxes.** Each box picks its own object: the mask with the highest mask-box IoU times box-box IoU (the
  mask fills the box *and* its extent matches the box), clipped to the box, since the user drew its bounds.
  A best mask-box IoU below ``min_box_iou`` is ``no_match``.
* **Points and boxes.** The box bounds and the points refine: inside each box only masks that hold the
  box's foreground points compete, and background points veto as above.
* **Text.** An injected scorer (CLIP) ranks candidates on their own pixels; with boxes it ranks only inside
  each box (see ``fastsam_ros.prompts.text``).

Why these rules: ``make eval`` (``evaluation.evaluate``) scores them against ultralytics' ``prompt()``,
FastSAM's published rules and the best-single-mask oracle on the COCO dev set, and the README's "How prompts
select objects" table holds its results. The smallest candidate answers the cup-on-a-table question the way a
user means it. A strict background veto loses instances whose only mask is slightly too large to leave the
background point out, hence the cut-out fallback. Clipping a box's pick to the box lifts the box rule above the
single-mask oracle. The stand-ins are COCO models whose masks rarely nest; FastSAM's nested part and whole masks
are where the smallest-candidate rule and the veto matter most.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fastsam_ros.prompts.objects import build_object
from fastsam_ros.prompts.text import DEFAULT_MIN_TEXT_SCORE, TextScorer, rank_by_text
from fastsam_ros.segmentation.masks import box_intersections
from fastsam_ros.types import BACKGROUND, FOREGROUND, Box, Prompt, Segmentation, SelectedObject, Selection, Status


@dataclass(frozen=True)
class SelectionParams:
    """Thresholds that turn weak matches into an explicit ``no_match``, and limits on what one prompt may ask."""

    min_box_iou: float = 0.05  # a box whose best mask-box IoU is below this selects nothing
    min_text_score: float = DEFAULT_MIN_TEXT_SCORE  # a text prompt whose best similarity is below this: no_match
    text_return_all: bool = False  # text prompts select every instance above min_text_score, not only the best
    max_points: int = 64
    max_boxes: int = 16
    max_text_length: int = 256


class InvalidPrompt(ValueError):
    """A prompt that cannot mean anything on this image (the message says why)."""


def select(
    segmentation: Segmentation,
    prompt: Prompt,
    params: SelectionParams = SelectionParams(),
    image: np.ndarray | None = None,
    text_scorer: TextScorer | None = None,
) -> Selection:
    """Answer a point, box or text prompt on one frame's instances.

    Text prompts need the frame's ``image`` (BGR) and a ``text_scorer``; without them they get ``error``.
    """
    try:
        validate_prompt(prompt, segmentation.image_shape, params)
    except InvalidPrompt as error:
        return Selection.failed(prompt.id, Status.INVALID, str(error))
    if prompt.text:
        if text_scorer is None or image is None:
            return Selection.failed(prompt.id, Status.ERROR, "text prompts need CLIP, and no text scorer is set up")
        return rank_by_text(segmentation, image, prompt, text_scorer, params.min_text_score, params.text_return_all)
    if len(segmentation) == 0:
        return Selection.failed(prompt.id, Status.NO_MATCH, "no instances were found in this frame")

    points = np.asarray(prompt.points, dtype=np.float64).reshape(-1, 2)
    labels = np.asarray(prompt.labels if prompt.labels else [FOREGROUND] * len(points), dtype=np.int64)
    if prompt.boxes:
        outcomes = [_select_in_box(segmentation, box, points, labels, params) for box in prompt.boxes]
        objects = tuple(obj for obj, _ in outcomes if obj is not None)
        notes = [f"box {i}: {why}" for i, (_, why) in enumerate(outcomes) if why]
        if not objects:
            return Selection.failed(prompt.id, Status.NO_MATCH, "; ".join(notes))
        return Selection(prompt.id, Status.OK, "; ".join(notes), objects)
    obj, why = _select_by_points(segmentation, points, labels)
    if obj is None:
        return Selection.failed(prompt.id, Status.NO_MATCH, why)
    return Selection(prompt.id, Status.OK, why, (obj,))


def check_prompt(prompt: Prompt, params: SelectionParams = SelectionParams()) -> None:
    """Raise :class:`InvalidPrompt` for what is wrong with ``prompt`` on any image (so it is never stored)."""
    if prompt.is_empty:
        raise InvalidPrompt("the prompt has no points, boxes or text")
    for count, limit, what in ((len(prompt.points), params.max_points, "points"),
                               (len(prompt.boxes), params.max_boxes, "boxes"),
                               (len(prompt.text), params.max_text_length, "text characters")):
        if count > limit:
            raise InvalidPrompt(f"{count} {what} is more than the limit of {limit} per prompt")
    if prompt.labels and len(prompt.labels) != len(prompt.points):
        raise InvalidPrompt(f"{len(prompt.points)} points but {len(prompt.labels)} labels")
    for label in prompt.labels:
        if label not in (FOREGROUND, BACKGROUND):
            raise InvalidPrompt(f"unknown point label {label!r}: use 1 (foreground) or 0 (background)")
    for point in prompt.points:
        if len(point) != 2:
            raise InvalidPrompt(f"point {point} needs two numbers x, y")
        x, y = point
        if not (math.isfinite(x) and math.isfinite(y)):
            raise InvalidPrompt(f"point ({x}, {y}) is not a finite number")
    if prompt.points and FOREGROUND not in (prompt.labels or (FOREGROUND,)):
        raise InvalidPrompt("background points alone select nothing: add a foreground point")
    for box in prompt.boxes:
        if len(box) != 4 or not all(math.isfinite(v) for v in box):
            raise InvalidPrompt(f"box {box} needs four finite numbers x1, y1, x2, y2")
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1:
            raise InvalidPrompt(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) is inverted or empty: need x1 < x2 and y1 < y2")


def validate_prompt(
    prompt: Prompt, image_shape: tuple[int, int], params: SelectionParams = SelectionParams()
) -> None:
    """Raise :class:`InvalidPrompt` for anything that has no meaning on an image of ``image_shape``."""
    check_prompt(prompt, params)
    height, width = image_shape
    for x, y in prompt.points:
        if not (0 <= x < width and 0 <= y < height):
            raise InvalidPrompt(f"point ({x:g}, {y:g}) lies outside the {width}x{height} image")
    for x1, y1, x2, y2 in prompt.boxes:
        if x1 < 0 or y1 < 0 or x2 > width or y2 > height:
            raise InvalidPrompt(f"box ({x1:g}, {y1:g}, {x2:g}, {y2:g}) reaches outside the {width}x{height} image")


def _point_hits(segmentation: Segmentation, points: np.ndarray) -> np.ndarray:
    """``(N, K)`` bool: does instance i contain point k."""
    if len(points) == 0:
        return np.zeros((len(segmentation), 0), dtype=bool)
    cells = segmentation.geometry.to_mask_coords(points)
    return segmentation.masks.at(cells[:, 0], cells[:, 1])


def _smallest(segmentation: Segmentation, candidates: np.ndarray) -> int | None:
    """The candidate with the smallest area (only the candidates' areas are made)."""
    indices = np.flatnonzero(candidates)
    return int(indices[np.argmin(segmentation.areas_of(indices))]) if indices.size else None


def _pick_for_points(segmentation: Segmentation, foreground: np.ndarray, allowed: np.ndarray) -> list[int]:
    """The smallest allowed mask holding every foreground point, else the smallest under each point."""
    whole = _smallest(segmentation, allowed & foreground.all(axis=1))
    if whole is not None:
        return [whole]
    per_point = (_smallest(segmentation, allowed & foreground[:, k]) for k in range(foreground.shape[1]))
    return sorted({i for i in per_point if i is not None})


_CUT_OUT = (
    "no mask holds the foreground points without a background point: cut out the masks under the background points"
)


def _select_by_points(
    segmentation: Segmentation, points: np.ndarray, labels: np.ndarray
) -> tuple[SelectedObject | None, str]:
    hits = _point_hits(segmentation, points)
    foreground = hits[:, labels == FOREGROUND]
    vetoed = hits[:, labels == BACKGROUND].any(axis=1)
    picked, removed, note = _pick_for_points(segmentation, foreground, ~vetoed), [], ""
    if not picked and vetoed.any():
        picked = _pick_for_points(segmentation, foreground, np.ones(len(segmentation), dtype=bool))
        removed, note = np.flatnonzero(vetoed & ~foreground.any(axis=1)).tolist(), _CUT_OUT
    if not picked:
        return None, "no mask contains a foreground point"
    score = float(segmentation.scores[picked].max())
    obj = build_object(segmentation, picked, score, removed)
    if obj is None:
        return None, "the selected mask vanished when upsampled to image resolution"
    return _without_background(obj, points, labels, note)


def _without_background(
    obj: SelectedObject, points: np.ndarray, labels: np.ndarray, note: str
) -> tuple[SelectedObject | None, str]:
    """``obj`` unless it holds a background point: then no mask separates the points, and nothing is selected."""
    for x, y in points[labels == BACKGROUND]:
        if obj.mask[int(y), int(x)]:
            return None, (f"no mask separates the foreground points from the background point ({x:g}, {y:g}): "
                          "every mask that holds them holds it too")
    return obj, note


def box_scores(segmentation: Segmentation, box: Box) -> tuple[np.ndarray, np.ndarray]:
    """Per instance: IoU of its mask with the box region, and IoU of its box with the box.

    Intersections are counted on network-resolution masks, only over the overlap of the box with the
    instance's box (widened by one mask cell, which a mask can reach past its box).
    """
    boxes = segmentation.boxes.astype(np.float64)
    x1, y1, x2, y2 = (float(v) for v in box)
    overlap = box_intersections(boxes, box)
    box_area = (x2 - x1) * (y2 - y1)
    inst_box_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    box_iou = overlap / np.maximum(box_area + inst_box_area - overlap, 1e-9)

    mask_iou = np.zeros(len(segmentation))
    touching = np.flatnonzero(overlap > 0)
    if touching.size == 0:
        return mask_iou, box_iou
    geometry = segmentation.geometry
    prompt_cells = geometry.boxes_to_mask_cells(np.array([[x1, y1, x2, y2]]))[0]
    inst_cells = geometry.boxes_to_mask_cells(boxes[touching]) + (-1, -1, 1, 1)
    lo = np.maximum(inst_cells[:, :2], prompt_cells[:2])
    hi = np.minimum(inst_cells[:, 2:], prompt_cells[2:])
    masks = segmentation.masks
    inside = np.array(
        [masks.count(int(i), (int(lx), int(ly), int(hx), int(hy)))
         for i, (lx, ly), (hx, hy) in zip(touching, lo, hi, strict=True)],
        dtype=np.float64,
    )
    inside *= geometry.pixels_per_cell  # cells -> pixels
    mask_iou[touching] = inside / np.maximum(box_area + segmentation.areas_of(touching) - inside, 1e-9)
    return mask_iou, box_iou


def _select_in_box(
    segmentation: Segmentation, box: Box, points: np.ndarray, labels: np.ndarray, params: SelectionParams
) -> tuple[SelectedObject | None, str]:
    mask_iou, box_iou = box_scores(segmentation, box)
    score = mask_iou * box_iou
    removed, note = [], ""
    if len(points):
        x1, y1, x2, y2 = box
        inside = (points[:, 0] >= x1) & (points[:, 0] < x2) & (points[:, 1] >= y1) & (points[:, 1] < y2)
        hits = _point_hits(segmentation, points)
        foreground = hits[:, labels == FOREGROUND]
        eligible = hits[:, (labels == FOREGROUND) & inside].all(axis=1)
        vetoed = hits[:, labels == BACKGROUND].any(axis=1)
        strong = (score > 0) & (mask_iou >= params.min_box_iou)
        if (strong & eligible & ~vetoed).any() or not (strong & eligible).any():
            eligible &= ~vetoed
        else:
            removed, note = np.flatnonzero(vetoed & ~foreground.any(axis=1)).tolist(), _CUT_OUT
        score = np.where(eligible, score, 0.0)
    best = int(np.argmax(score))
    if score[best] <= 0:
        if not len(points):
            return None, "no mask overlaps the box"
        return None, "no mask in the box holds its foreground points without a background point"
    if mask_iou[best] < params.min_box_iou:
        return None, f"best mask IoU {mask_iou[best]:.3f} is below min_box_iou {params.min_box_iou:g}"
    obj = build_object(segmentation, [best], float(mask_iou[best]), removed, clip=box)
    if obj is None:
        return None, "the best mask has no pixels inside the box"
    return _without_background(obj, points, labels, note)
