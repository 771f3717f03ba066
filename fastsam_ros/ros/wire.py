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
    fixed = np.zeros((count, _FIXED), dtype="<u4")
    if ids is not None:
        fixed[:, 0] = np.asarray(ids, dtype=np.int64)
    fixed[:, 1:5] = np.asarray(segmentation.boxes, dtype="<f4").reshape(count, 4).view("<u4")
    fixed[:, 5] = np.asarray(segmentation.scores, dtype="<f4").view("<u4")
    if not with_masks:
        fixed[:, 6] = segmentation.areas
        body = fixed.reshape(-1)
    else:
        encoded = segmentation.encoded_masks()
        lengths = encoded.lengths
        fixed[:, 7:11] = encoded.boxes
        fixed[:, 11] = lengths
        fixed[:, 6] = encoded.areas
        body = _interleave(fixed, encoded.counts, lengths)
    height, width = segmentation.image_shape
    return b"".join((
        header_cdr(sec, nanosec, frame_id), struct.pack("<III", height, width, count), body.tobytes(),
        struct.pack("<f", segmentation.timings.inference_ms)))


def _interleave(fixed: np.ndarray, runs: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Each instance's fixed words followed by its counts (``runs``, all masks' counts end to end)."""
    starts = np.arange(len(fixed)) * _FIXED + np.cumsum(lengths) - lengths
    out = np.empty(fixed.size + len(runs), dtype="<u4")
    is_fixed = np.zeros(len(out), dtype=bool)
    positions = (starts[:, None] + np.arange(_FIXED)).reshape(-1)
    out[positions] = fixed.reshape(-1)
    is_fixed[positions] = True
    out[~is_fixed] = runs
    return out
