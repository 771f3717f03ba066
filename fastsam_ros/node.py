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
import ctypes.util
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.callback_groups import CallbackGroup, MutuallyExclusiveCallbackGroup, ReentrantCallbackGroup
from rclpy.executors import ExternalShutdownException, ShutdownException, SingleThreadedExecutor, TimeoutException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header, String

from fastsam_ros import ros_io
from fastsam_ros.config import ConfigError, NodeConfig, parameter_table
from fastsam_ros.engine import FastSAMEngine, ModelLoadError
from fastsam_ros.frames import Frame, FrameCache, LatestSlot
from fastsam_ros.images import ImageError
from fastsam_ros.msg import Instances
from fastsam_ros.msg import Prompt as PromptMsg
from fastsam_ros.msg import Selection as SelectionMsg
from fastsam_ros.overlay import draw_overlay
from fastsam_ros.selection import select
from fastsam_ros.srv import Segment
from fastsam_ros.text import ClipScorer, ClipUnavailable
from fastsam_ros.types import Prompt, Selection, Status

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
PENDING_FRAME_TIMEOUT_S = 10.0  # how long a prompt waits for a frame that is still being segmented
LOG_THROTTLE_S = 2.0


@dataclass
class _Incoming:
    stamp_ns: int
    msg: Any  # sensor_msgs/Image or CompressedImage, decoded by the worker


