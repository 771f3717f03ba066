"""The node's threads and lifecycle plumbing, in-process with a fake engine: what a message test cannot reach."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from fake_engine import FakeEngine

import fastsam_ros.ros.node as node_module


@pytest.fixture()
def ros():
    import rclpy

    context = rclpy.Context()
    rclpy.init(context=context)
    yield context
    rclpy.try_shutdown(context=context)


def make_node(ros, monkeypatch: pytest.MonkeyPatch, **parameters):
    from rclpy.parameter import Parameter

    monkeypatch.setattr(node_module, "FastSAMEngine", FakeEngine)
    overrides = [Parameter(name, value=value) for name, value in {"autostart": False, "warmup": False,
                                                                   **parameters}.items()]
    return node_module.FastSAMNode(context=ros, parameter_overrides=overrides)


def test_cleanup_hands_cached_gpu_memory_back(ros, monkeypatch: pytest.MonkeyPatch) -> None:
    emptied = []
    fake_cuda = types.SimpleNamespace(is_available=lambda: True, empty_cache=lambda: emptied.append(True))
    monkeypatch.setitem(__import__("sys").modules, "torch", types.SimpleNamespace(cuda=fake_cuda))
    node = make_node(ros, monkeypatch)
    node.trigger_configure()
    node.trigger_cleanup()
    assert emptied == [True]
    node.destroy_node()


def test_configure_failing_with_any_exception_keeps_the_node_unconfigured_and_says_why(
    ros, monkeypatch: pytest.MonkeyPatch
) -> None:
    """torch raises AssertionError for a GPU index that does not exist, outside the engine's own error handling."""
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(ros, monkeypatch, model="assert.pt")
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert node._health.configure_error == "AssertionError: Invalid device id"
    level, message, _ = node._health.report()
    assert level == DiagnosticStatus.ERROR and "AssertionError" in message
    node.destroy_node()


def test_a_parameter_set_while_unconfigured_applies_now_when_it_can(ros, monkeypatch: pytest.MonkeyPatch) -> None:
    from rclpy.parameter import Parameter

    node = make_node(ros, monkeypatch)
    assert node.set_parameters([Parameter("diagnostics_period", value=0.25)])[0].successful
    assert node._diagnostics_timer.timer_period_ns == 250_000_000, "the diagnostics timer runs in every state"
    node.destroy_node()


def test_executor_reports_a_failing_callback_and_keeps_spinning(ros) -> None:
    import rclpy
    from std_msgs.msg import Empty

    from fastsam_ros.ros.process import NodeExecutor

    node = rclpy.create_node("raiser", context=ros)
    errors: list[BaseException] = []
    calls = []

    def callback(_msg) -> None:
        calls.append(1)
        raise RuntimeError("boom")

    aside = node_module.ReentrantCallbackGroup()
    node.create_subscription(Empty, "inline", callback, 10)
    node.create_subscription(Empty, "aside", callback, 10, callback_group=aside)
    executor = NodeExecutor(aside, on_error=errors.append, context=ros)
    executor.add_node(node)
    for topic in ("inline", "aside"):
        node.create_publisher(Empty, topic, 10).publish(Empty())
    for _ in range(50):
        executor.spin_once(timeout_sec=0.1)
        if len(errors) == 2:
            break
    assert [str(e) for e in errors] == ["boom", "boom"] and len(calls) == 2
    executor.shutdown()
    node.destroy_node()


@pytest.mark.parametrize(("name", "value", "needle"), [
    ("diagnostics_period", 0.0, "diagnostics_period must be positive"),
    ("diagnostics_period", -1.0, "diagnostics_period must be positive"),
    ("autostart", 1, "autostart must be a bool"),
])
def test_bad_start_up_parameters_fall_back_and_configure_says_why(ros, monkeypatch: pytest.MonkeyPatch,
                                                                   name: str, value, needle: str) -> None:
    from rclpy.lifecycle import TransitionCallbackReturn

    node = make_node(ros, monkeypatch, **{name: value})
    assert node._diagnostics_timer.timer_period_ns == 1_000_000_000, "the default period, not a busy timer"
    assert node.trigger_configure() == TransitionCallbackReturn.FAILURE
    assert needle in node._health.configure_error
    node.destroy_node()


FRAME_LIKE_LOOP = """
import os, sys, threading
import numpy as np
from fastsam_ros.ros.process import pin_malloc_thresholds

def minor_faults():
    return int(open(f"/proc/{os.getpid()}/stat").read().rsplit(")", 1)[1].split()[7])

def frames(count):
    for _ in range(count):  # a few MB-sized buffers written, then freed
        blocks = [np.ones(3_000_000, np.uint8) for _ in range(4)]
        del blocks

def worker():  # the node's inference thread: its own malloc arena
    frames(5)  # the heap grows to a frame's size once
    before = minor_faults()
    frames(40)
    print(minor_faults() - before)

if sys.argv[1] == "pinned":
    assert pin_malloc_thresholds()
thread = threading.Thread(target=worker)
thread.start()
thread.join()
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc and /proc are Linux's")
def test_pinned_malloc_reuses_a_frames_memory_instead_of_faulting_it_in_again() -> None:
    """Frame-sized buffers freed and allocated again by a thread stay on its heap: with only the mmap threshold
    fixed, glibc trimmed the heap after every frame and the next one faulted its 12 MB in again (57,000 faults over
    these 40 frames; 700 with the trim threshold fixed too)."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    env = {name: value for name, value in env.items() if not (name.startswith("MALLOC_") and name.endswith("_"))}
    faults = int(subprocess.run([sys.executable, "-c", FRAME_LIKE_LOOP, "pinned"], env=env, check=True,
                                capture_output=True, text=True).stdout)
    assert faults < 40 * 3000 / 10, f"{faults} page faults for 40 frames of 12 MB"
