"""Network time per precision on this CPU: ``make bench``'s ``precision`` section (``python -m bench.precisions``).

For the stand-in and a FastSAM-s-shaped network (``yolov8s-seg.yaml``, one class, random weights), each exported to
ONNX at 640 for a 640x480 frame (input 1x3x480x640) and quantized to INT8 as the node does
(:func:`fastsam_ros.segmentation.precision.quantize`, calibrated on 32 dev images), the network alone, median of
``rounds`` runs, interleaved:

* ONNX Runtime FP32 (true FP32);
* OpenVINO on the same ONNX file: its default (bf16 where the CPU has AVX512-BF16 or AMX: ``default_precision``
  says which it picked) and with bf16 turned off (``INFERENCE_PRECISION_HINT f32``: what a robot CPU without bf16
  runs);
* the INT8 model on OpenVINO, its float layers in f32, as the node runs it.

Then the engine end to end with ``precision`` auto against each fixed choice (the stand-in, calibrated on the dev
set, whose agreement check decides whether INT8 may run), for the target that auto is never more than 5 % slower
than the best fixed choice.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from bench.stats import ratio, summarize

INPUT = (1, 3, 480, 640)
CALIBRATION_IMAGES = 32
CASES = ("onnxruntime fp32", "openvino default", "openvino f32", "openvino int8")


def _frames(images: Path, count: int) -> list[np.ndarray]:
    paths = sorted(p for p in images.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:count]
    return [cv2.resize(cv2.imread(str(p)), (INPUT[3], INPUT[2])) for p in paths]


def _tensor(frame: np.ndarray) -> np.ndarray:
    """A 640x480 BGR frame as the export's input (ultralytics' letterbox adds no border at this shape)."""
    return np.ascontiguousarray(frame[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0


def _runner(case: str, fp32: Path, int8: Path) -> tuple[Any, str]:
    """A callable running one input through ``case``, and the precision it computes in (``int8``: the INT8 model's
    float layers, in f32 as the node runs them)."""
    runtime, precision = case.split()
    path = next(int8.glob("*.xml")) if precision == "int8" else fp32
    if runtime == "onnxruntime":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return (lambda x: session.run(None, {name: x})), precision
    import openvino

    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY"}
    if precision in ("f32", "int8"):
        config["INFERENCE_PRECISION_HINT"] = "f32"
    compiled = openvino.Core().compile_model(str(path), "CPU", config)
    request = compiled.create_infer_request()
    return (lambda x: request.infer({0: x})), str(compiled.get_property("INFERENCE_PRECISION_HINT"))


def network_times(fp32: Path, int8: Path, frame: np.ndarray, rounds: int) -> dict[str, Any]:
    x = _tensor(frame)
    runners = {case: _runner(case, fp32, int8) for case in CASES}
    for run, _ in runners.values():
        for _ in range(3):
            run(x)
    times: dict[str, list[float]] = {case: [] for case in CASES}
    for index in range(rounds):
        for case in (CASES if index % 2 == 0 else reversed(CASES)):
            started = time.perf_counter()
            runners[case][0](x)
            times[case].append((time.perf_counter() - started) * 1000.0)
    figures = {case: {**summarize(values), "computes": runners[case][1]} for case, values in times.items()}
    true_fp32 = min(figures["onnxruntime fp32"]["p50"], figures["openvino f32"]["p50"])  # the faster runtime's
    return {"ms": figures, "default_precision": figures["openvino default"]["computes"],
            "int8_vs_true_fp32": ratio(true_fp32, figures["openvino int8"]["p50"]),
            "int8_vs_default": ratio(figures["openvino default"]["p50"], figures["openvino int8"]["p50"])}


def quantized(checkpoint: Path, folder: Path, frames: list[np.ndarray]) -> tuple[Path, Path]:
    """``(FP32 ONNX export, INT8 OpenVINO model folder)`` of ``checkpoint``."""
    from fastsam_ros.segmentation.export_cache import ultralytics_export
    from fastsam_ros.segmentation.precision import quantize

    local = folder / checkpoint.name
    local.write_bytes(checkpoint.read_bytes())  # the export lands beside the checkpoint
    fp32 = ultralytics_export(local, "onnx", INPUT[2:], False, "cpu")
    return fp32, quantize(fp32, folder / f"{checkpoint.stem}-int8", lambda: (_tensor(frame) for frame in frames))


def engine_auto(model: str, calibration: Path, frame: np.ndarray, rounds: int, cache: Path) -> dict[str, Any]:
    """The engine's frame time with precision auto and with each fixed precision (interleaved)."""
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine

    engines = {}
    for precision in ("auto", "fp32", "bf16", "int8"):
        config = EngineConfig(model=model, precision=precision, calibration_images=str(calibration),
                              export_cache=str(cache))
        engines[precision] = FastSAMEngine(config, log=lambda line: None)
        engines[precision].segment(frame)  # exports, quantizes, checks and (auto) times on the first frame
    times: dict[str, list[float]] = {name: [] for name in engines}
    order = list(engines)
    for index in range(rounds):
        for name in (order if index % 2 == 0 else reversed(order)):
            started = time.perf_counter()
            engines[name].segment(frame)
            times[name].append((time.perf_counter() - started) * 1000.0)
    figures = {name: {**summarize(values), "runs": engines[name].backend.precision} for name, values in times.items()}
    best_fixed = min(figures[name]["p50"] for name in ("fp32", "bf16", "int8"))
    return {"ms": figures, "auto_vs_best_fixed": ratio(figures["auto"]["p50"], best_fixed)}


def run(model: str, images: Path, data: Path, work_dir: Path, rounds: int) -> dict[str, Any]:
    from bench.device import fastsam_s_shaped

    frames = _frames(data / "images", CALIBRATION_IMAGES)
    frame = cv2.resize(cv2.imread(str(images / "bus.jpg")), (INPUT[3], INPUT[2]))
    results: dict[str, Any] = {"input": "x".join(map(str, INPUT)), "calibration_images": len(frames)}
    with tempfile.TemporaryDirectory(dir=work_dir) as folder:
        networks = {"standin": Path(model), "fastsam_s_shaped": fastsam_s_shaped(Path(folder))}
        for name, checkpoint in networks.items():
            fp32, int8 = quantized(checkpoint, Path(folder), frames)
            results[name] = network_times(fp32, int8, frame, rounds)
        # engines that run the same export differ by noise alone: enough rounds that it averages out
        results["engine"] = engine_auto(model, data / "images", frame, max(rounds, 40), Path(folder) / "cache")
    return results


def main(argv: list[str] | None = None) -> int:
    from bench.shared_data import add_model_and_images

    parser = argparse.ArgumentParser(prog="python -m bench.precisions", description=__doc__.splitlines()[0])
    add_model_and_images(parser)
    parser.add_argument("--data", type=Path, default=Path("../shared/data/coco-seg-dev"))
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench"))
    args = parser.parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    results = run(args.model, args.images, args.data, args.work_dir, args.rounds)
    out = args.work_dir / "precisions.json"
    out.write_text(json.dumps(results, indent=1) + "\n")  # stdout also carries ultralytics' loading lines
    print(f"results in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
