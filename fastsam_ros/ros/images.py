"""``sensor_msgs/Image`` and ``CompressedImage`` fields <-> numpy, for machines without ROS 2's cv_bridge.

Works on any object with the message's attributes, so it needs no ROS import and is testable alone.
Honours ``encoding``, ``step`` (row padding) and ``is_bigendian``; everything becomes HxWx3 uint8 BGR.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# encoding -> (channels, numpy dtype, conversion to BGR or None when already BGR)
_RAW_ENCODINGS: dict[str, tuple[int, str, int | None]] = {
    "bgr8": (3, "u1", None),
    "rgb8": (3, "u1", cv2.COLOR_RGB2BGR),
    "bgra8": (4, "u1", cv2.COLOR_BGRA2BGR),
    "rgba8": (4, "u1", cv2.COLOR_RGBA2BGR),
    "mono8": (1, "u1", cv2.COLOR_GRAY2BGR),
    "8UC1": (1, "u1", cv2.COLOR_GRAY2BGR),
    "8UC3": (3, "u1", None),
    "mono16": (1, "u2", cv2.COLOR_GRAY2BGR),
    "16UC1": (1, "u2", cv2.COLOR_GRAY2BGR),
}
SUPPORTED_ENCODINGS = tuple(_RAW_ENCODINGS)


class ImageError(ValueError):
    """An image message that cannot be turned into pixels; the message says why."""


def image_to_bgr(msg: Any) -> np.ndarray:
    """Pixels of a ``sensor_msgs/Image`` as HxWx3 uint8 BGR (16-bit mono is stretched to its own range)."""
    encoding = str(msg.encoding)
    if encoding not in _RAW_ENCODINGS:
        raise ImageError(f"unsupported encoding {encoding!r}; supported: {', '.join(SUPPORTED_ENCODINGS)}")
    channels, kind, conversion = _RAW_ENCODINGS[encoding]
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise ImageError(f"image has zero size {width}x{height}")
    itemsize = np.dtype(kind).itemsize
    row_bytes = width * channels * itemsize
    if step < row_bytes:
        raise ImageError(f"step {step} is shorter than one row of {width} {encoding} pixels ({row_bytes} bytes)")
    data = msg.data
    if len(data) < step * height:
        raise ImageError(f"data has {len(data)} bytes, expected step x height = {step * height}")
    dtype = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    rows = np.frombuffer(data, dtype=np.uint8, count=step * height).reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).reshape(height, width, channels)
    if itemsize == 2:
        pixels = _stretch_to_uint8(pixels)
    if conversion is None:
        return np.ascontiguousarray(pixels)
    return cv2.cvtColor(pixels, conversion)


def compressed_to_bgr(msg: Any) -> np.ndarray:
    """Pixels of a ``sensor_msgs/CompressedImage`` (jpeg or png) as HxWx3 uint8 BGR."""
    fmt = str(msg.format).lower()
    if "jpeg" not in fmt and "jpg" not in fmt and "png" not in fmt:
        raise ImageError(f"unsupported compressed format {msg.format!r}; supported: jpeg, png")
    buffer = np.frombuffer(bytes(msg.data), dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError("compressed image has no data")
    try:
        image = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    except cv2.error as error:  # e.g. a header claiming more pixels than OpenCV allows
        raise ImageError(f"could not decode the {msg.format} data ({buffer.size} bytes): {error.err}") from error
    if image is None:
        raise ImageError(f"could not decode the {msg.format} data ({buffer.size} bytes): corrupt or truncated")
    return image


def claimed_size(msg: Any) -> tuple[int, int] | None:
    """``(width, height)`` an image message claims before anything is decoded; None when a header is unreadable.

    Raw images carry it in fields; PNG in its IHDR chunk; JPEG in its start-of-frame marker.
    """
    if not hasattr(msg, "format"):
        return int(msg.width), int(msg.height)
    data = bytes(msg.data[:65536])  # headers sit at the start; EXIF before a JPEG's SOF stays under 64 KB
    if data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) >= 24:
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:2] == b"\xff\xd8":
        return _jpeg_size(data)
    return None


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    position = 2
    while position + 9 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        length = int.from_bytes(data[position + 2 : position + 4], "big")
        if marker in _JPEG_SOF:
            height = int.from_bytes(data[position + 5 : position + 7], "big")
            width = int.from_bytes(data[position + 7 : position + 9], "big")
            return width, height
        position += 2 + length
    return None


def check_size(msg: Any, max_pixels: int) -> None:
    """Reject a frame that claims more than ``max_pixels`` pixels, before its memory is allocated."""
    size = claimed_size(msg)
    if size is not None and size[0] * size[1] > max_pixels:
        raise ImageError(f"image claims {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, more than "
                         f"max_image_pixels {max_pixels:,}")


def _stretch_to_uint8(pixels: np.ndarray) -> np.ndarray:
    """Map 16-bit values linearly from their own min..max to 0..255 (IR and depth use a fraction of the range)."""
    values = pixels.astype(np.float32)
    low, high = float(values.min()), float(values.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return ((values - low) * scale).astype(np.uint8)


def bgr_to_fields(image: np.ndarray) -> dict[str, Any]:
    """``sensor_msgs/Image`` fields for a BGR or mono uint8 array, or a uint16 one (16UC1: labels, depth), little
    endian (``tobytes``: ~400x faster than assigning arrays)."""
    if image.ndim == 2:
        encoding, channels = ("16UC1", 1) if image.dtype == np.uint16 else ("mono8", 1)
    elif image.ndim == 3 and image.shape[2] == 3:
        encoding, channels = "bgr8", 3
    else:
        raise ImageError(f"cannot publish an array of shape {image.shape}")
    dtype = np.dtype("<u2") if encoding == "16UC1" else np.dtype(np.uint8)
    height, width = image.shape[:2]
    return {
        "height": height, "width": width, "encoding": encoding, "is_bigendian": 0,
        "step": width * channels * dtype.itemsize, "data": np.ascontiguousarray(image, dtype=dtype).tobytes(),
    }
