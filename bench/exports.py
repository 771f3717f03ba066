"""CPU export paths compared in one run: PyTorch, ONNX Runtime and OpenVINO through :class:`FastSAMEngine`.

The checkpoint is copied into ``out_dir`` (ultralytics writes exports beside their source, and the shared
model folder is not ours) and exported there with fixed settings: static input shape equal to the camera
frame's letterbox (``imgsz=(480, 640)`` for 640x480: the same tensor the PyTorch path builds for that frame,
so every backend does the same work), FP32, no graph simplification. Exports are never committed (gitignored).

Each format is timed on the same frames, round-robin, and checked against PyTorch's instances (count and
mean mask IoU), so a fast but wrong export would show.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.stats import ratio, summarize

EXPORT_SETTINGS = {"onnx": {"dynamic": False, "simplify": False}, "openvino": {"dynamic": False}}
FORMATS = ("onnx", "openvino")


def available(fmt: str) -> bool:
    return importlib.util.find_spec({"onnx": "onnxruntime", "openvino": "openvino"}[fmt]) is not None


def export(model: Path, out_dir: Path, fmt: str, imgsz: tuple[int, int]) -> dict[str, Any]:
    """Export ``model`` to ``fmt`` in ``out_dir``: ``{"path", "export_s"}`` or ``{"error"}``."""
    from ultralytics import FastSAM

    out_dir.mkdir(parents=True, exist_ok=True)
    source = out_dir / model.name
    if not source.exists() or source.stat().st_size != model.stat().st_size:
        shutil.copyfile(model, source)
    started = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            path = FastSAM(str(source)).export(format=fmt, imgsz=list(imgsz), verbose=False, **EXPORT_SETTINGS[fmt])
    except Exception as error:  # an exporter failure is a result of the comparison, not a crash of the bench
        return {"error": f"{error.__class__.__name__}: {error}"}
    return {"path": str(path).rstrip("/"), "export_s": round(time.perf_counter() - started, 1)}


def _mean_iou(reference: Any, other: Any) -> float | None:
    """Mean best-match mask IoU of ``other``'s instances against ``reference``'s, at network resolution."""
    if len(reference) == 0 or len(other) == 0 or reference.masks.shape != other.masks.shape:
        return None
    a = reference.masks.dense().reshape(len(reference), -1).astype(np.float32)
    b = other.masks.dense().reshape(len(other), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return round(float(np.mean((inter / np.maximum(union, 1)).max(axis=1))), 4)


def threads(engine: Any) -> Any:
    """Inference threads of an engine's backend as its runtime reports them (0: the runtime's default)."""
    try:
        backend = engine.predictor.model.backend
        if hasattr(backend, "session"):
            return backend.session.get_session_options().intra_op_num_threads
        if hasattr(backend, "ov_compiled_model"):
            return int(backend.ov_compiled_model.get_property("INFERENCE_NUM_THREADS"))
    except Exception:  # informational only: ultralytics internals move between versions
        return None
    import torch

    return torch.get_num_threads()


def compare(model: Path, out_dir: Path, frames: list[np.ndarray], rounds: int, engine_config: Any,
            formats: tuple[str, ...] = FORMATS) -> dict[str, Any]:
    """Export, load each format in :class:`FastSAMEngine`, time ``segment`` round-robin; pick the fastest."""
    import dataclasses

    from fastsam_ros.engine import FastSAMEngine

    if model.suffix != ".pt":
        return {"skipped": f"{model.name} is not a PyTorch checkpoint to export from"}
    load_before = os.getloadavg()
    imgsz = frames[0].shape[:2]
    settings = {fmt: {**EXPORT_SETTINGS[fmt], "imgsz": list(imgsz), "precision": "fp32"} for fmt in formats}
    results: dict[str, Any] = {"settings": settings,
                               "formats": {"pytorch": {"path": str(model)}}}
    paths = {"pytorch": str(model)}
    for fmt in formats:
        if not available(fmt):
            results["formats"][fmt] = {"error": f"{fmt} runtime not installed"}
            continue
        outcome = export(model, out_dir, fmt, imgsz)
        results["formats"][fmt] = outcome
        if "path" in outcome:
            paths[fmt] = outcome["path"]
    engines = {}
    for name, path in paths.items():
        try:
            engines[name] = FastSAMEngine(dataclasses.replace(engine_config, model=path))
            for frame in frames:  # warm-up: first calls compile and allocate
                engines[name].segment(frame)
        except Exception as error:
            results["formats"].setdefault(name, {})["error"] = f"{error.__class__.__name__}: {error}"
    # ultralytics runs PyTorch on cores - 1 threads (1 on a 2-core machine) while ONNX Runtime and OpenVINO use
    # every core: PyTorch on every core is timed too, so the comparison is not only about threads.
    import torch

    default_threads, cores = torch.get_num_threads(), os.cpu_count() or 1
    threads_for = {name: default_threads for name in engines}
    if "pytorch" in engines and cores != default_threads:
        name = f"pytorch_{cores}_threads"
        engines[name], threads_for[name] = engines["pytorch"], cores
        results["formats"][name] = {"path": paths["pytorch"]}
    times: dict[str, list[float]] = {name: [] for name in engines}
    for index in range(rounds):
        frame = frames[index % len(frames)]
        order = list(engines)
        order = order[index % len(order):] + order[: index % len(order)]  # rotate: noise hits every format
        for name in order:
            torch.set_num_threads(threads_for[name])  # also the threads of ultralytics' torch pre/postprocessing
            started = time.perf_counter()
            engines[name].segment(frame)
            times[name].append((time.perf_counter() - started) * 1000.0)
    torch.set_num_threads(default_threads)
    reference = {i: engines["pytorch"].segment(frame) for i, frame in enumerate(frames)} if "pytorch" in engines else {}
    for name, engine in engines.items():
        entry = results["formats"][name]  # every timed engine has its entry (exports, PyTorch variants)
        entry["engine_ms"] = summarize(times[name])
        torch.set_num_threads(threads_for[name])
        entry["threads"] = threads(engine)
        if reference and not name.startswith("pytorch_"):
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
    return results