@dataclass
class _Health:
    """Counters and the last problem, for /diagnostics."""

    frames_received: int = 0
    frames_processed: int = 0
    bad_images: int = 0
    bad_prompts: int = 0
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
        for name, default, doc in parameter_table():
            self.declare_parameter(name, default, ParameterDescriptor(description=doc))
        self._decoder = ros_io.ImageDecoder()
        self._health = _Health()
        self._config: NodeConfig | None = None
        self._engine: FastSAMEngine | None = None
        self._clip: ClipScorer | None = None  # loads on the first text prompt (or at configure when asked)
        self._cache: FrameCache | None = None
        self._incoming: LatestSlot[_Incoming] = LatestSlot()
        self._in_flight_ns: int | None = None
        self._frame_done = threading.Condition()
        self._persistent: dict[str, Prompt] = {}
        self._persistent_lock = threading.Lock()
        self._worker: threading.Thread | None = None
        self._outputs: dict[str, Any] = {}
        self._inputs: list[Any] = []
        self._stopping = False  # set by stop(): prompts waiting for a pending frame give up
        self._prompt_pool: ThreadPoolExecutor | None = None  # prompts that must wait; exists while active
        self.blocking_group = ReentrantCallbackGroup()  # callbacks that may wait: NodeExecutor runs them aside
        self._diagnostics = self.create_publisher(DiagnosticArray, "/diagnostics", 10)
        period = float(self.get_parameter("diagnostics_period").value)
        self.create_timer(period, self._publish_diagnostics, callback_group=MutuallyExclusiveCallbackGroup())
        if self.get_parameter("autostart").value:
            self._autostart_timer = self.create_timer(0.0, self._autostart)

    # ---------------------------------------------------------------- lifecycle

    def _autostart(self) -> None:
        self._autostart_timer.cancel()
        if self.trigger_configure() == TransitionCallbackReturn.SUCCESS:
            self.trigger_activate()

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Validate parameters and load (and warm up) the model; on failure stay unconfigured and say why."""
        try:
            config = NodeConfig.from_values({name: self.get_parameter(name).value for name, _, _ in parameter_table()})
            self.get_logger().info(f"loading {config.model} on {config.device} (imgsz {config.imgsz})")
            started = time.perf_counter()
            engine = FastSAMEngine(config.engine)
            if config.warmup:
                engine.warmup()
        except (ConfigError, ModelLoadError, ValueError, RuntimeError) as error:
            self._health.configure_error = str(error)
            self.get_logger().error(f"configure failed: {error}")
            return TransitionCallbackReturn.FAILURE
        self._config, self._engine, self._cache = config, engine, FrameCache(config.cache_frames)
        self._clip = ClipScorer(config.clip, log=self._clip_failed)
        if config.clip_load_at_configure:
            # A failure is logged once by _clip_failed; text prompts then answer `error`, the rest keeps working.
            with contextlib.suppress(ClipUnavailable):
                self._clip.load()
        self._health.configure_error = ""
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
        image_type, image_topic = (Image, "image") if config.image_transport == "raw" else (
            CompressedImage, "image/compressed")
        self._incoming = LatestSlot()
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
        self.get_logger().info(f"active: segmenting {self.resolve_topic_name(image_topic)}")
        return TransitionCallbackReturn.SUCCESS

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Stop listening and stop the worker; the model stays loaded for a quick re-activate."""
        self.stop()
        return TransitionCallbackReturn.SUCCESS

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        """Release the model and the cache."""
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
        self._incoming.close()
        with self._frame_done:  # prompts waiting for a frame stop waiting: it will not come
            self._stopping = True
            self._frame_done.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=30.0)
            self._worker = None
        if self._prompt_pool is not None:
            self._prompt_pool.shutdown(wait=True)
            self._prompt_pool = None

    def _release(self) -> None:
        for publisher in self._outputs.values():
            self.destroy_publisher(publisher)
        self._outputs = {}
        self._engine, self._cache, self._config, self._clip = None, None, None, None
        with self._persistent_lock:
            self._persistent.clear()

    # ---------------------------------------------------------------- camera and inference

    def _on_image(self, msg: Any) -> None:
        stamp = ros_io.stamp_ns(msg.header) or time.time_ns()  # unstamped drivers: key by arrival
        self._health.frames_received += 1
        self._incoming.put(_Incoming(stamp, msg))

    def _run_worker(self) -> None:
        while rclpy.ok():
            item = self._incoming.take()
            if item is None:
                return
            self._in_flight_ns = item.stamp_ns
            try:
                self._process(item)
            except Exception as error:  # the worker must survive anything one frame does
                self._health.problem(f"frame failed: {error}", "bad_images")
                self.get_logger().error(f"frame failed: {error}", throttle_duration_sec=LOG_THROTTLE_S)
            finally:
                with self._frame_done:
                    self._in_flight_ns = None
                    self._frame_done.notify_all()

    def _process(self, item: _Incoming) -> None:
        engine, cache, config = self._engine, self._cache, self._config
        if engine is None or cache is None or config is None:
            return
        header = item.msg.header
        try:
            image = self._decoder.decode(item.msg)
        except ImageError as error:
            self._reject_image(header, str(error))
            return
        segmentation = engine.segment(image)
        frame = Frame(item.stamp_ns, header, image, segmentation)
        cache.put(frame)
        with self._frame_done:  # prompts waiting for this frame answer now, not after the outputs below
            self._frame_done.notify_all()
        self._health.frames_processed += 1
        self._health.last_inference_ms = segmentation.timings.inference_ms
        with self._persistent_lock:
            prompts = list(self._persistent.values())
        answers = [self._select(frame, prompt) for prompt in prompts]
        for answer in answers:  # answers first: they are what a robot waits on
            self._outputs["selection"].publish(ros_io.selection_msg(answer, header))
        self._publish_mask(frame, answers)
        publisher = self._outputs["instances"]
        if publisher.get_subscription_count() > 0:
            publisher.publish(ros_io.instances_msg(segmentation, header, config.publish_instance_masks))
        self._publish_debug(frame, answers, prompts)

    def _reject_image(self, header: Any, reason: str) -> None:
        """A malformed frame: log (throttled), count, and tell prompt consumers why nothing comes."""
        self._health.problem(f"image rejected: {reason}", "bad_images")
        self.get_logger().warning(f"image rejected: {reason}", throttle_duration_sec=LOG_THROTTLE_S)
        with self._persistent_lock:
            ids = list(self._persistent) or [""]
        for prompt_id in ids:
            rejected = Selection.failed(prompt_id, Status.INVALID, f"image rejected: {reason}")
            self._outputs["selection"].publish(ros_io.selection_msg(rejected, header))

    # ---------------------------------------------------------------- prompts

    def _on_prompt(self, msg: Any) -> None:
        prompt = ros_io.prompt_from_msg(msg)
        if msg.clear:
            self._clear_persistent(prompt.id)
            return
        if msg.persistent:
            with self._persistent_lock:
                self._persistent[prompt.id] = prompt
            self.get_logger().info(f"persistent prompt {prompt.id!r} answered on every frame until cleared")
        self._dispatch(prompt, ros_io.stamp_ns(msg.header), msg.header)

    def _on_click(self, msg: Any) -> None:
        self._dispatch(ros_io.click_prompt(msg), ros_io.stamp_ns(msg.header), msg.header)

    def _on_text(self, msg: Any) -> None:
        self._dispatch(ros_io.text_prompt(msg), 0, Header())

    def _dispatch(self, prompt: Prompt, stamp: int, request_header: Any) -> None:
        """Answer now when the frame is cached (milliseconds); else, or for text (CLIP), on the prompt pool."""
        pool = self._prompt_pool
        if pool is not None and (prompt.text or self._must_wait(stamp)):
            pool.submit(self._answer_and_publish, prompt, stamp, request_header).add_done_callback(
                self._log_failure)
        else:
            self._answer_and_publish(prompt, stamp, request_header)

    def _log_failure(self, future: Future) -> None:
        if not future.cancelled() and future.exception() is not None:
            self.get_logger().error(f"prompt failed: {future.exception()}", throttle_duration_sec=LOG_THROTTLE_S)

    def _clip_failed(self, reason: str) -> None:
        """CLIP could not load: one log line, then text prompts answer `error` with this reason."""
        self._health.problem(f"CLIP unavailable: {reason}", "bad_prompts")
        self.get_logger().error(f"text prompts disabled: {reason}")

    def _on_segment(self, request: Any, response: Any) -> Any:
        prompt = ros_io.prompt_from_msg(request.prompt)
        selection, frame = self._answer(prompt, ros_io.stamp_ns(request.prompt.header))
        response.selection = ros_io.selection_msg(selection, frame.header if frame else request.prompt.header)
        return response

    def _clear_persistent(self, prompt_id: str) -> None:
        with self._persistent_lock:
            removed = list(self._persistent) if not prompt_id else [p for p in self._persistent if p == prompt_id]
            for key in removed:
                del self._persistent[key]
        self.get_logger().info(f"cleared persistent prompts: {', '.join(map(repr, removed)) or 'none matched'}")

    def _answer_and_publish(self, prompt: Prompt, stamp: int, request_header: Any) -> None:
        if "selection" not in self._outputs:
            return
        selection, frame = self._answer(prompt, stamp)
        self._outputs["selection"].publish(ros_io.selection_msg(selection, frame.header if frame else request_header))
        if frame is not None and selection.ok:
            self._publish_mask(frame, [selection])
            self._publish_debug(frame, [selection], [prompt])

    def _answer(self, prompt: Prompt, stamp: int) -> tuple[Selection, Frame | None]:
        """Select on the requested frame; the frame (None when unavailable) gives the answer its header."""
        frame = self._frame_for(stamp)
        if frame is None:
            reason = ("no frame has been segmented yet" if stamp == 0
                      else f"frame {stamp} ns is not among the {len(self._cache or ())} cached frames")
            self._health.problem(f"prompt {prompt.id!r}: {reason}", "bad_prompts")
            self.get_logger().warning(f"prompt {prompt.id!r}: {reason}", throttle_duration_sec=LOG_THROTTLE_S)
            return Selection.failed(prompt.id, Status.FRAME_NOT_AVAILABLE, reason), None
        return self._select(frame, prompt), frame

    def _select(self, frame: Frame, prompt: Prompt) -> Selection:
        config = self._config
        try:
            params = config.selection if config else NodeConfig().selection
            selection = select(frame.segmentation, prompt, params, frame.image, self._clip)
        except Exception as error:  # a bug in one answer must not stop the node
            selection = Selection.failed(prompt.id, Status.ERROR, f"selection failed: {error}")
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
        return cache is not None and cache.get(stamp) is None and self._is_pending(stamp)

    def _is_pending(self, stamp: int) -> bool:
        queued = self._incoming.peek()
        pending = {s for s in (self._in_flight_ns, queued.stamp_ns if queued else None) if s is not None}
        return bool(pending) and (stamp == 0 or stamp in pending)

    # ---------------------------------------------------------------- outputs

    def _publish_mask(self, frame: Frame, selections: list[Selection]) -> None:
        """One mono8 0/255 mask per frame: the union of every ok selection (built only while someone listens)."""
        publisher = self._outputs.get("mask")
        ok = [s for s in selections if s.ok]
        if ok and publisher is not None and publisher.get_subscription_count() > 0:
            union = ok[0].union_mask(frame.segmentation.image_shape)
            for selection in ok[1:]:
                union |= selection.union_mask(frame.segmentation.image_shape)
            publisher.publish(ros_io.image_msg(union.view(np.uint8) * 255, frame.header))

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
                "last_inference_ms": f"{health.last_inference_ms:.1f}", "cached_frames": len(self._cache or ()),
                "last_error": health.last_error, "image_decoder": self._decoder.backend,
            }
        stamp = self.get_clock().now().to_msg()
        self._diagnostics.publish(ros_io.diagnostics_msg(stamp, f"{self.get_name()}: segmentation", level, message,
                                                         values))


