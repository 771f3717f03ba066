"""The colour camera's model from ``camera_info``: one per node, read by the depth stage (3D positions) and by the
clicks (a point in metres projected to a pixel), so the node subscribes to it once and always."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from fastsam_ros.depth.locate import DepthError, Intrinsics

Camera = tuple[Intrinsics | str, str]  # the intrinsics (or why they are unusable), the optical frame_id


class CameraModel:
    """The newest ``sensor_msgs/CameraInfo`` (thread-safe); a rejected one is reported once until a good one comes."""

    def __init__(self, problem: Callable[[str], None]) -> None:
        self._problem = problem
        self._camera: Camera | None = None
        self._lock = threading.Lock()

    def on_msg(self, msg: Any) -> None:
        try:
            intrinsics: Intrinsics | str = Intrinsics.from_msg(msg)
        except DepthError as error:
            intrinsics = f"camera_info rejected: {error}"
        with self._lock:
            newly_rejected = isinstance(intrinsics, str) and (self._camera is None or
                                                               not isinstance(self._camera[0], str))
            self._camera = (intrinsics, str(msg.header.frame_id))
        if newly_rejected:
            self._problem(str(intrinsics))

    def get(self) -> Camera | None:
        """The newest camera model; None before the first ``camera_info``."""
        with self._lock:
            return self._camera
