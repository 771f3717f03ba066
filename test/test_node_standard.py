"""The standard outputs through the node process, read with the real ``vision_msgs`` types: ``detections``,
``selection/detections``, ``selection/detections_3d`` (in ``target_frame`` through a fake tf2 buffer) and
``instances/labels``, each checked field by field against ``instances`` / ``selection`` of the same frame.
Also: without ``vision_msgs`` the node still answers, and says so once.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fake_tf import OPTICAL_TO_BASE
from sensor_msgs.msg import Image, PointCloud2
from test_node_depth import (
    CAMERA_FRAME,
    EXPECTED_POSITION,
    EXPECTED_SIZE,
    SECOND,
    Camera,
    colour_frame,
    depth_msg,
    wait_diagnostic,
    wait_until_subscribed,
)
from test_node_fake import CUP_CLICK, PLATE_MASK, kitchen
from vision_msgs.msg import Detection2DArray, Detection3DArray

from fastsam_ros.ros.conversions import BURST_QOS, mask_from_msg
from fastsam_ros.types import CLASS_AGNOSTIC
from ros_harness import FAKE_NODE, Probe, running_node, stamp_of

TARGET = "base_link"
CAMERA_IN_BASE = (0.05, 0.0, 0.3)  # the camera's optical centre, 5 cm ahead of and 30 cm above base_link
TF_FROM_S = 15  # the fake tf2 history starts here: frames before it have no transform


def in_base(point: tuple[float, float, float]) -> tuple[float, float, float]:
    """Optical (x right, y down, z forward) to base_link (x forward, y left, z up), plus the camera's offset."""
    x, y, z = point
    return z + CAMERA_IN_BASE[0], -x + CAMERA_IN_BASE[1], -y + CAMERA_IN_BASE[2]


def header_matches(a, b) -> bool:
    return (a.stamp.sec, a.stamp.nanosec, a.frame_id) == (b.stamp.sec, b.stamp.nanosec, b.frame_id)


