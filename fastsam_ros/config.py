"""The node's parameters: one table (the ``NodeConfig`` dataclass) that the node declares, validates and documents.

Each field's metadata carries its description and allowed values, so ``declare_parameter``,
``config/fastsam.yaml`` and the README table all come from one place: ``python -m fastsam_ros.config --yaml``
writes the YAML and ``--readme`` the README table (tests keep both equal to what they generate).

This module imports nothing heavy (no numpy, torch, numba, cv2, ultralytics), so the launch file reads the table
without loading the network's libraries: the defaults that the core also holds are written here, and
test/test_config.py checks they are the core's; the core's config objects are built by local imports.
"""

from __future__ import annotations

import argparse
import array
import json
import re
import sys
import textwrap
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

from fastsam_ros.segmentation.backends import BACKENDS, normalise_device

if TYPE_CHECKING:
    from fastsam_ros.prompts.clip import ClipConfig
    from fastsam_ros.prompts.selection import SelectionParams
    from fastsam_ros.segmentation.engine import EngineConfig
    from fastsam_ros.tracking.tracker import TrackerParams


def _param(default: Any, doc: str, choices: tuple[str, ...] = (), live: bool = False) -> Any:
    """A parameter; ``live`` ones apply to the next frame when set at run time, the others need a reconfigure."""
    return field(default=default, metadata={"doc": doc, "choices": choices, "live": live})


EXECUTORS = ("events", "single_threaded")  # :func:`fastsam_ros.ros.process.make_executor`'s kinds
CAMERA_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*")


class ConfigError(ValueError):
    """A parameter value the node cannot run with; the message names the parameter."""


