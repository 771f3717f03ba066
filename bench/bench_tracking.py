"""Microbenchmark of instance tracking: ``python bench/bench_tracking.py``.

Times :meth:`fastsam_ros.tracking.InstanceTracker.update` (camera motion from the picture, association of
every instance, ids) and a followed prompt's answer (:meth:`FollowedPrompt.answer`, which upsamples the
followed object) on a camera panning 12 px per frame over 100 instances on a 640x480 frame with 640x480
network masks (``bench/bench_selection.py``'s synthetic frame). ``run()`` returns the figures for
``make bench``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_selection import synthetic_segmentation
from fastsam_ros.selection import select
from fastsam_ros.tracking import InstanceTracker, follow_step
from fastsam_ros.types import Prompt, Segmentation

PAN_PX = 12  # camera pan per frame


def _panned(segmentation: Segmentation, world: np.ndarray, shift: int) -> tuple[Segmentation, np.ndarray]:
    """The frame with the camera moved ``shift`` pixels right: everything moves left (wrapping around)."""
    masks = np.roll(segmentation.masks.dense(), -shift, axis=2)
    boxes = segmentation.boxes - np.array([shift, 0, shift, 0], dtype=np.float32)
    moved = Segmentation(masks, boxes, segmentation.scores, segmentation.geometry)
    return moved, np.ascontiguousarray(np.roll(world, -shift, axis=1))


def run(n_instances: int = 100, image_shape: tuple[int, int] = (480, 640), frames: int = 100,
        seed: int = 0) -> dict[str, dict[str, float]]:
    """``{"update": {"p50_ms", "p95_ms"}, "follow": {...}}`` over ``frames`` frames."""
    base = synthetic_segmentation(n_instances, image_shape, seed)
    world = np.random.default_rng(seed).integers(0, 255, (*image_shape, 3), dtype=np.uint8)
    tracker, followed = InstanceTracker(), None
    prompt = Prompt(id="bench", points=((image_shape[1] / 2, image_shape[0] / 2),))
    update_ms, follow_ms = [], []
    for index in range(frames + 5):
        segmentation, image = _panned(base, world, index * PAN_PX)
        start = time.perf_counter()
        ids = tracker.update(segmentation, image)
        middle = time.perf_counter()
        _selection, followed = follow_step(followed, lambda s=segmentation: select(s, prompt), segmentation, ids,
                                           tracker)
        end = time.perf_counter()
        if index >= 5 and followed is not None:  # the first frames pay for lazy setup; then only following
            update_ms.append((middle - start) * 1e3)
            follow_ms.append((end - middle) * 1e3)
    return {name: {"p50_ms": round(float(np.percentile(times, 50)), 3),
                   "p95_ms": round(float(np.percentile(times, 95)), 3), "n": len(times)}
            for name, times in (("update", update_ms), ("follow", follow_ms))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.instances, frames=args.frames)
    if args.json:
        print(json.dumps(figures))
        return 0
    print(f"tracking with {args.instances} instances on 640x480, camera panning {PAN_PX} px per frame")
    for name, values in figures.items():
        print(f"  {name:<7} p50 {values['p50_ms']:7.3f} ms   p95 {values['p95_ms']:7.3f} ms   n {values['n']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
