"""A live camera: frames at ``rate_hz`` for ``seconds`` with one persistent click prompt.

Measures what a robot sees: how often answers come (output rate), how old the frame is when its answer
arrives (latency from the moment the frame was published, as its stamp says, to its ``selection``), how many
frames the node skipped to stay current (the newest-frame slot drops the rest: by design, not loss), and
whether the node's resident memory grows (``VmRSS``, sampled each second: :func:`growth_mb`).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from bench.machine import rss_mb
from bench.pipeline import TIMEOUT_S, Driver
from bench.stats import summarize

PROMPT_ID = "stream"
TREND_SAMPLES = 10  # seconds of RSS samples at each end of the stream that growth compares


def growth_mb(samples: list[float]) -> float | None:
    """How much the node's RSS grew over the stream: the median of its last ``TREND_SAMPLES`` one-second samples
    minus that of its first. A single sample swings by tens of MB at 100 instances per frame (glibc trims its
    heaps as frames come and go), so two single samples, start and end, measured the swing, not a leak; a leak
    raises the whole late part of the trace. Short streams (``--quick``) compare their first and last thirds."""
    width = min(TREND_SAMPLES, len(samples) // 3)
    if width < 1:
        return None
    return round(float(np.median(samples[-width:]) - np.median(samples[:width])), 1)


def diagnostics_values(msg: Any) -> dict[str, str]:
    """The key/value pairs of the fastsam entry of a ``DiagnosticArray``."""
    for status in msg.status:
        if "segmentation" in status.name:
            return {kv.key: kv.value for kv in status.values}
    return {}


def node_stages(driver: Driver) -> dict[str, float]:
    """The node's own p50 ms per stage of a frame (decode, segment, track, answers, outputs), from /diagnostics."""
    values = _fresh_diagnostics(driver)
    return {key[4:-3]: float(value) for key, value in values.items() if key.startswith("p50_") and key.endswith("_ms")}


def _fresh_diagnostics(driver: Driver, timeout: float = 10.0) -> dict[str, str]:
    """Values from a diagnostics message published after this call (they come once a second)."""
    count = driver.client.count("diagnostics", lambda m: bool(diagnostics_values(m)))
    msg = driver.client.wait_for_nth("diagnostics", count, lambda m: bool(diagnostics_values(m)), timeout)
    return diagnostics_values(msg) if msg is not None else {}


def _counter(values: dict[str, str], key: str) -> int | None:
    try:
        return int(values[key])
    except (KeyError, ValueError):
        return None


def _delta(after: dict[str, str], before: dict[str, str], key: str) -> int | None:
    a, b = _counter(after, key), _counter(before, key)
    return a - b if a is not None and b is not None else None


class Cameras(threading.Thread):
    """Cameras publishing their frames at ``rate_hz``, in step, each frame stamped with the wall clock like a camera
    driver (one client per camera; each message is built once, only its stamp changes)."""

    def __init__(self, clients: list[Any], frames: list[np.ndarray], rate_hz: float, seconds: float) -> None:
        super().__init__(name="bench-cameras", daemon=True)
        self._messages = [client.image_msg(frame, 0) for client, frame in zip(clients, frames, strict=True)]
        self._clients = clients
        self._period, self._count = 1.0 / rate_hz, round(seconds * rate_hz)
        self.sent: list[dict[int, float]] = [{} for _ in clients]  # per camera: stamp ns -> monotonic publish time

    def run(self) -> None:
        start = time.monotonic()
        for k in range(self._count):
            delay = start + k * self._period - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for client, msg, sent in zip(self._clients, self._messages, self.sent, strict=True):
                stamp = time.time_ns()
                msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
                sent[stamp] = time.monotonic()
                client.image_pub.publish(msg)


def run_stream(driver: Driver, pixels: np.ndarray, click: tuple[float, float], seconds: float,
               rate_hz: float = 30.0) -> dict[str, Any]:
    from harness.node_process import stamp_of

    client, pid = driver.client, driver.node.process.pid
    persistent = client.prompt(PROMPT_ID, 0, points=[click], labels=[1], persistent=True)
    client.prompt_pub.publish(persistent)  # answered at once on the newest cached frame, then on every new one
    client.wait_for("selection", lambda m: m.prompt_id == PROMPT_ID, TIMEOUT_S)
    diagnostics_before = _fresh_diagnostics(driver)
    rss_start = rss_mb(pid)
    camera = Cameras([client], [pixels], rate_hz, seconds)
    camera.start()
    rss_samples = []
    while camera.is_alive():
        camera.join(timeout=1.0)
        rss_samples.append(rss_mb(pid))
    # Let the last frame's answer arrive, then read the node's counters and stop the prompt.
    sent = camera.sent[0]
    last = max(sent)
    client.wait_for("selection", lambda m: m.prompt_id == PROMPT_ID and stamp_of(m) >= last, 5.0)
    rss_end = rss_mb(pid)
    diagnostics_after = _fresh_diagnostics(driver)
    client.prompt_pub.publish(client.prompt(PROMPT_ID, clear=True))

    answers = [(t, m) for t, m in list(client.received["selection"])
               if m.prompt_id == PROMPT_ID and stamp_of(m) in sent]
    statuses: dict[str, int] = {}
    for _, m in answers:
        statuses[m.status] = statuses.get(m.status, 0) + 1
    latencies = [(t - sent[stamp_of(m)]) * 1000.0 for t, m in answers]
    instances = [m for _, m in list(client.received["instances"]) if stamp_of(m) in sent]
    duration = max(sent.values()) - min(sent.values()) if len(sent) > 1 else seconds
    rss = [value for value in (rss_start, *rss_samples, rss_end) if value is not None]
    received = _delta(diagnostics_after, diagnostics_before, "frames_received")
    return {
        "seconds": seconds, "camera_hz": rate_hz, "frames_published": len(sent),
        "publish_rate_hz": round((len(sent) - 1) / duration, 2) if duration > 0 else None,
        "answers": len(answers), "answer_statuses": statuses,
        "output_rate_hz": round(len(answers) / duration, 2) if duration > 0 else None,
        "latency_ms": summarize(latencies),
        "node_inference_ms": summarize(m.inference_ms for m in instances),
        "instances_received": len(instances),
        "frames_dropped": len(sent) - len(answers),  # published frames that never got an answer
        "node_frames_received": received,
        "node_frames_dropped": _delta(diagnostics_after, diagnostics_before, "frames_dropped"),
        "node_frames_processed": _delta(diagnostics_after, diagnostics_before, "frames_processed"),
        "lost_in_transport": len(sent) - received if received is not None else None,
        "rss_start_mb": round(rss_start, 1) if rss_start else None,
        "rss_end_mb": round(rss_end, 1) if rss_end else None,
        "rss_max_mb": round(max(rss), 1) if rss else None,
        "rss_growth_mb": growth_mb([value for value in rss_samples if value is not None]),
        "rss_per_second_mb": [round(value, 1) for value in rss_samples if value is not None],
    }
