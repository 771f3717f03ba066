"""Several cameras in one node (``cameras``): each camera's answers on its own topics, with its own stamps and its own
objects; per-camera tracks, prompts and /diagnostics; a bad frame or an engine failure on one camera leaves the other
served. The node runs in its own process with the painted-mask fake engine; each camera's publisher and subscriber is
its own client.
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytest
from fake_engine import FAIL_PIXEL
from test_node_fake import CUP_CLICK, CUP_MASK, kitchen

from fastsam_ros.ros.conversions import mask_from_msg
from ros_harness import FAKE_NODE, NodeProcess, Probe, stamp_of, wait_until

SECOND = 1_000_000_000
SHAPE = (120, 160)


def yard() -> np.ndarray:
    """The rear camera's scene: one box where the front camera sees the cup, and a second one elsewhere."""
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[45:75, 25:60] = (200, 0, 10)  # distinct red values: not one family (fake_engine)
    frame[90:110, 100:150] = (0, 100, 60)
    return frame


def field() -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[10:20, 10:20] = (50, 50, 50)
    return frame


class Cameras:
    """One node serving ``names``, and one client per camera on that camera's topics."""

    def __init__(self, log, namespace: str, names: list[str]) -> None:
        self.node = NodeProcess(log, namespace=namespace, program=FAKE_NODE, model="fake.pt", warmup=False,
                                diagnostics_period=0.3, cameras=names)
        self.probes = {name: Probe(namespace=f"{namespace}/{name}", image_topic=f"/{name}/image_raw")
                       for name in names}
        self.namespace = namespace

    def connect(self) -> None:
        for probe in self.probes.values():
            assert probe.wait_for_connections(self.node), f"node never came up:\n{self.node.log()}"

    def close(self) -> None:
        for probe in self.probes.values():
            probe.close()
        code = self.node.stop()
        assert code == 0, f"node exited with {code}:\n{self.node.log()}"

    def status(self, name: str) -> dict[str, str] | None:
        """The newest /diagnostics values of camera ``name``'s status."""
        wanted = f"/{self.namespace}/fastsam: segmentation {name}"
        for report in reversed(next(iter(self.probes.values())).messages("diagnostics")):
            for status in report.status:
                if status.name == wanted:
                    return {value.key: value.value for value in status.values}
        return None


@pytest.fixture(scope="module")
def two(tmp_path_factory: pytest.TempPathFactory):
    cameras = Cameras(tmp_path_factory.mktemp("two-cameras") / "node.log", "cams", ["front", "rear"])
    try:
        cameras.connect()
        yield cameras
    finally:
        cameras.close()


def segmented(probe: Probe, frame: np.ndarray, stamp: int):
    probe.publish_image(frame, stamp)
    instances = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    assert instances is not None, f"frame {stamp} not segmented"
    return instances


def test_each_camera_answers_on_its_own_topics_with_its_own_frames_and_objects(two: Cameras) -> None:
    front, rear = two.probes["front"], two.probes["rear"]
    front_stamp, rear_stamp = 10 * SECOND, 10 * SECOND + 7_000_000
    front.publish_image(kitchen(), front_stamp)
    rear.publish_image(yard(), rear_stamp)
    front_instances = front.wait_for("instances", lambda m: stamp_of(m) == front_stamp)
    rear_instances = rear.wait_for("instances", lambda m: stamp_of(m) == rear_stamp)
    assert front_instances is not None and rear_instances is not None
    assert len(front_instances.instances) == 4 and len(rear_instances.instances) == 2  # kitchen: nested table
    assert not front.count("instances", lambda m: stamp_of(m) == rear_stamp)  # never another camera's frame
    assert not rear.count("instances", lambda m: stamp_of(m) == front_stamp)
    # the same click on each camera picks that camera's object
    for probe, stamp, area in ((front, front_stamp, int(CUP_MASK.sum())), (rear, rear_stamp, 30 * 35)):
        probe.prompt_pub.publish(probe.prompt("click", stamp, points=[CUP_CLICK]))
        answer = probe.wait_for("selection", lambda m, s=stamp: m.prompt_id == "click" and stamp_of(m) == s)
        assert answer is not None and answer.status == "ok", answer
        assert answer.objects[0].area == area
    mask = mask_from_msg(front.wait_for("selection", lambda m: stamp_of(m) == front_stamp).objects[0].mask, SHAPE)
    np.testing.assert_array_equal(mask, CUP_MASK)


