"""3D outputs as messages: the point cloud's layout and bytes, the RViz boxes and labels."""

from __future__ import annotations

import numpy as np
from builtin_interfaces.msg import Time
from sensor_msgs.msg import PointField
from std_msgs.msg import Header
from visualization_msgs.msg import Marker

from fastsam_ros.depth.locate import Box3D
from fastsam_ros.ros import conversions, conversions_3d


def test_header_is_the_colour_stamp_in_the_camera_frame() -> None:
    image_header = Header(stamp=Time(sec=12, nanosec=34), frame_id="camera_color_frame")
    header = conversions.header_in(image_header, "camera_color_optical_frame")
    assert (header.stamp.sec, header.stamp.nanosec, header.frame_id) == (12, 34, "camera_color_optical_frame")


def test_cloud_is_xyz_float32_and_round_trips() -> None:
    points = np.array([[0.1, -0.2, 1.0], [0.0, 0.0, 2.5], [1.5, 2.0, 3.0]], dtype=np.float64)
    msg = conversions_3d.cloud_msg(points, Header(frame_id="cam"))
    assert [(f.name, f.offset, f.datatype, f.count) for f in msg.fields] == [
        ("x", 0, PointField.FLOAT32, 1), ("y", 4, PointField.FLOAT32, 1), ("z", 8, PointField.FLOAT32, 1)]
    assert (msg.height, msg.width, msg.point_step, msg.row_step, msg.is_dense, msg.is_bigendian) == (
        1, 3, 12, 36, True, False)
    decoded = np.frombuffer(bytes(msg.data), dtype="<f4").reshape(-1, 3)
    np.testing.assert_array_equal(decoded, points.astype(np.float32))
    assert conversions_3d.cloud_msg(np.zeros((0, 3), np.float32), Header()).width == 0


def test_markers_clear_the_last_answer_then_draw_a_box_and_a_label_per_object() -> None:
    boxes = [Box3D(centre=(0.1, 0.2, 1.0), size=(0.3, 0.2, 0.0), label="mug #3 1.00 m"),
             Box3D(centre=(-0.5, 0.0, 2.0), size=(0.1, 0.1, 0.1), label="mug 2.00 m")]
    msg = conversions_3d.markers_msg(boxes, Header(frame_id="cam"))
    clear, cube, label, second_cube, _ = msg.markers
    assert clear.action == Marker.DELETEALL and len(msg.markers) == 5
    assert (cube.type, cube.action, cube.id, cube.header.frame_id) == (Marker.CUBE, Marker.ADD, 0, "cam")
    assert (cube.pose.position.x, cube.pose.position.y, cube.pose.position.z) == (0.1, 0.2, 1.0)
    assert (cube.scale.x, cube.scale.y, cube.scale.z) == (0.3, 0.2, conversions_3d.MIN_BOX_SIDE_M)
    assert cube.pose.orientation.w == 1.0 and 0 < cube.color.a < 1
    assert (label.type, label.text, label.id) == (Marker.TEXT_VIEW_FACING, "mug #3 1.00 m", 1)
    assert label.pose.position.y < cube.pose.position.y - cube.scale.y / 2  # above the box (y points down)
    assert second_cube.id == 2 and (second_cube.color.r, second_cube.color.g) != (cube.color.r, cube.color.g)
    assert [m.action for m in conversions_3d.markers_msg([], Header()).markers] == [Marker.DELETEALL]
