"""Typed results shared by the engine, the selection rules, the CLI and the ROS shell.

Coordinates are image pixels with x to the right and y down; boxes are ``(x1, y1, x2, y2)``.
Images are ``HxWx3`` uint8 BGR arrays, the OpenCV and ultralytics convention.
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from fastsam_ros.segmentation.mask_set import DenseMasks, MaskSet
from fastsam_ros.segmentation.masks import (
    EncodedMask,
    EncodedMasks,
    MaskGeometry,
    encode_crops,
    encode_region,
    own_box,
    region_stats,
)

Box = tuple[float, float, float, float]
PointXY = tuple[float, float]

# The class of every instance of a class-agnostic checkpoint (FastSAM's single class): what standard detection
# messages carry as its class id.
CLASS_AGNOSTIC = "object"

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

    Masks stay at the network's input resolution and are made on demand (a :class:`MaskSet`, e.g. the engine's
    :class:`fastsam_ros.segmentation.instance_masks.InstanceMasks`: from the prototype logits, only where
    asked); ``geometry`` maps image pixels into them and upsamples only what is asked for. ``masks`` may be
    given as a dense ``(N, mh, mw)`` bool array (tests, hand-made masks).
    """

    masks: MaskSet
    boxes: np.ndarray  # (N, 4) float32, xyxy image pixels
    scores: np.ndarray  # (N,) float32
    geometry: MaskGeometry
    timings: Timings = field(default_factory=Timings)
    class_ids: np.ndarray | None = None  # (N,) int: the checkpoint's class of each instance (None: not known)
    class_names: tuple[str, ...] = ()  # the checkpoint's class names by class id (FastSAM: one, "object")

    def __post_init__(self) -> None:
        if not isinstance(self.masks, MaskSet):
            object.__setattr__(self, "masks", DenseMasks(self.masks))
        n = len(self.masks)
        if not (len(self.boxes) == len(self.scores) == n):
            raise ValueError("masks, boxes and scores must describe the same instances")
        if self.class_ids is not None and len(self.class_ids) != n:
            raise ValueError("class_ids must have one class per instance")
        if self.masks.shape != self.geometry.mask_shape:
            raise ValueError(f"masks are {self.masks.shape}, geometry says {self.geometry.mask_shape}")

    def __len__(self) -> int:
        return len(self.masks)

    @property
    def image_shape(self) -> tuple[int, int]:
        """``(height, width)`` of the source image."""
        return self.geometry.image_shape

    def class_name(self, index: int) -> str:
        """Instance ``index``'s class: :data:`CLASS_AGNOSTIC` for a single-class checkpoint (FastSAM) or one
        whose classes are not known, else the checkpoint's name for it (a YOLO-seg checkpoint's COCO classes)."""
        if self.class_ids is None or len(self.class_names) <= 1:
            return CLASS_AGNOSTIC
        class_id = int(self.class_ids[index])
        return self.class_names[class_id] if 0 <= class_id < len(self.class_names) else str(class_id)

    @functools.cached_property
    def areas(self) -> np.ndarray:
        """``(N,)`` int64 instance areas in image pixels, from the network-resolution masks: :meth:`areas_of`."""
        self.masks.make()  # all at once: fewer kernel calls
        return self.areas_of(np.arange(len(self)))

    def areas_of(self, indices: np.ndarray) -> np.ndarray:
        """Areas of instances ``indices`` in image pixels (int64), each made on first use and kept.

        Counts the mask's network pixels inside the letterbox content times the image pixels each stands for
        (:attr:`MaskGeometry.pixels_per_cell`), rounded: exact when the image is the letterbox's own size
        (640x480 at imgsz 640), else within ~0.2 % of the upsampled mask's pixel count. Making an area makes
        that instance's network-resolution pixels (kept for the other readers), so rules ask only for the
        instances they compare.
        """
        cache = self._area_cache
        content, scale = self.geometry.content_cells(), self.geometry.pixels_per_cell
        out = np.empty(len(indices), dtype=np.int64)
        for k, index in enumerate(np.asarray(indices, dtype=np.int64).tolist()):
            if index not in cache:
                cache[index] = int(np.rint(self.masks.count(index, content) * scale))
            out[k] = cache[index]
        return out

    @functools.cached_property
    def _area_cache(self) -> dict[int, int]:
        return {}

    def instance_region(self, index: int) -> tuple[np.ndarray, int, int]:
        """``(region, x0, y0)``: instance ``index`` at image resolution over just the region its cells can reach.

        Every pixel of :meth:`full_mask` lies in that region; an empty instance gives a 0x0 region. The region
        may share memory with the segmentation's cached pixels: read it, do not modify it.
        """
        if self.geometry.mask_shape == self.image_shape:  # no resize: the cells are the pixels
            tight = self.masks.tight(index)
            if tight is None:
                return np.zeros((0, 0), dtype=bool), 0, 0
            return tight[0], tight[1][0], tight[1][1]
        cells = self.masks.bounds(index)
        if cells is None:
            return np.zeros((0, 0), dtype=bool), 0, 0
        x0, y0, x1, y1 = self.geometry.cells_to_image_region(cells)
        return self.upsample(index, x0, y0, x1, y1), x0, y0

    def upsample(self, index: int, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """Instance ``index`` at image resolution inside ``[y0:y1, x0:x1]`` only."""
        window = self.geometry.source_window(x0, y0, x1, y1)
        return self.geometry.upsample_window(self.masks.window(index, window), window, x0, y0, x1, y1)

    def full_mask(self, index: int) -> np.ndarray:
        """Instance ``index`` as an ``(H, W)`` bool mask at image resolution."""
        height, width = self.image_shape
        return self.upsample(index, 0, 0, width, height)

    def encoded_mask(self, index: int) -> EncodedMask:
        """Instance ``index`` at image resolution, lossless, upsampling only the region its cells can reach."""
        return self.encoded_masks((index,))[0]

    def encoded_masks(self, indices: Sequence[int] | None = None) -> EncodedMasks:
        """:meth:`encoded_mask` of instances ``indices`` (default: all, made once and kept: the ``instances``
        message and the label image both read them), run-length encoded in one pass."""
        if indices is None:
            return self._all_encoded
        return self._encoded(indices)

    @functools.cached_property
    def _all_encoded(self) -> EncodedMasks:
        self.masks.make()  # all at once: fewer kernel calls
        return self._encoded(range(len(self)))

    def _encoded(self, indices: Sequence[int]) -> EncodedMasks:
        if self.geometry.mask_shape == self.image_shape:  # no resize: the cells are the pixels
            return self.masks.encoded(indices)
        crops = [own_box(*self.instance_region(index)) for index in indices]
        counts = encode_crops([crop for crop, _, _ in crops])
        return EncodedMasks.join([(x, y, x + crop.shape[1], y + crop.shape[0]) for crop, x, y in crops], counts)


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
    """Where a selected object is, from an aligned depth image: metres in ``frame_id`` (the camera's optical frame,
    or the node's ``target_frame``).

    ``has_position`` is False when the object has no usable depth; ``reason`` then says why.
    """

    has_position: bool
    position: tuple[float, float, float] = (0.0, 0.0, 0.0)  # robust centre (x right, y down, z forward)
    size: tuple[float, float, float] = (0.0, 0.0, 0.0)  # axis-aligned extent of the robust points
    pixels: int = 0  # valid depth pixels used
    reason: str = ""
    frame_id: str = ""  # the frame position and size are in (target_frame, else the camera's optical frame)

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
        stats = region_stats(mask)
        if stats is None:
            raise ValueError("a selected object needs at least one pixel")
        box, area, centroid = stats
        return cls(mask=mask, box=box, score=float(score), area=area, centroid=centroid, instances=instances)

    def encoded_mask(self) -> EncodedMask:
        """The mask, lossless, encoded from its box crop (``box`` is tight: no scan of the whole frame)."""
        x0, y0, x1, y1 = (int(v) for v in self.box)
        return encode_region(self.mask[y0:y1, x0:x1], x0, y0, tight=True)


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
