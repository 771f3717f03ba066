"""What the node sends: its topics (lifecycle publishers, so nothing leaves an inactive node) and /diagnostics.

Stamps per topic: ``instances`` carries every segmented frame; ``selection`` carries every answer, each with the
header of the frame it was made on (an answer on an older cached frame has that frame's older stamp); ``mask`` and
``debug_image`` show answers on the newest segmented frame only, so their stamps follow the camera's: an answer on an
older cached frame goes to ``selection`` alone.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticStatus
from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import Image

from fastsam_ros.msg import Instances
from fastsam_ros.msg import Selection as SelectionMsg
from fastsam_ros.overlay import draw_overlay
from fastsam_ros.ros import conversions, wire
from fastsam_ros.ros.frames import Frame
from fastsam_ros.ros.standard import StandardOutputs
from fastsam_ros.types import Prompt, Selection


@dataclass
class Health:
    """Counters and the last problem, for /diagnostics (updated from every thread)."""

    frames_received: int = 0
    frames_processed: int = 0
    bad_images: int = 0
    bad_prompts: int = 0
    internal_errors: int = 0
    depth_problems: int = 0
    last_inference_ms: float = 0.0
    last_error: str = ""
    configure_error: str = ""
    errors_since_report: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, message: str, counter: str) -> None:
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.last_error = message
            self.errors_since_report += 1

    def report(self) -> tuple[bytes, str, dict[str, Any]]:
        """``(level, message, counters)`` for one diagnostics status; starts the next reporting period."""
        with self.lock:
            if self.configure_error:
                level, message = DiagnosticStatus.ERROR, f"not configured: {self.configure_error}"
            elif self.errors_since_report:
                level, message = DiagnosticStatus.WARN, self.last_error
            else:
                level, message = DiagnosticStatus.OK, ""
            self.errors_since_report = 0
            counters = {name: getattr(self, name) for name in (
                "frames_received", "frames_processed", "bad_images", "bad_prompts", "internal_errors")}
            counters["last_inference_ms"] = f"{self.last_inference_ms:.1f}"
            counters["last_error"] = self.last_error
            return level, message, counters


class Outputs:
    """The node's output topics, made at configure and enabled only while the node is active."""

    def __init__(self, node: LifecycleNode, depth: Any = None, prefix: str = "") -> None:
        """``prefix``: the camera's topic prefix (``front/``; empty for the node's one camera)."""
        self._node = node
        self._depth = depth  # node_depth.DepthStage with use_depth: the 3D outputs
        make = node.create_lifecycle_publisher
        self._publishers = {
            "instances": make(Instances, f"{prefix}instances", conversions.RELIABLE_QOS),
            "selection": make(SelectionMsg, f"{prefix}selection", conversions.BURST_QOS),
            "mask": make(Image, f"{prefix}mask", conversions.RELIABLE_QOS),
            "debug_image": make(Image, f"{prefix}debug_image", conversions.RELIABLE_QOS),
        }
        self.standard = StandardOutputs(node, depth is not None, prefix)  # vision_msgs and the label image
        self._newest_stamp: int | None = None  # of the newest segmented frame: the only one mask and debug show

    def destroy(self) -> None:
        for publisher in self._publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers = {}
        self.standard.destroy()

    def segmented(self, frame: Frame) -> None:
        """``frame`` is the newest: from now on answers on older frames are not shown on ``mask``/``debug_image``
        (called before any prompt can be answered on it)."""
        self._newest_stamp = frame.stamp_ns

    def reads_every_mask(self, with_masks: bool) -> bool:
        """Whether :meth:`frame` will make every instance's mask (someone listens to ``instances`` with masks, or
        to the label image)."""
        listened = self._publishers["instances"].get_subscription_count() > 0
        return (with_masks and listened) or self.standard.reads_every_mask()

    def selection(self, selection: Selection, header: Any) -> None:
        self._publishers["selection"].publish(conversions.selection_msg(selection, header))
        self.standard.selection(selection, header)

    def frame(self, frame: Frame, answers: Sequence[Selection], prompts: Sequence[Prompt],
              with_masks: bool) -> None:
        """A segmented frame: its persistent prompts' answers first (what a robot waits on), then the rest."""
        for answer in answers:
            self.selection(answer, frame.header)
        if answers:
            self._mask(frame, answers)
            self._3d(frame, answers)
        publisher = self._publishers["instances"]
        if publisher.get_subscription_count() > 0:
            stamp = frame.header.stamp
            publisher.publish(wire.instances_cdr(frame.segmentation, stamp.sec, stamp.nanosec, frame.header.frame_id,
                                                 with_masks, frame.track_ids))  # serialized: bytes
        self.standard.frame(frame)
        self._debug(frame, answers, prompts)

    def answer(self, frame: Frame | None, selection: Selection, prompt: Prompt, request_header: Any) -> None:
        """One prompt's answer: on ``selection`` with its frame's header, and shown when its frame is the newest."""
        self.selection(selection, frame.header if frame is not None else request_header)
        if frame is None or frame.stamp_ns != self._newest_stamp:
            return
        self._mask(frame, [selection])  # empty when nothing was selected: never a stale mask
        self._3d(frame, [selection])
        if selection.ok:
            self._debug(frame, [selection], [prompt])

    def _mask(self, frame: Frame, selections: Sequence[Selection]) -> None:
        """One mono8 0/255 mask per answered frame: the union of every ok selection, all zero when none is ok
        (built only while someone listens)."""
        publisher = self._publishers["mask"]
        if publisher.get_subscription_count() == 0:
            return
        union = np.zeros(frame.segmentation.image_shape, dtype=bool)
        for selection in selections:
            for obj in selection.objects:
                union |= obj.mask
        publisher.publish(conversions.image_msg(union.view(np.uint8) * 255, frame.header))

    def _3d(self, frame: Frame, selections: Sequence[Selection]) -> None:
        if self._depth is not None:
            self._depth.publish(frame.header, frame.stamp_ns, frame.segmentation.image_shape, selections)

    def _debug(self, frame: Frame, selections: Sequence[Selection], prompts: Sequence[Prompt]) -> None:
        """The overlay costs milliseconds, so it is drawn only while someone watches."""
        publisher = self._publishers["debug_image"]
        if publisher.get_subscription_count() == 0:
            return
        overlay = draw_overlay(frame.image, frame.segmentation, selections, prompts)
        publisher.publish(conversions.image_msg(overlay, frame.header))
