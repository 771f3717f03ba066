"""Instance masks at the network's input resolution, computed on demand from prototype logits.

ultralytics' ``process_mask`` makes every mask at full network resolution: ``coefficients @ prototypes``
(``(N, h/4, w/4)`` logits), a bilinear upsample of all N to ``(h, w)`` (``align_corners=False``), ``> 0``, and a
crop to each box. At FastSAM's 100 instances per frame that is half of a frame's CPU time, for pixels nobody
looks at. :class:`InstanceMasks` keeps the logits and boxes and computes a pixel only when asked, by the same
interpolation in float32, in compiled code (:mod:`fastsam_ros.segmentation.mask_kernel`):

* an instance's pixels over its box, with its tight box and run lengths, in one pass;
* single pixels (point prompts) and grid points (the tracker) by the same arithmetic, so every reader sees the
  same mask;
* whether an instance has any pixel (ultralytics drops those without) from the logits where a block of four
  positive logits proves it (bilinear weights are non-negative), else by making its pixels.

A pixel may differ from ``process_mask``'s only where the interpolated logit is within float32 rounding of zero
(each rounds its sums in its own order): on the shared frames every instance's IoU with it is >= 0.999
(``test/test_mask_accuracy.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fastsam_ros.segmentation.mask_kernel import POSITIVE_FLOOR, make_masks, packed_signs, positive_at
from fastsam_ros.segmentation.mask_set import MaskSet, Window, pack_rows, packed_grid_points, selected
from fastsam_ros.segmentation.masks import EncodedMasks, linear_taps

__all__ = ["InstanceMasks", "compile_kernels", "pack_rows", "packed_grid_points"]


@dataclass(frozen=True)
class _Axis:
    """One axis of the upsample: per output pixel its two source taps and their weights, and the first later
    pixel whose taps differ (the end of its segment: :mod:`fastsam_ros.segmentation.mask_kernel` settles
    segments whole)."""

    index0: np.ndarray
    index1: np.ndarray
    weight0: np.ndarray
    weight1: np.ndarray
    segment_end: np.ndarray

    @classmethod
    @functools.lru_cache(maxsize=16)
    def of(cls, in_size: int, out_size: int) -> _Axis:
        index0, index1, weight0, weight1 = linear_taps(0, out_size, in_size, out_size)
        changes = np.flatnonzero((index0[1:] != index0[:-1]) | (index1[1:] != index1[:-1])) + 1
        ends = np.append(changes, out_size)[np.searchsorted(changes, np.arange(out_size), side="right")]
        axis = cls(index0, index1, weight0, weight1, ends)
        for array in axis.table:
            array.setflags(write=False)  # shared by every frame of this size
        return axis

    @property
    def table(self) -> tuple[np.ndarray, ...]:
        return self.index0, self.index1, self.weight0, self.weight1, self.segment_end


@dataclass(frozen=True)
class _Pass:
    """What one compiled pass (:func:`make_masks`) made for its instances, the k-th in slot k: kept as the pass wrote
    it, so that a frame's 100 masks cost no Python object each until one is asked for."""

    indices: list[int]  # the instance in each slot
    crops: list[Window]  # each slot's crop
    pixels: np.ndarray  # bool: every crop's pixels end to end, row-major
    offsets: np.ndarray  # (K + 1,) int64: slot k's pixels are pixels[offsets[k]:offsets[k + 1]]
    bounds: np.ndarray  # (K, 4) int64: each slot's tight box (x0, y0, x1, y1); all zero when it has no pixel
    runs: np.ndarray  # uint32: each slot's run lengths over its tight box, end to end
    run_offsets: np.ndarray  # (K + 1,) int64: slot k's runs are runs[run_offsets[k]:run_offsets[k + 1]]

    def pixels_of(self, k: int) -> np.ndarray:
        x0, y0, x1, y1 = self.crops[k]
        shape = (max(y1 - y0, 0), max(x1 - x0, 0))
        return self.pixels[self.offsets[k] : self.offsets[k + 1]].reshape(shape)

    def bounds_of(self, k: int) -> Window | None:
        x0, y0, x1, y1 = self.bounds[k].tolist()
        return (x0, y0, x1, y1) if x1 > x0 else None


