"""Messages <-> core types: the only module besides the node that touches ROS types (``Instances`` goes out as
bytes written by :mod:`fastsam_ros.ros.wire`).

Everything here is a plain function of its inputs, so it is tested without spinning a node.
"""

from __future__ import annotations

import array
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import Point, Vector3
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from fastsam_ros.msg import Box as BoxMsg
from fastsam_ros.msg import Mask as MaskMsg
from fastsam_ros.msg import SelectedObject as SelectedObjectMsg
from fastsam_ros.msg import Selection as SelectionMsg
from fastsam_ros.ros import images
from fastsam_ros.segmentation.masks import EncodedMask, decode_mask
from fastsam_ros.types import Prompt, SelectedObject, Selection

_RELIABILITY = {"best_effort": ReliabilityPolicy.BEST_EFFORT, "reliable": ReliabilityPolicy.RELIABLE}


def image_qos(reliability: str, depth: int) -> QoSProfile:
    """Camera input QoS: keep the newest ``depth`` frames, best-effort by default like camera drivers."""
    if reliability not in _RELIABILITY:
        raise ValueError(f"image_reliability must be one of {', '.join(_RELIABILITY)}, got {reliability!r}")
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=depth, reliability=_RELIABILITY[reliability],
                      durability=DurabilityPolicy.VOLATILE)


RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Prompts and answers come in bursts (a planner sending one prompt per object; an answer per persistent prompt per
# frame): a reader or writer that keeps fewer loses the oldest of a burst without an answer, so ours keep this many,
# and a burst's publisher and the answers' subscribers need as deep a queue (or KEEP_ALL) on their side.
BURST_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1000, reliability=ReliabilityPolicy.RELIABLE)


def header_in(image_header: Any, frame_id: str) -> Header:
    """The image's stamp in another frame (3D outputs: the camera's optical frame or ``target_frame``)."""
    return Header(stamp=image_header.stamp, frame_id=frame_id)


def stamp_ns(header: Any) -> int:
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def prompt_from_msg(msg: Any) -> Prompt:
    """A ``fastsam_ros/Prompt`` as a core :class:`Prompt` (validation happens in selection)."""
    return Prompt(
        id=msg.id,
        points=tuple((float(p.x), float(p.y)) for p in msg.points),
        labels=tuple(int(label) for label in msg.labels),
        boxes=tuple((float(b.x1), float(b.y1), float(b.x2), float(b.y2)) for b in msg.boxes),
        text=msg.text,
    )


def text_prompt(msg: Any) -> Prompt:
    """A ``std_msgs/String`` on ``prompt/text`` as a text prompt on the newest frame."""
    return Prompt(id="text", text=msg.data)


def _box_msg(box: Iterable[float]) -> BoxMsg:
    x1, y1, x2, y2 = (float(v) for v in box)
    return BoxMsg(x1=x1, y1=y1, x2=x2, y2=y2)


def mask_msg(encoded: EncodedMask) -> MaskMsg:
    counts = array.array("I", np.ascontiguousarray(encoded.counts, dtype=np.uint32).tobytes())
    return MaskMsg(x=int(encoded.x), y=int(encoded.y), width=int(encoded.width), height=int(encoded.height),
                   counts=counts)


def mask_from_msg(msg: Any, image_shape: tuple[int, int]) -> np.ndarray:
    """Decode a ``fastsam_ros/Mask`` into a full ``(H, W)`` bool mask (the consumer-side helper)."""
    encoded = EncodedMask(int(msg.x), int(msg.y), int(msg.width), int(msg.height), np.asarray(msg.counts))
    return decode_mask(encoded, image_shape)


def _selected_object_msg(obj: SelectedObject) -> SelectedObjectMsg:
    out = SelectedObjectMsg(
        box=_box_msg(obj.box), score=obj.score, area=obj.area,
        centroid=Point(x=obj.centroid[0], y=obj.centroid[1], z=0.0),
        mask=mask_msg(obj.encoded_mask()), instances=array.array("I", obj.instances), track_id=obj.track_id,
    )
    if obj.location is not None:
        location = obj.location
        out.has_position = location.has_position
        out.position = Point(x=location.position[0], y=location.position[1], z=location.position[2])
        out.size = Vector3(x=location.size[0], y=location.size[1], z=location.size[2])
        out.depth_pixels = location.pixels
        out.depth_reason = location.reason
    return out


def selection_msg(selection: Selection, header: Any) -> SelectionMsg:
    return SelectionMsg(
        header=header, prompt_id=selection.prompt_id, status=selection.status.value, reason=selection.reason,
        objects=[_selected_object_msg(obj) for obj in selection.objects],
    )


class ImageDecoder:
    """Image messages -> BGR pixels: ROS 2's ``cv_bridge`` where it is installed, else ``fastsam_ros.ros.images``.

    Every failure becomes :class:`images.ImageError` with the reason, whichever converter ran.
    """

    def __init__(self) -> None:
        try:
            from cv_bridge import CvBridge

            self._bridge = CvBridge()
        except ImportError:
            self._bridge = None

    @property
    def backend(self) -> str:
        return "cv_bridge" if self._bridge is not None else "fastsam_ros.ros.images"

    def decode(self, msg: Any, max_pixels: int | None = None) -> np.ndarray:
        """BGR pixels of ``msg``; frames claiming more than ``max_pixels`` are rejected before decoding."""
        if max_pixels is not None:
            images.check_size(msg, max_pixels)
        compressed = hasattr(msg, "format")
        if self._bridge is None:
            return images.compressed_to_bgr(msg) if compressed else images.image_to_bgr(msg)
        convert: Callable[..., np.ndarray] = (
            self._bridge.compressed_imgmsg_to_cv2 if compressed else self._bridge.imgmsg_to_cv2
        )
        try:
            pixels = convert(msg, "bgr8")
        except Exception as error:  # cv_bridge raises CvBridgeError, TypeError, cv2.error, ...
            raise images.ImageError(f"cv_bridge could not convert the image: {error}") from error
        if pixels is None or pixels.size == 0:
            raise images.ImageError("cv_bridge returned an empty image")
        return pixels


def image_msg(pixels: np.ndarray, header: Any) -> Image:
    """A bgr8, mono8 or (uint16) 16UC1 ``sensor_msgs/Image`` carrying the source header."""
    return Image(header=header, **images.bgr_to_fields(pixels))


def diagnostic_status(name: str, level: bytes, message: str, values: dict[str, Any]) -> DiagnosticStatus:
    """One status entry; ``level`` is a ``DiagnosticStatus`` constant (OK, WARN, ERROR)."""
    return DiagnosticStatus(level=level, name=name, message=message, hardware_id="fastsam_ros",
                            values=[KeyValue(key=key, value=str(value)) for key, value in values.items()])


def diagnostics_msg(stamp: Any, statuses: list[DiagnosticStatus]) -> DiagnosticArray:
    out = DiagnosticArray()
    out.header.stamp = stamp
    out.status = statuses
    return out
