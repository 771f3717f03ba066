"""The inference worker: one thread that takes the newest camera frame, decodes, segments and tracks it, caches it
for prompts, has the persistent prompts answered on it and sends the frame's outputs.

No ``rclpy`` here: the node hands it the board frames arrive on, the engine, the registry and the outputs.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from fastsam_ros.ros.frames import Frame, FrameBoard
from fastsam_ros.ros.images import ImageError
from fastsam_ros.tracking.tracker import InstanceTracker, TrackerParams


@dataclass(frozen=True)
class Incoming:
    """A camera message waiting to be decoded, keyed by the stamp its outputs will carry."""

    stamp_ns: int
    msg: Any  # sensor_msgs/Image or CompressedImage


@dataclass(frozen=True)
class FrameSettings:
    """What the worker reads from the live parameters for each frame."""

    max_image_pixels: int
    tracking: bool
    publish_instance_masks: bool


STAGES = ("decode", "segment", "track", "answers", "outputs")  # a frame's path through the worker, in order
STAGE_WINDOW = 100  # frames whose stage times make the medians


class StageTimes:
    """How long each stage of the last ``STAGE_WINDOW`` frames took (thread-safe): the node's own profile, so a slow
    frame is explained from /diagnostics without patching the node."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._times = {stage: deque(maxlen=STAGE_WINDOW) for stage in STAGES}

    def add(self, frame_ms: dict[str, float]) -> None:
        with self._lock:
            for stage, milliseconds in frame_ms.items():
                self._times[stage].append(milliseconds)

    def medians(self) -> dict[str, float]:
        """Per stage, the median of the window in milliseconds (stages no frame reached yet are left out)."""
        with self._lock:
            return {stage: statistics.median(times) for stage, times in self._times.items() if times}


class _Stopwatch:
    """Milliseconds since the last ``lap``, per stage name."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.perf_counter()

    def lap(self, stage: str) -> None:
        now = time.perf_counter()
        self.laps[stage] = (now - self._last) * 1e3
        self._last = now


class InferenceWorker:
    """Segments the frames put on ``board`` one at a time, newest first, on its own thread."""

    def __init__(self, board: FrameBoard, engine: Any, decode: Callable[[Any, int], Any], registry: Any,
                 outputs: Any, settings: Callable[[], FrameSettings], tracker: TrackerParams = TrackerParams(),
                 depth: Any = None, on_frame_done: Callable[[Frame, dict[str, float]], None] = lambda frame, ms: None,
                 on_rejected: Callable[[str], None] = lambda message: None,
                 on_error: Callable[[str, BaseException], None] = lambda what, error: None,
                 thread_name: str = "fastsam-inference") -> None:
        """``decode(msg, max_pixels)`` raises ImageError for a frame it cannot take; ``on_frame_done`` gets each
        segmented frame and its milliseconds per stage, ``on_rejected`` a rejected one (with why), ``on_error`` a
        failure of our code; ``engine``: anything with ``segment`` (a :class:`SharedEngine` when several cameras
        share one model)."""
        self._board = board
        self._engine = engine
        self._decode = decode
        self._registry = registry
        self._outputs = outputs
        self._settings = settings
        self._depth = depth
        self._on_frame_done = on_frame_done
        self._on_rejected = on_rejected
        self._on_error = on_error
        self._thread_name = thread_name
        self.tracker = InstanceTracker(tracker)  # the worker thread's alone
        self.stage_times = StageTimes()
        self._thread: threading.Thread | None = None
        # Makes a frame's masks while the tracker associates: the mask kernel releases the GIL, and on a CPU the
        # network's threads are idle then (make bench: the node's own cost 1-1.3 ms lower, at ~5 and ~100 instances).
        self._mask_maker = ThreadPoolExecutor(1, thread_name_prefix=f"{thread_name}-masks")

    @property
    def running(self) -> bool:
        """Whether the thread still runs (after :meth:`stop` timed out: a frame that has not finished)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start on a fresh stream (the board was opened): tracks and their ids start afresh too."""
        if self.running:
            raise RuntimeError("the inference thread is still running a frame")
        self.tracker.reset()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()

    def stop(self, timeout: float) -> bool:
        """Wait up to ``timeout`` s for the frame in flight (the board was closed first); True when finished."""
        if self._thread is not None:
            self._thread.join(timeout)
        return not self.running

    def _run(self) -> None:
        board = self._board
        slot = board.slot  # this activation's: a later one gets a new slot
        while (item := slot.take()) is not None:
            try:
                self.process(item)
            except Exception as error:  # the worker must survive anything one frame does
                self._on_error(f"frame {item.stamp_ns} failed", error)
            finally:
                board.released()

    def process(self, item: Incoming) -> Frame | None:
        """One frame through decode, segmentation, tracking, the cache, the persistent prompts and the outputs."""
        settings = self._settings()
        header = item.msg.header
        watch = _Stopwatch()
        try:
            image = self._decode(item.msg, settings.max_image_pixels)
        except ImageError as error:
            self.reject(item.stamp_ns, header, str(error))
            return None
        watch.lap("decode")
        segmentation = self._engine.segment(image)
        watch.lap("segment")
        if settings.tracking:
            grid = self.tracker.read(segmentation)  # first: making every mask drops what the grid is read from
            masks_made = (self._mask_maker.submit(segmentation.masks.make)
                          if self._outputs.reads_every_mask(settings.publish_instance_masks) else None)
            try:
                track_ids = self.tracker.update(segmentation, image, grid)
            finally:
                if masks_made is not None:
                    masks_made.result()  # before any prompt or output reads them
        else:
            self.tracker.reset()  # turned back on, it starts afresh rather than from a stale frame
            track_ids = None
        watch.lap("track")
        frame = Frame(item.stamp_ns, header, image, segmentation, track_ids, self.tracker.epoch)
        self._outputs.segmented(frame)
        self._board.finished(frame)  # prompts waiting for this frame answer now, not after the outputs below
        if self._depth is not None:  # pair it with its depth now, while that is still buffered
            self._depth.pin(frame.stamp_ns, segmentation.image_shape)
        answers, prompts = self._registry.on_frame(frame, self.tracker if settings.tracking else None)
        watch.lap("answers")
        self._outputs.frame(frame, answers, prompts, settings.publish_instance_masks)
        watch.lap("outputs")
        self.stage_times.add(watch.laps)
        self._on_frame_done(frame, watch.laps)
        return frame

    def reject(self, stamp_ns: int, header: Any, reason: str) -> None:
        """A malformed frame: counted and logged, remembered (prompts for it say why), and the persistent prompts,
        which waited for it, told why."""
        message = f"image rejected: {reason}"
        self._on_rejected(message)
        self._board.rejected(stamp_ns, reason)
        self._registry.on_rejected_frame(header, message)
