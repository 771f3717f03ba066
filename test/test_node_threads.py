"""The node's threads and lifecycle plumbing, in-process with a fake engine: what a message test cannot reach."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path

import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from fake_engine import FakeEngine

import fastsam_ros.ros.node as node_module
from fastsam_ros.config import EXECUTORS
from harness.node_process import wait_until


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


@pytest.fixture(params=EXECUTORS)
def executor(request, ros):
    """Each executor the node may run on, in the test's context (the signal handlers the EventsExecutor installs
    are put back: SIGINT stays pytest's)."""
    import signal

    from fastsam_ros.ros.process import STOP_SIGNALS, make_executor

    handlers = {signum: signal.getsignal(signum) for signum in STOP_SIGNALS}
    made, kind = make_executor(request.param, context=ros)
    for signum, handler in handlers.items():
        signal.signal(signum, handler)
    assert kind == request.param, "this rclpy has the EventsExecutor"
    yield made
    made.shutdown()


def test_serving_reports_a_failing_callback_and_keeps_spinning(ros, executor) -> None:
    import threading

    import rclpy
    from std_msgs.msg import Empty

    from fastsam_ros.ros.process import serve

    node = rclpy.create_node("raiser", context=ros)
    stop = threading.Event()
    errors: list[str] = []

    def callback(_msg) -> None:
        if len(errors) == 1:
            stop.set()  # after this second failure
        raise RuntimeError(f"boom {len(errors)}")

    node.create_subscription(Empty, "boom", callback, 10)
    executor.add_node(node)
    publisher = node.create_publisher(Empty, "boom", 10)
    reporter = types.SimpleNamespace(finalized=False, report_error=lambda what, error: errors.append(str(error)))
    timer = node.create_timer(0.05, lambda: publisher.publish(Empty()))
    serve(executor, reporter, stop, poll_s=0.1)
    assert errors == ["boom 0", "boom 1"], "both failures reported, and serving went on after the first"
    node.destroy_timer(timer)
    node.destroy_node()


def test_a_deferred_service_waits_off_the_executor_and_answers_from_there(ros, executor) -> None:
    """The segment service's plumbing: while one call's answer waits, the node's other callbacks run and a second
    call is answered; the first is answered once it may."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    import rclpy
    from rcl_interfaces.srv import GetParameters
    from std_msgs.msg import Empty

    from fastsam_ros.ros.deferred_service import create_deferred_service

    node = rclpy.create_node("server", context=ros)
    release = threading.Event()
    heard = threading.Event()

    def answer(request, response):
        if request.names == ["wait"]:
            assert release.wait(10)
        response.values = [rclpy.parameter.Parameter("n", value=7).get_parameter_value()]
        return response

    pool = ThreadPoolExecutor(2)
    create_deferred_service(node, GetParameters, "deferred", answer, pool.submit)
    node.create_subscription(Empty, "ping", lambda _msg: heard.set(), 10)
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin)
    spinner.start()
    caller = rclpy.create_node("caller", context=ros)  # served by the same executor: its responses arrive there too
    client = caller.create_client(GetParameters, "deferred")
    executor.add_node(caller)
    try:
        assert client.wait_for_service(timeout_sec=10)
        waiting = client.call_async(GetParameters.Request(names=["wait"]))
        time.sleep(0.2)
        caller.create_publisher(Empty, "ping", 10).publish(Empty())
        assert heard.wait(5), "a subscription callback ran while the first call's answer waited"
        second = client.call_async(GetParameters.Request(names=["now"]))
        assert wait_until(second.done, 5) and not waiting.done(), "the second call answered first"
        release.set()
        assert wait_until(waiting.done, 5) and waiting.result().values[0].integer_value == 7
    finally:
        release.set()
        stop.set()
        spinner.join(5)
        pool.shutdown()
        caller.destroy_node()
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
