"""Colour frames paired with depth images by stamp (thread-safe, no ROS).

Depth comes on its own topic, a little before or after the colour frame it belongs to (RealSense aligns depth
to colour after both arrive; a ZED stamps both alike). :class:`StampPairer` keeps the last few items by stamp
and gives a frame the item with its exact stamp, or the nearest within a tolerance; when that item may still
be on its way (nothing at or after the frame's stamp yet, and the stream is live) it waits for it, up to a limit.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
LIVE_NS = 1_000_000_000  # a stream whose newest item is older than this (before the frame) is not waited for


@dataclass(frozen=True)
class Paired(Generic[T]):
    """The item paired with a frame, or None and the reason."""

    item: T | None
    stamp_ns: int = 0  # the item's stamp
    reason: str = ""


class StampPairer(Generic[T]):
    """The last ``capacity`` items by stamp; :meth:`pair` matches a frame's stamp to one of them.

    Successful pairs are remembered for the last ``remembered`` frames, so every prompt on a cached frame gets
    the same item after the buffer has moved on. Stamps are nanoseconds and expected to increase.
    """

    def __init__(self, tolerance_ns: int, capacity: int, remembered: int, what: str = "depth image") -> None:
        if tolerance_ns < 0 or capacity <= 0 or remembered <= 0:
            raise ValueError("a pairer needs a tolerance >= 0 and room for at least one item and one pair")
        self._tolerance_ns = tolerance_ns
        self._capacity = capacity
        self._remembered = remembered
        self._what = what
        self._items: OrderedDict[int, T] = OrderedDict()
        self._pairs: OrderedDict[int, Paired[T]] = OrderedDict()
        self._newest_ns: int | None = None
        self._changed = threading.Condition()
        self._closed = False

    def add(self, stamp_ns: int, item: T) -> None:
        with self._changed:
            self._items[stamp_ns] = item
            self._items.move_to_end(stamp_ns)
            while len(self._items) > self._capacity:
                self._items.popitem(last=False)
            self._newest_ns = stamp_ns if self._newest_ns is None else max(self._newest_ns, stamp_ns)
            self._changed.notify_all()

    def pair(self, stamp_ns: int, wait_s: float = 0.0) -> Paired[T]:
        """The item for the frame stamped ``stamp_ns``: exact, else the nearest within the tolerance.

        Waits up to ``wait_s`` while no item at or after ``stamp_ns`` has arrived (a nearer one may still come),
        unless nothing has come for ``LIVE_NS`` before the frame: a stopped stream costs no waiting.
        """
        with self._changed:
            if stamp_ns in self._pairs:
                return self._pairs[stamp_ns]
            self._changed.wait_for(lambda: self._closed or self._settled(stamp_ns), timeout=max(wait_s, 0.0))
            paired = self._nearest(stamp_ns)
            if paired.item is not None:
                self._pairs[stamp_ns] = paired
                while len(self._pairs) > self._remembered:
                    self._pairs.popitem(last=False)
            return paired

    def _settled(self, stamp_ns: int) -> bool:
        """Whether waiting is pointless: the exact item is here, one at or after the frame, or the stream is dead."""
        return stamp_ns in self._items or self._newest_ns is None or self._newest_ns >= stamp_ns or \
            self._newest_ns < stamp_ns - LIVE_NS

    def _nearest(self, stamp_ns: int) -> Paired[T]:
        if not self._items:
            return Paired(None, reason=f"no {self._what} received yet")
        nearest = min(self._items, key=lambda s: abs(s - stamp_ns))
        offset = nearest - stamp_ns
        if abs(offset) <= self._tolerance_ns:
            return Paired(self._items[nearest], stamp_ns=nearest)
        side = "after" if offset > 0 else "before"
        return Paired(None, reason=f"no {self._what} within {self._tolerance_ns / 1e9:.3f} s of the frame "
                                   f"(nearest {abs(offset) / 1e9:.3f} s {side} it)")

    def close(self) -> None:
        """Wake every waiting :meth:`pair` (shutdown)."""
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def clear(self) -> None:
        with self._changed:
            self._items.clear()
            self._pairs.clear()
            self._newest_ns = None
            self._closed = False
