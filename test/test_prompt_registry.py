"""The prompt registry without ROS: persistent prompts' first answers, limits, clearing, and waiting for frames.

Frames are hand-made (fake_engine's painted masks), CLIP is a scorer that blocks until the test lets it go, and
answers land in a list: every check is on exact objects, in the order threads really interleave.
"""

from __future__ import annotations

import threading
from types import SimpleNamespace

import numpy as np
import pytest
from fake_engine import segmentation_from_masks

from fastsam_ros.prompts.selection import SelectionParams
from fastsam_ros.ros.frames import Frame, FrameBoard
from fastsam_ros.ros.prompt_registry import PromptRegistry, PromptSettings
from fastsam_ros.ros.worker import Incoming
from fastsam_ros.tracking.tracker import InstanceTracker
from fastsam_ros.types import Prompt, Status

SHAPE = (40, 60)


def box_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


LEFT, RIGHT = box_mask(5, 5, 20, 30), box_mask(35, 5, 55, 30)


class Sink:
    """Collects what the registry sends."""

    def __init__(self) -> None:
        self.sent: list = []
        self.arrived = threading.Condition()

    def selection(self, selection, header) -> None:
        with self.arrived:
            self.sent.append((selection, header))
            self.arrived.notify_all()

    def answer(self, frame, selection, prompt, request_header) -> None:
        self.selection(selection, frame.header if frame is not None else request_header)

    def wait(self, count: int, timeout: float = 5.0) -> list:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.sent) >= count, timeout)
            return [selection for selection, _ in self.sent]


