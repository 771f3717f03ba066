"""Where a frame's time goes at ~100 instances: ultralytics' own predict against our engine, under cProfile.

``python -m bench.profile_masks [--model M] [--image zidane.jpg] [--conf 0.01] [--runs 3]`` prints the functions
that take the most time per frame (tottime / runs) for ``ultralytics.FastSAM(model)(frame)`` and for
:meth:`FastSAMEngine.segment` on the same 640x480 camera frame.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys
from pathlib import Path

import cv2

from bench.pipeline import CAMERA_SHAPE, camera_frame

SHARED = Path(__file__).resolve().parents[2] / "shared"


def profile(call: object, runs: int, top: int) -> str:
    call()  # type: ignore[operator]  # warm up outside the profile
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(runs):
        call()  # type: ignore[operator]
    profiler.disable()
    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).sort_stats("tottime")
    rows = sorted(stats.stats.items(), key=lambda item: -item[1][2])[:top]
    lines = [f"{'ms/frame':>9}  function"]
    for (filename, line, name), (_, _, tottime, _, _) in rows:
        lines.append(f"{tottime * 1000 / runs:9.1f}  {name} ({Path(filename).name}:{line})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from ultralytics import FastSAM

    from fastsam_ros.engine import EngineConfig, FastSAMEngine

    parser = argparse.ArgumentParser(prog="python -m bench.profile_masks", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("FASTSAM_TEST_MODEL", str(SHARED / "models/yolov8n-seg.pt")))
    parser.add_argument("--image", type=Path, default=SHARED / "data/images/zidane.jpg")
    parser.add_argument("--conf", type=float, default=0.01)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--top", type=int, default=8)
    args = parser.parse_args(argv)
    frame = camera_frame(cv2.imread(str(args.image)), CAMERA_SHAPE)
    config = EngineConfig(model=args.model, conf=args.conf, max_det=100)
    raw = FastSAM(args.model)
    engine = FastSAMEngine(config)
    count = len(engine.segment(frame))
    settings = {"imgsz": config.imgsz, "conf": config.conf, "iou": config.iou, "max_det": config.max_det,
                "retina_masks": False, "verbose": False}
    print(f"{args.image.name} {frame.shape[1]}x{frame.shape[0]}, conf {args.conf:g}: {count} instances\n")
    print("ultralytics FastSAM(model)(frame):\n" + profile(lambda: raw(frame, **settings), args.runs, args.top))
    print("\nFastSAMEngine.segment(frame):\n" + profile(lambda: engine.segment(frame), args.runs, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main())
