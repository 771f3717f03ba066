"""Microbenchmark of prompt-guided selection: ``python bench/bench_selection.py``.

Times :func:`fastsam_ros.prompts.selection.select` (choosing the object *and* upsampling it to image resolution)
for point and box prompts on a synthetic frame: 100 instances on a 640x480 image with 640x480 network
masks, as ultralytics gives for that frame at ``imgsz=640``. ``run()`` returns the figures as a dict for
other tools (``make bench``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.stats import print_figures
from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.masks import MaskGeometry
from fastsam_ros.types import Prompt, Segmentation


def synthetic_segmentation(
    n_instances: int = 100, image_shape: tuple[int, int] = (480, 640), seed: int = 0,
    large: int = 5, large_scale: float = 0.45, min_axis: int = 3,
) -> Segmentation:
    """``n_instances`` random ellipses of many sizes; the first ``large`` nearly frame-sized, like FastSAM's
    background masks. ``min_axis`` bounds the smallest semi-axis in pixels."""
    rng = np.random.default_rng(seed)
    height, width = image_shape
    masks = np.zeros((n_instances, height, width), dtype=np.uint8)
    for i in range(n_instances):
        scale = large_scale if i < large else rng.uniform(0.02, 0.2)
        axes = (int(max(min_axis, width * scale * rng.uniform(0.5, 1.0))),
                int(max(min_axis, height * scale * rng.uniform(0.5, 1.0))))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.ellipse(masks[i], centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    masks = masks.astype(bool)
    boxes = np.zeros((n_instances, 4), dtype=np.float32)
    for i, mask in enumerate(masks):
        ys, xs = np.nonzero(mask)
        boxes[i] = (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    return Segmentation(
        masks=masks, boxes=boxes, scores=rng.uniform(0.4, 1.0, n_instances).astype(np.float32),
        geometry=MaskGeometry(image_shape, image_shape),
    )


def _prompts(segmentation: Segmentation, count: int, seed: int) -> tuple[list[Prompt], list[Prompt]]:
    """Point prompts on random instance pixels and box prompts around random instances (jittered)."""
    rng = np.random.default_rng(seed + 1)
    height, width = segmentation.image_shape
    points, boxes = [], []
    for _ in range(count):
        i = int(rng.integers(len(segmentation)))
        ys, xs = np.nonzero(segmentation.full_mask(i))
        k = int(rng.integers(len(xs)))
        points.append(Prompt(points=((xs[k] + 0.5, ys[k] + 0.5),), labels=(1,)))
        x1, y1, x2, y2 = segmentation.boxes[i] + rng.uniform(-4, 4, 4)
        box = (max(float(x1), 0.0), max(float(y1), 0.0), min(float(x2), width), min(float(y2), height))
        boxes.append(Prompt(boxes=(box,)))
    return points, boxes


def _time_ms(segmentation: Segmentation, prompts: list[Prompt], warmup: int = 5) -> np.ndarray:
    for prompt in prompts[:warmup]:
        select(segmentation, prompt)
    times = []
    for prompt in prompts:
        start = time.perf_counter()
        select(segmentation, prompt)
        times.append((time.perf_counter() - start) * 1e3)
    return np.asarray(times)


def run(
    n_instances: int = 100, image_shape: tuple[int, int] = (480, 640), repeats: int = 200, seed: int = 0
) -> dict[str, dict[str, float]]:
    """``{"point": {"p50_ms", "p95_ms"}, "box": {...}}`` over ``repeats`` prompts of each kind."""
    segmentation = synthetic_segmentation(n_instances, image_shape, seed)
    point_prompts, box_prompts = _prompts(segmentation, repeats, seed)
    figures = {}
    for kind, prompts in (("point", point_prompts), ("box", box_prompts)):
        times = _time_ms(segmentation, prompts)
        figures[kind] = {"p50_ms": round(float(np.percentile(times, 50)), 3),
                         "p95_ms": round(float(np.percentile(times, 95)), 3)}
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.instances, (args.height, args.width), args.repeats)
    print_figures(f"select() with {args.instances} instances on {args.width}x{args.height}, {args.repeats} "
                  "prompts each", figures, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
