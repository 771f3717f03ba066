"""The moving-camera benchmark of followed prompts; ``make eval-track`` runs it through the node
(``harness/eval_track.py``).

Sequences are rendered from the COCO dev set (``evaluation.camera_motion``): 24 frames at 640x480, a smooth
camera path per image that moves the target 25-45 % of the frame width, zooms 1.0-1.25 and rotates up to 4
degrees; the ground-truth masks move with the same transform. One target per image, chosen deterministically
(seeded by the image name) among instances that stay in view; on every other image the path is chosen, where
one exists, so that another object passes under the clicked pixel (the *crossing* subset). One click on frame
0, at the target pixel farthest from its boundary, as a persistent prompt.

Methods, all answering from the same all-instance results (the node's `instances`):

* ``follow``: the node's persistent prompt, following what it selected
  (:class:`fastsam_ros.tracking.tracker.InstanceTracker`);
* ``pixel_fixed``: the node's persistent prompt with ``reapply``: the click re-applied to every frame;
* reference methods run here on the same instances (:func:`reference_followers`): ``follow_masks_only`` (our
  tracker measuring camera motion on the masks instead of the picture), ``bytetrack`` and ``botsort``
  (ultralytics' trackers giving the ids, only when their ``lap`` dependency is importable; BoT-SORT with its
  sparse optical flow camera-motion compensation);
* ``oracle``: per frame, the best IoU any single predicted mask reaches (the ceiling for following one mask).

*Hard crossings* (:func:`plan_hard_crossings`, issue 19): another instance of the target's class, cut out of another
dev image by its polygon and scaled to the target's area, walks across the target in front of it, covering up to
half to two thirds of it for about half of the sequence; in every other one the camera also takes the target
partly out of view. Ground truth there is what is visible of the target. Only targets the click selects on the
model's own frame 0 (IoU >= ``FOUND_IOU`` = 0.5, :func:`click_finds_target`) are used: no follower can follow
what was never selected, so the set depends on the model (``make eval-track`` probes frame 0 through the node).

Reported per method: J (mean IoU over all frames; a frame without an answer scores 0), late J (the second half
of each sequence: drift), the share of frames with IoU >= 0.5, and the same on the crossing subset and the hard
crossings, with the share of frames answered with the *wrong object* (:func:`wrong_object`: an ok answer whose
IoU with the target is under ``WRONG_IOU`` = 0.1 while its IoU with another ground-truth object is higher).
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evaluation.camera_motion import CameraPath
from evaluation.evaluate import MIN_AREA, GroundTruth, farthest_inside, image_pairs, read_instances
from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.masks import iou, mask_box
from fastsam_ros.tracking.follow import PromptFollower
from fastsam_ros.tracking.tracker import InstanceTracker, TrackerParams
from fastsam_ros.types import FOREGROUND, PointXY, Prompt, Segmentation

FRAMES = 24
DEFAULT_SEQUENCES = 40
PAN_RANGE = (0.25, 0.45)  # of the frame width
ZOOM_RANGE = (1.0, 1.25)
MAX_ROTATION_DEG = 4.0
DIRECTIONS = 16
MARGIN = 2  # target box must stay this many pixels inside the frame
TARGETS = {"overall": 0.90, "crossing": 0.85, "drift": 0.03, "over_pixel_fixed": 0.15, "hard_crossing": 0.95,
           "wrong_object": 0.02}
HARD_SEQUENCES = 16
MIN_HARD_SIDE = 48  # a hard sequence's target is at least this many pixels wide and high on frame 0
OCCLUDER_CLEARANCE = 1.3  # the occluder starts and ends this many half-widths (target's + its own) from the target
OCCLUDER_DROP = 0.25  # its path runs this share of the target's height below the target's centre
OUT_OF_VIEW = (0.45, 0.8)  # visible share of the target on the last frame of the partly-out-of-view sequences
WRONG_IOU = 0.1  # an ok answer under this IoU with the target, and nearer another object, is the wrong object
FOUND_IOU = 0.5  # a hard crossing's click must select the target this well on frame 0 (:func:`click_finds_target`)


@dataclass(frozen=True)
class TrackSequence:
    """One moving-camera sequence: the source image, the camera path, the target and the click on frame 0."""

    name: str
    image_path: Path
    path: CameraPath
    target: GroundTruth  # at source resolution
    click: PointXY  # frame 0 pixels
    crossing: bool  # another object passes under the clicked pixel
    others: tuple[GroundTruth, ...] = ()  # the image's other instances (source resolution): what a wrong answer is
    occluder: Occluder | None = None  # the hard crossings: another object of the target's class passes in front

    @property
    def hard(self) -> bool:
        """One of the hard crossings (:func:`plan_hard_crossings`)."""
        return self.occluder is not None

    @property
    def prompt(self) -> Prompt:
        """The click, as the core prompt the reference methods answer (the node gets the same as a message)."""
        return Prompt(id="click", points=(self.click,), labels=(FOREGROUND,))

    def frames(self) -> Iterator[tuple[np.ndarray, np.ndarray, list[np.ndarray]]]:
        """``(frame BGR, target's visible ground truth, the other objects' visible ground truth)`` per frame."""
        image = _read(self.image_path)
        sprite = _read(self.occluder.image_path) if self.occluder else None
        for index in range(self.path.frames):
            frame = self.path.render(index, image)
            truth = self.path.render_mask(index, self.target.mask)
            others = [self.path.render_mask(index, other.mask) for other in self.others]
            if self.occluder is not None and sprite is not None:
                matrix = self.occluder.matrix(self.path, self.target, index)
                cover = cv2.warpAffine(self.occluder.instance.mask.astype(np.uint8), matrix, self.path.frame_size,
                                       flags=cv2.INTER_NEAREST).astype(bool)
                frame[cover] = cv2.warpAffine(sprite, matrix, self.path.frame_size, flags=cv2.INTER_LINEAR)[cover]
                truth &= ~cover
                others = [other & ~cover for other in others] + [cover]
            yield frame, truth, others


@dataclass(frozen=True)
class Occluder:
    """An instance cut out of a dev image by its ground-truth polygon, scaled to the target's size, moving in a
    straight line across the target (relative to it, so the camera's motion comes on top), in front of it."""

    image_path: Path
    instance: GroundTruth  # at its source resolution
    scale: float  # source pixels to frame pixels
    start: tuple[float, float]  # its centre relative to the target's centre on the first frame (frame pixels)
    end: tuple[float, float]  # and on the last

    def matrix(self, path: CameraPath, target: GroundTruth, index: int) -> np.ndarray:
        """``(2, 3)`` affine map from the occluder's source pixels to frame ``index``."""
        u = index / max(path.frames - 1, 1)  # constant speed: a walker, not the eased camera
        centre = path.map_points(index, np.array([_centre(target.box)]))[0]
        centre = centre + (1 - u) * np.array(self.start) + u * np.array(self.end)
        offset = centre - self.scale * np.array(_centre(self.instance.box))
        return np.array([[self.scale, 0.0, offset[0]], [0.0, self.scale, offset[1]]])


def _read(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"could not read image {path}")
    return image


def _centre(box: tuple[int, int, int, int]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


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
    height, width = _read(image_path).shape[:2]
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
            options.append((TrackSequence(name, image_path, path, target, click, crossing, tuple(others)), crossing))
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


def _visible_share(path: CameraPath, target: GroundTruth, index: int) -> float:
    return np.count_nonzero(path.render_mask(index, target.mask)) / max(
        np.count_nonzero(path.render_mask(0, target.mask)), 1)


def plan_hard_crossings(data_dir: Path, count: int = HARD_SEQUENCES,
                        found: Callable[[TrackSequence], bool] | None = None) -> list[TrackSequence]:
    """Crossings by an object of the target's class and size, that covers part of it for most of the sequence;
    every other one with the target leaving the view partly (``OUT_OF_VIEW`` of it still seen at the end).

    Per image (by name), the target is its largest instance whose class another image of the set has (the
    occluder: the largest instance of that class in the next such image by name, cut out by its polygon and
    scaled to the target's area) and, given ``found``, for which ``found(sequence)`` holds: the model's frame 0
    (:func:`click_finds_target`). No follower can follow what the click never selected, so a target the model
    misses on frame 0 would measure the model, not the association. The camera path is chosen as in
    :func:`plan_sequence`, seeded by the name.
    """
    pairs = image_pairs(Path(data_dir))
    labelled = [(image, read_instances(label, _read(image).shape[:2], MIN_AREA)) for image, label in pairs]
    sequences: list[TrackSequence] = []
    for position, (image_path, instances) in enumerate(labelled):
        if len(sequences) >= count:
            break
        donors = labelled[position + 1 :] + labelled[:position]
        for target_index in np.argsort([-t.area for t in instances], kind="stable").tolist():
            target = instances[target_index]
            donor = next(((path, max((d for d in found if d.class_id == target.class_id), key=lambda d: d.area))
                          for path, found in donors if any(d.class_id == target.class_id for d in found)), None)
            sequence = donor and _hard_sequence(len(sequences), image_path, instances, target_index, *donor)
            if sequence is not None and (found is None or found(sequence)):
                sequences.append(sequence)
                break
    return sequences


def _hard_sequence(number: int, image_path: Path, instances: list[GroundTruth], target_index: int,
                   donor_path: Path, donor: GroundTruth) -> TrackSequence | None:
    target = instances[target_index]
    height, width = target.mask.shape
    rng = np.random.default_rng(zlib.crc32(f"hard/{image_path.name}".encode()))
    pan, zoom = rng.uniform(*PAN_RANGE), rng.uniform(*ZOOM_RANGE)
    rotation = rng.uniform(-MAX_ROTATION_DEG, MAX_ROTATION_DEG)
    partly_out = number % 2 == 1
    paths = []
    for direction in range(DIRECTIONS):
        angle = 2 * np.pi * direction / DIRECTIONS
        path = CameraPath((width, height), (pan * 640 * np.cos(angle), pan * 640 * np.sin(angle)), zoom, rotation,
                          FRAMES)
        first = path.render_mask(0, target.mask)
        box = mask_box(first)
        if box is None or min(box[2] - box[0], box[3] - box[1]) < MIN_HARD_SIDE or not _stays_in_view(
                dataclasses.replace(path, frames=1), target):
            continue
        if partly_out:
            if OUT_OF_VIEW[0] <= _visible_share(path, target, FRAMES - 1) <= OUT_OF_VIEW[1]:
                paths.append((direction, path, box))
        elif _stays_in_view(path, target):
            paths.append((direction, path, box))
    if not paths:
        return None
    direction, path, box = paths[int(rng.integers(len(paths)))]
    scale = path.base_scale * np.sqrt(target.area / donor.area)
    reach = OCCLUDER_CLEARANCE * ((box[2] - box[0]) + scale * (donor.box[2] - donor.box[0])) / 2
    drop = OCCLUDER_DROP * (box[3] - box[1])
    side = 1.0 if rng.random() < 0.5 else -1.0
    occluder = Occluder(donor_path, donor, float(scale), (-side * reach, drop), (side * reach, drop))
    first = path.render_mask(0, target.mask)
    others = tuple(instances[:target_index] + instances[target_index + 1 :])
    name = f"{image_path.stem}/{target_index}/{direction}/{'out' if partly_out else 'in'}"
    return TrackSequence(name, image_path, path, target, farthest_inside(first), True, others, occluder)


def first_frame(sequence: TrackSequence) -> tuple[np.ndarray, np.ndarray]:
    """``(frame 0, the target's visible ground truth on it)``."""
    frame, truth, _ = next(sequence.frames())
    return frame, truth


def click_finds_target(sequence: TrackSequence, segmentation: Segmentation) -> bool:
    """Whether the click, answered on frame 0's ``segmentation`` by the usual rules, selects the target (IoU with
    its ground truth at least ``FOUND_IOU``): the condition for a hard crossing (:func:`plan_hard_crossings`)."""
    truth = first_frame(sequence)[1]
    selection = select(segmentation, sequence.prompt)
    return selection.ok and iou(selection.union_mask(truth.shape), truth) >= FOUND_IOU


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


def wrong_object(answer: np.ndarray, truth: np.ndarray, others: Sequence[np.ndarray]) -> bool:
    """Whether an answer is the *wrong object*: an ok answer (a non-empty mask) whose IoU with the target's visible
    ground truth is under ``WRONG_IOU`` while its IoU with another ground-truth object of the frame is higher.
    Answers that are not ok (``lost``, ``no_match``: no mask) are never wrong, only worth 0 in J."""
    if not answer.any():
        return False
    own = iou(answer, truth)
    return own < WRONG_IOU and any(iou(answer, other) > own for other in others)


def summarise(per_sequence: Mapping[str, Mapping[str, list[float]]], names: Sequence[str],
              wrong: Mapping[str, Mapping[str, list[bool]]] | None = None) -> dict[str, Any]:
    """J, late J and the share of frames with IoU >= 0.5, per method, over the given sequences; with ``wrong``
    (per sequence and method, :func:`wrong_object` per frame) the share of frames answered with the wrong object."""
    methods: dict[str, dict[str, float]] = {}
    for method in next(iter(per_sequence.values()), {}):
        frames = np.array([per_sequence[name][method] for name in names], dtype=np.float64).reshape(len(names), -1)
        half = frames.shape[1] // 2
        methods[method] = {
            "J": round(float(frames.mean()), 4) if frames.size else 0.0,
            "late_J": round(float(frames[:, half:].mean()), 4) if frames.size else 0.0,
            "share_iou_0.5": round(float((frames >= 0.5).mean()), 4) if frames.size else 0.0,
        }
        if wrong is not None:
            flags = np.array([wrong[name][method] for name in names], dtype=bool)
            methods[method]["wrong_object"] = round(float(flags.mean()), 4) if flags.size else 0.0
    return {"sequences": len(names), "methods": methods}


def check_targets(report: Mapping[str, Any]) -> dict[str, bool]:
    """The issue's targets for ``follow``, each pass (True) or fail."""
    overall, crossing = report["overall"]["methods"], report["crossing"]["methods"]
    hard = report.get("hard_crossing", {}).get("methods", {})
    follow, oracle = overall["follow"], overall["oracle"]
    targets = {
        f"J >= {TARGETS['overall']:.2f} x oracle J": follow["J"] >= TARGETS["overall"] * oracle["J"],
        f"crossing J >= {TARGETS['crossing']:.2f} x oracle J": bool(crossing)
        and crossing["follow"]["J"] >= TARGETS["crossing"] * crossing["oracle"]["J"],
        f"late J within {TARGETS['drift']:.2f} of J": follow["J"] - follow["late_J"] <= TARGETS["drift"],
        f"J >= pixel_fixed J + {TARGETS['over_pixel_fixed']:.2f}":
            follow["J"] >= overall["pixel_fixed"]["J"] + TARGETS["over_pixel_fixed"],
    }
    if hard:
        targets[f"hard crossing J >= {TARGETS['hard_crossing']:.2f} x oracle J"] = (
            hard["follow"]["J"] >= TARGETS["hard_crossing"] * hard["oracle"]["J"])
        targets[f"hard crossing wrong object < {TARGETS['wrong_object']:.0%} of frames"] = (
            hard["follow"].get("wrong_object", 1.0) < TARGETS["wrong_object"])
    return targets


def format_table(report: Mapping[str, Any]) -> str:
    """Side-by-side table (all sequences but the hard crossings, the crossing ones among them, the hard crossings
    with the share of wrong-object frames) and the targets with pass/fail."""
    overall, crossing = report["overall"], report["crossing"]
    hard = report.get("hard_crossing", {"sequences": 0, "methods": {}})
    empty = {"J": 0.0, "late_J": 0.0, "share_iou_0.5": 0.0, "wrong_object": 0.0}
    lines = [
        f"model {report['model']}: {overall['sequences']} sequences of {report['frames_per_sequence']} frames "
        f"({crossing['sequences']} crossing) and {hard['sequences']} hard crossings, {report['seconds']} s",
        f"{'method':<18}{'J':>8}{'late J':>8}{'IoU>=.5':>9}{'cross J':>9}{'c late':>8}{'c >=.5':>8}"
        f"{'hard J':>8}{'h >=.5':>8}{'h wrong':>8}",
    ]
    for name, values in overall["methods"].items():
        c, h = crossing["methods"].get(name, empty), hard["methods"].get(name, empty)
        lines.append(f"{name:<18}{values['J']:>8.3f}{values['late_J']:>8.3f}{values['share_iou_0.5']:>9.3f}"
                     f"{c['J']:>9.3f}{c['late_J']:>8.3f}{c['share_iou_0.5']:>8.3f}"
                     f"{h['J']:>8.3f}{h['share_iou_0.5']:>8.3f}{h.get('wrong_object', 0.0):>8.3f}")
    lines.extend(report["notes"])
    lines.extend(f"{'PASS' if ok else 'FAIL'}  {target}" for target, ok in report["targets"].items())
    return "\n".join(lines)
