"""Newest-frame slot and stamp-keyed frame cache."""

from __future__ import annotations

import threading

import numpy as np

from fastsam_ros.ros.frames import Frame, FrameBoard, FrameCache, LatestSlot
from fastsam_ros.ros.worker import Incoming
from fastsam_ros.segmentation.masks import MaskGeometry
from fastsam_ros.types import Segmentation


def frame(stamp: int) -> Frame:
    empty = Segmentation(np.zeros((0, 2, 2), bool), np.zeros((0, 4), np.float32), np.zeros(0, np.float32),
                         MaskGeometry((2, 2), (2, 2)))
    return Frame(stamp, header=None, image=np.zeros((2, 2, 3), np.uint8), segmentation=empty)


def test_slot_keeps_only_the_newest_and_counts_drops() -> None:
    slot: LatestSlot[int] = LatestSlot()
    for item in (1, 2, 3):
        slot.put(item)
    assert slot.pending() == [3]
    assert slot.take(timeout=0) == 3
    assert slot.dropped == 2


def test_taken_item_stays_pending_until_done() -> None:
    slot: LatestSlot[int] = LatestSlot()
    slot.put(1)
    assert slot.take(timeout=0) == 1
    assert slot.pending() == [1], "between take and done the item is in flight, never unaccounted for"
    slot.put(2)
    assert slot.pending() == [1, 2]
    slot.done()
    assert slot.pending() == [2]


def test_close_wakes_a_waiting_taker() -> None:
    slot: LatestSlot[int] = LatestSlot()
    result = []
    taker = threading.Thread(target=lambda: result.append(slot.take()))
    taker.start()
    slot.close()
    taker.join(timeout=2)
    assert not taker.is_alive() and result == [None]


def test_cache_evicts_oldest_and_zero_means_newest() -> None:
    cache = FrameCache(capacity=2)
    for stamp in (10, 20, 30):
        cache.put(frame(stamp))
    assert cache.get(10) is None
    assert cache.get(20).stamp_ns == 20
    assert cache.get(0).stamp_ns == 30
    assert len(cache) == 2


def test_cache_answers_the_nearest_frame_within_the_tolerance() -> None:
    cache = FrameCache(capacity=4)
    for stamp in (1_000_000_000, 1_033_000_000):
        cache.put(frame(stamp))
    assert cache.get(1_005_000_000) is None, "no tolerance: exact stamps only"
    assert cache.get(1_005_000_000, tolerance_ns=5_000_000).stamp_ns == 1_000_000_000, "5 ms after its frame"
    assert cache.get(1_030_000_000, tolerance_ns=5_000_000).stamp_ns == 1_033_000_000, "the nearest, not the first"
    assert cache.get(1_016_500_000, tolerance_ns=20_000_000).stamp_ns == 1_033_000_000, "a tie: the newer"
    assert cache.get(1_010_000_000, tolerance_ns=5_000_000) is None, "outside the tolerance of both"
    assert cache.get(1_000_000_000, tolerance_ns=5_000_000).stamp_ns == 1_000_000_000


def test_a_prompt_within_the_tolerance_of_a_frame_on_its_way_waits_for_it() -> None:
    board = FrameBoard(4, tolerance_ns=5_000_000)
    board.open()
    board.slot.put(Incoming(2_000_000_000, None))
    assert board.must_wait(2_004_000_000), "the frame 4 ms before the prompt is still being segmented"
    assert not board.must_wait(2_006_000_000), "6 ms away names no frame: answered at once"
    waiter = threading.Thread(target=lambda: result.append(board.wait_for(2_004_000_000, timeout=5)))
    result: list = []
    waiter.start()
    board.finished(frame(2_000_000_000))
    waiter.join(timeout=5)
    assert result[0].stamp_ns == 2_000_000_000
    board.tolerance_ns = 0  # live: the next lookup reads it
    assert board.wait_for(2_004_000_000, timeout=0) is None
    assert "not among the 1 cached frames" in board.why_missing(2_004_000_000)
