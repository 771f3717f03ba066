"""Instance masks at the network's input resolution, computed on demand from prototype logits.

ultralytics' ``process_mask`` makes every mask at full network resolution: ``coefficients @ prototypes``
(``(N, h/4, w/4)`` logits), a bilinear upsample of all N to ``(h, w)``, ``> 0``, and a crop to each box. At
FastSAM's 100 instances per frame that is half of a frame's CPU time, for pixels nobody looks at.
:class:`InstanceMasks` keeps the logits and boxes and computes a pixel only when asked, with the same
arithmetic, so every pixel is the one ultralytics would have made:

* an instance's pixels over its box, with its tight box and run lengths, are made in compiled code with the
  kernel's index, weight and rounding steps (:mod:`fastsam_ros.mask_kernel`; :class:`Arithmetic`: which
  operations the installed kernel fuses is measured once by :func:`calibrate`), single pixels (point prompts)
  and grid points in numpy with the same steps;
* where no emulation reproduces the kernel (:func:`calibrate` says None), pixels are made by the same PyTorch
  kernel on just the prototype cells the box reads (``upsample``, injected by the engine): with the 4x upsample
  every YOLOv8-seg network has, an output pixel's source position shifts by whole cells with the crop, so its
  taps, weights and rounding are the full-frame ones (see :meth:`InstanceMasks._make_by_kernel`);
* whether an instance has any pixel (ultralytics drops those without) is decided from the logits where a
  block of four positive logits proves it (bilinear weights are non-negative), else by making its pixels.

Dense masks (hand-made in tests, or made by ultralytics when the lazy path does not apply) are served
through the same interface.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from fastsam_ros.mask_kernel import POSITIVE_FLOOR, make_masks, packed_signs
from fastsam_ros.masks import EncodedMasks, encode_crops, linear_taps, mask_box

Window = tuple[int, int, int, int]  # (x0, y0, x1, y1) network pixels, end exclusive
Upsample = Callable[[np.ndarray, tuple[int, int]], np.ndarray]  # (K, h, w) float32 -> (K, H, W): the real kernel

_BUCKET = 8  # prototype cells: crops are rounded up to multiples of this to share kernel calls


@dataclass(frozen=True)
class Arithmetic:
    """How the bilinear kernel rounds ``a * w0 + b * w1`` (first along x, then along y, as PyTorch's CPU kernel).

    ``fused_x``/``fused_y``: the sum is one fused multiply-add ``fma(a, w0, round(b * w1))`` instead of two
    rounded products and a rounded sum. Compilers make this choice per build and CPU, so it is measured.
    """

    fused_x: bool
    fused_y: bool


def _combine(a: np.ndarray, w0: np.ndarray, b: np.ndarray, w1: np.ndarray, fused: bool) -> np.ndarray:
    """``a * w0 + b * w1`` in float32, rounded as the kernel does (a fused add emulated exactly in float64)."""
    second = b * w1
    if fused:  # a * w0 is exact in float64 (24 + 24 bits); one float64 add, one rounding to float32
        return (a.astype(np.float64) * w0 + second).astype(np.float32)
    first = a * w0
    first += second
    return first


@functools.lru_cache(maxsize=16)
def _taps(in_size: int, out_size: int) -> tuple[np.ndarray, ...]:
    """:func:`fastsam_ros.masks.linear_taps` of every output pixel, made once per size (read-only)."""
    taps = tuple(linear_taps(0, out_size, in_size, out_size))
    for array in taps:
        array.setflags(write=False)
    return taps


@dataclass(frozen=True)
class _Axis:
    """One axis of the upsample: per output pixel its two source taps and their weights, and the first later
    pixel whose taps differ (the end of its segment: :mod:`fastsam_ros.mask_kernel` settles segments whole)."""

    index0: np.ndarray
    index1: np.ndarray
    weight0: np.ndarray
    weight1: np.ndarray
    segment_end: np.ndarray

    @classmethod
    @functools.lru_cache(maxsize=16)
    def of(cls, in_size: int, out_size: int) -> _Axis:
        index0, index1, weight0, weight1 = _taps(in_size, out_size)
        changes = np.flatnonzero((index0[1:] != index0[:-1]) | (index1[1:] != index1[:-1])) + 1
        ends = np.append(changes, out_size)[np.searchsorted(changes, np.arange(out_size), side="right")]
        ends.setflags(write=False)
        return cls(index0, index1, weight0, weight1, ends)

    @property
    def table(self) -> tuple[np.ndarray, ...]:
        return self.index0, self.index1, self.weight0, self.weight1, self.segment_end


@dataclass(frozen=True)
class _Pass:
    """What one compiled pass (:func:`make_masks`) made for its instances, the k-th in slot k: kept as the pass wrote
    it, so that a frame's 100 masks cost no Python object each until one is asked for."""

    indices: list[int]  # the instance in each slot
    pixels: np.ndarray  # bool: every crop's pixels end to end, row-major
    offsets: np.ndarray  # (K + 1,) int64: slot k's pixels are pixels[offsets[k]:offsets[k + 1]]
    shapes: list[tuple[int, int]]  # (height, width) of each slot's crop
    bounds: np.ndarray  # (K, 4) int64: each slot's tight box (x0, y0, x1, y1); all zero when it has no pixel
    runs: np.ndarray  # uint32: each slot's run lengths over its tight box, end to end
    run_offsets: np.ndarray  # (K + 1,) int64: slot k's runs are runs[run_offsets[k]:run_offsets[k + 1]]

    def pixels_of(self, k: int) -> np.ndarray:
        return self.pixels[self.offsets[k] : self.offsets[k + 1]].reshape(self.shapes[k])

    def bounds_of(self, k: int) -> Window | None:
        x0, y0, x1, y1 = self.bounds[k].tolist()
        return (x0, y0, x1, y1) if x1 > x0 else None


class InstanceMasks:
    """``N`` bool masks of shape ``(h, w)`` (network input resolution, letterboxed), served by window.

    Build with :meth:`from_logits` (lazy, exact) or :meth:`from_dense` (given masks). Thread-safe for readers:
    an instance's pixels may be made twice by racing threads, never differently.
    """

    def __init__(self, shape: tuple[int, int], count: int, *, dense: np.ndarray | None = None,
                 logits: np.ndarray | None = None, crops: np.ndarray | None = None,
                 arithmetic: Arithmetic | None = None, upsample: Upsample | None = None) -> None:
        self.shape = (int(shape[0]), int(shape[1]))
        self._count = int(count)
        self._dense = dense
        self._logits = logits
        self._crops = crops  # (N, 4) int: the box crop (x0, y0, x1, y1) every mask is cut to
        self._arithmetic = arithmetic
        self._upsample = upsample
        self._windows: dict[int, np.ndarray] = {}  # instance -> its pixels over its crop, made by PyTorch's kernel
        self._made: dict[int, tuple[_Pass, int]] = {}  # instance -> the compiled pass and slot that made it
        self._bounds: dict[int, Window | None] = {}  # instance -> tight bounds of its pixels, once asked for
        if crops is not None:
            self._crop_tuples: list[Window] = [(x0, y0, x1, y1) for x0, y0, x1, y1 in crops.tolist()]
        if logits is not None:
            self._rows = _Axis.of(logits.shape[1], self.shape[0])
            self._cols = _Axis.of(logits.shape[2], self.shape[1])
            exact_crops = self.shape == (4 * logits.shape[1], 4 * logits.shape[2])
            if not exact_crops:
                self._upsample = None  # a crop's taps would not be the frame's
            if self._upsample is None and arithmetic is None:
                raise ValueError("lazy masks need the kernel (upsample, 4x) or its measured arithmetic")

    # ------------------------------------------------------------------------------------------ construction
    @classmethod
    def from_dense(cls, masks: np.ndarray) -> InstanceMasks:
        masks = np.asarray(masks)
        if masks.ndim != 3:
            raise ValueError(f"masks must be (N, h, w), got shape {masks.shape}")
        if masks.dtype != bool:
            masks = masks.astype(bool)
        return cls((masks.shape[1], masks.shape[2]), len(masks), dense=masks)

    @classmethod
    def from_logits(cls, logits: np.ndarray, boxes: np.ndarray, shape: tuple[int, int],
                    arithmetic: Arithmetic | None, upsample: Upsample | None) -> InstanceMasks:
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
        return cls(shape, len(logits), logits=logits, crops=crops, arithmetic=arithmetic, upsample=upsample)

    def __len__(self) -> int:
        return self._count

    @property
    def is_lazy(self) -> bool:
        return self._dense is None

    def subset(self, keep: np.ndarray) -> InstanceMasks:
        """The instances where ``keep`` (bool, or indices) selects, in order."""
        keep = np.asarray(keep)
        indices = np.flatnonzero(keep) if keep.dtype == bool else keep.astype(np.int64)
        if self._dense is not None:
            return InstanceMasks.from_dense(self._dense[indices])
        logits = self._logits
        kept = InstanceMasks(self.shape, len(indices), logits=None if logits is None else logits[indices],
                             crops=self._crops[indices], arithmetic=self._arithmetic, upsample=self._upsample)
        for new, old in enumerate(indices.tolist()):  # pixels already made stay made
            for made, kept_made in ((self._windows, kept._windows), (self._made, kept._made),
                                    (self._bounds, kept._bounds)):
                if old in made:
                    kept_made[new] = made[old]
        return kept

    # ---------------------------------------------------------------------------------------------- queries
    def crop(self, index: int) -> Window:
        """The window outside which instance ``index`` has no pixel (its box crop; the frame for dense masks)."""
        if self._crops is None:
            return 0, 0, self.shape[1], self.shape[0]
        return self._crop_tuples[index]

    def window(self, index: int, window: Window) -> np.ndarray:
        """Instance ``index`` over ``window`` (``(y1 - y0, x1 - x0)`` bool; windows may reach outside the frame)."""
        x0, y0, x1, y1 = window
        out = np.zeros((max(y1 - y0, 0), max(x1 - x0, 0)), dtype=bool)
        pixels, (cx0, cy0, cx1, cy1) = self._own(index)
        ix0, iy0, ix1, iy1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if ix1 > ix0 and iy1 > iy0:
            out[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0] = pixels[iy0 - cy0 : iy1 - cy0, ix0 - cx0 : ix1 - cx0]
        return out

    def bounds(self, index: int) -> Window | None:
        """Tight ``(x0, y0, x1, y1)`` of instance ``index``'s pixels (end exclusive), or None when it has none."""
        if index not in self._bounds:
            self.make((index,))
            made = self._made.get(index)
            if made is not None:  # the compiled pass found it
                self._bounds[index] = made[0].bounds_of(made[1])
            else:
                pixels, (cx0, cy0, _, _) = self._own(index)
                tight = mask_box(pixels)
                self._bounds[index] = None if tight is None else (
                    cx0 + tight[0], cy0 + tight[1], cx0 + tight[2], cy0 + tight[3])
        return self._bounds[index]

    def tight(self, index: int) -> tuple[np.ndarray, Window] | None:
        """``(pixels, bounds)``: instance ``index`` over its own tight :meth:`bounds` (a view: do not modify)."""
        bounds = self.bounds(index)
        if bounds is None:
            return None
        pixels, (cx0, cy0, _, _) = self._own(index)
        x0, y0, x1, y1 = bounds
        return pixels[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0], bounds

    def encoded(self, indices: Sequence[int] | None = None) -> EncodedMasks:
        """Instances ``indices`` (default: all) over their own boxes, run-length encoded (network pixels; an
        instance without pixels is 0x0 at (0, 0))."""
        indices = list(range(self._count)) if indices is None else [int(i) for i in indices]
        self.make(indices)
        if self._dense is None and self._arithmetic is not None:
            return self._encoded_by_passes(indices)
        tights = [self.tight(index) for index in indices]  # dense, or made by the PyTorch kernel: scan them
        crops = [np.zeros((0, 0), dtype=bool) if tight is None else tight[0] for tight in tights]
        return EncodedMasks.join([(0, 0, 0, 0) if tight is None else tight[1] for tight in tights],
                                 encode_crops(crops))

    def _encoded_by_passes(self, indices: list[int]) -> EncodedMasks:
        """:meth:`encoded` of compiled-made instances: their pass's boxes and runs as they are when one pass made
        exactly these (a frame's instances message), else gathered from the passes that made them."""
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

    def count(self, index: int, window: Window) -> int:
        """Pixels of instance ``index`` inside ``window``."""
        pixels, (cx0, cy0, cx1, cy1) = self._own(index)
        x0, y0, x1, y1 = window
        x0, y0, x1, y1 = max(x0, cx0), max(y0, cy0), min(x1, cx1), min(y1, cy1)
        if x1 <= x0 or y1 <= y0:
            return 0
        return int(np.count_nonzero(pixels[y0 - cy0 : y1 - cy0, x0 - cx0 : x1 - cx0]))

    def at(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """``(N, K)`` bool: is pixel ``(xs[k], ys[k])`` (network pixels, inside the frame) set in instance i."""
        xs, ys = np.asarray(xs, dtype=np.int64), np.asarray(ys, dtype=np.int64)
        if self._dense is not None:
            return self._dense[:, ys, xs]
        crops = self._crops
        inside = ((xs >= crops[:, 0:1]) & (xs < crops[:, 2:3]) & (ys >= crops[:, 1:2]) & (ys < crops[:, 3:4]))
        logits = self._logits
        if self._arithmetic is not None and logits is not None:
            return inside & (self._values(slice(None), ys, xs, logits) > 0)
        out = np.zeros_like(inside)
        for index, k in zip(*np.nonzero(inside), strict=True):
            pixels, (cx0, cy0, _, _) = self._own(int(index))
            out[index, k] = pixels[ys[k] - cy0, xs[k] - cx0]
        return out

    def grid(self, step: int, offset: int) -> np.ndarray:
        """``(N, gh, gw)`` bool: :meth:`at` the pixels ``(offset + j * step, offset + i * step)`` of the frame
        (read-only: for dense masks a strided view of them).

        Lazy masks are evaluated only at the grid points inside each crop (the tracker reads every instance on a
        coarse grid each frame: making their pixels would cost more).
        """
        ys, xs = np.arange(offset, self.shape[0], step), np.arange(offset, self.shape[1], step)
        if self._dense is not None:
            return self._dense[:, offset::step, offset::step]
        out = np.zeros((self._count, len(ys), len(xs)), dtype=bool)
        i0, i1, j0, j1 = self._grid_spans(offset, step, len(ys), len(xs))
        heights, widths = np.maximum(i1 - i0, 0), np.maximum(j1 - j0, 0)
        logits = self._logits
        if self._arithmetic is None or logits is None:  # pixels made (or to be made) by the kernel: slice them
            for index in np.flatnonzero((heights > 0) & (widths > 0)).tolist():
                pixels, (cx0, cy0, _, _) = self._own(index)
                rows, cols = slice(i0[index], i1[index]), slice(j0[index], j1[index])
                out[index, rows, cols] = pixels[ys[rows][0] - cy0 :: step, xs[cols][0] - cx0 :: step][
                    : heights[index], : widths[index]]
            return out
        # Every (instance, grid point) inside the crops, instance by instance, row by row.
        sizes = heights * widths
        instance = np.repeat(np.arange(self._count), sizes)
        local = np.arange(len(instance)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
        width = widths[instance]
        row, col = i0[instance] + local // width, j0[instance] + local % width
        values = self._values(instance, ys[row], xs[col], logits)
        out.reshape(-1)[(instance * len(ys) + row) * len(xs) + col] = values > 0
        return out

    def packed_grid(self, cells: int) -> np.ndarray:
        """``(N, gh)`` uint64: every mask on the grid of ``4 * cells`` pixels from pixel ``4 * (cells // 2) + 2``,
        one word per grid row (bit x: grid column x; at most 64 columns), for the tracker.

        At those pixels the 4x upsample weighs one logit 7/8 along each axis (prototype cell ``cells // 2 + cells *
        i``), so lazy masks are read as that logit's sign, cut to their crops, from only the logit rows under each
        crop (most instances are small): a cell differs from the mask ultralytics makes only where the other
        taps flip it, at an object's edge, and costs a tenth of :meth:`grid`. Dense masks, and lazy ones whose
        logits are gone or are not at a quarter of the resolution, give :meth:`grid` exactly.
        """
        step, first = 4 * cells, cells // 2
        ys, xs = packed_grid_points(self.shape[0], cells), packed_grid_points(self.shape[1], cells)
        if len(xs) > 64:
            raise ValueError(f"{len(xs)} grid columns do not fit a 64-bit row")
        logits = self._logits  # one reference: another thread's make() may drop the attribute meanwhile
        if self._dense is not None or logits is None or self.shape != (4 * logits.shape[1], 4 * logits.shape[2]):
            return pack_rows(self.grid(step, 4 * first + 2))
        out = np.zeros((self._count, len(ys)), dtype=np.uint64)
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
        """``(N,)`` bool: does the instance have a pixel (ultralytics drops those that do not)."""
        if self._dense is not None:
            return self._dense.reshape(len(self._dense), -1).any(axis=1)
        logits = self._logits  # one reference: another thread's make() may drop the attribute meanwhile
        if logits is None:  # every pixel is made already
            return np.array([bool(self._own(i)[0].any()) for i in range(self._count)], dtype=bool)
        out = self._centre_block_positive(logits)
        for index in np.flatnonzero(~out).tolist():
            if index in self._windows or index in self._made:
                out[index] = bool(self._own(index)[0].any())
                continue
            x0, y0, x1, y1 = self.crop(index)
            if x1 <= x0 or y1 <= y0:
                continue
            # Source cells the crop reads; a 2x2 block of positive logits whose outputs lie in the crop proves a pixel.
            gy0, gy1 = int(self._rows.index0[y0]), int(self._rows.index0[y1 - 1])
            gx0, gx1 = int(self._cols.index0[x0]), int(self._cols.index0[x1 - 1])
            patch = logits[index, gy0 : gy1 + 2, gx0 : gx1 + 2]
            if not (patch > 0).any():
                continue  # every output is a non-negative mix of non-positive logits
            positive = patch > POSITIVE_FLOOR
            blocks = positive[:-1, :-1] & positive[1:, :-1] & positive[:-1, 1:] & positive[1:, 1:]
            if blocks[: gy1 - gy0 + 1, : gx1 - gx0 + 1].any():
                out[index] = True
            else:  # undecided from the logits alone: make the pixels
                out[index] = bool(self._own(index)[0].any())
        return out

    def _centre_block_positive(self, logits: np.ndarray) -> np.ndarray:
        """``(N,)`` bool, for all instances at once: are the four logits under the crop's centre pixel positive
        (then that pixel is set: the common case, decided without a loop)."""
        crops, rows, cols = self._crops, self._rows, self._cols
        valid = (crops[:, 2] > crops[:, 0]) & (crops[:, 3] > crops[:, 1])
        ys = np.clip((crops[:, 1] + crops[:, 3] - 1) // 2, 0, self.shape[0] - 1)
        xs = np.clip((crops[:, 0] + crops[:, 2] - 1) // 2, 0, self.shape[1] - 1)
        n = np.arange(self._count)
        floor = POSITIVE_FLOOR
        r0, r1, c0, c1 = rows.index0[ys], rows.index1[ys], cols.index0[xs], cols.index1[xs]
        return valid & (logits[n, r0, c0] > floor) & (logits[n, r0, c1] > floor) & (
            logits[n, r1, c0] > floor) & (logits[n, r1, c1] > floor)

    def dense(self) -> np.ndarray:
        """All masks as one ``(N, h, w)`` bool array (for tests and whole-frame consumers)."""
        if self._dense is not None:
            return self._dense
        self.make()
        full = (0, 0, self.shape[1], self.shape[0])
        return np.stack([self.window(i, full) for i in range(self._count)]) if self._count else (
            np.zeros((0, *self.shape), dtype=bool))

    # ------------------------------------------------------------------------------------------- internals
    def _own(self, index: int) -> tuple[np.ndarray, Window]:
        """Instance ``index``'s pixels over its crop (made once, then kept: every consumer reads these)."""
        if self._dense is not None:
            return self._dense[index], (0, 0, self.shape[1], self.shape[0])
        if index not in self._windows and index not in self._made:
            self.make((index,))
        made = self._made.get(index)
        pixels = self._windows[index] if made is None else made[0].pixels_of(made[1])
        return pixels, self.crop(index)

    def _values(self, index: int | slice | np.ndarray, ys: np.ndarray, xs: np.ndarray,
                logits: np.ndarray) -> np.ndarray:
        """Upsampled ``logits`` at output pixels ``(ys, xs)``, rounded exactly as the kernel rounds them."""
        rows, cols, arithmetic = self._rows, self._cols, self._arithmetic
        r0, r1, c0, c1 = rows.index0[ys], rows.index1[ys], cols.index0[xs], cols.index1[xs]
        if isinstance(index, np.ndarray):  # one instance per point: gather single logits by flat index
            flat, (_, height, width) = logits.reshape(-1), logits.shape
            first, second = (index * height + r0) * width, (index * height + r1) * width

            def tap(row: np.ndarray, col: np.ndarray) -> np.ndarray:
                return flat[row + col]
        else:
            plane, first, second = logits[index], r0, r1

            def tap(row: np.ndarray, col: np.ndarray) -> np.ndarray:
                return plane[..., row, col]
        wx0, wx1 = cols.weight0[xs], cols.weight1[xs]
        top = _combine(tap(first, c0), wx0, tap(first, c1), wx1, arithmetic.fused_x)
        bottom = _combine(tap(second, c0), wx0, tap(second, c1), wx1, arithmetic.fused_x)
        return _combine(top, rows.weight0[ys], bottom, rows.weight1[ys], arithmetic.fused_y)

    def make(self, indices: Sequence[int] | None = None) -> None:
        """Make (and keep) the pixels of instances ``indices`` (default: all) over their crops, all in one call."""
        if self._dense is not None:
            return
        todo = [i for i in map(int, range(self._count) if indices is None else indices)
                if i not in self._windows and i not in self._made]
        logits = self._logits
        if not todo or logits is None:
            return
        if self._arithmetic is not None:
            self._make_compiled(todo, logits)
        else:
            self._make_by_kernel(todo, logits)
        if len(self._windows) + len(self._made) == self._count:
            self._logits = None  # every pixel is made: the logits (4 bytes per prototype cell) can go

    def _make_compiled(self, todo: list[int], logits: np.ndarray) -> None:
        """Pixels, tight bounds and run lengths of ``todo`` by :func:`fastsam_ros.mask_kernel.make_masks`, kept as
        one :class:`_Pass`."""
        indices = np.asarray(todo, dtype=np.int64)
        x0, y0, x1, y1 = self._crops[indices].T
        widths, heights = np.maximum(x1 - x0, 0), np.maximum(y1 - y0, 0)
        offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(widths * heights, out=offsets[1:])
        pixels = np.empty(int(offsets[-1]), dtype=bool)
        bounds = np.empty((len(indices), 4), dtype=np.int64)
        run_offsets = np.empty(len(indices) + 1, dtype=np.int64)
        arithmetic = self._arithmetic
        runs = make_masks(logits, indices, self._crops, self._rows.table, self._cols.table, arithmetic.fused_x,
                          arithmetic.fused_y, offsets, pixels, bounds, run_offsets)
        made = _Pass(todo, pixels, offsets, list(zip(heights.tolist(), widths.tolist(), strict=True)), bounds, runs,
                      run_offsets)
        self._made.update((index, (made, k)) for k, index in enumerate(todo))

    def _make_by_kernel(self, todo: list[int], logits: np.ndarray) -> None:
        """Pixels of ``todo`` by the PyTorch kernel (``upsample``), in few kernel calls.

        Each instance's source crop starts one cell before its window's first tap (PyTorch clamps the first
        outputs of a crop to its edge) and ends one cell after its last (it clamps the second tap to the crop's
        end), unless the crop is at the frame's edge, where the frame clamps the same way. Crops are rounded up
        to multiples of ``_BUCKET`` cells (starting earlier or ending at the frame's edge) so that instances of
        one size share a call: a kernel call costs about as much as a few thousand output pixels. Output height
        + width always exceeds 128, and a call never has exactly 3 channels: PyTorch runs other kernels there.
        """
        ph, pw = logits.shape[1:]
        indices = np.asarray(todo, dtype=np.int64)
        x0, y0, x1, y1 = self._crops[indices].T
        filled = (x1 > x0) & (y1 > y0)
        for index in indices[~filled].tolist():
            cx0, cy0, cx1, cy1 = self.crop(index)
            self._windows[index] = np.zeros((max(cy1 - cy0, 0), max(cx1 - cx0, 0)), dtype=bool)
        indices, x0, y0, x1, y1 = indices[filled], x0[filled], y0[filled], x1[filled], y1[filled]
        r0 = np.maximum(self._rows.index0[y0] - 1, 0)
        r1 = np.minimum(self._rows.index1[y1 - 1] + 2, ph)
        c0 = np.maximum(self._cols.index0[x0] - 1, 0)
        c1 = np.minimum(self._cols.index1[x1 - 1] + 2, pw)
        heights = np.minimum(-(-(r1 - r0) // _BUCKET) * _BUCKET, ph)
        widths = np.minimum(-(-(c1 - c0) // _BUCKET) * _BUCKET, pw)
        small = heights + widths <= 32  # 4 x 32 = 128 outputs: widen
        widths = np.where(small, np.minimum(33 - heights, pw), widths)
        heights = np.where(small, np.minimum(np.maximum(heights, 33 - widths), ph), heights)
        r0, c0 = np.minimum(r0, ph - heights), np.minimum(c0, pw - widths)
        groups: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
        for index, top, left, height, width in zip(indices.tolist(), r0.tolist(), c0.tolist(), heights.tolist(),
                                                   widths.tolist(), strict=True):
            groups.setdefault((height, width), []).append((index, top, left))
        for (height, width), members in groups.items():
            stack = np.zeros((max(len(members), 4) if len(members) == 3 else len(members), height, width),
                             dtype=np.float32)
            for k, (index, r0, c0) in enumerate(members):
                stack[k] = logits[index, r0 : r0 + height, c0 : c0 + width]
            positive = self._upsample(stack, (4 * height, 4 * width)) > 0
            for k, (index, r0, c0) in enumerate(members):
                x0, y0, x1, y1 = self.crop(index)
                top, left, bottom, right = y0 - 4 * r0, x0 - 4 * c0, y1 - 4 * r0, x1 - 4 * c0
                self._windows[index] = positive[k, top:bottom, left:right]


def compile_kernels() -> None:
    """Compile the mask kernels now (seconds; a fraction of one from numba's cache of an earlier start), not on the
    first frame."""
    masks = InstanceMasks.from_logits(np.zeros((1, 2, 2), np.float32), np.zeros((1, 4), np.float32), (8, 8),
                                      Arithmetic(True, True), None)
    masks.packed_grid(1)
    masks.make()


def packed_grid_points(size: int, cells: int) -> np.ndarray:
    """The pixels of an axis of ``size`` pixels that :meth:`InstanceMasks.packed_grid` reads: every ``4 * cells``
    from ``4 * (cells // 2) + 2``."""
    return np.arange(4 * (cells // 2) + 2, size, 4 * cells)


def pack_rows(grid: np.ndarray) -> np.ndarray:
    """``(K, h, w)`` bool grid masks (``w <= 64``) as ``(K, h)`` uint64: bit x of a row is column x."""
    count, height, width = grid.shape
    bits = np.zeros((count, height, 64), dtype=bool)  # one contiguous run of bits packs fastest
    bits[:, :, :width] = grid
    return np.packbits(bits.reshape(-1), bitorder="little").view("<u8").reshape(count, height)


def calibrate(interpolate: object, sample: int = 40) -> Arithmetic | None:
    """Which :class:`Arithmetic` reproduces ``interpolate`` (an ``(N, ph, pw) -> (N, 4ph, 4pw)`` float32 callable
    running the real kernel, e.g. ``torch.nn.functional.interpolate`` on the inference device) bit for bit, or
    None when none does (the caller then makes masks the eager way).
    """
    rng = np.random.default_rng(0)
    logits = (rng.standard_normal((4, sample, sample)) * 4).astype(np.float32)
    expected = np.asarray(interpolate(logits), dtype=np.float32)  # type: ignore[operator]
    size = 4 * sample
    ys, xs = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    crops = np.tile(np.array([0, 0, size, size]), (4, 1))
    for fused_x in (True, False):
        for fused_y in (True, False):
            arithmetic = Arithmetic(fused_x, fused_y)
            probe = InstanceMasks((size, size), 4, logits=logits, crops=crops, arithmetic=arithmetic, upsample=None)
            values = probe._values(slice(None), ys.ravel(), xs.ravel(), logits).reshape(4, size, size)
            if np.array_equal(values.view(np.int32), expected.view(np.int32)):
                return arithmetic
    return None
