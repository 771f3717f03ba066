"""The moving-camera benchmark's pure parts: camera paths, sequence planning, metrics and targets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation.camera_motion import CameraPath
from evaluation.evaluate_track import (
    DIRECTIONS,
    FRAMES,
    PAN_RANGE,
    ZOOM_RANGE,
    check_targets,
    format_table,
    oracle_iou,
    plan_hard_crossings,
    plan_sequences,
    summarise,
    wrong_object,
)


def test_camera_path_starts_at_the_source_and_moves_the_scene_by_its_pan() -> None:
    path = CameraPath((640, 480), (200.0, -50.0), zoom=1.0, rotation_deg=0.0, frames=24)
    assert np.allclose(path.matrix(0), [[1, 0, 0], [0, 1, 0]])
    start, end = path.map_points(0, np.array([[100.0, 100.0]])), path.map_points(23, np.array([[100.0, 100.0]]))
    assert np.allclose(end - start, [[200.0, -50.0]])
    assert np.allclose(path.unmap_points(23, end), [[100.0, 100.0]])
    assert path.progress(0) == 0 and path.progress(23) == 1 and path.progress(1) < 1 / 23, "eased in"


def test_rendered_masks_move_exactly_like_the_frame() -> None:
    image = np.zeros((200, 300, 3), dtype=np.uint8)
    image[50:90, 100:160] = 255
    path = CameraPath((300, 200), (40.0, 10.0), zoom=1.2, rotation_deg=3.0, frames=5, frame_size=(300, 200))
    mask = image[:, :, 0] > 0
    for index in range(5):
        frame_mask = path.render(index, image)[:, :, 0] > 127
        moved = path.render_mask(index, mask)
        assert np.count_nonzero(frame_mask ^ moved) <= 0.05 * np.count_nonzero(moved), index


def test_sequences_are_deterministic_in_range_and_half_cross(eval_data: Path) -> None:
    first, again = plan_sequences(eval_data, 6), plan_sequences(eval_data, 6)
    assert [s.name for s in first] == [s.name for s in again]
    assert [s.click for s in first] == [s.click for s in again]
    for sequence in first:
        path = sequence.path
        assert path.frames == FRAMES and path.frame_size == (640, 480)
        assert PAN_RANGE[0] * 640 <= np.hypot(*path.pan) <= PAN_RANGE[1] * 640
        assert ZOOM_RANGE[0] <= path.zoom <= ZOOM_RANGE[1] and abs(path.rotation_deg) <= 4
        assert int(sequence.name.rsplit("/", 1)[1]) < DIRECTIONS
        frame, truth, _others = next(sequence.frames())
        x, y = sequence.click
        assert frame.shape == (480, 640, 3) and truth[int(y), int(x)], "the click lies on the target"
    assert any(s.crossing for s in first) and not all(s.crossing for s in first)


def test_summary_targets_and_table() -> None:
    frames = 4
    per_sequence = {
        "a": {"follow": [1.0] * frames, "pixel_fixed": [1.0, 0.0, 0.0, 0.0], "oracle": [1.0] * frames},
        "b": {"follow": [0.6, 0.6, 0.4, 0.4], "pixel_fixed": [0.6, 0.0, 0.0, 0.0], "oracle": [0.6] * frames},
    }
    overall = summarise(per_sequence, ["a", "b"])
    assert overall["sequences"] == 2
    assert overall["methods"]["follow"] == {"J": 0.75, "late_J": 0.7, "share_iou_0.5": 0.75}
    crossing = summarise(per_sequence, ["b"])
    report = {"model": "m", "frames_per_sequence": frames, "overall": overall, "crossing": crossing, "notes": [],
              "seconds": 1.0}
    targets = check_targets(report)
    assert list(targets.values()) == [True, False, False, True]  # 0.75 >= .9 x .8; .5 < .85 x .6; drift .05
    report["targets"] = targets
    table = format_table(report)
    assert "FAIL  crossing J >= 0.85 x oracle J" in table and "PASS  J >= 0.90 x oracle J" in table


def test_hard_crossings_cover_the_target_with_an_object_of_its_class(eval_data: Path) -> None:
    sequences = plan_hard_crossings(eval_data, 2)
    assert [s.name for s in sequences] == [s.name for s in plan_hard_crossings(eval_data, 2)]
    assert len(sequences) == 2 and all(s.hard and s.crossing for s in sequences)
    for sequence in sequences:
        assert sequence.occluder is not None
        assert sequence.occluder.instance.class_id == sequence.target.class_id
        visible = [np.count_nonzero(truth) for _frame, truth, _others in sequence.frames()]
        covered = [v < 0.8 * visible[0] for v in visible]
        assert not covered[0] and sum(covered) >= 6, "covered for longer than a few frames"
    assert sequences[1].name.endswith("/out")


def test_a_wrong_object_is_an_ok_answer_on_another_object() -> None:
    truth, other = np.zeros((8, 8), dtype=bool), np.zeros((8, 8), dtype=bool)
    truth[:4], other[4:] = True, True
    assert wrong_object(other, truth, [other])
    assert not wrong_object(np.zeros_like(truth), truth, [other]), "no answer (lost) is not wrong"
    assert not wrong_object(truth, truth, [other])
    background = np.zeros_like(truth)
    background[4:, :2] = True
    assert not wrong_object(background[::-1] & ~truth, truth, []), "nothing else there"


def test_summary_reports_wrong_objects_and_the_hard_targets() -> None:
    per_sequence = {"h": {"follow": [1.0, 0.0], "pixel_fixed": [1.0, 0.0], "oracle": [1.0, 1.0]}}
    wrong = {"h": {"follow": [False, True], "pixel_fixed": [False, False], "oracle": [False, False]}}
    hard = summarise(per_sequence, ["h"], wrong)
    assert hard["methods"]["follow"]["wrong_object"] == 0.5
    report = {"model": "m", "frames_per_sequence": 2, "overall": hard, "crossing": hard, "hard_crossing": hard,
              "notes": [], "seconds": 1.0}
    report["targets"] = check_targets(report)
    assert report["targets"]["hard crossing wrong object < 2% of frames"] is False
    assert "FAIL  hard crossing J >= 0.95 x oracle J" in format_table(report)


def test_oracle_is_the_best_single_mask() -> None:
    truth = np.zeros((4, 4), dtype=bool)
    truth[:2] = True
    half, all_ = truth.copy(), np.ones((4, 4), dtype=bool)
    half[1] = False
    assert oracle_iou([half, all_], truth) == pytest.approx(0.5)
    assert oracle_iou([], truth) == 0.0


def test_hard_crossings_keep_only_targets_the_model_finds_on_frame_0(eval_data: Path) -> None:
    # A target the click does not select on frame 0 measures the model, not the association: it is skipped, and the
    # next target (of the same image, or of the next image) takes its place.
    first = plan_hard_crossings(eval_data, 2)
    refused = {first[0].name}
    kept = plan_hard_crossings(eval_data, 2, lambda s: s.name not in refused)
    assert len(kept) == 2 and first[0].name not in [s.name for s in kept]
    assert plan_hard_crossings(eval_data, 2, lambda s: False) == []
