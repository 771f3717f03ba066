"""Does an overlay show a given selection? Pairs the node's ``debug_image`` with the prompt it answers.

``fastsam_ros.overlay`` fills a selected object with ``(1 - SELECTION_ALPHA) * pixel + SELECTION_ALPHA * colour``,
so every filled pixel lies, per channel, between ``SELECTION_ALPHA * colour`` and that plus
``(1 - SELECTION_ALPHA) * 255``. An overlay shows a selection when most of the selected mask's inside (its
outline, tag and prompt dots excepted) is in that band, clearly more than in the raw frame.
"""

from __future__ import annotations

import cv2
import numpy as np

from fastsam_ros.overlay import SELECTION_ALPHA, highlight_color

TOLERANCE = 3  # rounding in cv2.addWeighted
MIN_FILLED = 0.75  # share of the mask's inside in the band in a matching overlay
MIN_GAIN = 0.25  # ... and at least this much more than in the raw frame
OUTLINE_PX = 6  # the thick outline and its dark edge reach this far inside the mask


def in_fill_band(image_bgr: np.ndarray, color: tuple[int, int, int], alpha: float = SELECTION_ALPHA) -> np.ndarray:
    """``(H, W)`` bool: pixels that a fill of ``color`` at ``alpha`` could have produced."""
    low = np.array(color, dtype=np.float64) * alpha - TOLERANCE
    high = low + (1.0 - alpha) * 255.0 + 2 * TOLERANCE
    pixels = image_bgr.astype(np.float64)
    return np.all((pixels >= low) & (pixels <= high), axis=2)


def mask_inside(mask: np.ndarray) -> np.ndarray:
    """The mask without the band its outline covers (the mask itself when that leaves too little)."""
    inside = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=OUTLINE_PX).astype(bool)
    return inside if np.count_nonzero(inside) >= 50 else mask.astype(bool)


def shows_selection(overlay_bgr: np.ndarray, frame_bgr: np.ndarray, mask: np.ndarray,
                    color: tuple[int, int, int] = highlight_color(0)) -> bool:
    """True when ``overlay_bgr`` (drawn on ``frame_bgr``) fills ``mask`` in ``color``.

    ``color`` defaults to the first prompt's: the node's overlay for one answered prompt draws only that prompt.
    """
    inside = mask_inside(mask)
    if not inside.any() or overlay_bgr.shape != frame_bgr.shape:
        return False
    filled = float(in_fill_band(overlay_bgr, color)[inside].mean())
    before = float(in_fill_band(frame_bgr, color)[inside].mean())
    return filled >= MIN_FILLED and filled - before >= MIN_GAIN
