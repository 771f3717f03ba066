"""SharedEngine (ROS-free): frames that wait together run as one batch, a failing frame fails alone, no camera
starves."""

from __future__ import annotations

import threading
import time
from collections import Counter

import numpy as np
import pytest

from fastsam_ros.segmentation.sharing import SharedEngine


class RecordingEngine:
    """Returns each image's first pixel as its "segmentation"; records the calls; a 255 pixel fails."""

    def __init__(self, batches: bool, seconds: float = 0.0) -> None:
        self.calls: list[tuple[str, int]] = []
        self.seconds = seconds
        self.started = threading.Event()
        self.release = threading.Event()
        self.release.set()
        if batches:
            self.segment_batch = self._batch

    def segment(self, image: np.ndarray) -> int:
        self.calls.append(("one", 1))
        return self._value(image)

    def _batch(self, images: list[np.ndarray]) -> list[int]:
        self.calls.append(("batch", len(images)))
        return [self._value(image) for image in images]

    def _value(self, image: np.ndarray) -> int:
        self.started.set()
        self.release.wait()
        time.sleep(self.seconds)
        if image[0, 0, 0] == 255:
            raise RuntimeError("CUDA out of memory")
        return int(image[0, 0, 0])


def frame(value: int) -> np.ndarray:
    return np.full((2, 2, 3), value, dtype=np.uint8)


def ask_while_busy(engine: RecordingEngine, values: list[int]) -> dict[int, object]:
    """Hold the engine on a first frame, let ``values`` queue up from their own threads, then release it."""
    shared, results = SharedEngine(engine), {}
    engine.release.clear()

    def ask(value: int) -> None:
        try:
            results[value] = shared.segment(frame(value))
        except RuntimeError as error:
            results[value] = error

    first = threading.Thread(target=ask, args=(1,))
    first.start()
    assert engine.started.wait(5)
    others = [threading.Thread(target=ask, args=(value,)) for value in values]
    for thread in others:
        thread.start()
    time.sleep(0.2)  # all queued behind the first frame
    engine.release.set()
    for thread in [first, *others]:
        thread.join(5)
    return results


def test_frames_that_wait_together_run_as_one_batch() -> None:
    engine = RecordingEngine(batches=True)
    results = ask_while_busy(engine, [2, 3, 4])
    assert results == {1: 1, 2: 2, 3: 3, 4: 4}
    assert engine.calls == [("one", 1), ("batch", 3)]


def test_without_batches_they_run_one_after_another() -> None:
    engine = RecordingEngine(batches=False)
    assert ask_while_busy(engine, [2, 3]) == {1: 1, 2: 2, 3: 3}
    assert engine.calls == [("one", 1)] * 3


def test_a_failing_frame_fails_alone_even_inside_a_batch() -> None:
    engine = RecordingEngine(batches=True)
    results = ask_while_busy(engine, [2, 255, 3])
    assert results[2] == 2 and results[3] == 3
    assert isinstance(results[255], RuntimeError) and "out of memory" in str(results[255])
    assert engine.calls[:2] == [("one", 1), ("batch", 3)]  # the batch failed: then frame by frame


@pytest.mark.parametrize("batches", [True, False])
def test_cameras_asking_at_the_same_rate_share_evenly(batches: bool) -> None:
    engine, served = RecordingEngine(batches=batches, seconds=0.002), Counter()
    shared, stop = SharedEngine(engine), threading.Event()

    def camera(value: int) -> None:
        while not stop.is_set():
            assert shared.segment(frame(value)) == value
            served[value] += 1

    threads = [threading.Thread(target=camera, args=(value,)) for value in (1, 2, 3)]
    for thread in threads:
        thread.start()
    time.sleep(1.0)
    stop.set()
    for thread in threads:
        thread.join(5)
    fair = sum(served.values()) / 3
    assert all(abs(count - fair) <= 0.1 * fair + 1 for count in served.values()), served
    if batches:
        assert shared.frames > shared.batches, "waiting frames were batched"
