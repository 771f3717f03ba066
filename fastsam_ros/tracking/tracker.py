"""Follow objects through a stream: stable instance ids, and persistent prompts that follow what they selected.

:class:`InstanceTracker` gives every instance of every frame an id that stays with the object while the camera
moves. Association is mask-level, after global motion compensation:

1. every instance mask is subsampled onto a coarse grid (at most ``GRID_CELLS`` cells on the long side, a
   multiple of 4 mask pixels apart), kept one 64-bit word per grid row; the engine's lazy masks are read there
   as the sign of the prototype logit under each grid point, from only the logit rows under each box
   (:meth:`fastsam_ros.segmentation.instance_masks.InstanceMasks.packed_grid`: no mask is made);
2. the frame-to-frame camera translation is measured by phase correlation of the central ``MOTION_FIELD`` of the
   previous and current frames, shrunk to ``MOTION_WIDTH`` pixels wide (without the frame: of the grids'
   instance density). An object moving on its own across a large part of the view (someone walking past) makes
   its own peak, at times the strongest: of the ``MOTION_PEAKS`` strongest peaks, the one whose shift explains
   most of the picture (least capped difference: :func:`motion.camera_shift`) is the camera's;
3. each track's last mask is moved by the motion accumulated since it was last seen and compared with every
   current mask (IoU on the grid); pairs are matched greedily by descending IoU above ``min_iou``. Only pairs
   whose bounding boxes meet and whose areas and boxes allow an IoU that matters are compared (a popcount of
   the AND of their common rows, in compiled code: numba): at ~100 instances most pairs are ruled out, and no
   matrix product (whose BLAS threads fight the network's for the cores) is needed;
4. unmatched tracks are *lost*; a lost track is re-acquired when a mask overlaps its motion-compensated last
   mask again, and forgotten after ``max_lost_frames`` frames; unmatched instances start new tracks;
5. appearance (:mod:`fastsam_ros.tracking.appearance`): each mask's colour histogram is read from the frame at the
   grid points; a track keeps the one of
   its first mask, and never continues in (``APPEARANCE_LIMIT``), nor is re-acquired by
   (``APPEARANCE_LOST_LIMIT``), an instance whose colours differ clearly: another object of the same class that
   crosses a followed one, or that lies where a hidden one was, starts or keeps its own track;
6. a lost track takes its object back from a track started while it was hidden, or from a mask holding
   ``RETURN_CONTAINMENT`` of its last one, or lying within its whole extent (:mod:`fastsam_ros.tracking.extent`),
   when the colours agree (:mod:`fastsam_ros.tracking.takeover`);
7. tracks the model showed as near-identical masks of one object are twins: a lost one continues in the instance
   its twin carries (:mod:`fastsam_ros.tracking.twins`).

Scale and rotation changes of a moving camera are slow per frame (a few per cent), so translation alone is
compensated and each track's template is replaced by its newest mask at every match. Why this and not
ultralytics' ByteTrack / BoT-SORT (box Kalman filters, BoT-SORT with sparse optical flow for camera motion):
``make eval-track`` compares them on the same frames; see the README's tracking section.

Prompts that follow what they selected through these ids: :mod:`fastsam_ros.tracking.follow`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
from numba import njit

from fastsam_ros.segmentation.instance_masks import pack_rows, packed_grid_points
from fastsam_ros.tracking import motion
from fastsam_ros.tracking.appearance import APPEARANCE_LEVELS, appearance, image_points
from fastsam_ros.tracking.extent import RETURN_WITHIN, Extents
from fastsam_ros.tracking.takeover import takeovers
from fastsam_ros.tracking.twins import TWIN_IOU, Twins
from fastsam_ros.types import Segmentation

DEFAULT_MAX_LOST_FRAMES = 30
DEFAULT_MIN_IOU = 0.3
GRID_CELLS = 56  # association grid: cells on the long side of the network's mask (a grid row fits 64 bits)
MIN_MOTION_RESPONSE = 0.05  # weaker phase-correlation peaks keep the previous frame's motion
# A track never continues in, and a lost one is never re-acquired by, an instance whose colours differ from the
# track's first mask's by more than this Bhattacharyya distance (another object of its class crossing it: a
# merged mask of both is at ~0.45 on the eval's hard crossings, the other object alone at 0.5-0.7).
APPEARANCE_LIMIT = 0.6
APPEARANCE_LOST_LIMIT = 0.45
DUPLICATE_IOU = 0.5  # a track also continues in an instance it overlaps this much, even if another track has it
RETURN_CONTAINMENT = 0.9  # a lost track's object, back in a mask holding this share of its last mask (takeover)


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
        # Ids restart at 1 on every reset, so an id names one object only within one epoch: what follows an id
        # (:class:`FollowedPrompt`) keeps the epoch it was taken in and refuses to answer in another.
        self.epoch = -1
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new stream, or a change of image size) and start a new :attr:`epoch`."""
        self.epoch += 1
        # One row per track: its id, grid mask when last seen, the camera motion since (grid cells), frames unseen.
        self._ids = np.zeros(0, dtype=np.int64)
        self._masks = np.zeros((0, 0), dtype=np.uint64)  # (T, grid rows), bit x of a row: grid column x
        self._boxes = np.zeros((4, 0), dtype=np.int64)  # (top, bottom, left, right) of each track's mask, in cells
        self._width = 0  # grid columns (at most 64: a grid row is one uint64)
        self._offsets = np.zeros((0, 2))
        self._missing = np.zeros(0, dtype=np.int64)
        self._colours = np.zeros((0, APPEARANCE_LEVELS**3), dtype=np.float32)
        self._extents = Extents.empty()
        self._next_id = 1
        self._born = np.zeros(0, dtype=np.int64)  # the frame (count of updates) each track started
        self._frame = 0
        self._aliases: dict[int, int] = {}  # a young track's id -> the lost track that took its object over
        self._shape: tuple[tuple[int, int], tuple[int, int]] | None = None
        self._picture: np.ndarray | None = None
        self._spectrum: np.ndarray | None = None  # of ``_picture`` (windowed), None when too small to measure
        self._window: np.ndarray | None = None  # phase correlation's Hanning window, made once per picture size
        self._motion = np.zeros(2)
        self._continued: dict[int, int] = {}
        self._twins = Twins()
        self._step = 0  # grid cell in mask pixels: ``4 * self._cells`` (``_cells`` prototype cells)
        self._cells = 0
        self._points = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._corner_grid = False  # masks too thin for the packed grid's points (tiny frames): read from pixel 0

    @property
    def motion(self) -> tuple[float, float]:
        """The camera translation between the last two frames, in mask cells of the network's resolution."""
        step = self._step or 1
        return float(self._motion[0] * step), float(self._motion[1] * step)

    def missing_frames(self, track_id: int) -> int | None:
        """Frames since ``track_id`` was last seen (0: in the newest frame); None once forgotten or unknown."""
        rows = np.flatnonzero(self._ids == self._aliases.get(track_id, track_id))
        return int(self._missing[rows[0]]) if rows.size else None

    def instance_of(self, track_id: int) -> int | None:
        """Index of the instance that continues ``track_id`` in the newest frame (None when it was not seen).

        Besides the instance that carries the id, a track also continues in an instance its last mask overlaps by
        ``DUPLICATE_IOU``: a model that outputs two near-identical masks for one object (one per class) and then
        only one of them loses neither object.
        """
        return self._continued.get(self._aliases.get(track_id, track_id))

    def update(self, segmentation: Segmentation, image: np.ndarray | None = None,
               grid: np.ndarray | None = None) -> np.ndarray:
        """The ``(N,)`` int64 track ids of this frame's instances (the frame after the previous ``update``).

        ``image`` (the frame, BGR) lets the camera motion be measured on the picture; without it, on the masks.
        ``grid``: :meth:`read` of this segmentation, when the caller read it first (to make the masks meanwhile).
        """
        grid = self.read(segmentation) if grid is None else grid
        shrunk = motion.shrunk(image) if image is not None and self.params.motion_from_picture else None
        if shrunk is not None:
            picture, to_cells = shrunk[0], segmentation.geometry.gain * shrunk[1] / self._step
        else:
            picture, to_cells = motion.density(grid, self._width), 1.0
        self._motion = self._estimate_motion(picture, to_cells)
        self._offsets += self._motion
        self._extents.offsets += self._motion
        boxes = _bounds(grid)
        colours = appearance(grid, boxes, image, self._points) if image is not None else np.zeros(
            (len(grid), APPEARANCE_LEVELS**3), np.float32)
        return self._associate(grid, boxes, colours)

    def read(self, segmentation: Segmentation) -> np.ndarray:
        """Every instance of ``segmentation`` on the tracker's grid (packed rows): all :meth:`update` reads of its
        masks. Masks made after this (another thread may make them meanwhile) change nothing the tracker sees;
        a new frame or mask size resets the tracker here."""
        shape = (segmentation.image_shape, segmentation.geometry.mask_shape)
        if shape != self._shape:
            self.reset()
            self._shape = shape
            self._cells = max(1, math.ceil(max(shape[1]) / (4 * GRID_CELLS)))
            self._step = 4 * self._cells
            self._width = len(packed_grid_points(shape[1][1], self._cells))
            self._corner_grid = not (self._width and len(packed_grid_points(shape[1][0], self._cells)))
            if self._corner_grid:  # a grid from pixel 0, as fine as GRID_CELLS allows: even a 1x1 mask is tracked
                self._step = math.ceil(max(shape[1]) / GRID_CELLS)
                self._width = len(range(0, shape[1][1], self._step))
            self._points = image_points(segmentation.geometry, self._step, 0 if self._corner_grid else
                                         4 * (self._cells // 2) + 2)
        if self._corner_grid:
            return pack_rows(np.ascontiguousarray(segmentation.masks.grid(self._step, 0)))
        return segmentation.masks.packed_grid(self._cells)

    def _estimate_motion(self, picture: np.ndarray, to_cells: float) -> np.ndarray:
        """Translation (dx, dy) in grid cells from the previous frame to this one; keeps this frame's picture and its
        spectrum for the next."""
        previous, previous_spectrum = self._picture, self._spectrum
        self._picture, self._spectrum = picture, None
        if min(picture.shape) < motion.MIN_MOTION_SIDE:
            return np.zeros(2)
        if self._window is None or self._window.shape != picture.shape:
            self._window = cv2.createHanningWindow((picture.shape[1], picture.shape[0]), cv2.CV_32F)
        self._spectrum = motion.spectrum(picture, self._window)
        if previous_spectrum is None or previous.shape != picture.shape or not previous.any() or not picture.any():
            return self._motion
        shift = motion.camera_shift(previous, picture, previous_spectrum, self._spectrum, MIN_MOTION_RESPONSE)
        return self._motion if shift is None else shift * to_cells

    def _overlaps(self, masks: np.ndarray, bounds: np.ndarray, offsets: np.ndarray, grid: np.ndarray,
                  boxes: np.ndarray, areas: np.ndarray, floor: float, contain: float, within: float
                  ) -> tuple[np.ndarray, ...]:
        """``(tracks, instances, iou, inside, within)``: the IoU of track ``tracks[k]``'s mask (its last one, or
        its extent) moved by ``offsets`` with instance ``instances[k]`` (packed grid rows), the share of that mask
        the instance holds, and the share of the instance inside it, for the pairs (in track, then instance
        order) that reach ``floor``, or for a lost track ``contain`` or ``within`` (see :func:`_overlaps`)."""
        height, width = grid.shape[1], self._width
        shifts = np.rint(offsets.T)  # whole cells, clipped where they move a mask out of the grid
        dx = shifts[0].clip(-width, width).astype(np.int64)
        dy = shifts[1].clip(-height, height).astype(np.int64)
        return _overlaps(masks, bounds, dx, dy, width, grid, boxes, areas, floor, self._missing > 0, contain, within)

    def _associate(self, grid: np.ndarray, boxes: np.ndarray, colours: np.ndarray) -> np.ndarray:
        count, known = len(grid), len(self._ids)
        areas = _area(grid)
        ids = np.zeros(count, dtype=np.int64)
        carried = np.full(known, -1)  # track row -> the instance that carries its id
        duplicate = np.full(known, -1)  # track row -> an instance it continues in without carrying the id
        ended = np.zeros(known, dtype=bool)  # young tracks whose object a lost one took back
        if known and count:
            floor = min(self.params.min_iou, DUPLICATE_IOU) * (1 - 1e-6)  # margin for the float32 division
            tracks, instances, overlap, inside, _ = self._overlaps(
                self._masks, self._boxes, self._offsets, grid, boxes, areas, floor, RETURN_CONTAINMENT, 2.0)
            likeness = np.einsum("pk,pk->p", self._colours[tracks], colours[instances])
            compared = self._colours[tracks].any(axis=1) & colours[instances].any(axis=1)
            limit = np.where(self._missing[tracks] > 0, APPEARANCE_LOST_LIMIT, APPEARANCE_LIMIT)
            overlap = np.where(compared & (likeness < 1 - limit**2), np.float32(0), overlap)
            carried, duplicate = _match(tracks, instances, overlap, known, count,
                                        np.float32(self.params.min_iou), np.float32(DUPLICATE_IOU))
            back = (carried[tracks] < 0) & (likeness >= 1 - APPEARANCE_LOST_LIMIT**2) & (  # tracks that carry
                (overlap >= self.params.min_iou) | (inside >= RETURN_CONTAINMENT))  # nothing: colours alike, overlap
            extent = self._extents
            lost_rows, inside_rows = self._overlaps(extent.masks, extent.boxes, extent.offsets, grid, boxes, areas,
                                                    2.0, 2.0, RETURN_WITHIN)[:2]  # instances inside lost extents
            alike = np.einsum("pk,pk->p", self._colours[lost_rows], colours[inside_rows])
            inner = (carried[lost_rows] < 0) & (alike >= 1 - APPEARANCE_LOST_LIMIT**2)
            if back.any() or inner.any():  # most frames: no track that lost its object has it back
                for lost, young, instance in takeovers(  # pairs inside an extent only: after those that overlap
                        np.concatenate([tracks[back], lost_rows[inner]]), np.concatenate([instances[back],
                                                                                         inside_rows[inner]]),
                        np.concatenate([overlap[back], np.zeros(inner.sum(), np.float32)]), carried, self._born,
                        self._frame - 1 - self._missing):
                    carried[lost], duplicate[lost] = instance, -1
                    if young >= 0:
                        carried[young], ended[young] = -1, True
                        self._alias(int(self._ids[young]), int(self._ids[lost]))
            rows = np.flatnonzero(carried >= 0)
            ids[carried[rows]] = self._ids[rows]
        rows = np.flatnonzero(carried >= 0)
        known_colours = rows[self._colours[rows].any(axis=1)]
        colours[carried[known_colours]] = self._colours[known_colours]  # a track keeps its first colours
        fresh = np.flatnonzero(ids == 0)
        ids[fresh] = np.arange(self._next_id, self._next_id + len(fresh))
        self._next_id += len(fresh)
        # Tracks not carried keep their last mask and motion; duplicates count as seen, the rest as missing.
        missing = np.where(duplicate >= 0, 0, self._missing + 1)
        kept = (carried < 0) & (missing <= self.params.max_lost_frames) & ~ended
        close = np.flatnonzero(duplicate >= 0)
        self._continued = dict(zip(self._ids[close].tolist(), duplicate[close].tolist(), strict=True))
        seen = dict(zip(ids.tolist(), range(count), strict=True))
        self._continued.update(seen)
        lost_ids = self._ids[kept].tolist()
        zero = np.zeros(count, np.int64)  # this frame's near-identical instance pairs, unmoved
        pairs = _overlaps(grid, boxes, zero, zero, self._width, grid, boxes, areas, TWIN_IOU, np.zeros(count, bool),
                          2.0, 2.0)[:3]
        self._twins.update(set(lost_ids) | set(seen), ids, *pairs)
        self._continued.update(self._twins.continuing(lost_ids, self._continued))
        self._ids = np.concatenate([self._ids[kept], ids])
        self._masks = np.concatenate([self._masks[kept], grid]) if known else grid
        self._boxes = np.concatenate([self._boxes[:, kept], boxes], axis=1)
        self._offsets = np.concatenate([self._offsets[kept], np.zeros((count, 2))])
        self._missing = np.concatenate([missing[kept], np.zeros(count, dtype=np.int64)])
        self._colours = np.concatenate([self._colours[kept], colours])
        self._extents = self._extents.updated(kept, carried, grid, boxes, areas)
        born = np.full(count, self._frame)
        born[carried[rows]] = self._born[rows]  # a carried track keeps the frame it started
        self._born, self._frame = np.concatenate([self._born[kept], born]), self._frame + 1
        return ids

    def _alias(self, young: int, lost: int) -> None:
        """``young``'s id (and its own aliases) now name ``lost``; aliases of forgotten tracks are dropped."""
        alive = set(self._ids.tolist())
        self._aliases = {old: (lost if new == young else new) for old, new in self._aliases.items() if new in alive}
        self._aliases[young] = lost


@njit(cache=True, nogil=True)
def _match(tracks, instances, overlap, known, count, min_iou, duplicate_iou):
    """``(carried, duplicate)`` per track: the instance that carries its id (greedy, best overlap first; ties: the
    pairs' order, first track then instance; only pairs reaching ``min_iou``), and for a track that carries
    none, its best instance when they overlap at least ``duplicate_iou``; -1 where none."""
    order = np.argsort(-overlap, kind="mergesort")  # stable: equal overlaps keep their order
    taken = np.zeros(count, np.bool_)
    carried, best = np.full(known, -1), np.full(known, -1)
    for k in order:
        track, instance = tracks[k], instances[k]
        if best[track] < 0:
            best[track] = k
        if overlap[k] >= min_iou and carried[track] < 0 and not taken[instance]:
            carried[track], taken[instance] = instance, True
    duplicate = np.full(known, -1)
    for track in range(known):
        if carried[track] < 0 and best[track] >= 0 and overlap[best[track]] >= duplicate_iou:
            duplicate[track] = instances[best[track]]
    return carried, duplicate


_M1, _M2, _M4 = np.uint64(0x5555555555555555), np.uint64(0x3333333333333333), np.uint64(0x0F0F0F0F0F0F0F0F)
_H01 = np.uint64(0x0101010101010101)


@njit(inline="always")
def _popcount(word):
    word = word - ((word >> np.uint64(1)) & _M1)
    word = (word & _M2) + ((word >> np.uint64(2)) & _M2)
    return np.int64((((word + (word >> np.uint64(4))) & _M4) * _H01) >> np.uint64(56))


@njit(cache=True, nogil=True)
def _overlaps(masks, boxes, dx, dy, width, grid, grid_boxes, areas, floor, lost, contain, within):
    """:meth:`InstanceTracker._overlaps` of tracks ``masks`` (``(T, h)`` packed, bounds ``boxes``) moved by
    ``(dx, dy)`` whole cells (``|dx| <= width``) against instances ``grid`` (bounds ``grid_boxes``, cells
    ``areas``), keeping IoUs of at least ``floor`` and, for ``lost`` tracks, pairs whose instance holds at least
    ``contain`` of the moved mask or lies at least ``within`` inside it; returns ``(tracks, instances, iou, held
    share, inside share)``.

    Only pairs whose moved boxes meet, and whose areas and common box allow ``floor``, have their common rows
    read (a popcount of their AND): at ~100 instances most pairs are ruled out without reading a mask. Cells
    that a move takes out of the grid do not count.
    """
    count, height = masks.shape
    columns = ~np.uint64(0) if width >= 64 else (np.uint64(1) << np.uint64(width)) - np.uint64(1)
    moved = np.zeros((count, height), np.uint64)  # row y of the moved mask is row y - dy of ``moved``
    area = np.zeros(count, np.int64)
    for t in range(count):
        up, down = max(dx[t], 0), max(-dx[t], 0)  # columns move up the bits (dx > 0) or down
        for row in range(height):
            word = (masks[t, row] << np.uint64(up)) if up < 64 else np.uint64(0)
            word = ((word & columns) >> np.uint64(down)) if down < 64 else np.uint64(0)
            moved[t, row] = word
            if 0 <= row + dy[t] < height:
                area[t] += _popcount(word)
    limit = count * len(grid)
    tracks, instances = np.empty(limit, np.int64), np.empty(limit, np.int64)
    overlap, inside, inner = np.empty(limit, np.float32), np.empty(limit, np.float32), np.empty(limit, np.float32)
    share = floor / (1 + floor)  # IoU >= floor needs common >= floor * (a + b - common): common >= share * (a + b)
    found = 0
    for t in range(count):
        top, bottom = min(max(boxes[0, t] + dy[t], 0), height), min(max(boxes[1, t] + dy[t], 0), height)
        left, right = min(max(boxes[2, t] + dx[t], 0), width), min(max(boxes[3, t] + dx[t], 0), width)
        for i in range(len(grid)):
            if not (top < grid_boxes[1, i] and bottom > grid_boxes[0, i] and left < grid_boxes[3, i]
                    and right > grid_boxes[2, i]):
                continue
            first = max(top, grid_boxes[0, i])
            rows = min(bottom, grid_boxes[1, i]) - first
            span = min(right, grid_boxes[3, i]) - max(left, grid_boxes[2, i])
            size = area[t] + areas[i]
            bound = min(min(area[t], areas[i]), rows * span)  # most cells in common
            if bound < max(share * size, 1.0) and not (lost[t] and bound >= max(min(contain * area[t], within
                                                                                   * areas[i]), 1.0)):
                continue
            common = 0
            for row in range(first, first + rows):
                common += _popcount(moved[t, row - dy[t]] & grid[i, row])
            iou = np.float32(common) / np.float32(size - common)
            held = np.float32(common) / np.float32(max(area[t], 1))
            lies = np.float32(common) / np.float32(max(areas[i], 1))
            if iou >= np.float32(floor) or (lost[t] and (held >= np.float32(contain) or lies >= np.float32(within))):
                tracks[found], instances[found], overlap[found], inside[found], inner[found] = t, i, iou, held, lies
                found += 1
    return tracks[:found], instances[:found], overlap[:found], inside[:found], inner[:found]


def compile_kernels() -> None:
    """Compile the association's kernels now (seconds; a fraction of one from numba's cache of an earlier start),
    not on the second frame of a stream."""
    words, boxes, shifts = np.zeros((1, 1), np.uint64), np.zeros((4, 1), np.int64), np.zeros(1, np.int64)
    _overlaps(words, boxes, shifts, shifts, 1, words, boxes, shifts, DEFAULT_MIN_IOU, np.ones(1, np.bool_),
              RETURN_CONTAINMENT, RETURN_WITHIN)
    _match(shifts, shifts, np.zeros(1, np.float32), 1, 1, np.float32(DEFAULT_MIN_IOU), np.float32(DUPLICATE_IOU))
    _bounds(words)
    _area(words)
    appearance(words, boxes, np.zeros((1, 1, 3), np.uint8), (shifts, shifts))
    side = motion.MIN_MOTION_SIDE
    picture = np.ones((side, side), np.float32)
    spectrum = motion.spectrum(picture, cv2.createHanningWindow((side, side), cv2.CV_32F))
    motion.camera_shift(picture, picture, spectrum, spectrum, MIN_MOTION_RESPONSE)


@njit(cache=True, nogil=True)
def _area(masks):
    """``(K,)`` int64 cells of ``(K, h)`` packed masks."""
    area = np.zeros(len(masks), np.int64)
    for k in range(len(masks)):
        for row in range(masks.shape[1]):
            area[k] += _popcount(masks[k, row])
    return area


@njit(cache=True, nogil=True)
def _bounds(masks):
    """``(4, K)`` int64 ``(top, bottom, left, right)`` cell bounds (end exclusive) of ``(K, h)`` packed masks; an
    empty mask gets an empty box that meets nothing."""
    count, height = masks.shape
    box = np.empty((4, count), np.int64)
    for k in range(count):
        top, bottom, columns = height, 0, np.uint64(0)
        for row in range(height):
            if masks[k, row]:
                top, bottom = min(top, row), row + 1
                columns |= masks[k, row]
        left, right = 64, 0
        for bit in range(64):
            if (columns >> np.uint64(bit)) & np.uint64(1):
                left, right = min(left, bit), bit + 1
        box[0, k], box[1, k], box[2, k], box[3, k] = top, bottom, left, right
    return box
