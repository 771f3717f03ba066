"""The layers hold: rclpy and the ROS messages only in the shell, imports that only point down, small modules.

Read from the source (ast), so a new import anywhere is checked without running it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fastsam_ros"
SHELL = PACKAGE / "ros"
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "geometry_msgs", "diagnostic_msgs", "visualization_msgs",
               "rcl_interfaces", "lifecycle_msgs", "builtin_interfaces", "cv_bridge", "vision_msgs", "tf2_ros",
               "fastsam_ros.msg", "fastsam_ros.srv")
# Floors, by the longest matching dotted prefix under fastsam_ros: a module may import its own floor and the floors
# below, never one above. The mask encodings are the lightest (numpy); the result types sit on them; the network
# and the rules on the types; the node on everything.
FLOORS = {"segmentation.masks": 0, "segmentation.mask_set": 0, "types": 1, "segmentation": 2, "depth": 2,
          "prompts": 3, "tracking": 4, "config": 5, "overlay": 5, "video": 5, "sources": 5, "cli": 6,
          "ros": 7}
MAX_LINES = 420


def modules(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*.py") if "__pycache__" not in path.parts)


def imported(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def floor(path_or_module: Path | str) -> int | None:
    parts = (path_or_module.relative_to(PACKAGE).with_suffix("").parts if isinstance(path_or_module, Path)
             else tuple(path_or_module.split(".")[1:]))
    for length in range(len(parts), 0, -1):
        if ".".join(parts[:length]) in FLOORS:
            return FLOORS[".".join(parts[:length])]
    return None


@pytest.mark.parametrize("path", modules(PACKAGE), ids=lambda p: str(p.relative_to(REPO)))
def test_only_the_shell_speaks_ros(path: Path) -> None:
    if SHELL in path.parents:
        return
    ros = sorted(name for name in imported(path) if name.split(".")[0] in ROS_MODULES or name in ROS_MODULES
                 or name.startswith(("fastsam_ros.msg", "fastsam_ros.srv")))
    assert not ros, f"{path.relative_to(REPO)} imports {ros}: ROS belongs in fastsam_ros/ros/"


@pytest.mark.parametrize("path", modules(PACKAGE), ids=lambda p: str(p.relative_to(REPO)))
def test_imports_point_down(path: Path) -> None:
    own = floor(path)
    if own is None:  # the package's __init__
        return
    upward = sorted(name for name in imported(path) if name.startswith("fastsam_ros.")
                    and (other := floor(name)) is not None and other > own)
    assert not upward, f"{path.relative_to(REPO)} (floor {own}) imports a floor above: {upward}"
    outside = sorted(name for name in imported(path) if name.split(".")[0] in ("evaluation", "harness", "bench"))
    assert not outside, f"the installed package must not need {outside}"


def test_every_core_module_has_a_floor() -> None:
    tops = {path.relative_to(PACKAGE).with_suffix("").parts[0] for path in modules(PACKAGE)} - {"__init__"}
    assert tops <= set(FLOORS), f"place {sorted(tops - set(FLOORS))} on a floor"


@pytest.mark.parametrize("path", modules(PACKAGE), ids=lambda p: str(p.relative_to(REPO)))
def test_modules_stay_small_enough_to_read(path: Path) -> None:
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(REPO)} has {lines} lines: split it by concern"
