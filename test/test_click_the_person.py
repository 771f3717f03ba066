"""Issue 21's acceptance: a click on the person in bus.jpg selects the person, through every way of pointing:
rqt_image_view's topic for the camera view, its topic for the overlay, RViz's ``/clicked_point`` in the camera's
optical frame, and the web page. The stand-in checkpoint runs in the node; the person and a pixel deep inside it
come from the same checkpoint's class output here (COCO class 0), so "the person" is not the node's own answer.
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import Point, PointStamped
from sensor_msgs.msg import CameraInfo

from ros_harness import Probe, running_node, wait_until

NAMESPACE = "person"
FX = FY = 1000.0
OPTICAL = "camera_colour_optical_frame"
DEPTH_M = 2.0  # how far ahead the RViz click lies


@pytest.fixture(scope="module")
def bus(sample_images: Path) -> np.ndarray:
    return cv2.imread(str(sample_images / "bus.jpg"))


@pytest.fixture(scope="module")
def person(standin_model: Path, bus: np.ndarray) -> tuple[np.ndarray, tuple[int, int]]:
    """The largest person the stand-in sees in bus.jpg (its mask at image size) and its pixel farthest inside."""
    from ultralytics import YOLO

    from evaluation.evaluate import farthest_inside

    result = YOLO(str(standin_model))(bus, verbose=False, retina_masks=True)[0]
    people = [mask.astype(bool) for mask, cls in zip(result.masks.data.cpu().numpy(), result.boxes.cls.tolist(),
                                                      strict=True) if int(cls) == 0]
    assert people, "the stand-in finds no person in bus.jpg"
    mask = max(people, key=lambda m: int(m.sum()))
    x, y = farthest_inside(mask)
    return mask, (int(x), int(y))


@pytest.fixture(scope="module")
def node(standin_model: Path, tmp_path_factory: pytest.TempPathFactory, bus: np.ndarray):
    """The real node on the stand-in, fed bus.jpg at 5 Hz with the camera's CameraInfo."""
    log = tmp_path_factory.mktemp("person") / "node.log"
    with running_node(log, NAMESPACE, model=standin_model, backend="pytorch", warmup=False) as (process, probe):
        info_pub = probe.node.create_publisher(CameraInfo, "/camera/camera_info", 10)
        info = CameraInfo(width=bus.shape[1], height=bus.shape[0],
                          k=(FX, 0.0, bus.shape[1] / 2, 0.0, FY, bus.shape[0] / 2, 0.0, 0.0, 1.0))
        info.header.frame_id = OPTICAL
        streaming = True

        def camera() -> None:
            while streaming:
                info_pub.publish(info)
                probe.publish_image(bus, time.time_ns())
                time.sleep(0.2)

        thread = threading.Thread(target=camera, daemon=True)
        thread.start()
        assert probe.wait_for("instances", timeout=120) is not None, process.log()
        try:
            yield process, probe
        finally:
            streaming = False
            thread.join(timeout=2)


def no_click(probe: Probe) -> int:
    """End the earlier test's followed click (its answers would otherwise stand for this one's); the answers so far."""
    probe.prompt_pub.publish(probe.prompt("click", clear=True))
    time.sleep(0.6)  # answers on frames already in flight still come
    return len(probe.messages("selection"))


def selected_mask(probe: Probe, after: int, shape: tuple[int, int]) -> np.ndarray:
    from fastsam_ros.ros.conversions import mask_from_msg

    answer = wait_until(lambda: next((m for m in probe.messages("selection")[after:] if m.prompt_id == "click"), None),
                        30)
    assert answer is not None and answer.status == "ok", answer
    union = np.zeros(shape, dtype=bool)
    for obj in answer.objects:
        union |= mask_from_msg(obj.mask, shape)
    return union


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def point_on(probe: Probe, topic: str, msg_type):
    from fastsam_ros.ros.conversions import RELIABLE_QOS

    publisher = probe.node.create_publisher(msg_type, topic, RELIABLE_QOS)
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 30), f"the node does not listen on {topic}"
    return publisher


@pytest.mark.parametrize("topic", ["/camera/image_raw_mouse_left", f"/{NAMESPACE}/debug_image_mouse_left"])
def test_an_rqt_image_view_click_on_the_person_selects_the_person(node, person, bus, topic: str) -> None:
    _, probe = node
    mask, (x, y) = person
    publisher = point_on(probe, topic, Point)
    before = no_click(probe)
    publisher.publish(Point(x=float(x), y=float(y), z=0.0))
    assert iou(selected_mask(probe, before, bus.shape[:2]), mask) >= 0.8


def test_an_rviz_click_on_the_person_in_the_camera_frame_selects_the_person(node, person, bus) -> None:
    _, probe = node
    mask, (x, y) = person
    publisher = point_on(probe, "/clicked_point", PointStamped)
    click = PointStamped()
    click.header.frame_id = OPTICAL
    cx, cy = bus.shape[1] / 2, bus.shape[0] / 2
    click.point.x, click.point.y, click.point.z = (x - cx) / FX * DEPTH_M, (y - cy) / FY * DEPTH_M, DEPTH_M
    before = no_click(probe)
    publisher.publish(click)
    assert iou(selected_mask(probe, before, bus.shape[:2]), mask) >= 0.8


def test_a_tap_on_the_person_in_the_web_page_selects_the_person(node, person, bus, tmp_path: Path) -> None:
    from test_web import CHROMIUM, REPO, _status, client_point, free_port, web_command

    playwright = pytest.importorskip("playwright.sync_api", reason="pip install playwright (requirements/dev.txt)")
    if not CHROMIUM.exists():
        pytest.skip(f"no {CHROMIUM}: apt-get install chromium")
    _, probe = node
    mask, (x, y) = person
    port = free_port()
    with open(tmp_path / "web.log", "w") as log:
        web = subprocess.Popen(web_command(f"port:={port}", namespace=NAMESPACE), stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(REPO), "PYTHONUNBUFFERED": "1"})
    base = f"http://127.0.0.1:{port}/"
    try:
        assert wait_until(lambda: _status(base + "prompt", b'{"clear": true}') == 204, 60), \
            (tmp_path / "web.log").read_text()
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 1000}, bypass_csp=True)
            page.goto(base)
            before = no_click(probe)
            page.mouse.click(*client_point(page, (x, y)))
            assert iou(selected_mask(probe, before, bus.shape[:2]), mask) >= 0.8
            page.wait_for_function("window.fastsamLatency.length > 0", timeout=10_000)
            shown = page.evaluate("window.fastsamLatency.at(-1)")
            browser.close()
        network = wait_until(lambda: next((kv.value for m in reversed(probe.messages("diagnostics"))
                                           for kv in m.status[0].values if kv.key == "p50_segment_ms"), None), 10)
        # A click is answered on the cached newest frame: no network run lies between the click and its overlay.
        print(f"\nclick-to-overlay over loopback, stand-in on bus.jpg: {shown['shown_ms']:.0f} ms (answer "
              f"{shown['answer_ms']:.0f} ms, POST {shown['post_ms']:.1f} ms); not in it: the network, "
              f"{network} ms p50 per frame")
    finally:
        web.send_signal(signal.SIGINT)
        assert web.wait(timeout=20) == 0