def test_tracks_and_persistent_prompts_are_per_camera(two: Cameras) -> None:
    front, rear = two.probes["front"], two.probes["rear"]
    front.prompt_pub.publish(front.prompt("follow", 0, points=[CUP_CLICK], persistent=True))
    time.sleep(0.3)
    stamps = [20 * SECOND + k * SECOND // 10 for k in range(3)]
    for stamp in stamps:
        segmented(front, kitchen(), stamp)
        segmented(rear, yard(), stamp + 1)
    answers = [front.wait_for("selection", lambda m, s=s: m.prompt_id == "follow" and stamp_of(m) == s)
               for s in stamps[1:]]
    front.prompt_pub.publish(front.prompt("follow", clear=True))
    assert all(a is not None and a.status == "ok" and a.objects[0].area == CUP_MASK.sum() for a in answers)
    assert not rear.count("selection", lambda m: m.prompt_id == "follow"), "a prompt of the front camera on the rear"
    rear_ids = sorted(i.id for i in rear.wait_for("instances", lambda m: stamp_of(m) == stamps[-1] + 1).instances)
    assert rear_ids == [1, 2], "the rear camera's track ids are its own, from 1"


def test_a_bad_frame_or_an_engine_failure_on_one_camera_leaves_the_other_served(two: Cameras) -> None:
    front, rear = two.probes["front"], two.probes["rear"]

    def rear_latency_ms(first: int, frames: int, spoil=None) -> list[float]:
        latencies = []
        for k in range(frames):
            stamp = first + k * SECOND // 10
            if spoil is not None:
                spoil(stamp)
            sent = time.monotonic()
            segmented(rear, yard(), stamp)
            latencies.append((time.monotonic() - sent) * 1000)
        return latencies

    def malformed(stamp: int) -> None:
        bad = front.image_msg(kitchen(), stamp)
        bad.data = b"\x00" * 100
        front.image_pub.publish(bad)

    def front_errors() -> int:
        return int((two.status("front") or {}).get("internal_errors", 0))

    failed_before = front_errors()
    failures = []

    def failing(stamp: int) -> None:
        # the previous failing frame is counted first: the front camera's newest frame replaces an unprocessed one
        assert wait_until(lambda: front_errors() >= failed_before + len(failures), 10), two.status("front")
        frame = kitchen()
        frame[0, 0] = FAIL_PIXEL
        front.publish_image(frame, stamp)
        failures.append(stamp)

    baseline = rear_latency_ms(30 * SECOND, 10)
    with_bad = rear_latency_ms(40 * SECOND, 10, malformed)
    with_failures = rear_latency_ms(50 * SECOND, 10, failing)
    for spoiled in (with_bad, with_failures):
        assert statistics.median(spoiled) < statistics.median(baseline) + 30.0, (baseline, spoiled)
    assert wait_until(lambda: int((two.status("front") or {}).get("bad_images", 0)) >= 10, 10)
    assert wait_until(lambda: front_errors() >= failed_before + 10, 10), two.status("front")
    rear_status = two.status("rear")
    assert rear_status["bad_images"] == "0" and rear_status["internal_errors"] == "0", rear_status
    segmented(front, kitchen(), 60 * SECOND)  # and the front camera goes on


def test_one_diagnostics_status_per_camera_and_one_service_each(two: Cameras) -> None:
    from fastsam_ros.srv import Segment

    assert wait_until(lambda: two.status("front") and two.status("rear"), 10)
    assert two.status("front")["image_topic"] == "/front/image_raw"
    assert two.status("rear")["image_topic"] == "/rear/image_raw"
    rear = two.probes["rear"]
    stamp = 70 * SECOND
    segmented(rear, yard(), stamp)
    response = rear.call(Segment, "/cams/rear/segment",
                         Segment.Request(prompt=rear.prompt("service", stamp, points=[CUP_CLICK])))
    assert response is not None and response.selection.status == "ok"
    assert response.selection.objects[0].area == 30 * 35
    front = two.probes["front"]
    response = front.call(Segment, "/cams/front/segment",
                          Segment.Request(prompt=front.prompt("service", stamp, points=[CUP_CLICK])))
    assert response.selection.status == "frame_not_available", "the rear camera's frame is not the front's"


def test_three_cameras_each_get_their_own_frames(tmp_path) -> None:
    cameras = Cameras(tmp_path / "node.log", "three", ["left", "middle", "right"])
    scenes = {"left": kitchen(), "middle": yard(), "right": field()}
    counts = {"left": 4, "middle": 2, "right": 1}
    try:
        cameras.connect()
        for round_index in range(3):
            stamp = (80 + round_index) * SECOND
            for name, probe in cameras.probes.items():
                probe.publish_image(scenes[name], stamp + len(name))
            for name, probe in cameras.probes.items():
                instances = probe.wait_for("instances", lambda m, s=stamp + len(name): stamp_of(m) == s)
                assert instances is not None, f"{name} not served in round {round_index}"
                assert len(instances.instances) == counts[name]
    finally:
        cameras.close()


def test_after_deactivate_and_activate_no_camera_answers_on_a_frame_from_before(two: Cameras) -> None:
    """Mid-stream lifecycle with two cameras: a zero-stamp prompt finds no old frame on either, and each camera's
    track ids start again on its own."""
    from ros_harness import transition

    front, rear = two.probes["front"], two.probes["rear"]
    segmented(front, kitchen(), 90 * SECOND)
    segmented(rear, yard(), 90 * SECOND)
    assert transition(front, "/cams/fastsam", "deactivate") and transition(front, "/cams/fastsam", "activate")
    time.sleep(0.5)
    for probe in (front, rear):
        probe.prompt_pub.publish(probe.prompt("stale", 0, points=[CUP_CLICK]))
        answer = probe.wait_for("selection", lambda m: m.prompt_id == "stale")
        assert answer is not None and answer.status == "frame_not_available", answer
    ids = sorted(i.id for i in segmented(rear, yard(), 91 * SECOND).instances)
    assert ids == [1, 2], "the rear camera's tracks started again"
    assert segmented(front, kitchen(), 91 * SECOND).instances


def test_ctrl_c_during_a_slow_frame_with_a_second_camera_waiting_exits_cleanly_within_5_s(tmp_path) -> None:
    """One camera's frame holds the shared network for 7 s, the other's waits behind it: Ctrl-C still ends the node
    cleanly within ros2 launch's 5 s."""
    import signal

    from fake_engine import SLOW_PIXEL

    cameras = Cameras(tmp_path / "node.log", "slowcams", ["front", "rear"])
    try:
        cameras.connect()
        slow = kitchen()
        slow[0, 0] = SLOW_PIXEL
        cameras.probes["front"].publish_image(slow, 100 * SECOND)
        time.sleep(0.3)
        cameras.probes["rear"].publish_image(yard(), 100 * SECOND)
        time.sleep(0.5)
        started = time.monotonic()
        cameras.node.process.send_signal(signal.SIGINT)
        assert wait_until(lambda: not cameras.node.alive(), 6)
        assert cameras.node.process.poll() == 0 and time.monotonic() - started < 5, cameras.node.log()
    finally:
        for probe in cameras.probes.values():
            probe.close()
        cameras.node.stop()
