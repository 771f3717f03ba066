"""Instance tracking and followed prompts on hand-made moving masks: exact ids, statuses and masks."""

from __future__ import annotations

import numpy as np
import pytest
from fake_engine import segmentation_from_masks
from test_selection import make_segmentation, rect

from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.instance_masks import pack_rows
from fastsam_ros.tracking import follow
from fastsam_ros.tracking import tracker as tracking
from fastsam_ros.tracking.follow import FollowedPrompt, follow_step
from fastsam_ros.tracking.tracker import InstanceTracker, TrackerParams
from fastsam_ros.types import Prompt, Segmentation, Selection, Status

IMAGE = (240, 400)  # (H, W): the association grid is 80 cells wide, 5 px per cell

# A scene of four objects, in world coordinates; the camera pans over it.
SCENE = {
    "mug": (120, 100, 160, 150), "book": (220, 30, 300, 80), "plate": (20, 20, 100, 70), "box": (20, 160, 100, 220),
}


def frame(shift: tuple[int, int], names=("mug", "book", "plate", "box"), order=None) -> tuple[Segmentation, list[str]]:
    """The scene seen with the camera moved so that everything shifts by ``shift`` pixels; instances in ``order``
    (objects that left the view are not listed)."""
    dx, dy = shift
    seen, masks = [], []
    for name in order or names:
        x1, y1, x2, y2 = SCENE[name]
        mask = rect(IMAGE, max(x1 + dx, 0), max(y1 + dy, 0), min(x2 + dx, IMAGE[1]), min(y2 + dy, IMAGE[0]))
        if mask.any():
            seen.append(name)
            masks.append(mask)
    return make_segmentation(masks, IMAGE), seen


def ids_by_name(tracker: InstanceTracker, segmentation: Segmentation, names: list[str]) -> dict[str, int]:
    return dict(zip(names, tracker.update(segmentation).tolist(), strict=True))


def test_ids_stay_with_objects_through_a_pan_larger_than_the_objects() -> None:
    # 45 px per frame moves the 40 px wide mug past its own width: without motion compensation no mask overlaps
    # its previous position, and the listing order changes every frame.
    tracker = InstanceTracker()
    first = ids_by_name(tracker, *frame((0, 0)))
    assert sorted(first.values()) == [1, 2, 3, 4]
    orders = [("box", "mug", "plate", "book"), ("plate", "book", "box", "mug")]
    for step, order in enumerate(orders, start=1):
        assert ids_by_name(tracker, *frame((45 * step, 0), order=order)) == first
    assert tracker.motion == pytest.approx((45.0, 0.0), abs=4.0)


def test_a_lost_object_keeps_its_id_when_it_returns_after_the_camera_moved() -> None:
    tracker = InstanceTracker(TrackerParams(max_lost_frames=5))
    first = ids_by_name(tracker, *frame((0, 0)))
    for step in (1, 2, 3):  # the mug is occluded while the camera keeps panning 20 px per frame
        seen = ids_by_name(tracker, *frame((20 * step, 0), names=("book", "plate", "box")))
        assert seen == {name: first[name] for name in ("book", "plate", "box")}
        assert tracker.missing_frames(first["mug"]) == step
    back = ids_by_name(tracker, *frame((80, 0)))
    assert back == first
    assert tracker.missing_frames(first["mug"]) == 0


def test_an_object_lost_for_longer_than_max_lost_frames_is_forgotten_and_comes_back_as_new() -> None:
    tracker = InstanceTracker(TrackerParams(max_lost_frames=2))
    first = ids_by_name(tracker, *frame((0, 0)))
    for _ in range(3):
        ids_by_name(tracker, *frame((0, 0), names=("book", "plate", "box")))
    assert tracker.missing_frames(first["mug"]) is None
    back = ids_by_name(tracker, *frame((0, 0)))
    assert back["mug"] == 5
    assert {name: back[name] for name in ("book", "plate", "box")} == {
        name: first[name] for name in ("book", "plate", "box")
    }