@dataclass(frozen=True)
class NodeConfig:
    """Every parameter of the ``fastsam`` node, with its default."""

    model: str = _param("FastSAM-s.pt", "FastSAM checkpoint or export (.pt, .onnx, .engine, *_openvino_model/), "
                        "or FastSAM-s.pt / FastSAM-x.pt, which ultralytics downloads where there is internet")
    device: str = _param("cpu", "inference device: cpu, cuda:N or mps (N is read as cuda:N, cuda as "
                        "cuda:0)")
    half: bool = _param(False, "FP16 inference on CUDA, honoured by every backend (auto: a TensorRT FP16 engine "
                        "with half true, a TensorRT FP32 one without); CPU backends run FP32")
    imgsz: int = _param(640, "network input size in pixels (longest side)")
    conf: float = _param(0.4, "minimum instance confidence", live=True)
    iou: float = _param(0.9, "NMS IoU threshold between instances", live=True)
    max_det: int = _param(100, "maximum instances per frame", live=True)
    cpu_threads: int = _param(0, "CPU inference threads of every backend (PyTorch, ONNX Runtime, OpenVINO); 0 keeps "
                              "each one's default: every core for ONNX Runtime and OpenVINO, every core but one for "
                              "PyTorch")
    backend: str = _param("auto", "auto runs the fastest measured backend: on CPU the checkpoint exported once to "
                          "OpenVINO (Intel CPUs) or ONNX Runtime (others), on CUDA a TensorRT engine of the half "
                          "precision (else PyTorch); pytorch turns that off; onnx, openvino, tensorrt ask for one",
                          BACKENDS)
    precision: str = _param("auto", "CPU export precision: auto times every candidate this machine allows and runs "
                            "the fastest that passed; fp32; bf16 (OpenVINO on CPUs with AVX512-BF16 or AMX); int8 "
                            "(quantized with calibration_images, refused when it disagrees with fp32)",
                            ("auto", "fp32", "bf16", "int8"))
    calibration_images: str = _param("", "folder of images that calibrates INT8 and checks it against fp32 (the last "
                                     "16 are held back); empty: no INT8")
    export_cache: str = _param("", "folder of the cached exports, keyed by checkpoint hash, shape and versions; "
                               "empty: $XDG_CACHE_HOME/fastsam_ros or ~/.cache/fastsam_ros")
    warmup: bool = _param(True, "run one blank frame at configure so the first real frame is not slow")
    autostart: bool = _param(True, "configure and activate on start; false waits for lifecycle transitions")
    executor: str = _param("events", "what runs the node's ROS callbacks, read at start-up: events (rclpy's "
                           "EventsExecutor, the node's own cost per frame ~1 ms lower; single_threaded where rclpy "
                           "has none) or single_threaded (rclpy's SingleThreadedExecutor)", EXECUTORS)
    cameras: tuple[str, ...] = _param((), "camera names for one node serving several cameras on one model: each "
                                      "camera's topics move under its name (front/image, front/selection, ...); "
                                      "empty: one camera on the topics without a prefix")
    image_transport: str = _param("raw", "raw subscribes to `image`; compressed to `image/compressed`",
                                  ("raw", "compressed"))
    image_reliability: str = _param("best_effort", "camera QoS reliability; best_effort matches camera drivers",
                                    ("best_effort", "reliable"))
    image_qos_depth: int = _param(1, "camera QoS history depth (frames queued); 1 keeps only the newest frame")
    cache_frames: int = _param(10, "all-instance results kept by stamp, so prompts are answered without re-inference")
    stamp_tolerance: float = _param(0.005, "seconds between a prompt's stamp and a cached frame's within which the "
                                    "prompt is answered on that (nearest) frame (0: exact stamps only)", live=True)
    click_follow: bool = _param(True, "a GUI click (rqt_image_view, /clicked_point, prompt/point) follows the object "
                                "it selects until the next click or a click on nothing (false: clicks are one-shot)",
                                live=True)
    use_depth: bool = _param(False, "3D position and extent of selected objects from `depth` (registered to the "
                             "colour image) and `camera_info`; adds selection/points and selection/markers")
    depth_tolerance: float = _param(0.02, "seconds between a colour frame's stamp and the nearest depth image's "
                                    "for the two to pair (0: exact stamps only)")
    depth_wait: float = _param(0.1, "seconds an answer waits for a depth image still on its way")
    depth_range: tuple[float, float] = _param((0.1, 10.0), "metres [min, max] of depth used; others are no data")
    target_frame: str = _param("", "frame of the 3D answers, clouds, markers and selection/detections_3d, "
                               "transformed with tf2 at the image's stamp; empty: the camera's optical frame "
                               "(camera_info's)")
    min_box_iou: float = _param(0.05,
                                "box prompts whose best mask IoU is below this: no_match", live=True)
    min_text_score: float = _param(0.2,
                                   "text prompts whose best CLIP similarity is below this: no_match", live=True)
    text_return_all: bool = _param(False, "text prompts select every instance above min_text_score, "
                                   "not only the best", live=True)
    clip_model: str = _param("ViT-B-32", "open_clip architecture for text prompts (Jetson: MobileCLIP-S1)")
    clip_pretrained: str = _param("openai", "open_clip weights tag, downloaded where there is internet "
                                  "(MobileCLIP-S1: datacompdr); also names how clip_weights was trained")
    clip_weights: str = _param("", "local CLIP checkpoint file; wins over downloading clip_pretrained")
    clip_load_at_configure: bool = _param(False, "load CLIP at configure instead of on the first text prompt")
    publish_instance_masks: bool = _param(True, "include every instance's mask in `instances` (false: boxes only)",
                                          live=True)
    diagnostics_period: float = _param(1.0, "seconds between /diagnostics updates", live=True)
    log_stage_times: bool = _param(False, "log every frame's time per stage (decode, segment, track, answers, "
                                   "outputs); /diagnostics always has their p50", live=True)
    max_image_pixels: int = _param(20_000_000, "frames larger than this many pixels are rejected before decoding "
                                   "(a tiny JPEG can claim 8000x8000)", live=True)
    max_prompt_points: int = _param(64, "prompts with more points are answered invalid", live=True)
    max_prompt_boxes: int = _param(16, "prompts with more boxes are answered invalid", live=True)
    max_text_length: int = _param(256, "text prompts longer than this many characters are answered invalid", live=True)
    max_persistent_prompts: int = _param(64, "persistent prompts kept at once; more are answered invalid", live=True)
    tracking: bool = _param(True, "stable instance ids in `instances`, and persistent prompts follow the objects they "
                            "first selected (false: they re-apply their pixels to every frame)", live=True)
    track_lost_frames: int = _param(30, "frames a followed object may be missing and still be "
                                    "re-acquired; after that its prompt answers no_match", live=True)
    track_min_iou: float = _param(0.3, "mask overlap with an object's motion-compensated last mask that "
                                  "continues its track", live=True)

    def __post_init__(self) -> None:
        for item in fields(self):
            choices = item.metadata["choices"]
            if choices and getattr(self, item.name) not in choices:
                raise ConfigError(f"{item.name} must be one of {', '.join(choices)}, got {getattr(self, item.name)!r}")
        positive = ("imgsz", "max_det", "image_qos_depth", "cache_frames", "diagnostics_period", "max_image_pixels",
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
        if self.stamp_tolerance < 0:
            raise ConfigError(f"stamp_tolerance must be 0 or more, got {self.stamp_tolerance!r}")
        if self.depth_tolerance < 0 or self.depth_wait < 0:
            raise ConfigError(f"depth_tolerance and depth_wait must be 0 or more, got {self.depth_tolerance!r}, "
                              f"{self.depth_wait!r}")
        limits = tuple(float(v) for v in self.depth_range)
        if len(limits) != 2 or not 0 <= limits[0] < limits[1]:
            raise ConfigError(f"depth_range must be [min, max] metres with 0 <= min < max, got {list(limits)}")
        object.__setattr__(self, "depth_range", limits)
        try:  # the one spelling torch, open_clip and ultralytics all take
            object.__setattr__(self, "device", normalise_device(self.device))
        except ValueError as error:
            raise ConfigError(str(error)) from error
        if not self.model:
            raise ConfigError("model must name a checkpoint, an export or a FastSAM model name")
        cameras = tuple(self.cameras)
        for name in cameras:
            if not isinstance(name, str) or not CAMERA_NAME.fullmatch(name):
                raise ConfigError(f"cameras: {name!r} is not a topic name token (a letter, then letters, digits or "
                                  "underscores): it becomes the camera's topic prefix")
        if len(set(cameras)) != len(cameras):
            raise ConfigError(f"cameras must not repeat a name, got {list(cameras)}")
        object.__setattr__(self, "cameras", cameras)

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
        from fastsam_ros.segmentation.engine import EngineConfig

        return EngineConfig(model=self.model, device=self.device, half=self.half, imgsz=self.imgsz,
                            conf=self.conf, iou=self.iou, max_det=self.max_det, cpu_threads=self.cpu_threads,
                            backend=self.backend, export_cache=self.export_cache, precision=self.precision,
                            calibration_images=self.calibration_images)

    @property
    def selection(self) -> SelectionParams:
        from fastsam_ros.prompts.selection import SelectionParams

        return SelectionParams(min_box_iou=self.min_box_iou, min_text_score=self.min_text_score,
                               text_return_all=self.text_return_all, max_points=self.max_prompt_points,
                               max_boxes=self.max_prompt_boxes, max_text_length=self.max_text_length)

    @property
    def tracker(self) -> TrackerParams:
        from fastsam_ros.tracking.tracker import TrackerParams

        return TrackerParams(max_lost_frames=self.track_lost_frames, min_iou=self.track_min_iou)

    @property
    def clip(self) -> ClipConfig:
        from fastsam_ros.prompts.clip import ClipConfig

        return ClipConfig(model=self.clip_model, pretrained=self.clip_pretrained, weights=self.clip_weights,
                          device=self.device)


def _typed(name: str, expected: type, value: Any) -> Any:
    if expected is tuple and value is None:  # an empty array in a parameters file reaches rclpy as "not set"
        return ()
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


def live_parameters() -> list[str]:
    """Names of the parameters that apply to the next frame when set while the node runs, in table order."""
    return [item.name for item in fields(NodeConfig) if item.metadata["live"]]


def yaml_value(value: Any) -> str:
    """``value`` as YAML (and as the README shows defaults): JSON for strings and numbers, lists for pairs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return json.dumps(list(value) if isinstance(value, tuple) else value)


YAML_HEADER = """\
# Parameters of the fastsam node (ros2 run fastsam_ros fastsam_node --ros-args --params-file config/fastsam.yaml).
# Generated from the NodeConfig table (fastsam_ros/config.py): python -m fastsam_ros.config --yaml > config/fastsam.yaml
# (test/test_config.py checks this file is what it generates; edit the table, not this file).
/**:
  ros__parameters:
"""


def params_yaml() -> str:
    """``config/fastsam.yaml``: every parameter at its default, its description as the comment above it."""
    lines = [YAML_HEADER.rstrip("\n")]
    for name, default, doc in parameter_table():
        lines += textwrap.wrap(doc, width=116, initial_indent="    # ", subsequent_indent="    # ")
        lines.append(f"    {name}: {yaml_value(default)}")
    return "\n".join(lines) + "\n"


def readme_table() -> str:
    """The README's parameter table (markdown), one row per parameter."""
    rows = ["| parameter | default | meaning |", "| --- | --- | --- |"]
    rows += [f"| `{name}` | `{yaml_value(default)}` | {doc} |" for name, default, doc in parameter_table()]
    return "\n".join(rows) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Print config/fastsam.yaml or the README's parameter table, generated from the NodeConfig table."""
    parser = argparse.ArgumentParser(prog="python -m fastsam_ros.config", description=main.__doc__)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--yaml", action="store_true", help="config/fastsam.yaml")
    what.add_argument("--readme", action="store_true", help="the README's parameter table")
    sys.stdout.write(params_yaml() if parser.parse_args(argv).yaml else readme_table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
