"""The ``fastsam_node`` process: its ``main``, executor, signals and glibc's malloc thresholds (no FastSAM logic
here)."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import select
import signal
import sys
import threading
import time
from typing import Any

import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
GIL_SWITCH_INTERVAL_S = 0.0002


def make_executor(kind: str, context: Any = None) -> tuple[Any, str]:
    """The executor that runs the node's callbacks, all on the spinning thread, and its name.

    ``events`` is rclpy's EventsExecutor (rclpy >= 7.1.4, Jazzy): it waits in C++ and calls a ready callback
    directly. rclpy's ``SingleThreadedExecutor`` rebuilds its wait set in Python on every spin (a lifecycle node has
    ~20 entities) while holding the GIL, which the inference thread then waits for: the node's own cost per frame
    was 0.5-1.5 ms lower with EventsExecutor in side-by-side bench runs (``MultiThreadedExecutor`` was slower still:
    a 100-byte ping-pong 4.5-31 ms p50 on a 2-core machine). The node's callbacks are short (a frame into a slot, a
    prompt on a cached frame); whatever may wait runs on a pool (:mod:`fastsam_ros.ros.deferred_service`, the
    prompt registry), so no executor needs threads. Where rclpy has no EventsExecutor, single_threaded is used.
    """
    if kind == "events":
        try:
            from rclpy.experimental import EventsExecutor
        except ImportError:
            kind = "single_threaded (this rclpy has no EventsExecutor)"
        else:
            return EventsExecutor(context=context), kind
    return SingleThreadedExecutor(context=context), kind


def pin_malloc_thresholds(mmap_threshold: int = MMAP_THRESHOLD_BYTES, trim_threshold: int = TRIM_THRESHOLD_BYTES
                          ) -> bool:
    """Fix glibc's mmap and trim thresholds, so that a frame's memory is reused, not mapped afresh, and the node's
    resident memory stays bounded.

    By default glibc raises the mmap threshold (up to 32 MB) each time a large block is freed, after which camera
    frames, masks and tensors (1-10 MB each, from several threads) are carved from heaps that are trimmed only
    past twice that: the node's resident memory then climbed by 100-300 MB in the first seconds of a 30 Hz
    stream (``make bench``). A fixed mmap threshold above the network's largest activations keeps them on the
    heaps. Fixing it also fixes the trim threshold, at 128 KB unless set: the heaps then gave a frame's memory
    back to the OS after every frame and faulted it in again on the next, ~1,900 page faults per frame at 100
    instances (several ms on this VM); with the trim threshold above a frame's transient memory, ~15 (p50;
    measured with a per-frame fault count in the node). Skipped where the user tunes malloc through ``MALLOC_*_``
    variables, and outside glibc.
    """
    if any(name.startswith("MALLOC_") and name.endswith("_") for name in os.environ):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, mmap_threshold)) and bool(
            libc.mallopt(M_TRIM_THRESHOLD, trim_threshold))
    except (OSError, AttributeError):  # not glibc
        return False


def shorten_gil_switch_interval(seconds: float = GIL_SWITCH_INTERVAL_S) -> None:
    """Let a thread that waits for the GIL have it after ``seconds`` instead of Python's 5 ms.

    A frame's callback hands the frame to the inference thread and returns to rclpy's executor; the
    SingleThreadedExecutor rebuilds its wait set in Python (a lifecycle node has ~20 entities) before it blocks and
    releases the GIL: the inference thread, woken at once, waited for that: 0.75-0.9 ms per frame, 0.4-0.45 ms with
    0.2 ms slices (measured from the image callback to the worker). Threads that run native code (inference, the
    compiled mask and tracking passes) release the GIL anyway; only Python competes.
    """
    sys.setswitchinterval(seconds)


SECOND_SIGNAL_AFTER_S = 0.5  # a repeat within this is the same request (ros2 launch forwards a terminal's Ctrl-C)
SHUTDOWN_DEADLINE_S = 4.5  # after the first signal; ros2 launch sends SIGKILL 5 s after SIGINT (sigterm_timeout)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals(deadline_s: float = SHUTDOWN_DEADLINE_S) -> threading.Event:
    """Handle SIGINT and SIGTERM here instead of rclpy (init it with ``SignalHandlerOptions.NO``), on a thread of our
    own; call it from the main thread.

    The first signal sets the returned event, which the spin loop checks between spins, so shutdown runs in order
    (rclpy's own handlers shut the context down wherever a callback is: a publish in flight then failed). A second
    signal (a repeat within ``SECOND_SIGNAL_AFTER_S`` is the same press: ``ros2 launch`` forwards the terminal's
    Ctrl-C, which the process group got too), or a shutdown still running ``deadline_s`` after the first, ends the
    process at once. Python runs signal handlers in the main thread only, between bytecodes, so a handler would
    wait for the main thread's native call to return (an export takes minutes): the handlers here do nothing, and
    the thread reads the signal numbers that Python's C-level handler writes to the wakeup fd, whichever thread
    the signal interrupted.
    """
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    claim_signals()
    stop_requested = threading.Event()

    def next_signal(timeout: float | None) -> int | None:
        while select.select([read_end], [], [], timeout)[0]:
            signum = os.read(read_end, 1)[0]
            if signum in STOP_SIGNALS:
                return signum
        return None

    def watch() -> None:
        first = next_signal(None)
        stop_requested.set()
        started = time.monotonic()
        while (remaining := started + deadline_s - time.monotonic()) > 0:
            again = next_signal(remaining)
            if again is not None and time.monotonic() - started >= SECOND_SIGNAL_AFTER_S:
                _say(f"{signal.Signals(again).name} again: exiting now, without a clean shutdown")
                exit_now(128 + again, run_exit_handlers=False)
        _say(f"shutdown after {signal.Signals(first).name} did not finish within {deadline_s:g} s: exiting now")
        exit_now(1, run_exit_handlers=False)

    threading.Thread(target=watch, name="fastsam-signals", daemon=True).start()
    return stop_requested


def claim_signals() -> None:
    """Point SIGINT and SIGTERM at Python's handler, whose C part writes them to :func:`stop_on_signals`' wakeup fd
    (again after making rclpy's EventsExecutor, which installs handlers of its own for both: they would shut the
    context down wherever a callback is)."""
    for signum in STOP_SIGNALS:
        signal.signal(signum, lambda *_: None)


def _say(message: str) -> None:
    with contextlib.suppress(OSError):
        os.write(2, f"[fastsam] {message}\n".encode())


CRASH_SIGNALS = (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS)
_SIGNAL_HANDLER = ctypes.CFUNCTYPE(None, ctypes.c_int)
_exit_guard: list[Any] = []  # the C-callable guard, kept alive while the exit handlers run


def exit_now(code: int, run_exit_handlers: bool = True) -> None:
    """End the process without Python's finalization, which destroyed the inference runtimes' objects (OpenVINO's,
    PyTorch's thread pools) and crashed with SIGSEGV under ``make test``. The C library's ``exit()`` still runs the
    native libraries' exit handlers, unlike ``os._exit()``: with ``os._exit`` every run left its Fast DDS
    shared-memory segments (17 MB) in /dev/shm until reboot; only a forced exit skips them.

    Those handlers run after ROS has shut down and every thread of ours has stopped, and now and then one of them
    crashes (about one node process in 200 under ``make test``: "pure virtual method called" while a static object
    is destroyed): the process then ends at once with ``code`` and a line saying so, instead of a crash status that
    ``ros2 launch`` would report as a dead node."""
    sys.stdout.flush()
    sys.stderr.flush()
    if run_exit_handlers:
        libc = ctypes.CDLL(None)

        def crashed(signum: int) -> None:
            _say(f"a native library crashed in its exit handlers ({signal.Signals(signum).name}) after the node had "
                 f"shut down: exiting with status {code}")
            os._exit(code)

        _exit_guard.append(_SIGNAL_HANDLER(crashed))
        for signum in CRASH_SIGNALS:
            libc.signal(signum, _exit_guard[-1])
        libc.exit(code)
    os._exit(code)


def main(args: list[str] | None = None) -> None:
    """Entry point of ``fastsam_node`` (``ros2 run fastsam_ros fastsam_node``).

    SIGINT and SIGTERM are taken by :func:`stop_on_signals`, not rclpy: the first asks this loop to stop (it wakes
    every ``poll_s`` to see it) and the shutdown below is bounded; a second one, or a shutdown still running after
    its deadline (a TensorRT export in progress), ends the process at once. The ``shutdown`` lifecycle transition
    ends it too.
    """
    from rclpy.signals import SignalHandlerOptions

    poll_s = 0.1
    stop_requested = stop_on_signals()  # first: every thread started from here on leaves the signals to it
    pin_malloc_thresholds()
    shorten_gil_switch_interval()
    from fastsam_ros.ros.node import PROMPT_DRAIN_S, FastSAMNode  # here: video_source shares the signals, not the node

    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)
    node = FastSAMNode()
    executor, kind = make_executor(node.startup_value("executor"))
    claim_signals()
    executor.add_node(node)
    node.get_logger().info(f"callbacks run on rclpy's {kind} executor")
    try:
        serve(executor, node, stop_requested, poll_s)
    finally:
        node.stop()
        executor.shutdown(timeout_sec=PROMPT_DRAIN_S)
        node.destroy_node()
        rclpy.try_shutdown()
    exit_now(0)


def serve(executor: Any, node: Any, stop_requested: threading.Event, poll_s: float) -> None:
    """Spin until a stop is requested, the node is finalized or ROS shuts down. A callback that raises is reported
    through ``node.report_error`` and the node keeps serving (both executors raise it out of ``spin_once``)."""
    while not stop_requested.is_set() and not node.finalized and executor.context.ok():
        try:
            executor.spin_once(timeout_sec=poll_s)
        except ExternalShutdownException:
            return
        except Exception as error:
            node.report_error("callback failed", error)


if __name__ == "__main__":
    main()
