"""The node in its own process, driven over DDS with real messages (tiny random-weight model: no shared assets).

Checks the contracts: headers preserved, prompts answered from the cache without re-inference,
persistent prompts, the service, the click topic, and that every bad input gets an answer and the
node keeps serving.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pytest

from ros_harness import NodeProcess, Probe, stamp_of

RNG = np.random.default_rng(3)
FRAME = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
WHOLE = [(0.0, 0.0, 320.0, 240.0)]


@pytest.fixture(scope="module")
def probe(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    node = NodeProcess(log, namespace="t", model=tiny_model, imgsz=320, cache_frames=4, diagnostics_period=0.5)
    probe = Probe(namespace="t")
    try:
        assert probe.wait_for_connections(node), f"node never came up:\n{node.log()}"
        yield probe
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, f"node exited with {code}:\n{node.log()}"


def publish_and_wait(probe: Probe, stamp: int, pixels: np.ndarray = FRAME):
    probe.publish_image(pixels, stamp)
    instances = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    assert instances is not None, f"no instances for frame {stamp}"
    return instances


def selection_for(probe: Probe, prompt_id: str, stamp: int | None = None, timeout: float = 20.0):
    return probe.wait_for(
        "selection", lambda m: m.prompt_id == prompt_id and (stamp is None or stamp_of(m) == stamp), timeout)


def test_instances_carry_the_source_header_and_decodable_masks(probe: Probe) -> None:
    from fastsam_ros.ros_io import mask_from_msg

    stamp = 1_000_000_001
    instances = publish_and_wait(probe, stamp)
    assert instances.header.frame_id == "camera"
    assert (instances.width, instances.height) == (320, 240)
    assert len(instances.instances) > 0, "the tiny model reports instances on any image"
    for instance in instances.instances:
        mask = mask_from_msg(instance.mask, (240, 320))
        assert mask.any()
        assert abs(int(mask.sum()) - instance.area) <= max(0.1 * instance.area, 20)
        ys, xs = np.nonzero(mask)
        assert instance.box.x1 - 2 <= xs.min() and xs.max() <= instance.box.x2 + 2


def test_cached_frame_prompt_is_answered_without_a_second_inference(probe: Probe) -> None:
    stamp = 2_000_000_000
    publish_and_wait(probe, stamp)
    instances_before = len(probe.messages("instances"))
    probe.prompt_pub.publish(probe.prompt("cached", stamp, boxes=WHOLE))
    answer = selection_for(probe, "cached", stamp)
    assert answer is not None and answer.status in ("ok", "no_match"), answer
    assert answer.header.frame_id == "camera"
    time.sleep(0.5)
    assert len(probe.messages("instances")) == instances_before, "the prompt must not trigger inference"


def test_persistent_prompt_is_answered_on_every_new_frame_until_cleared(probe: Probe) -> None:
    probe.prompt_pub.publish(probe.prompt("keep", boxes=WHOLE, persistent=True))
    assert selection_for(probe, "keep") is not None  # answered at once on the newest frame
    for stamp in (3_000_000_000, 3_100_000_000):
        publish_and_wait(probe, stamp)
        assert selection_for(probe, "keep", stamp) is not None, f"persistent prompt not answered on {stamp}"
    probe.prompt_pub.publish(probe.prompt("keep", clear=True))
    time.sleep(0.5)
    publish_and_wait(probe, 3_200_000_000)
    assert selection_for(probe, "keep", 3_200_000_000, timeout=1.5) is None


def test_service_answers_from_the_newest_cached_frame(probe: Probe) -> None:
    from fastsam_ros.srv import Segment

    stamp = 4_000_000_000
    publish_and_wait(probe, stamp)
    request = Segment.Request(prompt=probe.prompt("svc", boxes=WHOLE))
    response = probe.call(Segment, "/t/segment", request)
    assert response is not None, "service did not answer"
    assert response.selection.prompt_id == "svc"
    assert stamp_of(response.selection) == stamp
    assert response.selection.status in ("ok", "no_match")


def test_click_topic_answers_like_a_point_prompt(probe: Probe) -> None:
    from geometry_msgs.msg import PointStamped

    stamp = 5_000_000_000
    publish_and_wait(probe, stamp)
    click = PointStamped()
    click.header.stamp.sec = 5
    click.point.x, click.point.y = 160.0, 120.0
    probe.point_pub.publish(click)
    answer = selection_for(probe, "point", stamp)
    assert answer is not None and answer.status in ("ok", "no_match")


@pytest.mark.parametrize(
    ("prompt_kwargs", "status", "needle"),
    [
        ({"points": [(math.nan, 10.0)]}, "invalid", "finite"),
        ({"points": [(-5.0, 10.0)]}, "invalid", "outside"),
        ({"points": [(400.0, 10.0)]}, "invalid", "outside"),
        ({"boxes": [(200.0, 10.0, 100.0, 50.0)]}, "invalid", "inverted"),
        ({"points": [(10.0, 10.0)], "labels": [2]}, "invalid", "unknown point label"),
        ({}, "invalid", "no points, boxes or text"),
        ({"points": [(10.0, 10.0)], "stamp_ns": 123}, "frame_not_available", "not among"),
    ],
)
def test_bad_prompts_get_a_status_and_the_next_good_prompt_is_answered(
    probe: Probe, prompt_kwargs: dict, status: str, needle: str
) -> None:
    stamp = prompt_kwargs.pop("stamp_ns", 0)
    prompt_id = f"bad-{status}-{needle}"
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, **prompt_kwargs))
    answer = selection_for(probe, prompt_id)
    assert answer is not None, "a bad prompt must still be answered"
    assert answer.status == status and needle in answer.reason, (answer.status, answer.reason)
    probe.prompt_pub.publish(probe.prompt(prompt_id + "-good", boxes=WHOLE))
    good = selection_for(probe, prompt_id + "-good")
    assert good is not None and good.status in ("ok", "no_match")


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"data": b"\x00" * 100}, "expected step x height"),
        ({"height": 0, "width": 0, "step": 0, "data": b""}, "zero size"),
        ({"encoding": "yuv422"}, "unsupported encoding"),
    ],
)
def test_malformed_images_are_reported_and_the_next_frame_is_served(probe: Probe, change: dict, needle: str) -> None:
    stamp = 6_000_000_000 + len(probe.messages("instances")) * 1000
    bad = probe.image_msg(FRAME, stamp)
    for key, value in change.items():
        setattr(bad, key, value)
    probe.image_pub.publish(bad)
    answer = probe.wait_for("selection", lambda m: stamp_of(m) == stamp and m.status == "invalid")
    assert answer is not None and needle in answer.reason, answer
    publish_and_wait(probe, stamp + 1)


def test_text_prompt_without_clip_weights_is_an_error_and_boxes_keep_working(probe: Probe) -> None:
    probe.prompt_pub.publish(probe.prompt("text-offline", text="a red mug"))
    answer = selection_for(probe, "text-offline", timeout=60)
    assert answer is not None and answer.status == "error", answer
    # says what to do: offline, point at local weights; without the package, install it
    assert "clip_weights" in answer.reason or "pip install open_clip_torch" in answer.reason, answer.reason
    probe.prompt_pub.publish(probe.prompt("box-after-text", boxes=WHOLE))
    assert selection_for(probe, "box-after-text").status in ("ok", "no_match")


def test_diagnostics_name_the_backend_that_runs_the_frames(probe: Probe) -> None:
    """backend: auto exported the model for these frames on the first one; diagnostics say which runtime runs them."""
    from fastsam_ros import backends

    publish_and_wait(probe, 9_000_000_001)
    expected = backends.choose("auto", False, backends.probe("cpu")).backend  # openvino on Intel, onnx elsewhere
    report = probe.wait_for("diagnostics", lambda m: any((kv.key, kv.value) == ("backend", expected)
                                                         for status in m.status for kv in status.values))
    assert report is not None, f"no diagnostics with backend {expected}"


def test_diagnostics_report_counters_and_problems(probe: Probe) -> None:
    report = probe.wait_for("diagnostics", lambda m: any(s.name.startswith("fastsam") for s in m.status))
    assert report is not None
    values = {kv.key: kv.value for kv in report.status[0].values}
    assert {"frames_received", "frames_processed", "bad_images", "last_inference_ms", "state"} <= set(values)
