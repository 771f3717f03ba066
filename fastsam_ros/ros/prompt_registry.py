"""Prompts in, answers out: one-shot prompts answered on the frame they name, and the persistent prompts that are
answered on every new frame (following what they first selected, or re-applying their pixels).

No ``rclpy`` here: answers go to an ``Outputs``-like sink, so the rules of waiting, limits and following are tested
with plain threads. Threads: one-shot prompts on a cached frame are answered on the caller's thread (milliseconds);
prompts that must wait (for a frame still being segmented, for CLIP, many boxes) go to a small pool; persistent
prompts are answered by the inference worker right after each frame (:meth:`PromptRegistry.on_frame`).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from fastsam_ros.prompts.selection import InvalidPrompt, SelectionParams, check_prompt, select
from fastsam_ros.ros.frames import Frame, FrameBoard
from fastsam_ros.tracking.follow import FollowedPrompt, follow_step
from fastsam_ros.tracking.tracker import InstanceTracker
from fastsam_ros.types import Prompt, Selection, Status

PENDING_FRAME_TIMEOUT_S = 10.0  # how long a prompt waits for a frame that is still being segmented
INLINE_BOXES = 4  # prompts with more boxes are answered on the prompt pool, not on the caller's thread


class AnswerSink(Protocol):
    """Where answers go (the node's :class:`fastsam_ros.ros.outputs.Outputs`)."""

    def selection(self, selection: Selection, header: Any) -> None: ...

    def answer(self, frame: Frame | None, selection: Selection, prompt: Prompt, request_header: Any) -> None: ...


@dataclass(frozen=True)
class PromptSettings:
    """What the registry reads from the live parameters for each prompt."""

    selection: SelectionParams
    max_persistent: int


@dataclass
class PersistentPrompt:
    """A persistent prompt; ``followed`` is what it follows once its rules selected something (tracking on)."""

    prompt: Prompt
    reapply: bool
    followed: FollowedPrompt | None = None
    ready: bool = False  # its first answer is decided: until then the worker leaves it alone
    ends_on_miss: bool = False  # a click: an answer that selects nothing (no_match, invalid, ...) ends it


class PromptRegistry:
    """Answers prompts on the frames of one :class:`FrameBoard`, and keeps the persistent ones."""

    def __init__(self, board: FrameBoard, sink: AnswerSink, settings: Callable[[], PromptSettings],
                 clip: Any = None, locate: Callable[[Selection, Frame], Selection] | None = None,
                 on_problem: Callable[[str], None] = lambda message: None,
                 on_error: Callable[[str, BaseException], None] = lambda what, error: None) -> None:
        """``locate``: adds 3D to an answer (depth); ``on_problem``: a bad prompt, to count and log;
        ``on_error``: a failure of our code, to report with its traceback."""
        self._board = board
        self._sink = sink
        self._settings = settings
        self._clip = clip
        self._locate = locate
        self._on_problem = on_problem
        self._on_error = on_error
        self._persistent: dict[str, PersistentPrompt] = {}
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: set[Future] = set()

    # ------------------------------------------------------------------ activation

    def start(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="fastsam-prompt")

    def stop(self, timeout: float) -> bool:
        """Take no more prompts and give those in flight up to ``timeout`` s to answer (the board is closed first,
        so the ones waiting for a frame answer at once). True when none is left running."""
        pool, self._pool = self._pool, None
        if pool is None:
            return True
        pool.shutdown(wait=False, cancel_futures=True)
        with self._lock:
            running = set(self._in_flight)
        _, left = concurrent.futures.wait(running, timeout=timeout)
        if not left:
            pool.shutdown(wait=True)  # idle threads end at once: none may outlive the process's exit handlers
        return not left

    def clear(self) -> None:
        """Forget every persistent prompt (cleanup)."""
        with self._lock:
            self._persistent.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._persistent)

    # ------------------------------------------------------------------ prompts in

    def request(self, prompt: Prompt, stamp_ns: int, header: Any, *, persistent: bool = False,
                reapply: bool = False, ends_on_miss: bool = False) -> None:
        """A prompt from a topic: answered once, or (``persistent``) on every frame from now on (``ends_on_miss``:
        until an answer selects nothing)."""
        entry = None
        if persistent:
            entry, refusal = self._reserve(prompt, reapply, ends_on_miss)
            if refusal is not None:
                self._problem(prompt, refusal)
                self._sink.selection(refusal, header)
                return
        heavy = bool(prompt.text) or len(prompt.boxes) > INLINE_BOXES
        self.run(lambda: self._answer_and_send(prompt, stamp_ns, header, entry),
                 aside=heavy or self._board.must_wait(stamp_ns))

    def run(self, work: Callable[[], None], aside: bool = True) -> None:
        """``work`` (answering a prompt) on the prompt pool while active, where deactivate waits for it; at once
        when not ``aside`` or inactive (nothing to wait for then)."""
        pool = self._pool
        if pool is None or not aside:
            work()
            return
        try:
            future = pool.submit(work)
        except RuntimeError:  # the pool was shut down meanwhile (deactivate)
            work()
            return
        with self._lock:
            self._in_flight.add(future)
        future.add_done_callback(self._finished)

    def clear_persistent(self, prompt_id: str) -> list[str]:
        """Stop the persistent prompt ``prompt_id`` (every one when empty); the ids removed."""
        with self._lock:
            removed = [key for key in self._persistent if not prompt_id or key == prompt_id]
            for key in removed:
                del self._persistent[key]
        return removed

    def answer(self, prompt: Prompt, stamp_ns: int) -> tuple[Selection, Frame | None]:
        """Select on the requested frame (0: the newest), waiting while it is still being segmented; the frame
        (None when unavailable) gives the answer its header."""
        frame = self._board.wait_for(stamp_ns, PENDING_FRAME_TIMEOUT_S)
        if frame is None:
            reason = self._board.why_missing(stamp_ns)
            selection = Selection.failed(prompt.id, Status.FRAME_NOT_AVAILABLE, reason)
            self._problem(prompt, selection)
            return selection, None
        return self._finish(frame, prompt, self._rules(frame, prompt)), frame

    def _reserve(self, prompt: Prompt, reapply: bool,
                 ends_on_miss: bool) -> tuple[PersistentPrompt | None, Selection | None]:
        """Room for a persistent prompt (it replaces one of the same id), or the ``invalid`` answer refusing it."""
        settings = self._settings()
        try:  # an invalid prompt is answered once and never stored
            check_prompt(prompt, settings.selection)
        except InvalidPrompt as error:
            return None, Selection.failed(prompt.id, Status.INVALID, str(error))
        entry = PersistentPrompt(prompt, reapply=reapply, ends_on_miss=ends_on_miss)
        with self._lock:
            if prompt.id not in self._persistent and len(self._persistent) >= settings.max_persistent:
                return None, Selection.failed(prompt.id, Status.INVALID, (
                    f"{len(self._persistent)} persistent prompts are kept already (max_persistent_prompts "
                    f"{settings.max_persistent}): clear one first"))
            self._persistent[prompt.id] = entry
        return entry, None

    def _finished(self, future: Future) -> None:
        with self._lock:
            self._in_flight.discard(future)
        if not future.cancelled() and future.exception() is not None:
            self._on_error("prompt failed", future.exception())

    def _answer_and_send(self, prompt: Prompt, stamp_ns: int, header: Any, entry: PersistentPrompt | None) -> None:
        selection, frame = self.answer(prompt, stamp_ns)
        if entry is not None:
            selection = self._begin(entry, selection, frame)
        self._sink.answer(frame, selection, prompt, header)

    def _begin(self, entry: PersistentPrompt, selection: Selection, frame: Frame | None) -> Selection:
        """A persistent prompt's first answer decides what it follows; only then does the worker answer it on new
        frames (before, a frame in between would have run its rules again on another frame: a different object
        than the user was told, and CLIP twice)."""
        followed = None
        if not entry.reapply and frame is not None and frame.track_ids is not None:
            followed = FollowedPrompt.start(selection, frame.track_ids, frame.track_epoch)
            if followed is not None:
                selection = followed.tagged(selection)
        with self._lock:
            if self._persistent.get(entry.prompt.id) is entry:  # not cleared or replaced meanwhile
                entry.followed, entry.ready = followed, True
        self._end_if_missed(entry, selection)
        return selection

    def _end_if_missed(self, entry: PersistentPrompt, selection: Selection) -> None:
        """A click that selects nothing (or no longer anything) stops following."""
        if entry.ends_on_miss and selection.status not in (Status.OK, Status.LOST):
            with self._lock:
                if self._persistent.get(entry.prompt.id) is entry:
                    del self._persistent[entry.prompt.id]

    # ------------------------------------------------------------------ frames in

    def on_frame(self, frame: Frame, tracker: InstanceTracker | None) -> tuple[list[Selection], list[Prompt]]:
        """The persistent prompts' answers on a new frame (the worker's thread; ``tracker`` gave its ids)."""
        with self._lock:
            entries = [entry for entry in self._persistent.values() if entry.ready]
        answers = [self._answer_persistent(frame, entry, tracker) for entry in entries]
        for entry, selection in zip(entries, answers, strict=True):
            self._end_if_missed(entry, selection)
        return answers, [entry.prompt for entry in entries]

    def on_rejected_frame(self, header: Any, reason: str) -> None:
        """A frame the persistent prompts waited for was rejected: each is told why, on that frame's header."""
        with self._lock:
            ids = [key for key, entry in self._persistent.items() if entry.ready]
        for prompt_id in ids:
            self._sink.selection(Selection.failed(prompt_id, Status.INVALID, reason), header)

    def _answer_persistent(self, frame: Frame, entry: PersistentPrompt, tracker: InstanceTracker | None) -> Selection:
        """The objects ``entry`` follows, or its pixels again (reapply, or tracking off)."""
        if entry.reapply or frame.track_ids is None or tracker is None:
            return self._finish(frame, entry.prompt, self._rules(frame, entry.prompt))
        selection, followed = follow_step(entry.followed, lambda: self._rules(frame, entry.prompt),
                                          frame.segmentation, frame.track_ids, tracker)
        with self._lock:
            if entry.followed is None:
                entry.followed = followed
        return self._finish(frame, entry.prompt, selection)

    # ------------------------------------------------------------------ the rules

    def _rules(self, frame: Frame, prompt: Prompt) -> Selection:
        """The prompt rules on ``frame`` (a failure of the code is an ``error`` answer, reported)."""
        try:
            return select(frame.segmentation, prompt, self._settings().selection, frame.image, self._clip)
        except Exception as error:  # a bug in one answer must not stop the node
            self._on_error(f"prompt {prompt.id!r}", error)
            return Selection.failed(prompt.id, Status.ERROR, f"selection failed: {error}")

    def _finish(self, frame: Frame, prompt: Prompt, selection: Selection) -> Selection:
        """An answer made ready to send: located in 3D with depth, bad prompts counted and logged."""
        if self._locate is not None:
            selection = self._locate(selection, frame)
        if selection.status in (Status.INVALID, Status.ERROR):
            self._problem(prompt, selection)
        return selection

    def _problem(self, prompt: Prompt, selection: Selection) -> None:
        self._on_problem(f"prompt {prompt.id!r} {selection.status.value}: {selection.reason}")

