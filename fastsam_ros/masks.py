"""Mask geometry (network resolution <-> image pixels) and a lossless per-instance encoding.

FastSAM masks nest and overlap, so each instance is encoded on its own: the mask cropped to
its box, run-length encoded row by row. ``decode_mask`` is the helper consumers use.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MaskGeometry:
    """How a letterboxed network-resolution mask lines up with the source image.

    Follows ultralytics' letterbox: the image is scaled by ``gain`` and centred (see ``content``).
    """

    image_shape: tuple[int, int]  # (H, W) of the source image
    mask_shape: tuple[int, int]  # (h, w) of the network's masks

    @property
    def gain(self) -> float:
        return min(self.mask_shape[0] / self.image_shape[0], self.mask_shape[1] / self.image_shape[1])

    @property
    def content(self) -> tuple[int, int, int, int]:
        """``(left, top, width, height)`` of the image inside the mask, in whole mask cells.

        The letterbox resizes each side to ``round(side * gain)`` and centres it with integer padding;
        this is ultralytics' own arithmetic (``LetterBox``, ``scale_boxes``, ``scale_masks``).
        """
        gain = self.gain
        height = max(round(self.image_shape[0] * gain), 1)
        width = max(round(self.image_shape[1] * gain), 1)
        left = round((self.mask_shape[1] - width) / 2 - 0.1)
        top = round((self.mask_shape[0] - height) / 2 - 0.1)
        return left, top, width, height

    def _affine(self) -> tuple[float, float, float, float]:
        """``(scale_x, scale_y, offset_x, offset_y)``: mask coordinate = image coordinate * scale + offset."""
        left, top, width, height = self.content
        return width / self.image_shape[1], height / self.image_shape[0], float(left), float(top)

    def to_mask_coords(self, xy: np.ndarray) -> np.ndarray:
        """Integer mask indices ``(mx, my)`` of image points ``xy`` (shape (K, 2)), clipped into the mask."""
        scale_x, scale_y, offset_x, offset_y = self._affine()
        points = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        cells = np.floor(points * (scale_x, scale_y) + (offset_x, offset_y)).astype(np.int64)
        cells[:, 0] = np.clip(cells[:, 0], 0, self.mask_shape[1] - 1)
        cells[:, 1] = np.clip(cells[:, 1], 0, self.mask_shape[0] - 1)
        return cells

    def box_to_mask_coords(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Mask-index slice bounds ``(x1, y1, x2, y2)`` covering an image-pixel box (end exclusive)."""
        scale_x, scale_y, offset_x, offset_y = self._affine()
        x1 = int(np.clip(np.floor(box[0] * scale_x + offset_x), 0, self.mask_shape[1]))
        y1 = int(np.clip(np.floor(box[1] * scale_y + offset_y), 0, self.mask_shape[0]))
        x2 = int(np.clip(np.ceil(box[2] * scale_x + offset_x), 0, self.mask_shape[1]))
        y2 = int(np.clip(np.ceil(box[3] * scale_y + offset_y), 0, self.mask_shape[0]))
        return x1, y1, x2, y2

    def cells_to_image_region(self, cells: tuple[int, int, int, int]) -> tuple[int, int, int, int]:
        """Image-pixel region ``(x0, y0, x1, y1)`` (end exclusive, inside the image) that :meth:`upsample` can set
        from mask cells inside ``cells`` (mask-index bounds, end exclusive, e.g. :func:`mask_box` of the mask).

        An instance's mask reaches up to one cell (``1 / gain`` image pixels) past its detection box on the right
        and bottom, so upsample ``cells_to_image_region(mask_box(mask))``, not the box, to keep every pixel.
        """
        left, top, content_w, content_h = self.content
        height, width = self.image_shape
        bounds = []
        for lo, hi, offset, content, size in (
            (cells[0], cells[2], left, content_w, width),
            (cells[1], cells[3], top, content_h, height),
        ):
            lo, hi = min(max(lo - offset, 0), content), min(max(hi - offset, 0), content)
            if hi <= lo:
                return 0, 0, 0, 0
            scale = content / size  # a pixel centre x + 0.5 lands on crop coordinate (x + 0.5) * scale
            start = int(np.floor(lo / scale - 0.5)) - 1  # pixels outside (lo, hi) after that map stay below 0.5
            stop = int(np.ceil(hi / scale - 0.5)) + 2
            bounds.append((min(max(start, 0), size), min(max(stop, 0), size)))
        (x0, x1), (y0, y1) = bounds
        return x0, y0, x1, y1

    def upsample_region(self, mask: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The image-resolution mask inside ``[y0:y1, x0:x1]`` only, exactly as ultralytics' ``scale_masks``.

        That is: crop the letterbox padding, bilinear resize (``align_corners=False``) to the image, ``> 0.5``.
        Computed separably in float32 with PyTorch's index and weight arithmetic, so ties at exactly 0.5 fall
        the same way, and only for the requested region: the cost is the region's pixels, not the frame's,
        and a region is exactly the same crop of :meth:`upsample`.
        """
        height, width = y1 - y0, x1 - x0
        if height <= 0 or width <= 0:
            return np.zeros((max(height, 0), max(width, 0)), dtype=bool)
        if self.mask_shape == self.image_shape:  # scale_masks returns such masks unchanged
            return np.asarray(mask[y0:y1, x0:x1], dtype=bool)
        left, top, content_w, content_h = self.content
        crop = mask[top : top + content_h, left : left + content_w]
        rows0, rows1, row_w0, row_w1 = _linear_taps(y0, y1, crop.shape[0], self.image_shape[0])
        cols0, cols1, col_w0, col_w1 = _linear_taps(x0, x1, crop.shape[1], self.image_shape[1])
        r_lo, r_hi = int(rows0[0]), int(rows1[-1]) + 1  # taps are monotonic: only these source rows matter
        c_lo, c_hi = int(cols0[0]), int(cols1[-1]) + 1
        source = crop[r_lo:r_hi, c_lo:c_hi].astype(np.float32)
        # Same order of float operations as PyTorch's CPU kernel: along x first, then along y (in place: 2x faster).
        along_x = np.take(source, cols0 - c_lo, axis=1)
        along_x *= col_w0
        right = np.take(source, cols1 - c_lo, axis=1)
        right *= col_w1
        along_x += right
        result = np.take(along_x, rows0 - r_lo, axis=0)
        result *= row_w0[:, None]
        below = np.take(along_x, rows1 - r_lo, axis=0)
        below *= row_w1[:, None]
        result += below
        return result > 0.5

    def upsample_own_region(self, mask: np.ndarray) -> tuple[np.ndarray, int, int]:
        """``(region, x0, y0)``: ``mask`` at image resolution over just the region its cells can reach.

        Every pixel the full :meth:`upsample` would set lies in that region; empty masks give a 0x0 region.
        """
        cells = mask_box(mask)
        if cells is None:
            return np.zeros((0, 0), dtype=bool), 0, 0
        x0, y0, x1, y1 = self.cells_to_image_region(cells)
        return self.upsample_region(mask, x0, y0, x1, y1), x0, y0

    def upsample(self, mask: np.ndarray) -> np.ndarray:
        """The whole mask at image resolution, ``(H, W)`` bool."""
        return self.upsample_region(mask, 0, 0, self.image_shape[1], self.image_shape[0])


def _linear_taps(start: int, stop: int, in_size: int, out_size: int) -> tuple[np.ndarray, ...]:
    """Source indices and weights of output pixels ``start..stop-1`` for a bilinear resize ``in_size -> out_size``.

    Mirrors PyTorch's ``area_pixel_compute_source_index`` (``align_corners=False``) in float32.
    """
    f32 = np.float32
    scale = f32(in_size) / f32(out_size)
    source = scale * (np.arange(start, stop, dtype=f32) + f32(0.5)) - f32(0.5)
    source = np.maximum(source, f32(0))
    index0 = np.minimum(source.astype(np.int64), in_size - 1)
    index1 = np.minimum(index0 + 1, in_size - 1)
    weight1 = np.clip(source - index0.astype(f32), f32(0), f32(1)).astype(f32)
    return index0, index1, (f32(1) - weight1).astype(f32), weight1


@dataclass(frozen=True)
class EncodedMask:
    """One instance mask, lossless: its box crop at image resolution, run-length encoded.

    ``counts`` alternate background and foreground runs over the crop in row-major order,
    starting with background (so a crop whose first pixel is set starts with a 0 run).
    """

    x: int
    y: int
    width: int
    height: int
    counts: np.ndarray  # uint32

    @property
    def nbytes(self) -> int:
        return 16 + self.counts.nbytes


def encode_crop(crop: np.ndarray) -> np.ndarray:
    """Row-major run lengths of a 2-D bool crop, background first."""
    flat = np.ascontiguousarray(crop, dtype=bool).ravel()
    if flat.size == 0:
        return np.zeros(0, dtype=np.uint32)
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    edges = np.concatenate(([0], change, [flat.size]))
    runs = np.diff(edges)
    if flat[0]:
        runs = np.concatenate(([0], runs))
    return runs.astype(np.uint32)


def decode_crop(counts: np.ndarray, height: int, width: int) -> np.ndarray:
    """Inverse of :func:`encode_crop`."""
    counts = np.asarray(counts, dtype=np.int64)
    if int(counts.sum()) != height * width:
        raise ValueError(f"run lengths sum to {int(counts.sum())}, expected {height}x{width}")
    values = np.arange(len(counts)) % 2 == 1
    return np.repeat(values, counts).reshape(height, width)


def encode_mask(mask: np.ndarray) -> EncodedMask:
    """Encode a full-resolution ``(H, W)`` bool mask by cropping it to its own box."""
    box = mask_box(mask)
    if box is None:
        return EncodedMask(0, 0, 0, 0, np.zeros(0, dtype=np.uint32))
    x0, y0, x1, y1 = box
    return EncodedMask(x0, y0, x1 - x0, y1 - y0, encode_crop(mask[y0:y1, x0:x1]))


def decode_mask(encoded: EncodedMask, image_shape: tuple[int, int]) -> np.ndarray:
    """The full ``(H, W)`` bool mask of one encoded instance."""
    full = np.zeros(image_shape, dtype=bool)
    if encoded.width and encoded.height:
        crop = decode_crop(encoded.counts, encoded.height, encoded.width)
        full[encoded.y : encoded.y + encoded.height, encoded.x : encoded.x + encoded.width] = crop
    return full


def mask_box(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    """Tight integer box ``(x0, y0, x1, y1)`` (end exclusive) of a bool mask, or None when empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    cols = np.flatnonzero(mask[top:bottom].any(axis=0))  # only the rows that hold pixels
    return int(cols[0]), top, int(cols[-1]) + 1, bottom


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shape bool masks (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0
