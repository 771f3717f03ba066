"""Colour frames paired with depth by stamp: exact, nearest within the tolerance, depth before and after."""

from __future__ import annotations

import threading
import time

import pytest

from fastsam_ros.depth.pairing import StampPairer

MS = 1_000_000


def pairer(tolerance_ms: float = 10, capacity: int = 5, remembered: int = 3) -> StampPairer[str]:
    return StampPairer(int(tolerance_ms * MS), capacity, remembered)


def test_exact_stamp_wins_over_a_nearer_looking_neighbour() -> None:
    depth = pairer()
    for stamp in (990, 1000, 1001):
        depth.add(stamp * MS, f"d{stamp}")
    assert depth.pair(1000 * MS).item == "d1000"


def test_nearest_within_the_tolerance_before_or_after_the_frame() -> None:
    depth = pairer(tolerance_ms=10)
    depth.add(100 * MS, "before")
    depth.add(140 * MS, "after")
    assert depth.pair(104 * MS).item == "before"
    paired = depth.pair(133 * MS)
    assert (paired.item, paired.stamp_ns) == ("after", 140 * MS)
    missing = depth.pair(120 * MS)
    assert missing.item is None and missing.reason == "no depth image within 0.010 s of the frame (nearest 0.020 s " \
                                                      "before it)"


def test_nothing_received_says_so() -> None:
    paired = pairer().pair(5 * MS)
    assert paired.item is None and paired.reason == "no depth image received yet"


def test_depth_arriving_after_its_frame_is_waited_for() -> None:
    depth = pairer()
    depth.add(100 * MS, "previous")  # 10 ms before: within the tolerance, but the exact one is on its way
    threading.Timer(0.05, depth.add, (110 * MS, "own")).start()
    started = time.monotonic()
    assert depth.pair(110 * MS, wait_s=2.0).item == "own"
    assert time.monotonic() - started < 1.0  # woken by the arrival, not by the timeout


def test_waiting_ends_at_the_limit_with_the_best_there_is() -> None:
    depth = pairer()
    depth.add(100 * MS, "previous")
    started = time.monotonic()
    assert depth.pair(105 * MS, wait_s=0.1).item == "previous"
    assert 0.09 <= time.monotonic() - started < 1.0


def test_no_wait_once_depth_at_or_after_the_frame_is_in() -> None:
    depth = pairer()
    depth.add(100 * MS, "a")
    depth.add(120 * MS, "b")
    started = time.monotonic()
    assert depth.pair(112 * MS, wait_s=5.0).item == "b"
    assert time.monotonic() - started < 0.5


def test_pairs_are_remembered_after_the_buffer_moved_on() -> None:
    depth = pairer(capacity=2, remembered=2)
    depth.add(100 * MS, "a")
    assert depth.pair(100 * MS).item == "a"
    for stamp in (200, 300, 400):
        depth.add(stamp * MS, f"d{stamp}")
    assert depth.pair(100 * MS).item == "a"  # remembered
    assert depth.pair(300 * MS).item == "d300"
    assert depth.pair(400 * MS).item == "d400"
    assert depth.pair(100 * MS).item is None  # forgotten after two newer pairs, and gone from the buffer


def test_a_stopped_stream_or_none_at_all_is_not_waited_for() -> None:
    depth = pairer()
    started = time.monotonic()
    assert depth.pair(100 * MS, wait_s=5.0).reason == "no depth image received yet"
    depth.add(100 * MS, "old")
    assert depth.pair(1200 * MS, wait_s=5.0).reason.startswith("no depth image within 0.010 s")
    assert time.monotonic() - started < 0.5


def test_close_wakes_a_waiting_pair() -> None:
    depth = pairer()
    depth.add(90 * MS, "earlier")
    threading.Timer(0.05, depth.close).start()
    started = time.monotonic()
    assert depth.pair(100 * MS, wait_s=5.0).item == "earlier"  # the best there is, at once
    assert time.monotonic() - started < 1.0


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        StampPairer(-1, 1, 1)
    with pytest.raises(ValueError):
        StampPairer(0, 0, 1)
