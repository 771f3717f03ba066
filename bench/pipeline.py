"""Raw ultralytics, our engine and the node on the same frames, interleaved round by round.

Each round times, in a rotating order so that load noise from the rest of a shared machine hits all three
alike: ``raw_predict`` (``ultralytics.FastSAM(model)(frame)`` with the node's settings), ``engine``
(:meth:`FastSAMEngine.segment`), and ``node_e2e`` (frame published -> ``instances`` received by this process,
the node running in its own process). Then, on the node: ``cached_prompt`` (a click on that frame, answered
from the cache) and ``reinfer_prompt`` (a new frame and at once a click on it: the prompt waits for inference,
what FastSAM ROS packages that run the network per prompt pay).

Latencies end at the moment the client's subscription callback recorded the message (not when the waiting
thread woke up), and start just before ``publish``, with the message built beforehand.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.stats import summarize

CAMERA_SHAPE = (480, 640)  # (height, width): a common robot camera mode
FRAME_IMAGES = ("bus.jpg", "zidane.jpg", "dogs.jpg", "cat.jpg")
STAMP_BASE_NS = 1_750_000_000_000_000_000
STAMP_STEP_NS = 100_000_000
TIMEOUT_S = 60.0  # per answer; generous for a loaded 2-core machine
CLIENT_OUTPUTS = ("instances", "selection", "diagnostics")  # what a typical consumer subscribes to


def camera_frame(image: np.ndarray, shape: tuple[int, int] = CAMERA_SHAPE) -> np.ndarray:
    """``image`` as a camera of ``shape`` would see it: centre-cropped to its aspect ratio, then resized."""
    height, width = image.shape[:2]
    target_h, target_w = shape
    if width * target_h > height * target_w:  # too wide: crop the sides
        crop_w = round(height * target_w / target_h)
        x0 = (width - crop_w) // 2
        image = image[:, x0 : x0 + crop_w]
    else:  # too tall: crop top and bottom
        crop_h = round(width * target_h / target_w)
        y0 = (height - crop_h) // 2
        image = image[y0 : y0 + crop_h]
    return np.ascontiguousarray(cv2.resize(image, (target_w, target_h), interpolation=cv2.INTER_AREA))


def click_on(segmentation: Any) -> tuple[float, float] | None:
    """A pixel on the best-scoring instance (the middle of its mask pixels in row order), as a user would click."""
    if len(segmentation) == 0:
        return None
    mask = segmentation.full_mask(int(np.argmax(segmentation.scores)))
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return None
    k = len(xs) // 2
    return float(xs[k]) + 0.5, float(ys[k]) + 0.5


@dataclass(frozen=True)
class BenchFrame:
    name: str
    pixels: np.ndarray  # HxWx3 uint8 BGR
    click: tuple[float, float] | None  # a point on an instance, found by the engine beforehand


def load_frames(images: Path, names: Sequence[str], shape: tuple[int, int] | None) -> list[tuple[str, np.ndarray]]:
    """Sample images, as camera frames of ``shape`` (None: native size); missing files are skipped."""
    frames = []
    for name in names:
        image = cv2.imread(str(images / name))
        if image is not None:
            frames.append((name, camera_frame(image, shape) if shape else image))
    if not frames:
        raise SystemExit(f"none of {', '.join(names)} found in {images}")
    return frames


class RawPredictor:
    """The floor: ``ultralytics.FastSAM(model)(frame)`` with exactly the settings our engine passes."""

    def __init__(self, model: str, engine_config: Any) -> None:
        from ultralytics import FastSAM

        self._model = FastSAM(model)
        c = engine_config
        self._kwargs = {"device": c.device, "imgsz": c.imgsz, "conf": c.conf, "iou": c.iou, "max_det": c.max_det,
                        "retina_masks": False, "verbose": False}

    def __call__(self, frame: np.ndarray) -> Any:
        return self._model(frame, **self._kwargs)


class Driver:
    """A :class:`FastSAMClient` talking to a :class:`NodeProcess`, timing exchanges by recorded arrival."""

    def __init__(self, client: Any, node: Any) -> None:
        self.client = client
        self.node = node
        self._stamps = itertools.count()
        keep_only_outputs(client, CLIENT_OUTPUTS)

    def next_stamp(self) -> int:
        """Stamps 100 ms apart, like a 10 Hz camera: further apart than the node's stamp_tolerance (5 ms), so a
        prompt for a frame still on its way waits for it instead of being answered on the one before."""
        return STAMP_BASE_NS + next(self._stamps) * STAMP_STEP_NS

    def arrival(self, name: str, msg: Any) -> float:
        """When the client's callback recorded ``msg`` (monotonic seconds)."""
        for arrived, recorded in list(self.client.received[name]):
            if recorded is msg:
                return arrived
        raise LookupError(f"{name} message was not recorded")

    def exchange(self, publish: Callable[[], None], name: str, predicate: Callable[[Any], bool]) -> tuple[float, Any]:
        """``publish()``, then wait for the next ``name`` message matching ``predicate``: (ms, message)."""
        before = self.client.count(name, predicate)
        started = time.monotonic()
        publish()
        msg = self.client.wait_for_nth(name, before, predicate, TIMEOUT_S)
        if msg is None:
            raise RuntimeError(f"no {name} within {TIMEOUT_S:.0f} s; node log:\n{self.node.log()[-3000:]}")
        return (self.arrival(name, msg) - started) * 1000.0, msg

    def frame(self, pixels: np.ndarray) -> tuple[float, Any, int]:
        """Publish a frame and wait for its ``instances``: (ms, Instances, stamp)."""
        from harness.node_process import stamp_of

        stamp = self.next_stamp()
        msg = self.client.image_msg(pixels, stamp)
        ms, instances = self.exchange(lambda: self.client.image_pub.publish(msg), "instances",
                                      lambda m: stamp_of(m) == stamp)
        return ms, instances, stamp

    def click(self, prompt_id: str, stamp: int, point: tuple[float, float],
              before_publish: Callable[[], None] = lambda: None) -> tuple[float, Any]:
        """``before_publish()`` (untimed), then a click on frame ``stamp``: (ms until its selection, Selection)."""
        from harness.node_process import stamp_of

        msg = self.client.prompt(prompt_id, stamp, points=[point], labels=[1])
        before_publish()
        return self.exchange(lambda: self.client.prompt_pub.publish(msg), "selection",
                             lambda m: m.prompt_id == prompt_id and stamp_of(m) == stamp)


