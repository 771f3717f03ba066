"""Points in metres to pixels of the colour image: where a point clicked in RViz or Foxglove lands on the frame.

ROS-free: the shell hands over the point (moved into the camera's optical frame by
:class:`fastsam_ros.depth.transform.RigidTransform`) and the camera's :class:`Intrinsics`; lens distortion is
ignored, as for 3D positions (use rectified images).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from fastsam_ros.depth.locate import DepthError, Intrinsics


def project(point: Sequence[float], intrinsics: Intrinsics, image_shape: tuple[int, int]) -> tuple[float, float]:
    """The pixel ``(x, y)`` of ``point`` (metres in the camera's optical frame: z forward, x right, y down) on a
    colour image of ``image_shape`` (H, W); :class:`DepthError` when it cannot be seen there."""
    x, y, z = (float(v) for v in point)
    if not all(math.isfinite(v) for v in (x, y, z)):
        raise DepthError(f"the point ({x}, {y}, {z}) is not finite")
    if z <= 0:
        raise DepthError(f"the point is behind the camera (z = {z:.3f} m in its optical frame)")
    if intrinsics.width and intrinsics.height and (intrinsics.height, intrinsics.width) != tuple(image_shape):
        raise DepthError(f"camera_info is for {intrinsics.width}x{intrinsics.height}, the colour image is "
                         f"{image_shape[1]}x{image_shape[0]}: use the colour camera's camera_info")
    return intrinsics.fx * x / z + intrinsics.cx, intrinsics.fy * y / z + intrinsics.cy
