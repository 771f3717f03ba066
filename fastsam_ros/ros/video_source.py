"""``video_source``: a video file or a camera (OpenCV) published as a ROS camera, to run the node without one.

``ros2 run fastsam_ros video_source --ros-args -p source:=clip.mp4 [-p rate:=10.0] [-p loop:=true]``
publishes ``image`` (``sensor_msgs/Image``, bgr8, sensor-data QoS) and ``camera_info``
(``sensor_msgs/CameraInfo``, uncalibrated: all-zero K) at the file's rate or ``rate``, stamped with the time of
publishing. A file that ends (without ``loop``) stops the node with exit status 0. Reading and pacing live in
:mod:`fastsam_ros.video`; this is the ROS shell.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import CameraInfo, Image
from std_msgs.msg import Header

from fastsam_ros.ros import conversions
from fastsam_ros.ros.process import exit_now, stop_on_signals
from fastsam_ros.video import VideoError, VideoReader, frame_period


class VideoSource(Node):
    """Publishes the frames of one :class:`VideoReader` on a timer."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("video_source", **kwargs)
        source = self.declare_parameter("source", "").value
        rate = float(self.declare_parameter("rate", 0.0).value)
        loop = bool(self.declare_parameter("loop", False).value)
        self._frame_id = str(self.declare_parameter("frame_id", "camera").value)
        self._reader = VideoReader(str(source), loop)  # VideoError: main() reports it and exits 2
        period = frame_period(rate, self._reader.fps)
        self._image = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self._info = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self._timer = self.create_timer(period, self._publish)
        self.finished = False
        self.get_logger().info(f"publishing {source} on {self.resolve_topic_name('image')} at {1 / period:.3g} Hz"
                               f"{' (looping)' if self._reader.loop else ''}")

    def _publish(self) -> None:
        image = self._reader.read()
        if image is None:
            self.get_logger().info(f"end of {self._reader.source} after {self._reader.frames_read} frames")
            self._timer.cancel()
            self.finished = True
            return
        header = Header(stamp=self.get_clock().now().to_msg(), frame_id=self._frame_id)
        self._image.publish(conversions.image_msg(image, header))
        self._info.publish(CameraInfo(header=header, height=image.shape[0], width=image.shape[1]))

    def close(self) -> None:
        self._reader.close()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``video_source``: exits 0 at the end of a file or on Ctrl-C, 2 when the source cannot be used.

    It exits like ``fastsam_node`` (:func:`~fastsam_ros.ros.process.exit_now`), without Python's finalization: that
    puts the default signal handlers back, and ``ros2 launch`` forwards the terminal's Ctrl-C a moment after the
    process group got it, which then killed a process already done (launch logged it as died, exit code -2)."""
    stop_requested = stop_on_signals()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    try:
        node = VideoSource()
    except VideoError as error:
        print(f"video_source: error: {error}", file=sys.stderr)
        rclpy.try_shutdown()
        exit_now(2)
    try:
        while rclpy.ok() and not node.finished and not stop_requested.is_set():
            rclpy.spin_once(node, timeout_sec=0.1)
    except ExternalShutdownException:
        pass
    finally:
        node.close()
        node.destroy_node()
        rclpy.try_shutdown()
    exit_now(0)


if __name__ == "__main__":
    main()
