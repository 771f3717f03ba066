"""Followed prompts and instance ids through the node, with a fake engine and a panning camera: exact answers.

The fake engine's instances are the colours painted into each frame (``fake_engine.py``). The camera pans
15 px per frame to the right, so the scene moves that way: after three frames the book, not the mug, lies
under the pixel first clicked on the mug.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from ros_harness import FAKE_NODE, Probe, running_node, stamp_of

SHAPE = (120, 200)
MUG, BOOK, PLATE = (0, 0, 200), (0, 200, 0), (100, 100, 100)  # BGR, distinct red values: separate instances
WORLD = {MUG: (40, 40, 65, 75), BOOK: (0, 30, 30, 90), PLATE: (90, 90, 180, 115)}  # x1, y1, x2, y2 at pan 0
CLICK = (52.0, 57.0)  # the mug's centre at pan 0
LOST_FRAMES = 2


def box_at(colour: tuple[int, int, int], pan: int) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = WORLD[colour]
    return x1 + pan, y1, min(x2 + pan, SHAPE[1]), y2


def mask_at(colour: tuple[int, int, int], pan: int) -> np.ndarray:
    x1, y1, x2, y2 = box_at(colour, pan)
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def scene(pan: int, colours=(MUG, BOOK, PLATE)) -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    for colour in colours:
        frame[mask_at(colour, pan)] = colour
    return frame


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("tracking-node") / "node.log"
    with running_node(log, "tracktest", program=FAKE_NODE, model="fake.pt", warmup=False,
                      track_lost_frames=LOST_FRAMES) as (_, client):
        yield client


_stamps = iter(range(10_000_000_000, 99_000_000_000, 1_000_000_000))


def show(probe: Probe, frame: np.ndarray) -> tuple[int, object]:
    """Publish a frame; its stamp and its `instances` message."""
    stamp = next(_stamps)
    probe.publish_image(frame, stamp)
    instances = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    assert instances is not None, f"frame {stamp} not segmented"
    return stamp, instances


def answer_on(probe: Probe, prompt_id: str, stamp: int):
    selection = probe.wait_for("selection", lambda m: m.prompt_id == prompt_id and stamp_of(m) == stamp)
    assert selection is not None, f"no answer to {prompt_id} on frame {stamp}"
    return selection


def start(probe: Probe, prompt_id: str, stamp: int, **prompt):
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, points=[CLICK], persistent=True, **prompt))
    return answer_on(probe, prompt_id, stamp)


def clear(probe: Probe, prompt_id: str) -> None:
    probe.prompt_pub.publish(probe.prompt(prompt_id, clear=True))
    time.sleep(0.3)


def picked(selection) -> np.ndarray:
    from fastsam_ros.ros.conversions import mask_from_msg

    assert selection.status == "ok", f"{selection.status}: {selection.reason}"
    assert len(selection.objects) == 1
    return mask_from_msg(selection.objects[0].mask, SHAPE)


def instance_id_of(instances, colour: tuple[int, int, int], pan: int) -> int:
    x1, y1, x2, y2 = box_at(colour, pan)
    (match,) = [i for i in instances.instances if (i.box.x1, i.box.y1, i.box.x2, i.box.y2) == (x1, y1, x2, y2)]
    return match.id


def test_a_followed_click_keeps_the_mug_while_a_pixel_fixed_one_drifts_to_the_book(probe: Probe) -> None:
    stamp, instances = show(probe, scene(0))
    first = start(probe, "follow", stamp)
    fixed = start(probe, "fixed", stamp, reapply=True)
    track_id = first.objects[0].track_id
    assert track_id != 0 and track_id == instance_id_of(instances, MUG, 0)
    assert np.array_equal(picked(first), mask_at(MUG, 0)) and np.array_equal(picked(fixed), mask_at(MUG, 0))
    assert fixed.objects[0].track_id == 0, "a pixel-fixed prompt follows nothing"
    book_id = instance_id_of(instances, BOOK, 0)
    for pan in (15, 30, 45):
        stamp, instances = show(probe, scene(pan))
        followed = answer_on(probe, "follow", stamp)
        assert np.array_equal(picked(followed), mask_at(MUG, pan)), pan
        assert followed.objects[0].track_id == track_id == instance_id_of(instances, MUG, pan)
        assert instance_id_of(instances, BOOK, pan) == book_id
    assert np.array_equal(picked(answer_on(probe, "fixed", stamp)), mask_at(BOOK, 45)), "the book is under the pixel"
    clear(probe, "follow")
    clear(probe, "fixed")


def test_a_followed_object_is_lost_reacquired_then_no_match_and_clearing_while_lost_stops_it(probe: Probe) -> None:
    stamp, _ = show(probe, scene(0))
    track_id = start(probe, "mug", stamp).objects[0].track_id
    statuses, away = [], (BOOK, PLATE)
    for pan, colours in ((10, away), (20, away), (30, (MUG, BOOK, PLATE)), (40, away), (50, away), (60, away)):
        stamp, _ = show(probe, scene(pan, colours))
        selection = answer_on(probe, "mug", stamp)
        statuses.append((selection.status, selection.reason))
        if selection.status == "ok":
            assert np.array_equal(picked(selection), mask_at(MUG, 30))
            assert selection.objects[0].track_id == track_id
    window = f"(re-acquired if it returns within {LOST_FRAMES} frames)"
    assert statuses == [
        ("lost", f"track {track_id} not seen for 1 frame {window}"),
        ("lost", f"track {track_id} not seen for 2 frames {window}"),
        ("ok", ""),
        ("lost", f"track {track_id} not seen for 1 frame {window}"),
        ("lost", f"track {track_id} not seen for 2 frames {window}"),
        ("no_match", f"track {track_id} was not seen for more than {LOST_FRAMES} frames: clear or re-prompt"),
    ]
    stamp, _ = show(probe, scene(70, away))
    assert answer_on(probe, "mug", stamp).status == "no_match", "it stays no_match until cleared"

    # Clearing a prompt whose object is lost: no answer on any later frame.
    stamp, _ = show(probe, scene(0))
    start(probe, "gone", stamp)
    stamp, _ = show(probe, scene(10, away))
    assert answer_on(probe, "gone", stamp).status == "lost"
    clear(probe, "gone")
    clear(probe, "mug")
    stamp, _ = show(probe, scene(20))
    time.sleep(0.3)
    assert probe.count("selection", lambda m: m.prompt_id in ("gone", "mug") and stamp_of(m) == stamp) == 0


def test_a_persistent_click_on_a_frame_without_instances_starts_following_on_the_first_it_selects(
    probe: Probe,
) -> None:
    stamp, _ = show(probe, np.zeros((*SHAPE, 3), dtype=np.uint8))
    empty = start(probe, "early", stamp)
    assert (empty.status, empty.reason) == ("no_match", "no instances were found in this frame")
    stamp, _ = show(probe, scene(0))
    first = answer_on(probe, "early", stamp)
    assert np.array_equal(picked(first), mask_at(MUG, 0))
    stamp, _ = show(probe, scene(45))
    later = answer_on(probe, "early", stamp)
    assert np.array_equal(picked(later), mask_at(MUG, 45)), "followed, not re-applied to the pixel (the book)"
    assert later.objects[0].track_id == first.objects[0].track_id != 0
    clear(probe, "early")


def _set(probe: Probe, **values) -> None:
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter as RclpyParameter

    request = SetParameters.Request(parameters=[
        Parameter(name=name, value=RclpyParameter(name, value=value).get_parameter_value())
        for name, value in values.items()])
    response = probe.call(SetParameters, "/tracktest/fastsam/set_parameters", request)
    assert response is not None and all(result.successful for result in response.results), response


def test_with_tracking_off_ids_are_zero_and_persistent_prompts_reapply_their_pixels(probe: Probe) -> None:
    _set(probe, tracking=False)
    try:
        stamp, instances = show(probe, scene(0))
        assert {i.id for i in instances.instances} == {0}
        assert start(probe, "plain", stamp).objects[0].track_id == 0
        stamp, _ = show(probe, scene(45))
        assert np.array_equal(picked(answer_on(probe, "plain", stamp)), mask_at(BOOK, 45))
        clear(probe, "plain")
    finally:
        _set(probe, tracking=True)
    stamp, instances = show(probe, scene(0))
    assert all(i.id != 0 for i in instances.instances), "ids again once tracking is back on"