class InstanceMasks(MaskSet):
    """``upsample(logits) > 0`` cut to each box, made per instance when first read (:meth:`from_logits`).

    Thread-safe for readers: an instance's pixels may be made twice by racing threads, never differently.
    """

    is_lazy = True

    def __init__(self, logits: np.ndarray | None, crops: np.ndarray, shape: tuple[int, int],
                 proto_shape: tuple[int, int]) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._logits = logits  # (N, ph, pw) float32; dropped once every instance is made
        self._crops = crops  # (N, 4) int64: the box crop (x0, y0, x1, y1) every mask is cut to
        self._crop_tuples: list[Window] = [(x0, y0, x1, y1) for x0, y0, x1, y1 in crops.tolist()]
        self._proto_shape = proto_shape
        self._rows, self._cols = _Axis.of(proto_shape[0], self.shape[0]), _Axis.of(proto_shape[1], self.shape[1])
        self._made: dict[int, tuple[_Pass, int]] = {}  # instance -> the compiled pass and slot that made it

    @classmethod
    def from_logits(cls, logits: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> InstanceMasks:
        """Masks ``upsample(logits) > 0`` cut to ``boxes`` (network pixels xyxy), as ``process_mask(upsample=True)``.

        ``logits`` is ``(N, ph, pw)`` float32 (``coefficients @ prototypes``); ``shape`` is ``(h, w)``.
        """
        logits = np.ascontiguousarray(logits, dtype=np.float32)
        boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
        if len(logits) != len(boxes) or logits.ndim != 3:
            raise ValueError(f"logits {logits.shape} and boxes {boxes.shape} do not describe the same instances")
        height, width = shape
        # crop_mask keeps column r where r >= x1 and r < x2 (r an integer): [ceil(x1), ceil(x2)) in whole pixels
        limits = np.array([width, height, width, height], dtype=np.float64)
        crops = np.clip(np.ceil(boxes.astype(np.float64)), 0, limits).astype(np.int64)
        return cls(logits, crops, shape, logits.shape[1:])

    def __len__(self) -> int:
        return len(self._crops)

    def subset(self, keep: np.ndarray) -> InstanceMasks:
        indices = selected(keep)
        logits = self._logits
        kept = InstanceMasks(None if logits is None else logits[indices], self._crops[indices], self.shape,
                             self._proto_shape)
        for new, old in enumerate(indices.tolist()):  # pixels already made stay made
            if old in self._made:
                kept._made[new] = self._made[old]
        return kept

    # ---------------------------------------------------------------------------------------------- queries
    def crop(self, index: int) -> Window:
        return self._crop_tuples[index]

    def own(self, index: int) -> tuple[np.ndarray, Window]:
        if index not in self._made:
            self.make((index,))
        made, slot = self._made[index]
        return made.pixels_of(slot), self._crop_tuples[index]

    def bounds(self, index: int) -> Window | None:
        if index not in self._made:
            self.make((index,))
        made, slot = self._made[index]
        return made.bounds_of(slot)

    def encoded(self, indices: Sequence[int] | None = None) -> EncodedMasks:
        """:meth:`MaskSet.encoded` from the boxes and runs the compiled passes wrote: as they are when one pass made
        exactly these instances (a frame's instances message), else gathered from the passes that made them."""
        indices = list(range(len(self))) if indices is None else [int(i) for i in indices]
        self.make(indices)
        if not indices:
            return EncodedMasks.join([], [])
        first = self._made[indices[0]][0]
        if first.indices == indices:
            boxes, offsets, counts = first.bounds.copy(), first.run_offsets, first.runs
        else:
            made = [self._made[index] for index in indices]
            passes = list({id(made_by): made_by for made_by, _ in made}.values())
            number = {id(made_by): n for n, made_by in enumerate(passes)}
            which = np.fromiter((number[id(made_by)] for made_by, _ in made), dtype=np.int64, count=len(made))
            slots = np.fromiter((slot for _, slot in made), dtype=np.int64, count=len(made))
            base = np.cumsum([0] + [len(made_by.runs) for made_by in passes])
            boxes, starts, lengths = np.zeros((len(made), 4), np.int64), np.zeros_like(slots), np.zeros_like(slots)
            for n, made_by in enumerate(passes):
                mine = which == n
                boxes[mine] = made_by.bounds[slots[mine]]
                starts[mine] = base[n] + made_by.run_offsets[slots[mine]]
                lengths[mine] = made_by.run_offsets[slots[mine] + 1] - made_by.run_offsets[slots[mine]]
            offsets = np.zeros(len(made) + 1, dtype=np.int64)
            np.cumsum(lengths, out=offsets[1:])
            runs = np.concatenate([made_by.runs for made_by in passes])
            counts = runs[np.repeat(starts - offsets[:-1], lengths) + np.arange(offsets[-1])]
        boxes[:, 2:] -= boxes[:, :2]  # x0, y0, x1, y1 -> x, y, width, height (an empty mask's stays zero)
        return EncodedMasks(boxes, offsets, counts)

    def at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """:meth:`MaskSet.at`, computed at just those pixels while the logits are kept."""
        logits = self._logits  # one reference: another thread's make() may drop the attribute meanwhile
        if logits is None:
            return super().at(xs, ys)
        xs, ys = np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.int64)
        crops = self._crops
        inside = (xs >= crops[:, 0:1]) & (xs < crops[:, 2:3]) & (ys >= crops[:, 1:2]) & (ys < crops[:, 3:4])
        instance, point = np.nonzero(inside)
        inside[instance, point] = positive_at(logits, instance, ys[point], xs[point], self._rows.table,
                                              self._cols.table)
        return inside

    def grid(self, step: int, offset: int) -> np.ndarray:
        """:meth:`MaskSet.grid`, computed at just the grid points inside each crop while the logits are kept (the
        tracker reads every instance on a coarse grid each frame: making their pixels would cost more)."""
        logits = self._logits
        if logits is None:
            return super().grid(step, offset)
        ys, xs = np.arange(offset, self.shape[0], step), np.arange(offset, self.shape[1], step)
        out = np.zeros((len(self), len(ys), len(xs)), dtype=bool)
        i0, i1, j0, j1 = self._grid_spans(offset, step, len(ys), len(xs))
        heights, widths = np.maximum(i1 - i0, 0), np.maximum(j1 - j0, 0)
        # Every (instance, grid point) inside the crops, instance by instance, row by row.
        sizes = heights * widths
        instance = np.repeat(np.arange(len(self)), sizes)
        local = np.arange(len(instance)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        width = widths[instance]
        row, col = i0[instance] + local // width, j0[instance] + local % width
        values = positive_at(logits, instance, ys[row], xs[col], self._rows.table, self._cols.table)
        out.reshape(-1)[(instance * len(ys) + row) * len(xs) + col] = values
        return out

    def packed_grid(self, cells: int) -> np.ndarray:
        """:meth:`MaskSet.packed_grid`, read at 4x as the sign of the logit the upsample weighs 7/8 along each axis
        there (prototype cell ``cells // 2 + cells * i``), cut to the crops, from only the logit rows under each crop
        (most instances are small): a cell differs from the mask only where the other taps flip it, at an object's
        edge, and costs a tenth of :meth:`grid`. Without logits, or at other scales, :meth:`grid` exactly.
        """
        step, first = 4 * cells, cells // 2
        ys, xs = packed_grid_points(self.shape[0], cells), packed_grid_points(self.shape[1], cells)
        logits = self._logits
        if len(xs) > 64 or logits is None or self.shape != (4 * logits.shape[1], 4 * logits.shape[2]):
            return super().packed_grid(cells)
        out = np.zeros((len(self), len(ys)), dtype=np.uint64)
        packed_signs(logits, first, cells, *self._grid_spans(4 * first + 2, step, len(ys), len(xs)), out)
        return out

    def _grid_spans(self, offset: int, step: int, rows: int, cols: int) -> tuple[np.ndarray, ...]:
        """``(i0, i1, j0, j1)``: per instance, the rows ``i0:i1`` and columns ``j0:j1`` of the grid of points
        ``offset + step * k`` (``rows`` by ``cols``) inside its crop."""
        before = -((offset - self._crops) // step)  # grid points before each crop edge (x0, y0, x1, y1)
        # Contiguous rows: the compiled readers are compiled (at warm-up) for contiguous arrays only.
        x0, y0, x1, y1 = np.minimum(np.maximum(before, 0), np.array([cols, rows, cols, rows])).T.copy()
        return y0, y1, x0, x1

    def nonempty(self) -> np.ndarray:
        logits = self._logits
        if logits is None:  # every pixel is made already
            return super().nonempty()
        rows, cols = self._rows, self._cols
        out = self._centre_block_positive(logits)
        for index in np.flatnonzero(~out).tolist():
            x0, y0, x1, y1 = self._crop_tuples[index]
            if x1 <= x0 or y1 <= y0:
                continue
            if index not in self._made:
                # The source cells the crop reads: a 2x2 block of positive logits whose outputs lie in the crop
                # proves a pixel, no positive logit proves none (outputs are non-negative mixes of the logits).
                gy0, gy1 = int(rows.index0[y0]), int(rows.index0[y1 - 1])
                gx0, gx1 = int(cols.index0[x0]), int(cols.index0[x1 - 1])
                patch = logits[index, gy0 : gy1 + 2, gx0 : gx1 + 2]
                if not (patch > 0).any():
                    continue
                positive = patch > POSITIVE_FLOOR
                blocks = positive[:-1, :-1] & positive[1:, :-1] & positive[:-1, 1:] & positive[1:, 1:]
                if blocks[: gy1 - gy0 + 1, : gx1 - gx0 + 1].any():
                    out[index] = True
                    continue
            out[index] = self.bounds(index) is not None  # undecided from the logits alone: make the pixels
        return out

    def _centre_block_positive(self, logits: np.ndarray) -> np.ndarray:
        """``(N,)`` bool, for all instances at once: are the four logits under the crop's centre pixel positive
        (then that pixel is set: the common case, decided without a loop)."""
        crops, rows, cols = self._crops, self._rows, self._cols
        valid = (crops[:, 2] > crops[:, 0]) & (crops[:, 3] > crops[:, 1])
        ys = np.clip((crops[:, 1] + crops[:, 3] - 1) // 2, 0, self.shape[0] - 1)
        xs = np.clip((crops[:, 0] + crops[:, 2] - 1) // 2, 0, self.shape[1] - 1)
        n = np.arange(len(self))
        r0, r1, c0, c1 = rows.index0[ys], rows.index1[ys], cols.index0[xs], cols.index1[xs]
        return valid & (np.minimum(np.minimum(logits[n, r0, c0], logits[n, r0, c1]),
                                   np.minimum(logits[n, r1, c0], logits[n, r1, c1])) > POSITIVE_FLOOR)

    def make(self, indices: Sequence[int] | None = None) -> None:
        """Pixels, tight bounds and run lengths of instances ``indices`` (default: all) over their crops, by one
        :func:`fastsam_ros.segmentation.mask_kernel.make_masks` pass, kept as one :class:`_Pass`."""
        todo = [i for i in map(int, range(len(self)) if indices is None else indices) if i not in self._made]
        logits = self._logits
        if not todo or logits is None:
            return
        made = _Pass(todo, [self._crop_tuples[i] for i in todo], *make_masks(
            logits, np.asarray(todo, dtype=np.int64), self._crops, self._rows.table, self._cols.table))
        self._made.update((index, (made, k)) for k, index in enumerate(todo))
        if len(self._made) == len(self):
            self._logits = None  # every pixel is made: the logits (4 bytes per prototype cell) can go


def compile_kernels() -> None:
    """Compile the mask kernels now (seconds; a fraction of one from numba's cache of an earlier start), not on the
    first frame."""
    masks = InstanceMasks.from_logits(np.zeros((1, 2, 2), np.float32), np.zeros((1, 4), np.float32), (8, 8))
    masks.packed_grid(1)
    masks.at(np.zeros(1), np.zeros(1))
    masks.make()
