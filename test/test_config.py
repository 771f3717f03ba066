"""The parameter table: validation, and config/fastsam.yaml staying in step with it."""

from __future__ import annotations

import array
import re
from pathlib import Path

import pytest

from fastsam_ros.config import ConfigError, NodeConfig, parameter_table

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


def test_every_parameter_is_in_the_yaml_with_its_default_and_a_comment() -> None:
    text = YAML.read_text()
    for name, default, _doc in parameter_table():
        match = re.search(rf"^    # (.+)\n    {name}: (.+)$", text, re.MULTILINE)
        assert match, f"{name} missing from {YAML.name} (or has no comment)"
        value = match.group(2).strip().strip('"')
        expected = str(default).lower() if isinstance(default, bool) else str(
            list(default) if isinstance(default, tuple) else default)
        assert value == expected, f"{name}: yaml has {value}, NodeConfig has {expected}"
    assert len(re.findall(r"^    \w+:", text, re.MULTILINE)) == len(parameter_table())


def test_every_parameter_is_documented_in_the_readme() -> None:
    readme = (YAML.parents[1] / "README.md").read_text()
    missing = [name for name, _, _ in parameter_table() if f"| `{name}` |" not in readme]
    assert not missing, f"README parameter table lacks {missing}"
