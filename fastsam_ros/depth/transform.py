"""Rigid transforms (what tf2 looks up) applied to 3D answers: a clicked point into the camera's optical frame, and
positions, extents, points and boxes out of it into the node's ``target_frame``. ROS-free: the shell hands over
the translation and unit quaternion of tf2's ``TransformStamped``.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from fastsam_ros.depth.locate import Box3D
from fastsam_ros.types import Location3D

Vector = tuple[float, float, float]


@dataclass(frozen=True)
class RigidTransform:
    """Rotate by the unit quaternion ``x, y, z, w``, then translate: a point in the source frame to ``frame_id``."""

    translation: Vector
    rotation_xyzw: tuple[float, float, float, float]
    frame_id: str = ""  # the frame the transformed values are in

    @functools.cached_property
    def rotation(self) -> np.ndarray:
        """The 3x3 rotation matrix of the (normalised) quaternion."""
        x, y, z, w = np.asarray(self.rotation_xyzw, dtype=np.float64) / np.linalg.norm(self.rotation_xyzw)
        return np.array([
            [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
            [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
            [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
        ])

    def point(self, point: Sequence[float]) -> Vector:
        moved = self.rotation @ np.asarray(point, dtype=np.float64) + np.asarray(self.translation, dtype=np.float64)
        return float(moved[0]), float(moved[1]), float(moved[2])

    def points(self, points: np.ndarray) -> np.ndarray:
        """``(N, 3)`` points, float32 as clouds are."""
        rotation = self.rotation.astype(np.float32)
        return np.asarray(points, dtype=np.float32) @ rotation.T + np.asarray(self.translation, dtype=np.float32)

    def extent(self, size: Sequence[float]) -> Vector:
        """The axis-aligned extent in the target frame of an axis-aligned box of extent ``size`` (exact for a
        rotation that keeps axes on axes, a bound otherwise)."""
        extent = np.abs(self.rotation) @ np.asarray(size, dtype=np.float64)
        return float(extent[0]), float(extent[1]), float(extent[2])

    def location(self, location: Location3D) -> Location3D:
        """``location`` (position and extent) in the target frame; one without a position only changes frame."""
        if not location.has_position:
            return replace(location, frame_id=self.frame_id)
        return replace(location, position=self.point(location.position), size=self.extent(location.size),
                       frame_id=self.frame_id)

    def box(self, box: Box3D) -> Box3D:
        """An RViz box in the target frame: its centre moved, its axis-aligned extent as :meth:`extent`."""
        return replace(box, centre=self.point(box.centre), size=self.extent(box.size))
