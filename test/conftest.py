"""Shared fixtures: paths to the optional shared assets, and a tiny random-weight FastSAM-compatible model.

Assets beside the checkout (``../shared``) are never committed; tests that need them take the
paths from environment variables and skip with the reason when they are absent.
"""

from __future__ import annotations

import os
import sys
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

# harness/ (node launcher, client, demo) lives in the checkout and is not installed. Appended, so an installed
# fastsam_ros (colcon test) still wins over the sources.
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))
from harness.node_process import private_ros_network  # noqa: E402

# The integration tests' nodes and clients share one domain chosen here (make test picks ROS_DOMAIN_ID), localhost.
private_ros_network()


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
