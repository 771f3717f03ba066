"""``use_depth: true`` through the node process: real depth and camera_info messages, a fake engine's exact masks.

The scene: a painted object (the fake engine's instance) in front of a wall at 2.0 m. The depth image has the
object at 1.0 m on all but a 2-pixel border of its mask, so the mask spills onto the wall as real masks do; the
3D answer must come from the object's own pixels only.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from fastsam_ros.srv import Segment
from ros_harness import FAKE_NODE, NodeProcess, Probe, stamp_of

NS = "fakedepth"
SHAPE = (120, 160)
OBJECT = (90, 30, 130, 70)  # x1, y1, x2, y2 of the painted object
K = (100.0, 0.0, 79.5, 0.0, 100.0, 59.5, 0.0, 0.0, 1.0)
CAMERA_FRAME = "camera_color_optical_frame"
# The object's own depth pixels: columns 92..127, rows 32..67 at 1.0 m
EXPECTED_POSITION = ((109.5 - 79.5) / 100, (49.5 - 59.5) / 100, 1.0)
EXPECTED_SIZE = (35 / 100, 35 / 100, 0.0)
EXPECTED_PIXELS = 36 * 36
SECOND = 1_000_000_000


def colour_frame() -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    x1, y1, x2, y2 = OBJECT
    frame[y1:y2, x1:x2] = (0, 200, 0)
    return frame


def depth_metres() -> np.ndarray:
    metres = np.full(SHAPE, 2.0, dtype=np.float32)
    x1, y1, x2, y2 = OBJECT
    metres[y1 + 2 : y2 - 2, x1 + 2 : x2 - 2] = 1.0
    return metres


def depth_msg(stamp_ns: int, encoding: str = "16UC1", metres: np.ndarray | None = None) -> Image:
    metres = depth_metres() if metres is None else metres
    pixels = np.round(metres * 1000).astype("<u2") if encoding == "16UC1" else metres.astype("<f4")
    msg = Image(height=metres.shape[0], width=metres.shape[1], encoding=encoding, is_bigendian=0,
                step=metres.shape[1] * pixels.itemsize, data=pixels.tobytes())
    msg.header.frame_id = CAMERA_FRAME
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, SECOND)
    return msg


def camera_info(k: tuple[float, ...] = K) -> CameraInfo:
    msg = CameraInfo(width=SHAPE[1], height=SHAPE[0], k=list(k), distortion_model="plumb_bob")
    msg.header.frame_id = CAMERA_FRAME
    return msg


def diagnostic(probe: Probe, namespace: str, key: str) -> str | None:
    """The newest value of ``key`` in the node's /diagnostics entry."""
    for report in reversed(probe.messages("diagnostics")):
        for status in report.status:
            if status.name.startswith(f"/{namespace}/fastsam"):
                return next((v.value for v in status.values if v.key == key), None)
    return None


def wait_diagnostic(probe: Probe, namespace: str, key: str, predicate, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = diagnostic(probe, namespace, key)
        if value is not None and predicate(value):
            return True
        time.sleep(0.1)
    return False


class Camera:
    """The depth camera's two extra topics, published from the probe's node."""

    def __init__(self, probe: Probe, namespace: str = NS) -> None:
        self.probe = probe
        self.namespace = namespace  # of the node whose /diagnostics are read
        # the launch file's default remaps, as for the colour image
        self.depth = probe.node.create_publisher(Image, "/camera/depth/image_raw", qos_profile_sensor_data)
        self.info = probe.node.create_publisher(CameraInfo, "/camera/camera_info", qos_profile_sensor_data)

    def diagnostic(self, key: str) -> str | None:
        return diagnostic(self.probe, self.namespace, key)

    def wait_diagnostic(self, key: str, predicate, timeout: float = 20.0) -> bool:
        return wait_diagnostic(self.probe, self.namespace, key, predicate, timeout)

    def send_info(self, k: tuple[float, ...] = K) -> None:
        self.info.publish(camera_info(k))

    def send_info_until(self, key: str, predicate, k: tuple[float, ...] = K, timeout: float = 20.0) -> bool:
        """Publish camera_info until the node's diagnostic ``key`` satisfies ``predicate``: the topic is best effort
        (sensor QoS), so one message can be lost, and a camera driver repeats it with every frame anyway."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.send_info(k)
            if self.wait_diagnostic(key, predicate, timeout=0.5):
                return True
        return False

    def send_depth(self, msg: Image) -> None:
        """Publish a depth image and wait until the node has it (its diagnostics count it)."""
        before = int(self.diagnostic("depth_received") or 0)
        self.depth.publish(msg)
        assert self.wait_diagnostic("depth_received", lambda v: int(v) > before), "depth image never arrived"


@pytest.fixture(scope="module")
def camera(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("depth-node") / "node.log"
    node = NodeProcess(log, namespace=NS, program=FAKE_NODE, model="fake.pt", diagnostics_period=0.3,
                       warmup=False, use_depth=True, depth_wait=1.5)
    probe = Probe(namespace=NS)
    probe.record("points", PointCloud2, f"/{NS}/selection/points")
    probe.record("markers", MarkerArray, f"/{NS}/selection/markers")
    try:
        assert probe.wait_for_connections(node), f"node never came up:\n{node.log()}"
        rig = Camera(probe)
        assert wait_until_subscribed(rig), f"node did not subscribe to depth/camera_info:\n{node.log()}"
        assert rig.send_info_until("camera_frame", lambda v: v == CAMERA_FRAME), node.log()
        yield rig
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, f"node exited with {code}:\n{node.log()}"


def wait_until_subscribed(rig: Camera, timeout: float = 20.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if rig.depth.get_subscription_count() and rig.info.get_subscription_count():
            return True
        time.sleep(0.1)
    return False


def segmented(probe: Probe, stamp: int, timeout: float = 30.0) -> None:
    """Publish frame ``stamp`` until the node has segmented it: the camera topic is best effort, as drivers' are, so
    one frame may be lost (seen once on a loaded machine); the same stamp again is the same frame to the node."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe.publish_image(colour_frame(), stamp)
        if probe.wait_for("instances", lambda m: stamp_of(m) == stamp, timeout=2.0) is not None:
            return
    raise AssertionError(f"frame {stamp} not segmented")


def click(probe: Probe, prompt_id: str, stamp: int):
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, points=[(110, 50)]))
    selection = probe.wait_for("selection", lambda m: m.prompt_id == prompt_id and stamp_of(m) == stamp)
    assert selection is not None, f"no answer to {prompt_id}"
    assert selection.status == "ok", selection.reason
    return selection.objects[0]


