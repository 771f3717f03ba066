"""The node's depth stage (``use_depth: true``): ``depth`` in (with the node's :class:`CameraModel`), 3D on every
answer, points and markers out. Kept apart from node.py so the 2D node is unchanged without it.

The node calls :meth:`DepthStage.pin` once per segmented frame (pairs the frame with its depth image while that
is still buffered), :meth:`DepthStage.locate` on every answer (topics, persistent prompts, the ``segment``
service) and :meth:`DepthStage.publish` with the answers it published for a frame. Depth that cannot give
positions never stops an answer: its objects carry ``has_position: false`` and the reason; neither does a
failure of the 3D code itself (reported through ``error``, like the node's other internal errors).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rclpy.lifecycle import LifecycleNode
from sensor_msgs.msg import Image, PointCloud2
from visualization_msgs.msg import MarkerArray

from fastsam_ros.depth.locate import (
    DepthError,
    DepthView,
    boxes_3d,
    cloud_points,
    decode_depth,
    depth_view,
    locate_selection,
)
from fastsam_ros.depth.pairing import StampPairer
from fastsam_ros.ros import conversions, conversions_3d
from fastsam_ros.ros.camera import CameraModel
from fastsam_ros.types import Selection

DEPTH_BUFFER = 30  # depth images kept for pairing: one second of a 30 Hz camera


class DepthStage:
    """Depth and camera model of the colour frames, and the 3D outputs, for one active node."""

    def __init__(self, node: LifecycleNode, camera: CameraModel, depth_tolerance: float,
                 depth_range: Sequence[float], depth_wait: float, remembered: int, problem: Callable[[str], None],
                 error: Callable[[str, BaseException], None]) -> None:
        """``problem``: bad depth input (a reason); ``error``: a failure that is not the input's fault."""
        self._node = node
        self._range = (float(depth_range[0]), float(depth_range[1]))
        self._wait_s = depth_wait
        self._problem = problem
        self._error = error
        self._pairer: StampPairer[Any] = StampPairer(int(round(depth_tolerance * 1e9)), DEPTH_BUFFER, remembered)
        self._camera = camera
        self.depth_received = 0
        self._publishers = {
            # Lifecycle publishers: nothing leaves the node while it is not active.
            "points": node.create_lifecycle_publisher(PointCloud2, "selection/points", conversions.RELIABLE_QOS),
            "markers": node.create_lifecycle_publisher(MarkerArray, "selection/markers", conversions.RELIABLE_QOS),
        }
        self._inputs: list[Any] = []

    def subscribe(self, qos: Any) -> None:
        """Listen to ``depth`` with the camera's QoS (activate)."""
        self._pairer.clear()
        self._inputs = [self._node.create_subscription(Image, "depth", self._on_depth, qos)]

    def unsubscribe(self) -> None:
        """Stop listening and wake any answer waiting for depth (deactivate)."""
        for subscription in self._inputs:
            self._node.destroy_subscription(subscription)
        self._inputs = []
        self._pairer.close()

    def destroy(self) -> None:
        self.unsubscribe()
        for publisher in self._publishers.values():
            self._node.destroy_lifecycle_publisher(publisher)
        self._publishers = {}

    def _on_depth(self, msg: Any) -> None:
        self.depth_received += 1
        self._pairer.add(conversions.stamp_ns(msg.header), msg)

    def view(self, stamp_ns: int, image_shape: tuple[int, int], wait: bool = False) -> DepthView | str:
        """The depth view of a colour frame, or why it has none (``wait``: for a depth image still on its way)."""
        camera = self._camera.get()
        if camera is None:
            return f"no camera_info received on {self._node.resolve_topic_name('camera_info')}"
        if isinstance(camera[0], str):
            return camera[0]
        paired = self._pairer.pair(stamp_ns, self._wait_s if wait else 0.0)
        if paired.item is None:
            return f"{paired.reason} on {self._node.resolve_topic_name('depth')}"
        try:
            return depth_view(decode_depth(paired.item), camera[0], image_shape, self._range)
        except DepthError as error:
            return f"depth image rejected: {error}"

    def pin(self, stamp_ns: int, image_shape: tuple[int, int]) -> None:
        """Pair a freshly segmented frame now, so prompts on it later still find its depth."""
        self.view(stamp_ns, image_shape, wait=True)

    def locate(self, selection: Selection, stamp_ns: int, image_shape: tuple[int, int]) -> Selection:
        """``selection`` with a location on every object; a frame without usable depth is a diagnostics entry."""
        if not selection.objects:
            return selection
        try:
            view = self.view(stamp_ns, image_shape)
            if isinstance(view, str):
                self._problem(f"no 3D for prompt {selection.prompt_id!r}: {view}")
            return locate_selection(selection, view)[0]
        except Exception as error:  # the 2D answer stands, its objects say what went wrong
            self._error(f"3D of prompt {selection.prompt_id!r}", error)
            return locate_selection(selection, f"3D failed: {error.__class__.__name__}: {error}")[0]

    def publish(self, image_header: Any, stamp_ns: int, image_shape: tuple[int, int],
                selections: Sequence[Selection]) -> None:
        """``selection/points`` and ``selection/markers`` of a frame's answers (none: nothing is published),
        each only while subscribed.

        The points are located again here (the answers keep only their summary): twice the 3D cost, and only
        while someone visualises. Answers without an object or without depth give an empty cloud and a marker
        clear-out, so the last ones do not linger.
        """
        camera = self._camera.get()
        points, markers = self._publishers.get("points"), self._publishers.get("markers")
        if not selections or camera is None or points is None or markers is None:
            return
        wanted = points.get_subscription_count() > 0, markers.get_subscription_count() > 0
        if not any(wanted):
            return
        try:
            self._publish(image_header, stamp_ns, image_shape, selections, camera[1], wanted)
        except Exception as error:  # never stops the 2D outputs published after this
            self._error("3D outputs", error)

    def _publish(self, image_header: Any, stamp_ns: int, image_shape: tuple[int, int],
                 selections: Sequence[Selection], frame_id: str, wanted: tuple[bool, bool]) -> None:
        points, markers = self._publishers["points"], self._publishers["markers"]
        view = self.view(stamp_ns, image_shape)
        located = [locate_selection(s, view) for s in selections if s.ok]
        header = conversions_3d.header_3d(image_header, frame_id)
        if wanted[0]:
            located_points = [point for _, objects in located for point in objects]
            points.publish(conversions_3d.cloud_msg(cloud_points(located_points), header))
        if wanted[1]:
            boxes = [box for selection, objects in located for box in boxes_3d(selection, objects)]
            markers.publish(conversions_3d.markers_msg(boxes, header))

    def diagnostics(self) -> dict[str, Any]:
        camera = self._camera.get()
        state = "none received" if camera is None else camera[0] if isinstance(camera[0], str) else "ok"
        return {"depth_received": self.depth_received, "camera_info": state,
                "camera_frame": camera[1] if camera else ""}
