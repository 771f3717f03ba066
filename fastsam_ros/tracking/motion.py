"""Camera motion between two frames of a stream, for the tracker: phase correlation of the frames' central field
shrunk to a small grey picture (or of the masks' density without the frame), choosing among its strongest peaks the
shift that explains most of the picture, so that an object walking across the view does not carry the estimate."""

from __future__ import annotations

import math

import cv2
import numpy as np
from numba import njit

MOTION_WIDTH = 96  # the picture is shrunk to this width to measure camera motion (72 rows at 4:3)
# The part of the frame (per side) the motion is measured on: the phase correlation's Hanning window weighs the outer
# fifth on each side at most 35 %, and not reading it saves two thirds of the frame's memory traffic (at 640x480 the
# central 384x288 halves exactly, twice, to 96x72).
MOTION_FIELD = 0.6
MOTION_PEAKS = 2  # phase-correlation peaks weighed (the background's, and one object's moving on its own)
MISFIT_CAP = 16.0  # grey levels: a pixel's misfit counts at most this (a moving object's pixels count as many)
# A picture (frame field shrunk, or grid density) thinner than this on a side has no usable phase correlation: the
# camera motion is taken as zero (frames of 1xN, Nx1 or a few pixels).
MIN_MOTION_SIDE = 8
MAX_MOTION_ASPECT = 4  # a shrunk frame field taller than this many times its width: motion from the masks


def spectrum(picture: np.ndarray, window: np.ndarray) -> np.ndarray:
    """The windowed picture's 2D spectrum, ``(h, w, 2)`` float32 (real, imaginary): kept with the picture, so that
    each frame transforms only its own."""
    return cv2.dft(picture * window, flags=cv2.DFT_COMPLEX_OUTPUT)


def camera_shift(previous: np.ndarray, picture: np.ndarray, previous_spectrum: np.ndarray,
                 picture_spectrum: np.ndarray, min_response: float) -> np.ndarray | None:
    """The shift ``(dx, dy)`` from ``previous`` to ``picture`` that explains most of the picture, or None when no
    peak of their phase correlation reaches ``min_response``.

    Of the ``MOTION_PEAKS`` strongest peaks of the phase correlation (a large object moving on its own, someone
    walking past the camera, makes a peak of its own beside the background's), each to a tenth of a pixel (centroid
    of the 3x3 around it) with its response (the surface's sum there: 1 for a pure shift), the one whose whole-pixel
    shift leaves the least misfit: the mean absolute difference over the pictures' overlap, each pixel's capped at
    ``MISFIT_CAP`` so that the share of the picture that moves otherwise counts, not how different it looks. Two
    OpenCV transforms and two compiled passes: a frame's worth of numpy calls cost ~0.4 ms right after inference.
    """
    cross = _normalised_cross_power(picture_spectrum, previous_spectrum)
    surface = cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE)
    shift = _best_peak(surface, previous, picture, min_response, MOTION_PEAKS, MISFIT_CAP)
    return shift if np.isfinite(shift).all() else None


@njit(cache=True, nogil=True)
def _normalised_cross_power(current, previous):
    """``current * conj(previous)`` divided by its magnitude, per frequency (``(h, w, 2)`` real and imaginary)."""
    out = np.empty_like(current)
    for y in range(current.shape[0]):
        for x in range(current.shape[1]):
            a_re, a_im, b_re, b_im = current[y, x, 0], current[y, x, 1], previous[y, x, 0], previous[y, x, 1]
            real, imaginary = a_re * b_re + a_im * b_im, a_im * b_re - a_re * b_im
            magnitude = max(math.sqrt(real * real + imaginary * imaginary), 1e-12)
            out[y, x, 0], out[y, x, 1] = real / magnitude, imaginary / magnitude
    return out


@njit(cache=True, nogil=True)
def _best_peak(surface, previous, picture, min_response, peaks, cap):
    """:func:`camera_shift`'s choice among the ``peaks`` strongest peaks of ``surface`` (changed: each peak's 5x5 is
    cleared for the next); NaNs when none reaches ``min_response``."""
    height, width = surface.shape
    best, least = np.full(2, np.nan), np.inf
    for _ in range(peaks):
        top = np.argmax(surface)
        row, column = top // width, top % width
        response, by_row, by_column = 0.0, np.zeros(3), np.zeros(3)
        for i in range(3):
            for j in range(3):
                value = max(surface[(row + i - 1) % height, (column + j - 1) % width], 0.0)
                response += value
                by_row[i] += value
                by_column[j] += value
        if response <= 0:
            break
        dy = (row + (by_row[2] - by_row[0]) / response + height / 2) % height - height / 2
        dx = (column + (by_column[2] - by_column[0]) / response + width / 2) % width - width / 2
        for i in range(-2, 3):
            for j in range(-2, 3):
                surface[(row + i) % height, (column + j) % width] = -np.inf
        shift_x, shift_y = int(np.rint(dx)), int(np.rint(dy))
        if response < min_response or abs(shift_x) >= width or abs(shift_y) >= height:
            continue
        total = 0.0
        for y in range(max(shift_y, 0), height + min(shift_y, 0)):
            for x in range(max(shift_x, 0), width + min(shift_x, 0)):
                total += min(abs(picture[y, x] - previous[y - shift_y, x - shift_x]), cap)
        misfit = total / ((height - abs(shift_y)) * (width - abs(shift_x)))
        if misfit < least:
            best[0], best[1], least = dx, dy, misfit
    return best


def shrunk(image: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The central ``MOTION_FIELD`` of the frame in grey (float32), ``MOTION_WIDTH`` wide, and the frame pixels per
    pixel of it: halved by bilinear steps (a 2x2 box filter each, no aliasing, cheaper than one area resize), then
    resized the rest of the way. None for a field under ``MIN_MOTION_SIDE`` pixels on a side, or one that would
    shrink to fewer than ``MIN_MOTION_SIDE`` rows or more than ``MAX_MOTION_ASPECT`` times its width (a 5000x1
    frame would shrink to 0 rows, a 1x5000 one to 480000): its motion is measured on the masks."""
    height, width = image.shape[:2]
    # Sizes of 4k: OpenCV halves exact 2x sizes by its fast 2x2 area path (others by the slower bilinear one).
    rows, columns = (min(size, 4 * max(1, round(size * MOTION_FIELD / 4))) for size in (height, width))
    if min(rows, columns) < MIN_MOTION_SIDE or not (
            MIN_MOTION_SIDE <= rows * MOTION_WIDTH / columns <= MAX_MOTION_ASPECT * MOTION_WIDTH):
        return None
    top, left = (height - rows) // 2, (width - columns) // 2
    small = image[top : top + rows, left : left + columns]
    while small.shape[1] >= 2 * MOTION_WIDTH:
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    if small.shape[1] != MOTION_WIDTH:
        small = cv2.resize(small, (MOTION_WIDTH, max(1, round(rows * MOTION_WIDTH / columns))),
                           interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY).astype(np.float32), columns / MOTION_WIDTH


def density(masks: np.ndarray, width: int) -> np.ndarray:
    """``(h, width)`` float32: how many of the ``(K, h)`` packed masks cover each grid cell."""
    bits = np.unpackbits(masks.view(np.uint8).reshape(*masks.shape, 8), axis=-1, bitorder="little")
    return bits[:, :, :width].sum(axis=0, dtype=np.float32)
