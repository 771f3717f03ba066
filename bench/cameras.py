"""Several cameras, one model: ``make bench``'s ``cameras`` section (``python -m bench.cameras`` runs it alone).

1, 2 and 4 cameras publish 640x480 frames at ``CAMERA_HZ`` each, stamped with the wall clock like camera drivers,
into either one node with ``cameras`` or one single-camera node per camera, side by side in one run. For each run:
the resident memory of the node processes together (the largest one-second sample of their summed ``VmRSS``), the
answered frames per second of all cameras together (``instances`` messages of the frames published), each camera's
share of them, and each camera's latency from publishing a frame to holding its ``instances``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.machine import rss_mb
from bench.pipeline import CAMERA_SHAPE, FRAME_IMAGES, load_frames
from bench.shared_data import add_model_and_images
from bench.stats import summarize
from bench.stream import Cameras

CAMERA_HZ = 15.0
COUNTS = (1, 2, 4)
SETTLE_S = 2.0  # after the last frame, for its answers to arrive


def measure(model: str, frames: list[np.ndarray], one_node: bool, work_dir: Path, seconds: float,
            rate_hz: float = CAMERA_HZ) -> dict[str, Any]:
    """``len(frames)`` cameras served by one node (``cameras``; a single camera: the plain node) or one node each."""
    from harness.client import FastSAMClient
    from harness.node_process import NodeProcess, stamp_of

    count = len(frames)
    names = [f"cam{k}" for k in range(count)]
    if one_node:
        extra = {"cameras": names} if count > 1 else {}
        nodes = [NodeProcess(work_dir / f"cameras-{count}-one.log", namespace="benchcams", model=model,
                             image="/{camera}/image_raw" if count > 1 else "/cam0/image_raw", **extra)]
        namespaces = [f"benchcams/{name}" if count > 1 else "benchcams" for name in names]
    else:
        nodes = [NodeProcess(work_dir / f"cameras-{count}-{name}.log", namespace=f"bench{name}", model=model,
                             image=f"/{name}/image_raw") for name in names]
        namespaces = [f"bench{name}" for name in names]
    clients = [FastSAMClient(namespace=namespace, image_topic=f"/{name}/image_raw", outputs=("instances",))
               for namespace, name in zip(namespaces, names, strict=True)]
    try:
        for client in clients:
            node = nodes[0] if one_node else nodes[clients.index(client)]
            if not client.wait_for_connections(node, timeout=300):
                raise SystemExit(f"the node did not come up:\n{node.log()}")
        for client, frame in zip(clients, frames, strict=True):  # the first frames pay for lazy setup
            stamp = time.time_ns()
            client.publish_image(frame, stamp)
            if client.wait_for("instances", lambda m, s=stamp: stamp_of(m) == s, 120) is None:
                raise SystemExit("a camera's first frame was never answered")
        cameras = Cameras(clients, frames, rate_hz, seconds)
        cameras.start()
        rss_samples = []
        while cameras.is_alive():
            cameras.join(timeout=1.0)
            rss_samples.append(sum(rss_mb(node.process.pid) or 0.0 for node in nodes))
        time.sleep(SETTLE_S)
        per_camera, answered = {}, 0
        for name, client, sent in zip(names, clients, cameras.sent, strict=True):
            latencies = [(t - sent[stamp_of(m)]) * 1000.0 for t, m in list(client.received["instances"])
                         if stamp_of(m) in sent]
            per_camera[name] = {"published": len(sent), "answered": len(latencies), "latency_ms": summarize(latencies)}
            answered += len(latencies)
    finally:
        for client in clients:
            client.close()
        exit_codes = [node.stop() for node in nodes]
    fair = answered / count if count else 0.0
    for figures in per_camera.values():
        figures["share_of_fair"] = round(figures["answered"] / fair, 3) if fair else None
    return {
        "cameras": count, "one_node": one_node, "processes": len(nodes), "camera_hz": rate_hz, "seconds": seconds,
        "rss_mb": round(max(rss_samples), 1) if rss_samples else None,
        "answered_per_s": round(answered / seconds, 2), "per_camera": per_camera, "node_exit_codes": exit_codes,
    }


def run(model: str, images: Path, work_dir: Path, seconds: float) -> dict[str, Any]:
    """Every run of the section, and the ratios its targets are judged on."""
    pictures = [pixels for _, pixels in load_frames(images, FRAME_IMAGES, CAMERA_SHAPE)]
    if not pictures:
        raise SystemExit(f"no sample images in {images}")
    runs = {}
    for count in COUNTS:
        frames = [pictures[k % len(pictures)] for k in range(count)]
        modes = (True,) if count == 1 else (True, False)
        for one_node in modes:
            key = f"{count}_{'one_node' if one_node else 'nodes'}"
            print(f"[bench] {time.strftime('%H:%M:%S')} cameras: {key}", file=sys.stderr, flush=True)
            runs[key] = measure(model, frames, one_node, work_dir, seconds)
    single = runs["1_one_node"]
    shares = [figures["share_of_fair"] for count in COUNTS[1:] for figures in
              runs[f"{count}_one_node"]["per_camera"].values()]
    return {
        "runs": runs,
        "rss_2_in_one_vs_1": round(runs["2_one_node"]["rss_mb"] / single["rss_mb"], 3),
        "rss_2_nodes_vs_1": round(runs["2_nodes"]["rss_mb"] / single["rss_mb"], 3),
        "answered_vs_single": min(round(runs[f"{count}_one_node"]["answered_per_s"] / single["answered_per_s"], 3)
                                  for count in COUNTS[1:]),
        "worst_share_error": round(max(abs(share - 1.0) for share in shares), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.cameras", description=__doc__.splitlines()[0])
    add_model_and_images(parser)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    from harness.node_process import private_ros_network

    private_ros_network()
    print(json.dumps(run(args.model, args.images, args.work_dir, args.seconds), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
