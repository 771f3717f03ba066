"""The ``fastsam`` lifecycle node: the lifecycle and the parameters, wiring topics and QoS to the core.

What happens to a frame is in :mod:`fastsam_ros.ros.worker`, to a prompt in
:mod:`fastsam_ros.ros.prompt_registry`, and what goes out in :mod:`fastsam_ros.ros.outputs`. Threads:

* the executor thread runs every ROS callback inline (:class:`NodeExecutor`): the image callback only drops the
  message on the :class:`FrameBoard` (frames that arrive while the network is busy replace each other, so inference
  never works on a stale frame), and prompts on cached frames are answered from the cache in milliseconds;
* the inference worker decodes, segments, tracks and caches each frame and answers the persistent prompts;
* prompts that must wait (for a frame still being segmented, or for CLIP) run on the registry's small pool, and the
  ``segment`` service on the executor's pool, so they never hold up the camera or the other prompts.

Lifecycle: configure loads the model and makes the outputs and the ``segment`` service; activate starts from an empty
frame cache and a reset tracker; deactivate stops the inputs, answers what waits, and disables every output
(lifecycle publishers): a frame still running then sends nothing. The service exists from configure to cleanup and
answers every call (``frame_not_available`` while inactive).
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.time import Time
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Header, String

from fastsam_ros.config import ConfigError, NodeConfig, is_live, parameter_table
from fastsam_ros.msg import Prompt as PromptMsg
from fastsam_ros.prompts.clip import ClipScorer
from fastsam_ros.prompts.text import ClipUnavailable
from fastsam_ros.ros import conversions, transforms
from fastsam_ros.ros.camera import CameraModel
from fastsam_ros.ros.clicks import Clicks
from fastsam_ros.ros.frames import FrameBoard
from fastsam_ros.ros.outputs import Health, Outputs
from fastsam_ros.ros.prompt_registry import PromptRegistry, PromptSettings
from fastsam_ros.ros.worker import FrameSettings, Incoming, InferenceWorker
from fastsam_ros.segmentation.engine import FastSAMEngine, ModelLoadError
from fastsam_ros.srv import Segment
from fastsam_ros.tracking import tracker
from fastsam_ros.types import Selection, Status

DEPTH_QUEUE = 5  # depth and camera_info messages queued for the executor (their callbacks only store them)
# Every wait at shutdown is bounded, together well below ros2 launch's sigterm_timeout (5 s).
WORKER_JOIN_S = 2.0  # how long deactivate waits for the frame in flight
PROMPT_DRAIN_S = 1.0  # how long deactivate gives the prompts in flight to answer
LOG_THROTTLE_S = 2.0


class FastSAMNode(LifecycleNode):
    """FastSAM all-instance segmentation with prompt-guided selection over topics and a service."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("fastsam", **kwargs)
        for name, default, doc in parameter_table():  # typed by NodeConfig, so a wrong type is a clear error
            self.declare_parameter(name, default, ParameterDescriptor(description=doc, dynamic_typing=True))
        self._decoder = conversions.ImageDecoder()
        self._health = Health()
        self._traced: set[type] = set()  # exception types whose traceback was logged once
        self._config: NodeConfig | None = None
        # Made at configure, gone at cleanup:
        self._engine: FastSAMEngine | None = None
        self._board: FrameBoard | None = None
        self._outputs: Outputs | None = None
        self._registry: PromptRegistry | None = None
        self._worker: InferenceWorker | None = None
        self._depth: Any = None  # node_depth.DepthStage with use_depth (imported only then: visualization_msgs)
        self._camera: CameraModel | None = None  # camera_info: the depth stage's and the clicks'
        self._clicks: Clicks | None = None
        self._service: Any = None
        self._inputs: list[Any] = []  # subscriptions, while active
        self._transforms: Any = None  # tf2's buffer while active, where tf2_ros is installed (clicks, target_frame)
        self.finalized = False  # the shutdown transition ran: the process should exit
        self.blocking_group = ReentrantCallbackGroup()  # callbacks that may wait: NodeExecutor runs them aside
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self._diagnostics_every(self._startup_value("diagnostics_period"))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self._startup_value("autostart"):
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    def _parameter_values(self) -> dict[str, Any]:
        return {name: self.get_parameter(name).value for name, _, _ in parameter_table()}

    def _startup_value(self, name: str) -> Any:
        """A parameter used before configure, validated; an invalid one falls back to its default and says so
        (configure then fails with the same reason, so the node stays up and reports it)."""
        value = self.get_parameter(name).value
        try:
            return getattr(NodeConfig.from_values({name: value}), name)
        except ConfigError as error:
            default = getattr(NodeConfig(), name)
            self.get_logger().error(f"{error}; using {default!r} until it is fixed")
            return default

    def _diagnostics_every(self, period: float) -> Any:
        return self.create_timer(period, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup())

    # ---------------------------------------------------------------- lifecycle

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters, load (and warm up) the model, make the outputs; on any failure stay unconfigured,
        say why in the log and on /diagnostics, and keep serving the lifecycle services."""
        started = time.perf_counter()
        try:
            config = NodeConfig.from_values(self._parameter_values())
            self.get_logger().info(f"loading {config.model} on {config.device} (imgsz {config.imgsz})")
            engine = FastSAMEngine(config.engine, log=self.get_logger().info)  # logs the backend and export cost
            if config.warmup:
                engine.warmup()
                tracker.compile_kernels()
            self._build(config, engine)
        except Exception as error:
            expected = isinstance(error, (ConfigError, ModelLoadError))
            self._health.configure_error = str(error) if expected else f"{type(error).__name__}: {error}"
            trace = "" if expected else "\n" + "".join(traceback.format_exception(error))
            self.get_logger().error(f"configure failed: {self._health.configure_error}{trace}")
            self._release()
            return TransitionCallbackReturn.FAILURE
        self._health.configure_error = ""
        self.get_logger().info(
            f"configured in {time.perf_counter() - started:.1f} s; images decoded by {self._decoder.backend}")
        return super().on_configure(state)

    def _build(self, config: NodeConfig, engine: FastSAMEngine) -> None:
        """Everything that lives from configure to cleanup, around the loaded ``engine``."""
        self._config, self._engine = config, engine
        clip = ClipScorer(config.clip, log=self._clip_failed)  # loads on the first text prompt, unless asked now
        if config.clip_load_at_configure:
            # A failure is logged once by _clip_failed; text prompts then answer `error`, the rest keeps working.
            with contextlib.suppress(ClipUnavailable):
                clip.load()
        camera = CameraModel(self._problem("depth_problems" if config.use_depth else "bad_images"))
        self._camera = camera
        if config.use_depth:
            from fastsam_ros.ros.depth_stage import DepthStage

            self._depth = DepthStage(self, camera, config.depth_tolerance, config.depth_range, config.depth_wait,
                                     config.cache_frames, self._problem("depth_problems"), self.report_error,
                                     config.target_frame)
        depth = self._depth
        self._board = FrameBoard(config.cache_frames, int(round(config.stamp_tolerance * 1e9)))
        self._outputs = Outputs(self, depth)
        if self._outputs.standard.missing:
            self.get_logger().warning(self._outputs.standard.missing)
        self._registry = PromptRegistry(
            self._board, self._outputs, self._prompt_settings, clip,
            locate=(lambda s, f: depth.locate(s, f.stamp_ns, f.segmentation.image_shape)) if depth else None,
            on_problem=self._problem("bad_prompts"), on_error=self.report_error)
        self._clicks = Clicks(self, self._board, self._registry, camera,
                              lambda: (self._config or NodeConfig()).click_follow, self._refuse_click)
        self._worker = InferenceWorker(
            self._board, engine, self._decoder.decode, self._registry, self._outputs, self._frame_settings,
            config.tracker, depth, on_frame_done=self._frame_done, on_rejected=self._problem("bad_images"),
            on_error=self.report_error)
        # A service callback cannot hand its answer over to another thread, so the whole call runs aside.
        self._service = self.create_service(Segment, "segment", self._on_segment, callback_group=self.blocking_group)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start from no frames and no tracks, subscribe to the camera and the prompts, start the worker."""
        config, worker = self._config, self._worker
        assert config is not None and worker is not None and self._board is not None
        if worker.running:  # an earlier deactivate left a frame running: never two on one engine
            self.get_logger().error("activate failed: the previous inference thread is still running a frame")
            return TransitionCallbackReturn.FAILURE
        self._board.open()
        self._registry.start()
        worker.start()
        image_type, image_topic = (Image, "image") if config.image_transport == "raw" else (
            CompressedImage, "image/compressed")
        self._inputs = [
            self.create_subscription(image_type, image_topic, self._on_image,
                                     conversions.image_qos(config.image_reliability, config.image_qos_depth)),
            self.create_subscription(PromptMsg, "prompt", self._on_prompt, conversions.BURST_QOS),
            self.create_subscription(String, "prompt/text", self._on_text, conversions.BURST_QOS),
            self.create_subscription(CameraInfo, "camera_info", self._camera.on_msg,
                                     conversions.image_qos(config.image_reliability, DEPTH_QUEUE)),
        ]
        self._transforms = transforms.transform_buffer(self)
        self._clicks.subscribe(self._transforms)
        if self._depth is not None:
            self._depth.subscribe(conversions.image_qos(config.image_reliability, DEPTH_QUEUE), self._transforms)
        self.get_logger().info(f"active: segmenting {self.resolve_topic_name(image_topic)}")
        return super().on_activate(state)  # enables the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the inputs and the worker; what waited is answered; outputs stop. The model stays loaded."""
        self.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, the cache and the GPU memory they held, unless a frame still runs on them."""
        worker = self._worker
        if worker is not None and not worker.stop(WORKER_JOIN_S):
            self.get_logger().error("cleanup failed: the inference thread is still running a frame; try again")
            return TransitionCallbackReturn.FAILURE
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        if self._worker is None or not self._worker.running:
            self._release()
        self.finalized = True
        return super().on_shutdown(state)

    def stop(self) -> None:
        """Stop listening, answer the prompts in flight and wait (bounded) for the frame in flight (deactivate,
        shutdown and process exit)."""
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs = []
        if self._clicks is not None:
            self._clicks.unsubscribe()
        if self._depth is not None:
            self._depth.unsubscribe()
        transforms.release(self._transforms)
        self._transforms = None
        if self._board is not None:
            self._board.close()  # prompts waiting for a frame answer now: it will not come
        if self._registry is not None and not self._registry.stop(PROMPT_DRAIN_S):
            self.get_logger().warning(f"prompts still being answered after {PROMPT_DRAIN_S:g} s: their answers "
                                      "are dropped")
        if self._worker is not None and not self._worker.stop(WORKER_JOIN_S):
            self.get_logger().error(f"the inference thread is still running a frame after {WORKER_JOIN_S:g} s: "
                                    "its outputs are dropped, and cleanup waits for it")

    def _release(self) -> None:
        """Free the outputs, the service, the model, the cache and the GPU memory (cleanup, shutdown, failure)."""
        if self._service is not None:
            self.destroy_service(self._service)
        if self._outputs is not None:
            self._outputs.destroy()
        if self._depth is not None:
            self._depth.destroy()
        if self._registry is not None:
            self._registry.clear()
        self._service = self._outputs = self._depth = self._registry = self._worker = self._clicks = self._camera = None
        self._engine = self._board = self._config = None
        free_accelerator_memory()

    # ---------------------------------------------------------------- parameters

    def _prompt_settings(self) -> PromptSettings:
        config = self._config or NodeConfig()
        return PromptSettings(config.selection, config.max_persistent_prompts)

    def _frame_settings(self) -> FrameSettings:
        config = self._config or NodeConfig()
        return FrameSettings(config.max_image_pixels, config.tracking, config.publish_instance_masks)

    def _on_set_parameters(self, parameters: list[Any]) -> SetParametersResult:
        """Live parameters apply to the next frame; the others are refused while a model is loaded."""
        names = {name for name, _, _ in parameter_table()}
        ours = {p.name: p.value for p in parameters if p.name in names}
        if not ours:
            return SetParametersResult(successful=True)
        try:
            candidate = NodeConfig.from_values({**self._parameter_values(), **ours})
        except ConfigError as error:
            return SetParametersResult(successful=False, reason=str(error))
        if "diagnostics_period" in ours:  # the timer runs in every state, so the period applies in every state
            self._diagnostics_timer.cancel()
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self._diagnostics_every(candidate.diagnostics_period)
        running = self._config
        if running is None:  # unconfigured: the rest is read at the next configure
            return SetParametersResult(successful=True)
        changed = running.changed(candidate)
        frozen = sorted(name for name in changed if not is_live(name))
        if frozen:
            node = self.get_fully_qualified_name()
            return SetParametersResult(successful=False, reason=(
                f"{', '.join(frozen)} cannot change while a model is loaded: `ros2 lifecycle set {node} deactivate`, "
                f"then `cleanup`, set it, then `configure` and `activate` (autostart is read only at start-up)"))
        self._config = candidate
        if self._engine is not None:
            self._engine.config = candidate.engine  # read by the next prediction
        if self._board is not None:
            self._board.tolerance_ns = int(round(candidate.stamp_tolerance * 1e9))  # read by the next lookup
        if changed & {"tracking", "track_lost_frames", "track_min_iou"} and self._worker is not None:
            self._worker.tracker.params = candidate.tracker  # read by the worker at its next frame
        if changed:
            self.get_logger().info(f"applied from the next frame: {', '.join(sorted(changed))}")
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- inputs

    def _on_image(self, msg: Any) -> None:
        """Hand the frame to the worker. An unstamped frame is stamped with its arrival, on every output too, so the
        stamp that answers and cache key carry is one a prompt can name."""
        stamp = conversions.stamp_ns(msg.header)
        if stamp == 0:
            stamp = self.get_clock().now().nanoseconds
            msg.header.stamp = Time(nanoseconds=stamp).to_msg()
        self._health.frames_received += 1
        board = self._board
        if board is not None and board.is_open:
            board.slot.put(Incoming(stamp, msg))

    def _on_prompt(self, msg: Any) -> None:
        registry = self._registry
        if registry is None:
            return
        prompt = conversions.prompt_from_msg(msg)
        if msg.clear:
            removed = registry.clear_persistent(prompt.id)
            self.get_logger().info(f"cleared persistent prompts: {', '.join(map(repr, removed)) or 'none matched'}")
            return
        registry.request(prompt, conversions.stamp_ns(msg.header), msg.header, persistent=msg.persistent,
                         reapply=msg.reapply)

    def _refuse_click(self, selection: Selection, header: Any) -> None:
        """A click that names no pixel (a point tf2 cannot bring into the camera's frame, ...): answered and counted."""
        self._problem("bad_prompts")(f"prompt {selection.prompt_id!r} {selection.status.value}: {selection.reason}")
        if self._outputs is not None:
            self._outputs.selection(selection, header)

    def _on_text(self, msg: Any) -> None:
        if self._registry is not None:
            self._registry.request(conversions.text_prompt(msg), 0, Header())

    def _on_segment(self, request: Any, response: Any) -> Any:
        """Always answers: ``frame_not_available`` while inactive, ``error`` when our code fails."""
        prompt = conversions.prompt_from_msg(request.prompt)
        frame = None
        try:
            registry = self._registry
            if registry is None:
                selection = Selection.failed(prompt.id, Status.FRAME_NOT_AVAILABLE, "the node is not configured")
            else:
                selection, frame = registry.answer(prompt, conversions.stamp_ns(request.prompt.header))
        except Exception as error:  # the caller always gets an answer
            self.report_error("segment service failed", error)
            selection = Selection.failed(prompt.id, Status.ERROR, f"segment failed: {error}")
        response.selection = conversions.selection_msg(selection, frame.header if frame else request.prompt.header)
        return response

    # ---------------------------------------------------------------- health

    def _frame_done(self, frame: Any, stage_ms: dict[str, float]) -> None:
        self._health.frames_processed += 1
        self._health.last_inference_ms = frame.segmentation.timings.inference_ms
        if self._config is not None and self._config.log_stage_times:
            figures = ", ".join(f"{stage} {ms:.1f}" for stage, ms in stage_ms.items())
            self.get_logger().info(f"frame {frame.stamp_ns}: {figures} ms")

    def _problem(self, counter: str) -> Any:
        """A reporter of bad input of one kind: counted for /diagnostics and logged (throttled)."""
        def report(message: str) -> None:
            self._health.problem(message, counter)
            self.get_logger().warning(message, throttle_duration_sec=LOG_THROTTLE_S)

        return report

    def _clip_failed(self, reason: str) -> None:
        """CLIP could not load: one log line, then text prompts answer `error` with this reason."""
        self._health.problem(f"CLIP unavailable: {reason}", "bad_prompts")
        self.get_logger().error(f"text prompts disabled: {reason}")

    def report_error(self, what: str, error: BaseException) -> None:
        """A failure that is not the input's fault (CUDA out of memory, a bug): counted apart from bad input,
        with the traceback logged the first time each kind happens."""
        message = f"{what}: {error.__class__.__name__}: {error}"
        self._health.problem(message, "internal_errors")
        if type(error) not in self._traced:
            self._traced.add(type(error))
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.get_logger().error(f"{message}\n{trace}")
        else:
            self.get_logger().error(message, throttle_duration_sec=LOG_THROTTLE_S)

    def _publish_diagnostics(self) -> None:
        level, message, values = self._health.report()
        board, worker = self._board, self._worker
        state = self._state_machine.current_state[1]
        values = {
            "state": state, "model": self.get_parameter("model").value, "device": self.get_parameter("device").value,
            **values, "frames_dropped": board.slot.dropped if board else 0, "cached_frames": len(board.cache) if board
            else 0, "persistent_prompts": len(self._registry or ()), "image_decoder": self._decoder.backend,
            "backend": engine.backend.backend if (engine := self._engine) is not None else "",
        }
        if self._outputs is not None:
            values["standard_messages"] = self._outputs.standard.missing or "vision_msgs detections and labels"
        if worker is not None:
            values.update({f"p50_{stage}_ms": f"{ms:.2f}" for stage, ms in worker.stage_times.medians().items()})
        if worker is not None and worker.running and state != "active":
            values["stuck_frame"] = "the inference thread is still running a frame"
        if self._depth is not None:
            values.update(self._depth.diagnostics())
            values["depth_problems"] = self._health.depth_problems
        message = message or ("segmenting" if state == "active" else f"{state}: waiting for activation")
        stamp = self.get_clock().now().to_msg()
        name = f"{self.get_fully_qualified_name()}: segmentation"  # two nodes are told apart by namespace
        self._diagnostics.publish(conversions.diagnostics_msg(stamp, name, level, message, values))


def free_accelerator_memory() -> None:
    """Hand cached CUDA blocks back to the driver once the model is gone (no-op without torch or CUDA)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