class GatedClip:
    """A text scorer that prefers the right-hand instance, once the test opens the gate; counts its calls."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.entered = threading.Event()
        self.calls = 0

    def score(self, text, image, segmentation, indices):
        self.calls += 1
        self.entered.set()
        assert self.gate.wait(5), "the test never opened the gate"
        return np.array([0.9 if segmentation.masks.dense()[i][10, 45] else 0.1 for i in indices], dtype=np.float32)


@pytest.fixture()
def board() -> FrameBoard:
    board = FrameBoard(4)
    board.open()
    return board


def segmented(board: FrameBoard, tracker: InstanceTracker, stamp: int, masks: list[np.ndarray]) -> Frame:
    segmentation = segmentation_from_masks(masks)
    ids = tracker.update(segmentation)
    frame = Frame(stamp, SimpleNamespace(stamp=stamp), np.zeros((*SHAPE, 3), np.uint8), segmentation, ids,
                  tracker.epoch)
    board.finished(frame)
    return frame


def registry(board: FrameBoard, sink: Sink, clip=None, max_persistent: int = 64) -> PromptRegistry:
    settings = PromptSettings(SelectionParams(min_text_score=0.2), max_persistent)
    registry = PromptRegistry(board, sink, lambda: settings, clip)
    registry.start()
    return registry


def test_a_persistent_prompt_is_left_alone_by_new_frames_until_its_first_answer_decides_what_it_follows(
        board: FrameBoard) -> None:
    """Stored before its first answer, the worker ran its rules on a newer frame (CLIP twice, maybe another
    object than the user was told)."""
    sink, clip, tracker = Sink(), GatedClip(), InstanceTracker()
    prompts = registry(board, sink, clip)
    first = segmented(board, tracker, 1, [LEFT, RIGHT])
    prompts.request(Prompt(id="thing", text="the right one"), first.stamp_ns, first.header, persistent=True)
    assert clip.entered.wait(5)
    second = segmented(board, tracker, 2, [LEFT, RIGHT])
    assert prompts.on_frame(second, tracker) == ([], []), "answered on a new frame before its first answer"
    clip.gate.set()
    (answer,) = sink.wait(1)
    assert answer.status is Status.OK and np.array_equal(answer.objects[0].mask, RIGHT)
    third = segmented(board, tracker, 3, [RIGHT, LEFT])  # order changes: the track, not the index, is followed
    (followed,), _ = prompts.on_frame(third, tracker)
    assert np.array_equal(followed.objects[0].mask, RIGHT)
    assert followed.objects[0].track_id == answer.objects[0].track_id
    assert clip.calls == 1, "CLIP runs once per persistent prompt, for its first answer"
    prompts.stop(1)


def test_a_prompt_cleared_before_its_first_answer_stays_cleared(board: FrameBoard) -> None:
    sink, clip, tracker = Sink(), GatedClip(), InstanceTracker()
    prompts = registry(board, sink, clip)
    frame = segmented(board, tracker, 1, [LEFT, RIGHT])
    prompts.request(Prompt(id="thing", text="the right one"), 0, frame.header, persistent=True)
    assert clip.entered.wait(5)
    assert prompts.clear_persistent("thing") == ["thing"]
    clip.gate.set()
    sink.wait(1)
    assert len(prompts) == 0 and prompts.on_frame(segmented(board, tracker, 2, [LEFT]), tracker) == ([], [])
    prompts.stop(1)


def test_persistent_prompts_past_the_limit_are_refused_and_a_replacement_is_not_one_more(board: FrameBoard) -> None:
    sink, tracker = Sink(), InstanceTracker()
    prompts = registry(board, sink, max_persistent=2)
    frame = segmented(board, tracker, 1, [LEFT, RIGHT])
    for prompt_id in ("a", "b", "a", "c"):
        prompts.request(Prompt(id=prompt_id, points=((10.0, 10.0),), labels=(1,)), 1, frame.header, persistent=True)
    statuses = [(s.prompt_id, s.status) for s in sink.wait(4)]
    assert statuses == [("a", Status.OK), ("b", Status.OK), ("a", Status.OK), ("c", Status.INVALID)]
    assert "max_persistent_prompts 2" in sink.sent[-1][0].reason
    prompts.stop(1)


def test_closing_the_board_answers_a_prompt_waiting_for_a_frame_at_once(board: FrameBoard) -> None:
    sink = Sink()
    prompts = registry(board, sink)
    board.slot.put(Incoming(7, None))  # a frame on its way, never segmented
    prompts.request(Prompt(id="waits", points=((10.0, 10.0),), labels=(1,)), 7, "request header")
    board.close()
    (answer,) = sink.wait(1, timeout=2)
    assert answer.status is Status.FRAME_NOT_AVAILABLE and answer.reason == "the node is not active"
    assert prompts.stop(1)


def test_a_new_activation_forgets_the_frames_of_the_last(board: FrameBoard) -> None:
    tracker = InstanceTracker()
    segmented(board, tracker, 5, [LEFT])
    board.close()
    board.open()
    assert board.cache.get(0) is None and board.why_missing(0).startswith("no frame has been segmented since")


def test_a_click_that_selects_nothing_ends_its_following_and_one_that_loses_its_object_too(board: FrameBoard) -> None:
    sink, tracker = Sink(), InstanceTracker()
    prompts = registry(board, sink)
    first = segmented(board, tracker, 1, [LEFT, RIGHT])
    prompts.request(Prompt(id="click", points=((10.0, 10.0),), labels=(1,)), 1, first.header, persistent=True,
                    ends_on_miss=True)
    assert sink.wait(1)[0].status is Status.OK and len(prompts) == 1
    (followed,), _ = prompts.on_frame(segmented(board, tracker, 2, [LEFT, RIGHT]), tracker)
    assert followed.status is Status.OK and len(prompts) == 1, "a click follows what it selected"
    prompts.request(Prompt(id="click", points=((30.0, 38.0),), labels=(1,)), 2, first.header, persistent=True,
                    ends_on_miss=True)  # between the two objects: nothing
    assert sink.wait(2)[1].status is Status.NO_MATCH
    assert len(prompts) == 0, "a click on nothing ends the following"
    prompts.request(Prompt(id="click", points=((10.0, 10.0),), labels=(1,)), 2, first.header, persistent=True,
                    ends_on_miss=True)
    assert sink.wait(3)[2].status is Status.OK
    statuses = []
    for stamp in range(3, 100):  # the object leaves: lost for track_lost_frames, then no_match, which ends it
        (answer,), _ = prompts.on_frame(segmented(board, tracker, stamp, [RIGHT]), tracker)
        statuses.append(answer.status)
        if not len(prompts):
            break
    assert set(statuses[:-1]) == {Status.LOST} and statuses[-1] is Status.NO_MATCH
    prompts.stop(1)
