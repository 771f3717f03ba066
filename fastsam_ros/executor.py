"""Process-level plumbing of the node: its executor, its signals and glibc's malloc threshold (no FastSAM logic
here)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from rclpy.callback_groups import CallbackGroup
from rclpy.executors import ShutdownException, SingleThreadedExecutor, TimeoutException

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters
MMAP_THRESHOLD_BYTES = 8 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 32 * 1024 * 1024
GIL_SWITCH_INTERVAL_S = 0.0002


class NodeExecutor(SingleThreadedExecutor):
    """Runs every callback in the spinning thread, except those of ``blocking_group``, which get a pool thread.

    rclpy's ``MultiThreadedExecutor`` hands *every* callback to a pool thread and rebuilds its wait set
    meanwhile, contending for the GIL: a 100-byte ping-pong took 4.5-31 ms p50 through it on a 2-core machine,
    against 1.6 ms through a single-threaded executor. The node's callbacks are short (a frame into a slot, a
    prompt on a cached frame), so they run inline; only callbacks that may wait run aside. A callback that
    raises is reported through ``on_error`` and the node keeps spinning.
    Uses only ``wait_for_ready_callbacks`` and the handler it yields (public since Humble).
    """

    def __init__(self, blocking_group: CallbackGroup, on_error: Callable[[BaseException], None],
                 workers: int = 2, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._blocking_group = blocking_group
        self._on_error = on_error
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fastsam-blocking")

    def spin_once(self, timeout_sec: float | None = None) -> None:
        try:
            handler, entity, _ = self.wait_for_ready_callbacks(timeout_sec=timeout_sec)
        except (ShutdownException, TimeoutException):
            return
        if entity is not None and getattr(entity, "callback_group", None) is self._blocking_group:
            self._pool.submit(self._run, handler)  # the handler takes the request and answers it there
        else:
            self._run(handler)

    def _run(self, handler: Any) -> None:
        """Run one callback; its exception (kept by rclpy's task, never raised) is reported, not lost."""
        handler()
        if handler.exception() is not None:
            self._on_error(handler.exception())

    def shutdown(self, timeout_sec: float | None = None) -> bool:
        done = super().shutdown(timeout_sec)
        self._pool.shutdown(wait=True)
        return done


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
    ``python -m bench.node_stages`` counts them). Skipped where the user tunes malloc through ``MALLOC_*_``
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

    A frame's callback hands the frame to the inference thread and returns to rclpy's executor, which rebuilds
    its wait set in Python (a lifecycle node has ~20 entities) before it blocks and releases the GIL: the
    inference thread, woken at once, waited for that: 0.75-0.9 ms per frame, 0.4-0.45 ms with 0.2 ms slices
    (``python -m bench.node_stages``, ``handoff``). Threads that run native code (inference, the compiled mask and
    tracking passes) release the GIL anyway; only Python competes.
    """
    sys.setswitchinterval(seconds)


def stop_on_signals() -> threading.Event:
    """Handle SIGINT and SIGTERM here instead of rclpy (init it with ``SignalHandlerOptions.NO``): the first sets
    the returned event, which the spin loop checks between spins, and both are ignored from then on.

    rclpy's handlers shut the context down at once, wherever a callback is: a publish in flight then fails
    ("publisher's context is invalid"), and a second Ctrl-C (``ros2 launch`` forwards the terminal's) raised
    KeyboardInterrupt during shutdown.
    """
    signals = (signal.SIGINT, signal.SIGTERM)
    stop_requested = threading.Event()

    def request_stop(*_: Any) -> None:
        for signum in signals:  # ignored from now on, also through interpreter exit
            signal.signal(signum, signal.SIG_IGN)
        stop_requested.set()

    for signum in signals:
        signal.signal(signum, request_stop)
    return stop_requested
