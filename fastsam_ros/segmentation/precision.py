"""Numeric precision of the CPU export (``precision``): true FP32, BF16 where the CPU computes it, or INT8 made by
post-training static quantization, calibrated on the user's images and checked against FP32 before it is used.

* **Calibration set**: the images of a folder (``calibration_images``), sorted by name; the last
  :data:`HELD_BACK` are kept out of calibration to check the result. Its digest (names and contents) keys the cached
  INT8 model, so another set quantizes again.
* **INT8**: ONNX Runtime's ``quantize_static`` of the FP32 ONNX export (QDQ: per-channel signed 8-bit weights,
  unsigned 8-bit activations, min-max ranges from the calibration images), with the layers INT8 hurts most left in
  float (:func:`float_nodes`). ONNX Runtime runs it as is; OpenVINO reads the same QDQ graph.
* **Agreement**: INT8 against FP32 on the held-back images: each FP32 instance's best mask IoU among the INT8
  instances (mean over all instances), and how far the mean instance count per image moved (relative). Below
  :data:`MIN_MATCHED_IOU` or above :data:`MAX_COUNT_CHANGE` the INT8 model is refused, with these figures, and the
  node runs the best precision that passed: it never runs a degraded model silently.
* **auto**: every candidate that passed is timed on this machine and the fastest is kept (:func:`fastest`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_ros.types import Segmentation

PRECISIONS = ("auto", "fp32", "bf16", "int8")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
HELD_BACK = 16  # images of the calibration folder kept out of calibration, to check INT8 against FP32
MIN_CALIBRATION = 8
# An INT8 model runs only if it finds FP32's instances (mean best-match mask IoU) and as many of them. Measured with the
# stand-in on the dev set (make eval's precision rows): a check of 0.89 came with selection IoU 0.02-0.036 below FP32,
# a visible loss, so the bar is above it.
MIN_MATCHED_IOU = 0.90
MAX_COUNT_CHANGE = 0.10


class CalibrationError(ValueError):
    """The calibration folder cannot calibrate (missing, too few images); the message says why."""


@dataclass(frozen=True)
class CalibrationSet:
    """The images of one calibration folder: those that calibrate, those that check, and the digest of all."""

    calibrate: tuple[Path, ...]
    check: tuple[Path, ...]
    digest: str

    @classmethod
    def from_folder(cls, folder: str | Path, held_back: int = HELD_BACK) -> CalibrationSet:
        root = Path(folder)
        if not root.is_dir():
            raise CalibrationError(f"calibration_images {str(folder)!r} is not a folder of images")
        images = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        if len(images) < MIN_CALIBRATION + held_back:
            raise CalibrationError(f"calibration_images {str(folder)!r} has {len(images)} images; INT8 needs at "
                                   f"least {MIN_CALIBRATION + held_back} ({held_back} are held back to check it)")
        digest = hashlib.sha256()
        for path in images:
            digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
        return cls(tuple(images[:-held_back]), tuple(images[-held_back:]), digest.hexdigest()[:16])


@dataclass(frozen=True)
class Agreement:
    """INT8 against FP32 on the held-back images, and whether INT8 may run."""

    matched_iou: float  # mean over the FP32 instances of their best mask IoU among the INT8 instances
    count_change: float  # |INT8's mean instance count per image - FP32's| / FP32's
    instances_fp32: int
    instances_int8: int
    images: int

    @property
    def passed(self) -> bool:
        return self.matched_iou >= MIN_MATCHED_IOU and self.count_change <= MAX_COUNT_CHANGE

    def describe(self) -> str:
        verdict = "passes" if self.passed else "REFUSED"
        return (f"INT8 {verdict} against FP32 on {self.images} held-back images: matched mask IoU "
                f"{self.matched_iou:.3f} (at least {MIN_MATCHED_IOU}), instance count change {self.count_change:.1%} "
                f"(at most {MAX_COUNT_CHANGE:.0%}); {self.instances_fp32} vs {self.instances_int8} instances")

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> Agreement:
        return cls(**json.loads(text))


def matched_iou(reference: Segmentation, candidate: Segmentation) -> list[float]:
    """Each ``reference`` instance's best mask IoU among ``candidate``'s (0 where it has none), at mask resolution."""
    if len(reference) == 0:
        return []
    if len(candidate) == 0 or reference.geometry.mask_shape != candidate.geometry.mask_shape:
        return [0.0] * len(reference)
    a = reference.masks.dense().reshape(len(reference), -1).astype(np.float32)
    b = candidate.masks.dense().reshape(len(candidate), -1).astype(np.float32)
    intersection = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - intersection
    return np.max(intersection / np.maximum(union, 1.0), axis=1).tolist()


def agreement(pairs: Sequence[tuple[Segmentation, Segmentation]]) -> Agreement:
    """:class:`Agreement` of ``(fp32, int8)`` segmentations of the same images."""
    ious = [iou for fp32, int8 in pairs for iou in matched_iou(fp32, int8)]
    counted_fp32, counted_int8 = sum(len(fp32) for fp32, _ in pairs), sum(len(int8) for _, int8 in pairs)
    return Agreement(matched_iou=round(float(np.mean(ious)) if ious else 1.0, 4),
                     count_change=round(abs(counted_int8 - counted_fp32) / max(counted_fp32, 1), 4),
                     instances_fp32=counted_fp32, instances_int8=counted_int8, images=len(pairs))


def quantize_onnx(fp32: Path, int8: Path, inputs: Callable[[], Any]) -> None:
    """Write ``int8``: ``fp32`` statically quantized (QDQ) with ranges from ``inputs()``, an iterable of NCHW float32
    network inputs (the calibration images as the export sees them)."""
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    graph = onnx.load(str(fp32), load_external_data=False).graph
    name = graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(inputs())

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {name: np.ascontiguousarray(batch, dtype=np.float32)}

    int8.parent.mkdir(parents=True, exist_ok=True)
    quantize_static(str(fp32), str(int8), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=float_nodes(graph))
    # ultralytics reads the task, stride, size and class names from the ONNX metadata: carry it over
    source, quantized = onnx.load(str(fp32), load_external_data=False), onnx.load(str(int8))
    del quantized.metadata_props[:]
    quantized.metadata_props.extend(source.metadata_props)
    onnx.save(quantized, str(int8))


def float_nodes(graph: Any) -> list[str]:
    """The nodes left in float: INT8 cost the most accuracy there (measured on the stand-in with ``make eval``).

    ultralytics names nodes ``/model.<index>/...``. Kept in float: the last module's decoding (the segment head's
    non-convolutions: its output mixes 0..1 scores and pixel coordinates, and one 8-bit scale for both turned every
    score to zero), the stem (the first three modules, which see the raw image) and the neck's C2f/C3k2 blocks (the
    modules after the backbone's SPPF that have a ``cv1``), whose features the head reads. Quantizing everything but
    the head's decoding cost 0.036 box IoU; with these in float the drop was 0.009 (docs/performance.md).
    """
    modules: dict[int, list[Any]] = {}
    for node in graph.node:
        parts = node.name.split("/")
        if len(parts) > 2 and parts[1].startswith("model.") and parts[1][6:].isdigit():
            modules.setdefault(int(parts[1][6:]), []).append(node)
    if not modules:
        return []
    head = max(modules)
    pooled = [index for index, nodes in modules.items() if any(node.op_type == "MaxPool" for node in nodes)]
    neck_start = min(pooled) if pooled else head // 2
    float_modules = {index for index in modules if index < 3} | {
        index for index in range(neck_start + 1, head) if any("/cv1/" in node.name for node in modules.get(index, []))}
    kept = [node.name for index in sorted(float_modules) for node in modules[index]]
    return kept + [node.name for node in modules[head] if node.op_type != "Conv"]


def fastest(timings: dict[str, float | None], allowed: dict[str, bool]) -> str:
    """The precision with the smallest time among those ``allowed`` (FP32 always is); ties go to the first."""
    usable = {name: ms for name, ms in timings.items() if ms is not None and allowed.get(name, name == "fp32")}
    if not usable:
        return "fp32"
    return min(usable, key=lambda name: usable[name])


def table(timings: dict[str, float | None], allowed: dict[str, bool], notes: dict[str, str]) -> str:
    """One line per candidate for the log: its time, whether it may run, and why not."""
    lines = []
    for name, ms in timings.items():
        figure = f"{ms:.1f} ms" if ms is not None else "not run"
        lines.append(f"  {name:<5} {figure:>10}  {'ok' if allowed.get(name, name == 'fp32') else 'refused'}"
                     f"{': ' + notes[name] if notes.get(name) else ''}")
    return "\n".join(lines)
