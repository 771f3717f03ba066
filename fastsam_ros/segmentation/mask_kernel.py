"""Lazy instance masks made in compiled code (numba): pixels, tight boxes and run lengths in one pass.

At FastSAM's 100 instances a frame's masks cover ~1.5 million crop pixels. Made by PyTorch's upsample kernel
and then scanned by numpy for boxes and run lengths, they cost more than 10 ms per frame on a 2-core CPU. Here one
compiled pass per instance computes each output row of the bilinear upsample (``align_corners=False``, float32),
``> 0``:

* a pixel's value is a non-negative mix of its four source logits, so when all four are positive (above an
  underflow floor) it is set and when none is it is clear, without arithmetic. Output columns with the same two
  source columns form segments (four pixels wide at 4x), and a row of an instance is a few spans of settled
  segments, filled at once, plus the undecided pixels at the object's edge (about a tenth);
* an undecided pixel is interpolated in float32 along x, then y (:func:`_lerp`, as :func:`positive_at` computes
  single pixels), the order of PyTorch's kernel;
* the value flips of each row give the tight box and the row-major run lengths over it (background first, as
  :func:`fastsam_ros.segmentation.masks.encode_crops`), with no second pass over the pixels.
"""

from __future__ import annotations

import numpy as np
from numba import njit

POSITIVE_FLOOR = np.float32(1e-30)  # logits this small could underflow a weighted sum: evaluate them exactly
_CLEAR, _SET, _UNDECIDED = 0, 1, 2


@njit(inline="always")
def _lerp(a, w0, b, w1):
    """``a * w0 + b * w1``: float32 in, float32 out (no fast-math: numba neither fuses nor reorders it)."""
    return a * w0 + b * w1


@njit(cache=True, nogil=True)
def positive_at(logits, instances, ys, xs, rows, cols):
    """``(K,)`` bool: is ``logits[instances[k]]`` upsampled positive at output pixel ``(xs[k], ys[k])``
    (``rows``/``cols`` as for :func:`make_masks`)."""
    out = np.empty(len(instances), np.bool_)
    for k in range(len(instances)):
        n, y, x = instances[k], ys[k], xs[k]
        r0, r1, c0, c1, a, b = rows[0][y], rows[1][y], cols[0][x], cols[1][x], cols[2][x], cols[3][x]
        top = _lerp(logits[n, r0, c0], a, logits[n, r0, c1], b)
        bottom = _lerp(logits[n, r1, c0], a, logits[n, r1, c1], b)
        out[k] = _lerp(top, rows[2][y], bottom, rows[3][y]) > 0
    return out


@njit(inline="always")
def _settled(a, b):
    """Of two logits: both positive (set), both not (clear), or neither."""
    if a > POSITIVE_FLOOR and b > POSITIVE_FLOOR:
        return _SET
    if a <= 0 and b <= 0:
        return _CLEAR
    return _UNDECIDED


@njit(inline="always")
def _room(buffer, needed):
    """``buffer``, or a copy with room for ``needed`` items (at least twice as large): scratch grows with use."""
    if needed <= len(buffer):
        return buffer
    bigger = np.empty(max(needed, 2 * len(buffer)), buffer.dtype)
    bigger[: len(buffer)] = buffer
    return bigger


@njit(cache=True, nogil=True)
def packed_signs(logits, first, cells, rows0, rows1, columns0, columns1, out):
    """``out[n, i]``, bit ``j``: is ``logits[n, first + cells * i, first + cells * j] > 0``, for grid rows
    ``rows0[n]:rows1[n]`` and columns ``columns0[n]:columns1[n]`` (the grid points inside instance n's crop;
    other words and bits are left as they are). Reads only those logits: most instances are small."""
    for n in range(len(out)):
        for i in range(rows0[n], rows1[n]):
            word = np.uint64(0)
            row = first + cells * i
            for j in range(columns0[n], columns1[n]):
                if logits[n, row, first + cells * j] > 0:
                    word |= np.uint64(1) << np.uint64(j)
            out[n, i] = word


