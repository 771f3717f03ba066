"""What a benchmark ran on: CPU, cores, load, memory and the versions of everything that sets the figures."""

from __future__ import annotations

import datetime
import hashlib
import importlib.metadata
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any


def cpu_model(cpuinfo: str | None = None) -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (the processor description elsewhere)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return platform.processor() or platform.machine()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            return value.strip()
    return platform.processor() or platform.machine()


def rss_mb(pid: int) -> float | None:
    """Resident memory of process ``pid`` in MB (``VmRSS`` of ``/proc/<pid>/status``), None if it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    return parse_vmrss_mb(status)


def parse_vmrss_mb(status: str) -> float | None:
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0  # the kernel reports kB
    return None


def load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def reference_ms(repeats: int = 15) -> float:
    """Median ms of a fixed pure-Python loop: the machine's speed at the time. A shared VM runs the same code up to
    1.5x slower at times (other tenants, clocks), which moves every absolute figure; ratios measured side by side
    are not affected. Recorded at the start and end of a run so that its absolute figures can be read."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        total = 0
        for value in range(100_000):
            total += value * value
        times.append((time.perf_counter() - started) * 1000.0)
    return round(statistics.median(times), 2)


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def file_sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(model: str) -> dict[str, Any]:
    """The ``meta`` block's machine, software and model part (the bench adds image sizes and settings)."""
    import torch

    total_kb = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                total_kb = int(line.split()[1])
    except OSError:
        pass
    path = Path(model)
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, "-m", "bench", *sys.argv[1:]]),
        "machine": {
            "cpu": cpu_model(), "cores": os.cpu_count(),
            "memory_gb": round(total_kb / 1024**2, 1) if total_kb else None,
            "os": platform.platform(), "load_average_at_start": load_average(),
            "reference_ms_at_start": reference_ms(),
        },
        "software": {
            "python": platform.python_version(), "torch": torch.__version__,
            **{name: _version(name) for name in ("ultralytics", "numpy", "opencv-python", "onnxruntime", "openvino")},
            "rclpy": _version("ros-jazzy-rclpy"), "rmw": os.environ.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"),
        },
        "model": {"path": str(model), "bytes": path.stat().st_size if path.is_file() else None,
                  "sha256": file_sha256(path)},
    }
