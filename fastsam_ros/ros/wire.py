"""``fastsam_ros/Instances`` written straight to its serialized bytes (CDR), which the node publishes as they are.

At a frame's 100 instances, building the generated message objects (one ``Instance``, ``Box`` and ``Mask`` per
instance) and serializing them cost more than the message's content. Every field after the header's
``frame_id`` is a 4-byte word (uint32 or float32), so the message is a header and one uint32 array laid out by
numpy. The layout is the one rmw serializes (plain CDR, little-endian, a 4-byte encapsulation header, alignment
counted after it), and rclpy's ``Publisher.publish`` takes ``bytes`` as an already serialized message. Padding
bytes are zeros (rmw leaves them as it finds them). No ROS import: the core writes it, the node publishes it.

The bytes follow :data:`LAYOUT`, the fields this module writes in order. Importing it checks that table against
the generated message types (:func:`check_layout`), so an edit to a ``.msg`` file stops the node at start-up
with the difference, instead of publishing bytes that subscribers misread. Where the generated types are not
installed (the ROS-free core, Python 3.10 tests), there is nothing to publish and nothing to check.
"""

from __future__ import annotations

import importlib
import struct
from collections.abc import Callable

import numpy as np
from numba import njit

from fastsam_ros.types import Segmentation

ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR_LE, no options
_FIXED = 12  # words of an Instance before its counts: id, box x1 y1 x2 y2, score, area, mask x y w h, len(counts)

# Every message type whose fields header_cdr and instances_cdr write, with those fields in order, as the
# generated types' get_fields_and_field_types() spells them.
LAYOUT: dict[str, dict[str, str]] = {
    "fastsam_ros/Instances": {"header": "std_msgs/Header", "height": "uint32", "width": "uint32",
                              "instances": "sequence<fastsam_ros/Instance>", "inference_ms": "float"},
    "fastsam_ros/Instance": {"id": "uint32", "box": "fastsam_ros/Box", "score": "float", "area": "uint32",
                             "mask": "fastsam_ros/Mask"},
    "fastsam_ros/Box": {"x1": "float", "y1": "float", "x2": "float", "y2": "float"},
    "fastsam_ros/Mask": {"x": "uint32", "y": "uint32", "width": "uint32", "height": "uint32",
                         "counts": "sequence<uint32>"},
    "std_msgs/Header": {"stamp": "builtin_interfaces/Time", "frame_id": "string"},
    "builtin_interfaces/Time": {"sec": "int32", "nanosec": "uint32"},
}


class WireLayoutError(RuntimeError):
    """A message definition no longer matches the bytes this module writes; the message names the difference."""


def generated_fields(name: str) -> dict[str, str] | None:
    """``package/Type``'s fields as its generated Python class gives them (None: the package is not installed)."""
    package, type_name = name.split("/")
    try:
        module = importlib.import_module(f"{package}.msg")
    except ImportError:
        return None
    return dict(getattr(module, type_name).get_fields_and_field_types())


def check_layout(fields_of: Callable[[str], dict[str, str] | None] = generated_fields) -> bool:
    """Raise :class:`WireLayoutError` where a type's fields (names, types or order) differ from :data:`LAYOUT`.

    Returns whether the types were there to check.
    """
    checked = False
    for name, expected in LAYOUT.items():
        actual = fields_of(name)
        if actual is None:
            continue
        checked = True
        if list(actual.items()) != list(expected.items()):
            raise WireLayoutError(
                f"{name} is now {_fields(actual)}, but fastsam_ros/ros/wire.py writes {_fields(expected)}: update "
                f"wire.py's LAYOUT and instances_cdr with the .msg file (test/test_wire.py checks the bytes)")
    return checked


def _fields(fields: dict[str, str]) -> str:
    return "(" + ", ".join(f"{kind} {name}" for name, kind in fields.items()) + ")"


check_layout()


def header_cdr(sec: int, nanosec: int, frame_id: str) -> bytes:
    """The encapsulation and a ``std_msgs/Header`` (``int32 sec``, ``uint32 nanosec``, ``string frame_id``),
    padded so that the next field is 4-byte aligned."""
    text = frame_id.encode("utf-8") + b"\x00"
    return ENCAPSULATION + struct.pack("<iII", sec, nanosec, len(text)) + text + b"\x00" * (-len(text) % 4)


def instances_cdr(segmentation: Segmentation, sec: int, nanosec: int, frame_id: str, with_masks: bool,
                  ids: np.ndarray | None = None) -> bytes:
    """The serialized ``fastsam_ros/Instances`` of a frame; ``ids``: track ids (else 0).

    With masks, each instance's mask is encoded on its own (overlaps survive) and ``area`` is its pixel count
    (exact); without, masks are empty and ``area`` is the segmentation's estimate (:attr:`Segmentation.areas`),
    so no mask is made at image resolution.
    """
    count = len(segmentation)
    track_ids = np.zeros(count, np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
    boxes = np.ascontiguousarray(segmentation.boxes, dtype="<f4").reshape(count, 4).view("<u4")
    scores = np.ascontiguousarray(segmentation.scores, dtype="<f4").view("<u4")
    if with_masks:
        encoded = segmentation.encoded_masks()
        body = _instance_words(track_ids, boxes, scores, _NO_AREAS, encoded.boxes, encoded.offsets, encoded.counts)
    else:
        body = _instance_words(track_ids, boxes, scores, np.asarray(segmentation.areas, dtype=np.int64),
                               np.zeros((count, 4), np.int64), np.zeros(count + 1, np.int64), _NO_COUNTS)
    height, width = segmentation.image_shape
    return b"".join((
        header_cdr(sec, nanosec, frame_id), struct.pack("<III", height, width, count), body.tobytes(),
        struct.pack("<f", segmentation.timings.inference_ms)))


_NO_AREAS, _NO_COUNTS = np.zeros(0, np.int64), np.zeros(0, np.uint32)


@njit(cache=True, nogil=True)
def _instance_words(ids, boxes, scores, areas, mask_boxes, offsets, counts):
    """The ``Instance`` sequence's elements as little-endian words, each its ``_FIXED`` words then its counts (one
    pass: at 100 instances the numpy steps it replaced cost 0.1 ms right after inference). ``boxes``/``scores``:
    float32 bits; ``areas`` empty: each mask's pixels from its counts (background first, alternating), in this pass
    rather than by :attr:`EncodedMasks.areas`, whose numpy steps took as long as the rest (that module stays free of
    numba: the result types import it)."""
    out = np.empty(len(ids) * _FIXED + len(counts), np.uint32)
    at = 0
    for k in range(len(ids)):
        first, last = offsets[k], offsets[k + 1]
        area = 0
        if len(areas):
            area = areas[k]
        else:
            for run in range(first + 1, last, 2):
                area += counts[run]
        out[at] = ids[k]
        out[at + 1 : at + 5] = boxes[k]
        out[at + 5], out[at + 6] = scores[k], area
        out[at + 7 : at + 11] = mask_boxes[k]
        out[at + 11] = last - first
        out[at + _FIXED : at + _FIXED + last - first] = counts[first:last]
        at += _FIXED + last - first
    return out


def compile_kernels() -> None:
    """Compile :func:`_instance_words` now (from numba's cache of an earlier start: a fraction of a second)."""
    one = np.zeros(1, np.int64)
    _instance_words(one, np.zeros((1, 4), np.uint32), np.zeros(1, np.uint32), _NO_AREAS, np.zeros((1, 4), np.int64),
                    np.zeros(2, np.int64), _NO_COUNTS)
