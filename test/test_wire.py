"""``Instances`` as bytes (fastsam_ros/ros/wire.py): the bytes rclpy serializes for the same message, and what a
subscriber of the node receives.

The reference message is built here with the generated constructors from each mask encoded on its own
(``encode_mask(full_mask(i))``), independently of the batched encoding the wire module uses.
"""

from __future__ import annotations

import importlib
import struct
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_engine import segmentation_from_masks
from rclpy.serialization import deserialize_message, serialize_message
from std_msgs.msg import Header

from fastsam_ros.msg import Box, Instance, Instances, Mask
from fastsam_ros.ros import wire
from fastsam_ros.ros.wire import instances_cdr
from fastsam_ros.segmentation.masks import MaskGeometry, encode_mask
from fastsam_ros.types import Segmentation, Timings
from ros_harness import FAKE_NODE, running_node, stamp_of


def header(sec: int, nanosec: int, frame_id: str) -> Header:
    out = Header(frame_id=frame_id)
    out.stamp.sec, out.stamp.nanosec = sec, nanosec
    return out


def reference(segmentation: Segmentation, head: Header, with_masks: bool, ids: np.ndarray | None) -> Instances:
    height, width = segmentation.image_shape
    instances = []
    for i in range(len(segmentation)):
        if with_masks:
            encoded = encode_mask(segmentation.full_mask(i))
            mask = Mask(x=encoded.x, y=encoded.y, width=encoded.width, height=encoded.height,
                        counts=encoded.counts.tolist())
            area = encoded.area
        else:
            mask, area = Mask(), int(segmentation.areas[i])
        x1, y1, x2, y2 = (float(v) for v in segmentation.boxes[i])
        instances.append(Instance(id=0 if ids is None else int(ids[i]), box=Box(x1=x1, y1=y1, x2=x2, y2=y2),
                                  score=float(segmentation.scores[i]), area=area, mask=mask))
    return Instances(header=head, height=height, width=width, instances=instances,
                     inference_ms=float(segmentation.timings.inference_ms))


def assert_serialized_as_rclpy(segmentation: Segmentation, sec: int, nanosec: int, frame_id: str, with_masks: bool,
                               ids: np.ndarray | None = None) -> bytes:
    """Our bytes are rclpy's for the reference message, but for the padding after ``frame_id``, which rmw
    leaves uninitialized (we write zeros)."""
    ours = instances_cdr(segmentation, sec, nanosec, frame_id, with_masks, ids)
    expected = reference(segmentation, header(sec, nanosec, frame_id), with_masks, ids)
    theirs = bytearray(serialize_message(expected))
    text = len(frame_id.encode("utf-8")) + 1
    (length,) = struct.unpack_from("<I", theirs, 12)
    assert length == text
    padding = slice(16 + text, 16 + text + (-text % 4))
    assert ours[padding] == b"\x00" * (-text % 4)
    theirs[padding] = ours[padding]
    assert ours == bytes(theirs)
    return ours


def random_segmentation(count: int, image_shape: tuple[int, int], mask_shape: tuple[int, int],
                        seed: int = 3) -> Segmentation:
    rng = np.random.default_rng(seed)
    masks = rng.random((count, *mask_shape)) < rng.random((count, 1, 1))
    if count > 5:
        masks[4] = False  # an empty instance
        masks[5] = True  # one touching every border
    boxes = (rng.random((count, 4)) * 20).astype(np.float32)
    return Segmentation(masks=masks, boxes=boxes, scores=rng.random(count).astype(np.float32),
                        geometry=MaskGeometry(image_shape, mask_shape), timings=Timings(inference_ms=12.345))


@pytest.mark.parametrize("frame_id", ["", "a", "ab", "abc", "abcd", "camera_optical", "kamera_ö"])
@pytest.mark.parametrize("with_masks", [True, False])
def test_bytes_are_rclpys_for_every_frame_id_length(frame_id: str, with_masks: bool) -> None:
    segmentation = random_segmentation(12, (20, 30), (20, 30))
    assert_serialized_as_rclpy(segmentation, 1_700_000_000, 999_999_999, frame_id, with_masks,
                               ids=np.arange(12) + 7)


@pytest.mark.parametrize("image_shape, mask_shape", [((20, 30), (20, 30)), ((30, 45), (20, 30))])
def test_masks_areas_and_track_ids_are_the_messages(image_shape: tuple[int, int], mask_shape: tuple[int, int]) -> None:
    """Identity and letterboxed geometry; without ids every id is 0; a negative stamp survives."""
    segmentation = random_segmentation(12, image_shape, mask_shape, seed=5)
    assert_serialized_as_rclpy(segmentation, -3, 7, "cam", True)
    assert_serialized_as_rclpy(segmentation, -3, 7, "cam", True, ids=np.array([2**32 - 1] + [1] * 11))


def test_area_is_the_masks_pixel_count_with_masks_and_the_estimate_without() -> None:
    geometry = MaskGeometry((30, 45), (20, 30))  # letterboxed 2/3: the estimate differs from the true count
    masks = np.zeros((2, 20, 30), dtype=bool)
    masks[0, 3:9, 4:13] = True
    masks[1, 10:11, 20:29] = True
    segmentation = Segmentation(masks=masks, boxes=np.array([[6, 4, 20, 14], [30, 15, 44, 17]], np.float32),
                                scores=np.array([0.9, 0.8], np.float32), geometry=geometry)
    with_masks = deserialize_message(instances_cdr(segmentation, 0, 0, "", True), Instances)
    boxes_only = deserialize_message(instances_cdr(segmentation, 0, 0, "", False), Instances)
    assert [i.area for i in with_masks.instances] == [int(segmentation.full_mask(i).sum()) for i in range(2)]
    assert [i.area for i in boxes_only.instances] == segmentation.areas.tolist()
    assert [i.area for i in boxes_only.instances] != [i.area for i in with_masks.instances]
    assert [i.mask.width for i in boxes_only.instances] == [0, 0]


