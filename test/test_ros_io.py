"""Messages <-> core types, without spinning a node: prompts, masks, selections, QoS, image decoding backend."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from geometry_msgs.msg import Point, PointStamped
from rclpy.qos import ReliabilityPolicy
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from fastsam_ros import ros_io
from fastsam_ros.images import ImageError
from fastsam_ros.masks import MaskGeometry, encode_mask
from fastsam_ros.msg import Box, Instance, Instances, Mask, Prompt
from fastsam_ros.types import Segmentation, SelectedObject, Selection, Status


def test_prompt_message_becomes_a_core_prompt() -> None:
    msg = Prompt(id="p", text="mug", points=[Point(x=1.5, y=2.5), Point(x=3.0, y=4.0)], labels=[1, 0],
                 boxes=[Box(x1=0.0, y1=1.0, x2=10.0, y2=11.0)])
    prompt = ros_io.prompt_from_msg(msg)
    assert prompt.points == ((1.5, 2.5), (3.0, 4.0)) and prompt.labels == (1, 0)
    assert prompt.boxes == ((0.0, 1.0, 10.0, 11.0),) and (prompt.id, prompt.text) == ("p", "mug")
    click = PointStamped()
    click.point.x, click.point.y = 7.0, 8.0
    assert ros_io.click_prompt(click).points == ((7.0, 8.0),)


def test_mask_message_round_trip_keeps_every_pixel() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:9, 7:30] = True
    mask[20, 3] = True
    decoded = ros_io.mask_from_msg(ros_io.mask_msg(encode_mask(mask)), (30, 40))
    assert np.array_equal(decoded, mask)


def test_instance_area_is_the_exact_pixel_count_of_its_mask() -> None:
    """With masks, ``area`` counts the published mask's pixels; without, it is the segmentation's estimate."""
    geometry = MaskGeometry((30, 45), (20, 30))  # letterboxed 2/3: the estimate differs from the true count
    masks = np.zeros((2, 20, 30), dtype=bool)
    masks[0, 3:9, 4:13] = True
    masks[1, 10:11, 20:29] = True
    segmentation = Segmentation(masks=masks, boxes=np.array([[6, 4, 20, 14], [30, 15, 44, 17]], np.float32),
                                scores=np.array([0.9, 0.8], np.float32), geometry=geometry)
    with_masks = ros_io.instances_msg(segmentation, Header(), with_masks=True)
    for i, instance in enumerate(with_masks.instances):
        full = ros_io.mask_from_msg(instance.mask, (30, 45))
        assert np.array_equal(full, segmentation.full_mask(i))
        assert instance.area == int(full.sum())
    boxes_only = ros_io.instances_msg(segmentation, Header(), with_masks=False)
    assert [i.area for i in boxes_only.instances] == segmentation.areas.tolist()
    assert [i.area for i in boxes_only.instances] != [i.area for i in with_masks.instances]


@pytest.mark.parametrize("image_shape, mask_shape", [((20, 30), (20, 30)), ((30, 45), (20, 30))])
def test_instances_message_encodes_every_mask_as_one_by_one(image_shape: tuple[int, int],
                                                           mask_shape: tuple[int, int]) -> None:
    """All masks of a frame are encoded in one pass; each must be the one its own full mask encodes to."""
    rng = np.random.default_rng(3)
    masks = rng.random((12, *mask_shape)) < rng.random((12, 1, 1))
    masks[4] = False  # an empty instance
    masks[5] = True  # one touching every border
    boxes = rng.random((12, 4)).astype(np.float32) * 20
    segmentation = Segmentation(masks=masks, boxes=boxes, scores=rng.random(12).astype(np.float32),
                                geometry=MaskGeometry(image_shape, mask_shape))
    out = ros_io.instances_msg(segmentation, Header(), with_masks=True, ids=np.arange(12) + 7)
    assert len(out.instances) == 12
    for i, instance in enumerate(out.instances):
        expected = encode_mask(segmentation.full_mask(i))
        # the same message the generated constructors make (every field set, same values and types)
        assert instance == Instance(
            id=i + 7, box=Box(x1=float(boxes[i, 0]), y1=float(boxes[i, 1]), x2=float(boxes[i, 2]),
                              y2=float(boxes[i, 3])),
            score=float(segmentation.scores[i]), area=expected.area,
            mask=Mask(x=expected.x, y=expected.y, width=expected.width, height=expected.height,
                      counts=expected.counts.tolist()))
    assert deserialize_message(serialize_message(out), Instances) == out  # and it goes over the wire as it is


def test_selection_message_carries_header_status_and_objects() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:7] = True
    selection = Selection("q", Status.OK, "", (SelectedObject.from_mask(mask, 0.75, (4,)),))
    header = Header(frame_id="camera")
    header.stamp.sec = 12
    msg = ros_io.selection_msg(selection, header)
    assert (msg.header.stamp.sec, msg.header.frame_id, msg.status) == (12, "camera", "ok")
    (obj,) = msg.objects
    assert (obj.box.x1, obj.box.y1, obj.box.x2, obj.box.y2, obj.area) == (3.0, 2.0, 7.0, 5.0, 12)
    assert list(obj.instances) == [4] and obj.score == pytest.approx(0.75)
    assert np.array_equal(ros_io.mask_from_msg(obj.mask, (10, 10)), mask)
    failed = ros_io.selection_msg(Selection.failed("q", Status.INVALID, "why"), header)
    assert (failed.status, failed.reason, len(failed.objects)) == ("invalid", "why", 0)


def test_image_qos_parses_reliability_and_rejects_others() -> None:
    assert ros_io.image_qos("best_effort", 1).reliability == ReliabilityPolicy.BEST_EFFORT
    assert ros_io.image_qos("reliable", 3).depth == 3
    with pytest.raises(ValueError, match="image_reliability"):
        ros_io.image_qos("sometimes", 1)


def test_decoder_prefers_cv_bridge_and_wraps_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            if msg.encoding == "broken":
                raise RuntimeError("bridge says no")
            return np.zeros((2, 3, 3), np.uint8)

    monkeypatch.setitem(sys.modules, "cv_bridge", types.SimpleNamespace(CvBridge=CvBridge))
    decoder = ros_io.ImageDecoder()
    assert decoder.backend == "cv_bridge"
    assert decoder.decode(types.SimpleNamespace(encoding="bgr8")).shape == (2, 3, 3)
    with pytest.raises(ImageError, match="bridge says no"):
        decoder.decode(types.SimpleNamespace(encoding="broken"))


def test_decoder_falls_back_to_our_converter_without_cv_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv_bridge", None)  # import fails
    decoder = ros_io.ImageDecoder()
    assert decoder.backend == "fastsam_ros.images"
    msg = types.SimpleNamespace(encoding="mono8", height=1, width=2, step=2, is_bigendian=0, data=b"\x00\xff")
    assert decoder.decode(msg)[0, 1].tolist() == [255, 255, 255]
