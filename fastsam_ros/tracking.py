"""Follow objects through a stream: stable instance ids, and persistent prompts that follow what they selected.

:class:`InstanceTracker` gives every instance of every frame an id that stays with the object while the camera
moves. Association is mask-level, after global motion compensation:

1. every instance mask is subsampled onto a coarse grid (about 80 cells on the long side);
2. the frame-to-frame camera translation is estimated from the instances themselves, by phase correlation of
   the previous and current grids' instance density (a camera pan moves every mask the same way);
3. each track's last mask is moved by the motion accumulated since it was last seen and compared with every
   current mask (IoU on the grid, one matrix product); pairs are matched greedily by descending IoU above
   ``min_iou``;
4. unmatched tracks are *lost*; a lost track is re-acquired when a mask overlaps its motion-compensated last
   mask again, and forgotten after ``max_lost_frames`` frames; unmatched instances start new tracks.

Scale and rotation changes of a moving camera are slow per frame (a few per cent), so translation alone is
compensated and each track's template is replaced by its newest mask at every match. Why this and not
ultralytics' ByteTrack / BoT-SORT (box Kalman filters, BoT-SORT with sparse optical flow for camera motion):
``make eval-track`` compares them on the same frames; see the README's tracking section.

:class:`FollowedPrompt` is a persistent prompt after its first answer: the track ids of the instances it
picked; on later frames its answer is the instances that continue those tracks (no prompt rules, no CLIP).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from fastsam_ros.objects import build_object
from fastsam_ros.types import Segmentation, SelectedObject, Selection, Status

DEFAULT_MAX_LOST_FRAMES = 30
DEFAULT_MIN_IOU = 0.3
GRID_CELLS = 80  # association grid: cells on the long side of the network's mask
MOTION_WIDTH = 160  # the picture is shrunk to this width to measure camera motion
MIN_MOTION_RESPONSE = 0.05  # weaker phase-correlation peaks keep the previous frame's motion
DUPLICATE_IOU = 0.5  # a track also continues in an instance it overlaps this much, even if another track has it


@dataclass(frozen=True)
class TrackerParams:
    """How long a lost object may be re-acquired, and how much overlap continues a track."""

    max_lost_frames: int = DEFAULT_MAX_LOST_FRAMES
    min_iou: float = DEFAULT_MIN_IOU

    def __post_init__(self) -> None:
        if self.max_lost_frames < 0:
            raise ValueError(f"max_lost_frames must be >= 0, got {self.max_lost_frames}")
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")


@dataclass
class _Track:
    mask: np.ndarray  # (gh, gw) bool grid mask when last seen
    offset: np.ndarray  # (2,) float grid cells (dx, dy) the camera moved the object since it was last seen
    missing: int = 0  # frames since it was last seen


class InstanceTracker:
    """Stable ids for the instances of consecutive frames of one stream (ids start at 1; not thread-safe)."""

    def __init__(self, params: TrackerParams = TrackerParams()) -> None:
        self.params = params
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new stream, or a change of image size)."""
        self._tracks: dict[int, _Track] = {}
        self._next_id = 1
        self._shape: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._density: np.ndarray | None = None
        self._motion = np.zeros(2)
        self._continued: dict[int, int] = {}
        self._step = 0
        self.frames = 0

    @property
    def motion(self) -> tuple[float, float]:
        """The camera translation between the last two frames, in mask cells of the network's resolution."""
        step = self._step or 1
        return float(self._motion[0] * step), float(self._motion[1] * step)

    def missing_frames(self, track_id: int) -> int | None:
        """Frames since ``track_id`` was last seen (0: in the newest frame); None once forgotten or unknown."""
        track = self._tracks.get(track_id)
        return None if track is None else track.missing

    def update(self, segmentation: Segmentation, image: np.ndarray | None = None) -> np.ndarray:
        """The ``(N,)`` int64 track ids of this frame's instances (the frame after the previous ``update``).

        ``image`` (the frame, BGR) lets the camera motion be measured on the picture; without it, on the masks.
        """
        shape = (segmentation.image_shape, segmentation.geometry.mask_shape)
        if shape != self._shape:
            self.reset()
            self._shape = shape
            self._step = max(1, math.ceil(max(shape[1]) / GRID_CELLS))
        step = self._step
        grid = np.ascontiguousarray(segmentation.masks[:, step // 2 :: step, step // 2 :: step])
        if image is not None:
            scale = MOTION_WIDTH / image.shape[1]  # image pixels -> motion pixels
            small = cv2.resize(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), None, fx=scale, fy=scale,
                               interpolation=cv2.INTER_AREA).astype(np.float32)
            to_cells = segmentation.geometry.gain / (scale * step)
        else:
            small, to_cells = grid.sum(axis=0, dtype=np.float32), 1.0
        self._motion = self._estimate_motion(small, to_cells)
        self._density = small
        for track in self._tracks.values():
            track.offset += self._motion
        ids = self._associate(grid)
        self.frames += 1
        return ids

    def _estimate_motion(self, picture: np.ndarray, to_cells: float) -> np.ndarray:
        """Translation (dx, dy) in grid cells from the previous frame to this one."""
        previous = self._density
        if previous is None or previous.shape != picture.shape or not previous.any() or not picture.any():
            return self._motion
        window = cv2.createHanningWindow((picture.shape[1], picture.shape[0]), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(previous, picture, window)
        if response < MIN_MOTION_RESPONSE or not (math.isfinite(dx) and math.isfinite(dy)):
            return self._motion
        return np.array([dx, dy]) * to_cells

    def instance_of(self, track_id: int) -> int | None:
        """Index of the instance that continues ``track_id`` in the newest frame (None when it was not seen).

        Besides the instance that carries the id, a track also continues in an instance its last mask overlaps by
        ``DUPLICATE_IOU``: a model that outputs two near-identical masks for one object (one per class) and then
        only one of them loses neither object.
        """
        return self._continued.get(track_id)

    def _associate(self, grid: np.ndarray) -> np.ndarray:
        count = len(grid)
        ids = np.zeros(count, dtype=np.int64)
        track_ids = list(self._tracks)
        continued: dict[int, int] = {}  # track id -> the instance that carries it
        duplicates: dict[int, int] = {}  # track id -> the instance it continues in without carrying the id
        if track_ids and count:
            current = grid.reshape(count, -1).astype(np.float32)
            moved = np.stack([_shifted(self._tracks[t].mask, self._tracks[t].offset) for t in track_ids])
            moved = moved.reshape(len(track_ids), -1).astype(np.float32)
            inter = moved @ current.T
            union = moved.sum(axis=1)[:, None] + current.sum(axis=1)[None, :] - inter
            overlap = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            rows, cols = np.nonzero(overlap >= self.params.min_iou)
            for k in np.argsort(-overlap[rows, cols], kind="stable"):  # greedy, best overlap first
                row, col = int(rows[k]), int(cols[k])
                if track_ids[row] in continued or ids[col]:
                    continue
                continued[track_ids[row]] = col
                ids[col] = track_ids[row]
            best = overlap.argmax(axis=1)
            for row, track_id in enumerate(track_ids):
                if track_id not in continued and overlap[row, best[row]] >= DUPLICATE_IOU:
                    duplicates[track_id] = int(best[row])
        for index in range(count):
            if not ids[index]:
                ids[index] = self._next_id
                continued[self._next_id] = index
                self._next_id += 1
        for track_id in track_ids:
            track = self._tracks[track_id]
            if track_id in duplicates:  # seen, but its own mask stays its template: its id was not carried
                track.missing = 0
            elif track_id not in continued:
                track.missing += 1
                if track.missing > self.params.max_lost_frames:
                    del self._tracks[track_id]
        for track_id, index in continued.items():
            self._tracks[track_id] = _Track(mask=grid[index], offset=np.zeros(2))
        self._continued = {**duplicates, **continued}
        return ids


def _shifted(mask: np.ndarray, offset: np.ndarray) -> np.ndarray:
    """``mask`` moved by ``offset`` (dx, dy) whole cells, zero-filled where it enters."""
    dx, dy = (int(round(float(v))) for v in offset)
    if dx == 0 and dy == 0:
        return mask
    height, width = mask.shape
    out = np.zeros_like(mask)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    out[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = mask[
        max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


@dataclass(frozen=True)
class FollowedPrompt:
    """A persistent prompt after its first ``ok`` answer: per selected object, the track ids it was made of."""

    prompt_id: str
    objects: tuple[tuple[int, ...], ...]
    scores: tuple[float, ...]

    @classmethod
    def start(cls, selection: Selection, ids: np.ndarray) -> FollowedPrompt | None:
        """Begin following an ``ok`` selection made on the frame whose instance ids are ``ids``."""
        if not selection.ok or not selection.objects:
            return None
        objects = tuple(tuple(int(ids[i]) for i in obj.instances) for obj in selection.objects)
        return cls(selection.prompt_id, objects, tuple(obj.score for obj in selection.objects))

    def tagged(self, selection: Selection) -> Selection:
        """The first answer, its objects carrying their track ids."""
        pairs = zip(selection.objects, self.objects, strict=True)
        objects = tuple(_with_track(obj, tracks[0]) for obj, tracks in pairs)
        return Selection(selection.prompt_id, selection.status, selection.reason, objects)

    def answer(self, segmentation: Segmentation, tracker: InstanceTracker) -> Selection:
        """The instances continuing the followed objects in the frame ``tracker`` was last updated with."""
        objects: list[SelectedObject] = []
        lost: list[str] = []
        gone: list[str] = []
        limit = tracker.params.max_lost_frames
        for tracks, score in zip(self.objects, self.scores, strict=True):
            present = sorted({i for i in map(tracker.instance_of, tracks) if i is not None})
            obj = build_object(segmentation, present, score) if present else None
            if obj is not None:
                objects.append(_with_track(obj, tracks[0]))
                continue
            missing = [tracker.missing_frames(t) for t in tracks]
            if all(m is None for m in missing):
                gone.append(f"track {tracks[0]} was not seen for more than {limit} frames")
            else:
                frames = min(m for m in missing if m is not None)
                lost.append(f"track {tracks[0]} not seen for {frames} frame{'s' * (frames != 1)}")
        reason = "; ".join(lost + gone)
        if objects:
            return Selection(self.prompt_id, Status.OK, reason, tuple(objects))
        if lost:
            return Selection.failed(
                self.prompt_id, Status.LOST, f"{reason} (re-acquired if it returns within {limit} frames)"
            )
        return Selection.failed(self.prompt_id, Status.NO_MATCH, f"{reason}: clear or re-prompt")


def _with_track(obj: SelectedObject, track_id: int) -> SelectedObject:
    return dataclasses.replace(obj, track_id=int(track_id))


def follow_step(
    followed: FollowedPrompt | None,
    first_answer: Callable[[], Selection],
    segmentation: Segmentation,
    ids: np.ndarray,
    tracker: InstanceTracker,
) -> tuple[Selection, FollowedPrompt | None]:
    """One frame of a followed persistent prompt: the usual rules (``first_answer``) until they select something,
    then the instances continuing what they selected. Returns the answer and the state for the next frame."""
    if followed is not None:
        return followed.answer(segmentation, tracker), followed
    selection = first_answer()
    followed = FollowedPrompt.start(selection, ids)
    return (followed.tagged(selection) if followed else selection), followed