def test_a_new_image_size_restarts_the_ids() -> None:
    tracker = InstanceTracker()
    tracker.update(frame((0, 0))[0])
    small = make_segmentation([rect((120, 160), 10, 10, 40, 40)], (120, 160))
    assert tracker.update(small).tolist() == [1]


def test_a_frame_without_instances_loses_every_track_without_error() -> None:
    tracker = InstanceTracker()
    first = ids_by_name(tracker, *frame((0, 0)))
    assert tracker.update(make_segmentation([], IMAGE)).tolist() == []
    assert tracker.missing_frames(first["mug"]) == 1
    assert ids_by_name(tracker, *frame((0, 0))) == first


@pytest.mark.parametrize("bad", [{"max_lost_frames": -1}, {"min_iou": 0.0}, {"min_iou": 1.5}])
def test_bad_tracker_parameters_are_refused(bad: dict) -> None:
    with pytest.raises(ValueError):
        TrackerParams(**bad)


# ---------------------------------------------------------------- followed prompts


def run_prompt(
    tracker: InstanceTracker, prompt: Prompt, frames: list[tuple[Segmentation, list[str]]]
) -> list[Selection]:
    followed, answers = None, []
    for segmentation, _names in frames:
        ids = tracker.update(segmentation)
        answer, followed = follow_step(followed, lambda s=segmentation: select(s, prompt), segmentation, ids, tracker)
        answers.append(answer)
    return answers


MUG_CLICK = Prompt(id="mug", points=((140.0, 125.0),))


def test_a_followed_click_answers_the_object_it_selected_not_the_pixel() -> None:
    # The camera pans: by frame 2 the book lies under the clicked pixel, and the mug has moved away.
    shifts = [(0, 0), (0, 0), (-90, 55), (-120, 60)]
    frames = [frame(shift) for shift in shifts]
    answers = run_prompt(InstanceTracker(), MUG_CLICK, frames)
    assert [a.status for a in answers] == [Status.OK] * 4
    for answer, (_segmentation, names), shift in zip(answers, frames, shifts, strict=True):
        (obj,) = answer.objects
        assert names[obj.instances[0]] == "mug"
        assert obj.track_id == 1
        x1, y1, x2, y2 = SCENE["mug"]
        assert obj.box == (x1 + shift[0], y1 + shift[1], x2 + shift[0], y2 + shift[1])
    # The same click re-applied to frame 2 (the pixel-fixed behaviour) picks the book.
    pixel_fixed = select(frames[2][0], MUG_CLICK)
    assert frames[2][1][pixel_fixed.objects[0].instances[0]] == "book"


def test_a_followed_object_is_lost_then_reacquired_then_no_match_after_max_lost_frames() -> None:
    without_mug = ("book", "plate", "box")
    frames = [frame((0, 0)), frame((10, 0), names=without_mug), frame((20, 0), names=without_mug), frame((30, 0)),
              frame((40, 0), names=without_mug), frame((50, 0), names=without_mug), frame((60, 0), names=without_mug)]
    answers = run_prompt(InstanceTracker(TrackerParams(max_lost_frames=2)), MUG_CLICK, frames)
    assert [a.status for a in answers] == [Status.OK, Status.LOST, Status.LOST, Status.OK, Status.LOST, Status.LOST,
                                           Status.NO_MATCH]
    assert answers[1].reason == "track 1 not seen for 1 frame (re-acquired if it returns within 2 frames)"
    assert answers[2].reason == "track 1 not seen for 2 frames (re-acquired if it returns within 2 frames)"
    assert answers[3].objects[0].track_id == 1
    assert answers[3].objects[0].box == (150.0, 100.0, 190.0, 150.0)
    assert answers[6].reason == "track 1 was not seen for more than 2 frames: clear or re-prompt"
    assert answers[6].objects == ()


