"""A stand-in for ``FastSAMEngine`` whose instances are painted into the frame, so tests know every mask exactly.

Each distinct non-black BGR colour is one instance (its pixels). Colours that share a red value (BGR channel 2)
also form one instance together, their union: paint a table (0, 0, 200) with a cup (0, 80, 200) on it and the
instances are the cup, the table around the cup, and the whole table, nested as FastSAM's masks are.
Masks are at image resolution (identity geometry). A frame whose top-left pixel is ``FAIL_PIXEL`` makes
``segment`` raise, the way a CUDA out-of-memory error would; one whose top-left pixel is ``SLOW_PIXEL`` takes
``SLOW_FRAME_S`` to segment (a frame in flight during a transition or a signal).

The model name stands for how loading goes: ``slow-load.pt`` takes ``SLOW_LOAD_S`` (an export in progress), and
``assert.pt`` raises AssertionError (as torch does for a GPU index that does not exist).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from fastsam_ros.segmentation.backends import BackendInfo
from fastsam_ros.segmentation.masks import MaskGeometry, mask_box
from fastsam_ros.types import Segmentation, Timings

FAIL_PIXEL = (1, 2, 3)  # BGR
SLOW_PIXEL = (3, 2, 1)
SLOW_FRAME_S = 7.0  # longer than deactivate and cleanup each wait for a frame (2 s)
SLOW_LOAD_S = 60.0


def segmentation_from_masks(masks: list[np.ndarray], scores: list[float] | None = None) -> Segmentation:
    """Instances from image-resolution bool masks (identity geometry): boxes and areas exact."""
    image_shape = masks[0].shape if masks else (1, 1)
    stack = np.stack(masks) if masks else np.zeros((0, *image_shape), dtype=bool)
    boxes = [mask_box(mask) for mask in stack]
    return Segmentation(
        masks=stack, boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array(scores if scores is not None else [0.9] * len(stack), dtype=np.float32),
        geometry=MaskGeometry(tuple(image_shape), tuple(image_shape)), timings=Timings(inference_ms=1.0),
    )


def painted_instances(image: np.ndarray) -> list[np.ndarray]:
    """The instance masks painted into ``image`` (see the module docstring), in a fixed order."""
    flat = image.reshape(-1, 3)
    colours = [tuple(c) for c in np.unique(flat[flat.any(axis=1)], axis=0)]
    masks = [np.all(image == colour, axis=2) for colour in colours]
    for red in sorted({c[2] for c in colours}):
        family = [m for c, m in zip(colours, masks, strict=True) if c[2] == red]
        if len(family) > 1:
            masks.append(np.logical_or.reduce(family))
    return masks


class FakeEngine:
    """Drop-in for ``FastSAMEngine`` in node tests (``fake_engine_node.py`` patches it in)."""

    backend = BackendInfo("fake", half=False)  # what /diagnostics reports as the backend

    def __init__(self, config: Any = None, log: Any = None) -> None:
        self.config = config
        self.frames = 0
        model = Path(getattr(config, "model", "")).name
        if model == "slow-load.pt":
            time.sleep(SLOW_LOAD_S)
        if model == "assert.pt":
            raise AssertionError("Invalid device id")

    def warmup(self) -> None:
        self.segment(np.zeros((8, 8, 3), dtype=np.uint8))

    def segment(self, image: np.ndarray) -> Segmentation:
        self.frames += 1
        corner = tuple(int(v) for v in image[0, 0])
        if corner == FAIL_PIXEL:
            raise RuntimeError("CUDA out of memory (fake engine)")
        if corner == SLOW_PIXEL:
            time.sleep(SLOW_FRAME_S)
        masks = painted_instances(image)
        return segmentation_from_masks(masks) if masks else _empty(image.shape[:2])


def _empty(image_shape: tuple[int, int]) -> Segmentation:
    return Segmentation(masks=np.zeros((0, *image_shape), dtype=bool), boxes=np.zeros((0, 4), dtype=np.float32),
                        scores=np.zeros(0, dtype=np.float32),
                        geometry=MaskGeometry(image_shape, image_shape), timings=Timings(inference_ms=1.0))