@pytest.mark.parametrize("with_masks", [True, False])
def test_a_frame_without_instances(with_masks: bool) -> None:
    empty = Segmentation(masks=np.zeros((0, 8, 8), dtype=bool), boxes=np.zeros((0, 4), np.float32),
                         scores=np.zeros(0, np.float32), geometry=MaskGeometry((8, 8), (8, 8)))
    assert_serialized_as_rclpy(empty, 5, 6, "camera", with_masks)


def test_a_frame_of_only_empty_masks() -> None:
    empty = Segmentation(masks=np.zeros((3, 6, 9), dtype=bool), boxes=np.ones((3, 4), np.float32),
                         scores=np.ones(3, np.float32), geometry=MaskGeometry((6, 9), (6, 9)))
    assert_serialized_as_rclpy(empty, 1, 2, "x", True)


def test_the_engines_lazy_masks_letterboxed(tiny_model: Path) -> None:
    """The real engine path: masks made from prototype logits, then upsampled to a frame of another shape."""
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine

    engine = FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160, backend="pytorch"))
    frame = np.random.default_rng(1).integers(0, 256, (150, 230, 3), dtype=np.uint8)
    segmentation = engine.segment(frame)
    assert len(segmentation) > 0 and segmentation.masks.is_lazy
    assert_serialized_as_rclpy(segmentation, 4, 5, "camera", True, ids=np.arange(len(segmentation)))


def test_a_hundred_instances_of_the_standin(standin_model: Path, sample_images: Path) -> None:
    """FastSAM's working point: the stand-in at conf 0.003 finds 100 instances on a 640x480 frame."""
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine

    engine = FastSAMEngine(EngineConfig(model=str(standin_model), conf=0.003, backend="pytorch"))
    frame = cv2.resize(cv2.imread(str(sample_images / "zidane.jpg")), (640, 480), interpolation=cv2.INTER_AREA)
    segmentation = engine.segment(frame)
    assert len(segmentation) == 100
    assert_serialized_as_rclpy(segmentation, 4, 5, "camera", True)


def test_the_node_publishes_the_bytes_a_subscriber_reads_as_the_frames_instances(tmp_path: Path) -> None:
    """Painted instances (test/fake_engine.py) through the node: the received message is the reference one."""
    from fake_engine import painted_instances

    frame = np.zeros((60, 80, 3), dtype=np.uint8)
    frame[10:50, 5:70] = (0, 0, 200)  # a table ...
    frame[20:30, 15:25] = (0, 90, 200)  # ... with a cup on it (same red: the table's union is an instance too)
    frame[2:8, 60:79] = (0, 200, 0)
    with running_node(tmp_path / "node.log", "wire", program=FAKE_NODE, model="fake.pt", warmup=False,
                      tracking=False) as (_, probe):
        stamp = 3_000_000_007
        msg = probe.image_msg(frame, stamp, frame_id="cam_ab")
        probe.image_pub.publish(msg)
        received = probe.wait_for("instances", lambda m: stamp_of(m) == stamp)
    assert received is not None
    expected = reference(segmentation_from_masks(painted_instances(frame)), msg.header, True, None)
    assert len(expected.instances) == 4
    assert received == expected


# ------------------------------------------------------------------------ the layout against the .msg files


def test_the_generated_types_are_the_layout_wire_writes() -> None:
    assert wire.check_layout()  # the generated types are installed here, so they were checked
    assert wire.LAYOUT["fastsam_ros/Instance"] == Instance.get_fields_and_field_types()


def _edited(name: str, change: str) -> dict[str, str]:
    fields = dict(wire.LAYOUT[name])
    if change == "added":
        fields["label"] = "string"
    elif change == "retyped":
        fields[next(iter(fields))] = "int64"
    elif change == "renamed":
        first = next(iter(fields))
        fields = {("new_" + key if key == first else key): value for key, value in fields.items()}
    else:  # reordered
        fields = dict(reversed(list(fields.items())))
    return fields


@pytest.mark.parametrize("change", ["added", "retyped", "renamed", "reordered"])
@pytest.mark.parametrize("name", ["fastsam_ros/Instances", "fastsam_ros/Instance", "fastsam_ros/Mask",
                                  "fastsam_ros/Box"])
def test_an_edited_msg_file_fails_loudly(name: str, change: str) -> None:
    edited = _edited(name, change)
    with pytest.raises(wire.WireLayoutError, match=f"{name} is now .*but fastsam_ros/ros/wire.py writes"):
        wire.check_layout(lambda type_name: edited if type_name == name else wire.generated_fields(type_name))


def test_importing_wire_checks_the_generated_types(monkeypatch: pytest.MonkeyPatch) -> None:
    """As the node does at start-up: a regenerated Instance with a new field stops the import."""
    edited = _edited("fastsam_ros/Instance", "added")
    monkeypatch.setattr(Instance, "get_fields_and_field_types", classmethod(lambda cls: dict(edited)))
    try:
        with pytest.raises(RuntimeError, match="fastsam_ros/Instance is now .*string label") as raised:
            importlib.reload(wire)
        assert raised.type.__name__ == "WireLayoutError"  # the reloaded module's class
    finally:
        monkeypatch.undo()
        importlib.reload(wire)


def test_without_generated_types_there_is_nothing_to_check() -> None:
    assert not wire.check_layout(lambda name: None)