@njit(cache=True, nogil=True)
def make_masks(logits, instances, crops, rows, cols):
    """Instances ``instances`` of ``logits`` (N, ph, pw) float32 upsampled to output pixels and cut to ``crops``.

    ``rows``/``cols``: per output pixel of an axis ``(index0, index1, weight0, weight1, segment_end)`` (its
    source taps, their weights, and the first later pixel with other taps). Returns ``(pixels, offsets, bounds,
    runs, run_offsets)``, for the k-th instance: its crop's pixels at ``pixels[offsets[k]:offsets[k + 1]]``
    (row-major), its tight box ``bounds[k]`` (x0, y0, x1, y1, end exclusive; all zero when it has no pixel), its
    run lengths at ``runs[run_offsets[k]:run_offsets[k + 1]]`` (uint32). Allocated here, not by the caller: on
    the thread that makes a frame's masks beside the tracker, the numpy calls that did it delayed the pass by
    0.1 ms. Scratch memory grows with the flips, not the pixels: a frame's transient allocations stay small
    (large ones fragment the heap of a long-running node).
    """
    offsets = np.zeros(len(instances) + 1, np.int64)
    for k in range(len(instances)):
        n = instances[k]
        width, height = max(crops[n, 2] - crops[n, 0], 0), max(crops[n, 3] - crops[n, 1], 0)
        offsets[k + 1] = offsets[k] + width * height
    pixels = np.empty(offsets[-1], np.bool_)
    bounds = np.empty((len(instances), 4), np.int64)
    run_offsets = np.empty(len(instances) + 1, np.int64)
    row0, row1, wy0, wy1 = rows[0], rows[1], rows[2], rows[3]
    col0, col1, wx0, wx1, segment_end = cols[0], cols[1], cols[2], cols[3], cols[4]
    widest, tallest = 1, 1
    for k in range(len(instances)):
        widest = max(widest, crops[instances[k], 2] - crops[instances[k], 0])
        tallest = max(tallest, crops[instances[k], 3] - crops[instances[k], 1])
    # One output row pair's template: spans of settled segments (merged) and undecided segments.
    span_start = np.empty(widest, np.int64)
    span_end = np.empty(widest, np.int64)
    span_kind = np.empty(widest, np.uint8)
    top = np.empty(widest, np.float32)  # the undecided pixels' upsample along x, on the pair's two source rows
    bottom = np.empty(widest, np.float32)
    flips = np.empty(4096, np.int64)  # per row, the crop columns where the value flips (from clear)
    runs = np.empty(4096, np.uint32)
    row_flips = np.empty(tallest + 1, np.int64)
    settled = np.empty(col1[-1] + 1, np.uint8)
    written = 0
    for k in range(len(instances)):
        run_offsets[k] = written
        n = instances[k]
        x0, y0, x1, y1 = crops[n, 0], crops[n, 1], crops[n, 2], crops[n, 3]
        width, height = x1 - x0, y1 - y0
        bounds[k, 0] = bounds[k, 1] = bounds[k, 2] = bounds[k, 3] = 0
        if width <= 0 or height <= 0:
            continue
        first_col, last_col = col0[x0], col1[x1 - 1]
        flip_count, spans = 0, 0
        left, right, first_row, last_row = width, 0, -1, -1
        r0 = r1 = -1
        for i in range(height):
            y = y0 + i
            if row0[y] != r0 or row1[y] != r1:  # a new pair of source rows: a new template
                r0, r1 = row0[y], row1[y]
                for c in range(first_col, last_col + 1):
                    settled[c] = _settled(logits[n, r0, c], logits[n, r1, c])
                spans = 0
                j = 0
                while j < width:
                    x = x0 + j
                    c0, c1 = col0[x], col1[x]
                    end = min(segment_end[x] - x0, width)
                    kind = settled[c0] if settled[c0] == settled[c1] else _UNDECIDED
                    if spans > 0 and kind != _UNDECIDED and span_kind[spans - 1] == kind:
                        span_end[spans - 1] = end
                    else:
                        span_start[spans], span_end[spans], span_kind[spans] = j, end, kind
                        spans += 1
                    if kind == _UNDECIDED:
                        for q in range(j, end):
                            xq = x0 + q
                            top[q] = _lerp(logits[n, r0, c0], wx0[xq], logits[n, r0, c1], wx1[xq])
                            bottom[q] = _lerp(logits[n, r1, c0], wx0[xq], logits[n, r1, c1], wx1[xq])
                    j = end
            row_flips[i] = flip_count
            flips = _room(flips, flip_count + width + 1)
            value = False
            a, b = wy0[y], wy1[y]
            base = offsets[k] + i * width
            for s in range(spans):
                j, end, kind = span_start[s], span_end[s], span_kind[s]
                if kind != _UNDECIDED:
                    pixel = kind == _SET
                    pixels[base + j : base + end] = pixel
                    if pixel != value:
                        flips[flip_count] = j
                        flip_count += 1
                        value = pixel
                    continue
                for q in range(j, end):
                    pixel = _lerp(top[q], a, bottom[q], b) > 0
                    pixels[base + q] = pixel
                    flips[flip_count] = q
                    flip_count += pixel != value  # branch-free: edge pixels flip unpredictably
                    value = pixel
            if value:
                flips[flip_count] = width
                flip_count += 1
            if flip_count > row_flips[i]:
                if first_row < 0:
                    first_row = i
                last_row = i
                left, right = min(left, flips[row_flips[i]]), max(right, flips[flip_count - 1])
        row_flips[height] = flip_count
        if first_row < 0:
            continue
        bounds[k, 0], bounds[k, 1] = x0 + left, y0 + first_row
        bounds[k, 2], bounds[k, 3] = x0 + right, y0 + last_row + 1
        # The flips as positions in the tight box's raster; a row ending set and the next starting set is no flip.
        box_width, start, last = right - left, written, 0
        runs = _room(runs, written + flip_count + 1)
        for i in range(first_row, last_row + 1):
            shift = (i - first_row) * box_width - left
            for f in range(row_flips[i], row_flips[i + 1]):
                position = shift + flips[f]
                if written > start and position == last:
                    written -= 1
                    last -= runs[written]
                    continue
                runs[written] = position - last
                written += 1
                last = position
        total = box_width * (last_row - first_row + 1)
        if total > last:
            runs[written] = total - last
            written += 1
    run_offsets[len(instances)] = written
    return pixels, offsets, bounds, runs[:written].copy(), run_offsets
