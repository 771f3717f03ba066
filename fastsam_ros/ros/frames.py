"""Frame bookkeeping for a live stream: the newest-frame slot, the cache of segmented frames, and the board where
prompts wait for the frame they name.

The camera thread only drops frames into :class:`LatestSlot`; the inference thread takes the newest
one, so a slow model never works on a stale frame. :class:`FrameCache` keeps the last few segmented
frames by stamp, so prompts are answered without running the network again. :class:`FrameBoard` ties the two
together for one activation of the node: it starts empty, so nothing from before a deactivate is ever answered on.
"""

from __future__ import annotations

import threading
import time
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
    track_ids: np.ndarray | None = None  # (N,) stable instance ids while tracking is on
    track_epoch: int = 0  # the tracker's epoch that gave ``track_ids`` (ids restart when it changes)


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

    def get(self, stamp_ns: int, tolerance_ns: int = 0) -> Frame | None:
        """The frame with this stamp, else the nearest within ``tolerance_ns`` (the newer of two as near);
        ``stamp_ns == 0`` means the newest frame."""
        with self._lock:
            if stamp_ns == 0:
                return next(reversed(self._frames.values()), None)
            exact = self._frames.get(stamp_ns)
            if exact is not None or tolerance_ns <= 0 or not self._frames:
                return exact
            nearest = min(self._frames, key=lambda stamp: (abs(stamp - stamp_ns), -stamp))
            return self._frames[nearest] if abs(nearest - stamp_ns) <= tolerance_ns else None

    def __len__(self) -> int:
        with self._lock:
            return len(self._frames)


REJECTED_FRAMES_KEPT = 32  # stamps of rejected frames remembered, so prompts for them say why


class FrameBoard:
    """Where prompts meet frames during one activation: the newest-frame slot the worker takes from, the segmented
    frames by stamp, and why recent frames were rejected (thread-safe).

    A prompt for a frame that is still in the slot or being segmented waits for it here. :meth:`close` (deactivate)
    wakes every waiter; :meth:`open` (activate) starts from nothing, so a prompt stamped zero ("the newest frame")
    is never answered on a frame from before the node was deactivated. A prompt's stamp names a frame within
    ``tolerance_ns`` of it (the nearest): GUIs and other nodes stamp prompts with their own clock, not the frame's.
    """

    def __init__(self, capacity: int, tolerance_ns: int = 0) -> None:
        self._capacity = capacity
        self.tolerance_ns = tolerance_ns  # live: read by every lookup
        self._changed = threading.Condition()
        self.slot: LatestSlot[Any] = LatestSlot()
        self.cache = FrameCache(capacity)
        self._rejected: OrderedDict[int, str] = OrderedDict()
        self._open = False
        self.slot.close()

    def open(self) -> None:
        """Start a new activation with no frames."""
        with self._changed:
            self.slot, self.cache, self._open = LatestSlot(), FrameCache(self._capacity), True
            self._rejected.clear()

    def close(self) -> None:
        """Take no more frames; the worker's ``take`` and every waiting prompt return at once."""
        with self._changed:
            self._open = False
            self.slot.close()
            self._changed.notify_all()

    @property
    def is_open(self) -> bool:
        return self._open

    def finished(self, frame: Frame) -> None:
        """A frame is segmented: cache it and wake the prompts waiting for it."""
        with self._changed:
            self.cache.put(frame)
            self._changed.notify_all()

    def rejected(self, stamp_ns: int, reason: str) -> None:
        with self._changed:
            self._rejected[stamp_ns] = reason
            while len(self._rejected) > REJECTED_FRAMES_KEPT:
                self._rejected.popitem(last=False)
            self._changed.notify_all()

    def released(self) -> None:
        """The worker is done with the frame it took (segmented, rejected or failed)."""
        self.slot.done()
        with self._changed:
            self._changed.notify_all()

    def must_wait(self, stamp_ns: int) -> bool:
        """Whether a prompt for ``stamp_ns`` (0: the newest) would wait for a frame still on its way."""
        tolerance = self.tolerance_ns
        if not self._open or self.cache.get(stamp_ns, tolerance) is not None:
            return False
        pending = [item.stamp_ns for item in self.slot.pending()]
        return bool(pending) and (stamp_ns == 0 or any(abs(stamp - stamp_ns) <= tolerance for stamp in pending))

    def wait_for(self, stamp_ns: int, timeout: float) -> Frame | None:
        """The frame for ``stamp_ns`` (0: the newest), waiting up to ``timeout`` s while it is still on its way."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while self.must_wait(stamp_ns):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self.cache.get(stamp_ns, self.tolerance_ns) if self._open else None

    def why_missing(self, stamp_ns: int) -> str:
        """Why there is no frame for ``stamp_ns``: for the ``frame_not_available`` answer."""
        with self._changed:
            if not self._open:
                return "the node is not active"
            if stamp_ns in self._rejected:
                return f"frame {stamp_ns} ns was rejected: {self._rejected[stamp_ns]}"
        if stamp_ns == 0:
            return "no frame has been segmented since the node was activated"
        within = f" (nor within stamp_tolerance {self.tolerance_ns / 1e9:g} s)" if self.tolerance_ns else ""
        return f"frame {stamp_ns} ns is not among the {len(self.cache)} cached frames{within}"