def test_a_followed_prompt_on_a_frame_without_instances_starts_following_when_something_is_selected() -> None:
    frames = [(make_segmentation([], IMAGE), []), frame((0, 0)), frame((30, 0))]
    answers = run_prompt(InstanceTracker(), MUG_CLICK, frames)
    assert answers[0].status is Status.NO_MATCH
    assert answers[0].reason == "no instances were found in this frame"
    assert [a.status for a in answers[1:]] == [Status.OK, Status.OK]
    assert frames[2][1][answers[2].objects[0].instances[0]] == "mug"
    assert answers[2].objects[0].box == (150.0, 100.0, 190.0, 150.0)


def test_a_followed_box_prompt_keeps_each_box_s_object() -> None:
    prompt = Prompt(id="two", boxes=((118.0, 98.0, 162.0, 152.0), (218.0, 28.0, 302.0, 82.0)))
    answers = run_prompt(InstanceTracker(), prompt, [frame((0, 0)), frame((-30, 20), order=("box", "book", "mug"))])
    first, later = answers
    assert [o.track_id for o in first.objects] == [o.track_id for o in later.objects]
    assert [o.box for o in later.objects] == [(90.0, 120.0, 130.0, 170.0), (190.0, 50.0, 270.0, 100.0)]


def test_followed_prompt_reports_lost_objects_beside_the_ones_still_seen() -> None:
    prompt = Prompt(id="two", boxes=((118.0, 98.0, 162.0, 152.0), (218.0, 28.0, 302.0, 82.0)))
    answers = run_prompt(InstanceTracker(), prompt, [frame((0, 0)), frame((0, 0), names=("book", "plate"))])
    assert answers[1].status is Status.OK
    assert len(answers[1].objects) == 1 and answers[1].objects[0].box == (220.0, 30.0, 300.0, 80.0)
    assert answers[1].reason == f"track {answers[0].objects[0].track_id} not seen for 1 frame"


def test_start_needs_an_ok_selection() -> None:
    assert FollowedPrompt.start(Selection.failed("x", Status.NO_MATCH, "nothing"), np.zeros(0, dtype=np.int64),
                                0) is None


def test_every_reset_starts_a_new_epoch_including_a_new_image_size() -> None:
    tracker = InstanceTracker()
    tracker.update(frame((0, 0))[0])
    first = tracker.epoch
    tracker.update(frame((10, 0))[0])
    assert tracker.epoch == first
    tracker.reset()
    assert tracker.epoch == first + 1
    tracker.update(make_segmentation([rect((120, 160), 10, 10, 40, 40)], (120, 160)))
    assert tracker.epoch == first + 2


# The followed mug's id is 1; after a reset, id 1 goes to the first instance of the next frame, the box, which keeps
# it, with the mug in view or not.
OTHER_SCENES = [frame((0, 0), order=("box", "book", "plate", "mug")),
                frame((0, 0), order=("plate", "mug", "box", "book")),
                frame((0, 0), names=("plate", "box", "book"))]


@pytest.mark.parametrize("how", ["reset", "image size"])
def test_a_followed_prompt_never_answers_ok_with_another_object_after_a_tracker_reset(how: str) -> None:
    tracker, mug = InstanceTracker(), frame((0, 0))[0]
    first, followed = follow_step(None, lambda: select(mug, MUG_CLICK), mug, tracker.update(mug), tracker)
    assert first.status is Status.OK and first.objects[0].track_id == 1
    if how == "reset":
        tracker.reset()
        scenes = OTHER_SCENES
    else:  # the same scenes at another resolution: update resets the tracker itself
        scenes = [(make_segmentation([m[::2, ::2] for m in s.masks.dense()], (120, 200)), n) for s, n in OTHER_SCENES]
    for segmentation, names in scenes:
        ids = tracker.update(segmentation)
        assert ids[names.index("box")] == 1  # the id the prompt follows now names another object
        answer, followed = follow_step(followed, lambda s=segmentation: select(s, MUG_CLICK), segmentation, ids,
                                       tracker)
        assert answer.status is Status.NO_MATCH
        assert answer.objects == ()
        assert answer.reason == follow.RESET_REASON


