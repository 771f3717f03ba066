"""Clicks from the GUIs robot engineers already have open, as prompts.

* ``rqt_image_view`` with "publish click location" ticked publishes ``geometry_msgs/Point`` (pixels of the viewed
  image, z 0, no header) on ``<viewed topic>_mouse_left``: the node listens on its camera topic's and on its
  ``debug_image``'s, and answers on the newest frame (what the viewer shows);
* RViz's and Foxglove's "Publish Point" publish ``geometry_msgs/PointStamped`` in metres on ``/clicked_point``: a
  point in the colour camera's optical frame (``camera_info``'s) is projected with its K, one in another frame is
  first transformed with tf2 where ``tf2_ros`` is installed; otherwise the click is answered ``invalid``;
* ``prompt/point``: ``geometry_msgs/PointStamped`` in pixels, stamped with the frame (zero: the newest).

Every click is the prompt ``click``: one foreground point that replaces the previous click and follows the object it
selects (``click_follow``; false: one-shot), until a click (or a frame) finds nothing to select.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from geometry_msgs.msg import Point, PointStamped
from std_msgs.msg import Header

from fastsam_ros.depth.locate import DepthError
from fastsam_ros.depth.projection import project
from fastsam_ros.ros import conversions
from fastsam_ros.ros import transforms as transforms_
from fastsam_ros.ros.camera import Camera, CameraModel
from fastsam_ros.ros.frames import FrameBoard
from fastsam_ros.ros.prompt_registry import PromptRegistry
from fastsam_ros.types import FOREGROUND, Prompt, Selection, Status

CLICK_ID = "click"
MOUSE_SUFFIX = "_mouse_left"  # rqt_image_view: subscriber_.getTopic() + "_mouse_left"
CLICKED_POINT = "/clicked_point"  # RViz's and Foxglove's Publish Point tool (absolute by convention, remappable)


def clicked_pixel(msg: Any, camera: Camera | None, image_shape: tuple[int, int],
                  transforms: Any) -> tuple[float, float] | str:
    """Where a ``/clicked_point`` (``geometry_msgs/PointStamped``, metres) lands on a colour frame of
    ``image_shape``, or why it does not; ``transforms``: a tf2 buffer (None: no tf2)."""
    if camera is None:
        return "no camera_info received: a point in metres needs the colour camera's model"
    intrinsics, optical = camera
    if isinstance(intrinsics, str):
        return intrinsics
    source = str(msg.header.frame_id)
    point = (msg.point.x, msg.point.y, msg.point.z)
    if source != optical:
        moved = transforms_.lookup(transforms, optical, source)
        if isinstance(moved, str):
            return (f"the clicked point is in frame {source!r}, not the camera's optical frame {optical!r}, and "
                    f"tf2 cannot bring it there: {moved}")
        point = moved.point(point)
    try:
        return project(point, intrinsics, image_shape)
    except DepthError as error:
        return f"the clicked point cannot be seen by the camera: {error}"


class Clicks:
    """The click inputs of one configured node and what a click means (``click``, followed or one-shot)."""

    def __init__(self, node: Any, board: FrameBoard, registry: PromptRegistry, camera: CameraModel,
                 follow: Callable[[], bool], refuse: Callable[[Selection, Any], None], prefix: str = "") -> None:
        """``follow``: the live ``click_follow``; ``refuse``: sends (and counts) the answer to a click that names
        no pixel; ``prefix``: the camera's topic prefix (``front/``), which also puts RViz's point on
        ``front/clicked_point`` (a point in metres names no camera)."""
        self._node = node
        self._prefix = prefix
        self._board = board
        self._registry = registry
        self._camera = camera
        self._follow = follow
        self._refuse = refuse
        self._transforms: Any = None
        self._inputs: list[Any] = []

    def subscribe(self, transforms: Any) -> None:
        """Listen to every click topic (activate); for compressed transport rqt names the base topic too.
        ``transforms``: the node's tf2 buffer (None: no tf2)."""
        node = self._node
        self._transforms = transforms
        self._inputs = [
            node.create_subscription(Point, node.resolve_topic_name(self._prefix + viewed) + MOUSE_SUFFIX,
                                     self._on_viewer, conversions.BURST_QOS)
            for viewed in ("image", "debug_image")
        ] + [
            node.create_subscription(PointStamped, f"{self._prefix}clicked_point" if self._prefix else CLICKED_POINT,
                                     self._on_clicked_point, conversions.BURST_QOS),
            node.create_subscription(PointStamped, f"{self._prefix}prompt/point", self._on_pixel,
                                     conversions.BURST_QOS),
        ]

    def unsubscribe(self) -> None:
        for subscription in self._inputs:
            self._node.destroy_subscription(subscription)
        self._inputs = []
        self._transforms = None

    def click(self, x: float, y: float, stamp_ns: int, header: Any) -> None:
        """A click at pixel ``(x, y)`` of frame ``stamp_ns`` (0: the newest) replaces the previous one."""
        follow = self._follow()
        if not follow:
            self._registry.clear_persistent(CLICK_ID)
        prompt = Prompt(id=CLICK_ID, points=((float(x), float(y)),), labels=(FOREGROUND,))
        self._registry.request(prompt, stamp_ns, header, persistent=follow, ends_on_miss=True)

    def _on_viewer(self, msg: Any) -> None:
        self.click(msg.x, msg.y, 0, Header())

    def _on_pixel(self, msg: Any) -> None:
        self.click(msg.point.x, msg.point.y, conversions.stamp_ns(msg.header), msg.header)

    def _on_clicked_point(self, msg: Any) -> None:
        newest = self._board.cache.get(0)
        if newest is None:
            self._refuse(Selection.failed(CLICK_ID, Status.FRAME_NOT_AVAILABLE, self._board.why_missing(0)),
                         msg.header)
            return
        pixel = clicked_pixel(msg, self._camera.get(), newest.segmentation.image_shape, self._transforms)
        if isinstance(pixel, str):
            self._refuse(Selection.failed(CLICK_ID, Status.INVALID, pixel), msg.header)
            return
        self.click(*pixel, 0, Header())
