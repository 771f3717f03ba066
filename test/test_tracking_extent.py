"""A followed object crossed by another one comes back on the occluder's other side first: that part lies inside
the object's whole extent, not on its last, partly covered, mask (:mod:`fastsam_ros.tracking.extent`)."""

from __future__ import annotations

import numpy as np
from test_tracking_crossings import SQUARE, follow
from test_tracking_returns import red, scene

from fastsam_ros.tracking.extent import Extents
from fastsam_ros.types import Status

# Covered from the left down to its right half, then hidden: its last mask is x 130-160 of the square's 100-160.
COVERED = [scene([red(100)]), scene([red(130, SQUARE // 2)]), scene([]), scene([])]


def test_a_part_back_on_the_other_side_inside_the_whole_extent_takes_the_track_back() -> None:
    # The left 40 px come back first: they overlap the last mask by one grid column (IoU 0.13, a quarter of it
    # held), and lie all inside the whole square.
    answers = follow(COVERED + [scene([red(100, 40)]), scene([red(100, 50)])])
    assert [a.status for a in answers] == [Status.OK, Status.OK, Status.LOST, Status.LOST, Status.OK, Status.OK]
    assert {a.objects[0].track_id for a in answers if a.ok} == {1}


def test_a_mask_half_outside_the_extent_does_not_take_the_track_back() -> None:
    answers = follow(COVERED + [scene([red(70)])])  # x 70-130: half inside the square's extent, none on the last mask
    assert answers[-1].status == Status.LOST


def test_a_track_seen_partly_keeps_the_extent_of_its_whole_object() -> None:
    whole, part = np.array([[0b1111]], np.uint64), np.array([[0b1100]], np.uint64)
    box = np.array([[0], [1], [0], [4]])
    first = Extents.empty().updated(np.zeros(0, bool), np.zeros(0, np.int64), whole, box, np.array([4]))
    first.offsets += 1.0  # the camera moved
    covered = first.updated(np.zeros(1, bool), np.array([0]), part, np.array([[0], [1], [2], [4]]), np.array([2]))
    assert covered.masks.tolist() == whole.tolist() and covered.offsets.tolist() == [[1.0, 1.0]]
    assert covered.areas.tolist() == [4]
    back = covered.updated(np.zeros(1, bool), np.array([0]), whole, box, np.array([4]))  # whole again: its newest
    assert back.masks.tolist() == whole.tolist() and back.offsets.tolist() == [[0.0, 0.0]]