def test_the_camera_motion_is_measured_on_the_picture_when_the_frame_is_given() -> None:
    # One object only, moving 60 px (more than its width): too little for the masks to show the motion reliably,
    # plenty of texture in the picture.
    world = np.random.default_rng(7).integers(0, 255, (IMAGE[0], IMAGE[1] + 200, 3), dtype=np.uint8)
    world = np.ascontiguousarray(np.repeat(np.repeat(world[::4, ::4], 4, axis=0), 4, axis=1))
    tracker = InstanceTracker()
    for step, pan in enumerate((0, 60, 120)):
        picture = np.ascontiguousarray(world[:, 200 - pan : 200 - pan + IMAGE[1]])
        segmentation, _ = frame((pan, 0), names=("mug",))
        assert tracker.update(segmentation, picture).tolist() == [1], step
    assert tracker.motion == pytest.approx((60.0, 0.0), abs=3.0)


def test_a_track_continues_in_a_near_duplicate_mask_when_its_own_is_missing() -> None:
    # Models with per-class NMS output two near-identical masks for one object, then sometimes only one of them.
    mug, duplicate = SCENE["mug"], (112, 92, 168, 158)
    both = make_segmentation([rect(IMAGE, *mug), rect(IMAGE, *duplicate)], IMAGE)
    only_duplicate = make_segmentation([rect(IMAGE, *duplicate)], IMAGE)
    tracker = InstanceTracker()
    answers = run_prompt(tracker, MUG_CLICK, [(both, []), (only_duplicate, []), (both, [])])
    assert [a.status for a in answers] == [Status.OK] * 3
    assert [a.objects[0].track_id for a in answers] == [1, 1, 1]
    assert answers[1].objects[0].box == (112.0, 92.0, 168.0, 158.0)
    assert answers[2].objects[0].box == (120.0, 100.0, 160.0, 150.0)
    assert tracker.instance_of(2) == 1


def test_a_followed_prompt_applies_its_rules_only_until_it_selects_something() -> None:
    # What keeps a persistent text prompt from running CLIP on every frame once it follows its object.
    calls = []

    def rules(segmentation: Segmentation) -> Selection:
        calls.append(segmentation)
        return select(segmentation, MUG_CLICK)

    tracker, followed = InstanceTracker(), None
    frames = [(make_segmentation([], IMAGE), []), frame((0, 0)), frame((20, 0)), frame((40, 0))]
    for segmentation, _ in frames:
        ids = tracker.update(segmentation)
        answer, followed = follow_step(followed, lambda s=segmentation: rules(s), segmentation, ids, tracker)
    assert len(calls) == 2, "the empty frame and the first frame with the mug"
    assert answer.objects[0].box == (160.0, 100.0, 200.0, 150.0)


def _rectangles(rng: np.random.Generator, count: int, shape: tuple[int, int]) -> np.ndarray:
    """``count`` bool grid masks: a random rectangle each, with holes (every 7th empty)."""
    masks = np.zeros((count, *shape), dtype=bool)
    for mask in masks[1:]:
        (y0, y1), (x0, x1) = (np.sort(rng.integers(0, size + 1, 2)) for size in shape)
        mask[y0:y1, x0:x1] = rng.random((y1 - y0, x1 - x0)) > 0.2
    masks[::7] = False
    masks[1, :, -1] = masks[2, -1, 0] = True  # the last column and the first
    return masks


