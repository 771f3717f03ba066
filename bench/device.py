"""GPU check, run by ``bench/device.sh``: our engine on CUDA, FP32 and FP16, at imgsz 640 and 1024, for the
stand-in checkpoint and a FastSAM-s-shaped network, at 5 and 100 instances per frame, with the GPU's name and the
share of CUDA kernel time in each stage.

Needs only torch (with CUDA), ultralytics, numpy and OpenCV: no ROS, no venv of this project (``fastsam_ros``'s
core is imported from the working tree). The frame is ultralytics' own ``zidane.jpg`` (1280x720), so no data set
travels. Models:

- ``standin``: ``yolov8n-seg.pt`` from ``--standin`` (default: ``.whl/yolov8n-seg.pt``, carried beside the wheels,
  else ``../shared/models/yolov8n-seg.pt``); skipped with the reason when absent. 5 instances: conf 0.4 and
  ``max_det`` 5; 100 instances: conf 0.01, ``max_det`` 100 (the count reached is reported).
- ``fastsam_s_shaped``: ultralytics' ``yolov8s-seg.yaml`` with one class and random weights: FastSAM-s's
  architecture and compute. Its class biases are raised so every anchor scores high, and ``max_det`` sets the
  instance count exactly.

Stages per frame, as ``FastSAMEngine.segment`` runs them: ``preprocess``, ``inference``, ``postprocess``
(ultralytics' predictor: letterbox, network, NMS, mask coefficients x prototypes; instance pixels are made later,
when read) and ``convert`` (``segmentation_from_result``). Wall times are from timed runs
(CUDA synchronised); ``cuda_share`` is each stage's CUDA kernel time over its duration, from a separate run under
``torch.profiler`` (which slows the CPU side, so shares are upper bounds of the CPU-bound part's cost).
``batching``: four frames as one batch (``FastSAMEngine.segment_batch``, what several cameras of one node share)
against the same four frames one by one, interleaved, FastSAM-s-shaped at 640 in the GPU check's precision; the
target of several cameras on a GPU is a throughput ratio of at least 2.
``--device cpu --quick`` runs the same code on the CPU in seconds (the test suite does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
STANDIN_CANDIDATES = (REPO / ".whl" / "yolov8n-seg.pt", REPO.parent / "shared" / "models" / "yolov8n-seg.pt")
STAGES = ("preprocess", "inference", "postprocess", "convert")
INSTANCES = {5: {"standin": 0.4, "fastsam_s_shaped": 0.4}, 100: {"standin": 0.01, "fastsam_s_shaped": 0.4}}


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/device.sh", description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--standin", type=Path, default=next((p for p in STANDIN_CANDIDATES if p.exists()), None))
    parser.add_argument("--out", type=Path, help="JSON results (default $OUT/device.json when OUT is set)")
    parser.add_argument("--rounds", type=int, default=30, help="timed frames per case")
    parser.add_argument("--quick", action="store_true", help="imgsz 320, 3 rounds: a smoke run (CPU: FP32 only)")
    args = parser.parse_args(argv)
    if args.out is None and os.environ.get("OUT"):
        args.out = Path(os.environ["OUT"]) / "device.json"
    return args


def fastsam_s_shaped(folder: Path) -> Path:
    """A checkpoint of YOLOv8s-seg with one class and random weights (FastSAM-s's network)."""
    import torch
    from ultralytics import YOLO
    from ultralytics.nn.tasks import SegmentationModel

    torch.manual_seed(0)
    model = YOLO("yolov8s-seg.yaml", task="segment")
    network = SegmentationModel("yolov8s-seg.yaml", nc=1, verbose=False)
    network.args, network.task = model.model.args, "segment"  # what ultralytics' checkpoint loader reads
    model.model = network
    for branch in model.model.model[-1].cv3:
        branch[-1].bias.data[:] = 4.0  # every anchor is an instance: max_det decides the count
    path = folder / "fastsam-s-shaped.pt"
    model.save(str(path))
    return path


def _sync(device: str) -> None:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        torch.cuda.synchronize()


@contextlib.contextmanager
def _stage_ranges(engine: Any) -> Iterator[None]:
    """Label ultralytics' predictor stages for the profiler (instance attributes shadow its methods)."""
    import torch

    predictor = engine.predictor
    originals = {name: getattr(predictor, name) for name in STAGES[:3]}

    def labelled(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def run(*args: Any, **kwargs: Any) -> Any:
            with torch.profiler.record_function(f"stage:{name}"):
                return method(*args, **kwargs)
        return run

    for name, method in originals.items():
        setattr(predictor, name, labelled(name, method))
    try:
        yield
    finally:
        for name in originals:
            delattr(predictor, name)


def cuda_shares(engine: Any, frame: np.ndarray, device: str, runs: int) -> dict[str, float | None]:
    """CUDA kernel time / duration of each stage, over ``runs`` frames under ``torch.profiler`` (None on the CPU)."""
    import torch
    from torch.autograd import DeviceType
    from torch.profiler import ProfilerActivity, profile

    from fastsam_ros.segmentation.engine import deferred_masks, segmentation_from_result

    if device == "cpu":
        return dict.fromkeys(STAGES)
    with _stage_ranges(engine), profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(runs):
            with deferred_masks():
                result = engine.predict_raw(frame)
            with torch.profiler.record_function("stage:convert"):
                segmentation_from_result(result)
            _sync(device)
    kernel_us = dict.fromkeys(STAGES, 0.0)
    wall_us = dict.fromkeys(STAGES, 0.0)
    for event in prof.events():  # the CPU-side ranges: their kernels' device time over their duration
        stage = event.name.removeprefix("stage:")
        if stage in kernel_us and event.device_type == DeviceType.CPU:
            kernel_us[stage] += float(getattr(event, "device_time_total", getattr(event, "cuda_time_total", 0.0)))
            wall_us[stage] += float(event.cpu_time_total)
    return {stage: round(min(kernel_us[stage] / wall_us[stage], 1.0), 3) if wall_us[stage] else None
            for stage in STAGES}


def run_case(model: Path, kind: str, imgsz: int, half: bool, instances: int, frame: np.ndarray,
             args: argparse.Namespace) -> dict[str, Any]:
    from bench.stats import summarize
    from fastsam_ros.segmentation.backends import letterbox_shape
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine, deferred_masks, segmentation_from_result

    config = EngineConfig(model=str(model), device=args.device, half=half, imgsz=imgsz,
                          conf=INSTANCES[instances][kind], max_det=instances, backend="pytorch")
    engine = FastSAMEngine(config)
    for _ in range(3):  # cuDNN autotuning, allocator warm-up
        engine.segment(frame)
    stages: dict[str, list[float]] = {stage: [] for stage in (*STAGES, "total")}
    counts = []
    for _ in range(args.rounds):
        _sync(args.device)
        started = time.perf_counter()
        with deferred_masks():  # as engine.segment: instance masks are made when read
            result = engine.predict_raw(frame)
        _sync(args.device)
        converted = time.perf_counter()
        segmentation = segmentation_from_result(result)
        _sync(args.device)
        done = time.perf_counter()
        for stage in STAGES[:3]:
            stages[stage].append(float(result.speed[stage]))
        stages["convert"].append((done - converted) * 1000.0)
        stages["total"].append((done - started) * 1000.0)
        counts.append(len(segmentation))
    return {
        "model": kind, "imgsz": imgsz, "precision": "fp16" if half else "fp32", "instances_asked": instances,
        "instances": int(np.median(counts)), "conf": config.conf, "max_det": config.max_det,
        "network_input": list(letterbox_shape(frame.shape[:2], imgsz, 32)),
        "ms": {stage: summarize(values) for stage, values in stages.items()},
        "cuda_share": cuda_shares(engine, frame, args.device, runs=min(5, args.rounds)),
    }


BATCH = 4
BATCH_TARGET = 2.0  # frames per second batched over one by one, on a GPU


def batching_case(model: Path, imgsz: int, half: bool, frame: np.ndarray, args: argparse.Namespace) -> dict[str, Any]:
    """``BATCH`` frames in one network call against one by one, alternating which goes first."""
    from bench.stats import summarize
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine

    engine = FastSAMEngine(EngineConfig(model=str(model), device=args.device, half=half, imgsz=imgsz, conf=0.4,
                                        max_det=100, backend="pytorch"))
    frames = [frame.copy() for _ in range(BATCH)]

    def batched() -> None:
        engine.segment_batch(frames)

    def single() -> None:
        for each in frames:
            engine.segment(each)

    runs = {"batched": batched, "one_by_one": single}
    for run in runs.values():  # warm-up: cuDNN picks kernels per batch size
        run()
        run()
    times: dict[str, list[float]] = {name: [] for name in runs}
    for index in range(args.rounds):
        for name in (runs if index % 2 == 0 else reversed(list(runs))):
            _sync(args.device)
            started = time.perf_counter()
            runs[name]()
            _sync(args.device)
            times[name].append((time.perf_counter() - started) * 1000.0)
    figures = {name: summarize(values) for name, values in times.items()}
    speedup = round(figures["one_by_one"]["p50"] / figures["batched"]["p50"], 2)
    return {"frames": BATCH, "imgsz": imgsz, "precision": "fp16" if half else "fp32", "ms": figures,
            "throughput_ratio": speedup, "target": BATCH_TARGET, "pass": speedup >= BATCH_TARGET}


def environment(device: str) -> dict[str, Any]:
    import torch
    import ultralytics

    from fastsam_ros.segmentation import backends

    machine = backends.probe(device)
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "command": " ".join(sys.argv),
        "device": device, "gpu": machine.gpu_name or None, "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
        "cuda": torch.version.cuda, "ultralytics": ultralytics.__version__,
        "tensorrt": machine.versions.get("tensorrt"),
        "auto_backend": backends.choose("auto", True, machine).__dict__,  # the GPU check runs FP16
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    import cv2
    from ultralytics.utils import ASSETS

    cpu = args.device == "cpu"
    sizes = (320,) if args.quick else (640, 1024)
    precisions = (False,) if cpu else (False, True)  # ultralytics runs FP32 on the CPU whatever it is asked
    if args.quick:
        args.rounds = min(args.rounds, 3)
    frame = cv2.imread(str(ASSETS / "zidane.jpg"))
    results: dict[str, Any] = {"meta": environment(args.device), "frame": f"zidane.jpg {frame.shape[1]}x"
                               f"{frame.shape[0]}", "cases": [], "skipped": []}
    with tempfile.TemporaryDirectory() as folder:
        models = {"fastsam_s_shaped": fastsam_s_shaped(Path(folder))}
        if args.standin is not None and Path(args.standin).exists():
            models["standin"] = Path(args.standin)
        else:
            results["skipped"].append(f"standin: no yolov8n-seg.pt at {', '.join(map(str, STANDIN_CANDIDATES))}")
        for kind, model in models.items():
            for imgsz in sizes:
                for half in precisions:
                    for instances in INSTANCES:
                        started = time.perf_counter()
                        case = run_case(model, kind, imgsz, half, instances, frame, args)
                        case["case_s"] = round(time.perf_counter() - started, 1)
                        results["cases"].append(case)
                        print(_line(case), file=sys.stderr, flush=True)
        results["batching"] = batching_case(models["fastsam_s_shaped"], sizes[0], precisions[-1], frame, args)
    results["meta"]["rclpy_imported"] = "rclpy" in sys.modules  # this check must run without ROS
    return results


def _line(case: dict[str, Any]) -> str:
    ms = case["ms"]
    shares = " ".join(f"{s}={case['cuda_share'][s]}" for s in STAGES)
    return (f"{case['model']:>16} {case['imgsz']:>4} {case['precision']} {case['instances']:>3} inst: total "
            f"{ms['total']['p50']} ms (pre {ms['preprocess']['p50']}, net {ms['inference']['p50']}, post "
            f"{ms['postprocess']['p50']}, convert {ms['convert']['p50']}); cuda share {shares}")


def report(results: dict[str, Any]) -> str:
    from bench.stats import table

    meta = results["meta"]
    rows = [(c["model"], c["imgsz"], c["precision"], c["instances"], c["ms"]["total"]["p50"],
             c["ms"]["total"]["p95"], *(c["ms"][s]["p50"] for s in STAGES), *(c["cuda_share"][s] for s in STAGES))
            for c in results["cases"]]
    header = ("model", "imgsz", "prec", "inst", "total p50", "p95", *STAGES, *(f"cuda {s[:4]}" for s in STAGES))
    return "\n".join([f"{meta['date']} {meta['gpu'] or meta['device']} torch {meta['torch']} (CUDA {meta['cuda']}), "
                      f"ultralytics {meta['ultralytics']}, TensorRT {meta['tensorrt'] or 'not installed'}; "
                      f"backend auto here: {meta['auto_backend']['backend']}; frame {results['frame']}",
                      table(rows, header), _batching_line(results.get("batching")), *results["skipped"]])


def _batching_line(figures: dict[str, Any] | None) -> str:
    if not figures:
        return ""
    return (f"batching ({figures['frames']} frames, FastSAM-s-shaped, {figures['imgsz']}, {figures['precision']}): "
            f"{figures['ms']['batched']['p50']} ms batched vs {figures['ms']['one_by_one']['p50']} ms one by one: "
            f"{figures['throughput_ratio']}x (target {figures['target']}x on a GPU: "
            f"{'pass' if figures['pass'] else 'FAIL'})")


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    started = time.perf_counter()
    results = run(args)
    results["meta"]["total_s"] = round(time.perf_counter() - started, 1)
    print(report(results))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=1) + "\n")
        print(f"JSON: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
