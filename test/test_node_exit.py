"""How the node process ends: Ctrl-C during a frame, a second signal during a slow shutdown, and the ``shutdown``
lifecycle transition, and a native library crashing in its exit handlers after the node shut down. Every wait is
bounded well below ``ros2 launch``'s 5 s before it sends SIGKILL."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fake_engine import SLOW_PIXEL
from test_node_transitions import RED, scene

from ros_harness import FAKE_NODE, NodeProcess, Probe, transition, wait_until


def started(tmp_path: Path, namespace: str, **parameters) -> NodeProcess:
    return NodeProcess(tmp_path / "node.log", namespace=namespace, program=FAKE_NODE, warmup=False, **parameters)


def ended_within(node: NodeProcess, seconds: float) -> tuple[int | None, float]:
    """The exit status (None if still running) and how long it took."""
    begun = time.monotonic()
    wait_until(lambda: not node.alive(), seconds)
    return node.process.poll(), time.monotonic() - begun


def test_ctrl_c_during_a_frame_exits_cleanly_within_5_s(tmp_path: Path) -> None:
    node = started(tmp_path, "exit1", model="fake.pt")
    probe = Probe(namespace="exit1")
    try:
        assert probe.wait_for_connections(node), node.log()
        probe.publish_image(scene(RED, corner=SLOW_PIXEL), 5_000_000_000)  # segmented for 7 s
        time.sleep(0.5)
        node.process.send_signal(signal.SIGINT)
        code, took = ended_within(node, 6)
        assert code == 0 and took < 5, (code, took, node.log())
    finally:
        probe.close()
        node.stop()


@pytest.fixture()
def loading(tmp_path: Path) -> Iterator[NodeProcess]:
    """A node whose model takes 60 s to load (an export in progress) on the main thread, interrupted there by SIGINT:
    the first signal cannot stop it."""
    node = started(tmp_path, "slow", model="slow-load.pt")
    try:
        assert wait_until(lambda: "loading" in node.log(), 60), node.log()
        node.process.send_signal(signal.SIGINT)
        yield node
    finally:
        node.stop()


def test_a_second_signal_ends_a_slow_shutdown_at_once(loading: NodeProcess) -> None:
    code, _ = ended_within(loading, 1.0)
    assert code is None, "one signal waits for a clean shutdown"
    loading.process.send_signal(signal.SIGTERM)
    code, took = ended_within(loading, 2)
    assert code == 128 + signal.SIGTERM and took < 0.5, (code, took, loading.log())
    assert "SIGTERM again: exiting now" in loading.log()


def test_a_shutdown_that_cannot_finish_ends_before_launch_would_kill_it(loading: NodeProcess) -> None:
    code, took = ended_within(loading, 6)
    assert code == 1 and took < 5, (code, took, loading.log())
    assert "did not finish within 4.5 s" in loading.log()


def test_the_shutdown_transition_ends_the_process(tmp_path: Path) -> None:
    node = started(tmp_path, "exit4", model="fake.pt")
    probe = Probe(namespace="exit4")
    try:
        assert probe.wait_for_connections(node), node.log()
        assert transition(probe, "/exit4/fastsam", "deactivate")
        assert transition(probe, "/exit4/fastsam", "shutdown")
        code, took = ended_within(node, 5)
        assert code == 0, (code, took, node.log())
    finally:
        probe.close()
        node.stop()


EXIT_HANDLER_CRASH = """
import ctypes, sys
from fastsam_ros.ros.process import exit_now
libc = ctypes.CDLL(None)
crash = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)(lambda status, arg: libc.abort())
libc.on_exit(crash, None)  # a native library's exit handler that crashes, as Fast DDS's static teardown now and then
exit_now(int(sys.argv[1])) if sys.argv[2] == "guarded" else libc.exit(int(sys.argv[1]))
"""


def test_a_crash_in_a_native_exit_handler_ends_the_process_with_its_status() -> None:
    def run(code: int, how: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", EXIT_HANDLER_CRASH, str(code), how], capture_output=True,
                              text=True, timeout=60)

    assert run(0, "bare").returncode == -signal.SIGABRT, "the crash the guard is for"
    for code in (0, 3):
        guarded = run(code, "guarded")
        assert guarded.returncode == code, guarded.stderr
        assert "crashed in its exit handlers (SIGABRT)" in guarded.stderr
