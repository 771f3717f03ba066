"""The node's parameters: one table (the ``NodeConfig`` dataclass) that the node declares, validates and documents.

Each field's metadata carries its description and allowed values, so ``declare_parameter``,
``config/fastsam.yaml`` and the README table all come from one place (a test keeps them in step).
"""

from __future__ import annotations

import array
from dataclasses import dataclass, field, fields
from typing import Any

from fastsam_ros.backends import BACKENDS
from fastsam_ros.depth import DepthError, depth_limits
from fastsam_ros.engine import DEFAULT_MODEL, EngineConfig
from fastsam_ros.selection import SelectionParams
from fastsam_ros.text import ClipConfig
from fastsam_ros.tracking import DEFAULT_MAX_LOST_FRAMES, DEFAULT_MIN_IOU, TrackerParams


def _param(default: Any, doc: str, choices: tuple[str, ...] = (), live: bool = False) -> Any:
    """A parameter; ``live`` ones apply to the next frame when set at run time, the others need a reconfigure."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "live": live})


class ConfigError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class NodeConfig:
    """Every parameter of the ``fastsam`` node, with its default."""

    model: str = _param(DEFAULT_MODEL, "FastSAM checkpoint or export (.pt, .onnx, .engine, *_openvino_model/), "
                        "or FastSAM-s.pt / FastSAM-x.pt, which ultralytics downloads where there is internet")
    device: str = _param("cpu", "inference device: cpu, cuda:0, 0, ...")
    half: bool = _param(False, "FP16 inference (CUDA only)")
    imgsz: int = _param(640, "network input size in pixels (longest side)")
    conf: float = _param(0.4, "minimum instance confidence", live=True)
    iou: float = _param(0.9, "NMS IoU threshold between instances", live=True)
    max_det: int = _param(100, "maximum instances per frame", live=True)
    cpu_threads: int = _param(0, "CPU inference threads of every backend (PyTorch, ONNX Runtime, OpenVINO); 0 keeps "
                              "each one's default: every core for ONNX Runtime and OpenVINO, every core but one for "
                              "PyTorch")
    backend: str = _param("auto", "auto runs the fastest measured backend: on CPU the checkpoint exported once to "
                          "OpenVINO (Intel CPUs) or ONNX Runtime (others), on CUDA a TensorRT FP16 engine (else "
                          "PyTorch FP16); pytorch turns that off; onnx, openvino, tensorrt ask for one", BACKENDS)
    export_cache: str = _param("", "folder of the cached exports, keyed by checkpoint hash, shape and versions; "
                               "empty: $XDG_CACHE_HOME/fastsam_ros or ~/.cache/fastsam_ros")
    warmup: bool = _param(True, "run one blank frame at configure so the first real frame is not slow")
    autostart: bool = _param(True, "configure and activate on start; false waits for lifecycle transitions")
    image_transport: str = _param("raw", "raw subscribes to `image`; compressed to `image/compressed`",
                                  ("raw", "compressed"))
    image_reliability: str = _param("best_effort", "camera QoS reliability; best_effort matches camera drivers",
                                    ("best_effort", "reliable"))
    image_depth: int = _param(1, "camera QoS depth; 1 keeps only the newest frame")
    cache_frames: int = _param(10, "all-instance results kept by stamp, so prompts are answered without re-inference")
    use_depth: bool = _param(False, "3D position and extent of selected objects from `depth` (registered to the "
                             "colour image) and `camera_info`; adds selection/points and selection/markers")
    depth_tolerance: float = _param(0.02, "seconds between a colour frame's stamp and the nearest depth image's "
                                    "for the two to pair (0: exact stamps only)")
    depth_wait: float = _param(0.1, "seconds an answer waits for a depth image still on its way")
    depth_range: tuple[float, float] = _param((0.1, 10.0), "metres [min, max] of depth used; others are no data")
    min_box_iou: float = _param(SelectionParams.min_box_iou,
                                "box prompts whose best mask IoU is below this: no_match", live=True)
    min_text_score: float = _param(SelectionParams.min_text_score,
                                   "text prompts whose best CLIP similarity is below this: no_match", live=True)
    text_return_all: bool = _param(False, "text prompts select every instance above min_text_score, "
                                   "not only the best", live=True)
    clip_model: str = _param(ClipConfig.model, "open_clip architecture for text prompts (Jetson: MobileCLIP-S1)")
    clip_pretrained: str = _param(ClipConfig.pretrained, "open_clip weights tag, downloaded where there is internet "
                                  "(MobileCLIP-S1: datacompdr); also names how clip_weights was trained")
    clip_weights: str = _param("", "local CLIP checkpoint file; wins over downloading clip_pretrained")
    clip_load_at_configure: bool = _param(False, "load CLIP at configure instead of on the first text prompt")
    publish_instance_masks: bool = _param(True, "include every instance's mask in `instances` (false: boxes only)",
                                          live=True)
    diagnostics_period: float = _param(1.0, "seconds between /diagnostics updates", live=True)
    max_image_pixels: int = _param(20_000_000, "frames larger than this many pixels are rejected before decoding "
                                   "(a tiny JPEG can claim 8000x8000)", live=True)
    max_prompt_points: int = _param(64, "prompts with more points are answered invalid", live=True)
    max_prompt_boxes: int = _param(16, "prompts with more boxes are answered invalid", live=True)
    max_text_length: int = _param(256, "text prompts longer than this many characters are answered invalid", live=True)
    max_persistent_prompts: int = _param(64, "persistent prompts kept at once; more are answered invalid", live=True)
    tracking: bool = _param(True, "stable instance ids in `instances`, and persistent prompts follow the objects they "
                            "first selected (false: they re-apply their pixels to every frame)", live=True)
    track_lost_frames: int = _param(DEFAULT_MAX_LOST_FRAMES, "frames a followed object may be missing and still be "
                                    "re-acquired; after that its prompt answers no_match", live=True)
    track_min_iou: float = _param(DEFAULT_MIN_IOU, "mask overlap with an object's motion-compensated last mask that "
                                  "continues its track", live=True)

    def __post_init__(self) -> None:
        for item in fields(self):
            choices = item.metadata["choices"]
            if choices and getattr(self, item.name) not in choices:
                raise ConfigError(f"{item.name} must be one of {', '.join(choices)}, got {getattr(self, item.name)!r}")
        positive = ("imgsz", "max_det", "image_depth", "cache_frames", "diagnostics_period", "max_image_pixels",
                    "max_prompt_points", "max_prompt_boxes", "max_text_length", "max_persistent_prompts")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive, got {getattr(self, name)!r}")
        if self.track_lost_frames < 0:
            raise ConfigError(f"track_lost_frames must be 0 or more, got {self.track_lost_frames!r}")
        if not 0.0 < self.track_min_iou <= 1.0:
            raise ConfigError(f"track_min_iou must be within 0 (excluded)..1, got {self.track_min_iou!r}")
        if self.cpu_threads < 0:
            raise ConfigError(f"cpu_threads must be 0 (ultralytics' default) or more, got {self.cpu_threads!r}")
        for name in ("conf", "iou", "min_box_iou"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(f"{name} must be within 0..1, got {getattr(self, name)!r}")
        if not -1.0 <= self.min_text_score <= 1.0:  # a cosine similarity
            raise ConfigError(f"min_text_score must be within -1..1, got {self.min_text_score!r}")
        if self.depth_tolerance < 0 or self.depth_wait < 0:
            raise ConfigError(f"depth_tolerance and depth_wait must be 0 or more, got {self.depth_tolerance!r}, "
                              f"{self.depth_wait!r}")
        try:  # two floats, checked
            object.__setattr__(self, "depth_range", depth_limits(self.depth_range))
        except DepthError as error:
            raise ConfigError(str(error)) from error
        if not self.model:
            raise ConfigError("model must name a checkpoint, an export or a FastSAM model name")

    @classmethod
    def from_values(cls, values: dict[str, Any]) -> NodeConfig:
        """Build from parameter values, rejecting names this node does not have and values of the wrong type.

        Integers are taken for float parameters (``conf: 1`` in YAML is an int).
        """
        known = {item.name: item for item in fields(cls)}
        unknown = set(values) - set(known)
        if unknown:
            raise ConfigError(f"unknown parameters: {', '.join(sorted(unknown))}")
        return cls(**{name: _typed(name, type(known[name].default), value) for name, value in values.items()})

    def changed(self, other: NodeConfig) -> set[str]:
        """Names of the parameters whose values differ between ``self`` and ``other``."""
        return {item.name for item in fields(self) if getattr(self, item.name) != getattr(other, item.name)}

    @property
    def engine(self) -> EngineConfig:
        return EngineConfig(model=self.model, device=self.device, half=self.half, imgsz=self.imgsz,
                            conf=self.conf, iou=self.iou, max_det=self.max_det, cpu_threads=self.cpu_threads,
                            backend=self.backend, export_cache=self.export_cache)

    @property
    def selection(self) -> SelectionParams:
        return SelectionParams(min_box_iou=self.min_box_iou, min_text_score=self.min_text_score,
                               text_return_all=self.text_return_all, max_points=self.max_prompt_points,
                               max_boxes=self.max_prompt_boxes, max_text_length=self.max_text_length)

    @property
    def tracker(self) -> TrackerParams:
        return TrackerParams(max_lost_frames=self.track_lost_frames, min_iou=self.track_min_iou)

    @property
    def clip(self) -> ClipConfig:
        return ClipConfig(model=self.clip_model, pretrained=self.clip_pretrained, weights=self.clip_weights,
                          device=self.device)


def _typed(name: str, expected: type, value: Any) -> Any:
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple and isinstance(value, (list, tuple, array.array)):  # rclpy: double arrays as array.array
        return tuple(value)
    if type(value) is not expected:
        raise ConfigError(f"{name} must be a {expected.__name__}, got {value!r} ({type(value).__name__})")
    return value


def is_live(name: str) -> bool:
    """Whether parameter ``name`` applies to the next frame when set while the node runs."""
    return any(item.name == name and item.metadata["live"] for item in fields(NodeConfig))


def parameter_table() -> list[tuple[str, Any, str]]:
    """``(name, default, description)`` for every parameter, in declaration order."""
    return [(item.name, item.default, item.metadata["doc"]) for item in fields(NodeConfig)]
