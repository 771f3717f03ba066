"""Where the benchmarks find the stand-in model and the sample images: the paths in ``FASTSAM_TEST_MODEL`` and
``FASTSAM_TEST_IMAGES`` (the tests' variables), else ``../shared`` beside the checkout."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"


def add_model_and_images(parser: argparse.ArgumentParser) -> None:
    """``--model`` (a checkpoint path) and ``--images`` (a folder of sample images), with those defaults."""
    parser.add_argument("--model", default=os.environ.get("FASTSAM_TEST_MODEL",
                                                          str(SHARED / "models" / "yolov8n-seg.pt")))
    parser.add_argument("--images", type=Path, default=Path(os.environ.get("FASTSAM_TEST_IMAGES",
                                                                             SHARED / "data" / "images")))
