"""Image message fields <-> numpy, without ROS: every encoding, padding, byte order and malformed input."""

from __future__ import annotations

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from fastsam_ros.ros import images
from fastsam_ros.ros.images import ImageError, bgr_to_fields, compressed_to_bgr, image_to_bgr

RNG = np.random.default_rng(7)
BGR = RNG.integers(0, 256, (5, 7, 3), dtype=np.uint8)


def raw(pixels: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> SimpleNamespace:
    height, width = pixels.shape[:2]
    row = pixels.reshape(height, -1)
    if pixels.dtype.itemsize == 2:
        row = pixels.astype(">u2" if bigendian else "<u2").reshape(height, -1).view(np.uint8)
    padded = np.concatenate([row, np.full((height, pad), 0xAB, dtype=np.uint8)], axis=1)
    return SimpleNamespace(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                           step=padded.shape[1], data=padded.tobytes())


@pytest.mark.parametrize("pad", [0, 3])
def test_bgr8_and_rgb8_round_trip_with_row_padding(pad: int) -> None:
    assert np.array_equal(image_to_bgr(raw(BGR, "bgr8", pad)), BGR)
    assert np.array_equal(image_to_bgr(raw(BGR[:, :, ::-1].copy(), "rgb8", pad)), BGR)


def test_four_channel_encodings_drop_alpha() -> None:
    alpha = np.full((5, 7, 1), 9, dtype=np.uint8)
    assert np.array_equal(image_to_bgr(raw(np.concatenate([BGR, alpha], 2), "bgra8")), BGR)
    assert np.array_equal(image_to_bgr(raw(np.concatenate([BGR[:, :, ::-1], alpha], 2), "rgba8")), BGR)


def test_mono8_becomes_three_equal_channels() -> None:
    mono = BGR[:, :, 0].copy()
    out = image_to_bgr(raw(mono[:, :, None], "mono8", pad=1))
    assert out.shape == (5, 7, 3)
    assert np.array_equal(out[:, :, 2], mono)


@pytest.mark.parametrize("bigendian", [False, True])
def test_mono16_honours_byte_order_and_stretches_its_range(bigendian: bool) -> None:
    values = np.array([[1000, 1500], [2000, 1000]], dtype=np.uint16)
    out = image_to_bgr(raw(values[:, :, None], "mono16", bigendian=bigendian))
    assert out[:, :, 0].tolist() == [[0, 127], [255, 0]]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"encoding": "yuv422"}, "unsupported encoding"),
        ({"height": 0}, "zero size"),
        ({"step": 5}, "step 5 is shorter"),
        ({"data": b"\x00" * 10}, "expected step x height"),
    ],
)
def test_malformed_raw_images_say_why(change: dict, needle: str) -> None:
    msg = raw(BGR, "bgr8")
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(ImageError, match=needle):
        image_to_bgr(msg)


def test_compressed_png_is_lossless_and_jpeg_decodes() -> None:
    png = cv2.imencode(".png", BGR)[1].tobytes()
    assert np.array_equal(compressed_to_bgr(SimpleNamespace(format="png", data=png)), BGR)
    jpeg = cv2.imencode(".jpg", np.full((16, 16, 3), 128, np.uint8))[1].tobytes()
    assert compressed_to_bgr(SimpleNamespace(format="bgr8; jpeg compressed bgr8", data=jpeg)).shape == (16, 16, 3)


@pytest.mark.parametrize(
    ("fmt", "data", "needle"),
    [("jpeg", b"\xff\xd8\xff\x00broken", "corrupt"), ("jpeg", b"", "no data"), ("tiff", b"II*\x00", "unsupported")],
)
def test_bad_compressed_images_say_why(fmt: str, data: bytes, needle: str) -> None:
    with pytest.raises(ImageError, match=needle):
        compressed_to_bgr(SimpleNamespace(format=fmt, data=data))


def test_fields_for_publishing_bgr_and_mono() -> None:
    fields = bgr_to_fields(BGR)
    assert (fields["encoding"], fields["step"], len(fields["data"])) == ("bgr8", 21, 105)
    assert np.array_equal(image_to_bgr(SimpleNamespace(**fields)), BGR)
    assert bgr_to_fields(BGR[:, :, 0])["encoding"] == "mono8"
    with pytest.raises(ImageError):
        bgr_to_fields(np.zeros((2, 2, 4), np.uint8))


def _huge_png() -> bytes:
    """A valid PNG header (CRC fixed) claiming 70000x70000 pixels in front of tiny data."""
    import zlib

    data = bytearray(cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes())
    data[16:24] = (70000).to_bytes(4, "big") * 2
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def test_claimed_size_is_read_from_headers_before_decoding() -> None:
    png = SimpleNamespace(format="png", data=_huge_png())
    jpeg = SimpleNamespace(format="jpeg", data=cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8))[1].tobytes())
    raw = SimpleNamespace(width=640, height=480, encoding="bgr8")
    assert images.claimed_size(png) == (70000, 70000)
    assert images.claimed_size(jpeg) == (53, 37)
    assert images.claimed_size(raw) == (640, 480)
    assert images.claimed_size(SimpleNamespace(format="jpeg", data=b"garbage")) is None
    with pytest.raises(images.ImageError, match="70000x70000 = 4,900,000,000 pixels, more than max_image_pixels"):
        images.check_size(png, 20_000_000)
    images.check_size(jpeg, 53 * 37)


def test_a_header_opencv_refuses_is_an_image_error_not_a_crash() -> None:
    with pytest.raises(images.ImageError, match="could not decode the png data"):
        images.compressed_to_bgr(SimpleNamespace(format="png", data=_huge_png()))