@pytest.mark.parametrize(("floor", "contain", "within"), [(0.3, 0.6, 2.0), (0.05, 2.0, 2.0), (0.3, 2.0, 0.5)])
def test_packed_grid_overlaps_are_the_iou_of_the_moved_bool_masks(floor: float, contain: float, within: float
                                                                  ) -> None:
    """The tracker keeps grid masks one uint64 per row: moved, bounded and compared, they give the IoU of the bool
    masks, moved (cells leaving the grid are dropped), the share of the moved mask each instance holds and the
    share of the instance inside it, for every pair that reaches the floor or (a lost track) holds ``contain`` of
    it or lies ``within`` inside it (an extent), in pair order."""
    rng = np.random.default_rng(3)
    height, width = 9, 53
    last = _rectangles(rng, 40, (height, width))
    dx, dy = rng.integers(-8, 9, 40), rng.integers(-3, 4, 40)
    dx[::9], dy[::11] = rng.integers(-width, width + 1, 5), rng.integers(-10, 11, 4)  # out of the grid, or nearly
    moved = np.zeros_like(last)
    for k in range(40):
        ys, xs = np.nonzero(last[k])
        ys, xs = ys + dy[k], xs + dx[k]
        inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
        moved[k, ys[inside], xs[inside]] = True
    # Instances: some tracks' moved masks with cells flipped, and others.
    current = np.concatenate([moved[:20] ^ (rng.random((20, height, width)) > 0.85),
                              _rectangles(rng, 10, (height, width))])
    common = np.einsum("tyx,iyx->ti", moved.astype(np.int64), current.astype(np.int64))
    union = moved.sum(axis=(1, 2))[:, None] + current.sum(axis=(1, 2))[None] - common
    iou = np.where(union > 0, common / np.maximum(union, 1), 0.0)
    held = common / np.maximum(moved.sum(axis=(1, 2)), 1)[:, None]
    lies = common / np.maximum(current.sum(axis=(1, 2)), 1)[None]
    lost = np.arange(40) % 2 == 1
    expected = np.argwhere((iou >= floor) | (lost[:, None] & ((held >= contain) | (lies >= within))))
    assert 10 < len(expected) < 40 * 30 // 2  # the data has pairs on both sides of the floor
    if contain <= 1 or within <= 1:  # and lost tracks' pairs that only their containment or extent keeps
        assert ((iou < floor) & lost[:, None] & ((held >= contain) | (lies >= within))).sum() >= 3
    packed, packed_current = pack_rows(last), pack_rows(current)
    tracks, instances, overlap, inside, inner = tracking._overlaps(
        packed, tracking._bounds(packed), dx, dy, width, packed_current,
        tracking._bounds(packed_current), current.sum(axis=(1, 2)), floor, lost, contain, within)
    assert np.array_equal(np.stack([tracks, instances], axis=1), expected)
    assert np.allclose(overlap, iou[tracks, instances], rtol=1e-6)
    assert np.allclose(inside, held[tracks, instances], rtol=1e-6)
    assert np.allclose(inner, lies[tracks, instances], rtol=1e-6)
    assert np.array_equal(tracking._area(packed), last.sum(axis=(1, 2)))
    boxes = tracking._bounds(packed)
    for k in range(40):
        ys, xs = np.nonzero(last[k])
        expected = [ys.min(), ys.max() + 1, xs.min(), xs.max() + 1] if ys.size else [9, 0, 64, 0]
        assert boxes[:, k].tolist() == expected


# ---------------------------------------------------------------- frames of every size


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (1, 1), (2, 2), (3, 7), (7, 3), (1, 2), (9, 1), (17, 640),
                                   (640, 17), (481, 639)])
