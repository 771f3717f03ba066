"""Text prompts: pick the instance whose own pixels best match a phrase ("the red mug"), scored by CLIP.

FastSAM's third prompt kind. Each candidate instance is cropped to its mask's box with every pixel outside
its mask blanked to black (ultralytics' ``FastSAMPredictor.prompt`` does the same; FastSAM's own
``FastSAMPrompt`` instead pastes the instance's *box* onto a white frame-sized canvas, which lets the
background inside the box and the frame's size into the score), the crops go through CLIP's image encoder
in one batch, and each is ranked by the cosine similarity of its embedding with the text's.

Scores are raw cosine similarities in [-1, 1] (not CLIP's logits, which are 100x these, nor a softmax over
the candidates, which always has a winner), so :func:`rank_by_text`'s ``min_text_score`` keeps its meaning
across frames: with OpenAI's ViT-B-32 a crop that shows the named thing typically scores about 0.25-0.35 and
an unrelated one 0.12-0.22. ``DEFAULT_MIN_TEXT_SCORE`` (0.2) is a starting point to tune on real frames.

The scorer itself, CLIP through ``open_clip_torch``, is :mod:`fastsam_ros.prompts.clip`; anything with
:class:`TextScorer`'s ``score`` will do (tests inject fakes).
"""


from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from fastsam_ros.prompts.objects import build_object
from fastsam_ros.segmentation.masks import box_intersections, mask_box
from fastsam_ros.types import Box, Prompt, Segmentation, SelectedObject, Selection, Status

DEFAULT_MIN_TEXT_SCORE = 0.2  # raw cosine similarity; see the module docstring
MIN_CROP_PIXELS = 100  # instances with this many pixels or fewer are not scored (ultralytics and FastSAM: <= 100)
MIN_BOX_OVERLAP = 0.5  # text + box: an instance is a candidate when this share of its box lies inside the box
TEXT_CACHE_SIZE = 1024  # distinct phrases whose embeddings are kept


class ClipUnavailable(RuntimeError):
    """CLIP cannot score text prompts here; the message says why and what to do."""


class TextScorer(Protocol):
    """Scores instances of one frame against a phrase."""

    def score(
        self, text: str, image_bgr: np.ndarray, segmentation: Segmentation, indices: Sequence[int]
    ) -> np.ndarray:
        """One similarity per entry of ``indices`` (float, NaN where an instance is too small to score).

        ``image_bgr`` is the frame ``segmentation`` was computed from. Raises :class:`ClipUnavailable`.
        """
        ...


# --------------------------------------------------------------------------------------------------- ranking


def rank_by_text(
    segmentation: Segmentation,
    image_bgr: np.ndarray,
    prompt: Prompt,
    scorer: TextScorer,
    min_text_score: float = DEFAULT_MIN_TEXT_SCORE,
    return_all: bool = False,
    min_box_overlap: float = MIN_BOX_OVERLAP,
) -> Selection:
    """Answer a text prompt (optionally with boxes) on one frame's instances.

    Without boxes every instance is a candidate; with boxes each box answers on its own, among instances
    with at least ``min_box_overlap`` of their box inside it, and its object is clipped to the box. The
    best candidate is selected (every candidate at or above ``min_text_score``, best first, with
    ``return_all``); ``SelectedObject.score`` is the similarity. All candidates of all boxes are scored
    in one call to ``scorer``. Boxes are assumed valid (``selection.validate_prompt``).
    """
    text = " ".join(prompt.text.split())
    if not text:
        return Selection.failed(prompt.id, Status.INVALID, "the text prompt is empty")
    if prompt.points:
        return Selection.failed(prompt.id, Status.INVALID, "text prompts combine with boxes, not with points")
    if image_bgr.shape[:2] != segmentation.image_shape:
        return Selection.failed(
            prompt.id, Status.INVALID,
            f"the image is {image_bgr.shape[1]}x{image_bgr.shape[0]} but the instances were found on a "
            f"{segmentation.image_shape[1]}x{segmentation.image_shape[0]} image",
        )
    if len(segmentation) == 0:
        return Selection.failed(prompt.id, Status.NO_MATCH, "no instances were found in this frame")

    regions: list[Box | None] = list(prompt.boxes) if prompt.boxes else [None]
    groups = [_candidates_in_box(segmentation, box, min_box_overlap) for box in regions]
    indices = sorted({int(i) for group in groups for i in group})
    if not indices:
        return Selection.failed(prompt.id, Status.NO_MATCH, "no instance lies inside the box")
    try:
        scores = np.asarray(scorer.score(text, image_bgr, segmentation, indices), dtype=np.float64)
    except ClipUnavailable as error:
        return Selection.failed(prompt.id, Status.ERROR, str(error))
    if scores.shape != (len(indices),):
        raise ValueError(f"the text scorer returned {scores.shape} scores for {len(indices)} instances")
    score_of = dict(zip(indices, scores.tolist(), strict=True))

    objects: list[SelectedObject] = []
    notes: list[str] = []
    for k, (box, group) in enumerate(zip(regions, groups, strict=True)):
        picked, why = _pick(segmentation, group, score_of, box, text, min_text_score, return_all)
        objects.extend(picked)
        if why:
            notes.append(f"box {k}: {why}" if box is not None and len(regions) > 1 else why)
    reason = "; ".join(notes)
    if not objects:
        return Selection.failed(prompt.id, Status.NO_MATCH, reason)
    return Selection(prompt.id, Status.OK, reason, tuple(objects))


