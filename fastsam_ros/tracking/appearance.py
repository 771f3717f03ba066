"""Appearance of masks: a colour histogram read from the frame at the association grid's points.

A track keeps the histogram of its first mask; the tracker compares it with each candidate instance's by the
Bhattacharyya coefficient (the dot product of the histograms' square roots) to refuse another object of the
same class that crosses a followed one (:mod:`fastsam_ros.tracking.tracker`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

APPEARANCE_LEVELS = 4  # colour levels per channel of the appearance histogram (64 bins)
MIN_APPEARANCE_CELLS = 40  # masks on fewer grid cells have no appearance (too few samples to compare)


def image_points(geometry: Any, step: int, first: int) -> tuple[np.ndarray, np.ndarray]:
    """The image rows and columns under the association grid's points (every ``step`` mask pixels from ``first``)."""
    left, top, width, height = geometry.content
    image_height, image_width = geometry.image_shape
    rows = np.arange(first, geometry.mask_shape[0], step)
    columns = np.arange(first, geometry.mask_shape[1], step)
    rows = np.clip(((rows + 0.5 - top) * image_height / height).astype(np.int64), 0, image_height - 1)
    columns = np.clip(((columns + 0.5 - left) * image_width / width).astype(np.int64), 0, image_width - 1)
    return rows, columns


def appearance(grid: np.ndarray, boxes: np.ndarray, image: np.ndarray, points: tuple[np.ndarray, np.ndarray]
                ) -> np.ndarray:
    """``(K, 64)`` float32 square roots of each mask's colour histogram (the frame read at the grid points, 4 levels
    per channel), so that a pair's Bhattacharyya coefficient is their dot product; zeros for masks under
    ``MIN_APPEARANCE_CELLS`` cells."""
    rows, columns = points
    picture = image[rows[:, None], columns[None, :]] if image.ndim == 3 else None
    if picture is None or picture.shape[-1] != 3:
        return np.zeros((len(grid), APPEARANCE_LEVELS**3), np.float32)
    level = (picture.astype(np.int64) * APPEARANCE_LEVELS) // 256
    bins = (level[..., 0] * APPEARANCE_LEVELS + level[..., 1]) * APPEARANCE_LEVELS + level[..., 2]
    counts = histograms(grid, boxes, np.ascontiguousarray(bins), APPEARANCE_LEVELS**3)
    totals = counts.sum(axis=1, keepdims=True)
    return np.where(totals >= MIN_APPEARANCE_CELLS, np.sqrt(counts / np.maximum(totals, 1)), 0).astype(np.float32)


@njit(cache=True, nogil=True)
def histograms(masks, boxes, bins, size):
    """``(K, size)`` float32 counts of ``bins`` (``(h, w)``) under each ``(K, h)`` packed mask (bounds ``boxes``)."""
    out = np.zeros((len(masks), size), np.float32)
    for k in range(len(masks)):
        for row in range(boxes[0, k], min(boxes[1, k], bins.shape[0])):
            word = masks[k, row]
            for column in range(boxes[2, k], min(boxes[3, k], bins.shape[1])):
                if (word >> np.uint64(column)) & np.uint64(1):
                    out[k, bins[row, column]] += 1
    return out
