"""Measure prompt-guided selection against ground truth: ``python -m evaluation.evaluate --data DIR --model PATH``.

The data folder has the YOLO-seg layout: ``images/NAME.jpg`` and ``labels/NAME.txt``, one instance per line
as ``class x1 y1 x2 y2 ...`` (polygon, normalised to the image size; ultralytics' COCO converter joins the
parts of a multi-part instance into one line, which the even-odd fill below separates again).

For every ground-truth instance of at least ``MIN_AREA`` pixels the prompts are made from the ground truth:

* ``box``: the instance's tight box;
* ``point``: the instance pixel farthest from its boundary (the image border counts as boundary);
* ``point_bg``: that point plus a background point, the pixel inside the box farthest from the instance.

Every method answers from the same all-instance result (the network runs once per image) and every answer
is compared with the ground-truth mask at full image resolution (IoU; a failed selection scores 0):

* ``fastsam_ros``: :func:`fastsam_ros.prompts.selection.select`;
* ``ultralytics``: ultralytics' own ``FastSAMPredictor.prompt`` on the engine's ``Results`` (the union of
  the masks it returns);
* ``official``: FastSAM's published rules (:mod:`evaluation.reference_rules`);
* ``oracle``: the best IoU any single predicted mask reaches for the instance, the ceiling for any rule
  that picks one mask.

Network-resolution masks are upsampled the same way (:class:`fastsam_ros.segmentation.masks.MaskGeometry`) for
all methods.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from evaluation.reference_rules import official_box, official_points
from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.masks import iou, mask_box
from fastsam_ros.types import BACKGROUND, FOREGROUND, PointXY, Prompt, Segmentation

MIN_AREA = 32 * 32  # instances smaller than this (in pixels) are not evaluated
PROMPT_KINDS = ("box", "point", "point_bg")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


@dataclass(frozen=True)
class GroundTruth:
    """One annotated instance at full image resolution."""

    class_id: int
    mask: np.ndarray  # (H, W) bool
    box: tuple[int, int, int, int]  # tight, end exclusive

    @property
    def area(self) -> int:
        return int(np.count_nonzero(self.mask))


def rasterise_polygon(polygon: Sequence[float] | np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """``(H, W)`` bool mask of the pixels whose centres lie inside a normalised polygon (even-odd rule).

    ``polygon`` is ``x1 y1 x2 y2 ...`` in [0, 1]; pixel ``(c, r)`` covers ``[c, c+1) x [r, r+1)``.
    """
    height, width = image_shape
    vertices = np.asarray(polygon, dtype=np.float64).reshape(-1, 2) * (width, height)
    mask = np.zeros((height, width), dtype=bool)
    if len(vertices) < 3:
        return mask
    xa, ya = vertices[:, 0], vertices[:, 1]
    xb, yb = np.roll(xa, -1), np.roll(ya, -1)
    centres = np.arange(height) + 0.5
    low, high = np.minimum(ya, yb), np.maximum(ya, yb)
    crosses = (centres[:, None] >= low) & (centres[:, None] < high)  # (H, E), half-open: no double counting
    rows, edges = np.nonzero(crosses)
    if rows.size == 0:
        return mask
    t = (centres[rows] - ya[edges]) / (yb[edges] - ya[edges])
    x = xa[edges] + t * (xb[edges] - xa[edges])
    columns = np.clip(np.ceil(x - 0.5), 0, width).astype(np.int64)  # first pixel centre at or right of x
    toggles = np.zeros((height, width + 1), dtype=np.int32)
    np.add.at(toggles, (rows, columns), 1)
    return (np.cumsum(toggles, axis=1)[:, :width] % 2).astype(bool)


def read_instances(label_path: Path, image_shape: tuple[int, int], min_area: int = MIN_AREA) -> list[GroundTruth]:
    """The instances of one label file with at least ``min_area`` pixels (a missing file has none)."""
    if not label_path.exists():
        return []
    instances = []
    for number, line in enumerate(label_path.read_text().splitlines(), start=1):
        values = line.split()
        if not values:
            continue
        if len(values) < 7 or len(values) % 2 == 0:
            raise ValueError(f"{label_path}:{number}: expected 'class x1 y1 x2 y2 x3 y3 ...'")
        mask = rasterise_polygon([float(v) for v in values[1:]], image_shape)
        box = mask_box(mask)
        if box is None or np.count_nonzero(mask) < min_area:
            continue
        instances.append(GroundTruth(int(values[0]), mask, box))
    return instances


def _middle_of_maxima(distance: np.ndarray) -> tuple[int, int]:
    """``(row, column)`` of the maximum; among ties (a ridge), the one nearest their mean."""
    rows, columns = np.nonzero(distance >= distance.max())
    k = int(np.argmin((rows - rows.mean()) ** 2 + (columns - columns.mean()) ** 2))
    return int(rows[k]), int(columns[k])


def farthest_inside(mask: np.ndarray) -> PointXY:
    """Centre of the mask pixel farthest from the mask's boundary (the image border counts as boundary).

    Ties (the ridge of an elongated shape) go to the tied pixel nearest their mean.
    """
    padded = np.pad(mask, 1).astype(np.uint8)
    distance = cv2.distanceTransform(padded, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)[1:-1, 1:-1]
    row, column = _middle_of_maxima(distance)
    return float(column) + 0.5, float(row) + 0.5


def farthest_background(mask: np.ndarray, box: tuple[int, int, int, int]) -> PointXY | None:
    """Centre of the pixel inside ``box`` but outside ``mask`` farthest from the mask (None if the mask fills it)."""
    x0, y0, x1, y1 = box
    outside = ~mask[y0:y1, x0:x1]
    if not outside.any():
        return None
    # Every mask pixel lies in its tight box, so distances within the crop are distances to the whole mask.
    distance = cv2.distanceTransform(outside.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    row, column = _middle_of_maxima(distance)
    return float(x0 + column) + 0.5, float(y0 + row) + 0.5


def make_prompts(instance: GroundTruth) -> dict[str, Prompt]:
    """The three prompts for one instance (``point_bg`` has only the foreground point when the mask fills its box)."""
    x0, y0, x1, y1 = instance.box
    inside = farthest_inside(instance.mask)
    background = farthest_background(instance.mask, instance.box)
    if background is None:
        point_bg = Prompt(id="point_bg", points=(inside,), labels=(FOREGROUND,))
    else:
        point_bg = Prompt(id="point_bg", points=(inside, background), labels=(FOREGROUND, BACKGROUND))
    return {
        "box": Prompt(id="box", boxes=((float(x0), float(y0), float(x1), float(y1)),)),
        "point": Prompt(id="point", points=(inside,), labels=(FOREGROUND,)),
        "point_bg": point_bg,
    }


@dataclass(frozen=True)
class Frame:
    """One image's all-instance result, in every form the methods need, and its ground truth."""

    name: str
    result: Any  # ultralytics Results
    predictor: Any  # ultralytics FastSAMPredictor
    segmentation: Segmentation
    full_masks: np.ndarray  # (N, H, W) bool, every instance upsampled once
    full_areas: np.ndarray  # (N,) pixels
    instances: list[GroundTruth]


