"""All-instance segmentation: the only module that touches ultralytics.

``FastSAMEngine`` loads a FastSAM checkpoint (``.pt``, ``.onnx``, TensorRT ``.engine`` or an OpenVINO
export folder) through ``ultralytics.FastSAM`` and turns each prediction into a :class:`Segmentation`
that keeps masks at network resolution.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_ros import backends
from fastsam_ros.masks import MaskGeometry
from fastsam_ros.types import Segmentation, Timings

DEFAULT_MODEL = "FastSAM-s.pt"
DOWNLOADABLE_MODELS = ("FastSAM-s.pt", "FastSAM-x.pt", "FastSAM.pt")
EXPORT_SUFFIXES = (".pt", ".onnx", ".engine")


class ModelLoadError(RuntimeError):
    """The model could not be loaded; the message names the path and what to do."""


@dataclass(frozen=True)
class EngineConfig:
    """Inference settings, passed through to ultralytics (FastSAM's published defaults for conf/iou)."""

    model: str = DEFAULT_MODEL
    device: str = "cpu"  # "cpu", "cuda:0", "0", ...
    half: bool = False  # FP16, CUDA only
    imgsz: int = 640
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 100
    cpu_threads: int = 0  # CPU inference threads of every backend; 0 keeps each one's default
    backend: str = "auto"  # see fastsam_ros/backends.py: "pytorch" turns the cached export off
    export_cache: str = ""  # "" is $XDG_CACHE_HOME/fastsam_ros or ~/.cache/fastsam_ros


def _configure_ultralytics_offline_defaults() -> None:
    """Keep ultralytics from writing to ~/.config or probing the network unless the user asked for it."""
    os.environ.setdefault("YOLO_VERBOSE", "False")


def resolve_model(model: str) -> str:
    """Check that ``model`` is loadable before ultralytics sees it, so failures read clearly.

    An existing file or export folder is used as is; a bare FastSAM name that is not a local file is
    left for ultralytics to download (the normal path on a robot with internet).
    """
    path = Path(model).expanduser()
    if path.exists():
        if path.is_dir() and not path.name.endswith("_openvino_model"):
            raise ModelLoadError(f"model folder {path} is not an OpenVINO export (expected a *_openvino_model folder)")
        if path.is_file() and path.suffix not in EXPORT_SUFFIXES:
            raise ModelLoadError(f"model file {path} has suffix {path.suffix!r}; expected one of {EXPORT_SUFFIXES}")
        return str(path)
    if model in DOWNLOADABLE_MODELS:
        return model
    raise ModelLoadError(
        f"model file {path} does not exist. Set the model to an existing FastSAM checkpoint or export "
        f"(.pt, .onnx, .engine, *_openvino_model/), or to one of {', '.join(DOWNLOADABLE_MODELS)} "
        "on a machine with internet, where ultralytics downloads it."
    )


class FastSAMEngine:
    """One loaded FastSAM model; ``segment`` is the all-instance stage. Not thread-safe: one caller at a time."""

    def __init__(self, config: EngineConfig = EngineConfig(), log: Callable[[str], None] | None = None) -> None:
        _configure_ultralytics_offline_defaults()
        self.config = config
        source = resolve_model(config.model)
        try:
            from ultralytics import FastSAM

            self._model = FastSAM(source)
        except Exception as error:  # ultralytics raises many kinds; users need one clear message
            hint = (
                "ultralytics could not download it: without internet, copy the checkpoint to this machine "
                "and set the model to its path"
                if source in DOWNLOADABLE_MODELS
                else "the file may be corrupt or from an incompatible ultralytics version"
            )
            reason = f"{error.__class__.__name__}: {error}"
            raise ModelLoadError(f"could not load model {source!r}: {reason}. {hint}") from error
        self._threads_applied = config.cpu_threads <= 0
        self._backends = _backend_switch(self._model, config, log or logging.getLogger("fastsam_ros").info)
        self._last_model = self._model

    @property
    def backend(self) -> backends.BackendInfo:
        """What runs the network (an export is loaded on the first frame; PyTorch until then)."""
        return self._backends.info

    def predict_raw(self, image_bgr: np.ndarray) -> Any:
        """The ultralytics ``Results`` for one BGR image (the evaluation's reference rules need them)."""
        check_image(image_bgr)
        model, half = self._backends.model_for(image_bgr.shape)
        return self._predict(model, half, image_bgr)

    def _predict(self, model: Any, half: bool, image_bgr: np.ndarray) -> Any:
        config = self.config
        results = model.predict(
            image_bgr, device=config.device, imgsz=config.imgsz, conf=config.conf, iou=config.iou,
            max_det=config.max_det, retina_masks=False, verbose=False,
            **({"half": True} if half else {}),  # passing half=False makes new ultralytics warn per call
        )
        self._last_model = model
        if not self._threads_applied:  # after the first call: ultralytics resets the threads when it picks the device
            import torch

            torch.set_num_threads(config.cpu_threads)
            self._threads_applied = True
        return results[0]

    def segment(self, image_bgr: np.ndarray) -> Segmentation:
        """Every instance in one ``HxWx3`` uint8 BGR image."""
        return segmentation_from_result(self.predict_raw(image_bgr))

    def warmup(self) -> None:
        """Run PyTorch once on a blank frame so the first real frame does not pay for lazy setup.

        An export cached by an earlier start is loaded (and run once) here too; a first start exports on the first
        real frame, whose shape it needs.
        """
        self._backends.preload()
        blank = np.zeros((self.config.imgsz // 2, self.config.imgsz, 3), dtype=np.uint8)
        segmentation_from_result(self._predict(self._model, self._backends.pytorch_half, blank))

    @property
    def predictor(self) -> Any:
        """ultralytics' ``FastSAMPredictor`` of the model that ran last (available after the first prediction)."""
        return self._last_model.predictor


def _backend_switch(model: Any, config: EngineConfig, log: Callable[[str], None]) -> backends.BackendSwitch:
    """Choose the backend for this machine and log the choice (see :mod:`fastsam_ros.backends`)."""
    machine = backends.probe(config.device)
    if Path(str(model.ckpt_path)).suffix == ".pt":
        plan = backends.choose(config.backend, config.half, machine)
        if not plan.export and config.backend != "pytorch":
            log(plan.reason)
    else:
        plan = backends.Plan(backends.backend_of(Path(str(model.ckpt_path))), config.half, "the model is an export")
    cache = backends.ExportCache(Path(config.export_cache) if config.export_cache else backends.default_cache_dir())
    return backends.BackendSwitch(model, plan, machine=machine, imgsz=config.imgsz, device=config.device,
                                  cpu_threads=config.cpu_threads, cache=cache, log=log)


def check_image(image: np.ndarray) -> None:
    """Reject anything that is not a non-empty ``HxWx3`` uint8 image, with the reason."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {shape} dtype {dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size {image.shape[1]}x{image.shape[0]}")


def segmentation_from_result(result: Any) -> Segmentation:
    """Convert one ultralytics ``Results`` into a :class:`Segmentation` (masks move to the CPU as bool)."""
    image_shape = (int(result.orig_shape[0]), int(result.orig_shape[1]))
    speed = result.speed or {}
    timings = Timings(
        preprocess_ms=float(speed.get("preprocess") or 0.0),
        inference_ms=float(speed.get("inference") or 0.0),
        postprocess_ms=float(speed.get("postprocess") or 0.0),
    )
    if result.masks is None or len(result) == 0:
        geometry = MaskGeometry(image_shape, image_shape)
        return Segmentation(
            masks=np.zeros((0, *image_shape), dtype=bool), boxes=np.zeros((0, 4), dtype=np.float32),
            scores=np.zeros(0, dtype=np.float32), areas=np.zeros(0, dtype=np.int64), geometry=geometry, timings=timings,
        )
    masks = binary_masks(result.masks.data)
    geometry = MaskGeometry(image_shape, (int(masks.shape[1]), int(masks.shape[2])))
    return Segmentation(
        masks=masks,
        boxes=result.boxes.xyxy.float().cpu().numpy().copy(),  # on CPU .numpy() would share the Results' memory
        scores=result.boxes.conf.float().cpu().numpy().copy(),
        areas=estimated_areas(masks, geometry),
        geometry=geometry,
        timings=timings,
    )


def binary_masks(data: Any) -> np.ndarray:
    """ultralytics' ``(N, h, w)`` mask tensor as a bool array, without a copy where it already is 0/1 uint8.

    ultralytics >= 8.3 thresholds masks into uint8 0/1 itself (``process_mask``); on the CPU the bool view
    shares that memory (thresholding again cost ~1 ms per instance). Float masks of older versions are
    thresholded at 0.5.
    """
    array = data.cpu().numpy()
    return array.view(bool) if array.dtype == np.uint8 else array > 0.5


def estimated_areas(masks: np.ndarray, geometry: MaskGeometry) -> np.ndarray:
    """Instance areas in image pixels, estimated from network-resolution masks.

    Counts only cells over the image (instances at the border spill into the letterbox padding), each worth
    (H / content_h) x (W / content_w) image pixels: within ~0.5 % of the upsampled mask's pixel count.
    One ``count_nonzero`` per mask: a reduction over axes (1, 2) is ~10x slower in numpy and ~60x in torch.
    """
    left, top, content_w, content_h = geometry.content
    cells = np.array([np.count_nonzero(mask[top : top + content_h, left : left + content_w]) for mask in masks],
                     dtype=np.float64)
    scale = geometry.image_shape[0] * geometry.image_shape[1] / (content_w * content_h)
    return np.rint(cells * scale).astype(np.int64)
