"""Lifecycle transitions driven over the standard lifecycle services, with compressed camera input.

A configure that fails (missing model) leaves the node alive and reporting why; after the parameter
is corrected it configures, activates, serves, deactivates (stops serving) and activates again.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from ros_harness import Probe, lifecycle_state, running_node, set_parameter, stamp_of, wait_until
from ros_harness import transition as lifecycle_transition

FRAME = np.random.default_rng(5).integers(0, 256, (240, 320, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("lifecycle") / "node.log"
    with running_node(log, "lc", compressed=True, connect=False, model="/nonexistent/FastSAM-s.pt", autostart=False,
                      imgsz=320, image_transport="compressed", diagnostics_period=0.3) as node_and_probe:
        yield node_and_probe


NODE = "/lc/fastsam"


def transition(probe: Probe, label: str) -> bool:
    return lifecycle_transition(probe, NODE, label)


def state(probe: Probe) -> str:
    return lifecycle_state(probe, NODE)


def publish_jpeg(probe: Probe, stamp: int, data: bytes | None = None) -> None:
    from sensor_msgs.msg import CompressedImage

    msg = CompressedImage(format="jpeg", data=data if data is not None else cv2.imencode(".jpg", FRAME)[1].tobytes())
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
    probe.image_pub.publish(msg)


def test_failed_configure_keeps_the_node_alive_and_explains(lifecycle) -> None:
    node, probe = lifecycle
    assert state(probe) == "unconfigured"
    assert transition(probe, "configure") is False
    assert node.alive() and state(probe) == "unconfigured"
    report = probe.wait_for("diagnostics", lambda m: "does not exist" in m.status[0].message)
    assert report is not None and "/nonexistent/FastSAM-s.pt" in report.status[0].message


def test_configure_again_with_a_corrected_model_then_serve(lifecycle, tiny_model: Path) -> None:
    node, probe = lifecycle
    assert set_parameter(probe, NODE, "model", str(tiny_model))
    assert transition(probe, "configure") is True
    assert state(probe) == "inactive"
    assert transition(probe, "activate") is True
    assert wait_until(lambda: probe.image_pub.get_subscription_count() > 0, 20)
    time.sleep(0.5)
    publish_jpeg(probe, 10_000_000_000)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == 10_000_000_000) is not None, node.log()


def huge_jpeg() -> bytes:
    """A valid 8x8 JPEG whose start-of-frame marker claims 65500x65500 pixels."""
    data = bytearray(cv2.imencode(".jpg", FRAME[:8, :8])[1].tobytes())
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (65500).to_bytes(2, "big") * 2
    return bytes(data)


@pytest.mark.parametrize(("stamp", "data", "needle"), [
    (11_000_000_000, b"\xff\xd8\xff\xe0 this is not a jpeg", "corrupt"),
    (11_500_000_000, huge_jpeg(), "65500x65500 = 4,290,250,000 pixels, more than max_image_pixels"),
])
def test_corrupt_or_huge_jpeg_is_rejected_and_the_next_frame_served(lifecycle, stamp: int, data: bytes,
                                                                     needle: str) -> None:
    _, probe = lifecycle
    probe.prompt_pub.publish(probe.prompt("watch", points=[(10.0, 10.0)], persistent=True))
    assert probe.wait_for("selection", lambda m: m.prompt_id == "watch") is not None
    publish_jpeg(probe, stamp, data=data)
    answer = probe.wait_for("selection", lambda m: stamp_of(m) == stamp)
    assert answer is not None and answer.prompt_id == "watch" and answer.status == "invalid", answer
    assert needle in answer.reason, answer.reason
    probe.prompt_pub.publish(probe.prompt("watch", clear=True))
    publish_jpeg(probe, stamp + 1)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp + 1) is not None


def test_deactivate_stops_serving_and_activate_resumes(lifecycle) -> None:
    _, probe = lifecycle
    assert transition(probe, "deactivate") is True
    assert state(probe) == "inactive"
    publish_jpeg(probe, 13_000_000_000)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == 13_000_000_000, timeout=2) is None
    assert transition(probe, "activate") is True
    assert wait_until(lambda: probe.image_pub.get_subscription_count() > 0, 20)
    time.sleep(0.5)
    publish_jpeg(probe, 14_000_000_000)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == 14_000_000_000) is not None


SHM = Path("/dev/shm")


def _mapped_by_this_process() -> set[str]:
    return {Path(line.split()[-1]).name for line in Path("/proc/self/maps").read_text().splitlines()
            if str(SHM) in line}


@pytest.mark.skipif(not SHM.is_dir(), reason="no /dev/shm: Fast DDS shared memory is a Linux matter")
def test_a_stopped_node_leaves_no_shared_memory_behind(tiny_model: Path, tmp_path: Path) -> None:
    """Ended with os._exit, every node run left its Fast DDS segments (17 MB) in /dev/shm until reboot."""
    from ros_harness import NodeProcess

    before = set(os.listdir(SHM))
    node = NodeProcess(tmp_path / "node.log", namespace="shm", model=str(tiny_model), imgsz=320, warmup=False,
                       backend="pytorch")
    assert wait_until(lambda: "active: segmenting" in node.log(), 60), node.log()
    assert node.stop() == 0, node.log()

    def left_behind() -> set[str]:
        # Segments and port files only: a port's named mutex (sem.*) is made by whichever process first writes to the
        # port, here sometimes this test process's client of an earlier test.
        return {name for name in set(os.listdir(SHM)) - before - _mapped_by_this_process()
                if name.startswith("fastrtps_")}

    # A port is reference-counted across processes and removed by its last user: when this process's participant
    # drops the node's port, it unmaps the port a moment before removing it. A leaked segment never goes.
    assert wait_until(lambda: not left_behind(), 10), f"the node's shared memory outlived it: {sorted(left_behind())}"
