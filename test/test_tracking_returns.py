"""A followed object that comes back after a long hiding (issue 19 item 4): its lost track takes it back from a
track started while it was hidden, or from a mask that contains its last, partly covered, one; never from an
established track, nor from an object of other colours (:mod:`fastsam_ros.tracking.takeover`)."""

from __future__ import annotations

import numpy as np
from test_selection import make_segmentation, rect
from test_tracking_crossings import BLUE, IMAGE, RED, SQUARE, follow, textured

from fastsam_ros.tracking.takeover import takeovers
from fastsam_ros.types import Status

Box = tuple[tuple[int, int, int], int, int, int]  # colour, left, top, width (SQUARE high)


def scene(boxes: list[Box]) -> tuple:
    """The picture (a static textured background) and segmentation of coloured boxes."""
    picture = textured(IMAGE, 3, 20)
    masks = []
    for colour, x, y, width in boxes:
        picture[y : y + SQUARE, x : x + width] = colour
        masks.append(rect(IMAGE, x, y, x + width, y + SQUARE))
    return picture, make_segmentation(masks, IMAGE)


def red(x: int, width: int = SQUARE) -> Box:
    return RED, x, 100, width


def test_a_returning_object_is_taken_back_from_the_track_it_started_while_hidden() -> None:
    # Hidden for two frames, the red square comes back 40 px right: too little overlap with its last mask (IoU
    # 0.2), so it starts a track; a frame later it overlaps the last mask by 0.41, but its new track's own overlap
    # (0.6) is higher. The lost track takes it back.
    answers = follow([scene([red(100)]), scene([]), scene([]), scene([red(140)]), scene([red(125)]),
                      scene([red(120)])])
    assert [a.status for a in answers] == [Status.OK, Status.LOST, Status.LOST, Status.LOST, Status.OK, Status.OK]
    assert {a.objects[0].track_id for a in answers if a.ok} == {1}


def test_a_returning_object_is_taken_back_by_a_mask_containing_its_last_partly_covered_one() -> None:
    # Covered down to a 12-px strip, then hidden: the whole square back around the strip overlaps it only 0.2.
    answers = follow([scene([red(100)]), scene([red(100, 24)]), scene([red(100, 12)]), scene([]),
                      scene([red(100)])])
    assert [a.status for a in answers] == [Status.OK] * 3 + [Status.LOST, Status.OK]
    assert answers[-1].objects[0].track_id == 1


def test_a_lost_track_never_takes_the_object_of_an_established_track_of_its_colours() -> None:
    # A second red square, tracked since frame 0, moves 20 px a frame to overlap the hidden one's last mask by 0.33.
    answers = follow([scene([red(100), red(310)])] + [scene([red(x)]) for x in range(290, 129, -20)])
    assert answers[0].ok
    assert [a.status for a in answers[1:]] == [Status.LOST] * 9


def test_a_lost_track_never_takes_a_young_track_of_other_colours() -> None:
    answers = follow([scene([red(100)]), scene([]), scene([(BLUE, 140, 100, SQUARE)]),
                      scene([(BLUE, 110, 100, SQUARE)])])
    assert [a.status for a in answers] == [Status.OK, Status.LOST, Status.LOST, Status.LOST]


def test_takeovers_pick_the_best_overlap_first_each_track_and_instance_once() -> None:
    # Track rows: 0 and 1 lost (last seen on frame 5), 2 young (started on frame 5) carrying instance 0, 3 old
    # carrying instance 1. Instance 2 is new. The pairs show each track's object back (the caller's filter).
    carried = np.array([-1, -1, 0, 1])
    born, seen = np.array([0, 0, 5, 0]), np.array([5, 5, 6, 6])
    tracks = np.array([0, 1, 0, 1])
    instances = np.array([0, 0, 1, 2])
    overlap = np.array([0.5, 0.6, 0.9, 0.1], np.float32)
    # Track 1 takes instance 0 from young track 2 (its 0.6 beats track 0's 0.5); instance 1 belongs to an old track;
    # track 1 already has one.
    assert takeovers(tracks, instances, overlap, carried, born, seen) == [(1, 2, 0)]
    assert takeovers(tracks[:2], instances[:2], overlap[:2], carried, born, seen) == [(1, 2, 0)]
    assert takeovers(tracks[3:], instances[3:], overlap[3:], carried, born, seen) == [(1, -1, 2)]