class NodeExecutor(SingleThreadedExecutor):
    """Runs every callback in the spinning thread, except those of ``blocking_group``, which get a pool thread.

    rclpy's ``MultiThreadedExecutor`` hands *every* callback to a pool thread and rebuilds its wait set
    meanwhile, contending for the GIL: a 100-byte ping-pong took 4.5-31 ms p50 through it on a 2-core machine,
    against 1.6 ms through a single-threaded executor. The node's callbacks are short (a frame into a slot, a
    prompt on a cached frame), so they run inline; only callbacks that may wait run aside.
    Uses only ``wait_for_ready_callbacks`` and the handler it yields (public since Humble).
    """

    def __init__(self, blocking_group: CallbackGroup, workers: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._blocking_group = blocking_group
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastsam-blocking")
        self._aside: list[Future] = []

    def spin_once(self, timeout_sec: float | None = None) -> None:
        for future in [f for f in self._aside if f.done()]:  # like MultiThreadedExecutor: raise their errors here
            self._aside.remove(future)
            future.result()
        try:
            handler, entity, _ = self.wait_for_ready_callbacks(timeout_sec=timeout_sec)
        except (ShutdownException, TimeoutException):
            return
        if entity is not None and getattr(entity, "callback_group", None) is self._blocking_group:
            self._aside.append(self._pool.submit(handler))  # the handler takes the request and answers it there
            return
        handler()
        if handler.exception() is not None:
            raise handler.exception()

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        done = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=True)
        return done


