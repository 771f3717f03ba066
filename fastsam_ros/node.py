"""The ``fastsam`` lifecycle node: camera frames in, instances and prompt answers out.

A thin shell over the core: parameters come from :class:`NodeConfig`, segmentation from
:class:`FastSAMEngine`, answers from :func:`select`. Threads:

* the executor thread runs every ROS callback inline (:class:`NodeExecutor`): the image callback only drops
  the message into a newest-frame slot (frames that arrive while the network is busy replace each other, so
  inference never works on a stale frame), and prompts on cached frames are answered from the cache in
  milliseconds, also while the worker is busy;
* one worker thread decodes, segments, caches the result by stamp and answers persistent prompts;
* prompts that must wait (for a frame still being segmented, or for CLIP) run on a small prompt pool, and
  the ``segment`` service on the executor's pool, so they never hold up the camera or the other prompts.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
import threading
import time
import traceback
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.callback_groups import MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from fastsam_ros import ros_io, tracking, wire
from fastsam_ros.config import ConfigError, NodeConfig, is_live, parameter_table
from fastsam_ros.engine import FastSAMEngine, ModelLoadError
from fastsam_ros.executor import NodeExecutor, pin_malloc_thresholds, shorten_gil_switch_interval, stop_on_signals
from fastsam_ros.frames import Frame, FrameCache, LatestSlot
from fastsam_ros.images import ImageError
from fastsam_ros.msg import Instances
from fastsam_ros.msg import Prompt as PromptMsg
from fastsam_ros.msg import Selection as SelectionMsg
from fastsam_ros.overlay import draw_overlay
from fastsam_ros.selection import InvalidPrompt, check_prompt, select
from fastsam_ros.srv import Segment
from fastsam_ros.text import ClipScorer, ClipUnavailable
from fastsam_ros.tracking import FollowedPrompt, InstanceTracker, follow_step
from fastsam_ros.types import Prompt, Selection, Status

DEPTH_QUEUE = 5  # depth and camera_info messages queued for the executor (their callbacks only store them)
PENDING_FRAME_TIMEOUT_S = 10.0  # how long a prompt waits for a frame that is still being segmented
WORKER_JOIN_S = 30.0  # how long deactivate waits for the frame in flight
LOG_THROTTLE_S = 2.0
INLINE_BOXES = 4  # prompts with more boxes are answered on the prompt pool, not on the executor thread
REJECTED_FRAMES_KEPT = 32  # stamps of rejected frames remembered, so prompts for them say why


@dataclass
class _Incoming:
    stamp_ns: int
    msg: Any  # sensor_msgs/Image or CompressedImage, decoded by the worker


@dataclass
class _Persistent:
    """A persistent prompt and, once it selected something and follows it (tracking on, not reapply), what."""

    prompt: Prompt
    reapply: bool = False
    followed: FollowedPrompt | None = None


@dataclass
class _Health:
    """Counters and the last problem, for /diagnostics."""

    frames_received: int = 0
    frames_processed: int = 0
    bad_images: int = 0
    bad_prompts: int = 0
    internal_errors: int = 0
    depth_problems: int = 0
    last_inference_ms: float = 0.0
    last_error: str = ""
    configure_error: str = ""
    errors_since_report: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def problem(self, message: str, counter: str) -> None:
        with self.lock:
            setattr(self, counter, getattr(self, counter) + 1)
            self.last_error = message
            self.errors_since_report += 1


class FastSAMNode(LifecycleNode):
    """FastSAM all-instance segmentation with prompt-guided selection over topics and a service."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__("fastsam", **kwargs)
        for name, default, doc in parameter_table():  # typed by NodeConfig, so a wrong type is a clear error
            self.declare_parameter(name, default, ParameterDescriptor(description=doc, dynamic_typing=True))
        self._decoder = ros_io.ImageDecoder()
        self._health = _Health()
        self._config: NodeConfig | None = None
        self._engine: FastSAMEngine | None = None
        self._clip: ClipScorer | None = None  # loads on the first text prompt (or at configure when asked)
        self._depth: Any = None  # node_depth.DepthStage with use_depth (imported only then: visualization_msgs)
        self._cache: FrameCache | None = None
        self._incoming: LatestSlot[_Incoming] = LatestSlot()
        self._frame_done = threading.Condition()
        self._rejected: OrderedDict[int, str] = OrderedDict()  # stamp -> why the frame was rejected
        self._persistent: dict[str, _Persistent] = {}
        self._tracker = InstanceTracker()  # used by the worker thread only
        self._persistent_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._traced: set[type] = set()  # exception types whose traceback was logged once
        self._outputs: dict[str, Any] = {}
        self._inputs: list[Any] = []
        self._stopping = False  # set by stop(): prompts waiting for a pending frame give up
        self._prompt_pool: ThreadPoolExecutor | None = None  # prompts that must wait; exists while active
        self.blocking_group = ReentrantCallbackGroup()  # callbacks that may wait: NodeExecutor runs them aside
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        self._diagnostics_timer = self.create_timer(
            self._startup_value("diagnostics_period"), self._publish_diagnostics,
            callback_group=MutuallyExclusiveCallbackGroup())
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

    # ---------------------------------------------------------------- lifecycle

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters and load (and warm up) the model; on failure stay unconfigured and say why."""
        try:
            config = NodeConfig.from_values(self._parameter_values())
            self.get_logger().info(f"loading {config.model} on {config.device} (imgsz {config.imgsz})")
            started = time.perf_counter()
            engine = FastSAMEngine(config.engine, log=self.get_logger().info)  # logs the backend and export cost
            if config.warmup:
                engine.warmup()
                tracking.compile_kernels()
        except (ConfigError, ModelLoadError, ValueError, RuntimeError) as error:
            self._health.configure_error = str(error)
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self._config, self._engine, self._cache = config, engine, FrameCache(config.cache_frames)
        self._tracker = InstanceTracker(config.tracker)
        self._clip = ClipScorer(config.clip, log=self._clip_failed)
        if config.clip_load_at_configure:
            # A failure is logged once by _clip_failed; text prompts then answer `error`, the rest keeps working.
            with contextlib.suppress(ClipUnavailable):
                self._clip.load()
        self._health.configure_error = ""
        if config.use_depth:
            from fastsam_ros.node_depth import DepthStage

            self._depth = DepthStage(self, config.depth_tolerance, config.depth_range, config.depth_wait,
                                     config.cache_frames, self._depth_problem, self.report_error)
        self._outputs = {
            "instances": self.create_publisher(Instances, "instances", ros_io.RELIABLE_QOS),
            "selection": self.create_publisher(SelectionMsg, "selection", ros_io.RELIABLE_QOS),
            "mask": self.create_publisher(Image, "mask", ros_io.RELIABLE_QOS),
            "debug_image": self.create_publisher(Image, "debug_image", ros_io.RELIABLE_QOS),
        }
        self.get_logger().info(
            f"configured in {time.perf_counter() - started:.1f} s; images decoded by {self._decoder.backend}"
        )
        return TransitionCallbackReturn.SUCCESS

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Subscribe to the camera and the prompts, and start the inference thread."""
        config = self._config
        assert config is not None
        if self._worker is not None:  # an earlier deactivate left a frame running: never two on one engine
            self._worker.join(WORKER_JOIN_S)
            if self._worker.is_alive():
                self.get_logger().error("activate failed: the previous inference thread is still running a frame")
                return TransitionCallbackReturn.FAILURE
            self._worker = None
        image_type, image_topic = (Image, "image") if config.image_transport == "raw" else (
            CompressedImage, "image/compressed")
        self._incoming = LatestSlot()
        self._tracker.reset()  # the frames that come now may be another stream
        self._stopping = False
        self._prompt_pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fastsam-prompt")
        self._worker = threading.Thread(target=self._run_worker, name="fastsam-inference", daemon=True)
        self._worker.start()
        self._inputs = [
            self.create_subscription(image_type, image_topic, self._on_image,
                                     ros_io.image_qos(config.image_reliability, config.image_depth)),
            self.create_subscription(PromptMsg, "prompt", self._on_prompt, ros_io.RELIABLE_QOS),
            self.create_subscription(PointStamped, "prompt/point", self._on_click, ros_io.RELIABLE_QOS),
            self.create_subscription(String, "prompt/text", self._on_text, ros_io.RELIABLE_QOS),
            # A service callback cannot hand its answer over to another thread, so the whole call runs aside.
            self.create_service(Segment, "segment", self._on_segment, callback_group=self.blocking_group),
        ]
        if self._depth is not None:
            self._depth.subscribe(ros_io.image_qos(config.image_reliability, DEPTH_QUEUE))
        self.get_logger().info(f"active: segmenting {self.resolve_topic_name(image_topic)}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and stop the worker; the model stays loaded for a quick re-activate."""
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model, the cache and the GPU memory they held."""
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.stop()
        self._release()
        return TransitionCallbackReturn.SUCCESS

    def stop(self) -> None:
        """Stop listening and join the inference thread (deactivate, shutdown and process exit)."""
        for entity in self._inputs:
            if hasattr(entity, "srv_name"):
                self.destroy_service(entity)
            else:
                self.destroy_subscription(entity)
        self._inputs = []
        if self._depth is not None:
            self._depth.unsubscribe()
        self._incoming.close()
        with self._frame_done:  # prompts waiting for a frame stop waiting: it will not come
            self._stopping = True
            self._frame_done.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=WORKER_JOIN_S)
            if self._worker.is_alive():  # kept, so activate waits for it instead of racing it on the engine
                self.get_logger().error(f"the inference thread is still running a frame after {WORKER_JOIN_S:g} s")
            else:
                self._worker = None
        if self._prompt_pool is not None:
            self._prompt_pool.shutdown(wait=True)
            self._prompt_pool = None

    def _release(self) -> None:
        """Free the outputs, the model, the cache and the GPU memory (cleanup and shutdown)."""
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        if self._depth is not None:
            self._depth.destroy()
        self._engine, self._cache, self._config, self._clip, self._depth = None, None, None, None, None
        with self._persistent_lock:
            self._persistent.clear()
        self._tracker.reset()
        free_accelerator_memory()

    # ---------------------------------------------------------------- parameters at run time

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
        running = self._config
        if running is None:  # unconfigured: everything is read at the next configure
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
        if changed & {"tracking", "track_lost_frames", "track_min_iou"}:
            self._tracker.params = candidate.tracker  # read by the worker at its next frame
        if "diagnostics_period" in changed:
            self._diagnostics_timer.cancel()
            self.destroy_timer(self._diagnostics_timer)
            self._diagnostics_timer = self.create_timer(candidate.diagnostics_period, self._publish_diagnostics,
                                                        callback_group=MutuallyExclusiveCallbackGroup())
        if changed:
            self.get_logger().info(f"applied from the next frame: {', '.join(sorted(changed))}")
        return SetParametersResult(successful=True)

    # ---------------------------------------------------------------- camera and inference

    def _on_image(self, msg: Any) -> None:
        stamp = ros_io.stamp_ns(msg.header) or time.time_ns()  # unstamped drivers: key by arrival
        self._health.frames_received += 1
        self._incoming.put(_Incoming(stamp, msg))

    def _run_worker(self) -> None:
        while rclpy.ok(context=self.context):
            item = self._incoming.take()
            if item is None:
                return
            try:
                self._process(item)
            except Exception as error:  # the worker must survive anything one frame does
                self.report_error(f"frame {item.stamp_ns} failed", error)
            finally:
                self._incoming.done()
                with self._frame_done:
                    self._frame_done.notify_all()

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

    def _process(self, item: _Incoming) -> None:
        engine, cache, config = self._engine, self._cache, self._config
        if engine is None or cache is None or config is None:
            return
        header = item.msg.header
        try:
            image = self._decoder.decode(item.msg, config.max_image_pixels)
        except ImageError as error:
            self._reject_image(item.stamp_ns, header, str(error))
            return
        segmentation = engine.segment(image)
        if not config.tracking:
            self._tracker.reset()  # turned back on, it starts afresh rather than from a stale frame
        track_ids = self._tracker.update(segmentation, image) if config.tracking else None
        frame = Frame(item.stamp_ns, header, image, segmentation, track_ids)
        cache.put(frame)
        with self._frame_done:  # prompts waiting for this frame answer now, not after the outputs below
            self._frame_done.notify_all()
        if self._depth is not None:  # pair it with its depth now, while that is still buffered
            self._depth.pin(frame.stamp_ns, segmentation.image_shape)
        self._health.frames_processed += 1
        self._health.last_inference_ms = segmentation.timings.inference_ms
        with self._persistent_lock:
            entries = list(self._persistent.items())
        answers = [self._answer_persistent(frame, key, entry) for key, entry in entries]
        prompts = [entry.prompt for _, entry in entries]
        for answer in answers:  # answers first: they are what a robot waits on
            self._outputs["selection"].publish(ros_io.selection_msg(answer, header))
        if answers:
            self._publish_mask(frame, answers)
            self._publish_3d(frame, answers)
        publisher = self._outputs["instances"]
        if publisher.get_subscription_count() > 0:
            publisher.publish(wire.instances_cdr(segmentation, header.stamp.sec, header.stamp.nanosec, header.frame_id,
                                                 config.publish_instance_masks, track_ids))  # serialized: bytes
        self._publish_debug(frame, answers, prompts)

    def _answer_persistent(self, frame: Frame, key: str, entry: _Persistent) -> Selection:
        """A persistent prompt on a new frame: the objects it follows, or its pixels again (reapply, no tracking)."""
        if entry.reapply or frame.track_ids is None:
            return self._select(frame, entry.prompt)
        selection, followed = follow_step(entry.followed, lambda: self._rules(frame, entry.prompt),
                                          frame.segmentation, frame.track_ids, self._tracker)
        self._follow(key, entry, followed)
        return self._finish(frame, entry.prompt, selection)

    def _follow(self, key: str, entry: _Persistent, followed: FollowedPrompt | None) -> None:
        """Keep what ``entry`` follows, unless it was cleared or replaced meanwhile, or already follows something."""
        with self._persistent_lock:
            if self._persistent.get(key) is entry and entry.followed is None:
                entry.followed = followed

    def _reject_image(self, stamp: int, header: Any, reason: str) -> None:
        """A malformed frame: log (throttled), count, and tell the persistent prompts, which wait for it, why."""
        message = f"image rejected: {reason}"
        self._health.problem(message, "bad_images")
        self.get_logger().warning(message, throttle_duration_sec=LOG_THROTTLE_S)
        with self._frame_done:
            self._rejected[stamp] = reason
            while len(self._rejected) > REJECTED_FRAMES_KEPT:
                self._rejected.popitem(last=False)
        with self._persistent_lock:
            ids = list(self._persistent)
        for prompt_id in ids:
            rejected = Selection.failed(prompt_id, Status.INVALID, message)
            self._outputs["selection"].publish(ros_io.selection_msg(rejected, header))

    # ---------------------------------------------------------------- prompts

    def _on_prompt(self, msg: Any) -> None:
        prompt = ros_io.prompt_from_msg(msg)
        if msg.clear:
            self._clear_persistent(prompt.id)
            return
        if msg.persistent:
            try:  # an invalid prompt is answered once and never stored
                check_prompt(prompt, self._selection_params())
            except InvalidPrompt as error:
                self._publish_selection(self._invalid(prompt, str(error)), msg.header)
                return
            entry = _Persistent(prompt, reapply=bool(msg.reapply))
            with self._persistent_lock:
                self._persistent[prompt.id] = entry
            how = "re-applied to" if entry.reapply else "following what it selects on"
            self.get_logger().info(f"persistent prompt {prompt.id!r} {how} every frame until cleared")
            self._dispatch(prompt, ros_io.stamp_ns(msg.header), msg.header, entry)
            return
        self._dispatch(prompt, ros_io.stamp_ns(msg.header), msg.header)

    def _on_click(self, msg: Any) -> None:
        self._dispatch(ros_io.click_prompt(msg), ros_io.stamp_ns(msg.header), msg.header)

    def _on_text(self, msg: Any) -> None:
        self._dispatch(ros_io.text_prompt(msg), 0, Header())

    def _selection_params(self) -> Any:
        return (self._config or NodeConfig()).selection

    def _dispatch(self, prompt: Prompt, stamp: int, request_header: Any, entry: _Persistent | None = None) -> None:
        """Answer now when the frame is cached and the prompt is light (milliseconds); else on the prompt pool,
        so a text prompt (CLIP), many boxes or a frame still in flight never hold up the cached clicks.
        ``entry``: the persistent prompt this first answer starts (it follows what the answer selects)."""
        pool = self._prompt_pool
        heavy = bool(prompt.text) or len(prompt.boxes) > INLINE_BOXES
        if pool is not None and (heavy or self._must_wait(stamp)):
            pool.submit(self._answer_and_publish, prompt, stamp, request_header, entry).add_done_callback(
                self._log_failure)
        else:
            self._answer_and_publish(prompt, stamp, request_header, entry)

    def _log_failure(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.report_error("prompt failed", future.exception())

    def _clip_failed(self, reason: str) -> None:
        """CLIP could not load: one log line, then text prompts answer `error` with this reason."""
        self._health.problem(f"CLIP unavailable: {reason}", "bad_prompts")
        self.get_logger().error(f"text prompts disabled: {reason}")

    def _on_segment(self, request: Any, response: Any) -> Any:
        prompt = ros_io.prompt_from_msg(request.prompt)
        try:
            selection, frame = self._answer(prompt, ros_io.stamp_ns(request.prompt.header))
        except Exception as error:  # the caller always gets an answer
            self.report_error("segment service failed", error)
            selection, frame = Selection.failed(prompt.id, Status.ERROR, f"segment failed: {error}"), None
        response.selection = ros_io.selection_msg(selection, frame.header if frame else request.prompt.header)
        return response

    def _clear_persistent(self, prompt_id: str) -> None:
        with self._persistent_lock:
            removed = list(self._persistent) if not prompt_id else [p for p in self._persistent if p == prompt_id]
            for key in removed:
                del self._persistent[key]
        self.get_logger().info(f"cleared persistent prompts: {', '.join(map(repr, removed)) or 'none matched'}")

    def _publish_selection(self, selection: Selection, header: Any) -> None:
        publisher = self._outputs.get("selection")
        if publisher is not None:
            publisher.publish(ros_io.selection_msg(selection, header))

    def _answer_and_publish(self, prompt: Prompt, stamp: int, request_header: Any,
                            entry: _Persistent | None = None) -> None:
        selection, frame = self._answer(prompt, stamp)
        if entry is not None and not entry.reapply and frame is not None and frame.track_ids is not None:
            followed = FollowedPrompt.start(selection, frame.track_ids)
            if followed is not None:
                selection = followed.tagged(selection)
                self._follow(prompt.id, entry, followed)
        self._publish_selection(selection, frame.header if frame else request_header)
        if frame is not None:
            self._publish_mask(frame, [selection])  # empty when nothing was selected: never a stale mask
            self._publish_3d(frame, [selection])
            if selection.ok:
                self._publish_debug(frame, [selection], [prompt])

    def _answer(self, prompt: Prompt, stamp: int) -> tuple[Selection, Frame | None]:
        """Select on the requested frame; the frame (None when unavailable) gives the answer its header."""
        frame = self._frame_for(stamp)
        if frame is None:
            with self._frame_done:
                rejected = self._rejected.get(stamp) if stamp else None
            if rejected is not None:
                reason = f"frame {stamp} ns was rejected: {rejected}"
            elif stamp == 0:
                reason = "no frame has been segmented yet"
            else:
                reason = f"frame {stamp} ns is not among the {len(self._cache or ())} cached frames"
            self._health.problem(f"prompt {prompt.id!r}: {reason}", "bad_prompts")
            self.get_logger().warning(f"prompt {prompt.id!r}: {reason}", throttle_duration_sec=LOG_THROTTLE_S)
            return Selection.failed(prompt.id, Status.FRAME_NOT_AVAILABLE, reason), None
        return self._select(frame, prompt), frame

    def _invalid(self, prompt: Prompt, reason: str) -> Selection:
        self._health.problem(f"prompt {prompt.id!r}: {reason}", "bad_prompts")
        self.get_logger().warning(f"prompt {prompt.id!r} invalid: {reason}", throttle_duration_sec=LOG_THROTTLE_S)
        return Selection.failed(prompt.id, Status.INVALID, reason)

    def _select(self, frame: Frame, prompt: Prompt) -> Selection:
        return self._finish(frame, prompt, self._rules(frame, prompt))

    def _rules(self, frame: Frame, prompt: Prompt) -> Selection:
        """The prompt rules on ``frame`` (a failure of the code is an ``error`` answer, reported)."""
        try:
            return select(frame.segmentation, prompt, self._selection_params(), frame.image, self._clip)
        except Exception as error:  # a bug in one answer must not stop the node
            self.report_error(f"prompt {prompt.id!r}", error)
            return Selection.failed(prompt.id, Status.ERROR, f"selection failed: {error}")

    def _finish(self, frame: Frame, prompt: Prompt, selection: Selection) -> Selection:
        """An answer made ready to send: located in 3D with depth, bad prompts counted and logged."""
        if self._depth is not None:
            selection = self._depth.locate(selection, frame.stamp_ns, frame.segmentation.image_shape)
        if selection.status in (Status.INVALID, Status.ERROR):
            self._health.problem(f"prompt {prompt.id!r}: {selection.reason}", "bad_prompts")
            self.get_logger().warning(f"prompt {prompt.id!r} {selection.status.value}: {selection.reason}",
                                      throttle_duration_sec=LOG_THROTTLE_S)
        return selection

    def _frame_for(self, stamp: int) -> Frame | None:
        """The cached frame for ``stamp`` (0 = newest), waiting while that frame is still being segmented."""
        cache = self._cache
        if cache is None:
            return None
        deadline = time.monotonic() + PENDING_FRAME_TIMEOUT_S
        with self._frame_done:
            while self._must_wait(stamp) and not self._stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._frame_done.wait(remaining)
        return cache.get(stamp)

    def _must_wait(self, stamp: int) -> bool:
        """Whether a prompt for ``stamp`` would wait for a frame that is still being segmented."""
        cache = self._cache
        if cache is None or cache.get(stamp) is not None:
            return False
        pending = [item.stamp_ns for item in self._incoming.pending()]
        return bool(pending) and (stamp == 0 or stamp in pending)

    # ---------------------------------------------------------------- outputs

    def _publish_mask(self, frame: Frame, selections: list[Selection]) -> None:
        """One mono8 0/255 mask per answered frame: the union of every ok selection, all zero when none is ok
        (built only while someone listens)."""
        publisher = self._outputs.get("mask")
        if publisher is None or publisher.get_subscription_count() == 0:
            return
        union = np.zeros(frame.segmentation.image_shape, dtype=bool)
        for selection in selections:
            for obj in selection.objects:
                union |= obj.mask
        publisher.publish(ros_io.image_msg(union.view(np.uint8) * 255, frame.header))

    def _publish_3d(self, frame: Frame, selections: list[Selection]) -> None:
        if self._depth is not None:
            self._depth.publish(frame.header, frame.stamp_ns, frame.segmentation.image_shape, selections)

    def _depth_problem(self, message: str) -> None:
        """Bad depth input (an answer without usable depth, a rejected camera_info): the answers say why; counted,
        logged (throttled) and on /diagnostics."""
        self._health.problem(message, "depth_problems")
        self.get_logger().warning(message, throttle_duration_sec=LOG_THROTTLE_S)

    def _publish_debug(self, frame: Frame, selections: list[Selection], prompts: list[Prompt]) -> None:
        """The overlay costs milliseconds, so it is drawn only while someone watches."""
        publisher = self._outputs.get("debug_image")
        if publisher is None or publisher.get_subscription_count() == 0:
            return
        overlay = draw_overlay(frame.image, frame.segmentation, selections, prompts)
        publisher.publish(ros_io.image_msg(overlay, frame.header))

    def _publish_diagnostics(self) -> None:
        health = self._health
        with health.lock:
            if health.configure_error:
                level, message = DiagnosticStatus.ERROR, f"not configured: {health.configure_error}"
            elif health.errors_since_report:
                level, message = DiagnosticStatus.WARN, health.last_error
            else:
                level, message = DiagnosticStatus.OK, "segmenting" if self._worker else "waiting for activation"
            health.errors_since_report = 0
            values = {
                "state": self._state_machine.current_state[1], "model": self.get_parameter("model").value,
                "device": self.get_parameter("device").value, "frames_received": health.frames_received,
                "frames_processed": health.frames_processed, "frames_dropped": self._incoming.dropped,
                "bad_images": health.bad_images, "bad_prompts": health.bad_prompts,
                "internal_errors": health.internal_errors,
                "last_inference_ms": f"{health.last_inference_ms:.1f}", "cached_frames": len(self._cache or ()),
                "last_error": health.last_error, "image_decoder": self._decoder.backend,
                "backend": engine.backend.backend if (engine := self._engine) is not None else "",
            }
            if self._depth is not None:
                values.update(self._depth.diagnostics(), depth_problems=health.depth_problems)
        stamp = self.get_clock().now().to_msg()
        name = f"{self.get_fully_qualified_name()}: segmentation"  # two nodes are told apart by namespace
        self._diagnostics.publish(ros_io.diagnostics_msg(stamp, name, level, message, values))


def free_accelerator_memory() -> None:
    """Hand cached CUDA blocks back to the driver once the model is gone (no-op without torch or CUDA)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def main(args: list[str] | None = None) -> None:
    """Entry point of ``fastsam_node`` (``ros2 run fastsam_ros fastsam_node``).

    SIGINT and SIGTERM are handled here, not by rclpy: the first asks the spin loop to stop and both are
    ignored from then on, so shutdown always finishes and the process exits 0. Under ``ros2 launch`` a
    terminal's Ctrl-C reaches the node twice (the process group, then launch forwards it); with rclpy's
    handlers, uninstalled by ``try_shutdown``, the second one raised KeyboardInterrupt during shutdown,
    or hit the default action during interpreter exit, and launch reported "process has died [exit
    code -2]". A Python handler runs only between bytecodes,
    so the loop wakes every ``poll_s`` to see the request (rclpy's wait cannot be interrupted from it).
    """
    from rclpy.signals import SignalHandlerOptions

    poll_s = 0.1
    stop_requested = stop_on_signals()
    pin_malloc_thresholds()
    shorten_gil_switch_interval()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = FastSAMNode()
    executor = NodeExecutor(node.blocking_group, on_error=lambda error: node.report_error("callback failed", error))
    executor.add_node(node)
    try:
        while not stop_requested.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=poll_s)
    except ExternalShutdownException:
        pass
    finally:
        node.stop()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    # ROS is shut down; the process ends here without Python's finalization, which destroyed the inference
    # runtimes' objects (OpenVINO's, PyTorch's thread pools) and crashed with SIGSEGV under `make test`. The C
    # library's exit() still runs the native libraries' exit handlers, unlike os._exit(): with os._exit every run
    # left its Fast DDS shared-memory segments (17 MB) in /dev/shm until reboot.
    sys.stdout.flush()
    sys.stderr.flush()
    ctypes.CDLL(None).exit(0)


if __name__ == "__main__":
    main()