def assert_located(obj) -> None:
    assert obj.has_position, obj.depth_reason
    assert obj.depth_reason == ""
    np.testing.assert_allclose((obj.position.x, obj.position.y, obj.position.z), EXPECTED_POSITION, atol=0.01)
    np.testing.assert_allclose((obj.size.x, obj.size.y, obj.size.z), EXPECTED_SIZE, atol=0.01)
    assert obj.depth_pixels == EXPECTED_PIXELS  # the 2-pixel spill onto the wall is not counted


@pytest.mark.parametrize(("encoding", "stamp"), [("16UC1", 10 * SECOND), ("32FC1", 10 * SECOND + SECOND // 10)])
def test_depth_before_its_frame_gives_the_object_position(camera: Camera, encoding: str, stamp: int) -> None:
    camera.send_depth(depth_msg(stamp, encoding))
    segmented(camera.probe, stamp)
    assert_located(click(camera.probe, f"before-{encoding}", stamp))


def test_depth_after_its_frame_is_waited_for_and_persistent_answers_carry_it(camera: Camera) -> None:
    probe, stamp = camera.probe, 10 * SECOND + SECOND // 5
    probe.prompt_pub.publish(probe.prompt("follow", 0, points=[(110, 50)], persistent=True))
    time.sleep(0.3)
    probe.publish_image(colour_frame(), stamp)  # the node waits (depth_wait 1.5 s) for its depth image
    time.sleep(0.5)
    camera.depth.publish(depth_msg(stamp + 5_000_000))  # 5 ms later: within depth_tolerance
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "follow" and stamp_of(m) == stamp)
    probe.prompt_pub.publish(probe.prompt("follow", clear=True))
    assert answer is not None and answer.status == "ok", answer
    assert_located(answer.objects[0])


def test_the_segment_service_answers_with_the_position(camera: Camera) -> None:
    stamp = 10 * SECOND + 3 * SECOND // 10
    camera.send_depth(depth_msg(stamp))
    segmented(camera.probe, stamp)
    request = Segment.Request(prompt=camera.probe.prompt("service", stamp, points=[(110, 50)]))
    response = camera.probe.call(Segment, f"/{NS}/segment", request)
    assert response is not None and response.selection.status == "ok", response
    assert_located(response.selection.objects[0])


def test_points_and_markers_show_the_object_in_the_camera_frame(camera: Camera) -> None:
    probe, stamp = camera.probe, 10 * SECOND + 4 * SECOND // 10
    camera.send_depth(depth_msg(stamp))
    segmented(probe, stamp)
    click(probe, "seen", stamp)
    cloud = probe.wait_for("points", lambda m: stamp_of(m) == stamp)
    markers = probe.wait_for("markers", lambda m: stamp_of(m.markers[0]) == stamp)
    assert cloud is not None and markers is not None
    assert cloud.header.frame_id == CAMERA_FRAME and cloud.width == EXPECTED_PIXELS
    points = np.frombuffer(bytes(cloud.data), dtype="<f4").reshape(-1, 3)
    assert np.all(points[:, 2] == np.float32(1.0))  # every point on the object, none on the wall
    clear, box, label = markers.markers
    assert clear.action == Marker.DELETEALL and box.type == Marker.CUBE and box.header.frame_id == CAMERA_FRAME
    np.testing.assert_allclose((box.scale.x, box.scale.y), EXPECTED_SIZE[:2], atol=0.01)
    assert label.text == "seen 1.00 m"


def test_a_frame_without_depth_is_still_answered_with_the_reason(camera: Camera) -> None:
    stamp = 10 * SECOND + SECOND // 2  # 100 ms after the last depth image: outside depth_tolerance
    segmented(camera.probe, stamp)
    obj = click(camera.probe, "nodepth", stamp)
    assert not obj.has_position and obj.area == 40 * 40  # the 2D answer is whole
    assert obj.depth_reason.startswith("no depth image within 0.020 s of the frame (nearest 0.100 s before it)")
    assert camera.wait_diagnostic("depth_problems", lambda v: int(v) >= 1)


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (lambda stamp: depth_msg(stamp, metres=np.ones((60, 80), np.float32)),
         "depth image rejected: depth image is 80x60, the colour image 160x120"),
        (lambda stamp: Image(encoding="rgb8", height=120, width=160, step=480, data=bytes(120 * 480)),
         "depth image rejected: unsupported depth encoding 'rgb8'"),
        (lambda stamp: depth_msg(stamp, metres=np.zeros(SHAPE, np.float32)),
         "no valid depth under the object's 1600 pixels"),
        (lambda stamp: depth_msg(stamp, metres=np.full(SHAPE, 50.0, np.float32)),
         "all 1600 depth pixels of the object are outside depth_range [0.1, 10] m"),
    ],
)
def test_bad_depth_gives_a_reason_and_the_node_keeps_serving(camera: Camera, bad, reason: str) -> None:
    stamp = 20 * SECOND + len(reason) * 1_000_000  # one stamp per case
    msg = bad(stamp)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, SECOND)
    camera.send_depth(msg)
    segmented(camera.probe, stamp)
    obj = click(camera.probe, "bad", stamp)
    assert not obj.has_position and obj.depth_reason.startswith(reason), obj.depth_reason
    assert obj.area == 40 * 40


