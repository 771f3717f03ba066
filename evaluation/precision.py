"""FP32 against INT8 on the same images: ``make eval``'s precision rows (``python -m evaluation.precision`` alone).

The exports are static, so every image is resized to one camera frame (640x480) and its ground truth rasterised at
that size; both precisions then run the same export shape, FP32 as exported to ONNX and INT8 quantized from it (an
OpenVINO model, as the node runs it) with the data set's own images (the node's ``calibration_images``: the last 16
are held back for its agreement check, every image is scored here). The INT8 rows score the quantized model even
where the node's own check refuses it (that check's verdict is printed beside them), so a refusal can be weighed
against what INT8 would cost. Scored as ``make eval``'s ``fastsam_ros`` method: mean IoU per prompt kind, and the
mean instance count per image. Targets: each mean IoU within :data:`MAX_IOU_DROP` of FP32's, the count within
:data:`MAX_COUNT_CHANGE`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evaluation.evaluate import MIN_AREA, PROMPT_KINDS, image_pairs, iou, make_prompts, read_instances

FRAME_SIZE = (640, 480)  # width, height: the camera frame every image becomes
MAX_IOU_DROP = 0.01
MAX_COUNT_CHANGE = 0.10


def compare(data_dir: str | Path, model: str, limit: int | None = None, min_area: int = MIN_AREA,
            cache: str | None = None) -> dict[str, Any]:
    """Both precisions' mean IoU per prompt kind and mean instances per image, and the targets' verdicts."""
    from dataclasses import replace

    from fastsam_ros.prompts.selection import select
    from fastsam_ros.segmentation import precision
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine

    data = Path(data_dir)
    cache = cache or tempfile.mkdtemp(prefix="fastsam-eval-precision-")
    base = EngineConfig(model=model, backend="onnx", export_cache=cache, calibration_images=str(data / "images"))
    log: list[str] = []
    engines = {"fp32": FastSAMEngine(replace(base, precision="fp32"), log=log.append)}
    bar = precision.MIN_MATCHED_IOU, precision.MAX_COUNT_CHANGE
    precision.MIN_MATCHED_IOU, precision.MAX_COUNT_CHANGE = 0.0, float("inf")  # INT8 runs, to be scored
    try:
        engines["int8"] = FastSAMEngine(replace(base, precision="int8"), log=log.append)
        engines["int8"].segment(np.zeros((FRAME_SIZE[1], FRAME_SIZE[0], 3), np.uint8))  # quantized and checked here
    finally:
        precision.MIN_MATCHED_IOU, precision.MAX_COUNT_CHANGE = bar
    scores: dict[str, dict[str, list[float]]] = {name: {kind: [] for kind in PROMPT_KINDS} for name in engines}
    counts: dict[str, list[int]] = {name: [] for name in engines}
    for image_path, label_path in image_pairs(data)[:limit]:
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"could not read image {image_path}")
        frame = cv2.resize(image, FRAME_SIZE, interpolation=cv2.INTER_AREA)
        instances = read_instances(label_path, frame.shape[:2], min_area)
        for name, engine in engines.items():
            segmentation = engine.segment(frame)
            counts[name].append(len(segmentation))
            for instance in instances:
                prompts = make_prompts(instance)
                for kind in PROMPT_KINDS:
                    answer = select(segmentation, prompts[kind]).union_mask(segmentation.image_shape)
                    scores[name][kind].append(iou(answer, instance.mask))
    ran = {name: engine.backend.precision for name, engine in engines.items()}
    methods = {name: {kind: round(float(np.mean(values)), 4) if values else 0.0 for kind, values in kinds.items()}
               for name, kinds in scores.items()}
    per_image = {name: round(float(np.mean(values)), 2) if values else 0.0 for name, values in counts.items()}
    drops = {kind: round(methods["fp32"][kind] - methods["int8"][kind], 4) for kind in PROMPT_KINDS}
    count_change = round(abs(per_image["int8"] - per_image["fp32"]) / max(per_image["fp32"], 1e-9), 4)
    return {
        "model": model, "frame": f"{FRAME_SIZE[0]}x{FRAME_SIZE[1]}", "images": len(counts["fp32"]),
        "instances": len(scores["fp32"]["box"]), "ran": ran, "methods": methods, "instances_per_image": per_image,
        "iou_drop": drops, "count_change": count_change,
        "agreement": _node_verdict(log),
        "targets": {
            "iou_within_0.01": ran["int8"] == "int8" and all(drop <= MAX_IOU_DROP for drop in drops.values()),
            "count_within_10pct": ran["int8"] == "int8" and count_change <= MAX_COUNT_CHANGE,
        },
    }


def _node_verdict(log: list[str]) -> str:
    """The node's own agreement check as it would judge it (the bar was lowered here only to score INT8)."""
    from fastsam_ros.segmentation import precision

    line = next((line for line in log if line.startswith("INT8 ")), "")
    if not line:
        return ""
    figures = line.split(": ", 1)[1].split(" (")[0]  # "matched mask IoU 0.892"
    iou = float(figures.rsplit(" ", 1)[1])
    change = float(line.split("instance count change ", 1)[1].split("%")[0]) / 100
    passed = iou >= precision.MIN_MATCHED_IOU and change <= precision.MAX_COUNT_CHANGE
    return (f"the node would {'run' if passed else 'refuse'} it: matched mask IoU {iou:.3f} (at least "
            f"{precision.MIN_MATCHED_IOU}), instance count change {change:.1%} (at most "
            f"{precision.MAX_COUNT_CHANGE:.0%}) on its 16 held-back images")


def format_table(report: dict[str, Any]) -> str:
    lines = [f"precision: {report['instances']} instances in {report['images']} images resized to {report['frame']}, "
             f"FP32 on ONNX Runtime, INT8 on OpenVINO; mean IoU of fastsam_ros selection, and instances per image",
             f"{'precision':<14}" + "".join(f"{kind:>10}" for kind in PROMPT_KINDS) + f"{'inst/img':>10}"]
    for name, values in report["methods"].items():
        shown = name if report["ran"][name] == name else f"{name} (ran {report['ran'][name]})"
        lines.append(f"{shown:<14}" + "".join(f"{values[kind]:>10.4f}" for kind in PROMPT_KINDS)
                     + f"{report['instances_per_image'][name]:>10.2f}")
    verdict = {True: "PASS", False: "FAIL"}
    lines.append(f"int8 IoU drop {report['iou_drop']} (at most {MAX_IOU_DROP}): "
                 f"{verdict[report['targets']['iou_within_0.01']]}; instance count change "
                 f"{report['count_change']:.1%} (at most {MAX_COUNT_CHANGE:.0%}): "
                 f"{verdict[report['targets']['count_within_10pct']]}")
    if report["agreement"]:
        lines.append(f"node's own check: {report['agreement']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.precision", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--limit", type=int)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    report = compare(args.data, args.model, args.limit)
    print(format_table(report))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
