"""One camera of the node: its topics, frames, tracker, prompts, clicks, depth, counters and inference thread.

The node makes one :class:`CameraStream` per camera at configure (one with an empty name and today's topic names when
``cameras`` is empty) around the one shared model; everything here belongs to its camera alone, so a malformed frame,
a bad prompt or a slow text prompt on one camera never touches another. Its topics are the node's relative names under
the camera's name (``front/image``, ``front/selection``, ...), so namespaces and remaps work as for one camera.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from fastsam_ros.config import NodeConfig
from fastsam_ros.msg import Prompt as PromptMsg
from fastsam_ros.ros import conversions
from fastsam_ros.ros.camera import CameraModel
from fastsam_ros.ros.clicks import Clicks
from fastsam_ros.ros.deferred_service import create_deferred_service
from fastsam_ros.ros.frames import FrameBoard
from fastsam_ros.ros.outputs import Health, Outputs
from fastsam_ros.ros.prompt_registry import PromptRegistry, PromptSettings
from fastsam_ros.ros.worker import FrameSettings, Incoming, InferenceWorker
from fastsam_ros.srv import Segment
from fastsam_ros.types import Selection, Status

DEPTH_QUEUE = 5  # depth and camera_info messages queued for the executor (their callbacks only store them)
LOG_THROTTLE_S = 2.0


class CameraStream:
    """Everything of one camera, from configure to cleanup."""

    def __init__(self, node: Any, name: str, config: NodeConfig, engine: Any, clip: Any,
                 decode: Callable[[Any, int], Any], current: Callable[[], NodeConfig],
                 report_error: Callable[[str, BaseException, Health], None]) -> None:
        """``engine``: the model (shared by every camera); ``current``: the node's live parameters;
        ``report_error``: logs a failure of our code once with its traceback and counts it on the given health."""
        self.name = name
        self.prefix = f"{name}/" if name else ""
        self.health = Health()
        self._node = node
        self._current = current
        self._report_error = report_error
        self._inputs: list[Any] = []
        self.camera = CameraModel(self.problem("depth_problems" if config.use_depth else "bad_images"))
        self.depth: Any = None
        if config.use_depth:
            from fastsam_ros.ros.depth_stage import DepthStage  # visualization_msgs only then

            self.depth = DepthStage(node, self.camera, config.depth_tolerance, config.depth_range, config.depth_wait,
                                    config.cache_frames, self.problem("depth_problems"), self.error,
                                    config.target_frame, self.prefix)
        depth = self.depth
        self.board = FrameBoard(config.cache_frames, int(round(config.stamp_tolerance * 1e9)))
        self.outputs = Outputs(node, depth, self.prefix)
        self.registry = PromptRegistry(
            self.board, self.outputs, self._prompt_settings, clip,
            locate=(lambda s, f: depth.locate(s, f.stamp_ns, f.segmentation.image_shape)) if depth else None,
            on_problem=self.problem("bad_prompts"), on_error=self.error)
        self.clicks = Clicks(node, self.board, self.registry, self.camera, lambda: self._current().click_follow,
                             self._refuse_click, self.prefix)
        self.worker = InferenceWorker(
            self.board, engine, decode, self.registry, self.outputs, self._frame_settings, config.tracker, depth,
            on_frame_done=self._frame_done, on_rejected=self.problem("bad_images"), on_error=self.error,
            thread_name=f"fastsam-inference{'-' + name if name else ''}")
        self._service = create_deferred_service(node, Segment, f"{self.prefix}segment", self._on_segment,
                                                self.registry.run)

    # ---------------------------------------------------------------- lifecycle

    def activate(self, config: NodeConfig, transforms: Any) -> str:
        """Start from no frames and no tracks, subscribe, start the inference thread; the image topic's name."""
        node = self._node
        self.board.open()
        self.registry.start()
        self.worker.start()
        image_type, image_topic = (Image, f"{self.prefix}image") if config.image_transport == "raw" else (
            CompressedImage, f"{self.prefix}image/compressed")
        camera_qos = conversions.image_qos(config.image_reliability, DEPTH_QUEUE)
        self._inputs = [
            node.create_subscription(image_type, image_topic, self._on_image,
                                     conversions.image_qos(config.image_reliability, config.image_qos_depth)),
            node.create_subscription(PromptMsg, f"{self.prefix}prompt", self._on_prompt, conversions.BURST_QOS),
            node.create_subscription(String, f"{self.prefix}prompt/text", self._on_text, conversions.BURST_QOS),
            node.create_subscription(CameraInfo, f"{self.prefix}camera_info", self.camera.on_msg, camera_qos),
        ]
        self.clicks.subscribe(transforms)
        if self.depth is not None:
            self.depth.subscribe(camera_qos, transforms)
        return node.resolve_topic_name(image_topic)

    def stop_inputs(self) -> None:
        """Stop listening and wake every prompt waiting for a frame (the first step of deactivate)."""
        for subscription in self._inputs:
            self._node.destroy_subscription(subscription)
        self._inputs = []
        self.clicks.unsubscribe()
        if self.depth is not None:
            self.depth.unsubscribe()
        self.board.close()

    def release(self) -> None:
        """Free the outputs and the service (cleanup, shutdown, a failed configure)."""
        self._node.destroy_service(self._service)
        self.outputs.destroy()
        if self.depth is not None:
            self.depth.destroy()
        self.registry.clear()

    # ---------------------------------------------------------------- inputs

    def _on_image(self, msg: Any) -> None:
        """Hand the frame to the inference thread. An unstamped frame is stamped with its arrival, on every output
        too, so the stamp that answers and cache key carry is one a prompt can name."""
        stamp = conversions.stamp_ns(msg.header)
        if stamp == 0:
            stamp = self._node.get_clock().now().nanoseconds
            msg.header.stamp = Time(nanoseconds=stamp).to_msg()
        self.health.frames_received += 1
        if self.board.is_open:
            self.board.slot.put(Incoming(stamp, msg))

    def _on_prompt(self, msg: Any) -> None:
        prompt = conversions.prompt_from_msg(msg)
        if msg.clear:
            removed = self.registry.clear_persistent(prompt.id)
            self._node.get_logger().info(f"{self._camera_label()}cleared persistent prompts: "
                                         f"{', '.join(map(repr, removed)) or 'none matched'}")
            return
        self.registry.request(prompt, conversions.stamp_ns(msg.header), msg.header, persistent=msg.persistent,
                              reapply=msg.reapply)

    def _on_text(self, msg: Any) -> None:
        self.registry.request(conversions.text_prompt(msg), 0, Header())

    def _refuse_click(self, selection: Selection, header: Any) -> None:
        """A click that names no pixel (a point tf2 cannot bring into the camera's frame, ...): answered and counted."""
        self.problem("bad_prompts")(f"prompt {selection.prompt_id!r} {selection.status.value}: {selection.reason}")
        self.outputs.selection(selection, header)

    def _on_segment(self, request: Any, response: Any) -> Any:
        """Always answers: ``frame_not_available`` while inactive, ``error`` when our code fails."""
        prompt = conversions.prompt_from_msg(request.prompt)
        frame = None
        try:
            selection, frame = self.registry.answer(prompt, conversions.stamp_ns(request.prompt.header))
        except Exception as error:  # the caller always gets an answer
            self.error("segment service failed", error)
            selection = Selection.failed(prompt.id, Status.ERROR, f"segment failed: {error}")
        response.selection = conversions.selection_msg(selection, frame.header if frame else request.prompt.header)
        return response

    # ---------------------------------------------------------------- settings and health

    def _prompt_settings(self) -> PromptSettings:
        config = self._current()
        return PromptSettings(config.selection, config.max_persistent_prompts)

    def _frame_settings(self) -> FrameSettings:
        config = self._current()
        return FrameSettings(config.max_image_pixels, config.tracking, config.publish_instance_masks)

    def _frame_done(self, frame: Any, stage_ms: dict[str, float]) -> None:
        self.health.frames_processed += 1
        self.health.last_inference_ms = frame.segmentation.timings.inference_ms
        if self._current().log_stage_times:
            figures = ", ".join(f"{stage} {ms:.1f}" for stage, ms in stage_ms.items())
            self._node.get_logger().info(f"{self._camera_label()}frame {frame.stamp_ns}: {figures} ms")

    def _camera_label(self) -> str:
        return f"[{self.name}] " if self.name else ""

    def problem(self, counter: str) -> Callable[[str], None]:
        """A reporter of bad input of one kind: counted for /diagnostics and logged (throttled)."""
        def report(message: str) -> None:
            self.health.problem(message, counter)
            self._node.get_logger().warning(f"{self._camera_label()}{message}", throttle_duration_sec=LOG_THROTTLE_S)

        return report

    def error(self, what: str, error: BaseException) -> None:
        self._report_error(f"{self._camera_label()}{what}", error, self.health)

    def diagnostics(self) -> dict[str, Any]:
        """This camera's counters and state for its /diagnostics status."""
        board, worker = self.board, self.worker
        values: dict[str, Any] = {
            "frames_dropped": board.slot.dropped, "cached_frames": len(board.cache),
            "persistent_prompts": len(self.registry), "image_topic": self._node.resolve_topic_name(
                f"{self.prefix}image"),
            "standard_messages": self.outputs.standard.missing or "vision_msgs detections and labels",
        }
        values.update({f"p50_{stage}_ms": f"{ms:.2f}" for stage, ms in worker.stage_times.medians().items()})
        if self.depth is not None:
            values.update(self.depth.diagnostics())
            values["depth_problems"] = self.health.depth_problems
        return values
