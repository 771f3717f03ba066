"""A small rclpy client for the fastsam node: publish frames and prompts, record every answer.

It runs its own context and spin thread, so scripts (the demo, the benchmark) and tests can use it
next to anything else. Robot software usually talks to the node with its own nodes instead. Constructing
it changes nothing in the process: the domain is ``domain_id``, else ROS's own default (``ROS_DOMAIN_ID``, or 0).
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.node_process import NodeProcess, wait_until

_CLIENTS = itertools.count()


class FastSAMClient:
    """Publishes camera frames and prompts to one fastsam node and records everything it sends back."""

    def __init__(self, namespace: str = "", image_topic: str = "/camera/image_raw", compressed: bool = False,
                 domain_id: int | None = None,
                 outputs: tuple[str, ...] = ("instances", "selection", "mask", "debug_image")) -> None:
        """``outputs``: the node's topics to record (the node builds `mask` and `debug_image` only while heard)."""
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import qos_profile_sensor_data
        from sensor_msgs.msg import CompressedImage, Image

        from fastsam_ros.msg import Instances, Prompt, Selection
        from fastsam_ros.ros.conversions import BURST_QOS, RELIABLE_QOS

        self._context = rclpy.Context()
        rclpy.init(context=self._context, domain_id=domain_id)
        # one name per client: several in one process (one per camera) each log under their own
        self.node = rclpy.create_node(f"fastsam_client_{next(_CLIENTS)}", context=self._context)
        self.prefix = f"/{namespace}" if namespace else ""
        self.received: dict[str, list[Any]] = defaultdict(list)
        self._outputs: list[Any] = []  # our subscriptions to the node's outputs
        self._arrived = threading.Condition()  # notified on every recorded message
        image_type = CompressedImage if compressed else Image
        self.image_pub = self.node.create_publisher(
            image_type, image_topic + ("/compressed" if compressed else ""), qos_profile_sensor_data)
        self.prompt_pub = self.node.create_publisher(Prompt, f"{self.prefix}/prompt", RELIABLE_QOS)
        from geometry_msgs.msg import PointStamped

        self.point_pub = self.node.create_publisher(PointStamped, f"{self.prefix}/prompt/point", RELIABLE_QOS)
        for name, msg_type in (("instances", Instances), ("selection", Selection), ("mask", Image),
                               ("debug_image", Image)):
            if name not in outputs:
                continue
            qos = BURST_QOS if name == "selection" else RELIABLE_QOS  # answers come in bursts
            self._outputs.append(
                self.node.create_subscription(msg_type, f"{self.prefix}/{name}", self._recorder(name), qos))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._recorder("diagnostics"), 10)
        self._executor = SingleThreadedExecutor(context=self._context)  # callbacks only record: no pool needed
        self._executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        with contextlib.suppress(ExternalShutdownException):
            self._executor.spin()

    def _recorder(self, name: str) -> Callable[[Any], None]:
        def record(msg: Any) -> None:
            with self._arrived:
                self.received[name].append((time.monotonic(), msg))
                self._arrived.notify_all()

        return record

    def record(self, name: str, msg_type: Any, topic: str, qos: Any = None) -> None:
        """Also record ``topic`` under ``name`` (e.g. the 3D outputs), for :meth:`wait_for`."""
        from fastsam_ros.ros.conversions import RELIABLE_QOS

        self.node.create_subscription(msg_type, topic, self._recorder(name), qos or RELIABLE_QOS)

    def messages(self, name: str) -> list[Any]:
        with self._arrived:
            return [msg for _, msg in self.received[name]]

    def wait_for(self, name: str, predicate: Callable[[Any], bool] = lambda _: True, timeout: float = 30.0) -> Any:
        """The first recorded ``name`` message that satisfies ``predicate``, or None after ``timeout``."""
        return self.wait_for_nth(name, 0, predicate, timeout)

    def count(self, name: str, predicate: Callable[[Any], bool] = lambda _: True) -> int:
        return sum(1 for m in self.messages(name) if predicate(m))

    def wait_for_nth(self, name: str, index: int, predicate: Callable[[Any], bool] = lambda _: True,
                     timeout: float = 30.0) -> Any:
        """The ``index``-th (from 0) recorded ``name`` message satisfying ``predicate``, or None after ``timeout``.

        Wakes on each arrival (no polling), so latencies measured around it are not quantised.
        """
        def nth() -> Any:
            matching = [m for _, m in self.received[name] if predicate(m)]
            return matching[index] if len(matching) > index else None

        deadline = time.monotonic() + timeout
        with self._arrived:
            while (found := nth()) is None and (remaining := deadline - time.monotonic()) > 0:
                self._arrived.wait(remaining)
        return found

    def wait_for_connections(self, node: NodeProcess, timeout: float = 60.0) -> bool:
        """True once ``node`` subscribes to our image and prompt topics and publishes its outputs."""
        def connected() -> bool:  # both ways: the node builds an output only while it sees a subscriber
            return (self.image_pub.get_subscription_count() > 0 and self.prompt_pub.get_subscription_count() > 0
                    and all(output.get_publisher_count() > 0 for output in self._outputs))

        ok = wait_until(lambda: connected() or not node.alive(), timeout) and node.alive()
        time.sleep(0.5)  # discovery completes both ways a moment after matching
        return bool(ok)

    def image_msg(self, pixels: np.ndarray, stamp_ns: int, frame_id: str = "camera") -> Any:
        from sensor_msgs.msg import Image

        from fastsam_ros.ros.images import bgr_to_fields

        msg = Image(**bgr_to_fields(pixels))
        msg.header.frame_id = frame_id
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
        return msg

    def publish_image(self, pixels: np.ndarray, stamp_ns: int) -> Any:
        msg = self.image_msg(pixels, stamp_ns)
        self.image_pub.publish(msg)
        return msg

    def prompt(self, prompt_id: str, stamp_ns: int = 0, points: list = (), labels: list = (), boxes: list = (),
               persistent: bool = False, clear: bool = False, text: str = "", reapply: bool = False) -> Any:
        from geometry_msgs.msg import Point

        from fastsam_ros.msg import Box, Prompt

        msg = Prompt(id=prompt_id, persistent=persistent, clear=clear, text=text, reapply=reapply)
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