def pin_malloc_thresholds(mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Stop glibc from raising its mmap threshold at run time, so freed frame-sized memory goes back to the OS.

    By default glibc raises the threshold (up to 32 MB) each time a large block is freed, after which camera
    frames, masks and tensors (1-10 MB each, from several threads) are carved from heaps that are trimmed only
    past twice that: the node's resident memory then climbed by 100-300 MB in the first seconds of a 30 Hz
    stream (``make bench``). A fixed threshold above the network's largest activations keeps them reusing heap
    memory (no page-fault cost per inference) while the heaps are trimmed again: growth stays ~20-40 MB.
    Skipped where the user tunes malloc through ``MALLOC_*_`` variables, and outside glibc.
    """
    if any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold))
    except (OSError, AttributeError):  # not glibc
        return False


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
    import signal

    from rclpy.signals import SignalHandlerOptions

    poll_s = 0.1
    signals = (signal.SIGINT, signal.SIGTERM)
    stop_requested = threading.Event()

    def request_stop(*_: Any) -> None:
        for signum in signals:  # ignored from now on, also through interpreter exit
            signal.signal(signum, signal.SIG_IGN)
        stop_requested.set()

    for signum in signals:
        signal.signal(signum, request_stop)
    pin_malloc_thresholds()
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = FastSAMNode()
    executor = NodeExecutor(node.blocking_group)
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


if __name__ == "__main__":
    main()
