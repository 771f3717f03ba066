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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from fastsam_ros.objects import build_object
from fastsam_ros.types import Prompt, Segmentation, SelectedObject, Selection, Status

DEFAULT_MAX_LOST_FRAMES = 30
DEFAULT_MIN_IOU = 0.3
GRID_CELLS = 56  # association grid: cells on the long side of the network's mask
MOTION_WIDTH = 160  # the picture is shrunk to this width to measure camera motion
MIN_MOTION_RESPONSE = 0.05  # weaker phase-correlation peaks keep the previous frame's motion
DUPLICATE_IOU = 0.5  # a track also continues in an instance it overlaps this much, even if another track has it


@dataclass(frozen=True)
class TrackerParams:
    """How long a lost object may be re-acquired, and how much overlap continues a track."""

    max_lost_frames: int = DEFAULT_MAX_LOST_FRAMES
    min_iou: float = DEFAULT_MIN_IOU
    motion_from_picture: bool = True  # measure camera motion on the frame when given (false: on the masks)

    def __post_init__(self) -> None:
        if self.max_lost_frames < 0:
            raise ValueError(f"max_lost_frames must be >= 0, got {self.max_lost_frames}")
        if not 0.0 < self.min_iou <= 1.0:
            raise ValueError(f"min_iou must be in (0, 1], got {self.min_iou}")


class InstanceTracker:
    """Stable ids for the instances of consecutive frames of one stream (ids start at 1; not thread-safe)."""

    def __init__(self, params: TrackerParams = TrackerParams()) -> None:
        self.params = params
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new stream, or a change of image size)."""
        # One row per track: its id, grid mask when last seen, the camera motion since (grid cells), frames unseen.
        self._ids = np.zeros(0, dtype=np.int64)
        self._masks = np.zeros((0, 0, 0), dtype=bool)
        self._offsets = np.zeros((0, 2))
        self._missing = np.zeros(0, dtype=np.int64)
        self._next_id = 1
        self._shape: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._picture: np.ndarray | None = None
        self._motion = np.zeros(2)
        self._continued: dict[int, int] = {}
        self._step = 0

    @property
    def motion(self) -> tuple[float, float]:
        """The camera translation between the last two frames, in mask cells of the network's resolution."""
        step = self._step or 1
        return float(self._motion[0] * step), float(self._motion[1] * step)

    def missing_frames(self, track_id: int) -> int | None:
        """Frames since ``track_id`` was last seen (0: in the newest frame); None once forgotten or unknown."""
        rows = np.flatnonzero(self._ids == track_id)
        return int(self._missing[rows[0]]) if rows.size else None

    def instance_of(self, track_id: int) -> int | None:
        """Index of the instance that continues ``track_id`` in the newest frame (None when it was not seen).

        Besides the instance that carries the id, a track also continues in an instance its last mask overlaps by
        ``DUPLICATE_IOU``: a model that outputs two near-identical masks for one object (one per class) and then
        only one of them loses neither object.
        """
        return self._continued.get(track_id)

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
        mask_h, mask_w = segmentation.geometry.mask_shape
        ys, xs = np.meshgrid(np.arange(step // 2, mask_h, step), np.arange(step // 2, mask_w, step), indexing="ij")
        grid = segmentation.masks.at(xs.ravel(), ys.ravel()).reshape(len(segmentation), *xs.shape)
        if image is not None and self.params.motion_from_picture:
            picture = _shrunk(image).astype(np.float32)
            to_cells = segmentation.geometry.gain * image.shape[1] / (MOTION_WIDTH * step)
        else:
            picture, to_cells = grid.sum(axis=0, dtype=np.float32), 1.0
        self._motion = self._estimate_motion(picture, to_cells)
        self._picture = picture
        self._offsets += self._motion
        return self._associate(grid)

    def _estimate_motion(self, picture: np.ndarray, to_cells: float) -> np.ndarray:
        """Translation (dx, dy) in grid cells from the previous frame to this one."""
        previous = self._picture
        if previous is None or previous.shape != picture.shape or not previous.any() or not picture.any():
            return self._motion
        window = cv2.createHanningWindow((picture.shape[1], picture.shape[0]), cv2.CV_32F)
        (dx, dy), response = cv2.phaseCorrelate(previous, picture, window)
        if response < MIN_MOTION_RESPONSE or not (math.isfinite(dx) and math.isfinite(dy)):
            return self._motion
        return np.array([dx, dy]) * to_cells

    def _overlaps(self, grid: np.ndarray) -> np.ndarray:
        """``(T, N)`` IoU of every track's motion-compensated last mask with every instance, on the grid."""
        moved = self._masks.copy()
        offsets = np.rint(self._offsets).astype(np.int64)
        shifts, group = np.unique(offsets, axis=0, return_inverse=True)
        for index, (dx, dy) in enumerate(shifts):  # tracks seen in the last frame share one shift
            rows = group.reshape(-1) == index
            moved[rows] = _shifted(self._masks[rows], (int(dx), int(dy)))
        tracks = moved.reshape(len(moved), -1).astype(np.float32)
        current = grid.reshape(len(grid), -1).astype(np.float32)
        inter = tracks @ current.T
        union = tracks.sum(axis=1)[:, None] + current.sum(axis=1)[None, :] - inter
        return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)

    def _associate(self, grid: np.ndarray) -> np.ndarray:
        count, known = len(grid), len(self._ids)
        ids = np.zeros(count, dtype=np.int64)
        carried = np.full(known, -1)  # track row -> the instance that carries its id
        duplicate = np.full(known, -1)  # track row -> an instance it continues in without carrying the id
        if known and count:
            overlap = self._overlaps(grid)
            rows, cols = np.nonzero(overlap >= self.params.min_iou)
            for k in np.argsort(-overlap[rows, cols], kind="stable"):  # greedy, best overlap first
                row, col = int(rows[k]), int(cols[k])
                if carried[row] < 0 and not ids[col]:
                    carried[row], ids[col] = col, self._ids[row]
            best = overlap.argmax(axis=1)
            close = (carried < 0) & (overlap[np.arange(known), best] >= DUPLICATE_IOU)
            duplicate[close] = best[close]
        fresh = np.flatnonzero(ids == 0)
        ids[fresh] = np.arange(self._next_id, self._next_id + len(fresh))
        self._next_id += len(fresh)
        # Tracks not carried keep their last mask and motion; duplicates count as seen, the rest as missing.
        missing = np.where(duplicate >= 0, 0, self._missing + 1)
        kept = (carried < 0) & (missing <= self.params.max_lost_frames)
        self._continued = {int(self._ids[row]): int(duplicate[row]) for row in np.flatnonzero(duplicate >= 0)}
        self._continued.update((int(track_id), index) for index, track_id in enumerate(ids.tolist()))
        self._ids = np.concatenate([self._ids[kept], ids])
        self._masks = np.concatenate([self._masks[kept], grid]) if known else grid.copy()
        self._offsets = np.concatenate([self._offsets[kept], np.zeros((count, 2))])
        self._missing = np.concatenate([missing[kept], np.zeros(count, dtype=np.int64)])
        return ids


def _shifted(masks: np.ndarray, offset: tuple[int, int]) -> np.ndarray:
    """``(K, h, w)`` masks moved by ``offset`` (dx, dy) whole cells, zero-filled where they enter."""
    dx, dy = offset
    if dx == 0 and dy == 0:
        return masks
    height, width = masks.shape[1:]
    out = np.zeros_like(masks)
    if abs(dx) >= width or abs(dy) >= height:
        return out
    out[:, max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)] = masks[
        :, max(-dy, 0) : height + min(-dy, 0), max(-dx, 0) : width + min(-dx, 0)
    ]
    return out


