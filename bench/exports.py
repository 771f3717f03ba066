"""CPU backends compared in one run: PyTorch, ONNX Runtime and OpenVINO through :class:`FastSAMEngine`, each on
its default threads and on 1, 2 and all cores (``cpu_threads``).

The exports are made exactly as the node makes them (``fastsam_ros/segmentation/backends.py``: static shape equal to the
camera frame's letterbox, FP32, no graph simplification), into a cache under ``out_dir`` (gitignored): the
first engine of each format pays the export (``export_s``, the node's first-start cost), the others load it
(``load_s``, a later start). Every engine is timed on the same frames, round-robin, and checked against
PyTorch's instances (count and mean mask IoU), so a fast but wrong export would show.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import ratio, summarize

FORMATS = ("onnx", "openvino")


def _mean_iou(reference: Any, other: Any) -> float | None:
    """Mean best-match mask IoU of ``other``'s instances against ``reference``'s, at network resolution."""
    if len(reference) == 0 or len(other) == 0 or reference.masks.shape != other.masks.shape:
        return None
    a = reference.masks.dense().reshape(len(reference), -1).astype(np.float32)
    b = other.masks.dense().reshape(len(other), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return round(float(np.mean((inter / np.maximum(union, 1)).max(axis=1))), 4)


def thread_counts(cores: int) -> list[int]:
    """``cpu_threads`` values compared: 0 (each backend's default), 1, 2 and every core."""
    return sorted({0, 1, min(2, cores), cores})


def variant_name(backend: str, threads: int) -> str:
    return backend if threads == 0 else f"{backend}_{threads}_threads"


def compare(model: Path, out_dir: Path, frames: list[np.ndarray], rounds: int, engine_config: Any,
            formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Load every backend x thread count in :class:`FastSAMEngine`, time ``segment`` round-robin; pick the fastest."""
    import torch
    from ultralytics.utils import NUM_THREADS

    from fastsam_ros.segmentation import backends, export_cache
    from fastsam_ros.segmentation.engine import FastSAMEngine

    if model.suffix != ".pt":
        return {"skipped": f"{model.name} is not a PyTorch checkpoint to export from"}
    load_before = os.getloadavg()
    cores = os.cpu_count() or 1
    machine = backends.probe("cpu")
    results: dict[str, Any] = {
        "settings": {fmt: {**export_cache.EXPORT_SETTINGS[fmt], "imgsz": list(frames[0].shape[:2]), "precision": "fp32"}
                     for fmt in formats},
        "auto_picks": backends.choose("auto", False, machine).backend, "cores": cores, "formats": {},
    }
    engines: dict[str, Any] = {}
    torch_threads: dict[str, int] = {}  # ultralytics' pre/postprocessing runs in torch on these
    for backend in ("pytorch", *formats):
        for threads in thread_counts(cores):
            name = variant_name(backend, threads)
            config = dataclasses.replace(engine_config, model=str(model), backend=backend, cpu_threads=threads,
                                         export_cache=str(out_dir / "export-cache"))
            entry = results["formats"][name] = {"backend": backend, "cpu_threads": threads}
            try:
                started = time.perf_counter()
                engine = FastSAMEngine(config)
                engine.segment(frames[0])  # the first frame exports (first start) or loads the cached export
                entry["first_frame_s"] = round(time.perf_counter() - started, 2)
                info = engine.backend
                if info.backend != backend:  # a fallback is a result, not this backend's figure
                    entry["error"] = info.reason
                    continue
                entry.update(path=info.path or str(model), threads=info.threads, export_s=info.export_s,
                             load_s=info.load_s, made=info.made)
                for frame in frames:  # warm-up: first calls compile and allocate
                    engine.segment(frame)
            except Exception as error:
                entry["error"] = f"{error.__class__.__name__}: {error}"
                continue
            engines[name], torch_threads[name] = engine, threads or NUM_THREADS
    default_threads = torch.get_num_threads()
    times: dict[str, list[float]] = {name: [] for name in engines}
    for index in range(rounds):
        frame = frames[index % len(frames)]
        order = list(engines)
        order = order[index % len(order):] + order[: index % len(order)]  # rotate: noise hits every variant
        for name in order:
            torch.set_num_threads(torch_threads[name])
            started = time.perf_counter()
            engines[name].segment(frame)
            times[name].append((time.perf_counter() - started) * 1000.0)
    reference = {}
    if "pytorch" in engines:
        torch.set_num_threads(torch_threads["pytorch"])
        reference = {i: engines["pytorch"].segment(frame) for i, frame in enumerate(frames)}
    for name, engine in engines.items():
        entry = results["formats"][name]
        entry["engine_ms"] = summarize(times[name])
        if entry["backend"] == "pytorch":
            entry["threads"] = torch_threads[name]
        elif reference and entry["cpu_threads"] == 0:
            torch.set_num_threads(torch_threads[name])
            outputs = [engine.segment(frame) for frame in frames]
            entry["instances"] = [len(s) for s in outputs]
            entry["mask_iou_vs_pytorch"] = [_mean_iou(reference[i], s) for i, s in enumerate(outputs)]
    torch.set_num_threads(default_threads)
    # Runtimes that use every core suffer most from other processes on the machine: keep the load beside them.
    results["load_average"] = {"before": [round(v, 2) for v in load_before],
                               "after": [round(v, 2) for v in os.getloadavg()]}
    timed = {name: entry["engine_ms"]["p50"] for name, entry in results["formats"].items() if "engine_ms" in entry}
    if timed:
        best = min(timed, key=timed.get)
        entry = results["formats"][best]
        results["fastest"] = {"format": best, "path": entry["path"], "threads": entry.get("threads"),
                              "engine_ms": entry["engine_ms"],
                              "speedup_vs_pytorch": ratio(timed.get("pytorch"), timed[best], 2)}
        auto = results["auto_picks"]
        if auto in timed:
            results["default_speedup_vs_pytorch"] = ratio(timed.get("pytorch"), timed[auto], 2)
    return results


def rows(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``(variant, threads, p50, p95, export_s, load_s, mask IoU)`` per timed variant."""
    table = []
    for name, entry in results["formats"].items():
        if "engine_ms" not in entry:
            table.append((name, entry.get("cpu_threads"), None, None, None, None, entry.get("error")))
            continue
        ious = [v for v in entry.get("mask_iou_vs_pytorch") or [] if v is not None]
        table.append((name, entry.get("threads"), entry["engine_ms"]["p50"], entry["engine_ms"]["p95"],
                      entry.get("export_s") if entry.get("made") else None, entry.get("load_s"),
                      min(ious) if ious else None))
    return table


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.exports``: the backend comparison alone (``make bench`` runs it after the pipeline)."""
    import argparse
    import json
    import tempfile

    from bench import machine, pipeline
    from bench.stats import table
    from fastsam_ros.segmentation.engine import EngineConfig

    parser = argparse.ArgumentParser(prog="python -m bench.exports", description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path(os.environ.get(
        "FASTSAM_TEST_MODEL", Path(__file__).resolve().parents[2] / "shared" / "models" / "yolov8n-seg.pt")))
    parser.add_argument("--fastsam-s-shaped", action="store_true",
                        help="instead of --model, YOLOv8s-seg with one class and random weights (FastSAM-s's network)")
    parser.add_argument("--images", type=Path, default=Path(os.environ.get(
        "FASTSAM_TEST_IMAGES", Path(__file__).resolve().parents[2] / "shared" / "data" / "images")))
    parser.add_argument("--rounds", type=int, default=12)
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench"))
    parser.add_argument("--out", type=Path, help="JSON results")
    args = parser.parse_args(argv)
    frames = [f for _, f in pipeline.load_frames(args.images, pipeline.FRAME_IMAGES, pipeline.CAMERA_SHAPE)]
    with tempfile.TemporaryDirectory() as folder:
        if args.fastsam_s_shaped:
            from bench.device import fastsam_s_shaped

            args.model = fastsam_s_shaped(Path(folder))
        meta = machine.describe(str(args.model))
        results = compare(args.model, args.work_dir, frames, args.rounds, EngineConfig(imgsz=args.imgsz))
    meta["command"] = " ".join(["python -m bench.exports", *(argv if argv is not None else sys.argv[1:])])
    results["meta"] = {**meta, "frames": f"{len(frames)} x 640x480", "imgsz": args.imgsz}
    print(table(rows(results), ("variant", "threads", "p50 ms", "p95 ms", "export s", "load s", "min IoU")))
    print(f"backend auto picks {results.get('auto_picks')}; load {results['load_average']}")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
