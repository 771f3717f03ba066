"""The node with a fake engine whose masks are painted into the frame: exact picks over real messages.

Every answer is checked against the hand-made masks, so a node that answered ``no_match`` to everything,
selected the wrong object or lost a header would fail here.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from fake_engine import FAIL_PIXEL

from ros_harness import FAKE_NODE, Probe, running_node, stamp_of

SHAPE = (120, 160)
TABLE, CUP, PLATE = (0, 0, 200), (0, 80, 200), (0, 200, 0)  # BGR; the cup shares the table's red: nested
CUP_CLICK, TABLE_CLICK, FLOOR_CLICK = (40.0, 60.0), (100.0, 100.0), (5.0, 115.0)


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


CUP_MASK = rect(30, 50, 50, 70)
TABLE_MASK = rect(10, 40, 150, 110) & ~CUP_MASK  # the smallest mask under a click on the bare table top
PLATE_MASK = rect(90, 5, 130, 30)


def kitchen() -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[rect(10, 40, 150, 110)] = TABLE
    frame[CUP_MASK] = CUP
    frame[PLATE_MASK] = PLATE  # beside the table
    return frame


@pytest.fixture(scope="module")
def node_and_probe(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("fake-node") / "node.log"
    with running_node(log, "fake", program=FAKE_NODE, model="fake.pt", diagnostics_period=0.3, warmup=False,
                      max_image_pixels=40_000) as node_and_probe:
        yield node_and_probe


@pytest.fixture()
def probe(node_and_probe) -> Probe:
    return node_and_probe[1]


_stamps = iter(range(10_000_000_000, 99_000_000_000, 1_000_000_000))


def segmented(probe: Probe, frame: np.ndarray | None = None) -> int:
    stamp = next(_stamps)
    probe.publish_image(kitchen() if frame is None else frame, stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None, f"frame {stamp} not segmented"
    return stamp


def answer(probe: Probe, prompt_id: str, stamp: int = 0, timeout: float = 20.0, **prompt):
    """Publish a prompt and wait for its answer: a new one, not an earlier answer to a prompt with this id (the
    node has then taken the prompt, so a frame published next is answered with it)."""
    def matches(m) -> bool:
        return m.prompt_id == prompt_id and (stamp == 0 or stamp_of(m) == stamp)

    before = probe.count("selection", matches)
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, **prompt))
    selection = probe.wait_for_nth("selection", before, matches, timeout)
    assert selection is not None, f"no answer to {prompt_id}"
    return selection


def picked(selection) -> np.ndarray:
    from fastsam_ros.ros.conversions import mask_from_msg

    assert selection.status == "ok", selection.reason
    assert len(selection.objects) == 1
    return mask_from_msg(selection.objects[0].mask, SHAPE)


def test_click_on_the_cup_selects_the_cup_and_on_the_table_the_table(probe: Probe) -> None:
    stamp = segmented(probe)
    cup = answer(probe, "cup", stamp, points=[CUP_CLICK])
    assert np.array_equal(picked(cup), CUP_MASK)
    assert (stamp_of(cup), cup.header.frame_id) == (stamp, "camera"), "the source header is preserved"
    assert np.array_equal(picked(answer(probe, "table", stamp, points=[TABLE_CLICK])), TABLE_MASK)


def test_cached_frame_is_answered_without_a_second_inference(probe: Probe) -> None:
    stamp = segmented(probe)
    segmented_before = len(probe.messages("instances"))
    assert np.array_equal(picked(answer(probe, "cached", stamp, boxes=[(88, 3, 132, 32)])), PLATE_MASK)
    time.sleep(0.3)
    assert len(probe.messages("instances")) == segmented_before, "a prompt must not trigger inference"


def test_click_topic_and_service_answer_like_point_prompts(probe: Probe) -> None:
    from geometry_msgs.msg import PointStamped

    from fastsam_ros.srv import Segment

    stamp = segmented(probe)
    click = PointStamped()
    click.header.stamp.sec, click.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    click.point.x, click.point.y = CUP_CLICK
    probe.point_pub.publish(click)
    assert np.array_equal(picked(probe.wait_for("selection", lambda m: m.prompt_id == "click"
                                                and stamp_of(m) == stamp)), CUP_MASK)
    probe.prompt_pub.publish(probe.prompt("click", clear=True))  # a click follows the cup until cleared
    response = probe.call(Segment, "/fake/segment", Segment.Request(prompt=probe.prompt("svc", points=[TABLE_CLICK])))
    assert response is not None and response.selection.prompt_id == "svc"
    assert np.array_equal(picked(response.selection), TABLE_MASK)


def test_persistent_prompt_is_answered_on_every_frame_until_cleared(probe: Probe) -> None:
    answer(probe, "keep", points=[CUP_CLICK], persistent=True)
    for _ in range(2):
        stamp = segmented(probe)
        kept = probe.wait_for("selection", lambda m, s=stamp: m.prompt_id == "keep" and stamp_of(m) == s)
        assert np.array_equal(picked(kept), CUP_MASK)
    answer_count = probe.count("selection", lambda m: m.prompt_id == "keep")
    probe.prompt_pub.publish(probe.prompt("keep", clear=True))
    time.sleep(0.3)
    segmented(probe)
    time.sleep(0.3)
    assert probe.count("selection", lambda m: m.prompt_id == "keep") == answer_count


def test_mask_topic_is_emptied_when_the_next_answer_selects_nothing(probe: Probe) -> None:
    stamp = segmented(probe)
    answer(probe, "mask-cup", stamp, points=[CUP_CLICK])
    cup = probe.wait_for("mask", lambda m: stamp_of(m) == stamp and any(m.data))
    assert cup is not None and np.array_equal(np.frombuffer(bytes(cup.data), np.uint8).reshape(SHAPE) > 0, CUP_MASK)
    count = probe.count("mask", lambda m: stamp_of(m) == stamp)
    assert answer(probe, "mask-floor", stamp, points=[FLOOR_CLICK]).status == "no_match"
    empty = probe.wait_for_nth("mask", count, lambda m: stamp_of(m) == stamp)
    assert empty is not None, "a no_match answer must replace the last mask"
    assert not any(empty.data) and (empty.height, empty.width) == SHAPE


@pytest.mark.parametrize(
    ("prompt_kwargs", "status", "needle"),
    [
        ({"points": [(math.nan, 10.0)]}, "invalid", "finite"),
        ({"points": [(-5.0, 10.0)]}, "invalid", "outside"),
        ({"boxes": [(100.0, 10.0, 50.0, 50.0)]}, "invalid", "inverted"),
        ({"points": [(10.0, 10.0)], "labels": [2]}, "invalid", "unknown point label"),
        ({}, "invalid", "no points, boxes or text"),
        ({"points": [(1.0, 1.0)] * 65}, "invalid", "65 points is more than the limit of 64"),
        ({"boxes": [(0.0, 0.0, 160.0, 120.0)] * 500}, "invalid", "500 boxes is more than the limit of 16"),
        ({"points": [CUP_CLICK, (45.0, 65.0)], "labels": [1, 0]}, "no_match", "no mask separates"),
        ({"boxes": [(0.0, 112.0, 8.0, 119.0)]}, "no_match", "no mask overlaps the box"),
        ({"points": [(10.0, 10.0)], "stamp_ns": 123}, "frame_not_available", "not among"),
    ],
)
def test_bad_prompts_get_their_status_and_the_next_click_is_answered(
    probe: Probe, prompt_kwargs: dict, status: str, needle: str
) -> None:
    segmented(probe)
    stamp = prompt_kwargs.pop("stamp_ns", 0)
    prompt_id = f"bad-{status}-{needle}"
    bad = answer(probe, prompt_id, stamp, **prompt_kwargs)
    assert bad.status == status and needle in bad.reason, (bad.status, bad.reason)
    assert np.array_equal(picked(answer(probe, prompt_id + "-good", points=[CUP_CLICK])), CUP_MASK)


def test_invalid_persistent_prompt_is_answered_once_and_never_stored(probe: Probe) -> None:
    bad = answer(probe, "nan-keep", points=[(math.nan, 5.0)], persistent=True)
    assert bad.status == "invalid" and "finite" in bad.reason
    stamp = segmented(probe)
    assert probe.wait_for("debug_image", lambda m: stamp_of(m) == stamp, timeout=5) is not None, "overlay broke"
    time.sleep(0.3)
    assert probe.count("selection", lambda m: m.prompt_id == "nan-keep") == 1


def _diagnostics(probe: Probe, since: int):
    report = probe.wait_for_nth("diagnostics", since + 1)
    assert report is not None
    return report.status[0], {kv.key: kv.value for kv in report.status[0].values}


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"data": b"\x00" * 100}, "expected step x height"),
        ({"height": 0, "width": 0, "step": 0, "data": b""}, "zero size"),
        ({"encoding": "yuv422"}, "unsupported encoding"),
        ({"height": 300, "width": 300, "step": 900, "data": b"\x00" * 270_000}, "max_image_pixels"),
    ],
)
def test_malformed_frames_answer_persistent_prompts_count_and_the_next_frame_is_served(
    probe: Probe, change: dict, needle: str
) -> None:
    answer(probe, "watch", points=[CUP_CLICK], persistent=True)
    stamp = next(_stamps)
    bad = probe.image_msg(kitchen(), stamp)
    for key, value in change.items():
        setattr(bad, key, value)
    before = len(probe.messages("diagnostics"))
    probe.image_pub.publish(bad)
    rejected = probe.wait_for("selection", lambda m: stamp_of(m) == stamp)
    assert rejected is not None and rejected.prompt_id == "watch", rejected
    assert rejected.status == "invalid" and needle in rejected.reason, rejected.reason
    status, values = _diagnostics(probe, before)
    assert needle in values["last_error"] and int(values["bad_images"]) >= 1
    probe.prompt_pub.publish(probe.prompt("watch", clear=True))
    assert not [m for m in probe.messages("selection") if m.prompt_id == ""], "never an answer without a prompt id"
    segmented(probe)


def test_engine_failure_is_an_internal_error_not_a_bad_image_and_the_node_goes_on(node_and_probe) -> None:
    node, probe = node_and_probe
    failing = kitchen()
    failing[0, 0] = FAIL_PIXEL
    before = len(probe.messages("diagnostics"))
    stamp = next(_stamps)
    probe.publish_image(failing, stamp)
    _, values = _diagnostics(probe, before)
    deadline = time.monotonic() + 10
    while "out of memory" not in values["last_error"] and time.monotonic() < deadline:
        _, values = _diagnostics(probe, len(probe.messages("diagnostics")) - 1)
    assert "RuntimeError: CUDA out of memory" in values["last_error"]
    assert int(values["internal_errors"]) == 1
    assert "Traceback" in node.log(), "the first failure of a kind is logged with its traceback"
    segmented(probe)


def test_diagnostics_name_the_node_fully(probe: Probe) -> None:
    status, _ = _diagnostics(probe, len(probe.messages("diagnostics")))
    assert status.name == "/fake/fastsam: segmentation"


def _set(probe: Probe, **values):
    from rcl_interfaces.msg import Parameter
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter as RclpyParameter

    request = SetParameters.Request(parameters=[
        Parameter(name=name, value=RclpyParameter(name, value=value).get_parameter_value())
        for name, value in values.items()])
    response = probe.call(SetParameters, "/fake/fastsam/set_parameters", request)
    assert response is not None
    return response.results


def test_live_parameters_apply_to_the_next_answer_and_reload_ones_are_refused(probe: Probe) -> None:
    stamp = segmented(probe)
    loose_box = [(80.0, 0.0, 140.0, 60.0)]  # the plate fills a third of it
    assert answer(probe, "loose-before", stamp, boxes=loose_box).status == "ok"
    (result,) = _set(probe, min_box_iou=0.9)
    assert result.successful, result.reason
    after = answer(probe, "loose-after", stamp, boxes=loose_box)
    assert after.status == "no_match" and "min_box_iou 0.9" in after.reason
    (result,) = _set(probe, model="other.pt")
    assert not result.successful and "model cannot change while a model is loaded" in result.reason
    (result,) = _set(probe, conf=5.0)
    assert not result.successful and "conf must be within 0..1" in result.reason
    assert _set(probe, min_box_iou=0.05)[0].successful
