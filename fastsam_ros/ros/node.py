"""The ``fastsam`` lifecycle node: the lifecycle and the parameters, wiring topics and QoS to the core.

Each camera (one unless ``cameras`` names several) is a :class:`CameraStream` around the one model: what happens
to a frame is in :mod:`fastsam_ros.ros.worker`, to a prompt in :mod:`fastsam_ros.ros.prompt_registry`, and what
goes out in :mod:`fastsam_ros.ros.outputs`. Threads:

* the executor thread runs every ROS callback (:func:`~fastsam_ros.ros.process.make_executor`): the image callback
  only drops the message on the :class:`FrameBoard` (frames that arrive while the network is busy replace each
  other, so inference never works on a stale frame), and prompts on cached frames are answered from the cache in
  milliseconds;
* each camera's inference worker decodes, segments, tracks and caches its frames and answers its persistent prompts;
  with several cameras the workers share the network through :class:`SharedEngine` (one batch per turn);
* prompts that must wait (for a frame still being segmented, or for CLIP) and the ``segment`` service's calls run on
  the registry's small pool, so they never hold up the camera or the other prompts.

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
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn

from fastsam_ros.config import ConfigError, NodeConfig, is_live, parameter_table
from fastsam_ros.prompts.clip import ClipScorer
from fastsam_ros.prompts.text import ClipUnavailable
from fastsam_ros.ros import conversions, transforms, wire
from fastsam_ros.ros.camera_stream import CameraStream
from fastsam_ros.ros.outputs import Health
from fastsam_ros.segmentation.engine import FastSAMEngine, ModelLoadError
from fastsam_ros.segmentation.sharing import SharedEngine
from fastsam_ros.tracking import tracker

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
        self._health = Health()  # the node's own: configure failures, while no camera exists
        self._traced: set[type] = set()  # exception types whose traceback was logged once
        self._config: NodeConfig | None = None
        # Made at configure, gone at cleanup:
        self._engine: FastSAMEngine | None = None
        self._streams: list[CameraStream] = []  # one per camera
        self._transforms: Any = None  # tf2's buffer while active, where tf2_ros is installed (clicks, target_frame)
        self.finalized = False  # the shutdown transition ran: the process should exit
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self._diagnostics_every(self.startup_value("diagnostics_period"))
        self.add_on_set_parameters_callback(self._on_set_parameters)
        if self.startup_value("autostart"):
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    def _parameter_values(self) -> dict[str, Any]:
        return {name: self.get_parameter(name).value for name, _, _ in parameter_table()}

    def startup_value(self, name: str) -> Any:
        """A parameter used before configure (here, and ``executor`` by the process), validated; an invalid one
        falls back to its default and says so (configure then fails with the same reason, so the node stays up and
        reports it)."""
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
                wire.compile_kernels()
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
        """Everything that lives from configure to cleanup, around the loaded ``engine``: one stream per camera."""
        self._config, self._engine = config, engine
        clip = ClipScorer(config.clip, log=self._clip_failed)  # loads on the first text prompt, unless asked now
        if config.clip_load_at_configure:
            # A failure is logged once by _clip_failed; text prompts then answer `error`, the rest keeps working.
            with contextlib.suppress(ClipUnavailable):
                clip.load()
        shared = SharedEngine(engine) if len(config.cameras) > 1 else engine
        for name in config.cameras or ("",):
            self._streams.append(CameraStream(self, name, config, shared, clip, self._decoder.decode,
                                              lambda: self._config or NodeConfig(), self.report_error))
        missing = self._streams[0].outputs.standard.missing
        if missing:
            self.get_logger().warning(missing)

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Start from no frames and no tracks, subscribe to the cameras and the prompts, start the workers."""
        config = self._config
        assert config is not None and self._streams
        if any(stream.worker.running for stream in self._streams):  # never two frames of one camera at once
            self.get_logger().error("activate failed: the previous inference thread is still running a frame")
            return TransitionCallbackReturn.FAILURE
        self._transforms = transforms.transform_buffer(self)
        topics = [stream.activate(config, self._transforms) for stream in self._streams]
        self.get_logger().info(f"active: segmenting {', '.join(topics)}")
        return super().on_activate(state)  # enables the lifecycle publishers

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop the inputs and the worker; what waited is answered; outputs stop. The model stays loaded."""
        self.stop()
        return super().on_deactivate(state)

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, the cache and the GPU memory they held, unless a frame still runs on them."""
        if not self._workers_stopped():
            self.get_logger().error("cleanup failed: the inference thread is still running a frame; try again")
            return TransitionCallbackReturn.FAILURE
        self._release()
        return super().on_cleanup(state)

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        if not any(stream.worker.running for stream in self._streams):
            self._release()
        self.finalized = True
        return super().on_shutdown(state)

    def stop(self) -> None:
        """Stop listening, answer the prompts in flight and wait (bounded) for the frames in flight (deactivate,
        shutdown and process exit)."""
        for stream in self._streams:
            stream.stop_inputs()  # prompts waiting for a frame answer now: it will not come
        transforms.release(self._transforms)
        self._transforms = None
        # One deadline for every camera, not one wait each: the total stays within ros2 launch's sigterm_timeout.
        drained = time.monotonic() + PROMPT_DRAIN_S
        if not all([stream.registry.stop(max(0.0, drained - time.monotonic())) for stream in self._streams]):
            self.get_logger().warning(f"prompts still being answered after {PROMPT_DRAIN_S:g} s: their answers "
                                      "are dropped")
        if not self._workers_stopped():
            self.get_logger().error(f"an inference thread is still running a frame after {WORKER_JOIN_S:g} s: "
                                    "its outputs are dropped, and cleanup waits for it")

    def _workers_stopped(self) -> bool:
        """Wait for every camera's frame in flight, all within one ``WORKER_JOIN_S``; True when none still runs."""
        joined = time.monotonic() + WORKER_JOIN_S
        return all([stream.worker.stop(max(0.0, joined - time.monotonic())) for stream in self._streams])

    def _release(self) -> None:
        """Free the outputs, the services, the model, the caches and the GPU memory (cleanup, shutdown, failure)."""
        for stream in self._streams:
            stream.release()
        self._streams = []
        self._engine = self._config = None
        free_accelerator_memory()

    # ---------------------------------------------------------------- parameters

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
        for stream in self._streams:
            stream.board.tolerance_ns = int(round(candidate.stamp_tolerance * 1e9))  # read by the next lookup
            if changed & {"tracking", "track_lost_frames", "track_min_iou"}:
                stream.worker.tracker.params = candidate.tracker  # read by the worker at its next frame
        if changed:
            self.get_logger().info(f"applied from the next frame: {', '.join(sorted(changed))}")
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- health

    def _clip_failed(self, reason: str) -> None:
        """CLIP could not load: one log line, then text prompts answer `error` with this reason (on every camera)."""
        for health in [stream.health for stream in self._streams] or [self._health]:
            health.problem(f"CLIP unavailable: {reason}", "bad_prompts")
        self.get_logger().error(f"text prompts disabled: {reason}")

    def report_error(self, what: str, error: BaseException, health: Health | None = None) -> None:
        """A failure that is not the input's fault (CUDA out of memory, a bug): counted apart from bad input (on the
        camera's ``health``), with the traceback logged the first time each kind happens."""
        message = f"{what}: {error.__class__.__name__}: {error}"
        (health or self._health).problem(message, "internal_errors")
        if type(error) not in self._traced:
            self._traced.add(type(error))
            trace = "".join(traceback.format_exception(type(error), error, error.__traceback__))
            self.get_logger().error(f"{message}\n{trace}")
        else:
            self.get_logger().error(message, throttle_duration_sec=LOG_THROTTLE_S)

    def _publish_diagnostics(self) -> None:
        """One status per camera (named as the node, plus the camera's name with several); the node's own while
        no camera exists (unconfigured, or a failed configure)."""
        state = self._state_machine.current_state[1]
        node_values = {
            "state": state, "model": self.get_parameter("model").value, "device": self.get_parameter("device").value,
            "image_decoder": self._decoder.backend,
            "backend": engine.backend.backend if (engine := self._engine) is not None else "",
            "precision": engine.backend.precision if engine is not None else "",
        }
        stamp = self.get_clock().now().to_msg()
        name = f"{self.get_fully_qualified_name()}: segmentation"  # two nodes are told apart by namespace
        statuses = []
        for stream in self._streams or [None]:
            level, message, counters = (stream.health if stream else self._health).report()
            values = {**node_values, **counters}
            if stream is not None:
                values.update(stream.diagnostics())
                if stream.worker.running and state != "active":
                    values["stuck_frame"] = "the inference thread is still running a frame"
            message = message or ("segmenting" if state == "active" else f"{state}: waiting for activation")
            camera = f" {stream.name}" if stream is not None and stream.name else ""
            statuses.append(conversions.diagnostic_status(f"{name}{camera}", level, message, values))
        self._diagnostics.publish(conversions.diagnostics_msg(stamp, statuses))


def free_accelerator_memory() -> None:
    """Hand cached CUDA blocks back to the driver once the model is gone (no-op without torch or CUDA)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()
