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
    ``MIN_APPEARANCE_CELLS`` cells. One compiled pass: right after inference each numpy call costs tens of
    microseconds (cold caches), and the dozen this took came to 0.1 ms per frame."""
    if image.ndim != 3 or image.shape[2] != 3:
        return np.zeros((len(grid), APPEARANCE_LEVELS**3), np.float32)
    return _appearance(grid, boxes, image, points[0], points[1], APPEARANCE_LEVELS, MIN_APPEARANCE_CELLS)


@njit(cache=True, nogil=True)
def _appearance(masks, boxes, image, rows, columns, levels, min_cells):
    """:func:`appearance` of ``(K, h)`` packed masks (bounds ``boxes``), grid point ``(y, x)`` read at image pixel
    ``(rows[y], columns[x])``."""
    out = histograms(masks, boxes, _bins(image, rows, columns, levels), levels**3)
    for k in range(len(masks)):
        total = np.float32(out[k].sum())
        for b in range(out.shape[1]):
            out[k, b] = np.sqrt(out[k, b] / total) if total >= min_cells else np.float32(0)
    return out


@njit(cache=True, nogil=True)
def _bins(image, rows, columns, levels):
    """``(h, w)`` histogram bin of the BGR pixel under each grid point (``levels`` per channel)."""
    bins = np.empty((len(rows), len(columns)), np.int64)
    for y in range(len(rows)):
        for x in range(len(columns)):
            pixel = image[rows[y], columns[x]]
            bins[y, x] = ((pixel[0] * levels // 256) * levels + pixel[1] * levels // 256) * levels + (
                pixel[2] * levels // 256)
    return bins


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