@pytest.mark.parametrize("with_picture", [True, False])
def test_frames_of_any_size_are_tracked(shape: tuple[int, int], with_picture: bool) -> None:
    """Masks at the frame's size (identity geometry, as a network at the frame's resolution gives): even a 1x1
    frame keeps its object's id, and a picture too thin to measure the camera motion on is not measured on."""
    axis = int(shape[1] >= shape[0])  # two objects side by side along the long side; one in a 1x1 frame
    second = np.indices(shape)[axis] >= (shape[axis] + 1) // 2
    masks = [mask for mask in (~second, second) if mask.any()]
    rng = np.random.default_rng(0)
    tracker = InstanceTracker()
    for step in range(3):
        order = list(range(len(masks)))[:: -1 if step == 1 else 1]
        picture = rng.integers(0, 255, (*shape, 3), dtype=np.uint8) if with_picture else None
        ids = tracker.update(segmentation_from_masks([masks[i] for i in order]), picture)
        assert dict(zip(order, ids.tolist(), strict=True)) == {i: i + 1 for i in range(len(masks))}, step


def _lazy_frame(shift: int) -> Segmentation:
    """Six round blobs as prototype-resolution logits (the engine's lazy masks), moved ``shift`` pixels right."""
    from fastsam_ros.segmentation.instance_masks import InstanceMasks
    from fastsam_ros.segmentation.masks import MaskGeometry

    proto, image = (60, 100), (240, 400)
    ys, xs = np.mgrid[0 : proto[0], 0 : proto[1]].astype(np.float32)
    centres = [(12 + 14 * k + shift / 4, 15 + 6 * k, 5 + k) for k in range(6)]
    logits = np.stack([r * r - ((xs - cx) ** 2 + (ys - cy) ** 2) for cx, cy, r in centres]).astype(np.float32)
    boxes = np.array([[4 * (cx - r - 1), 4 * (cy - r - 1), 4 * (cx + r + 1), 4 * (cy + r + 1)]
                      for cx, cy, r in centres], dtype=np.float32).clip(0, [image[1], image[0]] * 2)
    masks = InstanceMasks.from_logits(logits, boxes, image)
    return Segmentation(masks=masks, boxes=boxes, scores=np.full(len(boxes), 0.9, np.float32),
                        geometry=MaskGeometry(image, masks.shape))


def test_masks_made_after_the_tracker_read_its_grid_change_no_id() -> None:
    """The node makes a frame's masks on another thread while the tracker associates (read first, then update):
    the ids are those of a tracker that did everything in one call, frame after frame."""
    together, apart = InstanceTracker(TrackerParams()), InstanceTracker(TrackerParams())
    for step in range(8):
        expected = together.update(_lazy_frame(6 * step))
        segmentation = _lazy_frame(6 * step)
        grid = apart.read(segmentation)
        segmentation.masks.make()  # every mask: the logits the grid was read from are dropped
        assert segmentation.masks._logits is None
        assert np.array_equal(apart.update(segmentation, None, grid), expected)
    assert len(set(expected.tolist())) == 6 and expected.max() == 6  # the six blobs kept their ids


@pytest.mark.parametrize(("twin_right", "continues"), [(170, True), (135, False)])
def test_a_lost_track_continues_in_the_track_that_was_its_near_identical_twin(twin_right: int, continues: bool
                                                                              ) -> None:
    """The model shows one object as two near-identical masks (80 and 70 px wide: twins), each with its track;
    then only a part of them remains, which the twin's track carries. The other track continues in it too (where
    the masks were only alike, 80 and 35 px wide, it is lost)."""
    tracker = InstanceTracker(TrackerParams())
    other = rect(IMAGE, 250, 50, 300, 100)
    for _ in range(2):
        ids = tracker.update(make_segmentation([rect(IMAGE, 100, 100, 180, 150), rect(IMAGE, 100, 100, twin_right, 150),
                                                other], IMAGE))
    followed, twin = int(ids[0]), int(ids[1])
    ids = tracker.update(make_segmentation([other, rect(IMAGE, 100, 100, 130, 150)], IMAGE))
    assert int(ids[1]) == twin and tracker.instance_of(twin) == 1  # the part is the twin's: the closer mask
    assert tracker.instance_of(followed) == (1 if continues else None)
