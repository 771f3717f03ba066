"""Messages <-> core types, without spinning a node: prompts, masks, selections, QoS, image decoding backend."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from geometry_msgs.msg import Point
from rclpy.qos import ReliabilityPolicy
from std_msgs.msg import Header

from fastsam_ros.msg import Box, Prompt
from fastsam_ros.ros import conversions
from fastsam_ros.ros.images import ImageError
from fastsam_ros.segmentation.masks import encode_mask
from fastsam_ros.types import SelectedObject, Selection, Status


def test_prompt_message_becomes_a_core_prompt() -> None:
    msg = Prompt(id="p", text="mug", points=[Point(x=1.5, y=2.5), Point(x=3.0, y=4.0)], labels=[1, 0],
                 boxes=[Box(x1=0.0, y1=1.0, x2=10.0, y2=11.0)])
    prompt = conversions.prompt_from_msg(msg)
    assert prompt.points == ((1.5, 2.5), (3.0, 4.0)) and prompt.labels == (1, 0)
    assert prompt.boxes == ((0.0, 1.0, 10.0, 11.0),) and (prompt.id, prompt.text) == ("p", "mug")


def test_mask_message_round_trip_keeps_every_pixel() -> None:
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:9, 7:30] = True
    mask[20, 3] = True
    decoded = conversions.mask_from_msg(conversions.mask_msg(encode_mask(mask)), (30, 40))
    assert np.array_equal(decoded, mask)


def test_selection_message_carries_header_status_and_objects() -> None:
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:5, 3:7] = True
    selection = Selection("q", Status.OK, "", (SelectedObject.from_mask(mask, 0.75, (4,)),))
    header = Header(frame_id="camera")
    header.stamp.sec = 12
    msg = conversions.selection_msg(selection, header)
    assert (msg.header.stamp.sec, msg.header.frame_id, msg.status) == (12, "camera", "ok")
    (obj,) = msg.objects
    assert (obj.box.x1, obj.box.y1, obj.box.x2, obj.box.y2, obj.area) == (3.0, 2.0, 7.0, 5.0, 12)
    assert list(obj.instances) == [4] and obj.score == pytest.approx(0.75)
    assert np.array_equal(conversions.mask_from_msg(obj.mask, (10, 10)), mask)
    failed = conversions.selection_msg(Selection.failed("q", Status.INVALID, "why"), header)
    assert (failed.status, failed.reason, len(failed.objects)) == ("invalid", "why", 0)


def test_image_qos_parses_reliability_and_rejects_others() -> None:
    assert conversions.image_qos("best_effort", 1).reliability == ReliabilityPolicy.BEST_EFFORT
    assert conversions.image_qos("reliable", 3).depth == 3
    with pytest.raises(ValueError, match="image_reliability"):
        conversions.image_qos("sometimes", 1)


def test_decoder_prefers_cv_bridge_and_wraps_its_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    class CvBridge:
        def imgmsg_to_cv2(self, msg, desired_encoding):
            if msg.encoding == "broken":
                raise RuntimeError("bridge says no")
            return np.zeros((2, 3, 3), np.uint8)

    monkeypatch.setitem(sys.modules, "cv_bridge", types.SimpleNamespace(CvBridge=CvBridge))
    decoder = conversions.ImageDecoder()
    assert decoder.backend == "cv_bridge"
    assert decoder.decode(types.SimpleNamespace(encoding="bgr8")).shape == (2, 3, 3)
    with pytest.raises(ImageError, match="bridge says no"):
        decoder.decode(types.SimpleNamespace(encoding="broken"))


def test_decoder_falls_back_to_our_converter_without_cv_bridge(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "cv_bridge", None)  # import fails
    decoder = conversions.ImageDecoder()
    assert decoder.backend == "fastsam_ros.ros.images"
    msg = types.SimpleNamespace(encoding="mono8", height=1, width=2, step=2, is_bigendian=0, data=b"\x00\xff")
    assert decoder.decode(msg)[0, 1].tolist() == [255, 255, 255]
