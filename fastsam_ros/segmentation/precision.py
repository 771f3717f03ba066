"""Numeric precision of the CPU export (``precision``): true FP32, BF16 where the CPU computes it, or INT8 made by
post-training static quantization, calibrated on the user's images and checked against FP32 before it is used.

* **Calibration set**: the images of a folder (``calibration_images``), sorted by name; the last
  :data:`HELD_BACK` are kept out of calibration to check the result. Its digest (names and contents) keys the cached
  INT8 model, so another set quantizes again.
* **INT8**: NNCF's post-training quantization of the FP32 ONNX export into an OpenVINO model (8-bit weights per
  channel, asymmetric 8-bit activations, ranges from the calibration images), with the layers INT8 hurts most left
  in float (:func:`float_ops`); OpenVINO runs it, with the float layers in true FP32. ONNX Runtime's static
  quantization was slower (1.6x FP32 on the FastSAM-s-shaped network, with the layers its quality needed in float)
  (docs/performance.md).
* **Agreement**: INT8 against FP32 on the held-back images: each FP32 instance's best mask IoU among the INT8
  instances (mean over all instances), and how far the mean instance count per image moved (relative). Below
  :data:`MIN_MATCHED_IOU` or above :data:`MAX_COUNT_CHANGE` the INT8 model is refused, with these figures, and the
  node runs the best precision that passed: it never runs a degraded model silently.
* **auto**: every candidate that passed is timed on this machine and the fastest is kept (:func:`fastest`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
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
INT8_MODEL = "model_openvino_model"  # the INT8 model's folder (the suffix by which ultralytics knows OpenVINO)


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


def quantize(fp32: Path, folder: Path, inputs: Callable[[], Any]) -> Path:
    """Quantize the ONNX export ``fp32`` with ranges from ``inputs()`` (an iterable of NCHW float32 network inputs:
    the calibration images as the export sees them) into an OpenVINO model in ``folder``; returns the model's
    folder, which ultralytics loads like its own OpenVINO export. Raises ImportError without nncf or openvino."""
    import nncf
    import onnx
    import openvino
    import yaml

    nncf.set_log_level(logging.WARNING)  # else a line per float operation and progress bars on the node's output
    model = openvino.Core().read_model(str(fp32))
    ignored = float_ops([op.get_friendly_name() for op in model.get_ops()], head_inputs(fp32))
    data = [np.ascontiguousarray(batch, dtype=np.float32) for batch in inputs()]
    quantized = nncf.quantize(model, nncf.Dataset(data), preset=nncf.QuantizationPreset.MIXED, subset_size=len(data),
                              ignored_scope=nncf.IgnoredScope(names=ignored, validate=False))
    out = folder / INT8_MODEL
    out.mkdir(parents=True, exist_ok=True)
    openvino.save_model(quantized, str(out / "model.xml"), compress_to_fp16=False)
    # ultralytics reads the task, stride, size and class names from metadata.yaml: the ONNX export's, as it wrote them
    metadata = {entry.key: entry.value for entry in onnx.load(str(fp32), load_external_data=False).metadata_props}
    (out / "metadata.yaml").write_text(yaml.safe_dump(metadata, sort_keys=False))
    return out


_MODULE = re.compile(r"^/model\.(\d+)/")
# In the head, what stays INT8: its convolutions (box, class and mask-coefficient branches, the prototypes and their
# upsampling); the rest is decoding and activations.
_HEAD_INT8 = re.compile(r"/(cv\d\.\d+/cv\d\.\d+\.\d+/conv|cv\d\.\d+/cv\d\.\d+\.2|proto/cv\d/conv|proto/upsample)/")


def head_inputs(fp32: Path) -> tuple[int, set[int]]:
    """``(head, feeding)``: the index of the ONNX export's last module (the segment head) and of the modules whose
    outputs it reads (ultralytics names nodes ``/model.<index>/...``)."""
    import onnx

    graph = onnx.load(str(fp32), load_external_data=False).graph
    made_by = {output: int(match.group(1)) for node in graph.node if (match := _MODULE.match(node.name))
               for output in node.output}
    modules = {made_by[output] for output in made_by}
    if not modules:
        return -1, set()
    head = max(modules)
    in_head = [node for node in graph.node if (match := _MODULE.match(node.name)) and int(match.group(1)) == head]
    feeding = {made_by[name] for node in in_head for name in node.input if made_by.get(name, head) != head}
    return head, feeding


def float_ops(names: Sequence[str], head_and_feeding: tuple[int, set[int]]) -> list[str]:
    """The operations left in float: where INT8 cost the most accuracy for the least time (measured on the stand-in
    with ``make eval`` and on the FastSAM-s-shaped network with ``make bench``).

    Kept in float: the stem (modules 0-2, which see the raw image), the head's coarsest input (the last module it
    reads: the neck's block at the lowest resolution, cheap in float), and in the head everything but its
    convolutions (the decoding: its output mixes 0..1 scores and pixel coordinates, and one 8-bit scale for both
    turned every score to zero). Measured (box / point / point_bg IoU drop against FP32, target 0.01; INT8 against
    true FP32 on the FastSAM-s-shaped network): this set 0.006 / 0.009 / 0.009, 2.3x; all three blocks the head
    reads in float 0.007 / 0.009 / 0.009, 2.0x; the stem alone 0.011 / 0.011 / 0.011, 2.4x (docs/performance.md).
    """
    head, feeding = head_and_feeding
    coarsest = max(feeding, default=-1)
    kept = []
    for name in names:
        match = _MODULE.match(name)
        if match is None:
            continue
        module = int(match.group(1))
        if module < 3 or module == coarsest or (module == head and not _HEAD_INT8.search(name + "/")):
            kept.append(name)
    return kept


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
