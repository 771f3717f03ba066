"""Where the node's time after the network goes at ~100 instances: ``python -m bench.frame_stages``.

Runs what the node's worker runs per frame, in process and in the node's order, on a camera panning over
``zidane.jpg`` with the stand-in at FastSAM's working point (``bench/many.py``: ~100 instances per frame), and
times each stage right after the frame's inference, as the node meets it:

* ``segment``: the engine (network, NMS, lazy masks);
* ``track``: :meth:`InstanceTracker.update`;
* ``instances_msg``: the whole ``Instances`` message with masks (:func:`fastsam_ros.wire.instances_cdr`).

On a second segmentation of the same frame it splits ``instances_msg`` into ``make_pixels`` (the compiled pass: every
mask's pixels over its box, its own box and run lengths, :meth:`InstanceMasks.make`) and ``encoded`` (those boxes and
runs read as the message's arrays; the rest of ``instances_msg`` is writing the bytes), and times ``deserialize``:
what a Python consumer pays to turn the bytes into message objects (rclpy; skipped without it).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_tracking import REAL_IMAGE, panning
from bench.machine import reference_ms
from bench.shared_data import add_model_and_images
from bench.stats import print_figures, summarize

WARMUP = 4  # first frames: lazy set-up of the engine, the tracker and the kernels


def run(model: str, image: Path, frames: int = 24) -> dict[str, Any]:
    """``{stage: {p50, p95, n}}`` over ``frames`` frames (the first ``WARMUP`` not counted), and the instance
    count."""
    from bench.many import many_config
    from fastsam_ros.config import NodeConfig
    from fastsam_ros.engine import FastSAMEngine
    from fastsam_ros.tracking import InstanceTracker
    from fastsam_ros.wire import instances_cdr

    deserialize = _deserializer()
    engine = FastSAMEngine(many_config(NodeConfig(model=model).engine))
    tracker = InstanceTracker()
    times: dict[str, list[float]] = {}
    counts = []

    def timed(stage: str, call: Any) -> Any:
        started = time.perf_counter()
        result = call()
        times.setdefault(stage, []).append((time.perf_counter() - started) * 1000.0)
        return result

    for picture in panning(image, frames):
        segmentation = timed("segment", lambda p=picture: engine.segment(p))
        ids = timed("track", lambda s=segmentation, p=picture: tracker.update(s, p))
        data = timed("instances_msg", lambda s=segmentation, i=ids: instances_cdr(s, 0, 0, "camera", True, i))
        # The same message again, stage by stage, on a fresh segmentation of the frame.
        again = engine.segment(picture)
        timed("make_pixels", again.masks.make)
        timed("encoded", again.encoded_masks)  # pixels made: their boxes and run lengths, as the message reads them
        if deserialize is not None:
            timed("deserialize", lambda d=data: deserialize(d))
        counts.append(len(segmentation))
    return {**{stage: summarize(values[WARMUP:]) for stage, values in times.items()},
            "instances": summarize(counts, 1)}


def _deserializer() -> Any:
    try:
        from rclpy.serialization import deserialize_message

        from fastsam_ros.msg import Instances
    except ImportError:
        return None
    return lambda data: deserialize_message(data, Instances)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_and_images(parser)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    figures = run(args.model, args.images / REAL_IMAGE, args.frames)
    count = figures.pop("instances")
    print_figures(f"the node's stages per frame, {count['p50']:g} instances, 640x480 panning over {REAL_IMAGE}",
                  {stage: {"p50_ms": v["p50"], "p95_ms": v["p95"], "n": v["n"]} for stage, v in figures.items()},
                  args.json)
    if not args.json:
        print(f"  (the machine's speed now: reference loop {reference_ms()} ms, bench/machine.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
