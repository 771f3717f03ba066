"""The instance label image (ROS-free): index + 1 per pixel, the smaller instance on top, from lossless masks."""

from __future__ import annotations

import numpy as np
import pytest
from fake_engine import segmentation_from_masks

from fastsam_ros.segmentation.labels import MAX_LABEL, label_image, paint_labels
from fastsam_ros.segmentation.masks import EncodedMasks, MaskGeometry
from fastsam_ros.types import CLASS_AGNOSTIC, Segmentation

SHAPE = (60, 80)


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def test_a_cup_on_a_table_stays_on_top_whatever_the_order() -> None:
    table, cup, elsewhere = rect(5, 10, 70, 50), rect(20, 20, 30, 30), rect(72, 0, 80, 8)
    for masks in ([table, cup, elsewhere], [cup, elsewhere, table]):
        labels = label_image(segmentation_from_masks(masks))
        assert labels.dtype == np.uint16 and labels.shape == SHAPE
        index = {id(m): k + 1 for k, m in enumerate(masks)}
        assert labels[25, 25] == index[id(cup)]  # inside the cup: the cup
        assert labels[12, 10] == index[id(table)]  # the table around it
        assert labels[4, 75] == index[id(elsewhere)]
        assert labels[55, 2] == 0  # nothing there
        assert np.count_nonzero(labels == index[id(table)]) == table.sum() - cup.sum()  # the loss: under the cup


def test_equal_areas_put_the_later_index_on_top() -> None:
    left, right = rect(10, 10, 30, 30), rect(20, 10, 40, 30)
    labels = label_image(segmentation_from_masks([left, right]))
    assert labels[20, 25] == 2 and labels[20, 15] == 1 and labels[20, 35] == 2


def test_rows_that_wrap_inside_a_box_paint_only_their_runs() -> None:
    ring = rect(10, 10, 40, 40) & ~rect(15, 15, 35, 35)  # background runs inside the box, foreground runs wrapping
    labels = label_image(segmentation_from_masks([ring]))
    np.testing.assert_array_equal(labels == 1, ring)


def test_masks_at_network_resolution_are_painted_as_their_upsampled_masks() -> None:
    """Masks kept at a quarter of the image's size: the label image is made of the image-resolution masks."""
    small = [np.zeros((15, 20), dtype=bool) for _ in range(2)]
    small[0][2:12, 2:18] = True
    small[1][5:8, 5:9] = True
    segmentation = Segmentation(masks=np.stack(small), boxes=np.array([[8, 8, 72, 48], [20, 20, 36, 32]], np.float32),
                                scores=np.array([0.9, 0.8], np.float32), geometry=MaskGeometry(SHAPE, (15, 20)))
    full = [segmentation.full_mask(k) for k in range(2)]
    expected = np.zeros(SHAPE, np.uint16)
    expected[full[0]] = 1
    expected[full[1]] = 2  # smaller: on top
    np.testing.assert_array_equal(label_image(segmentation), expected)


def test_no_instances_is_all_zero_and_too_many_is_refused() -> None:
    empty = Segmentation(np.zeros((0, *SHAPE), bool), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                         MaskGeometry(SHAPE, SHAPE))
    labels = label_image(empty)
    assert labels.shape == SHAPE and not labels.any()
    too_many = EncodedMasks(np.zeros((MAX_LABEL + 1, 4), np.int64), np.zeros(MAX_LABEL + 2, np.int64),
                            np.zeros(0, np.uint32))
    with pytest.raises(ValueError, match="do not fit a 16-bit label image"):
        paint_labels(too_many, SHAPE)


def test_class_names_come_from_the_checkpoint_unless_it_has_one_class() -> None:
    masks = [rect(0, 0, 10, 10), rect(20, 20, 30, 30)]
    plain = segmentation_from_masks(masks)
    assert [plain.class_name(k) for k in range(2)] == [CLASS_AGNOSTIC] * 2
    coco = Segmentation(plain.masks, plain.boxes, plain.scores, plain.geometry, class_ids=np.array([5, 0]),
                        class_names=("person", "bicycle", "car", "motorcycle", "airplane", "bus"))
    assert [coco.class_name(k) for k in range(2)] == ["bus", "person"]
    fastsam = Segmentation(plain.masks, plain.boxes, plain.scores, plain.geometry, class_ids=np.array([0, 0]),
                           class_names=("object",))
    assert fastsam.class_name(1) == CLASS_AGNOSTIC
    with pytest.raises(ValueError, match="one class per instance"):
        Segmentation(plain.masks, plain.boxes, plain.scores, plain.geometry, class_ids=np.array([0]))
