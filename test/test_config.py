"""The parameter table: validation, and config/fastsam.yaml staying in step with it."""

from __future__ import annotations

import array
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fastsam_ros.config import ConfigError, NodeConfig, live_parameters, parameter_table, params_yaml, readme_table

YAML = Path(__file__).resolve().parents[1] / "config" / "fastsam.yaml"


def test_defaults_are_valid_and_feed_engine_and_selection() -> None:
    config = NodeConfig()
    assert config.engine.model == "FastSAM-s.pt"
    assert config.engine.imgsz == config.imgsz
    assert NodeConfig(cpu_threads=2).engine.cpu_threads == 2
    assert config.selection.min_box_iou == config.min_box_iou
    assert not config.use_depth and config.depth_range == (0.1, 10.0)
    assert NodeConfig(depth_range=array.array("d", [0.5, 4.0])).depth_range == (0.5, 4.0)  # as rclpy gives it


@pytest.mark.parametrize(
    ("values", "needle"),
    [
        ({"image_reliability": "sometimes"}, "image_reliability must be one of"),
        ({"image_transport": "theora"}, "image_transport must be one of"),
        ({"cache_frames": 0}, "cache_frames must be positive"),
        ({"max_persistent_prompts": 0}, "max_persistent_prompts must be positive"),
        ({"conf": 1.5}, "conf must be within"),
        ({"cpu_threads": -1}, "cpu_threads must be 0"),
        ({"model": ""}, "model must name"),
        ({"depth_range": [2.0, 1.0]}, r"depth_range must be \[min, max\] metres"),
        ({"depth_range": [1.0]}, r"depth_range must be"),
        ({"depth_tolerance": -0.1}, "depth_tolerance and depth_wait must be 0 or more"),
        ({"no_such_thing": 1}, "unknown parameters: no_such_thing"),
    ],
)
def test_bad_values_name_the_parameter(values: dict, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        NodeConfig.from_values(values)


def test_the_yaml_is_what_the_table_generates() -> None:
    assert YAML.read_text() == params_yaml(), "run: python -m fastsam_ros.config --yaml > config/fastsam.yaml"


def test_the_generated_yaml_reads_back_as_the_defaults() -> None:
    values = yaml.safe_load(params_yaml())["/**"]["ros__parameters"]
    assert NodeConfig.from_values(values) == NodeConfig()
    assert list(values) == [name for name, _, _ in parameter_table()]
    comments = re.findall(r"^    # (.+)\n(?:    # (.+)\n)*    (\w+):", params_yaml(), re.MULTILINE)
    assert [name for *_, name in comments] == list(values)  # each parameter under its comment


def test_the_backend_comment_names_the_runtime_auto_prefers_on_intel() -> None:
    from fastsam_ros.segmentation.backends import CPU_PREFERENCE

    doc = dict((name, doc) for name, _, doc in parameter_table())["backend"]
    names = {"openvino": "OpenVINO (Intel CPUs)", "onnx": "ONNX Runtime (Intel CPUs)"}
    assert names[CPU_PREFERENCE["GenuineIntel"][0]] in doc


def test_the_readme_shows_the_generated_table_and_the_live_parameters() -> None:
    readme = (YAML.parents[1] / "README.md").read_text()
    assert readme_table() in readme, "paste: python -m fastsam_ros.config --readme"
    (line,) = [line for line in readme.splitlines() if line.startswith("**At run time**")]
    listed = re.findall(r"`(\w+)`", line.partition("apply to the next frame")[0])
    assert listed == live_parameters()


def test_defaults_held_by_the_core_too_are_the_core_s() -> None:
    """The table writes them out (it imports nothing heavy); the core's config objects must agree."""
    from fastsam_ros.prompts.clip import ClipConfig
    from fastsam_ros.prompts.selection import SelectionParams
    from fastsam_ros.segmentation.engine import DEFAULT_MODEL, EngineConfig
    from fastsam_ros.tracking.tracker import TrackerParams

    config = NodeConfig()
    assert config.model == DEFAULT_MODEL
    assert config.engine == EngineConfig(**{**EngineConfig().__dict__, "model": config.model})
    assert config.selection == SelectionParams()
    assert config.tracker == TrackerParams()
    assert (config.clip.model, config.clip.pretrained) == (ClipConfig().model, ClipConfig().pretrained)


@pytest.mark.parametrize(("given", "device"), [("cpu", "cpu"), ("0", "cuda:0"), ("cuda", "cuda:0"),
                                               ("CUDA:1", "cuda:1"), (" 2 ", "cuda:2"), ("mps", "mps")])
def test_the_device_is_normalised_once_for_the_engine_and_clip(given: str, device: str) -> None:
    config = NodeConfig(device=given)
    assert config.device == config.engine.device == config.clip.device == device


@pytest.mark.parametrize("given", ["gpu", "cuda:x", "0,1", "", "cuda:-1"])
def test_a_device_no_library_reads_is_refused_by_name(given: str) -> None:
    with pytest.raises(ConfigError, match=f"device must be cpu, cuda:N, N, cuda or mps .*got {given!r}"):
        NodeConfig.from_values({"device": given})


def test_the_engine_and_clip_configs_normalise_the_device_too() -> None:
    """The CLI and the bench build them straight from --device."""
    from fastsam_ros.prompts.clip import ClipConfig
    from fastsam_ros.segmentation.engine import EngineConfig

    assert EngineConfig(device="0").device == ClipConfig(device="0").device == "cuda:0"


LIGHT = """
import importlib.util, sys
import fastsam_ros.config as config
config.parameter_table()
config.NodeConfig.from_values({{"device": "0", "conf": 0.5}})
spec = importlib.util.spec_from_file_location("fastsam_launch", {launch!r})
launch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(launch)
launch.parameter_overrides({{"imgsz": "320", "half": "true", "model": "m.pt"}})
launch.node_spec(params_file="/p.yaml", imgsz=320)
print(",".join(sorted(m for m in ("torch", "numba", "cv2", "ultralytics", "numpy", "open_clip", "onnxruntime",
                                  "openvino") if m in sys.modules)))
"""


def test_the_table_and_the_launch_file_s_arguments_import_nothing_heavy() -> None:
    """``ros2 launch`` reads the table to declare and type its arguments: it must not load torch and friends."""
    code = LIGHT.format(launch=str(YAML.parents[1] / "launch" / "fastsam.launch.py"))
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""
