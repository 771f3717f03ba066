"""Whole extents: where a lost track's whole object lies, so that a part of it coming back is known as its own.

An object that another one crosses is seen shrinking as it is covered: its last mask before it is hidden is the
part still uncovered on one side, and it comes back on the other side first. That part overlaps the last mask
little (IoU 0.1-0.3 on the eval's hard crossings) and holds little of it, so it neither continues the track nor
takes it back (:mod:`fastsam_ros.tracking.takeover`), although it lies inside the whole object. Each track so
keeps its *extent*: its newest mask that had at least ``EXTENT_SHARE`` of the largest area it was seen with (the
object while whole), moved with the camera since. A lost track may then take back a new or young instance
lying at least ``RETURN_WITHIN`` inside its extent, when the colours agree (the takeover's other conditions).
The occluder, the same size but passing below or above, never lies that much inside it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

EXTENT_SHARE = 0.9  # a mask with this share of the largest area of its track shows the whole object
RETURN_WITHIN = 0.8  # a lost track takes back an instance with this share of its cells inside the track's extent


@dataclass
class Extents:
    """Per track row: its extent's packed grid mask, the mask's bounds, the camera motion since (grid cells), and
    the largest area (cells) the track was seen with."""

    masks: np.ndarray  # (T, grid rows) uint64
    boxes: np.ndarray  # (4, T) int64 (top, bottom, left, right)
    offsets: np.ndarray  # (T, 2) float
    areas: np.ndarray  # (T,) int64

    @classmethod
    def empty(cls) -> Extents:
        return cls(np.zeros((0, 0), np.uint64), np.zeros((4, 0), np.int64), np.zeros((0, 2)), np.zeros(0, np.int64))

    def updated(self, kept: np.ndarray, carried: np.ndarray, grid: np.ndarray, boxes: np.ndarray,
                areas: np.ndarray) -> Extents:
        """The extents of the track rows ``kept`` (unchanged), then of this frame's instances (``grid``, bounds
        ``boxes``, cells ``areas``): an instance's own mask, except one that carries track row ``r``
        (``carried[r]``) with under ``EXTENT_SHARE`` of ``r``'s largest area, which keeps ``r``'s extent."""
        masks, bounds, offsets, largest = grid.copy(), boxes.copy(), np.zeros((len(grid), 2)), areas.copy()
        rows = np.flatnonzero(carried >= 0)
        if not len(self.masks):  # no tracks yet: (0, 0) masks
            return Extents(masks, bounds, offsets, largest)
        instances = carried[rows]
        largest[instances] = np.maximum(areas[instances], self.areas[rows])
        part = areas[instances] < EXTENT_SHARE * self.areas[rows]
        masks[instances[part]], offsets[instances[part]] = self.masks[rows[part]], self.offsets[rows[part]]
        bounds[:, instances[part]] = self.boxes[:, rows[part]]
        return Extents(np.concatenate([self.masks[kept], masks]),
                       np.concatenate([self.boxes[:, kept], bounds], axis=1),
                       np.concatenate([self.offsets[kept], offsets]), np.concatenate([self.areas[kept], largest]))
