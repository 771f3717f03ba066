"""The moving-camera benchmark of followed prompts; ``make eval-track`` runs it through the node
(``harness/eval_track.py``).

Sequences are rendered from the COCO dev set (``fastsam_ros.camera_motion``): 24 frames at 640x480, a smooth
camera path per image that moves the target 25-45 % of the frame width, zooms 1.0-1.25 and rotates up to 4
degrees; the ground-truth masks move with the same transform. One target per image, chosen deterministically
(seeded by the image name) among instances that stay in view; on every other image the path is chosen, where
one exists, so that another object passes under the clicked pixel (the *crossing* subset). One click on frame
0, at the target pixel farthest from its boundary, as a persistent prompt.

Methods, all answering from the same all-instance results (the node's `instances`):

* ``follow``: the node's persistent prompt, following what it selected (:class:`fastsam_ros.tracking.InstanceTracker`);
* ``pixel_fixed``: the node's persistent prompt with ``reapply``: the click re-applied to every frame;
* reference methods run here on the same instances (:func:`reference_followers`): ``follow_masks_only`` (our
  tracker measuring camera motion on the masks instead of the picture), ``bytetrack`` and ``botsort``
  (ultralytics' trackers giving the ids, only when their ``lap`` dependency is importable; BoT-SORT with its
  sparse optical flow camera-motion compensation);
* ``oracle``: per frame, the best IoU any single predicted mask reaches (the ceiling for following one mask).

Reported per method: J (mean IoU over all frames; a frame without an answer scores 0), late J (the second half
of each sequence: drift), the share of frames with IoU >= 0.5, and the same on the crossing subset.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fastsam_ros.camera_motion import CameraPath
from fastsam_ros.evaluate import MIN_AREA, GroundTruth, farthest_inside, image_pairs, read_instances
from fastsam_ros.masks import iou
from fastsam_ros.tracking import InstanceTracker, PromptFollower, TrackerParams
from fastsam_ros.types import FOREGROUND, PointXY, Prompt, Segmentation

FRAMES = 24
DEFAULT_SEQUENCES = 40
PAN_RANGE = (0.25, 0.45)  # of the frame width
ZOOM_RANGE = (1.0, 1.25)
MAX_ROTATION_DEG = 4.0
DIRECTIONS = 16
MARGIN = 2  # target box must stay this many pixels inside the frame
TARGETS = {"overall": 0.90, "crossing": 0.85, "drift": 0.03, "over_pixel_fixed": 0.15}


@dataclass(frozen=True)
class TrackSequence:
    """One moving-camera sequence: the source image, the camera path, the target and the click on frame 0."""

    name: str
    image_path: Path
    path: CameraPath
    target: GroundTruth  # at source resolution
    click: PointXY  # frame 0 pixels
    crossing: bool  # another object passes under the clicked pixel

    @property
    def prompt(self) -> Prompt:
        """The click, as the core prompt the reference methods answer (the node gets the same as a message)."""
        return Prompt(id="click", points=(self.click,), labels=(FOREGROUND,))

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """``(frame BGR, ground-truth mask)`` for every frame."""
        image = cv2.imread(str(self.image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"could not read image {self.image_path}")
        for index in range(self.path.frames):
            yield self.path.render(index, image), self.path.render_mask(index, self.target.mask)


def _box_corners(box: tuple[int, int, int, int]) -> np.ndarray:
    x0, y0, x1, y1 = box
    return np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]], dtype=np.float64)


def _stays_in_view(path: CameraPath, target: GroundTruth) -> bool:
    width, height = path.frame_size
    corners = _box_corners(target.box)
    for index in range(path.frames):
        mapped = path.map_points(index, corners)
        if mapped[:, 0].min() < MARGIN or mapped[:, 1].min() < MARGIN:
            return False
        if mapped[:, 0].max() > width - MARGIN or mapped[:, 1].max() > height - MARGIN:
            return False
    return True


def _crosses(path: CameraPath, click: PointXY, target: GroundTruth, others: Sequence[GroundTruth]) -> bool:
    """Whether the fixed click pixel lies on another object, and not on the target, in some later frame."""
    height, width = target.mask.shape
    for index in range(1, path.frames):
        x, y = path.unmap_points(index, np.array([click]))[0]
        col, row = int(np.floor(x)), int(np.floor(y))
        if not (0 <= col < width and 0 <= row < height) or target.mask[row, col]:
            continue
        if any(other.mask[row, col] for other in others):
            return True
    return False


def plan_sequence(index: int, image_path: Path, label_path: Path) -> TrackSequence | None:
    """The sequence for one image (None when no instance can move far enough and stay in view)."""
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not read image {image_path}")
    height, width = image.shape[:2]
    instances = read_instances(label_path, (height, width), MIN_AREA)
    rng = np.random.default_rng(zlib.crc32(image_path.name.encode()))
    pan = rng.uniform(*PAN_RANGE)
    zoom = rng.uniform(*ZOOM_RANGE)
    rotation = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    options: list[tuple[TrackSequence, bool]] = []
    for target_index, target in enumerate(instances):
        others = instances[:target_index] + instances[target_index + 1 :]
        for direction in range(DIRECTIONS):
            angle = 2 * np.pi * direction / DIRECTIONS
            distance = pan * 640
            path = CameraPath((width, height), (distance * np.cos(angle), distance * np.sin(angle)), zoom, rotation,
                              FRAMES)
            if not _stays_in_view(path, target):
                continue
            first = path.render_mask(0, target.mask)
            if np.count_nonzero(first) < MIN_AREA:
                continue
            click = farthest_inside(first)
            crossing = _crosses(path, click, target, others)
            name = f"{image_path.stem}/{target_index}/{direction}"
            options.append((TrackSequence(name, image_path, path, target, click, crossing), crossing))
    if not options:
        return None
    crossing_options = [sequence for sequence, crossing in options if crossing]
    pool = crossing_options if index % 2 == 0 and crossing_options else [sequence for sequence, _ in options]
    return pool[int(rng.integers(len(pool)))]


def plan_sequences(data_dir: Path, count: int = DEFAULT_SEQUENCES) -> list[TrackSequence]:
    """The first ``count`` images (by name) that give a sequence, one sequence each."""
    sequences: list[TrackSequence] = []
    for image_path, label_path in image_pairs(Path(data_dir)):
        if len(sequences) >= count:
            break
        sequence = plan_sequence(len(sequences), image_path, label_path)
        if sequence is not None:
            sequences.append(sequence)
    return sequences


class UltralyticsIds:
    """Instance ids from ultralytics' ByteTrack or BoT-SORT, with the interface ``follow_step`` needs."""

    def __init__(self, kind: str) -> None:
        from ultralytics.trackers import BOTSORT, BYTETracker
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        config = IterableSimpleNamespace(**YAML.load(check_yaml(f"{kind}.yaml")))
        self._tracker = {"bytetrack": BYTETracker, "botsort": BOTSORT}[kind](config)
        self.params = TrackerParams(max_lost_frames=int(config.track_buffer))
        self.epoch = 0  # never reset: one tracker per sequence

    def update(self, segmentation: Segmentation, image: np.ndarray | None) -> np.ndarray:
        from ultralytics.engine.results import Boxes

        count = len(segmentation)
        data = np.concatenate([segmentation.boxes, segmentation.scores[:, None], np.zeros((count, 1))], axis=1)
        tracks = self._tracker.update(Boxes(data.astype(np.float32), segmentation.image_shape), image)
        ids = np.zeros(count, dtype=np.int64)
        for row in tracks:
            ids[int(row[-1])] = int(row[4])
        self._index = {int(track_id): i for i, track_id in enumerate(ids.tolist()) if track_id}
        return ids

    def instance_of(self, track_id: int) -> int | None:
        return self._index.get(track_id)

    def missing_frames(self, track_id: int) -> int | None:
        tracker = self._tracker
        if any(t.track_id == track_id for t in tracker.tracked_stracks):
            return 0
        for track in tracker.lost_stracks:
            if track.track_id == track_id:
                return tracker.frame_id - track.end_frame
        return None


