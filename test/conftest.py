"""Shared fixtures: paths to the optional shared assets, and a tiny random-weight FastSAM-compatible model.

Assets beside the checkout (``../shared``) are never committed; tests that need them take the
paths from environment variables and skip with the reason when they are absent.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
STANDIN_MODEL = Path(os.environ.get("FASTSAM_TEST_MODEL", SHARED / "models" / "yolov8n-seg.pt"))
SAMPLE_IMAGES = Path(os.environ.get("FASTSAM_TEST_IMAGES", SHARED / "data" / "images"))
EVAL_DATA = Path(os.environ.get("FASTSAM_EVAL_DATA", SHARED / "data" / "coco-seg-dev"))

# ultralytics must stay offline and write its settings inside the repo, not in ~/.config.
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_AUTOINSTALL", "0")
os.environ.setdefault("YOLO_CONFIG_DIR", str(REPO / ".cache" / "ultralytics"))
os.environ.setdefault("MPLCONFIGDIR", str(REPO / ".cache" / "matplotlib"))
# The engine's export cache ($XDG_CACHE_HOME/fastsam_ros), in this process and every node the tests start: one
# per session, removed at exit, so every session exercises the first start and leaves no exports behind.
os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix="fastsam-test-cache-")
atexit.register(shutil.rmtree, os.environ["XDG_CACHE_HOME"], True)

# harness/ (node launcher, client, demo) lives in the checkout and is not installed. Appended, so an installed
# fastsam_ros (colcon test) still wins over the sources.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
from harness.node_process import private_ros_network  # noqa: E402

# The integration tests' nodes and clients share one domain chosen here (make test picks ROS_DOMAIN_ID), localhost.
private_ros_network()


def pytest_sessionstart(session: pytest.Session) -> None:
    """Compile the numba kernels once, up front (seconds on a fresh clone): the nodes the tests start, warm-up off
    to start fast, then load them from numba's cache instead of each compiling them on its first frames."""
    from fastsam_ros.segmentation import instance_masks
    from fastsam_ros.tracking import tracker

    instance_masks.compile_kernels()
    tracker.compile_kernels()


def _require(path: Path, variable: str) -> Path:
    if not path.exists():
        pytest.skip(f"{path} is absent: set {variable} to run this test")
    return path


@pytest.fixture(scope="session")
def standin_model() -> Path:
    """A real pretrained YOLO-seg checkpoint standing in for FastSAM-s (FASTSAM_TEST_MODEL)."""
    return _require(STANDIN_MODEL, "FASTSAM_TEST_MODEL")


@pytest.fixture(scope="session")
def sample_images() -> Path:
    """The folder of sample camera frames (FASTSAM_TEST_IMAGES)."""
    return _require(SAMPLE_IMAGES, "FASTSAM_TEST_IMAGES")


@pytest.fixture(scope="session")
def eval_data() -> Path:
    """A YOLO-seg layout dataset with instance polygons (FASTSAM_EVAL_DATA)."""
    return _require(EVAL_DATA, "FASTSAM_EVAL_DATA")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A YOLOv8n-seg built from ultralytics' yaml with random weights, saved as a checkpoint.

    Its class biases are raised so that it reports instances on any image: enough to exercise
    the whole pipeline without downloaded weights.
    """
    import torch
    from ultralytics import YOLO

    torch.manual_seed(0)
    model = YOLO("yolov8n-seg.yaml", task="segment")
    for branch in model.model.model[-1].cv3:
        branch[-1].bias.data[:] = 4.0
    path = tmp_path_factory.mktemp("models") / "tiny-seg.pt"
    model.save(str(path))
    return path
