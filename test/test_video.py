"""Video files in and out (``fastsam_ros.video``) and the ``video_source`` node publishing one over ROS."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from fastsam_ros.video import DEFAULT_RATE_HZ, VideoError, VideoReader, VideoWriter, camera_index, frame_period

SIZE = (64, 48)  # width, height


def write_clip(path: Path, frames: int = 5, fps: float = 12.0) -> list[np.ndarray]:
    """A clip whose frame k is a flat grey of level 40 k (survives lossy codecs within a few levels)."""
    images = [np.full((SIZE[1], SIZE[0], 3), 40 * k, dtype=np.uint8) for k in range(frames)]
    writer = VideoWriter(path, fps)
    for image in images:
        writer.write(image)
    writer.close()
    return images


def test_a_written_clip_reads_back_frame_by_frame_with_its_rate(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    images = write_clip(clip)
    reader = VideoReader(str(clip))
    assert reader.fps == pytest.approx(12.0)
    read = [reader.read() for _ in range(len(images))]
    assert reader.read() is None, "the end of a file without loop"
    reader.close()
    for got, expected in zip(read, images, strict=True):
        assert got is not None and got.shape == (SIZE[1], SIZE[0], 3)
        assert abs(float(got.mean()) - float(expected.mean())) < 6


def test_a_looping_file_starts_again_at_its_end(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    write_clip(clip, frames=3)
    reader = VideoReader(str(clip), loop=True)
    levels = [float(reader.read().mean()) for _ in range(7)]
    reader.close()
    assert [round(level / 40) for level in levels] == [0, 1, 2, 0, 1, 2, 0]


def test_later_frames_of_another_size_are_scaled_to_the_first(tmp_path: Path) -> None:
    writer = VideoWriter(tmp_path / "mixed.avi", 10)
    writer.write(np.zeros((SIZE[1], SIZE[0], 3), dtype=np.uint8))
    writer.write(np.zeros((SIZE[1] * 2, SIZE[0] * 2, 3), dtype=np.uint8))
    writer.close()
    reader = VideoReader(str(tmp_path / "mixed.avi"))
    assert reader.read().shape == reader.read().shape == (SIZE[1], SIZE[0], 3)


def test_sources_periods_and_errors() -> None:
    assert camera_index("0") == 0 and camera_index(" 2 ") == 2 and camera_index("clip.mp4") is None
    assert frame_period(10.0, 25.0) == pytest.approx(0.1)
    assert frame_period(0.0, 25.0) == pytest.approx(0.04)
    assert frame_period(0.0, 0.0) == pytest.approx(1 / DEFAULT_RATE_HZ)
    with pytest.raises(VideoError, match="rate must be 0"):
        frame_period(-1.0, 25.0)
    with pytest.raises(VideoError, match="neither an existing file nor a camera index"):
        VideoReader("/no/such/clip.mp4")


def test_video_source_publishes_frames_with_camera_info_looping_until_interrupted(tmp_path: Path) -> None:
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.qos import qos_profile_sensor_data
    from sensor_msgs.msg import CameraInfo, Image

    clip = tmp_path / "clip.avi"
    write_clip(clip, frames=3)
    context = rclpy.Context()
    rclpy.init(context=context)
    node = rclpy.create_node("video_probe", context=context)
    got: dict[str, list] = {"image": [], "camera_info": []}
    lock = threading.Lock()

    def keep(name: str):
        def record(msg) -> None:
            with lock:
                got[name].append(msg)
        return record

    node.create_subscription(Image, "/vs/image", keep("image"), qos_profile_sensor_data)
    node.create_subscription(CameraInfo, "/vs/camera_info", keep("camera_info"), qos_profile_sensor_data)
    executor = SingleThreadedExecutor(context=context)
    executor.add_node(node)
    threading.Thread(target=executor.spin, daemon=True).start()
    process = subprocess.Popen([sys.executable, "-m", "fastsam_ros.ros.video_source", "--ros-args", "-r", "__ns:=/vs",
                                "-p", f"source:={clip}", "-p", "rate:=20.0", "-p", "loop:=true"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with lock:
                if len(got["image"]) >= 8:
                    break
            time.sleep(0.05)
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown(context=context)
    assert process.returncode == 0, output
    with lock:
        images, infos = list(got["image"]), list(got["camera_info"])
    assert len(images) >= 8, f"{len(images)} images: {output}"
    assert {(m.width, m.height, m.encoding) for m in images} == {(SIZE[0], SIZE[1], "bgr8")}
    levels = [round(float(np.frombuffer(m.data, dtype=np.uint8).mean()) / 40) for m in images]
    steps = zip(levels[:-1], levels[1:], strict=True)
    assert all(b == (a + 1) % 3 for a, b in steps), f"frames in order, looping: {levels}"
    assert {(i.width, i.height) for i in infos} == {SIZE}
    stamps = {(m.header.stamp.sec, m.header.stamp.nanosec) for m in images}
    assert stamps & {(i.header.stamp.sec, i.header.stamp.nanosec) for i in infos}, "info shares its image's stamp"


def test_video_source_stops_with_status_0_at_the_end_of_a_file(tmp_path: Path) -> None:
    clip = tmp_path / "clip.avi"
    write_clip(clip, frames=3)
    result = subprocess.run([sys.executable, "-m", "fastsam_ros.ros.video_source", "--ros-args", "-p",
                             f"source:={clip}", "-p", "rate:=30.0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "after 3 frames" in result.stderr


def test_video_source_refuses_a_missing_file_with_status_2() -> None:
    result = subprocess.run([sys.executable, "-m", "fastsam_ros.ros.video_source", "--ros-args", "-p",
                             "source:=/no/such.mp4"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "neither an existing file nor a camera index" in result.stderr


def test_video_source_stopping_with_ctrl_c_repeated_by_ros2_launch_exits_0(tmp_path: Path) -> None:
    """``ros2 launch`` forwards the terminal's Ctrl-C a moment after the process group got it: a repeat while the
    process is already exiting must not kill it (Python's finalization restored the default handler: exit -2)."""
    clip = tmp_path / "clip.avi"
    write_clip(clip, frames=3)
    process = subprocess.Popen([sys.executable, "-m", "fastsam_ros.ros.video_source", "--ros-args", "-p",
                                f"source:={clip}", "-p", "rate:=20.0", "-p", "loop:=true"],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 30
        while "publishing" not in (line := process.stdout.readline()) and time.monotonic() < deadline:
            assert line, "video_source ended before publishing"
        repeats_until = time.monotonic() + 0.4  # within the 0.5 s that count as the same press
        while process.poll() is None and time.monotonic() < repeats_until:
            process.send_signal(signal.SIGINT)
            time.sleep(0.005)
        output, _ = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, output