def _ultralytics_unavailable() -> str:
    """Empty when ultralytics' trackers can run here, else why not."""
    try:
        import lap  # noqa: F401  ultralytics' trackers need it, and would try to pip install it otherwise
    except ImportError:
        return "ByteTrack/BoT-SORT skipped: the lap package is not installed"
    return ""


def reference_followers() -> tuple[dict[str, PromptFollower], str]:
    """The methods run beside the node on its instances, and a note on any that cannot run here."""
    followers = {"follow_masks_only": PromptFollower(InstanceTracker(TrackerParams(motion_from_picture=False)))}
    note = _ultralytics_unavailable()
    if not note:
        for kind in ("bytetrack", "botsort"):
            followers[kind] = PromptFollower(UltralyticsIds(kind))
    return followers, note


def oracle_iou(masks: Sequence[np.ndarray], truth: np.ndarray) -> float:
    """The best IoU any single predicted mask reaches with ``truth``."""
    return max((iou(mask, truth) for mask in masks), default=0.0)


def summarise(per_sequence: Mapping[str, Mapping[str, list[float]]], names: Sequence[str]) -> dict[str, Any]:
    """J, late J and the share of frames with IoU >= 0.5, per method, over the given sequences."""
    methods: dict[str, dict[str, float]] = {}
    for method in next(iter(per_sequence.values()), {}):
        frames = np.array([per_sequence[name][method] for name in names], dtype=np.float64).reshape(len(names), -1)
        half = frames.shape[1] // 2
        methods[method] = {
            "J": round(float(frames.mean()), 4) if frames.size else 0.0,
            "late_J": round(float(frames[:, half:].mean()), 4) if frames.size else 0.0,
            "share_iou_0.5": round(float((frames >= 0.5).mean()), 4) if frames.size else 0.0,
        }
    return {"sequences": len(names), "methods": methods}


