"""The fast path at run time: the engine's PyTorch model swapped for a cached export of the frame's shape, or
back to PyTorch with one log line when that cannot run."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fastsam_ros.segmentation.backends import BackendInfo, Plan, Probe, configure_runtime, letterbox_shape
from fastsam_ros.segmentation.export_cache import ExportCache, ExportFailed, ExportKey, file_sha256
from fastsam_ros.segmentation.precision_choice import PrecisionChoice


class BackendSwitch:
    """PyTorch for every frame, except frames of the first frame's letterbox shape: those run the cached export.

    ``model_for(image_shape)`` returns the ultralytics model to call and whether to ask for FP16. The first call
    exports (first start) or loads (later starts) the export; a failure is logged once and PyTorch carries on.
    ``preload`` (the engine's warm-up) loads the newest cached export of the checkpoint ahead of the first frame.
    """

    def __init__(self, pytorch_model: Any, plan: Plan, *, machine: Probe, imgsz: int, device: str,
                 cpu_threads: int, cache: ExportCache, log: Callable[[str], None],
                 predict: Callable[[Any, bool, Any], Any], precision: tuple[str, str, Any] | None = None) -> None:
        """``precision``: ``(asked, calibration folder, segment_with(model, image))`` for a CPU export, which
        :class:`PrecisionChoice` turns into the export's precision (FP32 when None)."""
        self._pytorch = pytorch_model
        self._precision = None if precision is None else PrecisionChoice(
            precision[0], precision[1], self._load_export, precision[2], log)
        # the engine's own prediction (model, half, image): the export's first run builds the same predictor the
        # engine uses (ultralytics rebuilds it, runtime session included, when the predictor class changes)
        self._predict = predict
        self._plan = plan
        self._machine = machine
        self._imgsz = imgsz
        self._device = device
        self._cpu_threads = cpu_threads
        self._cache = cache
        self._log = log
        self._shape: tuple[int, int] | None = None
        self._exported: Any = None
        self._preloaded = False  # _shape came from the cache, not from a frame: the first frame may replace it
        self._retired: list[Any] = []  # a preloaded export the first frame replaced
        self._sha = ""
        self._other_shapes: set[tuple[int, int]] = set()
        # PyTorch until the first frame's export is loaded (or the model as given, when it is an export)
        self.info = BackendInfo("pytorch" if plan.export else plan.backend, plan.half, reason=plan.reason)

    @property
    def pytorch_half(self) -> bool:
        """FP16 for the PyTorch model (CUDA only: ultralytics runs FP32 on the CPU whatever it is asked)."""
        return self._plan.half

    def preload(self) -> None:
        """Load the newest cached export of this checkpoint before any frame (a later start, at configure).

        The first real frame still decides: of another shape, it gets that shape's export instead.
        """
        if not self._plan.export or self._shape is not None:
            return
        try:
            shapes = self._cache.shapes(self._key((0, 0)))
        except OSError:
            return
        if shapes:
            self._shape, self._preloaded = shapes[0], True
            self._exported = self._load(shapes[0])

    def model_for(self, image_shape: tuple[int, ...]) -> tuple[Any, bool]:
        if not self._plan.export:
            return self._pytorch, self._plan.half
        stride = int(max(self._pytorch.model.stride))
        shape = letterbox_shape((int(image_shape[0]), int(image_shape[1])), self._imgsz, stride)
        if self._preloaded:
            self._preloaded = False
            if shape != self._shape:  # the camera changed since the export was made
                # Kept, not destroyed: tearing down a compiled runtime model while the process runs on crashed
                # with SIGSEGV under `make test` (one model of memory, once per start).
                self._retired.append(self._exported)
                self._shape, self._exported = None, None
                self.info = BackendInfo("pytorch", self._plan.half, reason=self._plan.reason)
        if self._shape is None:
            self._shape = shape
            self._exported = self._load(shape)
        if shape == self._shape and self._exported is not None:
            return self._exported, self._plan.half
        if shape != self._shape and shape not in self._other_shapes:
            self._other_shapes.add(shape)
            self._log(f"frames of letterbox shape {shape[0]}x{shape[1]} run on PyTorch: the {self._plan.backend} "
                      f"export serves {self._shape[0]}x{self._shape[1]}, the first frame's")
        return self._pytorch, self._plan.half

    def _key(self, shape: tuple[int, int]) -> ExportKey:
        if not self._sha:
            self._sha = file_sha256(Path(self._pytorch.ckpt_path))
        return ExportKey.make(self._sha, self._plan, shape, self._machine)

    def _load(self, shape: tuple[int, int]) -> Any:
        plan = self._plan
        checkpoint = Path(self._pytorch.ckpt_path)
        try:
            key = self._key(shape)
            if not (self._cache.root / key.entry_name(checkpoint.stem) / "key.json").exists():
                self._log(f"exporting {checkpoint.name} to {plan.backend} at {shape[0]}x{shape[1]} once "
                          f"(cached in {self._cache.root})...")
            hit = self._cache.get(checkpoint, key, self._device)
            started = time.perf_counter()
            try:
                model = self._load_export(hit.path, shape)
            except Exception as error:
                if hit.made:
                    raise
                self._log(f"the cached export {hit.path} does not load ({error.__class__.__name__}: {error}): "
                          f"exporting {checkpoint.name} to {plan.backend} again...")
                self._cache.discard(checkpoint, key)
                hit = self._cache.get(checkpoint, key, self._device)
                started = time.perf_counter()
                model = self._load_export(hit.path, shape)
            load_s = time.perf_counter() - started
        except Exception as error:  # ExportFailed, or a runtime that cannot load what was exported
            reason = str(error) if isinstance(error, ExportFailed) else f"{error.__class__.__name__}: {error}"
            self._log(f"{plan.backend} export unavailable, running PyTorch: {reason}")
            self.info = dataclasses.replace(self.info, reason=f"{plan.reason}; failed: {reason}")
            return None
        threads = configure_runtime(model, hit.path, self._cpu_threads)
        precision, path = "fp16" if self._machine.cuda and plan.half else "fp32", hit.path
        if self._precision is not None:  # a CPU export: FP32 as exported, or what the choice prepared
            exported = model
            model, precision, path = self._precision.choose(model, hit.path, shape, self._onnx_export(shape))
            if model is not exported:
                threads = configure_runtime(model, path, self._cpu_threads, precision)
        if self._cpu_threads > 0 and not self._machine.cuda:  # the export's predictor reset torch's threads
            import torch

            torch.set_num_threads(self._cpu_threads)
        runtime = plan.backend if path == hit.path else "openvino"  # INT8 is an OpenVINO model, whatever FP32 runs on
        self.info = BackendInfo(runtime, plan.half, shape, str(path), hit.made,
                                round(hit.export_s, 2), round(load_s, 2), threads, plan.reason, precision)
        first = f"exported in {hit.export_s:.1f} s (first start), " if hit.made else "found in the cache, "
        chosen = "" if path == hit.path else f"; running {runtime} {precision} from {path}"
        self._log(f"running {plan.backend} at {shape[0]}x{shape[1]}: {first}loaded in {load_s:.1f} s from {hit.path}"
                  f"{chosen}")
        return model

    def _onnx_export(self, shape: tuple[int, int]) -> Callable[[], Path]:
        """The ONNX export of ``shape``, made on demand (INT8 is quantized from it, whatever the backend)."""
        def get() -> Path:
            plan = dataclasses.replace(self._plan, backend="onnx", half=False)
            key = ExportKey.make(self._key(shape).checkpoint_sha256, plan, shape, self._machine)
            return self._cache.get(Path(self._pytorch.ckpt_path), key, self._device).path

        return get

    def _load_export(self, path: Path, shape: tuple[int, int]) -> Any:
        import numpy as np
        from ultralytics import FastSAM

        model = FastSAM(str(path))
        self._predict(model, self._plan.half, np.zeros((*shape, 3), dtype=np.uint8))  # its predictor; it runs
        return model
