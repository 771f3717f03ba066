"""Picked instances -> one :class:`SelectedObject` at image resolution.

Shared by every prompt kind: merge the picked instances, cut out vetoed ones, clip to a prompt box, and
upsample only the region those cells can reach (box, area and centroid come from that region, not the frame).
Only the picked and vetoed instances' masks are ever made at network resolution, and only over their extent.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from fastsam_ros.segmentation.masks import mask_box, region_stats
from fastsam_ros.types import Box, Segmentation, SelectedObject


def build_object(
    segmentation: Segmentation, indices: Sequence[int], score: float, removed: Sequence[int] = (),
    clip: Box | None = None,
) -> SelectedObject | None:
    """Merge ``indices``, cut out ``removed``, clip to ``clip``, and upsample only the region that covers."""
    masks = segmentation.masks
    extents = [b for b in (masks.bounds(int(i)) for i in indices) if b is not None]
    if not extents:
        return None
    window = (min(b[0] for b in extents), min(b[1] for b in extents),
              max(b[2] for b in extents), max(b[3] for b in extents))
    merged = masks.window(int(indices[0]), window)
    for index in indices[1:]:
        merged |= masks.window(int(index), window)
    for index in removed:
        merged &= ~masks.window(int(index), window)
    cells = mask_box(merged)
    if cells is None:
        return None
    cells = (cells[0] + window[0], cells[1] + window[1], cells[2] + window[0], cells[3] + window[1])
    geometry = segmentation.geometry
    x0, y0, x1, y1 = geometry.cells_to_image_region(cells)
    if clip is not None:
        x0, y0 = max(x0, int(np.floor(clip[0]))), max(y0, int(np.floor(clip[1])))
        x1, y1 = min(x1, int(np.ceil(clip[2]))), min(y1, int(np.ceil(clip[3])))
    if x1 <= x0 or y1 <= y0:
        return None
    source = geometry.source_window(x0, y0, x1, y1)
    sx0, sy0, sx1, sy1 = source
    cells_over_source = np.zeros((sy1 - sy0, sx1 - sx0), dtype=bool)
    ix0, iy0, ix1, iy1 = max(sx0, window[0]), max(sy0, window[1]), min(sx1, window[2]), min(sy1, window[3])
    if ix1 > ix0 and iy1 > iy0:
        cells_over_source[iy0 - sy0 : iy1 - sy0, ix0 - sx0 : ix1 - sx0] = merged[
            iy0 - window[1] : iy1 - window[1], ix0 - window[0] : ix1 - window[0]]
    region = geometry.upsample_window(cells_over_source, source, x0, y0, x1, y1)
    stats = region_stats(region, x0, y0)
    if stats is None:
        return None
    box, area, centroid = stats
    full = np.zeros(segmentation.image_shape, dtype=bool)
    full[y0:y1, x0:x1] = region
    return SelectedObject(
        mask=full, box=box, score=float(score), area=area, centroid=centroid, instances=tuple(int(i) for i in indices)
    )
