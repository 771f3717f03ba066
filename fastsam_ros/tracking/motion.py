"""Camera motion between two frames of a stream, for the tracker: phase correlation of the frames' central field
shrunk to a small grey picture (or of the masks' density without the frame), choosing among its strongest peaks the
shift that explains most of the picture, so that an object walking across the view does not carry the estimate."""

from __future__ import annotations

import math

import cv2
import numpy as np

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


def phase_peaks(previous: np.ndarray, picture: np.ndarray, window: np.ndarray) -> list[tuple[np.ndarray, float]]:
    """The ``MOTION_PEAKS`` strongest peaks of the phase correlation of two pictures: ``(shift (dx, dy) from
    ``previous`` to ``picture``, response)`` each, the shift to a tenth of a pixel (centroid of the 3x3 around the
    peak), the response the surface's sum there (1 for a pure shift). A large object moving on its own (someone
    walking past the camera) makes a peak of its own beside the background's."""
    spectrum = np.fft.rfft2(picture * window) * np.conj(np.fft.rfft2(previous * window))
    surface = np.fft.irfft2(spectrum / np.maximum(np.abs(spectrum), 1e-12), s=picture.shape)
    height, width = surface.shape
    near, around = np.arange(-1, 2), np.arange(-2, 3)
    peaks = []
    for _ in range(MOTION_PEAKS):
        row, column = np.unravel_index(int(np.argmax(surface)), surface.shape)
        patch = np.clip(surface[np.ix_((row + near) % height, (column + near) % width)], 0.0, None)
        response = float(patch.sum())
        if response <= 0:
            break
        dy = (row + patch.sum(axis=1) @ near / response + height / 2) % height - height / 2
        dx = (column + patch.sum(axis=0) @ near / response + width / 2) % width - width / 2
        peaks.append((np.array([dx, dy]), response))
        surface[np.ix_((row + around) % height, (column + around) % width)] = -np.inf
    return peaks


def misfit(previous: np.ndarray, picture: np.ndarray, shift: np.ndarray) -> float:
    """How badly ``previous`` moved by ``shift`` (whole pixels) explains ``picture``: the mean absolute difference
    over their overlap, each pixel's capped at ``MISFIT_CAP`` so that the share of the picture that moves
    otherwise counts, not how different it looks."""
    dx, dy = (int(round(value)) for value in shift)
    height, width = picture.shape
    if abs(dx) >= width or abs(dy) >= height:
        return math.inf
    now = picture[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)]
    before = previous[max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)]
    return float(np.minimum(np.abs(now - before), MISFIT_CAP).mean())


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
