"""harness.overlay_check on overlays drawn by fastsam_ros.overlay: it tells which selection an overlay shows."""

from __future__ import annotations

import numpy as np

from fastsam_ros.overlay import draw_overlay, highlight_color
from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.masks import MaskGeometry, mask_box
from fastsam_ros.types import Prompt, Segmentation
from harness.overlay_check import shows_selection

SHAPE = (160, 240)
RECTS = {"left": (10, 20, 100, 150), "right": (130, 20, 230, 150), "yellow": (105, 40, 125, 140)}


def segmentation() -> Segmentation:
    masks = np.zeros((len(RECTS), *SHAPE), dtype=bool)
    for i, (x1, y1, x2, y2) in enumerate(RECTS.values()):
        masks[i, y1:y2, x1:x2] = True
    return Segmentation(masks=masks, boxes=np.array([mask_box(m) for m in masks], dtype=np.float32),
                        scores=np.full(len(RECTS), 0.9, dtype=np.float32),
                        geometry=MaskGeometry(SHAPE, SHAPE))


def frame() -> np.ndarray:
    image = np.random.default_rng(0).integers(0, 256, (*SHAPE, 3), dtype=np.uint8)
    x1, y1, x2, y2 = RECTS["yellow"]
    image[y1:y2, x1:x2] = highlight_color(0)  # an object already in the highlight colour
    return image


def mask_of(name: str) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    x1, y1, x2, y2 = RECTS[name]
    mask[y1:y2, x1:x2] = True
    return mask


def overlay_for(name: str | None) -> np.ndarray:
    """The node's overlay for one answered prompt on ``name`` (None: the frame's own overlay, no prompt)."""
    seg, image = segmentation(), frame()
    if name is None:
        return draw_overlay(image, seg)
    x1, y1, x2, y2 = RECTS[name]
    prompt = Prompt(id=name, points=(((x1 + x2) / 2, (y1 + y2) / 2),))
    selection = select(seg, prompt)
    assert selection.ok and np.array_equal(selection.union_mask(SHAPE), mask_of(name))
    return draw_overlay(image, seg, [selection], [prompt])


def test_an_overlay_shows_its_own_selection_only() -> None:
    left, right = overlay_for("left"), overlay_for("right")
    assert shows_selection(left, frame(), mask_of("left"))
    assert shows_selection(right, frame(), mask_of("right"))
    assert not shows_selection(left, frame(), mask_of("right"))
    assert not shows_selection(right, frame(), mask_of("left"))


def test_the_frame_overlay_and_the_raw_frame_show_no_selection() -> None:
    for image in (overlay_for(None), frame()):
        for name in RECTS:
            assert not shows_selection(image, frame(), mask_of(name)), name


def test_an_object_already_in_the_highlight_colour_is_not_taken_for_a_selection() -> None:
    assert not shows_selection(overlay_for("left"), frame(), mask_of("yellow"))
    assert not shows_selection(frame(), frame(), mask_of("yellow"))
