"""Start the node exactly as ``launch/fastsam.launch.py`` describes it, as a plain subprocess.

Where ``launch``/``launch_ros`` are not installed (PyPI ROS), the launch file's plain-data
``node_spec`` becomes the equivalent ``--ros-args`` command line. Used by the demo, the benchmark
and the integration tests; nothing here changes the environment unless asked (``private_ros_network``).
"""

from __future__ import annotations

import importlib.util
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]  # the source checkout (demo, bench and tests run from it)
LAUNCH_FILE = REPO / "launch" / "fastsam.launch.py"


def private_ros_network(domain_id: int | None = None) -> int:
    """Put this process, and the nodes it starts, on one DDS domain, localhost only; returns the domain.

    ``None`` keeps ``ROS_DOMAIN_ID`` when it is set, else picks one from 1-100, so a demo or test run neither
    disturbs nor hears a robot on domain 0. Also the big-SHM Fast DDS profile, so images are not lost. Called
    explicitly by the demo, the benchmark and the tests' conftest, never on import or construction.
    """
    if domain_id is None:
        domain_id = int(os.environ.get("ROS_DOMAIN_ID") or random.randint(1, 100))
    os.environ["ROS_DOMAIN_ID"] = str(domain_id)
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    profile = REPO / "config" / "fastdds.xml"
    if profile.exists():
        os.environ.setdefault("FASTRTPS_DEFAULT_PROFILES_FILE", str(profile))
    return domain_id


def load_launch_module() -> Any:
    spec = importlib.util.spec_from_file_location("fastsam_launch", LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def command_from_spec(spec: dict[str, Any], overrides: dict[str, Any]) -> list[str]:
    """The ``--ros-args`` command line equivalent of a launch_ros node description."""
    installed = Path(sys.executable).parent / spec["executable"]
    program = [str(installed)] if installed.exists() else [sys.executable, "-m", "fastsam_ros.ros.process"]
    args = ["--ros-args", "-r", f"__node:={spec['name']}"]
    if spec["namespace"]:
        args += ["-r", f"__ns:=/{spec['namespace'].lstrip('/')}"]
    for entry in spec["parameters"]:
        if isinstance(entry, str):
            args += ["--params-file", entry]
        else:
            overrides = {**entry, **overrides}
    for name, value in overrides.items():
        text = str(value).lower() if isinstance(value, bool) else (str(value) or "''")  # '' = YAML empty string
        args += ["-p", f"{name}:={text}"]
    for source, target in spec["remappings"]:
        args += ["-r", f"{source}:={target}"]
    return program + args


class NodeProcess:
    """The fastsam node in a subprocess started from the launch file's node description."""

    def __init__(self, log_path: Path, namespace: str = "", image: str = "/camera/image_raw",
                 program: list[str] | None = None, domain_id: int | None = None, env: dict[str, str] | None = None,
                 **parameters: Any) -> None:
        """``program`` replaces the node executable (tests run the node with a fake engine through it);
        ``domain_id`` None: the node inherits this process's ``ROS_DOMAIN_ID`` (ROS's default 0 when unset);
        ``env``: variables added to the node's environment."""
        launch = load_launch_module()
        spec = launch.node_spec(model=str(parameters.pop("model")), device="cpu", image=image,
                                **({"cameras": parameters["cameras"]} if parameters.get("cameras") else {}),
                                namespace=namespace, params_file=str(REPO / "config" / "fastsam.yaml"))
        self.command = command_from_spec(spec, parameters)
        if program is not None:
            self.command = program + self.command[self.command.index("--ros-args"):]
        self.log_path = log_path
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
               "PYTHONUNBUFFERED": "1",
               "PYTHONFAULTHANDLER": "1",  # a crash prints every thread's Python stack to the log
               **(env or {})}
        if domain_id is not None:
            env["ROS_DOMAIN_ID"] = str(domain_id)
        self._log = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(self.command, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def log(self) -> str:
        return self.log_path.read_text()

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> int:
        """SIGINT like Ctrl-C in a launch terminal; the node must exit cleanly."""
        if self.alive():
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return self.process.returncode


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(interval)
    return condition()


def stamp_of(msg: Any) -> int:
    """Header stamp of a message in nanoseconds."""
    return int(msg.header.stamp.sec) * 1_000_000_000 + int(msg.header.stamp.nanosec)