def test_an_uncalibrated_camera_info_is_a_reason_until_a_good_one_comes(camera: Camera) -> None:
    stamp = 30 * SECOND
    assert camera.send_info_until("camera_info", lambda v: v.startswith("camera_info rejected"), k=(0.0,) * 9)
    assert camera.wait_diagnostic("last_error", lambda v: v.startswith("camera_info rejected: camera_info K has"))
    camera.send_depth(depth_msg(stamp))
    segmented(camera.probe, stamp)
    obj = click(camera.probe, "uncalibrated", stamp)
    assert obj.depth_reason.startswith("camera_info rejected: camera_info K has no usable focal length")
    assert camera.send_info_until("camera_info", lambda v: v == "ok")
    assert_located(click(camera.probe, "calibrated", stamp))  # the same cached frame, now with a good K


def test_a_failure_of_the_3d_code_keeps_the_2d_answer_and_is_reported() -> None:
    from types import SimpleNamespace

    from fastsam_ros.ros.camera import CameraModel
    from fastsam_ros.ros.depth_stage import DepthStage
    from fastsam_ros.types import SelectedObject, Selection, Status

    node = SimpleNamespace(create_lifecycle_publisher=lambda *args: None, resolve_topic_name=lambda name: f"/{name}")
    problems, errors = [], []
    camera = CameraModel(problems.append)
    camera.on_msg(camera_info())
    stage = DepthStage(node, camera, 0.02, (0.1, 10.0), 0.0, 4, problems.append,
                       lambda what, e: errors.append((what, e)))
    header = SimpleNamespace(stamp=SimpleNamespace(sec=1, nanosec=0))
    stage._on_depth(SimpleNamespace(header=header))  # a depth "image" without pixels: decoding raises
    mask = np.zeros(SHAPE, dtype=bool)
    mask[30:70, 90:130] = True
    selection = Selection("p", Status.OK, objects=(SelectedObject.from_mask(mask, 0.9, (0,)),))
    located = stage.locate(selection, SECOND, SHAPE)
    assert located.status is Status.OK and located.objects[0].mask is mask
    assert located.objects[0].location.reason.startswith("3D failed: AttributeError")
    assert [what for what, _ in errors] == ["3D of prompt 'p'"] and problems == []


def test_no_depth_at_all_answers_in_2d_and_says_what_is_missing(tmp_path: Path) -> None:
    node = NodeProcess(tmp_path / "node.log", namespace="nodepth", program=FAKE_NODE, model="fake.pt",
                       warmup=False, use_depth=True, diagnostics_period=0.3)
    probe = Probe(namespace="nodepth")
    try:
        assert probe.wait_for_connections(node), f"node never came up:\n{node.log()}"
        rig = Camera(probe)
        assert wait_until_subscribed(rig), node.log()
        stamp = 40 * SECOND
        segmented(probe, stamp)
        obj = click(probe, "blind", stamp)
        assert not obj.has_position and obj.area == 40 * 40
        assert obj.depth_reason == "no camera_info received on /camera/camera_info"
        rig.info.publish(camera_info())
        assert wait_diagnostic(probe, "nodepth", "camera_info", lambda v: v == "ok"), node.log()
        obj = click(probe, "still-blind", stamp)
        assert obj.depth_reason == "no depth image received yet on /camera/depth/image_raw"
    finally:
        probe.close()
        assert node.stop() == 0, node.log()