def check_targets(report: Mapping[str, Any]) -> dict[str, bool]:
    """The issue's targets for ``follow``, each pass (True) or fail."""
    overall, crossing = report["overall"]["methods"], report["crossing"]["methods"]
    follow, oracle = overall["follow"], overall["oracle"]
    return {
        f"J >= {TARGETS['overall']:.2f} x oracle J": follow["J"] >= TARGETS["overall"] * oracle["J"],
        f"crossing J >= {TARGETS['crossing']:.2f} x oracle J": bool(crossing)
        and crossing["follow"]["J"] >= TARGETS["crossing"] * crossing["oracle"]["J"],
        f"late J within {TARGETS['drift']:.2f} of J": follow["J"] - follow["late_J"] <= TARGETS["drift"],
        f"J >= pixel_fixed J + {TARGETS['over_pixel_fixed']:.2f}":
            follow["J"] >= overall["pixel_fixed"]["J"] + TARGETS["over_pixel_fixed"],
    }


def format_table(report: Mapping[str, Any]) -> str:
    """Side-by-side table and the targets with pass/fail."""
    overall, crossing = report["overall"], report["crossing"]
    lines = [
        f"model {report['model']}: {overall['sequences']} sequences of {report['frames_per_sequence']} frames "
        f"({crossing['sequences']} crossing), {report['seconds']} s",
        f"{'method':<18}{'J':>8}{'late J':>8}{'IoU>=.5':>9}{'cross J':>9}{'c late':>8}{'c >=.5':>8}",
    ]
    for name, values in overall["methods"].items():
        c = crossing["methods"].get(name, {"J": 0.0, "late_J": 0.0, "share_iou_0.5": 0.0})
        lines.append(f"{name:<18}{values['J']:>8.3f}{values['late_J']:>8.3f}{values['share_iou_0.5']:>9.3f}"
                     f"{c['J']:>9.3f}{c['late_J']:>8.3f}{c['share_iou_0.5']:>8.3f}")
    lines.extend(report["notes"])
    lines.extend(f"{'PASS' if ok else 'FAIL'}  {target}" for target, ok in report["targets"].items())
    return "\n".join(lines)
