"""Frame bookkeeping for a live stream: the newest-frame slot and the cache of segmented frames.

The camera thread only drops frames into :class:`LatestSlot`; the inference thread takes the newest
one, so a slow model never works on a stale frame. :class:`FrameCache` keeps the last few segmented
frames by stamp, so prompts are answered without running the network again.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import numpy as np

from fastsam_ros.types import Segmentation

T = TypeVar("T")


@dataclass(frozen=True)
class Frame:
    """One segmented camera frame: the source header (opaque here), its pixels and every instance."""

    stamp_ns: int
    header: Any
    image: np.ndarray  # HxWx3 uint8 BGR
    segmentation: Segmentation


class LatestSlot(Generic[T]):
    """Holds at most one item; a newer ``put`` replaces an unconsumed one (and counts it as dropped).

    ``take`` marks the item in flight in the same step, until ``done``: so ``pending`` never misses an
    item between the slot and the worker.
    """

    def __init__(self) -> None:
        self._item: T | None = None
        self._in_flight: T | None = None
        self._ready = threading.Condition()
        self._closed = False
        self.dropped = 0

    def put(self, item: T) -> None:
        with self._ready:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._ready.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """The newest item, waiting up to ``timeout`` seconds; None on timeout or after ``close``."""
        with self._ready:
            self._ready.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            self._in_flight = item
            return item

    def done(self) -> None:
        """The taken item is finished (or failed)."""
        with self._ready:
            self._in_flight = None

    def pending(self) -> list[T]:
        """The item being worked on and the one waiting, oldest first."""
        with self._ready:
            return [item for item in (self._in_flight, self._item) if item is not None]

    def close(self) -> None:
        """Wake every waiting ``take`` so a worker thread can exit."""
        with self._ready:
            self._closed = True
            self._ready.notify_all()


class FrameCache:
    """The last ``capacity`` segmented frames, by stamp in nanoseconds (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError("the frame cache needs room for at least one frame")
        self._capacity = capacity
        self._frames: OrderedDict[int, Frame] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, frame: Frame) -> None:
        with self._lock:
            self._frames[frame.stamp_ns] = frame
            self._frames.move_to_end(frame.stamp_ns)
            while len(self._frames) > self._capacity:
                self._frames.popitem(last=False)

    def get(self, stamp_ns: int) -> Frame | None:
        """The frame with this stamp; ``stamp_ns == 0`` means the newest frame."""
        with self._lock:
            if stamp_ns == 0:
                return next(reversed(self._frames.values()), None)
            return self._frames.get(stamp_ns)

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)
