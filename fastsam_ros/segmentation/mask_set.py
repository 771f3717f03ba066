"""The interface of a frame's instance masks, and its plain implementation over given pixels.

A :class:`MaskSet` is ``N`` bool masks of shape ``(h, w)`` (network input resolution, letterboxed), read by
window, point, grid or run lengths: :class:`DenseMasks` holds the pixels (hand-made masks, or ones ultralytics
made), :class:`fastsam_ros.segmentation.instance_masks.InstanceMasks` makes them from prototype logits on
demand. The result types depend on this module only, not on the compiled kernel behind the lazy masks.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence

import numpy as np

from fastsam_ros.segmentation.masks import EncodedMasks, encode_crops, mask_box

Window = tuple[int, int, int, int]  # (x0, y0, x1, y1) network pixels, end exclusive


class MaskSet(abc.ABC):
    """What every consumer reads; subclasses give the pixels (:meth:`own`), boxes, and faster bulk queries."""

    shape: tuple[int, int]
    is_lazy = False

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def own(self, index: int) -> tuple[np.ndarray, Window]:
        """Instance ``index``'s pixels over the window outside which it has none (read-only), and that window."""

    @abc.abstractmethod
    def bounds(self, index: int) -> Window | None:
        """Tight ``(x0, y0, x1, y1)`` of instance ``index``'s pixels (end exclusive), or None when it has none."""

    @abc.abstractmethod
    def subset(self, keep: np.ndarray) -> MaskSet:
        """The instances where ``keep`` (bool, or indices) selects, in order."""

    def make(self, indices: Sequence[int] | None = None) -> None:
        """Make the pixels of instances ``indices`` (default: all) now, in one go (a no-op where they exist)."""
        return None  # given pixels: nothing to make

    def crop(self, index: int) -> Window:
        """The window outside which instance ``index`` has no pixel."""
        return self.own(index)[1]

    def window(self, index: int, window: Window) -> np.ndarray:
        """Instance ``index`` over ``window`` (``(y1 - y0, x1 - x0)`` bool; windows may reach outside the frame)."""
        x0, y0, x1, y1 = window
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
        pixels, (cx0, cy0, cx1, cy1) = self.own(index)
        ix0, iy0, ix1, iy1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = pixels[iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0]
        return out

    def count(self, index: int, window: Window) -> int:
        """Pixels of instance ``index`` inside ``window``."""
        pixels, (cx0, cy0, cx1, cy1) = self.own(index)
        x0, y0, x1, y1 = window
        x0, y0, x1, y1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if x1 <= x0 or y1 <= y0:
            return 0
        return int(np.count_nonzero(pixels[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]))

    def tight(self, index: int) -> tuple[np.ndarray, Window] | None:
        """``(pixels, bounds)``: instance ``index`` over its own tight :meth:`bounds` (a view: do not modify)."""
        bounds = self.bounds(index)
        if bounds is None:
            return None
        pixels, (cx0, cy0, _, _) = self.own(index)
        x0, y0, x1, y1 = bounds
        return pixels[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0], bounds

    def encoded(self, indices: Sequence[int] | None = None) -> EncodedMasks:
        """Instances ``indices`` (default: all) over their own boxes, run-length encoded (network pixels; an
        instance without pixels is 0x0 at (0, 0))."""
        indices = range(len(self)) if indices is None else [int(i) for i in indices]
        self.make(indices)
        tights = [self.tight(index) for index in indices]
        crops = [np.zeros((0, 0), dtype=bool) if tight is None else tight[0] for tight in tights]
        return EncodedMasks.join([(0, 0, 0, 0) if tight is None else tight[1] for tight in tights],
                                 encode_crops(crops))

    def at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """``(N, K)`` bool: is pixel ``(xs[k], ys[k])`` (network pixels, inside the frame) set in instance i."""
        xs, ys = np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.int64)
        crops = np.array([self.crop(i) for i in range(len(self))], dtype=np.int64).reshape(-1, 4)
        inside = (xs >= crops[:, 0:1]) & (xs < crops[:, 2:3]) & (ys >= crops[:, 1:2]) & (ys < crops[:, 3:4])
        out = np.zeros_like(inside)
        for index, k in zip(*np.nonzero(inside), strict=True):
            pixels, (cx0, cy0, _, _) = self.own(int(index))
            out[index, k] = pixels[ys[k] - cy0, xs[k] - cx0]
        return out

    def grid(self, step: int, offset: int) -> np.ndarray:
        """``(N, gh, gw)`` bool: :meth:`at` the pixels ``(offset + j * step, offset + i * step)`` of the frame."""
        height, width = self.shape
        out = np.zeros((len(self), len(range(offset, height, step)), len(range(offset, width, step))), dtype=bool)
        for index in range(len(self)):
            pixels, (x0, y0, _, _) = self.own(index)
            i0, j0 = max(-((offset - y0) // step), 0), max(-((offset - x0) // step), 0)  # first grid row, column in
            part = pixels[offset + i0 * step - y0 :: step, offset + j0 * step - x0 :: step]
            out[index, i0 : i0 + part.shape[0], j0 : j0 + part.shape[1]] = part
        return out

    def packed_grid(self, cells: int) -> np.ndarray:
        """``(N, gh)`` uint64: every mask on the grid of ``4 * cells`` pixels from pixel ``4 * (cells // 2) + 2``,
        one word per grid row (bit x: grid column x; at most 64 columns), for the tracker."""
        if len(packed_grid_points(self.shape[1], cells)) > 64:
            raise ValueError(f"{len(packed_grid_points(self.shape[1], cells))} grid columns do not fit a 64-bit row")
        return pack_rows(self.grid(4 * cells, 4 * (cells // 2) + 2))

    def nonempty(self) -> np.ndarray:
        """``(N,)`` bool: does the instance have a pixel (ultralytics drops those that do not)."""
        return np.array([self.bounds(index) is not None for index in range(len(self))], dtype=bool)

    def dense(self) -> np.ndarray:
        """All masks as one ``(N, h, w)`` bool array (for tests and whole-frame consumers)."""
        self.make()
        full = (0, 0, self.shape[1], self.shape[0])
        return np.stack([self.window(i, full) for i in range(len(self))]) if len(self) else (
            np.zeros((0, *self.shape), dtype=bool))


def selected(keep: np.ndarray) -> np.ndarray:
    """Indices (int64) of a bool selection, or the given indices."""
    keep = np.asarray(keep)
    return np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)


class DenseMasks(MaskSet):
    """Masks given as an ``(N, h, w)`` bool array (hand-made in tests, or made by ultralytics)."""

    def __init__(self, masks: np.ndarray) -> None:
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be (N, h, w), got shape {masks.shape}")
        self._masks = masks if masks.dtype == bool else masks.astype(bool)
        self.shape = (masks.shape[1], masks.shape[2])
        self._bounds: dict[int, Window | None] = {}

    def __len__(self) -> int:
        return len(self._masks)

    def own(self, index: int) -> tuple[np.ndarray, Window]:
        return self._masks[index], (0, 0, self.shape[1], self.shape[0])

    def bounds(self, index: int) -> Window | None:
        if index not in self._bounds:
            self._bounds[index] = mask_box(self._masks[index])
        return self._bounds[index]

    def at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        return self._masks[:, np.asarray(ys, dtype=np.int64), np.asarray(xs, dtype=np.int64)]

    def grid(self, step: int, offset: int) -> np.ndarray:
        """:meth:`MaskSet.grid` as a strided view of the masks (read-only)."""
        return self._masks[:, offset::step, offset::step]

    def nonempty(self) -> np.ndarray:
        return self._masks.reshape(len(self._masks), -1).any(axis=1)

    def dense(self) -> np.ndarray:
        return self._masks

    def subset(self, keep: np.ndarray) -> DenseMasks:
        return DenseMasks(self._masks[selected(keep)])


def packed_grid_points(size: int, cells: int) -> np.ndarray:
    """The pixels of an axis of ``size`` pixels that :meth:`MaskSet.packed_grid` reads: every ``4 * cells`` from
    ``4 * (cells // 2) + 2``."""
    return np.arange(4 * (cells // 2) + 2, size, 4 * cells)


def pack_rows(grid: np.ndarray) -> np.ndarray:
    """``(K, h, w)`` bool grid masks (``w <= 64``) as ``(K, h)`` uint64: bit x of a row is column x."""
    count, height, width = grid.shape
    bits = np.zeros((count, height, 64), dtype=bool)  # one contiguous run of bits packs fastest
    bits[:, :, :width] = grid
    return np.packbits(bits.reshape(-1), bitorder="little").view("<u8").reshape(count, height)