Rule = Callable[[Frame, Prompt], np.ndarray]  # the answer as an (H, W) bool mask, all false when nothing


def rule_fastsam_ros(frame: Frame, prompt: Prompt) -> np.ndarray:
    return select(frame.segmentation, prompt).union_mask(frame.segmentation.image_shape)


def rule_ultralytics(frame: Frame, prompt: Prompt) -> np.ndarray:
    points = np.asarray(prompt.points, dtype=np.float64) if prompt.points else None
    labels = list(prompt.labels) if prompt.points else None
    bboxes = np.asarray(prompt.boxes, dtype=np.float64) if prompt.boxes else None
    answer = frame.predictor.prompt(frame.result, bboxes=bboxes, points=points, labels=labels)[0]
    geometry = frame.segmentation.geometry
    if answer.masks is None or len(answer) == 0:
        return np.zeros(geometry.image_shape, dtype=bool)
    merged = (answer.masks.data > 0.5).any(dim=0).cpu().numpy()
    return geometry.upsample(merged)


def rule_official(frame: Frame, prompt: Prompt) -> np.ndarray:
    if prompt.boxes:
        index = official_box(frame.full_masks, prompt.boxes[0], frame.full_areas)
        if index is None:
            return np.zeros(frame.segmentation.image_shape, dtype=bool)
        return frame.full_masks[index]
    points = np.asarray(prompt.points, dtype=np.float64)
    return official_points(frame.full_masks, points, np.asarray(prompt.labels), frame.full_areas)


RULES: dict[str, Rule] = {"fastsam_ros": rule_fastsam_ros, "ultralytics": rule_ultralytics, "official": rule_official}


def oracle_iou(frame: Frame, instance: GroundTruth) -> float:
    """The best IoU any single predicted mask reaches with ``instance``."""
    if len(frame.full_masks) == 0:
        return 0.0
    x0, y0, x1, y1 = instance.box
    inter = (frame.full_masks[:, y0:y1, x0:x1] & instance.mask[y0:y1, x0:x1]).reshape(len(frame.full_masks), -1)
    inter = inter.sum(axis=1)
    union = frame.full_areas + instance.area - inter
    return float((inter / np.maximum(union, 1)).max())


