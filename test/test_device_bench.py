"""``bench/device.sh`` (the GPU check) in its CPU smoke mode: it runs from the working tree without ROS and
reports every case with the instance count it asked for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_device_check_quick_mode_on_cpu(tmp_path: Path) -> None:
    pytest.importorskip("ultralytics", reason="the check runs our engine (torch and ultralytics)")
    out = tmp_path / "device.json"
    env = {**os.environ, "PYTHON": sys.executable, "TMPDIR": str(tmp_path)}
    env.pop("OUT", None)
    done = subprocess.run([str(REPO / "bench" / "device.sh"), "--device", "cpu", "--quick", "--rounds", "1",
                           "--out", str(out)], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())
    meta = results["meta"]
    assert meta["device"] == "cpu" and meta["gpu"] is None and meta["rclpy_imported"] is False
    assert meta["auto_backend"]["backend"] in ("onnx", "openvino", "pytorch")
    shaped = [c for c in results["cases"] if c["model"] == "fastsam_s_shaped"]
    assert [(c["imgsz"], c["precision"], c["instances_asked"], c["instances"]) for c in shaped] == [
        (320, "fp32", 5, 5), (320, "fp32", 100, 100)]  # max_det sets the count on the high-bias random network
    for case in results["cases"]:
        assert set(case["ms"]) == {"preprocess", "inference", "postprocess", "convert", "total"}
        assert case["ms"]["total"]["p50"] >= case["ms"]["inference"]["p50"] > 0
        assert case["cuda_share"] == dict.fromkeys(("preprocess", "inference", "postprocess", "convert"))
        assert case["network_input"] == [192, 320]  # zidane.jpg 1280x720 letterboxed at 320
    assert "fastsam_s_shaped" in done.stdout and "TensorRT" in done.stdout
    batching = results["batching"]  # several cameras' frames as one batch against one by one
    assert batching["frames"] == 4 and batching["ms"]["batched"]["p50"] > 0 and batching["throughput_ratio"] > 0
    assert "batching (4 frames" in done.stdout
