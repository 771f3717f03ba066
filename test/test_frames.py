"""Newest-frame slot and stamp-keyed frame cache."""

from __future__ import annotations

import threading

import numpy as np

from fastsam_ros.ros.frames import Frame, FrameCache, LatestSlot
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