def image_pairs(data_dir: Path) -> list[tuple[Path, Path]]:
    """``(image, label)`` paths of a YOLO-seg dataset folder, sorted by name."""
    image_dir = data_dir / "images"
    if not image_dir.is_dir():
        raise FileNotFoundError(f"{image_dir} does not exist: expected DATA/images and DATA/labels")
    images = sorted(p for p in image_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    return [(image, data_dir / "labels" / f"{image.stem}.txt") for image in images]


def iter_frames(
    data_dir: Path, engine: Any, limit: int | None = None, min_area: int = MIN_AREA, progress: bool = False
) -> Iterator[Frame]:
    """Run the engine once per image that has instances to evaluate, and yield what the methods need."""
    from tqdm import tqdm

    pairs = image_pairs(Path(data_dir))[:limit]
    for image_path, label_path in tqdm(pairs, desc="evaluate", unit="img", disable=not progress):
        image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"could not read image {image_path}")
        instances = read_instances(label_path, image.shape[:2], min_area)
        if not instances:
            continue
        segmentation, result = engine.segment_with_result(image)
        if len(segmentation):
            full_masks = np.stack([segmentation.full_mask(i) for i in range(len(segmentation))])
        else:
            full_masks = np.zeros((0, *segmentation.image_shape), dtype=bool)
        full_areas = full_masks.sum(axis=(1, 2))
        yield Frame(image_path.name, result, engine.predictor, segmentation, full_masks, full_areas, instances)


def score_frame(frame: Frame, rules: Mapping[str, Rule] = RULES) -> list[dict[str, dict[str, float]]]:
    """Per instance: ``{method: {kind: IoU}}``, with ``oracle`` (the same for every kind)."""
    scores = []
    for instance in frame.instances:
        prompts = make_prompts(instance)
        row = {name: {kind: iou(rule(frame, prompts[kind]), instance.mask) for kind in PROMPT_KINDS}
               for name, rule in rules.items()}
        best = oracle_iou(frame, instance)
        row["oracle"] = dict.fromkeys(PROMPT_KINDS, best)
        scores.append(row)
    return scores


def evaluate(
    data_dir: str | Path,
    model: str,
    *,
    device: str = "cpu",
    imgsz: int = 640,
    limit: int | None = None,
    min_area: int = MIN_AREA,
    rules: Mapping[str, Rule] = RULES,
    progress: bool = True,
) -> dict[str, Any]:
    """The evaluation report: mean IoU per method and prompt kind over every instance of ``data_dir``."""
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine

    # PyTorch on every image: the evaluation scores selection rules, and its photos come in many sizes (an export
    # would serve only the first image's letterbox shape).
    engine = FastSAMEngine(EngineConfig(model=model, device=device, imgsz=imgsz, backend="pytorch"))
    images = len(image_pairs(Path(data_dir))[:limit])
    rows: list[dict[str, dict[str, float]]] = []
    for frame in iter_frames(Path(data_dir), engine, limit, min_area, progress):
        rows.extend(score_frame(frame, rules))
    methods = {
        name: {kind: round(float(np.mean([row[name][kind] for row in rows])) if rows else 0.0, 4)
               for kind in PROMPT_KINDS}
        for name in (*rules, "oracle")
    }
    return {"model": str(model), "images": images, "instances": len(rows), "methods": methods}


def format_table(report: Mapping[str, Any]) -> str:
    """The report's mean IoUs as a plain-text table, methods by prompt kind."""
    lines = [
        f"model {report['model']}: {report['instances']} instances in {report['images']} images, mean IoU",
        f"{'method':<14}" + "".join(f"{kind:>10}" for kind in PROMPT_KINDS),
    ]
    for name, values in report["methods"].items():
        lines.append(f"{name:<14}" + "".join(f"{values[kind]:>10.4f}" for kind in PROMPT_KINDS))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.evaluate", description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="YOLO-seg dataset folder with images/ and labels/")
    parser.add_argument("--model", required=True, help="FastSAM checkpoint or export")
    parser.add_argument("--out", help="write the report here as JSON")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--imgsz", type=int, default=640)
    parser.add_argument("--limit", type=int, help="evaluate only the first LIMIT images")
    parser.add_argument("--min-area", type=int, default=MIN_AREA, help="smallest instance evaluated, in pixels")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--no-precision", action="store_true",
                        help="skip the FP32 against INT8 rows (evaluation/precision.py)")
    args = parser.parse_args(argv)
    report = evaluate(
        args.data, args.model, device=args.device, imgsz=args.imgsz, limit=args.limit, min_area=args.min_area,
        progress=not args.no_progress,
    )
    print(format_table(report))
    if not args.no_precision and args.device == "cpu":
        from evaluation import precision

        report["precision"] = precision.compare(args.data, args.model, args.limit, args.min_area)
        print("\n" + precision.format_table(report["precision"]))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
