"""The node's depth stage (``use_depth: true``): ``depth`` in (with the node's :class:`CameraModel`), 3D on every
answer, points and markers out. Kept apart from node.py so the 2D node is unchanged without it.

The node calls :meth:`DepthStage.pin` once per segmented frame (pairs the frame with its depth image while that
is still buffered), :meth:`DepthStage.locate` on every answer (topics, persistent prompts, the ``segment``
service) and :meth:`DepthStage.publish` with the answers it published for a frame. Depth that cannot give
positions never stops an answer: its objects carry ``has_position: false`` and the reason; neither does a
failure of the 3D code itself (reported through ``error``, like the node's other internal errors).

With ``target_frame``, positions, extents, points and boxes are moved into it with tf2 at the frame's stamp; where
tf2 or the transform is missing they stay in the camera's optical frame, each object's ``depth_reason`` says why,
and so do /diagnostics. Every answer's objects carry the frame they are in (``Location3D.frame_id``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
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
from fastsam_ros.depth.transform import RigidTransform
from fastsam_ros.ros import conversions, conversions_3d, transforms
from fastsam_ros.ros.camera import CameraModel
from fastsam_ros.types import Location3D, Selection

DEPTH_BUFFER = 30  # depth images kept for pairing: one second of a 30 Hz camera
TF_WAIT_S = 0.05  # how long an answer waits for the transform at its frame's stamp (tf arrives after images)


class DepthStage:
    """Depth and camera model of the colour frames, and the 3D outputs, for one active node."""

    def __init__(self, node: LifecycleNode, camera: CameraModel, depth_tolerance: float,
                 depth_range: Sequence[float], depth_wait: float, remembered: int, problem: Callable[[str], None],
                 error: Callable[[str, BaseException], None], target_frame: str = "", prefix: str = "") -> None:
        """``problem``: bad depth input (a reason); ``error``: a failure that is not the input's fault;
        ``target_frame``: the frame of the 3D answers (empty: the camera's optical frame); ``prefix``: the
        camera's topic prefix."""
        self._node = node
        self._prefix = prefix
        self._target_frame = target_frame
        self._transforms: Any = None  # the node's tf2 buffer while active (None: no tf2)
        # (camera frame, stamp) -> the last lookup: a frame's answers and its 3D outputs ask for the same transform,
        # and a missing one would otherwise wait TF_WAIT_S each time
        self._last_move: tuple[tuple[str, int], RigidTransform | str | None] | None = None
        self.target_state = "not set" if not target_frame else "no answer located yet"
        self._range = (float(depth_range[0]), float(depth_range[1]))
        self._wait_s = depth_wait
        self._problem = problem
        self._error = error
        self._pairer: StampPairer[Any] = StampPairer(int(round(depth_tolerance * 1e9)), DEPTH_BUFFER, remembered)
        self._camera = camera
        self.depth_received = 0
        self._publishers = {
            # Lifecycle publishers: nothing leaves the node while it is not active.
            "points": node.create_lifecycle_publisher(PointCloud2, f"{prefix}selection/points",
                                                      conversions.RELIABLE_QOS),
            "markers": node.create_lifecycle_publisher(MarkerArray, f"{prefix}selection/markers",
                                                       conversions.RELIABLE_QOS),
        }
        self._inputs: list[Any] = []

    def subscribe(self, qos: Any, transforms_buffer: Any = None) -> None:
        """Listen to ``depth`` with the camera's QoS (activate); ``transforms_buffer``: the node's tf2 buffer."""
        self._transforms, self._last_move = transforms_buffer, None
        self._pairer.clear()
        self._inputs = [self._node.create_subscription(Image, f"{self._prefix}depth", self._on_depth, qos)]

    def unsubscribe(self) -> None:
        """Stop listening and wake any answer waiting for depth (deactivate)."""
        self._transforms = None
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
            return f"no camera_info received on {self._node.resolve_topic_name(self._prefix + 'camera_info')}"
        if isinstance(camera[0], str):
            return camera[0]
        paired = self._pairer.pair(stamp_ns, self._wait_s if wait else 0.0)
        if paired.item is None:
            return f"{paired.reason} on {self._node.resolve_topic_name(self._prefix + 'depth')}"
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
            return self._placed(locate_selection(selection, view)[0], stamp_ns)
        except Exception as error:  # the 2D answer stands, its objects say what went wrong
            self._error(f"3D of prompt {selection.prompt_id!r}", error)
            return locate_selection(selection, f"3D failed: {error.__class__.__name__}: {error}")[0]

    def _placed(self, selection: Selection, stamp_ns: int) -> Selection:
        """``selection``'s located objects in ``target_frame``, or in the camera's frame with the reason."""
        camera = self._camera.get()
        camera_frame = camera[1] if camera else ""
        if not any(obj.location is not None and obj.location.has_position for obj in selection.objects):
            move: RigidTransform | str | None = None  # nothing to move: no lookup, no wait
        else:
            move = self._move(camera_frame, stamp_ns)
        if isinstance(move, str):
            self._problem(move)

        def place(location: Location3D) -> Location3D:
            if isinstance(move, RigidTransform):
                return move.location(location)
            if isinstance(move, str) and location.has_position:
                return replace(location, frame_id=camera_frame, reason=move)
            return replace(location, frame_id=camera_frame)

        return replace(selection, objects=tuple(
            replace(obj, location=place(obj.location)) if obj.location is not None else obj
            for obj in selection.objects))

    def _move(self, camera_frame: str, stamp_ns: int) -> RigidTransform | str | None:
        """The transform from the camera's frame into ``target_frame`` at ``stamp_ns``, why there is none (the 3D
        stays in the camera's frame), or None when no other frame is asked for."""
        target = self._target_frame
        if not target or target == camera_frame or not camera_frame:
            return None
        last = self._last_move
        if last is not None and last[0] == (camera_frame, stamp_ns):
            return last[1]
        move = self._lookup(target, camera_frame, stamp_ns)
        self._last_move = ((camera_frame, stamp_ns), move)
        return move

    def _lookup(self, target: str, camera_frame: str, stamp_ns: int) -> RigidTransform | str:
        found = transforms.lookup(self._transforms, target, camera_frame, stamp_ns, TF_WAIT_S)
        self.target_state = "ok" if isinstance(found, RigidTransform) else found
        if isinstance(found, str):
            return f"3D kept in the camera frame {camera_frame!r}, not target_frame {target!r}: {found}"
        return found

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
        move = self._move(frame_id, stamp_ns)
        if isinstance(move, RigidTransform):
            frame_id = move.frame_id
        header = conversions.header_in(image_header, frame_id)
        if wanted[0]:
            cloud = cloud_points([point for _, objects in located for point in objects])
            points.publish(conversions_3d.cloud_msg(move.points(cloud) if isinstance(move, RigidTransform)
                                                    else cloud, header))
        if wanted[1]:
            boxes = [box for selection, objects in located for box in boxes_3d(selection, objects)]
            if isinstance(move, RigidTransform):
                boxes = [move.box(box) for box in boxes]
            markers.publish(conversions_3d.markers_msg(boxes, header))

    def diagnostics(self) -> dict[str, Any]:
        camera = self._camera.get()
        state = "none received" if camera is None else camera[0] if isinstance(camera[0], str) else "ok"
        return {"depth_received": self.depth_received, "camera_info": state,
                "camera_frame": camera[1] if camera else "", "target_frame": self._target_frame,
                "target_frame_state": self.target_state}