def _candidates_in_box(segmentation: Segmentation, box: Box | None, min_overlap: float) -> np.ndarray:
    if box is None:
        return np.arange(len(segmentation))
    boxes = segmentation.boxes.astype(np.float64)
    own = np.maximum((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), 1e-9)
    return np.flatnonzero(box_intersections(boxes, box) / own >= min_overlap)


def _pick(
    segmentation: Segmentation, group: np.ndarray, score_of: dict[int, float], box: Box | None, text: str,
    min_score: float, return_all: bool,
) -> tuple[list[SelectedObject], str]:
    where = "inside the box" if box is not None else "in this frame"
    scored = [(score_of[int(i)], int(i)) for i in group if not math.isnan(score_of[int(i)])]
    if not scored:
        if len(group) == 0:
            return [], f"no instance lies {where}"
        return [], f"every instance {where} is too small to score (<= {MIN_CROP_PIXELS} pixels)"
    scored.sort(key=lambda pair: (-pair[0], pair[1]))
    best = scored[0][0]
    if best < min_score:
        return [], f"best text score {best:.3f} for {text!r} is below min_text_score {min_score:g}"
    picked: list[SelectedObject] = []
    for score, index in scored:
        if score < min_score:
            break
        obj = build_object(segmentation, [index], score, clip=box)
        if obj is None:
            continue
        picked.append(obj)
        if not return_all:
            break
    if not picked:
        return [], f"the best matches for {text!r} have no pixels inside the box"
    return picked, ""


# ----------------------------------------------------------------------------------------------------- crops


def make_crops(
    image_bgr: np.ndarray, segmentation: Segmentation, indices: Sequence[int],
    min_pixels: int = MIN_CROP_PIXELS, fill: int = 0,
) -> list[np.ndarray | None]:
    """Per index: the image cropped to the instance's mask box, pixels outside its mask set to ``fill``, as RGB.

    Only the region the instance's cells reach is upsampled. An instance with ``min_pixels`` pixels or fewer
    at image resolution gives None (too small for CLIP to say anything; ultralytics skips them the same way).
    """
    if image_bgr.ndim != 3 or image_bgr.shape[2] != 3 or image_bgr.shape[:2] != segmentation.image_shape:
        raise ValueError(f"expected a {segmentation.image_shape} x 3 BGR image, got {image_bgr.shape}")
    crops: list[np.ndarray | None] = []
    segmentation.masks.make(indices)  # the candidates' pixels, in few kernel calls
    for index in indices:
        region, x0, y0 = segmentation.instance_region(index)
        tight = mask_box(region)
        if tight is None or np.count_nonzero(region) <= min_pixels:
            crops.append(None)
            continue
        bx0, by0, bx1, by1 = tight
        inside = region[by0:by1, bx0:bx1, None]
        pixels = image_bgr[y0 + by0 : y0 + by1, x0 + bx0 : x0 + bx1, ::-1]  # BGR -> RGB
        crops.append(np.where(inside, pixels, np.uint8(fill)).astype(np.uint8, copy=False))
    return crops
