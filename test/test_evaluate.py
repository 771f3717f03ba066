"""The evaluation harness: ground truth rasterisation, prompts from ground truth, the reference rules, scoring."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from evaluation import evaluate as ev
from evaluation.reference_rules import official_box, official_points
from fastsam_ros.segmentation.masks import MaskGeometry
from fastsam_ros.types import Segmentation


def rect(shape: tuple[int, int], x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


# ---------------------------------------------------------------- ground truth


def test_polygon_rasterises_to_the_pixels_whose_centres_it_contains() -> None:
    square = [0.25, 0.25, 0.75, 0.25, 0.75, 0.75, 0.25, 0.75]
    assert np.array_equal(ev.rasterise_polygon(square, (8, 8)), rect((8, 8), 2, 2, 6, 6))
    # Non-square image: x scales by the width, y by the height.
    assert np.array_equal(ev.rasterise_polygon(square, (8, 16)), rect((8, 16), 4, 2, 12, 6))


def test_triangle_rasterises_to_its_area() -> None:
    triangle = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0]  # half of a 200x200 image
    mask = ev.rasterise_polygon(triangle, (200, 200))
    rows, columns = np.indices((200, 200))
    assert mask[rows + columns < 199].all()  # pixel centres strictly inside
    assert not mask[rows + columns > 199].any()  # pixel centres strictly outside


def test_joined_multi_part_polygon_fills_each_part_only() -> None:
    # ultralytics' COCO converter joins parts with a zero-width there-and-back bridge.
    a = [(0.1, 0.1), (0.3, 0.1), (0.3, 0.3), (0.1, 0.3)]
    b = [(0.6, 0.6), (0.9, 0.6), (0.9, 0.9), (0.6, 0.9)]
    joined = [a[0], a[1], a[2], b[0], b[1], b[2], b[3], b[0], a[2], a[3]]
    mask = ev.rasterise_polygon(np.array(joined).ravel(), (100, 100))
    assert np.array_equal(mask, rect((100, 100), 10, 10, 30, 30) | rect((100, 100), 60, 60, 90, 90))


def test_label_file_gives_instances_of_at_least_the_minimum_area(tmp_path: Path) -> None:
    label = tmp_path / "a.txt"
    label.write_text("3 0.1 0.1 0.6 0.1 0.6 0.6 0.1 0.6\n\n7 0.7 0.7 0.72 0.7 0.72 0.72 0.7 0.72\n")
    instances = ev.read_instances(label, (100, 100))
    assert [(gt.class_id, gt.area, gt.box) for gt in instances] == [(3, 2500, (10, 10, 60, 60))]
    assert len(ev.read_instances(label, (100, 100), min_area=1)) == 2
    assert ev.read_instances(tmp_path / "missing.txt", (100, 100)) == []
    label.write_text("3 0.1 0.1 0.6\n")
    with pytest.raises(ValueError, match="a.txt:1"):
        ev.read_instances(label, (100, 100))


# ---------------------------------------------------------------- prompts from ground truth


def test_point_is_the_pixel_farthest_from_the_boundary() -> None:
    mask = rect((100, 100), 10, 20, 41, 81)  # 31 x 61: a unique centre pixel (25, 50)
    assert ev.farthest_inside(mask) == (25.5, 50.5)
    # An L: the thick arm wins over the thin one.
    ell = rect((100, 100), 10, 10, 20, 90) | rect((100, 100), 10, 50, 91, 91)
    x, y = ev.farthest_inside(ell)
    assert ell[int(y), int(x)] and 50 <= y <= 91 and x > 30


def test_image_border_counts_as_boundary() -> None:
    mask = rect((60, 100), 0, 0, 100, 21)  # a band along the top edge, 21 rows high
    assert ev.farthest_inside(mask)[1] == 10.5


def test_background_point_is_inside_the_box_and_farthest_from_the_instance() -> None:
    # A lower-left triangle: the farthest box pixel outside it is the top-right corner.
    mask = np.tril(np.ones((40, 40), dtype=bool))
    full = np.zeros((100, 100), dtype=bool)
    full[30:70, 20:60] = mask
    x, y = ev.farthest_background(full, (20, 30, 60, 70))
    assert (x, y) == (59.5, 30.5)
    assert not full[int(y), int(x)]
    assert ev.farthest_background(rect((50, 50), 5, 5, 20, 20), (5, 5, 20, 20)) is None


def test_prompts_for_one_instance() -> None:
    full = np.zeros((100, 100), dtype=bool)
    full[30:70, 20:60] = np.tril(np.ones((40, 40), dtype=bool))
    gt = ev.GroundTruth(0, full, (20, 30, 60, 70))
    prompts = ev.make_prompts(gt)
    assert prompts["box"].boxes == ((20.0, 30.0, 60.0, 70.0),)
    (point,) = prompts["point"].points
    assert full[int(point[1]), int(point[0])] and prompts["point"].labels == (1,)
    assert prompts["point_bg"].points == (point, (59.5, 30.5))
    assert prompts["point_bg"].labels == (1, 0)
    square = ev.GroundTruth(0, rect((50, 50), 5, 5, 20, 20), (5, 5, 20, 20))
    assert ev.make_prompts(square)["point_bg"].points == ((12.5, 12.5),)


# ---------------------------------------------------------------- FastSAM's published rules


SHAPE = (10, 10)
BIG = rect(SHAPE, 0, 0, 8, 8)  # area 64
MID = rect(SHAPE, 1, 1, 5, 5)  # area 16, inside BIG
SMALL = rect(SHAPE, 2, 2, 4, 4)  # area 4, inside MID
STACK = np.stack([SMALL, BIG, MID])  # not sorted by area on purpose


def test_official_points_paint_largest_first() -> None:
    one = np.array([1])
    # A click inside all three paints all three: the largest wins.
    assert np.array_equal(official_points(STACK, np.array([[3.0, 3.0]]), one), BIG)
    # A background click inside MID and BIG but not SMALL: BIG painted 1 then 0, MID too, SMALL untouched.
    picked = official_points(STACK, np.array([[6.0, 6.0], [1.5, 1.5]]), np.array([1, 0]))
    assert np.array_equal(picked, np.zeros(SHAPE, dtype=bool))
    picked = official_points(STACK, np.array([[3.0, 3.0], [1.5, 1.5]]), np.array([1, 0]))
    assert np.array_equal(picked, SMALL)  # SMALL is painted last and holds only the foreground click
    # Outside every mask: nothing.
    assert not official_points(STACK, np.array([[9.0, 9.0]]), one).any()


def test_official_box_is_plain_box_mask_iou_without_threshold() -> None:
    assert official_box(STACK, (2, 2, 4, 4)) == 0
    assert official_box(STACK, (1, 1, 5, 5)) == 2
    assert official_box(STACK, (0, 0, 10, 10)) == 1
    assert official_box(STACK, (8, 8, 10, 10)) == 0  # overlaps nothing: still an answer (the first mask)
    assert official_box(np.zeros((0, *SHAPE), dtype=bool), (0, 0, 5, 5)) is None


# ---------------------------------------------------------------- scoring one synthetic frame


def synthetic_frame(masks: list[np.ndarray], instances: list[ev.GroundTruth]) -> ev.Frame:
    shape = masks[0].shape
    stack = np.stack(masks)
    boxes = []
    for mask in stack:
        ys, xs = np.nonzero(mask)
        boxes.append((xs.min(), ys.min(), xs.max() + 1, ys.max() + 1))
    segmentation = Segmentation(
        masks=stack, boxes=np.array(boxes, dtype=np.float32), scores=np.full(len(stack), 0.9, dtype=np.float32),
        geometry=MaskGeometry(shape, shape),
    )
    return ev.Frame("synthetic", None, None, segmentation, stack, stack.sum(axis=(1, 2)), instances)


def test_score_frame_compares_every_method_with_the_ground_truth() -> None:
    shape = (100, 100)
    table, cup = rect(shape, 10, 40, 90, 90), rect(shape, 30, 50, 50, 70)
    frame = synthetic_frame([table, cup], [ev.GroundTruth(41, cup, (30, 50, 50, 70))])
    rules = {"fastsam_ros": ev.rule_fastsam_ros, "official": ev.rule_official}
    (row,) = ev.score_frame(frame, rules)
    assert row["fastsam_ros"] == {"box": 1.0, "point": 1.0, "point_bg": 1.0}
    assert row["official"]["box"] == 1.0
    # FastSAM's painter paints the table, then the cup: the whole table. The cup fills its box, so point_bg
    # has no background point and answers the same.
    assert row["official"]["point"] == pytest.approx(400 / 4000)
    assert row["official"]["point_bg"] == pytest.approx(400 / 4000)
    assert row["oracle"] == dict.fromkeys(ev.PROMPT_KINDS, 1.0)


def test_missed_instance_scores_zero_and_oracle_is_the_best_single_mask() -> None:
    shape = (100, 100)
    other = rect(shape, 0, 0, 20, 20)
    strip = rect(shape, 60, 60, 80, 65)
    gt = ev.GroundTruth(1, rect(shape, 60, 60, 80, 80), (60, 60, 80, 80))
    frame = synthetic_frame([other, strip], [gt])
    (row,) = ev.score_frame(frame, {"fastsam_ros": ev.rule_fastsam_ros})
    assert row["fastsam_ros"]["point"] == 0.0  # the GT centre (69.5, 69.5) lies in no mask: no_match
    assert row["fastsam_ros"]["box"] == pytest.approx(0.25)  # the strip, a quarter of the GT
    assert row["oracle"]["box"] == pytest.approx(0.25)


def test_table_formats_every_method_and_kind() -> None:
    report = {"model": "m.pt", "images": 2, "instances": 5,
              "methods": {"fastsam_ros": {"box": 0.5, "point": 0.25, "point_bg": 0.125}}}
    table = ev.format_table(report)
    assert "5 instances in 2 images" in table
    assert table.splitlines()[-1].split() == ["fastsam_ros", "0.5000", "0.2500", "0.1250"]


# ---------------------------------------------------------------- the whole harness


def test_harness_on_a_few_images(eval_data: Path, standin_model: Path, tmp_path: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "eval.json"
    code = ev.main(["--data", str(eval_data), "--model", str(standin_model), "--out", str(out), "--limit", "3",
                    "--no-progress"])
    assert code == 0
    report = json.loads(out.read_text())
    assert report["model"] == str(standin_model)
    assert report["images"] == 3
    expected = sum(len(ev.read_instances(label, cv2.imread(str(image)).shape[:2]))
                   for image, label in ev.image_pairs(eval_data)[:3])
    assert report["instances"] == expected > 0
    assert list(report["methods"]) == ["fastsam_ros", "ultralytics", "official", "oracle"]
    for values in report["methods"].values():
        assert list(values) == list(ev.PROMPT_KINDS)
        assert all(0.0 <= v <= 1.0 for v in values.values())
    oracle = report["methods"]["oracle"]
    assert oracle["box"] == oracle["point"] == oracle["point_bg"] > 0
    # Both references answer the box with the same box-mask IoU rule, unclipped.
    assert report["methods"]["ultralytics"]["box"] == pytest.approx(report["methods"]["official"]["box"], abs=1e-3)
    assert "fastsam_ros" in capsys.readouterr().out
    precision = report["precision"]  # FP32 against INT8 on the same resized frames (evaluation/precision.py)
    assert precision["images"] == 3 and precision["ran"]["fp32"] == "fp32"
    assert list(precision["methods"]) == ["fp32", "int8"] and precision["ran"]["int8"] == "int8"  # scored anyway
    assert precision["agreement"].startswith("the node would ")
    assert set(precision["targets"]) == {"iou_within_0.01", "count_within_10pct"}
