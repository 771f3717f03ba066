"""One engine for several cameras: each camera's thread asks for its frame, and frames that wait together go
through the network together.

Each camera's thread asks for one frame at a time (its newest) and waits for it. Whenever the network is free, the
frames waiting go next: all of them as one network call where the engine takes a batch
(:meth:`FastSAMEngine.segment_batch`), else the one of the camera served longest ago. Either way a camera that asks
again the moment its frame is done, while the others of its turn still publish theirs, cannot take two turns to
their one: in batches it waits for them, at most as long as a turn takes (a batch of one costs about as much as a
full one). Otherwise no frame waits for company. A frame that makes the engine fail fails alone, even in a batch.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from fastsam_ros.types import Segmentation


@dataclass(eq=False)  # compared by identity (an image has no truth value)
class _Request:
    image: np.ndarray
    camera: int  # the asking thread: one per camera
    result: Segmentation | None = None
    error: BaseException | None = None
    done: bool = False


class SharedEngine:
    """``segment`` from any number of threads on one engine (the engine itself takes one caller at a time)."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self._changed = threading.Condition()
        self._queue: list[_Request] = []
        self._busy = False
        self._batches = callable(getattr(engine, "segment_batch", None))
        self._last_turn: dict[int, int] = {}  # camera -> the turn it was last served in
        self._turn_cameras: set[int] = set()  # the cameras of the last turn, and when and how long it ran
        self._turn_ended = 0.0
        self._turn_s = 0.0
        self.batches = 0  # turns taken (the bench reports frames per turn)
        self.frames = 0

    @property
    def backend(self) -> Any:
        return self.engine.backend

    def segment(self, image: np.ndarray) -> Segmentation:
        """Every instance in ``image``: run in the next batch, by whichever waiting thread finds the engine free."""
        request = _Request(image, threading.get_ident())
        with self._changed:
            self._queue.append(request)
            self._changed.notify_all()  # a held turn may now be complete
        while True:
            with self._changed:
                while not request.done and (self._busy or (hold := self._hold_s()) > 0):
                    self._changed.wait(None if self._busy else hold)
                if request.done:
                    break
                batch = self._next_turn()  # the engine is free: this thread runs the next turn, whoever's it is
            self._run(batch)
        if request.error is not None:
            raise request.error
        assert request.result is not None
        return request.result

    def _hold_s(self) -> float:
        """How long the next batch still waits for the cameras of the last turn that have not asked again (0: go),
        when every camera waiting was in that turn (the lock is held)."""
        waiting = {request.camera for request in self._queue}
        if not self._batches or not waiting or waiting - self._turn_cameras or self._turn_cameras <= waiting:
            return 0.0
        return max(0.0, self._turn_ended + self._turn_s - time.monotonic())

    def _next_turn(self) -> list[_Request]:
        """The frames of the next turn, taken off the queue (the lock is held): every waiting frame where the engine
        takes a batch, else the one whose camera was served longest ago."""
        waiting = sorted(self._queue, key=lambda request: self._last_turn.get(request.camera, -1))  # stable
        turn = waiting if self._batches else waiting[:1]
        self._queue = [request for request in self._queue if request not in turn]
        self._busy = True
        for request in turn:
            self._last_turn[request.camera] = self.batches
        self._turn_cameras = {request.camera for request in turn}
        return turn

    def _run(self, batch: list[_Request]) -> None:
        outcomes: list[Segmentation | BaseException] = []
        started = time.monotonic()
        try:
            outcomes = self._segment_all([request.image for request in batch])
        finally:  # every waiting thread is woken, whatever happened here
            with self._changed:
                self._busy = False
                self._turn_ended = time.monotonic()
                self._turn_s = self._turn_ended - started
                self.batches += 1
                self.frames += len(batch)
                outcomes += [RuntimeError("the shared engine stopped before segmenting this frame")] * (
                    len(batch) - len(outcomes))
                for request, outcome in zip(batch, outcomes, strict=True):
                    if isinstance(outcome, BaseException):
                        request.error = outcome
                    else:
                        request.result = outcome
                    request.done = True
                self._changed.notify_all()

    def _segment_all(self, images: list[np.ndarray]) -> list[Segmentation | BaseException]:
        """One network call for all ``images`` where the engine can; a failed batch is retried frame by frame, so
        only the frame that fails gets the error."""
        batch = getattr(self.engine, "segment_batch", None)
        if batch is not None and len(images) > 1:
            try:
                return list(batch(images))
            except Exception:  # which frame failed is found below, frame by frame
                pass
        outcomes: list[Segmentation | BaseException] = []
        for image in images:
            try:
                outcomes.append(self.engine.segment(image))
            except Exception as error:  # handed to the thread that asked for this frame
                outcomes.append(error)
        return outcomes
