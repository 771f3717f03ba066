"""The node with a fake engine whose masks are painted into the frame: exact picks over real messages."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ros_harness import NodeProcess, Probe, stamp_of

HERE = Path(__file__).resolve().parent
FAKE_NODE = [sys.executable, str(HERE / "fake_engine_node.py")]
SHAPE = (120, 160)
TABLE, CUP, PLATE = (0, 0, 200), (0, 80, 200), (0, 200, 0)  # BGR; the cup shares the table's red: nested


def kitchen() -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[40:110, 10:150] = TABLE
    frame[50:70, 30:50] = CUP
    frame[5:30, 90:130] = PLATE  # beside the table
    return frame


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("fake-node") / "node.log"
    node = NodeProcess(log, namespace="fake", program=FAKE_NODE, model="fake.pt", diagnostics_period=0.5,
                       warmup=False)
    probe = Probe(namespace="fake")
    try:
        assert probe.wait_for_connections(node), f"node never came up:\n{node.log()}"
        yield probe
    finally:
        probe.close()
        code = node.stop()
        assert code == 0, f"node exited with {code}:\n{node.log()}"


def segmented(probe: Probe, stamp: int, frame: np.ndarray) -> None:
    probe.publish_image(frame, stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None, f"frame {stamp} not segmented"


def answer(probe: Probe, prompt_id: str, stamp: int, **prompt):
    probe.prompt_pub.publish(probe.prompt(prompt_id, stamp, **prompt))
    selection = probe.wait_for("selection", lambda m: m.prompt_id == prompt_id and stamp_of(m) == stamp)
    assert selection is not None, f"no answer to {prompt_id}"
    return selection


def test_click_on_the_cup_selects_exactly_the_cup_and_on_the_table_the_table(probe: Probe) -> None:
    from fastsam_ros.ros_io import mask_from_msg

    stamp = 2_000_000_001
    segmented(probe, stamp, kitchen())
    cup = answer(probe, "cup", stamp, points=[(40, 60)])
    assert cup.status == "ok", cup.reason
    assert np.array_equal(mask_from_msg(cup.objects[0].mask, SHAPE), rect(30, 50, 50, 70))
    table = answer(probe, "table", stamp, points=[(100, 100)])
    assert table.status == "ok", table.reason
    assert np.array_equal(mask_from_msg(table.objects[0].mask, SHAPE), rect(10, 40, 150, 110) & ~rect(30, 50, 50, 70))
