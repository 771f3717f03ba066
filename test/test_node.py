"""The node in its own process, driven over DDS with real messages (tiny random-weight model: no shared assets).

Checks the real network pipeline end to end: headers preserved, masks decodable, a click inside an
instance selected, text without CLIP weights. Exact picks and bad input: test_node_fake.py.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ros_harness import Probe, running_node, stamp_of

RNG = np.random.default_rng(3)
FRAME = RNG.integers(0, 256, (240, 320, 3), dtype=np.uint8)
WHOLE = [(0.0, 0.0, 320.0, 240.0)]


@pytest.fixture(scope="module")
def probe(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("node") / "node.log"
    with running_node(log, "t", model=tiny_model, imgsz=320, cache_frames=4, diagnostics_period=0.5) as (_, probe):
        yield probe


def publish_and_wait(probe: Probe, stamp: int, pixels: np.ndarray = FRAME):
    probe.publish_image(pixels, stamp)
    instances = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    assert instances is not None, f"no instances for frame {stamp}"
    return instances


def selection_for(probe: Probe, prompt_id: str, stamp: int | None = None, timeout: float = 20.0):
    return probe.wait_for(
        "selection", lambda m: m.prompt_id == prompt_id and (stamp is None or stamp_of(m) == stamp), timeout)


def test_instances_carry_the_source_header_and_decodable_masks(probe: Probe) -> None:
    from fastsam_ros.ros.conversions import mask_from_msg

    stamp = 1_000_000_001
    instances = publish_and_wait(probe, stamp)
    assert instances.header.frame_id == "camera"
    assert (instances.width, instances.height) == (320, 240)
    assert len(instances.instances) > 0, "the tiny model reports instances on any image"
    for instance in instances.instances:
        mask = mask_from_msg(instance.mask, (240, 320))
        assert mask.any()
        assert int(mask.sum()) == instance.area, "with masks, area is the mask's pixel count (Instance.msg)"
        ys, xs = np.nonzero(mask)
        assert instance.box.x1 - 2 <= xs.min() and xs.max() <= instance.box.x2 + 2


def click_inside_an_instance(probe: Probe, stamp: int, prompt_id: str) -> None:
    """A click on a pixel of the frame's first instance is answered ok with a mask that holds the click."""
    from fastsam_ros.ros.conversions import mask_from_msg

    instances = publish_and_wait(probe, stamp)
    mask = mask_from_msg(instances.instances[0].mask, (240, 320))
    ys, xs = np.nonzero(mask)
    x, y = int(xs[len(xs) // 2]), int(ys[len(ys) // 2])
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, points=[(x, y)]))
    answer = selection_for(probe, prompt_id, stamp)
    assert answer is not None and answer.status == "ok", answer
    assert mask_from_msg(answer.objects[0].mask, (240, 320))[y, x]
    assert answer.header.frame_id == "camera"


def test_a_click_inside_an_instance_selects_a_mask_holding_the_click(probe: Probe) -> None:
    click_inside_an_instance(probe, 2_000_000_000, "inside")


def test_text_prompt_without_clip_weights_is_an_error_and_boxes_keep_working(probe: Probe) -> None:
    probe.prompt_pub.publish(probe.prompt("text-offline", text="a red mug"))
    answer = selection_for(probe, "text-offline", timeout=60)
    assert answer is not None and answer.status == "error", answer
    # says what to do: offline, point at local weights; without the package, install it
    assert "clip_weights" in answer.reason or "pip install open_clip_torch" in answer.reason, answer.reason
    click_inside_an_instance(probe, 2_100_000_000, "click-after-text")


def test_diagnostics_name_the_backend_that_runs_the_frames(probe: Probe) -> None:
    """backend: auto exported the model for these frames on the first one; diagnostics say which runtime runs them."""
    from fastsam_ros.segmentation import backends

    publish_and_wait(probe, 9_000_000_001)
    expected = backends.choose("auto", False, backends.probe("cpu")).backend  # openvino on Intel, onnx elsewhere
    report = probe.wait_for("diagnostics", lambda m: any((kv.key, kv.value) == ("backend", expected)
                                                         for status in m.status for kv in status.values))
    assert report is not None, f"no diagnostics with backend {expected}"


def test_diagnostics_report_counters_and_problems(probe: Probe) -> None:
    stamp = 9_500_000_001
    publish_and_wait(probe, stamp)
    published = len({stamp_of(m) for m in probe.messages("instances")})
    since = probe.count("diagnostics")

    def values(report) -> dict[str, str]:
        return {kv.key: kv.value for kv in report.status[0].values}

    from diagnostic_msgs.msg import DiagnosticStatus

    # Problems are reported once (WARN), then the status is OK again: the earlier tests' text prompt was one.
    report = probe.wait_for_nth("diagnostics", since, lambda m: m.status[0].name == "/t/fastsam: segmentation"
                                and m.status[0].level == DiagnosticStatus.OK)
    assert report is not None
    seen = values(report)
    assert seen["state"] == "active" and report.status[0].message == "segmenting", seen
    assert int(seen["frames_processed"]) == published == int(seen["frames_received"]), (seen, published)
    assert (seen["bad_images"], seen["internal_errors"]) == ("0", "0")
    assert float(seen["last_inference_ms"]) > 0 and int(seen["cached_frames"]) == min(published, 4)
    stages = [float(seen[f"p50_{stage}_ms"]) for stage in ("decode", "segment", "track", "answers", "outputs")]
    assert all(ms > 0 for ms in stages) and stages[1] == max(stages), f"the network is the slow stage: {seen}"
