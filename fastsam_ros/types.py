"""Typed results shared by the engine, the selection rules, the CLI and the ROS shell.

Coordinates are image pixels with x to the right and y down; boxes are ``(x1, y1, x2, y2)``.
Images are ``HxWx3`` uint8 BGR arrays, the OpenCV and ultralytics convention.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from fastsam_ros.masks import EncodedMask, MaskGeometry, encode_crop, mask_box

Box = tuple[float, float, float, float]
PointXY = tuple[float, float]

FOREGROUND = 1
BACKGROUND = 0


@dataclass(frozen=True)
class Timings:
    """Milliseconds spent in each stage of one all-instance segmentation."""

    preprocess_ms: float = 0.0
    inference_ms: float = 0.0
    postprocess_ms: float = 0.0

    @property
    def total_ms(self) -> float:
        return self.preprocess_ms + self.inference_ms + self.postprocess_ms


@dataclass(frozen=True)
class Segmentation:
    """Every instance the all-instance stage found in one image.

    Masks stay at the network's output resolution (cheap to keep and to select from);
    ``geometry`` maps image pixels into them and upsamples only what is asked for.
    """

    masks: np.ndarray  # (N, mh, mw) bool, network resolution, letterboxed
    boxes: np.ndarray  # (N, 4) float32, xyxy image pixels
    scores: np.ndarray  # (N,) float32
    areas: np.ndarray  # (N,) int64, pixels at image resolution (estimated from the mask)
    geometry: MaskGeometry
    timings: Timings = field(default_factory=Timings)

    def __post_init__(self) -> None:
        n = len(self.masks)
        if not (len(self.boxes) == len(self.scores) == len(self.areas) == n):
            raise ValueError("masks, boxes, scores and areas must describe the same instances")
        if self.masks.shape[1:] != self.geometry.mask_shape:
            raise ValueError(f"masks are {self.masks.shape[1:]}, geometry says {self.geometry.mask_shape}")

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the source image."""
        return self.geometry.image_shape

    def full_mask(self, index: int) -> np.ndarray:
        """Instance ``index`` as an ``(H, W)`` bool mask at image resolution."""
        return self.geometry.upsample(self.masks[index])

    def encoded_mask(self, index: int) -> EncodedMask:
        """Instance ``index`` at image resolution, lossless, upsampling only the region its cells can reach."""
        region, x0, y0 = self.geometry.upsample_own_region(self.masks[index])
        box = mask_box(region)
        if box is None:
            return EncodedMask(0, 0, 0, 0, np.zeros(0, dtype=np.uint32))
        bx0, by0, bx1, by1 = box
        return EncodedMask(x0 + bx0, y0 + by0, bx1 - bx0, by1 - by0, encode_crop(region[by0:by1, bx0:bx1]))


@dataclass(frozen=True)
class Prompt:
    """What a user asks for on one frame: points with labels, boxes, or text.

    Each box selects its own object; points select one object (refining each box when both are given).
    """

    id: str = ""
    points: tuple[PointXY, ...] = ()
    labels: tuple[int, ...] = ()  # FOREGROUND (1) or BACKGROUND (0), one per point
    boxes: tuple[Box, ...] = ()
    text: str = ""

    @property
    def is_empty(self) -> bool:
        return not (self.points or self.boxes or self.text)


class Status(str, enum.Enum):
    """Outcome of answering one prompt; the value is what goes on the wire."""

    OK = "ok"
    NO_MATCH = "no_match"
    INVALID = "invalid"
    FRAME_NOT_AVAILABLE = "frame_not_available"
    ERROR = "error"
    LOST = "lost"  # a followed object is not in this frame; it may be re-acquired


@dataclass(frozen=True)
class Location3D:
    """Where a selected object is, from an aligned depth image: metres in the camera's optical frame.

    ``has_position`` is False when the object has no usable depth; ``reason`` then says why.
    """

    has_position: bool
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # robust centre (x right, y down, z forward)
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)  # axis-aligned extent of the robust points
    pixels: int = 0  # valid depth pixels used
    reason: str = ""

    @classmethod
    def missing(cls, reason: str) -> Location3D:
        return cls(has_position=False, reason=reason)


@dataclass(frozen=True)
class SelectedObject:
    """One object a prompt picked, at full image resolution."""

    mask: np.ndarray  # (H, W) bool
    box: Box  # tight box around ``mask``
    score: float  # the rule's confidence in this pick (box IoU, network score, ...)
    area: int
    centroid: PointXY
    instances: tuple[int, ...]  # indices into Segmentation that were merged into this object
    track_id: int = 0  # identity of a followed object across frames; 0 = not followed
    location: Location3D | None = None  # 3D position and extent, when depth was asked for

    @classmethod
    def from_mask(cls, mask: np.ndarray, score: float, instances: tuple[int, ...]) -> SelectedObject:
        bounds = mask_box(mask)
        if bounds is None:
            raise ValueError("a selected object needs at least one pixel")
        x0, y0, x1, y1 = bounds
        ys, xs = np.nonzero(mask[y0:y1, x0:x1])  # pixels of the box only, not of the whole frame
        area = len(xs)
        # Integer sums are exact, so this is the same float as the mean over whole-frame coordinates.
        centroid = (float((int(xs.sum()) + area * x0) / area), float((int(ys.sum()) + area * y0) / area))
        return cls(mask=mask, box=(float(x0), float(y0), float(x1), float(y1)), score=float(score), area=area,
                   centroid=centroid, instances=instances)

    def encoded_mask(self) -> EncodedMask:
        """The mask, lossless, encoded from its box crop (``box`` is tight: no scan of the whole frame)."""
        x0, y0, x1, y1 = (int(v) for v in self.box)
        return EncodedMask(x0, y0, x1 - x0, y1 - y0, encode_crop(self.mask[y0:y1, x0:x1]))


@dataclass(frozen=True)
class Selection:
    """The answer to one prompt on one frame."""

    prompt_id: str
    status: Status
    reason: str = ""
    objects: tuple[SelectedObject, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    def union_mask(self, image_shape: tuple[int, int]) -> np.ndarray:
        """All selected objects as one ``(H, W)`` bool mask (all false when nothing was selected)."""
        union = np.zeros(image_shape, dtype=bool)
        for obj in self.objects:
            union |= obj.mask
        return union

    @classmethod
    def failed(cls, prompt_id: str, status: Status, reason: str) -> Selection:
        return cls(prompt_id=prompt_id, status=status, reason=reason)
