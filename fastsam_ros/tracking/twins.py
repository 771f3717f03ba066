"""Twins: the model often shows one object as two near-identical masks, and each gets a track of its own.

When the model later keeps only one of the two masks, the track of the other is lost although its object is in
plain view: a followed object vanished while its twin went on (``make eval-track``'s hard crossings). Tracks whose
instances of one frame overlap by at least ``TWIN_IOU`` are twins while both live (the latest pairing wins), and a
lost track continues in the instance its twin carries (:class:`Twins`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

TWIN_IOU = 0.8  # two instances of one frame this alike are the model's duplicate masks of one object


class Twins:
    """Each live track's twin, by track id."""

    def __init__(self) -> None:
        self._of: dict[int, int] = {}

    def update(self, alive: set[int], ids: np.ndarray, first: np.ndarray, second: np.ndarray,
               overlap: np.ndarray) -> None:
        """Forget the pairs of tracks no longer ``alive``, then pair ``ids[first[k]]`` with ``ids[second[k]]``: this
        frame's instance pairs overlapping at least ``TWIN_IOU`` (any order; the best overlap wins)."""
        if self._of:
            self._of = {track: twin for track, twin in self._of.items() if track in alive and twin in alive}
        pairs = np.flatnonzero(first != second)
        pairs = pairs[np.argsort(overlap[pairs], kind="stable")]  # the best pair last: it wins
        self._of.update(zip(ids[first[pairs]].tolist(), ids[second[pairs]].tolist(), strict=True))

    def continuing(self, lost: Iterable[int], continued: Mapping[int, int]) -> dict[int, int]:
        """Track id -> instance, for the ``lost`` tracks (not in ``continued``) whose twin is in ``continued``
        (track id -> the instance it continues in this frame)."""
        return {track: continued[self._of[track]] for track in lost
                if track not in continued and self._of.get(track) in continued}
