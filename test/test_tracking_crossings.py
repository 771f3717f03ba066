"""Another object crossing a followed one (issue 19 item 4), on hand-made pictures and masks: the camera motion is
the background's, not the crosser's, and a track never passes to an object of clearly other colours."""

from __future__ import annotations

import numpy as np
import pytest
from test_selection import make_segmentation, rect

from fastsam_ros.prompts.selection import select
from fastsam_ros.tracking.follow import follow_step
from fastsam_ros.tracking.tracker import InstanceTracker
from fastsam_ros.types import Prompt, Status

IMAGE = (240, 400)  # (H, W): 5 px per association grid cell
RED, BLUE = (40, 40, 220), (220, 60, 40)  # BGR
SQUARE = 60  # px: 144 grid cells, enough for an appearance


def textured(shape: tuple[int, int], seed: int, contrast: int) -> np.ndarray:
    """A BGR picture of 4x4-pixel random blocks around mid grey."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(128 - contrast, 128 + contrast, ((shape[0] + 3) // 4, (shape[1] + 3) // 4, 3))
    return np.repeat(np.repeat(blocks, 4, axis=0), 4, axis=1)[: shape[0], : shape[1]].astype(np.uint8)


def test_the_camera_motion_is_the_background_s_while_a_large_object_walks_across() -> None:
    # The camera pans 4 px per frame; a textured block covering a quarter of the central field the motion is
    # measured on walks 24 px per frame the other way: phase correlation's strongest peak is the walker's, but the
    # background explains more of the picture.
    world = textured((IMAGE[0], IMAGE[1] + 200), 1, 60)
    walker = textured((80, 110), 2, 60)
    tracker = InstanceTracker()
    for step in range(4):
        pan = 4 * step
        picture = np.ascontiguousarray(world[:, 200 - pan : 200 - pan + IMAGE[1]])
        left = 170 + pan - 24 * step
        picture[80:160, left : left + 110] = walker
        segmentation = make_segmentation([rect(IMAGE, 10 + pan, 10, 40 + pan, 40)], IMAGE)
        tracker.update(segmentation, picture)
    assert tracker.motion == pytest.approx((4.0, 0.0), abs=1.5)


def scene(squares: list[tuple[tuple[int, int, int], int, int]]) -> tuple:
    """The picture (a static textured background) and segmentation of coloured squares ``(colour, x, y)``."""
    picture = textured(IMAGE, 3, 20)
    masks = []
    for colour, x, y in squares:
        picture[y : y + SQUARE, x : x + SQUARE] = colour
        masks.append(rect(IMAGE, x, y, x + SQUARE, y + SQUARE))
    return picture, make_segmentation(masks, IMAGE)


def follow(frames: list[tuple]) -> list:
    """The answers of a click on the red square at (100, 100) on frame 0, followed over ``frames``."""
    prompt = Prompt(id="red", points=((130.0, 130.0),))
    tracker, followed, answers = InstanceTracker(), None, []
    for picture, segmentation in frames:
        ids = tracker.update(segmentation, picture)
        answer, followed = follow_step(followed, lambda s=segmentation: select(s, prompt), segmentation, ids, tracker)
        answers.append(answer)
    return answers


def test_a_lost_track_is_not_reacquired_by_an_object_of_other_colours_where_it_was() -> None:
    # The red square stops being segmented; a blue one of the same shape comes to lie exactly where it was.
    frames = [scene([(RED, 100, 100), (BLUE, 300, 100)]), scene([(BLUE, 240, 100)]), scene([(BLUE, 170, 100)]),
              scene([(BLUE, 100, 100)]), scene([(BLUE, 100, 100)])]
    answers = follow(frames)
    assert answers[0].status is Status.OK
    assert [a.status for a in answers[1:]] == [Status.LOST] * 4


def test_a_track_does_not_continue_in_an_object_of_other_colours_that_replaces_it() -> None:
    # From one frame to the next the red square is gone and a blue one covers its place: another object.
    frames = [scene([(RED, 100, 100)]), scene([(RED, 100, 100)]), scene([(BLUE, 104, 100)])]
    answers = follow(frames)
    assert [a.status for a in answers] == [Status.OK, Status.OK, Status.LOST]


def test_a_track_continues_in_its_own_object_with_the_same_colours() -> None:
    frames = [scene([(RED, 100 + 8 * k, 100), (BLUE, 300 - 8 * k, 100)]) for k in range(4)]
    answers = follow(frames)
    assert [a.status for a in answers] == [Status.OK] * 4
    assert {a.objects[0].track_id for a in answers} == {1}
