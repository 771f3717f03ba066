"""Which precision the CPU export runs in, decided once per export and cached beside it (``precision``).

``fp32`` keeps the export as made. ``bf16`` recompiles an OpenVINO export with that inference precision where the
CPU computes bf16 (AVX512-BF16 or AMX); asked for by name it runs, under ``auto`` only after the same agreement
check as INT8 (so never without calibration images: bf16 moved masks to a mean IoU of 0.986). ``int8`` quantizes
the ONNX export with the calibration images (:mod:`fastsam_ros.segmentation.precision`) and runs it on OpenVINO
(whichever runtime runs FP32) if it agrees with FP32. ``auto`` prepares every candidate this machine and the
calibration folder allow, times each on a held-back image, and runs the fastest that passed; the table goes to the
log. The INT8 model, its agreement and the choice are cached in the ONNX export's folder, keyed by the calibration
set's digest, so a later start loads the choice without timing again.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastsam_ros.segmentation import precision as precisions
from fastsam_ros.segmentation.backends import configure_runtime
from fastsam_ros.types import Segmentation

TIMED_RUNS = 8
BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_bf16(cpuinfo: str | None = None) -> bool:
    """Whether the CPU computes bf16 natively (flags of /proc/cpuinfo; False where it cannot be read)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = set(cpuinfo.split())
    return any(flag in flags for flag in BF16_FLAGS)


