"""The node with a real pretrained stand-in for FastSAM-s on a real photo (skips without ../shared)."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from ros_harness import running_node, stamp_of

PERSON_PIXEL = (300, 500)  # on the person in the middle of bus.jpg (810x1080)


@pytest.fixture(scope="module")
def bus_probe(standin_model: Path, sample_images: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("standin") / "node.log"
    with running_node(log, "bus", model=standin_model) as (_, probe):
        yield probe, cv2.imread(str(sample_images / "bus.jpg"))


def test_click_on_the_person_returns_a_mask_containing_that_pixel_with_the_source_stamp(bus_probe) -> None:
    from fastsam_ros.ros.conversions import mask_from_msg
    from fastsam_ros.ros.images import image_to_bgr

    probe, bus = bus_probe
    stamp = 1_700_000_000_123_456_789
    probe.publish_image(bus, stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp, timeout=60) is not None
    x, y = PERSON_PIXEL
    probe.prompt_pub.publish(probe.prompt("person", stamp, points=[PERSON_PIXEL], labels=[1]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "person")
    assert answer is not None and answer.status == "ok", answer
    assert stamp_of(answer) == stamp and answer.header.frame_id == "camera"
    (obj,) = answer.objects
    mask = mask_from_msg(obj.mask, bus.shape[:2])
    assert mask[y, x], "the selected mask must contain the clicked pixel"
    assert obj.box.x1 <= x <= obj.box.x2 and obj.box.y1 <= y <= obj.box.y2
    mono = probe.wait_for("mask", lambda m: stamp_of(m) == stamp)
    assert mono is not None and mono.encoding == "mono8"
    assert image_to_bgr(mono)[y, x, 0] == 255


@pytest.mark.parametrize(("image", "must_find"), [("bus.jpg", {"bus", "person"}), ("zidane.jpg", {"person"})])
def test_labels_follow_the_overlap_rule_and_detections_name_the_checkpoint_classes(
        bus_probe, standin_model: Path, sample_images: Path, image: str, must_find: set[str]) -> None:
    """Native-size photos (masks upsampled from the network's): the label image is the documented overlap rule of
    the ``instances`` masks, and a checkpoint with classes (the stand-in's COCO) names them in ``detections``."""
    import time

    from sensor_msgs.msg import Image
    from test_node_standard import assert_frame_outputs
    from ultralytics import YOLO
    from vision_msgs.msg import Detection2DArray

    probe, _ = bus_probe
    if "labels" not in probe.received:
        probe.record("labels", Image, "/bus/instances/labels")
        probe.record("detections", Detection2DArray, "/bus/detections")
        time.sleep(1.0)  # the node builds them only for a subscriber it has seen
    stamp = 1_700_000_100_000_000_000 + len(image)
    probe.publish_image(cv2.imread(str(sample_images / image)), stamp)
    masks = assert_frame_outputs(probe, stamp, classes=set(YOLO(str(standin_model)).names.values()))
    assert len(masks) >= 3 and must_find <= set(probe.found_classes)
    overlapping = sum(int((a & b).any()) for i, a in enumerate(masks) for b in masks[i + 1:])
    assert overlapping > 0, "no overlapping masks: the overlap rule was not exercised"
