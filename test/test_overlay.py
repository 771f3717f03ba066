"""The overlay on hand-made segmentations: tint exactly where instances are, selections, points, boxes, legend."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_ros.overlay import (
    BACKGROUND_BGR,
    FOREGROUND_BGR,
    INSTANCE_ALPHA,
    SELECTION_ALPHA,
    draw_overlay,
    highlight_color,
    instance_colors,
)
from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.masks import MaskGeometry, mask_box
from fastsam_ros.types import Prompt, Segmentation, Selection, Status

IMAGE_SHAPE = (96, 128)
OUTER = (8, 8, 120, 88)  # instance 0, image pixels x1, y1, x2, y2
INNER = (40, 32, 72, 64)  # instance 1, nested in instance 0


def make_segmentation(
    mask_shape: tuple[int, int], rects: list[tuple[int, int, int, int]], spill: int = 0
) -> Segmentation:
    """Rectangular instances drawn in network-resolution masks; boxes and areas measured at image resolution.

    ``spill`` pixels of each mask lie right of and below its box, as network masks may reach one cell past it.
    """
    geometry = MaskGeometry(IMAGE_SHAPE, mask_shape)
    masks = np.zeros((len(rects), *mask_shape), dtype=bool)
    boxes, areas = [], []
    for i, rect in enumerate(rects):
        x1, y1, x2, y2 = geometry.boxes_to_mask_cells(np.asarray(rect))[0]
        masks[i, y1:y2, x1:x2] = True
        full = geometry.upsample(masks[i])
        boxes.append(mask_box(full))
        areas.append(int(full.sum()))
    boxes = np.array(boxes, dtype=np.float32) - (0, 0, spill, spill)
    return Segmentation(masks=masks, boxes=boxes,
                        scores=np.linspace(0.9, 0.5, len(rects)).astype(np.float32),
                        geometry=geometry)


@pytest.fixture()
def image() -> np.ndarray:
    rng = np.random.default_rng(3)
    return rng.integers(40, 200, (*IMAGE_SHAPE, 3), dtype=np.uint8)


def tinted(pixel: np.ndarray, color: np.ndarray | tuple[int, ...], alpha: float) -> np.ndarray:
    return np.asarray(pixel, dtype=np.float64) * (1 - alpha) + np.asarray(color, dtype=np.float64) * alpha


# (72, 96): plain 0.75 scale; (80, 96): letterboxed with 4 rows of padding above and below.
@pytest.mark.parametrize(("mask_shape", "spill"), [((72, 96), 0), ((80, 96), 0), ((72, 96), 2)])
def test_instances_are_tinted_exactly_where_their_masks_are(
    image: np.ndarray, mask_shape: tuple[int, int], spill: int
) -> None:
    segmentation = make_segmentation(mask_shape, [OUTER, INNER], spill)
    original = image.copy()
    out = draw_overlay(image, segmentation)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert np.array_equal(image, original), "the input is not drawn on"
    union = segmentation.full_mask(0) | segmentation.full_mask(1)
    changed = (out != image).any(axis=2)
    assert not changed[~union].any(), "nothing outside the instances changes"
    assert changed[union].mean() > 0.99
    colors = instance_colors(2)
    assert np.allclose(out[20, 20], tinted(image[20, 20], colors[0], INSTANCE_ALPHA), atol=1)
    assert np.allclose(out[48, 56], tinted(image[48, 56], colors[1], INSTANCE_ALPHA), atol=1), "smaller on top"
    # Outlines: the inner instance's edge is drawn in its full colour.
    edge_y, edge_x = np.nonzero(segmentation.full_mask(1))
    assert (out[edge_y.min(), 56] == colors[1]).all()


def test_selected_objects_are_filled_strongly_and_points_and_boxes_drawn(image: np.ndarray) -> None:
    segmentation = make_segmentation((72, 96), [OUTER, INNER])
    prompt = Prompt(id="p", points=((56.0, 48.0), (20.0, 80.0)), labels=(1, 0))
    selection = select(segmentation, prompt)
    assert selection.ok and selection.objects[0].instances == (1,)
    base = draw_overlay(image, segmentation)
    out = draw_overlay(image, segmentation, [selection], [prompt])
    yellow = highlight_color(0)
    assert np.allclose(out[58, 66], tinted(base[58, 66], yellow, SELECTION_ALPHA), atol=1)
    assert np.array_equal(out[20, 100], base[20, 100]), "the rest of the frame is untouched"
    assert tuple(out[48, 56]) == FOREGROUND_BGR
    assert tuple(out[80, 20]) == BACKGROUND_BGR
    # The legend names the prompt in its colour in the top-left corner.
    corner = out[:8, :20].reshape(-1, 3)
    assert (corner == yellow).all(axis=1).any()

    boxed = Prompt(id="b", boxes=((20.0, 24.0, 100.0, 80.0),))
    out = draw_overlay(image, segmentation, [], [boxed])
    b, g, r = (int(v) for v in out[50, 20])
    assert b < 80 and g > 200 and r > 200, "the box edge is drawn in the prompt's colour (yellow)"
    assert np.array_equal(out[50, 60], base[50, 60]), "inside the box nothing changes"


def test_failed_selections_only_appear_in_the_legend(image: np.ndarray) -> None:
    segmentation = make_segmentation((72, 96), [OUTER])
    failed = Selection.failed("t", Status.ERROR, "text prompts need a text scorer")
    base = draw_overlay(image, segmentation)
    out = draw_overlay(image, segmentation, [failed], [Prompt(id="t", text="cup")])
    differs = (out != base).any(axis=2)
    assert differs[:12].any()
    assert not differs[20:].any()


def test_empty_segmentation_and_mismatched_image(image: np.ndarray) -> None:
    empty = Segmentation(masks=np.zeros((0, *IMAGE_SHAPE), dtype=bool), boxes=np.zeros((0, 4), np.float32),
                         scores=np.zeros(0, np.float32),
                         geometry=MaskGeometry(IMAGE_SHAPE, IMAGE_SHAPE))
    assert np.array_equal(draw_overlay(image, empty), image)
    out = draw_overlay(image, empty, [], [Prompt(id="a", points=((10.0, 10.0),))])
    assert tuple(out[10, 10]) == FOREGROUND_BGR
    with pytest.raises(ValueError, match="segmentation"):
        draw_overlay(cv2.resize(image, (64, 48)), empty)


def test_instance_colors_are_distinct() -> None:
    colors = instance_colors(40).astype(int)
    assert len({tuple(c) for c in colors}) == 40
    neighbours = np.abs(np.diff(colors, axis=0)).sum(axis=1)
    assert neighbours.min() > 60


def test_prompts_with_non_finite_coordinates_never_break_the_overlay(image: np.ndarray) -> None:
    segmentation = make_segmentation((72, 96), [OUTER])
    prompt = Prompt(id="nan", points=((float("nan"), 3.0), (60.0, 50.0)), boxes=((0.0, 0.0, float("inf"), 5.0),))
    invalid = Selection.failed("nan", Status.INVALID, "point (nan, 3.0) is not a finite number")
    out = draw_overlay(image, segmentation, [invalid], [prompt])
    assert tuple(out[50, 60]) == FOREGROUND_BGR, "the finite point is still drawn"
