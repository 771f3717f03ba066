"""Selection rules on hand-made segmentations: every rule, every outcome, exact masks and fields."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fastsam_ros.prompts.selection import InvalidPrompt, SelectionParams, box_scores, check_prompt, select
from fastsam_ros.segmentation.masks import MaskGeometry, mask_box
from fastsam_ros.types import Prompt, Segmentation, Status

IMAGE = (120, 160)  # (H, W)


def rect(shape: tuple[int, int], x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def make_segmentation(masks: list[np.ndarray], image_shape: tuple[int, int] = IMAGE,
                      scores: list[float] | None = None) -> Segmentation:
    """Instances from network-resolution masks; boxes and areas measured on the upsampled masks."""
    mask_shape = masks[0].shape if masks else image_shape
    geometry = MaskGeometry(image_shape, mask_shape)
    stack = np.stack(masks) if masks else np.zeros((0, *mask_shape), dtype=bool)
    boxes, areas = [], []
    for mask in stack:
        full = geometry.upsample(mask)
        boxes.append(mask_box(full))
        areas.append(int(full.sum()))
    return Segmentation(
        masks=stack, boxes=np.array(boxes, dtype=np.float32).reshape(-1, 4),
        scores=np.array(scores if scores is not None else [0.9] * len(stack), dtype=np.float32),
        geometry=geometry,
    )


# A table (which covers the cup standing on it), the cup, a plate beside the cup.
TABLE = rect(IMAGE, 10, 40, 150, 110)
CUP = rect(IMAGE, 30, 50, 50, 70)
PLATE = rect(IMAGE, 90, 50, 130, 80)


@pytest.fixture()
def kitchen() -> Segmentation:
    return make_segmentation([TABLE, CUP, PLATE])


def only(selection):
    assert selection.status is Status.OK, selection.reason
    assert len(selection.objects) == 1
    return selection.objects[0]


# ---------------------------------------------------------------- points


def test_click_on_the_cup_selects_the_cup_and_on_the_table_top_the_table(kitchen: Segmentation) -> None:
    cup = only(select(kitchen, Prompt(points=((40.5, 60.5),))))
    assert cup.instances == (1,)
    assert np.array_equal(cup.mask, CUP)
    table = only(select(kitchen, Prompt(points=((70.5, 100.5),))))
    assert table.instances == (0,)
    assert np.array_equal(table.mask, TABLE)


def test_selected_object_fields_are_exact(kitchen: Segmentation) -> None:
    cup = only(select(kitchen, Prompt(points=((40.0, 60.0),))))
    assert cup.box == (30.0, 50.0, 50.0, 70.0)
    assert cup.area == 400
    assert cup.centroid == pytest.approx((39.5, 59.5))
    assert cup.score == pytest.approx(0.9)
    assert cup.mask.shape == IMAGE and cup.mask.dtype == bool


def test_points_without_labels_are_foreground(kitchen: Segmentation) -> None:
    assert only(select(kitchen, Prompt(points=((40.0, 60.0),), labels=()))).instances == (1,)


def test_background_point_vetoes_the_mask_that_holds_it() -> None:
    # Two overlapping masks; the click is in the overlap, the background point only in the smaller one.
    small = rect(IMAGE, 20, 20, 60, 60)
    large = rect(IMAGE, 40, 40, 100, 100)
    segmentation = make_segmentation([small, large])
    assert only(select(segmentation, Prompt(points=((50.0, 50.0),)))).instances == (0,)
    picked = only(select(segmentation, Prompt(points=((50.0, 50.0), (25.0, 25.0)), labels=(1, 0))))
    assert picked.instances == (1,)
    assert np.array_equal(picked.mask, large)


def test_background_point_cuts_out_what_no_mask_separates(kitchen: Segmentation) -> None:
    # Table top clicked, cup marked background: the table mask covers the cup, so the cup is cut out of it.
    selection = select(kitchen, Prompt(points=((70.0, 100.0), (40.0, 60.0)), labels=(1, 0)))
    table = only(selection)
    assert table.instances == (0,)
    assert np.array_equal(table.mask, TABLE & ~CUP)
    assert table.area == 140 * 70 - 400
    assert "cut out" in selection.reason


def test_background_point_in_the_only_mask_of_the_foreground_point_is_no_match(kitchen: Segmentation) -> None:
    # Both points on the bare table top: every mask holding the click holds the background point too.
    selection = select(kitchen, Prompt(id="t", points=((70.0, 100.0), (120.0, 100.0)), labels=(1, 0)))
    assert selection.status is Status.NO_MATCH
    assert "no mask separates" in selection.reason and "(120, 100)" in selection.reason


def test_box_with_a_background_point_inside_its_only_mask_is_no_match(kitchen: Segmentation) -> None:
    # The box frames the plate, the background point lies on the plate: nothing in the box leaves it out.
    selection = select(kitchen, Prompt(points=((100.0, 60.0),), labels=(0,), boxes=((90.0, 50.0, 130.0, 80.0),)))
    assert selection.status is Status.INVALID  # background points alone select nothing
    selection = select(kitchen, Prompt(points=((95.0, 55.0), (120.0, 70.0)), labels=(1, 0),
                                       boxes=((90.0, 50.0, 130.0, 80.0),)))
    assert selection.status is Status.NO_MATCH
    assert "no mask separates" in selection.reason


def test_plain_box_over_empty_ground_says_no_mask_overlaps_it(kitchen: Segmentation) -> None:
    selection = select(kitchen, Prompt(boxes=((0.0, 0.0, 8.0, 8.0),)))
    assert selection.reason == "box 0: no mask overlaps the box"


@pytest.mark.parametrize(
    ("prompt", "needle"),
    [
        (Prompt(points=((1.0, 1.0),) * 65), "65 points is more than the limit of 64"),
        (Prompt(boxes=((0.0, 0.0, 5.0, 5.0),) * 17), "17 boxes is more than the limit of 16"),
        (Prompt(text="x" * 257), "257 text characters is more than the limit of 256"),
        (Prompt(points=((math.nan, 1.0),)), "not a finite number"),
        (Prompt(boxes=((0.0, 0.0, math.inf, 5.0),)), "four finite numbers"),
    ],
)
def test_prompts_invalid_on_any_image_are_caught_without_one(prompt: Prompt, needle: str) -> None:
    with pytest.raises(InvalidPrompt, match=needle):
        check_prompt(prompt, SelectionParams())


def test_background_point_outside_every_mask_changes_nothing(kitchen: Segmentation) -> None:
    picked = only(select(kitchen, Prompt(points=((40.0, 60.0), (5.0, 5.0)), labels=(1, 0))))
    assert picked.instances == (1,)


def test_foreground_points_in_one_mask_select_the_smallest_mask_holding_all(kitchen: Segmentation) -> None:
    picked = only(select(kitchen, Prompt(points=((40.0, 60.0), (100.0, 60.0)))))  # cup and plate: only the table
    assert picked.instances == (0,)


def test_foreground_points_in_separate_masks_are_merged() -> None:
    left, right = rect(IMAGE, 10, 10, 40, 40), rect(IMAGE, 100, 60, 140, 100)
    segmentation = make_segmentation([left, right], scores=[0.5, 0.8])
    selection = select(segmentation, Prompt(points=((20.0, 20.0), (120.0, 80.0))))
    merged = only(selection)
    assert merged.instances == (0, 1)
    assert np.array_equal(merged.mask, left | right)
    assert merged.box == (10.0, 10.0, 140.0, 100.0)
    assert merged.area == 900 + 1600
    assert merged.score == pytest.approx(0.8)


def test_point_in_no_mask_is_no_match(kitchen: Segmentation) -> None:
    selection = select(kitchen, Prompt(id="p", points=((5.0, 5.0),)))
    assert selection.status is Status.NO_MATCH
    assert selection.prompt_id == "p" and selection.objects == ()
    assert "no mask" in selection.reason


def test_zero_instances_is_no_match() -> None:
    empty = make_segmentation([])
    for prompt in (Prompt(points=((5.0, 5.0),)), Prompt(boxes=((0.0, 0.0, 10.0, 10.0),))):
        selection = select(empty, prompt)
        assert selection.status is Status.NO_MATCH
        assert selection.union_mask(IMAGE).sum() == 0


# ---------------------------------------------------------------- boxes


def test_box_selects_the_object_it_frames(kitchen: Segmentation) -> None:
    assert only(select(kitchen, Prompt(boxes=((30.0, 50.0, 50.0, 70.0),)))).instances == (1,)
    assert only(select(kitchen, Prompt(boxes=((88.0, 48.0, 132.0, 82.0),)))).instances == (2,)
    assert only(select(kitchen, Prompt(boxes=((10.0, 40.0, 150.0, 110.0),)))).instances == (0,)


def test_each_box_selects_its_own_object(kitchen: Segmentation) -> None:
    selection = select(kitchen, Prompt(boxes=((30.0, 50.0, 50.0, 70.0), (90.0, 50.0, 130.0, 80.0))))
    assert selection.ok and selection.reason == ""
    assert [obj.instances for obj in selection.objects] == [(1,), (2,)]
    assert np.array_equal(selection.union_mask(IMAGE), CUP | PLATE)


def test_box_pick_is_clipped_to_the_box() -> None:
    wide = rect(IMAGE, 20, 20, 120, 60)
    segmentation = make_segmentation([wide])
    box = (20.0, 10.0, 80.0, 70.0)  # covers the left 60 of its 100 columns
    picked = only(select(segmentation, Prompt(boxes=(box,))))
    assert np.array_equal(picked.mask, rect(IMAGE, 20, 20, 80, 60))
    assert picked.box == (20.0, 20.0, 80.0, 60.0)
    assert picked.area == 60 * 40
    # mask-box IoU: 2400 inside / (3600 box + 4000 mask - 2400)
    assert picked.score == pytest.approx(2400 / 5200)


def test_box_with_weak_best_match_is_no_match(kitchen: Segmentation) -> None:
    box = (0.0, 0.0, 40.0, 45.0)  # empty corner that just touches the table
    selection = select(kitchen, Prompt(boxes=(box,)))
    assert selection.status is Status.NO_MATCH
    assert "min_box_iou" in selection.reason
    # With no threshold the same box picks the table, clipped to the box.
    loose = only(select(kitchen, Prompt(boxes=(box,)), SelectionParams(min_box_iou=0.0)))
    assert loose.instances == (0,)
    assert np.array_equal(loose.mask, rect(IMAGE, 10, 40, 40, 45))


def test_box_over_nothing_is_no_match(kitchen: Segmentation) -> None:
    assert select(kitchen, Prompt(boxes=((0.0, 0.0, 8.0, 8.0),))).status is Status.NO_MATCH


def test_one_failing_box_keeps_the_other_and_says_why(kitchen: Segmentation) -> None:
    selection = select(kitchen, Prompt(boxes=((0.0, 0.0, 8.0, 8.0), (30.0, 50.0, 50.0, 70.0))))
    assert selection.ok
    assert [obj.instances for obj in selection.objects] == [(1,)]
    assert selection.reason.startswith("box 0:")


def test_foreground_point_refines_the_box() -> None:
    # A plate with a hole where a cup stands: the box fits the plate, the click is on the cup.
    plate = rect(IMAGE, 20, 20, 100, 80) & ~rect(IMAGE, 40, 40, 60, 60)
    cup = rect(IMAGE, 40, 40, 60, 60)
    segmentation = make_segmentation([plate, cup])
    box = (20.0, 20.0, 100.0, 80.0)
    assert only(select(segmentation, Prompt(boxes=(box,)))).instances == (0,)
    refined = only(select(segmentation, Prompt(boxes=(box,), points=((50.0, 50.0),))))
    assert refined.instances == (1,)
    assert np.array_equal(refined.mask, cup)


def test_background_point_refines_the_box() -> None:
    cup, plate = rect(IMAGE, 20, 20, 50, 60), rect(IMAGE, 60, 20, 100, 60)
    both = cup | plate
    segmentation = make_segmentation([cup, plate, both])
    box = (20.0, 20.0, 100.0, 60.0)
    assert only(select(segmentation, Prompt(boxes=(box,)))).instances == (2,)
    refined = only(select(segmentation, Prompt(boxes=(box,), points=((30.0, 30.0), (80.0, 30.0)), labels=(1, 0))))
    assert refined.instances == (0,)
    assert np.array_equal(refined.mask, cup)


def test_box_points_outside_the_box_do_not_constrain_it(kitchen: Segmentation) -> None:
    picked = only(select(kitchen, Prompt(boxes=((30.0, 50.0, 50.0, 70.0),), points=((100.0, 60.0),))))
    assert picked.instances == (1,)


def test_box_scores_are_exact_on_a_known_case() -> None:
    segmentation = make_segmentation([rect(IMAGE, 20, 20, 60, 60), rect(IMAGE, 100, 10, 120, 30)])
    mask_iou, box_iou = box_scores(segmentation, (20.0, 20.0, 60.0, 60.0))
    assert mask_iou == pytest.approx([1.0, 0.0])
    assert box_iou == pytest.approx([1.0, 0.0])
    mask_iou, box_iou = box_scores(segmentation, (40.0, 20.0, 80.0, 60.0))
    assert mask_iou[0] == pytest.approx(800 / (1600 + 1600 - 800))
    assert box_iou[0] == pytest.approx(800 / 2400)


# ---------------------------------------------------------------- letterboxed masks


LETTERBOX = MaskGeometry(IMAGE, (64, 64))  # gain 0.4: content 64x48 cells, 8 rows of padding above and below


def test_letterbox_geometry_is_what_the_tests_assume() -> None:
    assert LETTERBOX.content == (0, 8, 64, 48)


def test_letterboxed_point_and_box_selection_map_back_to_image_pixels() -> None:
    # Cells (10..20, 18..28) are image pixels (25..50, 25..50); cells (30..50, 14..44) pixels (75..125, 15..90).
    small = rect((64, 64), 10, 18, 20, 28)
    large = rect((64, 64), 30, 14, 50, 44)
    segmentation = make_segmentation([small, large])
    picked = only(select(segmentation, Prompt(points=((37.0, 37.0),))))
    assert picked.instances == (0,)
    assert np.array_equal(picked.mask, LETTERBOX.upsample(small))
    assert picked.box == (25.0, 25.0, 50.0, 50.0)
    assert picked.area == 625 - 4  # bilinear corners: 0.7 x 0.7 = 0.49 < 0.5
    assert picked.centroid == pytest.approx((37.0, 37.0))
    boxed = only(select(segmentation, Prompt(boxes=((75.0, 15.0, 125.0, 90.0),))))
    assert boxed.instances == (1,)
    assert np.array_equal(boxed.mask, LETTERBOX.upsample(large))
    assert boxed.box == (75.0, 15.0, 125.0, 90.0)
    assert select(segmentation, Prompt(points=((60.0, 100.0),))).status is Status.NO_MATCH


# ---------------------------------------------------------------- invalid prompts


@pytest.mark.parametrize(
    ("prompt", "words"),
    [
        (Prompt(), "no points, boxes or text"),
        (Prompt(points=((160.0, 10.0),)), "outside"),
        (Prompt(points=((-1.0, 10.0),)), "outside"),
        (Prompt(points=((10.0, 120.0),)), "outside"),
        (Prompt(points=((math.nan, 10.0),)), "finite"),
        (Prompt(points=((10.0, math.inf),)), "finite"),
        (Prompt(points=((10.0, 10.0),), labels=(2,)), "unknown point label"),
        (Prompt(points=((10.0, 10.0), (20.0, 20.0)), labels=(1,)), "2 points but 1 labels"),
        (Prompt(points=((10.0, 10.0),), labels=(0,)), "background points alone"),
        (Prompt(boxes=((50.0, 10.0, 40.0, 20.0),)), "inverted"),
        (Prompt(boxes=((10.0, 10.0, 10.0, 20.0),)), "inverted or empty"),
        (Prompt(boxes=((-5.0, 10.0, 40.0, 20.0),)), "outside"),
        (Prompt(boxes=((10.0, 10.0, 161.0, 20.0),)), "outside"),
        (Prompt(boxes=((10.0, math.nan, 40.0, 20.0),)), "finite"),
    ],
)
def test_invalid_prompts_say_why(kitchen: Segmentation, prompt: Prompt, words: str) -> None:
    selection = select(kitchen, prompt)
    assert selection.status is Status.INVALID
    assert words in selection.reason
    assert selection.objects == ()


def test_invalid_is_reported_even_without_instances() -> None:
    assert select(make_segmentation([]), Prompt(points=((-3.0, 4.0),))).status is Status.INVALID


def test_text_prompt_needs_a_scorer(kitchen: Segmentation) -> None:
    assert select(kitchen, Prompt(text="cup")).status is Status.ERROR


class _PlateScorer:
    """Says instance 2 (the plate) matches any text best."""

    def score(self, text, image_bgr, segmentation, indices):
        return np.array([0.9 if i == 2 else 0.1 for i in indices])


def test_text_prompt_goes_to_the_scorer_with_the_thresholds(kitchen: Segmentation) -> None:
    image = np.zeros((*kitchen.image_shape, 3), np.uint8)
    plate = only(select(kitchen, Prompt(text="a plate"), image=image, text_scorer=_PlateScorer()))
    assert plate.instances == (2,) and plate.score == pytest.approx(0.9)
    strict = select(kitchen, Prompt(text="a plate"), SelectionParams(min_text_score=0.95), image, _PlateScorer())
    assert strict.status is Status.NO_MATCH
    everything = select(kitchen, Prompt(text="x"), SelectionParams(min_text_score=0.05, text_return_all=True),
                        image, _PlateScorer())
    assert len(everything.objects) == 3 and everything.objects[0].instances == (2,)  # best first


def test_a_box_selection_never_spills_outside_the_box(kitchen: Segmentation) -> None:
    rng = np.random.default_rng(0)
    for _ in range(50):
        x1, x2 = np.sort(rng.uniform(0, 160, 2))
        y1, y2 = np.sort(rng.uniform(0, 120, 2))
        if x2 - x1 < 1 or y2 - y1 < 1:
            continue
        selection = select(kitchen, Prompt(boxes=((x1, y1, x2, y2),)), SelectionParams(min_box_iou=0.0))
        inside = rect(IMAGE, int(np.floor(x1)), int(np.floor(y1)), int(np.ceil(x2)), int(np.ceil(y2)))
        union = selection.union_mask(IMAGE)
        assert not (union & ~inside).any()
        assert union.sum() < IMAGE[0] * IMAGE[1]


def test_selection_benchmark_reports_percentiles() -> None:
    from bench.bench_selection import run

    figures = run(n_instances=10, image_shape=(120, 160), repeats=10)
    assert set(figures) == {"point", "box"}
    for values in figures.values():
        assert 0 < values["p50_ms"] <= values["p95_ms"]
