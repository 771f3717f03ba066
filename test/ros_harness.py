"""Run the node exactly as the launch file describes it, in its own process, and talk to it over DDS.

``launch``/``launch_ros`` are not installable here, so the launch file's plain-data ``node_spec`` is
turned into the equivalent ``--ros-args`` command line. The :class:`Probe` is an in-test rclpy node
that publishes images and prompts and records everything the node sends back.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
LAUNCH_FILE = REPO / "launch" / "fastsam.launch.py"


def ros_environment() -> None:
    """One DDS domain per test run, localhost only, and the big-SHM Fast DDS profile so images are not lost."""
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 100)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = REPO / "config" / "fastdds.xml"
    if profile.exists():
        os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(profile))


def load_launch_module() -> Any:
    spec = importlib.util.spec_from_file_location("fastsam_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_from_spec(spec: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """The ``--ros-args`` command line equivalent of a launch_ros node description."""
    installed = Path(sys.executable).parent / spec["executable"]
    program = [str(installed)] if installed.exists() else [sys.executable, "-m", "fastsam_ros.node"]
    args = ["--ros-args", "-r", f"__node:={spec['name']}"]
    if spec["namespace"]:
        args += ["-r", f"__ns:=/{spec['namespace'].lstrip('/')}"]
    for entry in spec["parameters"]:
        if isinstance(entry, str):
            args += ["--params-file", entry]
        else:
            overrides = {**entry, **overrides}
    for name, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else str(value)
        args += ["-p", f"{name}:={text}"]
    for source, target in spec["remappings"]:
        args += ["-r", f"{source}:={target}"]
    return program + args


class NodeProcess:
    """The fastsam node in a subprocess started from the launch file's node description."""

    def __init__(self, log_path: Path, namespace: str = "", image: str = "/camera/image_raw",
                 **parameters: Any) -> None:
        launch = load_launch_module()
        spec = launch.node_spec(model=str(parameters.pop("model")), device="cpu", image=image,
                                namespace=namespace, params_file=str(REPO / "config" / "fastsam.yaml"))
        self.command = command_from_spec(spec, parameters)
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "PYTHONUNBUFFERED": "1"}
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGINT like Ctrl-C in a launch terminal; the node must exit cleanly."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    return condition()


class Probe:
    """An rclpy node in the test process: publishes camera frames and prompts, records every output."""

    def __init__(self, namespace: str = "", image_topic: str = "/camera/image_raw", compressed: bool = False) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        from fastsam_ros.msg import Instances, Prompt, Selection
        from fastsam_ros.ros_io import RELIABLE_QOS

        ros_environment()
        self._context = rclpy.Context()
        rclpy.init(context=self._context)
        self.node = rclpy.create_node("fastsam_probe", context=self._context)
        self.prefix = f"/{namespace}" if namespace else ""
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._lock = threading.Lock()
        image_type = CompressedImage if compressed else Image
        self.image_pub = self.node.create_publisher(
            image_type, image_topic + ("/compressed" if compressed else ""), qos_profile_sensor_data)
        self.prompt_pub = self.node.create_publisher(Prompt, f"{self.prefix}/prompt", RELIABLE_QOS)
        from geometry_msgs.msg import PointStamped

        self.point_pub = self.node.create_publisher(PointStamped, f"{self.prefix}/prompt/point", RELIABLE_QOS)
        for name, msg_type in (("instances", Instances), ("selection", Selection), ("mask", Image),
                               ("debug_image", Image)):
            self.node.create_subscription(msg_type, f"{self.prefix}/{name}", self._recorder(name), RELIABLE_QOS)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), 10)
        self._executor = MultiThreadedExecutor(context=self._context)
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self._executor.spin()

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self._lock:
                self.received[name].append((time.monotonic(), msg))

        return record

    def messages(self, name: str) -> list[Any]:
        with self._lock:
            return [msg for _, msg in self.received[name]]

    def wait_for(self, name: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 30.0) -> Any:
        """The first recorded ``name`` message that satisfies ``predicate``, or None after ``timeout``."""
        return wait_until(lambda: next((m for m in self.messages(name) if predicate(m)), None), timeout)

    def wait_for_connections(self, node: NodeProcess, timeout: float = 60.0) -> bool:
        """True once ``node`` subscribes to our image and prompt topics and publishes its outputs."""
        def connected() -> bool:
            return (self.image_pub.get_subscription_count() > 0 and self.prompt_pub.get_subscription_count() > 0
                    and self.node.count_publishers(f"{self.prefix}/selection") > 0)

        ok = wait_until(lambda: connected() or not node.alive(), timeout) and node.alive()
        time.sleep(0.5)  # discovery completes both ways a moment after matching
        return bool(ok)

    def image_msg(self, pixels: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Any:
        from sensor_msgs.msg import Image

        from fastsam_ros.images import bgr_to_fields

        msg = Image(**bgr_to_fields(pixels))
        msg.header.frame_id = frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return msg

    def publish_image(self, pixels: np.ndarray, stamp_ns: int) -> Any:
        msg = self.image_msg(pixels, stamp_ns)
        self.image_pub.publish(msg)
        return msg

    def prompt(self, prompt_id: str, stamp_ns: int = 0, points: list = (), labels: list = (), boxes: list = (),
               persistent: bool = False, clear: bool = False, text: str = "") -> Any:
        from geometry_msgs.msg import Point

        from fastsam_ros.msg import Box, Prompt

        msg = Prompt(id=prompt_id, persistent=persistent, clear=clear, text=text)
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        msg.points = [Point(x=float(x), y=float(y)) for x, y in points]
        msg.labels = [int(label) for label in labels]
        msg.boxes = [Box(x1=float(a), y1=float(b), x2=float(c), y2=float(d)) for a, b, c, d in boxes]
        return msg

    def call(self, service_type: Any, name: str, request: Any, timeout: float = 30.0) -> Any:
        client = self.node.create_client(service_type, name)
        try:
            if not client.wait_for_service(timeout_sec=timeout):
                return None
            future = client.call_async(request)
            wait_until(future.done, timeout)
            return future.result()
        finally:
            self.node.destroy_client(client)

    def close(self) -> None:
        import rclpy

        rclpy.try_shutdown(context=self._context)
        self._thread.join(timeout=5)
        self._executor.shutdown()
        self.node.destroy_node()


def stamp_of(msg: Any) -> int:
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
