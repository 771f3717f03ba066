"""``fastsam_ros/Instances`` written straight to its serialized bytes (CDR), which the node publishes as they are.

At a frame's 100 instances, building the generated message objects (one ``Instance``, ``Box`` and ``Mask`` per
instance) and serializing them cost more than the message's content. Every field after the header's
``frame_id`` is a 4-byte word (uint32 or float32), so the message is a header and one uint32 array laid out by
numpy. The layout is the one rmw serializes (plain CDR, little-endian, a 4-byte encapsulation header, alignment
counted after it), and rclpy's ``Publisher.publish`` takes ``bytes`` as an already serialized message. Padding
bytes are zeros (rmw leaves them as it finds them). No ROS import: the core writes it, the node publishes it.
"""

from __future__ import annotations

import struct

import numpy as np

from fastsam_ros.types import Segmentation

ENCAPSULATION = b"\x00\x01\x00\x00"  # CDR_LE, no options
_FIXED = 12  # words of an Instance before its counts: id, box x1 y1 x2 y2, score, area, mask x y w h, len(counts)


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
