"""Where ``node_e2e`` goes above the engine at ~100 instances, in the node itself: ``python -m bench.node_stages``.

Runs ``make bench``'s 100-instance exchange (the stand-in at FastSAM's working point, ``bench/many.py``: a frame
published, its ``instances`` received by this process, interleaved round by round with the engine alone in this
process) against the node started through :mod:`bench.node_probe`, which times each stage of the node's worker.
Both processes read the machine's monotonic clock, so each frame splits into:

* ``to_callback``: publish -> the node's image callback (serialization, transport, the executor taking it);
* ``handoff``: callback -> the inference thread starting the frame;
* the worker's stages (``decode``, ``segment``, ``track``, ``make_masks``, ``instances_msg`` without the masks it
  made, ``publish``) and ``other`` (the rest of the frame's processing);
* ``to_client``: the worker done -> this process's subscription callback recorded the message (transport, the
  client's deserialization of 100 masks);

and reports ``node_e2e``, ``engine`` and the excess as ``make bench`` computes it (p50 of ``node_e2e`` minus 1.05x
p50 of ``engine``), with the node's minor page faults per frame.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import many, pipeline
from bench.machine import reference_ms
from bench.shared_data import add_model_and_images
from bench.stats import print_figures, summarize

STAGES = ("decode", "segment", "track", "make_masks", "instances_msg", "publish")


def split(record: dict[str, Any], published: float, arrived: float) -> dict[str, float]:
    """One frame's milliseconds by part, from the probe's ``record`` and this process's publish and arrival."""
    parts = {stage: record.get(stage, 0.0) for stage in STAGES}
    parts["instances_msg"] -= parts["make_masks"]  # the message makes the masks: count them once
    busy = (record["end"] - record["start"]) * 1000.0
    parts["other"] = busy - sum(parts.values())
    parts["to_callback"] = (record["received"] - published) * 1000.0
    parts["handoff"] = (record["start"] - record["received"]) * 1000.0
    parts["to_client"] = (arrived - record["end"]) * 1000.0
    parts["node_e2e"] = (arrived - published) * 1000.0
    parts["faults"] = float(record["faults"])
    return parts


def run(model: str, images: Path, rounds: int, work_dir: Path) -> dict[str, Any]:
    """``{part: {p50, p95, n}}`` over ``rounds`` frames, ``engine``, ``excess_ms`` and the instance count."""
    from fastsam_ros.config import NodeConfig
    from fastsam_ros.engine import FastSAMEngine
    from harness.client import FastSAMClient
    from harness.node_process import NodeProcess, private_ros_network

    private_ros_network()
    engine = FastSAMEngine(many.many_config(NodeConfig(model=model).engine))
    frames = pipeline.plan_frames(engine, pipeline.load_frames(images, many.MANY_IMAGES, pipeline.CAMERA_SHAPE))
    probe_out = work_dir / "node_probe.jsonl"
    probe_out.unlink(missing_ok=True)
    os.environ["FASTSAM_NODE_PROBE"] = str(probe_out)  # for the node's process only
    try:
        node = NodeProcess(work_dir / "node_stages.log", namespace="bench_stages", model=model,
                           program=[sys.executable, "-m", "bench.node_probe"], **many.MANY)
    finally:
        del os.environ["FASTSAM_NODE_PROBE"]
    client = FastSAMClient(namespace="bench_stages")
    sent, engine_ms, counts = [], [], []
    try:
        if not client.wait_for_connections(node, timeout=300):
            raise SystemExit(f"the node did not come up:\n{node.log()}")
        driver = pipeline.Driver(client, node)
        for frame in frames:  # warm-up: exports loaded, kernels run
            driver.frame(frame.pixels)
        for index in range(rounds):
            frame = frames[index % len(frames)]
            for step in ("engine", "node") if index % 2 else ("node", "engine"):
                if step == "engine":
                    started = time.perf_counter()
                    engine.segment(frame.pixels)
                    engine_ms.append((time.perf_counter() - started) * 1000.0)
                    continue
                ms, msg, stamp = driver.frame(frame.pixels)  # ms: from just before publish to the arrival
                arrived = driver.arrival("instances", msg)
                sent.append((stamp, arrived - ms / 1000.0, arrived))
                counts.append(len(msg.instances))
    finally:
        client.close()
        node.stop()
    records = {r["stamp"]: r for r in map(json.loads, probe_out.read_text().splitlines())}
    frames_split = [split(records[stamp], published, arrived) for stamp, published, arrived in sent]
    figures = {part: summarize(f[part] for f in frames_split) for part in frames_split[0]}
    figures["engine"] = summarize(engine_ms)
    excess = figures["node_e2e"]["p50"] - 1.05 * figures["engine"]["p50"]
    return {**figures, "excess_ms": round(excess, 2), "instances": summarize(counts, 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_model_and_images(parser)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work_dir:
        figures = run(args.model, args.images, args.rounds, Path(work_dir))
    if args.json:
        print(json.dumps(figures))
        return 0
    count, excess, faults = figures.pop("instances"), figures.pop("excess_ms"), figures.pop("faults")
    print_figures(f"node_e2e by part, {count['p50']:g} instances per frame, 640x480",
                  {part: {"p50_ms": v["p50"], "p95_ms": v["p95"], "n": v["n"]} for part, v in figures.items()}, False)
    print(f"  node_e2e p50 - 1.05 x engine p50 = {excess} ms (make bench's target: at most 10)")
    print(f"  the node's minor page faults per frame: p50 {faults['p50']:g}, p95 {faults['p95']:g}")
    print(f"  (the machine's speed now: reference loop {reference_ms()} ms, bench/machine.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