class PrecisionChoice:
    """Picks and prepares the precision of one export (the engine's :class:`BackendSwitch` asks once per shape)."""

    def __init__(self, asked: str, calibration_images: str, load: Callable[[Path, tuple[int, int]], Any],
                 segment_with: Callable[[Any, Any], Segmentation], log: Callable[[str], None],
                 bf16: bool | None = None) -> None:
        """``load(path, shape)``: an export as an ultralytics model; ``segment_with(model, image)``: its
        segmentation of one BGR image."""
        if asked not in precisions.PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(precisions.PRECISIONS)}, got {asked!r}")
        self.asked = asked
        self._calibration = calibration_images
        self._load = load
        self._segment_with = segment_with
        self._log = log
        self._bf16 = cpu_has_bf16() if bf16 is None else bf16
        self.timings: dict[str, float | None] = {}  # what auto measured (the bench reports it)
        self.agreement: precisions.Agreement | None = None

    def choose(self, fp32_model: Any, fp32_path: Path, shape: tuple[int, int],
               onnx_path: Callable[[], Path]) -> tuple[Any, str, Path]:
        """``(model, precision, path)`` to run for this export; ``onnx_path()`` makes or finds the ONNX export."""
        if self.asked == "fp32":
            return fp32_model, "fp32", fp32_path
        candidates: dict[str, tuple[Any, Path]] = {"fp32": (fp32_model, fp32_path)}
        notes: dict[str, str] = {}
        calibration = self._calibration_set(notes)
        if self.asked in ("auto", "bf16"):
            self._add_bf16(candidates, notes, fp32_model, fp32_path, shape, calibration)
        if self.asked in ("auto", "int8") and calibration is not None:
            self._add_int8(candidates, notes, fp32_model, shape, onnx_path, calibration)
        wanted = [name for name in ("bf16", "int8") if name == self.asked] or list(candidates)
        usable = [name for name in wanted if name in candidates]
        if self.asked != "auto":
            chosen = usable[0] if usable else "fp32"
            if not usable:
                self._log(f"precision {self.asked} refused, running fp32: {notes.get(self.asked, '')}")
        elif len(candidates) == 1:
            chosen = "fp32"
            self._log("precision auto: fp32, the only candidate here ("
                      + "; ".join(f"{name}: {note}" for name, note in notes.items()) + ")")
        else:
            chosen = self._fastest(candidates, notes, calibration, onnx_path)
        model, path = candidates[chosen]
        return model, chosen, path

    def _calibration_set(self, notes: dict) -> precisions.CalibrationSet | None:
        """The calibration folder's images, or None with the reason noted for the candidates that need them."""
        reason = "no calibration_images folder to calibrate and check with"
        if self._calibration:
            try:
                return precisions.CalibrationSet.from_folder(self._calibration)
            except precisions.CalibrationError as error:
                reason = str(error)
        notes["int8"] = reason
        if self.asked == "auto":
            notes["bf16"] = f"auto runs bf16 only once checked against fp32: {reason}"
        return None

    def _add_bf16(self, candidates: dict, notes: dict, fp32_model: Any, fp32_path: Path, shape: tuple[int, int],
                  calibration: precisions.CalibrationSet | None) -> None:
        if not fp32_path.is_dir():  # an OpenVINO export is a folder
            notes["bf16"] = "bf16 runs on OpenVINO exports only (ONNX Runtime's CPU kernels have none)"
        elif not self._bf16:
            notes["bf16"] = "this CPU computes no bf16 (no AVX512-BF16 or AMX)"
        elif self.asked == "bf16" or calibration is not None:
            model = self._load(fp32_path, shape)
            configure_runtime(model, fp32_path, 0, "bf16")
            if self.asked == "bf16":
                candidates["bf16"] = (model, fp32_path)
                return
            agreement = self._agreement(fp32_model, model, calibration.check)
            self._log(agreement.describe().replace("INT8", "bf16"))
            if agreement.passed:
                candidates["bf16"] = (model, fp32_path)
            else:
                notes["bf16"] = agreement.describe().replace("INT8", "bf16")

    def _agreement(self, fp32_model: Any, model: Any, images: Any) -> precisions.Agreement:
        return precisions.agreement([(self._segment_with(fp32_model, image), self._segment_with(model, image))
                                     for image in _images(images)])

    def _add_int8(self, candidates: dict, notes: dict, fp32_model: Any, shape: tuple[int, int],
                  onnx_path: Callable[[], Path], calibration: precisions.CalibrationSet) -> None:
        notes.pop("int8", None)
        folder = onnx_path().parent / f"int8-{calibration.digest}"
        int8_path = folder / precisions.INT8_MODEL
        if not (int8_path / "model.xml").exists():
            started = time.perf_counter()
            self._log(f"quantizing to INT8 with {len(calibration.calibrate)} images of {self._calibration}...")
            try:
                precisions.quantize(onnx_path(), folder, lambda: self._network_inputs(fp32_model, calibration))
            except ImportError as error:
                notes["int8"] = f"INT8 needs nncf and openvino (pip install nncf openvino): {error}"
                self._log(f"precision int8 unavailable: {notes['int8']}")
                return
            self._log(f"quantized in {time.perf_counter() - started:.1f} s: {int8_path}")
        int8_model = self._load(int8_path, shape)
        agreement_file = folder / "agreement.json"
        if agreement_file.exists():
            agreement = precisions.Agreement.from_json(agreement_file.read_text())
        else:
            agreement = self._agreement(fp32_model, int8_model, calibration.check)
            agreement_file.write_text(agreement.to_json())
        self.agreement = agreement
        self._log(agreement.describe())
        if agreement.passed:
            candidates["int8"] = (int8_model, int8_path)
        else:
            notes["int8"] = agreement.describe()

    @staticmethod
    def _network_inputs(model: Any, calibration: precisions.CalibrationSet) -> Any:
        """The calibration images as the export's input tensors (ultralytics' own letterbox and scaling)."""
        for image in _images(calibration.calibrate):
            yield model.predictor.preprocess([image]).cpu().numpy()

    def _fastest(self, candidates: dict, notes: dict, calibration: precisions.CalibrationSet | None,
                 onnx_path: Callable[[], Path]) -> str:
        """Time every candidate (or read the choice cached for this calibration set) and keep the fastest."""
        cache = onnx_path().parent / "precision.json" if "int8" in candidates or calibration is not None else None
        key = f"{calibration.digest if calibration else '-'}:{','.join(sorted(candidates))}"
        cached = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
        if key in cached and cached[key]["precision"] in candidates:
            self.timings = cached[key]["timings"]
            self._log(f"precision auto: {cached[key]['precision']} (chosen at an earlier start; {cache})")
            return cached[key]["precision"]
        frame = next(iter(_images(calibration.check)), None) if calibration else None
        if frame is None:
            import numpy as np

            frame = np.full((480, 640, 3), 114, dtype=np.uint8)
        self.timings = {name: self._time(model, frame) for name, (model, _) in candidates.items()}
        for name in ("bf16", "int8"):
            self.timings.setdefault(name, None)
        allowed = {name: name in candidates for name in self.timings}
        chosen = precisions.fastest(self.timings, allowed)
        self._log(f"precision auto: {chosen}, the fastest that may run (median of {TIMED_RUNS} runs):\n"
                  f"{precisions.table(self.timings, allowed, notes)}")
        if cache is not None:
            cached[key] = {"precision": chosen, "timings": self.timings}
            cache.write_text(json.dumps(cached, indent=1))
        return chosen

    def _time(self, model: Any, frame: Any) -> float:
        self._segment_with(model, frame)  # its first run pays for lazy setup
        times = []
        for _ in range(TIMED_RUNS):
            started = time.perf_counter()
            self._segment_with(model, frame)
            times.append((time.perf_counter() - started) * 1000.0)
        return round(statistics.median(times), 2)


def _images(paths: Any) -> Any:
    import cv2

    for path in paths:
        image = cv2.imread(str(path))
        if image is not None:
            yield image
