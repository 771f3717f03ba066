"""The harness (node launcher, client, demo) is test/demo tooling: not in the runtime package, no side effects."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

CLIENT_DOMAINS = """
import json, os
from harness.client import FastSAMClient
def ros():  # ROS_* only: the PyPI ROS wheels' own bootstrap extends LD_LIBRARY_PATH when rclpy loads
    return {key: value for key, value in os.environ.items() if key.startswith(("ROS_", "FASTRTPS_"))}
before = ros()
default, chosen = FastSAMClient(), FastSAMClient(domain_id=7)
print(json.dumps({"env_unchanged": ros() == before,
                  "default": default.node.context.get_domain_id(), "chosen": chosen.node.context.get_domain_id()}))
default.close(); chosen.close()
"""


def test_the_runtime_package_holds_no_harness() -> None:
    runtime = {path.stem for path in (REPO / "fastsam_ros").glob("*.py")}
    assert not runtime & {"client", "node_process", "demo"}
    assert "install(DIRECTORY ${PROJECT_NAME}/" in (REPO / "CMakeLists.txt").read_text()  # harness/ not installed


def test_the_client_changes_nothing_and_uses_the_domain_it_is_given() -> None:
    pytest.importorskip("rclpy")
    env = {key: value for key, value in os.environ.items() if key != "ROS_DOMAIN_ID"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    result = subprocess.run([sys.executable, "-c", CLIENT_DOMAINS], capture_output=True, text=True, env=env,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report == {"env_unchanged": True, "default": 0, "chosen": 7}, "ROS's default domain, like any ROS tool"


def test_importing_the_harness_changes_nothing() -> None:
    code = ("import os; ros = lambda: {k: v for k, v in os.environ.items() if k.startswith(('ROS_', 'FASTRTPS_'))}; "
            "before = ros(); import harness.client, harness.demo, harness.node_process, harness.overlay_check; "
            "print(ros() == before)")  # ROS/DDS variables: cv2 and the ROS wheels set library paths of their own
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    env.pop("ROS_DOMAIN_ID", None)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
