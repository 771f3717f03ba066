"""Mask geometry (network resolution <-> image pixels) and a lossless per-instance encoding.

FastSAM masks nest and overlap, so each instance is encoded on its own: the mask cropped to
its box, run-length encoded row by row. ``decode_mask`` is the helper consumers use.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class MaskGeometry:
    """How a letterboxed network-resolution mask lines up with the source image.

    Follows ultralytics' letterbox: the image is scaled by ``gain`` and centred with ``pad`` pixels.
    """

    image_shape: tuple[int, int]  # (H, W) of the source image
    mask_shape: tuple[int, int]  # (h, w) of the network's masks

    @property
    def gain(self) -> float:
        return min(self.mask_shape[0] / self.image_shape[0], self.mask_shape[1] / self.image_shape[1])

    @property
    def pad(self) -> tuple[float, float]:
        """``(pad_x, pad_y)`` added on each side by the letterbox."""
        gain = self.gain
        return (
            (self.mask_shape[1] - self.image_shape[1] * gain) / 2,
            (self.mask_shape[0] - self.image_shape[0] * gain) / 2,
        )

    def to_mask_coords(self, xy: np.ndarray) -> np.ndarray:
        """Integer mask indices ``(mx, my)`` of image points ``xy`` (shape (K, 2)), clipped into the mask."""
        pad_x, pad_y = self.pad
        scaled = np.asarray(xy, dtype=np.float64) * self.gain + (pad_x, pad_y)
        cells = np.floor(scaled).astype(np.int64)
        cells[:, 0] = np.clip(cells[:, 0], 0, self.mask_shape[1] - 1)
        cells[:, 1] = np.clip(cells[:, 1], 0, self.mask_shape[0] - 1)
        return cells

    def box_to_mask_coords(self, box: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """Mask-index slice bounds ``(x1, y1, x2, y2)`` covering an image-pixel box (end exclusive)."""
        pad_x, pad_y = self.pad
        gain = self.gain
        x1 = int(np.clip(np.floor(box[0] * gain + pad_x), 0, self.mask_shape[1]))
        y1 = int(np.clip(np.floor(box[1] * gain + pad_y), 0, self.mask_shape[0]))
        x2 = int(np.clip(np.ceil(box[2] * gain + pad_x), 0, self.mask_shape[1]))
        y2 = int(np.clip(np.ceil(box[3] * gain + pad_y), 0, self.mask_shape[0]))
        return x1, y1, x2, y2

    def upsample_region(self, mask: np.ndarray, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The image-resolution mask inside ``[y0:y1, x0:x1]`` only, bilinear like ultralytics' ``scale_masks``.

        Upsampling a region costs its own pixels, not the whole frame's.
        """
        height, width = y1 - y0, x1 - x0
        if height <= 0 or width <= 0:
            return np.zeros((max(height, 0), max(width, 0)), dtype=bool)
        pad_x, pad_y = self.pad
        # Same crop as ultralytics.utils.ops.scale_masks, then a half-pixel-centred bilinear map.
        top, left = int(round(pad_y - 0.1)), int(round(pad_x - 0.1))
        bottom = self.mask_shape[0] - int(round(pad_y + 0.1))
        right = self.mask_shape[1] - int(round(pad_x + 0.1))
        sx = (right - left) / self.image_shape[1]
        sy = (bottom - top) / self.image_shape[0]
        inverse = np.array(
            [[sx, 0.0, (x0 + 0.5) * sx - 0.5 + left], [0.0, sy, (y0 + 0.5) * sy - 0.5 + top]], dtype=np.float64
        )
        source = mask.astype(np.uint8) * 255
        warped = cv2.warpAffine(
            source, inverse, (width, height), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REPLICATE,
        )
        return warped >= 128

    def upsample(self, mask: np.ndarray) -> np.ndarray:
        """The whole mask at image resolution, ``(H, W)`` bool."""
        return self.upsample_region(mask, 0, 0, self.image_shape[1], self.image_shape[0])


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
    cols = np.flatnonzero(mask.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two same-shape bool masks (0 when both are empty)."""
    union = np.count_nonzero(a | b)
    return float(np.count_nonzero(a & b) / union) if union else 0.0