def _shrunk(image: np.ndarray) -> np.ndarray:
    """The frame in grey, ``MOTION_WIDTH`` wide: halved by bilinear steps (a 2x2 box filter each, no aliasing,
    cheaper than one area resize), then resized the rest of the way."""
    small = image
    while small.shape[1] >= 2 * MOTION_WIDTH:
        small = cv2.resize(small, (small.shape[1] // 2, small.shape[0] // 2), interpolation=cv2.INTER_LINEAR)
    size = (MOTION_WIDTH, max(1, round(image.shape[0] * MOTION_WIDTH / image.shape[1])))
    if small.shape[1] != MOTION_WIDTH:
        small = cv2.resize(small, size, interpolation=cv2.INTER_LINEAR)
    return cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)


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


class PromptFollower:
    """Persistent prompts over one stream in one thread (the CLI's videos, the benchmark): each follows what it
    first selected. ``tracker`` gives the ids (:class:`InstanceTracker`, or another with ``update``,
    ``instance_of``, ``missing_frames`` and ``params``)."""

    def __init__(self, tracker: Any = None) -> None:
        self.tracker = tracker if tracker is not None else InstanceTracker()
        self._followed: dict[str, FollowedPrompt | None] = {}

    def answer(self, segmentation: Segmentation, image: np.ndarray | None, prompts: Sequence[Prompt],
               first_answer: Callable[[Prompt], Selection]) -> list[Selection]:
        """This frame's answers; ``first_answer`` applies the usual rules until a prompt selects something."""
        ids = self.tracker.update(segmentation, image)
        answers = []
        for prompt in prompts:
            answer, self._followed[prompt.id] = follow_step(
                self._followed.get(prompt.id), lambda p=prompt: first_answer(p), segmentation, ids, self.tracker)
            answers.append(answer)
        return answers
