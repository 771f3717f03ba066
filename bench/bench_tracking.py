"""Microbenchmark of instance tracking: ``python bench/bench_tracking.py``.

Times :meth:`fastsam_ros.tracking.tracker.InstanceTracker.update` (camera motion from the picture, association of
every instance, ids) and a followed prompt's answer (:meth:`FollowedPrompt.answer`, which upsamples the
followed object) on a camera panning 12 px per frame over 100 instances on a 640x480 frame with 640x480
network masks (``bench/bench_selection.py``'s synthetic frame, dense masks). ``run_real()`` times the same update
on what the node pays for: the engine's lazy masks (prototype logits, evaluated where read) of the stand-in
model at FastSAM's working point (``bench/many.py``'s ``MANY``: ~100 instances) on a camera panning over
``zidane.jpg``, right after each frame's inference and replayed. Both return the figures for ``make bench``.
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

from bench.bench_selection import synthetic_segmentation
from bench.machine import reference_ms
from bench.shared_data import add_model_and_images
from bench.stats import print_figures
from fastsam_ros.prompts.selection import select
from fastsam_ros.tracking.follow import follow_step
from fastsam_ros.tracking.tracker import InstanceTracker
from fastsam_ros.types import Prompt, Segmentation

PAN_PX = 12  # camera pan per frame
REAL_IMAGE = "zidane.jpg"


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


def panning(image: Path, count: int, shape: tuple[int, int] = (480, 640)) -> list[np.ndarray]:
    """``count`` frames of a camera panning ``PAN_PX`` per frame over ``image`` (resized to the frame's height and
    ``PAN_PX`` per frame wider)."""
    picture = cv2.imread(str(image))
    if picture is None:
        raise FileNotFoundError(f"cannot read {image}")
    height, width = shape
    wide = cv2.resize(picture, (width + PAN_PX * (count - 1), height), interpolation=cv2.INTER_AREA)
    return [np.ascontiguousarray(wide[:, i * PAN_PX : i * PAN_PX + width]) for i in range(count)]


def run_real(model: str, image: Path, count: int = 18, passes: int = 3,
             image_shape: tuple[int, int] = (480, 640)) -> dict[str, dict[str, float]]:
    """The tracker update on the engine's lazy masks (~100 instances) of :func:`panning` over ``image``, there and
    back:

    * ``update_inline``: each update right after the engine segmented its frame, as in the node (the network has
      just filled the caches; one pass);
    * ``update_real``: the same segmentations replayed ``passes`` times, each update after the previous one.

    Each ``{"p50_ms", "p95_ms", "n", "instances"}``; reading the grid caches nothing, so replays redo the work.
    """
    from bench.many import many_config
    from fastsam_ros.config import NodeConfig
    from fastsam_ros.segmentation.engine import FastSAMEngine

    pictures = panning(image, count, image_shape)
    engine = FastSAMEngine(many_config(NodeConfig(model=model).engine))
    tracker, frames, inline_ms = InstanceTracker(), [], []
    for picture in pictures + pictures[-2:0:-1]:
        segmentation = engine.segment(picture)
        started = time.perf_counter()
        tracker.update(segmentation, picture)
        inline_ms.append((time.perf_counter() - started) * 1e3)
        frames.append((segmentation, picture))
    tracker, replay_ms = InstanceTracker(), []
    for segmentation, picture in frames * passes:
        started = time.perf_counter()
        tracker.update(segmentation, picture)
        replay_ms.append((time.perf_counter() - started) * 1e3)
    instances = round(float(np.mean([len(s) for s, _ in frames])), 1)
    return {name: {"p50_ms": round(float(np.percentile(times[5:], 50)), 3),  # the first frames pay for lazy setup
                   "p95_ms": round(float(np.percentile(times[5:], 95)), 3), "n": len(times) - 5,
                   "instances": instances}
            for name, times in (("update_inline", inline_ms), ("update_real", replay_ms))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    add_model_and_images(parser)
    parser.add_argument("--no-real", action="store_true", help="skip the update on the model's lazy masks")
    args = parser.parse_args(argv)
    figures: dict[str, dict[str, float]] = run(args.instances, frames=args.frames)
    image = args.images / REAL_IMAGE
    if not args.no_real and Path(args.model).exists() and image.exists():
        figures.update(run_real(args.model, image))
    print_figures(f"tracking with {args.instances} instances on 640x480, camera panning {PAN_PX} px per frame",
                  figures, args.json)
    if "update_real" in figures and not args.json:
        print(f"  (update_real, update_inline: {Path(args.model).name} lazy masks, "
              f"{figures['update_real']['instances']:g} instances per frame on {REAL_IMAGE}; inline: right after "
              "the engine segmented the frame)")
    if not args.json:
        print(f"  (the machine's speed now: reference loop {reference_ms()} ms, bench/machine.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
