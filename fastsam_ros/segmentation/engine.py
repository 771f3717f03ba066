"""All-instance segmentation: the only module that touches ultralytics.

``FastSAMEngine`` loads a FastSAM checkpoint (``.pt``, ``.onnx``, TensorRT ``.engine`` or an OpenVINO
export folder) through ``ultralytics.FastSAM`` and turns each prediction into a :class:`Segmentation`
that keeps masks at network resolution.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_ros.segmentation import backends, export_cache, fast_path
from fastsam_ros.segmentation.instance_masks import InstanceMasks, compile_kernels
from fastsam_ros.segmentation.mask_set import DenseMasks
from fastsam_ros.segmentation.masks import MaskGeometry
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
    device: str = "cpu"  # "cpu", "cuda:0", "0", ...: normalised to "cuda:0" (backends.normalise_device)
    half: bool = False  # FP16, CUDA only, on every backend
    imgsz: int = 640
    conf: float = 0.4
    iou: float = 0.9
    max_det: int = 100
    cpu_threads: int = 0  # CPU inference threads of every backend; 0 keeps each one's default
    backend: str = "auto"  # see fastsam_ros/segmentation/backends.py: "pytorch" turns the cached export off
    export_cache: str = ""  # "" is $XDG_CACHE_HOME/fastsam_ros or ~/.cache/fastsam_ros
    precision: str = "auto"  # the CPU export's: auto, fp32, bf16, int8 (segmentation/precision_choice.py)
    calibration_images: str = ""  # a folder of images that calibrates (and checks) INT8; "" allows no INT8

    def __post_init__(self) -> None:
        object.__setattr__(self, "device", backends.normalise_device(self.device))


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
        self._backends = _backend_switch(self._model, config, log or logging.getLogger("fastsam_ros").info,
                                         self._predict, self._segment_on)
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
        return self._predict_all(model, half, image_bgr)[0]

    def _predict_all(self, model: Any, half: bool, source: np.ndarray | list[np.ndarray]) -> list[Any]:
        """ultralytics' ``Results`` of one image or a list of them (one network call)."""
        config = self.config
        results = model.predict(
            source, device=config.device, imgsz=config.imgsz, conf=config.conf, iou=config.iou,
            max_det=config.max_det, retina_masks=False, verbose=False, predictor=deferred_mask_predictor(),
            **({"half": True} if half else {}),  # passing half=False makes new ultralytics warn per call
        )
        self._last_model = model
        if not self._threads_applied:  # after the first call: ultralytics resets the threads when it picks the device
            import torch

            torch.set_num_threads(config.cpu_threads)
            self._threads_applied = True
        return results

    def _segment_on(self, model: Any, image_bgr: np.ndarray) -> Segmentation:
        """:meth:`segment` on a given export (the precision check compares two)."""
        with deferred_masks():
            return segmentation_from_result(self._predict(model, False, image_bgr))

    def segment(self, image_bgr: np.ndarray) -> Segmentation:
        """Every instance in one ``HxWx3`` uint8 BGR image (masks made on demand: see :mod:`instance_masks`)."""
        with deferred_masks():
            return segmentation_from_result(self.predict_raw(image_bgr))

    def segment_batch(self, images: list[np.ndarray]) -> list[Segmentation]:
        """:meth:`segment` of several images in one network call where the model takes a batch (PyTorch, the one a
        GPU runs several cameras on); exports are built for batch 1, so their images run one after another."""
        for image in images:
            check_image(image)
        model, half = self._backends.model_for(images[0].shape)
        if model is not self._model or len({image.shape for image in images}) > 1:
            return [self.segment(image) for image in images]
        with deferred_masks():
            return [segmentation_from_result(result) for result in self._predict_all(model, half, list(images))]

    def segment_with_result(self, image_bgr: np.ndarray) -> tuple[Segmentation, Any]:
        """:meth:`segment`, and the ultralytics ``Results`` of the same run with every mask made (for
        ultralytics' own prompt rules in the evaluation: one inference serves both)."""
        import torch

        with deferred_masks():
            result = self.predict_raw(image_bgr)
        segmentation = segmentation_from_result(result)
        if getattr(result, "instance_masks", None) is not None:
            result.update(masks=torch.from_numpy(segmentation.masks.dense().view(np.uint8)))
        return segmentation, result

    def warmup(self) -> None:
        """Run PyTorch once on a blank frame, and compile the mask kernels, so the first real frame does not pay for
        lazy setup.

        An export cached by an earlier start is loaded (and run once) here too; a first start exports on the first
        real frame, whose shape it needs.
        """
        self._backends.preload()
        blank = np.zeros((self.config.imgsz // 2, self.config.imgsz, 3), dtype=np.uint8)
        with deferred_masks():
            segmentation_from_result(self._predict(self._model, self._backends.pytorch_half, blank))
        compile_kernels()

    @property
    def predictor(self) -> Any:
        """ultralytics' ``FastSAMPredictor`` of the model that ran last (available after the first prediction)."""
        return self._last_model.predictor


def _backend_switch(model: Any, config: EngineConfig, log: Callable[[str], None],
                    predict: Callable[[Any, bool, np.ndarray], Any],
                    segment_with: Callable[[Any, np.ndarray], Segmentation]) -> fast_path.BackendSwitch:
    """Choose the backend for this machine and log the choice (see :mod:`fastsam_ros.segmentation.backends`)."""
    machine = backends.probe(config.device)
    if Path(str(model.ckpt_path)).suffix == ".pt":
        plan = backends.choose(config.backend, config.half, machine)
        if not plan.export and config.backend != "pytorch":
            log(plan.reason)
    else:
        plan = backends.Plan(backends.backend_of(Path(str(model.ckpt_path))), config.half, "the model is an export")
    folder = Path(config.export_cache) if config.export_cache else export_cache.default_cache_dir()
    cache = export_cache.ExportCache(folder)
    precision = None
    if machine.cpu and plan.export and plan.backend in ("onnx", "openvino"):
        precision = (config.precision, config.calibration_images, segment_with)
    elif config.precision not in ("auto", "fp32"):
        log(f"precision {config.precision} applies to CPU exports (ONNX Runtime, OpenVINO); {plan.backend} runs "
            f"{'fp16' if config.half else 'fp32'}")
    return fast_path.BackendSwitch(model, plan, machine=machine, imgsz=config.imgsz, device=config.device,
                                  cpu_threads=config.cpu_threads, cache=cache, log=log, predict=predict,
                                  precision=precision)


def check_image(image: np.ndarray) -> None:
    """Reject anything that is not a non-empty ``HxWx3`` uint8 image, with the reason."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"expected an HxWx3 uint8 BGR image, got shape {shape} dtype {dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"image has zero size {image.shape[1]}x{image.shape[0]}")


def segmentation_from_result(result: Any) -> Segmentation:
    """Convert one ultralytics ``Results`` into a :class:`Segmentation` (masks move to the CPU)."""
    image_shape = (int(result.orig_shape[0]), int(result.orig_shape[1]))
    speed = result.speed or {}
    timings = Timings(
        preprocess_ms=float(speed.get("preprocess") or 0.0),
        inference_ms=float(speed.get("inference") or 0.0),
        postprocess_ms=float(speed.get("postprocess") or 0.0),
    )
    masks = getattr(result, "instance_masks", None)  # set by the deferred-mask predictor
    if masks is None:
        if result.masks is None or len(result) == 0:
            masks = DenseMasks(np.zeros((0, *image_shape), dtype=bool))
        else:
            masks = DenseMasks(binary_masks(result.masks.data))
    return Segmentation(
        masks=masks,
        boxes=result.boxes.xyxy.float().cpu().numpy().copy().reshape(-1, 4),  # .numpy() would share the Results' memory
        scores=result.boxes.conf.float().cpu().numpy().copy().reshape(-1),
        geometry=MaskGeometry(image_shape, masks.shape),
        timings=timings,
        class_ids=result.boxes.cls.int().cpu().numpy().copy().reshape(-1),
        class_names=class_names(result.names),
    )


def class_names(names: Any) -> tuple[str, ...]:
    """ultralytics' ``{class id: name}`` as a tuple by class id (a gap is named by its id)."""
    names = dict(names or {})
    return tuple(str(names.get(class_id, class_id)) for class_id in range(max(names, default=-1) + 1))


def binary_masks(data: Any) -> np.ndarray:
    """ultralytics' ``(N, h, w)`` mask tensor as a bool array, without a copy where it already is 0/1 uint8.

    ultralytics >= 8.3 thresholds masks into uint8 0/1 itself (``process_mask``); on the CPU the bool view
    shares that memory (thresholding again cost ~1 ms per instance). Float masks of older versions are
    thresholded at 0.5.
    """
    array = data.cpu().numpy()
    return array.view(bool) if array.dtype == np.uint8 else array > 0.5


# ------------------------------------------------------------------------------------- deferred masks
_deferral = threading.local()


@contextlib.contextmanager
def deferred_masks() -> Iterator[None]:
    """Within this block (on this thread) the predictor of :func:`deferred_mask_predictor` keeps prototype logits."""
    _deferral.on = True
    try:
        yield
    finally:
        _deferral.on = False


@functools.lru_cache(maxsize=1)
def _deferred_predictor_class() -> type:
    from ultralytics.engine.results import Results
    from ultralytics.models.fastsam import FastSAMPredictor
    from ultralytics.utils import ops

    class _DeferredMaskPredictor(FastSAMPredictor):
        """ultralytics' FastSAM predictor whose results keep masks as prototype logits (:class:`InstanceMasks`).

        Everything else (pre-processing, the network, NMS, box scaling, FastSAM's border rule) is ultralytics'
        own; only ``process_mask``'s upsample, threshold and crop of every mask are left to be done on demand
        (its ``amax > 0`` filter of empty masks is applied here too). Outside :func:`deferred_masks`, for
        ``retina_masks`` or FP16, it is ultralytics' predictor unchanged.
        """

        def construct_result(self, pred: Any, img: Any, orig_img: Any, img_path: Any, proto: Any) -> Any:
            masks = self._deferred(pred, img, proto) if getattr(_deferral, "on", False) else None
            if masks is None:
                return super().construct_result(pred, img, orig_img, img_path, proto)
            pred[:, :4] = ops.scale_boxes(img.shape[2:], pred[:, :4], orig_img.shape)
            keep = masks.nonempty()
            if not keep.all():  # as ultralytics: drop empty masks
                pred, masks = pred[torch_bool(keep, pred.device)], masks.subset(keep)
            result = Results(orig_img, path=img_path, names=self.model.names, boxes=pred[:, :6])
            result.instance_masks = masks
            return result

        def _deferred(self, pred: Any, img: Any, proto: Any) -> InstanceMasks | None:
            import torch

            count, (height, width) = pred.shape[0], img.shape[2:]
            if count == 0 or self.args.retina_masks:
                return None
            if pred.dtype != torch.float32 or proto.dtype != torch.float32:  # FP16: leave it all to ultralytics
                return None
            channels, ph, pw = proto.shape
            logits = (pred[:, 6:] @ proto.float().view(channels, -1)).view(-1, ph, pw)  # as process_mask
            return InstanceMasks.from_logits(logits.cpu().numpy(), pred[:, :4].float().cpu().numpy().copy(),
                                             (int(height), int(width)))

    return _DeferredMaskPredictor


def deferred_mask_predictor() -> type:
    """The predictor class passed to ultralytics (one class object, so ultralytics keeps its instance)."""
    return _deferred_predictor_class()


def torch_bool(mask: np.ndarray, device: Any) -> Any:
    import torch

    return torch.from_numpy(np.ascontiguousarray(mask, dtype=bool)).to(device)