def keep_only_outputs(client: Any, names: Sequence[str]) -> None:
    """Unsubscribe the client from the node outputs not in ``names``.

    A subscriber on ``debug_image`` makes the node draw an overlay per frame and on ``mask`` ship a full
    mono8 frame per answer; a consumer of instances and selections subscribes to neither.
    """
    keep = {f"{client.prefix}/{name}" if name != "diagnostics" else "/diagnostics" for name in names}
    for subscription in list(client.node.subscriptions):
        if subscription.topic_name not in keep:
            client.node.destroy_subscription(subscription)


def plan_frames(engine: Any, frames: list[tuple[str, np.ndarray]]) -> list[BenchFrame]:
    """Warm the engine on every frame and find where to click on each."""
    return [BenchFrame(name, pixels, click_on(engine.segment(pixels))) for name, pixels in frames]


def _rotation(round_index: int) -> tuple[str, ...]:
    order = ("raw", "engine", "node")
    shift = round_index % len(order)
    return order[shift:] + order[:shift]


def run_rounds(raw: RawPredictor, engine: Any, driver: Driver, frames: list[BenchFrame], rounds: int,
               prompts: bool = True) -> dict[str, Any]:
    """``rounds`` interleaved rounds over ``frames``; figures as ``{p50, p95, n}`` plus per-frame details.

    ``node_overhead_ms``: per round, the node's time minus the engine's on the same frame."""
    times: dict[str, list[float]] = {key: [] for key in ("raw_predict_ms", "engine_ms", "node_e2e_ms",
                                                         "node_overhead_ms", "cached_prompt_ms", "reinfer_prompt_ms")}
    statuses: dict[str, dict[str, int]] = {"cached_prompt": {}, "reinfer_prompt": {}}
    instances, node_inference = [], []

    def record(kind: str, ms: float, answer: Any) -> None:
        statuses[kind][answer.status] = statuses[kind].get(answer.status, 0) + 1
        if answer.status == "ok":  # other answers skip the work being measured
            times[f"{kind}_ms"].append(ms)

    for index in range(rounds):
        frame = frames[index % len(frames)]
        stamp = None
        for step in _rotation(index):
            if step == "raw":
                started = time.perf_counter()
                raw(frame.pixels)
                times["raw_predict_ms"].append((time.perf_counter() - started) * 1000.0)
            elif step == "engine":
                started = time.perf_counter()
                engine.segment(frame.pixels)
                times["engine_ms"].append((time.perf_counter() - started) * 1000.0)
            else:
                ms, msg, stamp = driver.frame(frame.pixels)
                times["node_e2e_ms"].append(ms)
                instances.append(len(msg.instances))
                node_inference.append(msg.inference_ms)
        # The node's own cost: its frame minus the engine's on the same frame in the same round (paired, so the
        # frames' different instance counts and the machine's drift cancel; a difference of two p50s did not).
        times["node_overhead_ms"].append(times["node_e2e_ms"][-1] - times["engine_ms"][-1])
        if not prompts or frame.click is None:
            continue
        record("cached_prompt", *driver.click("cached", stamp, frame.click))
        # Re-inference: a new frame, and at once a click on it; the node answers once that frame is segmented.
        fresh = driver.next_stamp()
        image = driver.client.image_msg(frame.pixels, fresh)
        record("reinfer_prompt", *driver.click("reinfer", fresh, frame.click,
                                               before_publish=lambda m=image: driver.client.image_pub.publish(m)))
        from harness.node_process import stamp_of

        driver.client.wait_for("instances", lambda m, s=fresh: stamp_of(m) == s, TIMEOUT_S)  # node idle again
    figures: dict[str, Any] = {key: summarize(values) for key, values in times.items() if values}
    figures["details"] = {
        "frames": [f.name for f in frames], "image_size": f"{frames[0].pixels.shape[1]}x{frames[0].pixels.shape[0]}",
        "rounds": rounds, "instances_per_frame": summarize(instances, 1),
        "node_inference_ms": summarize(node_inference), "prompt_statuses": statuses if prompts else None,
    }
    return figures
