"""FastSAM's working point: ~100 instances per frame, and the network time of a FastSAM-s-shaped model.

The stand-in (yolov8n-seg) finds ~5 instances per camera frame at the node's ``conf`` 0.4; FastSAM segments
everything (50-100+ masks). ``MANY`` (``conf`` 0.003, ``max_det`` 100) makes the stand-in return 100 instances
on each of ``MANY_IMAGES`` as 640x480 camera frames, so every cost that grows with the count is measured where
FastSAM users are:

* :func:`engine_scaling`: our engine at ~5 and at ~100 instances on the same frame, interleaved;
* :func:`node_side`: what the node does per frame and per prompt beyond the engine, in process, each round on a
  fresh segmentation (nothing cached): the ``Instances`` message with every mask (its masks made and encoded,
  and the serialized bytes the node publishes), the instance label image (``instances/labels``, on a
  segmentation of its own, so it pays for making the masks too), the debug overlay, and a cached click;
* :func:`network_ms`: the YOLOv8s-seg architecture with one class (FastSAM-s's network, random weights, built
  from ultralytics' ``yolov8s-seg.yaml``) at imgsz 640 and 1024 on a 4:3 camera frame, so the CPU figures
  are the ones a FastSAM-s user sees.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from bench.stats import summarize

MANY = {"conf": 0.003, "max_det": 100}
SCALING = {"conf": 0.01, "max_det": 100}  # the issue's own 5-vs-100 setting: 100 instances on zidane.jpg
MANY_IMAGES = ("zidane.jpg", "bus.jpg", "sa_8776.jpg", "sa_561.jpg", "sa_192.jpg")  # 100 instances each at MANY
FASTSAM_S_YAML = "yolov8s-seg.yaml"


def many_config(engine_config: Any, settings: dict[str, Any] = MANY) -> Any:
    """``engine_config`` at FastSAM's working point (about 100 instances per frame with the stand-in)."""
    return replace(engine_config, **settings)


def engine_scaling(few: Any, many: Any, frame: np.ndarray, rounds: int) -> dict[str, Any]:
    """The engine at few and at many instances on the same frame, alternating which runs first."""
    times: dict[str, list[float]] = {"few": [], "many": []}
    counts: dict[str, list[int]] = {"few": [], "many": []}
    engines = {"few": few, "many": many}
    for index in range(rounds):
        for key in ("few", "many") if index % 2 == 0 else ("many", "few"):
            started = time.perf_counter()
            segmentation = engines[key].segment(frame)
            times[key].append((time.perf_counter() - started) * 1000.0)
            counts[key].append(len(segmentation))
    few_ms, many_ms = summarize(times["few"]), summarize(times["many"])
    return {"engine_few_ms": few_ms, "engine_many_ms": many_ms,
            "instances": {"few": summarize(counts["few"], 1), "many": summarize(counts["many"], 1)},
            "ratio": round(many_ms["p50"] / few_ms["p50"], 3) if few_ms["p50"] else None}


def node_side(engine: Any, frames: Sequence[Any], rounds: int) -> dict[str, Any]:
    """Per-frame node work at many instances, each round on a fresh segmentation (cold caches, as in the node)."""
    from fastsam_ros.overlay import draw_overlay
    from fastsam_ros.prompts.selection import select
    from fastsam_ros.ros.wire import instances_cdr
    from fastsam_ros.segmentation.labels import label_image
    from fastsam_ros.types import Prompt

    times: dict[str, list[float]] = {"instances_msg_ms": [], "labels_ms": [], "overlay_ms": [], "cached_click_ms": []}
    counts = []
    for index in range(rounds):
        frame = frames[index % len(frames)]
        segmentation = engine.segment(frame.pixels)
        started = time.perf_counter()
        label_image(segmentation)
        times["labels_ms"].append((time.perf_counter() - started) * 1000.0)
        segmentation = engine.segment(frame.pixels)
        counts.append(len(segmentation))
        started = time.perf_counter()
        instances_cdr(segmentation, 0, 0, "camera", with_masks=True)
        times["instances_msg_ms"].append((time.perf_counter() - started) * 1000.0)
        if frame.click is not None:
            prompt = Prompt(id="click", points=(frame.click,), labels=(1,))
            started = time.perf_counter()
            select(segmentation, prompt)
            times["cached_click_ms"].append((time.perf_counter() - started) * 1000.0)
        started = time.perf_counter()
        draw_overlay(frame.pixels, segmentation)
        times["overlay_ms"].append((time.perf_counter() - started) * 1000.0)
    return {**{key: summarize(values) for key, values in times.items()}, "instances": summarize(counts, 1)}


def network_ms(imgsz: int, rounds: int, device: str = "cpu", yaml: str = FASTSAM_S_YAML) -> dict[str, Any]:
    """Forward time of a one-class ``yaml`` network (random weights) on a 4:3 frame letterboxed to ``imgsz``."""
    import torch
    from ultralytics.nn.tasks import SegmentationModel

    model = SegmentationModel(yaml, nc=1, verbose=False).to(device).eval()
    shape = (1, 3, imgsz * 3 // 4, imgsz)  # a 640x480 camera frame letterboxed with rect inference (stride 32)
    batch = torch.rand(shape, device=device)
    times = []
    with torch.inference_mode():
        model(batch)  # first call pays for lazy setup
        for _ in range(rounds):
            started = time.perf_counter()
            model(batch)
            if device != "cpu":
                torch.cuda.synchronize()
            times.append((time.perf_counter() - started) * 1000.0)
    parameters = sum(p.numel() for p in model.parameters())
    return {**summarize(times), "input": f"{shape[3]}x{shape[2]}", "parameters_m": round(parameters / 1e6, 2)}
