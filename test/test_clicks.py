"""Clicks in metres to pixels: the projection (ROS-free) and /clicked_point through a fake tf2 buffer."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
from fake_tf import BASE_TO_OPTICAL, FakeBuffer, transform
from geometry_msgs.msg import PointStamped

from fastsam_ros.depth.locate import DepthError, Intrinsics
from fastsam_ros.depth.projection import project
from fastsam_ros.depth.transform import RigidTransform
from fastsam_ros.ros.clicks import clicked_pixel

K = Intrinsics(fx=500.0, fy=400.0, cx=320.0, cy=240.0, width=640, height=480)
SHAPE = (480, 640)


def test_a_point_projects_through_k() -> None:
    assert project((0.0, 0.0, 2.0), K, SHAPE) == (320.0, 240.0)
    assert project((0.2, -0.1, 2.0), K, SHAPE) == pytest.approx((370.0, 220.0))


@pytest.mark.parametrize(("point", "why"), [((0.0, 0.0, -1.0), "behind the camera"), ((0.0, 0.0, 0.0), "behind"),
                                            ((math.nan, 0.0, 1.0), "not finite")])
def test_a_point_the_camera_cannot_see_is_refused(point, why) -> None:
    with pytest.raises(DepthError, match=why):
        project(point, K, SHAPE)


def test_camera_info_of_another_size_is_refused() -> None:
    with pytest.raises(DepthError, match="camera_info is for 640x480"):
        project((0.0, 0.0, 1.0), K, (240, 320))


def test_a_transform_rotates_then_translates() -> None:
    quarter_turn_about_z = (0.0, 0.0, math.sin(math.pi / 4), math.cos(math.pi / 4))
    turned = RigidTransform((0.0, 0.0, 0.5), quarter_turn_about_z)
    assert turned.point((1.0, 0.0, 0.0)) == pytest.approx((0.0, 1.0, 0.5))
    shifted = RigidTransform((0.1, 0.2, 0.3), (0.0, 0.0, 0.0, 1.0))
    assert shifted.point((1.0, 2.0, 3.0)) == pytest.approx((1.1, 2.2, 3.3))


def clicked(frame_id: str, x: float, y: float, z: float) -> PointStamped:
    msg = PointStamped()
    msg.header.frame_id = frame_id
    msg.point.x, msg.point.y, msg.point.z = x, y, z
    return msg


def camera_buffer() -> FakeBuffer:
    """``base_link`` -> ``camera_optical``: the camera sits 10 cm above base_link (the optical frame's z is the
    robot's x, forward; its x is the robot's -y, right; its y the robot's -z, down)."""
    return FakeBuffer({("camera_optical", "base_link"): transform(BASE_TO_OPTICAL, (0.0, 0.1, 0.0))})


def test_a_point_in_the_optical_frame_is_projected_without_tf() -> None:
    assert clicked_pixel(clicked("camera_optical", 0.2, -0.1, 2.0), (K, "camera_optical"), SHAPE,
                         None) == pytest.approx((370.0, 220.0))


def test_a_point_in_another_frame_is_transformed_with_tf2_then_projected() -> None:
    buffer = camera_buffer()
    # 2 m ahead of base_link, 0.2 m to its right, level with it: in the camera (10 cm above) x 0.2, y 0.1, z 2.
    pixel = clicked_pixel(clicked("base_link", 2.0, -0.2, 0.0), (K, "camera_optical"), SHAPE, buffer)
    assert [asked[:2] for asked in buffer.asked] == [("camera_optical", "base_link")]
    assert pixel == pytest.approx((320.0 + 500.0 * 0.2 / 2.0, 240.0 + 400.0 * 0.1 / 2.0))


def test_without_tf2_or_a_transform_the_reason_names_the_frame() -> None:
    reason = clicked_pixel(clicked("map", 1.0, 0.0, 0.0), (K, "camera_optical"), SHAPE, None)
    assert "'map'" in reason and "'camera_optical'" in reason and "tf2_ros is not installed" in reason
    reason = clicked_pixel(clicked("map", 1.0, 0.0, 0.0), (K, "camera_optical"), SHAPE, camera_buffer())
    assert "no transform from 'map' to 'camera_optical'" in reason and "not connected" in reason
    assert clicked_pixel(clicked("camera_optical", 0.0, 0.0, 1.0), None, SHAPE, None).startswith("no camera_info")
    assert clicked_pixel(clicked("camera_optical", 0.0, 0.0, 1.0), ("camera_info rejected: no K", "x"), SHAPE,
                         None) == "camera_info rejected: no K"
    assert "behind the camera" in clicked_pixel(clicked("camera_optical", 0.0, 0.0, -1.0), (K, "camera_optical"),
                                                SHAPE, None)


def test_the_fake_buffer_is_the_shape_tf2_has() -> None:
    """The fields read from the lookup are TransformStamped's (a renamed field would fail here, not on a robot)."""
    found = camera_buffer().lookup_transform("camera_optical", "base_link", SimpleNamespace())
    assert {"translation", "rotation"} <= set(found.transform.get_fields_and_field_types())
