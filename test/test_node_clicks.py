"""Clicks from real GUIs reach the node (issue 21): rqt_image_view's ``geometry_msgs/Point`` on
``<camera topic>_mouse_left`` and ``<debug_image>_mouse_left``, RViz's ``PointStamped`` on ``/clicked_point``,
``prompt/point``; a click follows its object (``click_follow``), and prompts stamped near a frame are answered on it
(``stamp_tolerance``). The node runs in its own process with the painted-scene engine."""

from __future__ import annotations

import time

import numpy as np
import pytest
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo

from ros_harness import FAKE_NODE, Probe, running_node, set_parameter, stamp_of, wait_until

NAMESPACE, NODE = "clk", "/clk/fastsam"
SHAPE = (60, 80)
LEFT, RIGHT = (slice(20, 40), slice(10, 30)), (slice(20, 40), slice(50, 70))
K = (100.0, 0.0, 40.0, 0.0, 100.0, 30.0, 0.0, 0.0, 1.0)  # 80x60, principal point at the centre
OPTICAL = "camera_colour_optical_frame"


def scene(offset: int = 0) -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[LEFT[0], LEFT[1].start + offset:LEFT[1].stop + offset] = (0, 0, 200)
    frame[RIGHT] = (0, 200, 0)
    return frame


@pytest.fixture(scope="module")
def node_and_probe(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("clicks") / "node.log"
    with running_node(log, NAMESPACE, program=FAKE_NODE, model="fake.pt", warmup=False) as node_and_probe:
        yield node_and_probe


@pytest.fixture()
def probe(node_and_probe) -> Probe:
    return node_and_probe[1]


_stamps = iter(range(100_000_000_000, 999_000_000_000, 1_000_000_000))


def segmented(probe: Probe, offset: int = 0) -> int:
    stamp = next(_stamps)
    probe.publish_image(scene(offset), stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None, f"frame {stamp} not segmented"
    return stamp


def publisher(probe: Probe, msg_type, topic: str):
    from fastsam_ros.ros.conversions import RELIABLE_QOS

    pub = probe.node.create_publisher(msg_type, topic, RELIABLE_QOS)
    assert wait_until(lambda: pub.get_subscription_count() > 0, 20), f"the node does not listen on {topic}"
    return pub


def click_answer(probe: Probe, stamp: int, after: int, predicate=lambda m: True):
    """The first ``click`` answer on frame ``stamp`` (None: any) among the answers from index ``after`` on."""
    def arrived() -> object:
        return next((m for m in probe.messages("selection")[after:] if m.prompt_id == "click" and predicate(m)
                     and (stamp is None or stamp_of(m) == stamp)), None)

    return wait_until(arrived, 10)


def centre_x(answer) -> float:
    return answer.objects[0].box.x1 + (answer.objects[0].box.x2 - answer.objects[0].box.x1) / 2


@pytest.mark.parametrize("topic", ["/camera/image_raw_mouse_left", f"/{NAMESPACE}/debug_image_mouse_left"])
def test_an_rqt_image_view_click_selects_and_follows_the_object(probe: Probe, topic: str) -> None:
    pub = publisher(probe, Point, topic)
    stamp = segmented(probe)
    before = len(probe.messages("selection"))
    pub.publish(Point(x=20.0, y=30.0, z=0.0))  # rqt: pixels of the viewed image, no header: the newest frame
    answer = click_answer(probe, stamp, before)
    assert answer is not None and answer.status == "ok" and centre_x(answer) == pytest.approx(20.0), answer
    moved = segmented(probe, offset=4)  # the object moves: the click follows it
    followed = click_answer(probe, moved, before)
    assert followed is not None and followed.status == "ok" and centre_x(followed) == pytest.approx(24.0)
    assert followed.objects[0].track_id == answer.objects[0].track_id
    before = len(probe.messages("selection"))
    pub.publish(Point(x=45.0, y=5.0, z=0.0))  # on nothing: no_match, and the following ends
    assert click_answer(probe, moved, before).status == "no_match"
    after = len(probe.messages("selection"))
    later = segmented(probe)
    time.sleep(0.3)
    assert not [m for m in probe.messages("selection")[after:] if m.prompt_id == "click" and stamp_of(m) == later]
    probe.node.destroy_publisher(pub)


def test_an_rviz_publish_point_in_the_camera_frame_is_projected_and_another_frame_is_refused(probe: Probe) -> None:
    info = publisher(probe, CameraInfo, "/camera/camera_info")
    clicked = publisher(probe, PointStamped, "/clicked_point")
    camera_info = CameraInfo(width=SHAPE[1], height=SHAPE[0], k=K)
    camera_info.header.frame_id = OPTICAL
    stamp = segmented(probe)
    for _ in range(3):  # the camera QoS is best effort: send it a few times
        info.publish(camera_info)
        time.sleep(0.1)
    point = PointStamped()
    point.header.frame_id = OPTICAL
    point.point.x, point.point.y, point.point.z = 0.3, 0.0, 1.5  # 1.5 m ahead: pixel (40 + 100 * 0.3 / 1.5, 30)
    before = len(probe.messages("selection"))
    clicked.publish(point)
    answer = click_answer(probe, stamp, before)
    assert answer is not None and answer.status == "ok" and centre_x(answer) == pytest.approx(60.0), answer
    point.header.frame_id = "map"
    before = len(probe.messages("selection"))
    clicked.publish(point)
    refused = click_answer(probe, None, before, lambda m: m.status != "ok")
    assert refused.status == "invalid" and "'map'" in refused.reason and OPTICAL in refused.reason, refused.reason
    for pub in (info, clicked):
        probe.node.destroy_publisher(pub)


def test_prompt_point_is_a_click_and_click_follow_false_makes_clicks_one_shot(probe: Probe) -> None:
    assert set_parameter(probe, NODE, "click_follow", False)
    stamp = segmented(probe)
    click = PointStamped()
    click.header.stamp.sec, click.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    click.point.x, click.point.y = 60.0, 30.0
    before = len(probe.messages("selection"))
    probe.point_pub.publish(click)
    answer = click_answer(probe, stamp, before)
    assert answer is not None and answer.status == "ok" and centre_x(answer) == pytest.approx(60.0)
    later = segmented(probe)
    time.sleep(0.3)
    assert not [m for m in probe.messages("selection")[before:] if m.prompt_id == "click" and stamp_of(m) == later]
    assert set_parameter(probe, NODE, "click_follow", True)


def test_a_prompt_stamped_a_few_ms_after_its_frame_is_answered_on_it(probe: Probe) -> None:
    stamp = segmented(probe)
    probe.prompt_pub.publish(probe.prompt("late", stamp + 4_000_000, points=[(20.0, 30.0)]))  # 4 ms after
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "late")
    assert answer.status == "ok" and stamp_of(answer) == stamp, answer.reason
    assert set_parameter(probe, NODE, "stamp_tolerance", 0.0)
    probe.prompt_pub.publish(probe.prompt("exact", stamp + 4_000_000, points=[(20.0, 30.0)]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "exact")
    assert answer.status == "frame_not_available", answer
    assert set_parameter(probe, NODE, "stamp_tolerance", 0.005)
