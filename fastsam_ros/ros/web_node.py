"""``fastsam_web``: the web page of issue 21 as its own ROS node (``ros2 run fastsam_ros fastsam_web``).

It subscribes the fastsam node's ``debug_image`` (sent to the page as JPEG at most ``rate`` times a second, except
that the first overlay after an answer to ``click`` goes at once: that is the picture the user waits for) and
``selection`` (the answers to ``click`` make the page's status line), and publishes what the page asks for on
``prompt`` as the prompt ``click``, the same id every GUI click has, so a tap replaces any earlier click. Its topics
are relative: the same namespace and remaps as the node's. A followed prompt whose first answer selects nothing is
cleared, as the node does for clicks. Two threads: rclpy spins in one, aiohttp's loop runs in the main one.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import threading
from typing import Any

import cv2
import rclpy
from geometry_msgs.msg import Point
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.signals import SignalHandlerOptions
from sensor_msgs.msg import Image

from fastsam_ros.msg import Box as BoxMsg
from fastsam_ros.msg import Prompt as PromptMsg
from fastsam_ros.msg import Selection as SelectionMsg
from fastsam_ros.ros import conversions, images
from fastsam_ros.ros.clicks import CLICK_ID
from fastsam_ros.ros.process import STOP_SIGNALS
from fastsam_ros.ros.web_server import NotConnected, PagePrompt, WebServer, WebSettings, answer_json, check_binding

# The newest overlay only: an older one is never worth sending, and best effort never slows the node down.
OVERLAY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
STILL_SELECTING = ("ok", "lost")


def prompt_msgs(prompt: PagePrompt) -> list[Any]:
    """The ``fastsam_ros/Prompt`` messages for one page prompt (stamp zero: the newest frame); a one-shot prompt
    first ends a followed click."""
    if prompt.clear:
        return [PromptMsg(id=CLICK_ID, clear=True)]
    msg = PromptMsg(id=CLICK_ID, points=[Point(x=x, y=y) for x, y in prompt.points], labels=list(prompt.labels),
                    boxes=[BoxMsg(x1=b[0], y1=b[1], x2=b[2], y2=b[3]) for b in prompt.boxes], text=prompt.text,
                    persistent=prompt.follow)
    return [msg] if prompt.follow else [PromptMsg(id=CLICK_ID, clear=True), msg]


class WebNode(Node):
    """The ROS side of the page: the overlay and answers out to :class:`WebServer`, its prompts in."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("fastsam_web", **kwargs)
        self.settings = WebSettings(
            host=str(self.declare_parameter("host", "127.0.0.1").value),
            port=int(self.declare_parameter("port", 8080).value),
            token=str(self.declare_parameter("token", "").value))
        self._period = 1.0 / max(float(self.declare_parameter("rate", 5.0).value), 0.1)  # overlays per second
        self._quality = int(self.declare_parameter("jpeg_quality", 80).value)
        self.server = WebServer(self.settings, self.publish_prompt, warn=self.get_logger().warning)
        self._prompts = self.create_publisher(PromptMsg, "prompt", conversions.RELIABLE_QOS)
        self._pending: Any = None  # the newest overlay not sent yet
        self._urgent = False  # an answer to `click` came: its overlay goes at once
        self._fresh = False  # a followed prompt was sent: its first answer decides whether it stays
        self.create_subscription(Image, "debug_image", self._on_overlay, OVERLAY_QOS)
        self.create_subscription(SelectionMsg, "selection", self._on_selection, conversions.BURST_QOS)
        self.create_timer(self._period, self._flush)

    def publish_prompt(self, prompt: PagePrompt) -> None:
        """From aiohttp's thread: rclpy's publish is thread-safe. A prompt nobody would hear is refused, not lost."""
        if self._prompts.get_subscription_count() == 0:
            raise NotConnected(f"no fastsam node listens on {self._prompts.topic_name} yet: try again in a moment")
        self._fresh = prompt.follow and not prompt.clear
        for msg in prompt_msgs(prompt):
            self._prompts.publish(msg)

    def _on_overlay(self, msg: Any) -> None:
        self._pending = msg
        if self._urgent:
            self._urgent = False
            self._flush()

    def _flush(self) -> None:
        msg, self._pending = self._pending, None
        if msg is None:
            return
        try:
            ok, jpeg = cv2.imencode(".jpg", images.image_to_bgr(msg), [cv2.IMWRITE_JPEG_QUALITY, self._quality])
        except (images.ImageError, cv2.error) as error:
            self.get_logger().warning(f"debug_image not shown: {error}", throttle_duration_sec=10.0)
            return
        if ok:
            self.server.send_frame(conversions.stamp_ns(msg.header), jpeg.tobytes())

    def _on_selection(self, msg: Any) -> None:
        if msg.prompt_id != CLICK_ID:
            return
        if self._fresh:
            self._fresh = False
            if msg.status not in STILL_SELECTING:  # a tap on nothing ends the following, as for GUI clicks
                self._prompts.publish(PromptMsg(id=CLICK_ID, clear=True))
        first = msg.objects[0] if msg.objects else None
        position = ((first.position.x, first.position.y, first.position.z)
                    if first is not None and first.has_position else None)
        self.server.send_answer(answer_json(msg.prompt_id, msg.status, msg.reason, conversions.stamp_ns(msg.header),
                                            int(first.track_id) if first is not None else 0, position,
                                            (first.box.x1, first.box.y1, first.box.x2, first.box.y2)
                                            if first is not None else None))
        self._urgent = msg.status == "ok"


async def serve(node: WebNode) -> None:
    """Serve until SIGINT or SIGTERM; from then on both are ignored: ``ros2 launch`` forwards the terminal's Ctrl-C
    a moment after the process group got it, and the handler asyncio puts back on closing its loop (Python's
    default) killed the process while it stopped (launch: process has died, exit code -2)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, stop.set)
    await node.server.start()
    node.get_logger().info(f"the fastsam web page: http://{node.settings.host}:{node.settings.port}/")
    try:
        await stop.wait()
    finally:
        for signum in STOP_SIGNALS:
            loop.remove_signal_handler(signum)
            signal.signal(signum, signal.SIG_IGN)
        await node.server.stop()


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)  # asyncio handles the signals
    node = WebNode()
    try:
        check_binding(node.settings)
    except ValueError as refusal:
        node.get_logger().error(str(refusal))
        node.destroy_node()
        rclpy.shutdown()
        return 2
    executor = SingleThreadedExecutor()
    executor.add_node(node)

    def spin() -> None:
        with contextlib.suppress(ExternalShutdownException):
            executor.spin()

    spinner = threading.Thread(target=spin, name="fastsam-web-ros", daemon=True)
    spinner.start()
    try:
        asyncio.run(serve(node))
    except OSError as error:  # the port is taken, the address is not ours
        node.get_logger().error(f"cannot serve on {node.settings.host}:{node.settings.port}: {error}")
        return 2
    finally:
        executor.shutdown()
        spinner.join(timeout=5.0)
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