def assert_box(detection, box, tolerance: float = 0.5) -> None:
    """A vision_msgs box (centre and size, pixels) is our (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = box
    bbox = detection.bbox
    assert bbox.center.position.x == pytest.approx((x1 + x2) / 2, abs=tolerance)
    assert bbox.center.position.y == pytest.approx((y1 + y2) / 2, abs=tolerance)
    assert bbox.size_x == pytest.approx(x2 - x1, abs=tolerance)
    assert bbox.size_y == pytest.approx(y2 - y1, abs=tolerance)
    assert bbox.center.theta == 0.0


def overlap_rule(masks: list[np.ndarray]) -> np.ndarray:
    """The documented label image: index + 1, the smaller mask on top, the later index among equal areas."""
    labels = np.zeros(masks[0].shape, dtype=np.uint16)
    for index in sorted(range(len(masks)), key=lambda k: (-int(masks[k].sum()), k)):
        labels[masks[index]] = index + 1
    return labels


def labels_of(msg) -> np.ndarray:
    assert msg.encoding == "16UC1" and msg.is_bigendian == 0 and msg.step == 2 * msg.width
    return np.frombuffer(bytes(msg.data), dtype="<u2").reshape(msg.height, msg.width)


def assert_frame_outputs(probe: Probe, stamp: int, classes: set[str] | None = None) -> list[np.ndarray]:
    """``detections`` and ``instances/labels`` of frame ``stamp`` against its ``instances``; its masks.
    ``classes``: the class ids the detections may carry (None: a class-agnostic model's constant)."""
    instances = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    detections = probe.wait_for("detections", lambda m: stamp_of(m) == stamp)
    labels = probe.wait_for("labels", lambda m: stamp_of(m) == stamp)
    assert instances is not None and detections is not None and labels is not None, "a frame output is missing"
    assert header_matches(detections.header, instances.header) and header_matches(labels.header, instances.header)
    assert len(detections.detections) == len(instances.instances) > 0
    found_classes = []
    for detection, instance in zip(detections.detections, instances.instances, strict=True):
        box = instance.box
        assert_box(detection, (box.x1, box.y1, box.x2, box.y2))
        assert header_matches(detection.header, instances.header)
        assert detection.id == (str(instance.id) if instance.id else "")
        (result,) = detection.results
        assert result.hypothesis.score == pytest.approx(instance.score, abs=1e-6)
        found_classes.append(result.hypothesis.class_id)
    assert set(found_classes) <= (classes or {CLASS_AGNOSTIC}), found_classes  # the fake engine: no classes
    shape = (instances.height, instances.width)
    masks = [mask_from_msg(instance.mask, shape) for instance in instances.instances]
    np.testing.assert_array_equal(labels_of(labels), overlap_rule(masks))
    probe.found_classes = found_classes
    return masks


# ------------------------------------------------------------------------------------------ 2D, vision_msgs


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("standard-node") / "node.log"
    with running_node(log, "standard", program=FAKE_NODE, model="fake.pt", warmup=False,
                      diagnostics_period=0.3) as (_, probe):
        probe.record("detections", Detection2DArray, "/standard/detections")
        probe.record("labels", Image, "/standard/instances/labels")
        probe.record("selection_detections", Detection2DArray, "/standard/selection/detections", BURST_QOS)
        time.sleep(1.0)  # the node sees the new subscribers (it builds these outputs only for them)
        yield probe


def test_detections_and_labels_match_the_instances_of_the_same_frame(probe: Probe) -> None:
    stamp = 10 * SECOND
    probe.publish_image(kitchen(), stamp)
    masks = assert_frame_outputs(probe, stamp)
    # the cup (nested in the table) stays visible on top of the whole table, the ring around it too
    labels = labels_of(probe.wait_for("labels", lambda m: stamp_of(m) == stamp))
    cup_x, cup_y = (int(v) for v in CUP_CLICK)
    cup_index = next(k for k, mask in enumerate(masks) if mask[cup_y, cup_x] and mask.sum() == 400)
    assert labels[cup_y, cup_x] == cup_index + 1


def test_tracked_instances_carry_their_track_ids(probe: Probe) -> None:
    stamp = 11 * SECOND
    probe.publish_image(kitchen(), stamp)
    instances = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    detections = probe.wait_for("detections", lambda m: stamp_of(m) == stamp)
    assert all(instance.id > 0 for instance in instances.instances)  # tracking is on by default
    assert [d.id for d in detections.detections] == [str(i.id) for i in instances.instances]


def test_each_answer_has_its_detections_classed_by_the_prompt_id(probe: Probe) -> None:
    stamp = 12 * SECOND
    probe.publish_image(kitchen(), stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None
    x1, y1, x2, y2 = 85, 0, 135, 35  # around the plate
    probe.prompt_pub.publish(probe.prompt("plate", stamp, boxes=[(x1, y1, x2, y2)]))
    probe.prompt_pub.publish(probe.prompt("cup", stamp, points=[CUP_CLICK], persistent=True))
    for prompt_id in ("plate", "cup"):
        answer = probe.wait_for("selection", lambda m, p=prompt_id: m.prompt_id == p and stamp_of(m) == stamp)
        assert answer is not None and answer.status == "ok", answer
        found = probe.wait_for("selection_detections", lambda m, p=prompt_id: stamp_of(m) == stamp and any(
            d.results[0].hypothesis.class_id == p for d in m.detections))
        assert found is not None, f"no selection/detections for {prompt_id}"
        assert header_matches(found.header, answer.header)
        assert len(found.detections) == len(answer.objects) == 1
        detection, obj = found.detections[0], answer.objects[0]
        assert_box(detection, (obj.box.x1, obj.box.y1, obj.box.x2, obj.box.y2))
        assert detection.results[0].hypothesis.score == pytest.approx(obj.score, abs=1e-6)
        assert detection.id == (str(obj.track_id) if obj.track_id else "")
    plate = probe.wait_for("selection", lambda m: m.prompt_id == "plate").objects[0].box
    ys, xs = np.nonzero(PLATE_MASK)  # the box prompt picked the plate itself
    assert (plate.x1, plate.y1, plate.x2, plate.y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
    # the followed cup's next answer carries its track id on both topics
    follow = 13 * SECOND
    probe.publish_image(kitchen(), follow)
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "cup" and stamp_of(m) == follow)
    found = probe.wait_for("selection_detections", lambda m: stamp_of(m) == follow and any(
        d.results[0].hypothesis.class_id == "cup" for d in m.detections))
    probe.prompt_pub.publish(probe.prompt("cup", clear=True))
    assert answer.objects[0].track_id > 0 and found.detections[0].id == str(answer.objects[0].track_id)


def test_an_answer_without_objects_is_an_empty_array_on_its_frame(probe: Probe) -> None:
    stamp = 14 * SECOND
    probe.publish_image(kitchen(), stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None
    probe.prompt_pub.publish(probe.prompt("floor", stamp, points=[(5.0, 115.0)]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "floor" and stamp_of(m) == stamp)
    assert answer is not None and answer.status == "no_match"
    empty = probe.wait_for("selection_detections", lambda m: stamp_of(m) == stamp)
    assert empty is not None and len(empty.detections) == 0 and header_matches(empty.header, answer.header)


# ------------------------------------------------------------------------------------------ 3D, target_frame


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("standard-3d") / "node.log"
    spec = f"{TARGET}:{CAMERA_FRAME}:{','.join(map(str, CAMERA_IN_BASE))}:{','.join(map(str, OPTICAL_TO_BASE))}"
    with running_node(log, "standard3d", program=FAKE_NODE, model="fake.pt", diagnostics_period=0.3, warmup=False,
                      use_depth=True, depth_wait=1.5, target_frame=TARGET,
                      env={"FAKE_TF": f"{spec}:{TF_FROM_S}"}) as (node, probe):
        probe.record("detections_3d", Detection3DArray, "/standard3d/selection/detections_3d", BURST_QOS)
        probe.record("points", PointCloud2, "/standard3d/selection/points")
        rig = Camera(probe, "standard3d")
        assert wait_until_subscribed(rig), node.log()
        assert rig.send_info_until("camera_frame", lambda v: v == CAMERA_FRAME), node.log()
        yield rig


def located_answer(rig: Camera, prompt_id: str, stamp: int):
    probe = rig.probe
    rig.depth.publish(depth_msg(stamp))
    time.sleep(0.2)
    probe.publish_image(colour_frame(), stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, points=[(110, 50)]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == prompt_id and stamp_of(m) == stamp)
    assert answer is not None and answer.status == "ok", answer
    found = probe.wait_for("detections_3d", lambda m: stamp_of(m) == stamp and any(
        d.results[0].hypothesis.class_id == prompt_id for d in m.detections))
    assert found is not None, f"no selection/detections_3d for {prompt_id}"
    return answer.objects[0], found


def assert_3d_matches(obj, found, frame_id: str) -> None:
    assert found.header.frame_id == frame_id and len(found.detections) == 1
    detection = found.detections[0]
    position = (obj.position.x, obj.position.y, obj.position.z)
    centre = detection.bbox.center.position
    np.testing.assert_allclose((centre.x, centre.y, centre.z), position, atol=1e-3)
    pose = detection.results[0].pose.pose.position
    np.testing.assert_allclose((pose.x, pose.y, pose.z), position, atol=1e-3)
    size = detection.bbox.size
    np.testing.assert_allclose((size.x, size.y, size.z), (obj.size.x, obj.size.y, obj.size.z), atol=1e-3)
    assert detection.results[0].hypothesis.score == pytest.approx(obj.score, abs=1e-6)
    assert detection.id == (str(obj.track_id) if obj.track_id else "")


def test_3d_answers_points_and_detections_are_in_the_target_frame(camera: Camera) -> None:
    stamp = 20 * SECOND
    obj, found = located_answer(camera, "base", stamp)
    assert obj.has_position and obj.depth_reason == ""
    np.testing.assert_allclose((obj.position.x, obj.position.y, obj.position.z), in_base(EXPECTED_POSITION),
                               atol=0.01)
    np.testing.assert_allclose((obj.size.x, obj.size.y, obj.size.z), (EXPECTED_SIZE[2], *EXPECTED_SIZE[:2]),
                               atol=0.01)
    assert_3d_matches(obj, found, TARGET)
    cloud = camera.probe.wait_for("points", lambda m: stamp_of(m) == stamp)
    assert cloud is not None and cloud.header.frame_id == TARGET
    points = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 3)
    np.testing.assert_allclose(points[:, 0], 1.0 + CAMERA_IN_BASE[0], atol=1e-5)  # the object's 1 m, forward


def test_without_the_transform_3d_stays_in_the_camera_frame_and_says_why(camera: Camera) -> None:
    stamp = 10 * SECOND  # before the fake tf2 history starts
    obj, found = located_answer(camera, "optical", stamp)
    assert obj.has_position
    np.testing.assert_allclose((obj.position.x, obj.position.y, obj.position.z), EXPECTED_POSITION, atol=0.01)
    assert obj.depth_reason.startswith(f"3D kept in the camera frame '{CAMERA_FRAME}', not target_frame '{TARGET}'")
    assert "extrapolation into the past" in obj.depth_reason
    assert_3d_matches(obj, found, CAMERA_FRAME)
    assert camera.wait_diagnostic("target_frame_state", lambda v: "extrapolation" in v)


# ------------------------------------------------------------------------------------------ no vision_msgs


def test_without_vision_msgs_the_node_answers_and_says_so_once(tmp_path) -> None:
    log = tmp_path / "node.log"
    with running_node(log, "novision", program=FAKE_NODE, model="fake.pt", warmup=False, diagnostics_period=0.3,
                      env={"FAKE_NO_VISION_MSGS": "1"}) as (node, probe):
        probe.record("labels", Image, "/novision/instances/labels")
        time.sleep(1.0)
        stamp = 10 * SECOND
        probe.publish_image(kitchen(), stamp)
        assert probe.wait_for("labels", lambda m: stamp_of(m) == stamp) is not None  # needs only sensor_msgs
        probe.prompt_pub.publish(probe.prompt("cup", stamp, points=[CUP_CLICK]))
        answer = probe.wait_for("selection", lambda m: m.prompt_id == "cup" and stamp_of(m) == stamp)
        assert answer is not None and answer.status == "ok"
        assert wait_diagnostic(probe, "novision", "standard_messages",
                               lambda v: v.startswith("vision_msgs is not installed"))
        topics = dict(probe.node.get_topic_names_and_types())
        assert "/novision/detections" not in topics and "/novision/instances/labels" in topics
        assert node.log().count("vision_msgs is not installed") == 1
