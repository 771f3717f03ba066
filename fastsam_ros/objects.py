"""Picked network-resolution masks -> one :class:`SelectedObject` at image resolution.

Shared by every prompt kind: merge the picked instances, cut out vetoed ones, clip to a prompt box, and
upsample only the region those cells can reach (box, area and centroid come from that region, not the frame).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastsam_ros.masks import mask_box
from fastsam_ros.types import Box, Segmentation, SelectedObject


def build_object(
    segmentation: Segmentation, indices: Sequence[int], score: float, removed: Sequence[int] = (),
    clip: Box | None = None,
) -> SelectedObject | None:
    """Merge ``indices``, cut out ``removed``, clip to ``clip``, and upsample only the region that covers."""
    masks = segmentation.masks
    if len(indices) == 1 and not removed:
        merged = masks[indices[0]]
    else:
        merged = np.logical_or.reduce(masks[list(indices)], axis=0)
        if removed:
            merged &= ~np.logical_or.reduce(masks[list(removed)], axis=0)
    cells = mask_box(merged)
    if cells is None:
        return None
    geometry = segmentation.geometry
    x0, y0, x1, y1 = geometry.cells_to_image_region(cells)
    if clip is not None:
        x0, y0 = max(x0, int(np.floor(clip[0]))), max(y0, int(np.floor(clip[1])))
        x1, y1 = min(x1, int(np.ceil(clip[2]))), min(y1, int(np.ceil(clip[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    region = geometry.upsample_region(merged, x0, y0, x1, y1)
    area = int(np.count_nonzero(region))
    if area == 0:
        return None
    per_column = region.view(np.uint8).sum(axis=0, dtype=np.int64)
    per_row = region.view(np.uint8).sum(axis=1, dtype=np.int64)
    columns, rows = np.flatnonzero(per_column), np.flatnonzero(per_row)
    box = (float(x0 + columns[0]), float(y0 + rows[0]), float(x0 + columns[-1] + 1), float(y0 + rows[-1] + 1))
    centroid = (
        float(x0 + per_column @ np.arange(len(per_column)) / area),
        float(y0 + per_row @ np.arange(len(per_row)) / area),
    )
    full = np.zeros(segmentation.image_shape, dtype=bool)
    full[y0:y1, x0:x1] = region
    return SelectedObject(
        mask=full, box=box, score=float(score), area=area, centroid=centroid, instances=tuple(int(i) for i in indices)
    )
