"""FastSAM's published prompt rules, reimplemented as the evaluation's baseline (never used to answer prompts).

These follow ``fastsam/prompt.py`` of the FastSAM repository (CASIA-IVA-Lab/FastSAM), which works on
masks at image resolution (its default ``retina_masks=True``):

* **Points** (``point_prompt``): masks are visited by area, largest first, on a zero canvas; for each
  mask and each point inside it, in prompt order, a foreground point paints the mask's pixels 1 and a
  background point paints them 0 (painter's algorithm). The answer is the canvas.
* **Box** (``box_prompt``): the mask maximising ``|mask ∩ box| / (box_area + mask_area - |mask ∩ box|)``,
  with no threshold and no clipping to the box.

Both take a ``(N, H, W)`` bool stack of masks and prompt coordinates in that stack's pixels.
"""

from __future__ import annotations

import numpy as np

from fastsam_ros.types import BACKGROUND, FOREGROUND, Box


def official_points(
    masks: np.ndarray, points: np.ndarray, labels: np.ndarray, areas: np.ndarray | None = None
) -> np.ndarray:
    """FastSAM's point rule: the ``(H, W)`` bool canvas painted by the masks under the points.

    ``areas`` (pixels per mask) may be passed when already known.
    """
    n, height, width = masks.shape
    canvas = np.zeros((height, width), dtype=bool)
    if n == 0 or len(points) == 0:
        return canvas
    cells = np.floor(np.asarray(points, dtype=np.float64)).astype(np.int64)
    cells[:, 0] = np.clip(cells[:, 0], 0, width - 1)
    cells[:, 1] = np.clip(cells[:, 1], 0, height - 1)
    hits = masks[:, cells[:, 1], cells[:, 0]]  # (N, K)
    areas = masks.reshape(n, -1).sum(axis=1) if areas is None else np.asarray(areas)
    for index in np.argsort(-areas, kind="stable"):  # largest first, ties in detection order
        for k in np.flatnonzero(hits[index]):
            if labels[k] == FOREGROUND:
                canvas[masks[index]] = True
            elif labels[k] == BACKGROUND:
                canvas[masks[index]] = False
    return canvas


def official_box(masks: np.ndarray, box: Box, areas: np.ndarray | None = None) -> int | None:
    """FastSAM's box rule: index of the mask with the highest box-mask IoU (None when there are no masks).

    ``areas`` (pixels per mask) may be passed when already known.
    """
    n, height, width = masks.shape
    if n == 0:
        return None
    x1 = int(np.clip(np.floor(box[0]), 0, width))
    y1 = int(np.clip(np.floor(box[1]), 0, height))
    x2 = int(np.clip(np.ceil(box[2]), 0, width))
    y2 = int(np.clip(np.ceil(box[3]), 0, height))
    box_area = (x2 - x1) * (y2 - y1)
    inside = masks[:, y1:y2, x1:x2].reshape(n, -1).sum(axis=1)
    total = masks.reshape(n, -1).sum(axis=1) if areas is None else np.asarray(areas)
    union = np.maximum(box_area + total - inside, 1)
    return int(np.argmax(inside / union))
