"""Rigid transforms of 3D answers into ``target_frame`` (ROS-free)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastsam_ros.depth.locate import Box3D
from fastsam_ros.depth.transform import RigidTransform
from fastsam_ros.types import Location3D

OPTICAL_TO_BASE = RigidTransform((0.05, 0.0, 0.3), (-0.5, 0.5, -0.5, 0.5), frame_id="base_link")


def test_the_optical_frame_turns_into_a_robot_base() -> None:
    """z forward becomes x, x right becomes -y, y down becomes -z; then the camera's offset."""
    assert OPTICAL_TO_BASE.point((0.0, 0.0, 2.0)) == pytest.approx((2.05, 0.0, 0.3))
    assert OPTICAL_TO_BASE.point((0.3, -0.1, 1.0)) == pytest.approx((1.05, -0.3, 0.4))
    cloud = OPTICAL_TO_BASE.points(np.array([[0.3, -0.1, 1.0], [0.0, 0.0, 2.0]], dtype=np.float32))
    assert cloud.dtype == np.float32
    np.testing.assert_allclose(cloud, [[1.05, -0.3, 0.4], [2.05, 0.0, 0.3]], atol=1e-6)


def test_a_location_moves_with_its_extent_and_names_its_frame() -> None:
    located = Location3D(has_position=True, position=(0.3, -0.1, 1.0), size=(0.4, 0.2, 0.1), pixels=9)
    moved = OPTICAL_TO_BASE.location(located)
    assert moved.position == pytest.approx((1.05, -0.3, 0.4)) and moved.size == pytest.approx((0.1, 0.4, 0.2))
    assert moved.frame_id == "base_link" and moved.pixels == 9
    missing = OPTICAL_TO_BASE.location(Location3D.missing("no depth"))
    assert not missing.has_position and missing.reason == "no depth" and missing.frame_id == "base_link"


def test_a_turned_box_gets_the_extent_that_contains_it() -> None:
    eighth_turn_about_z = RigidTransform((0.0, 0.0, 0.0), (0.0, 0.0, math.sin(math.pi / 8), math.cos(math.pi / 8)))
    side = math.sqrt(2) / 2
    assert eighth_turn_about_z.extent((1.0, 0.0, 0.5)) == pytest.approx((side, side, 0.5))
    box = eighth_turn_about_z.box(Box3D(centre=(1.0, 0.0, 0.0), size=(1.0, 0.0, 0.5), label="cup"))
    assert box.centre == pytest.approx((side, side, 0.0)) and box.label == "cup"


def test_an_unnormalised_quaternion_is_normalised() -> None:
    assert RigidTransform((0, 0, 0), (0.0, 0.0, 0.0, 2.0)).point((1.0, 2.0, 3.0)) == pytest.approx((1.0, 2.0, 3.0))
