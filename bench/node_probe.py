"""``fastsam_node`` with its worker timed stage by stage, for ``python -m bench.node_stages``.

Run as the node's program (``python -m bench.node_probe --ros-args ...``), it wraps the calls the worker makes per
frame (decode, segment, track, make the masks, write the ``Instances`` bytes, publish), then runs the node's own
``main``. Each frame appends one JSON line to the file named by ``FASTSAM_NODE_PROBE``: its stamp, when its image
callback ran and when the worker started and finished it (``time.monotonic``, the machine's clock, which the
driver also reads), the milliseconds of each stage, and the process's minor page faults over the frame. Nothing in
``fastsam_ros`` knows about it.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from typing import Any

import rclpy.publisher

from fastsam_ros import node, ros_io, wire
from fastsam_ros.engine import FastSAMEngine
from fastsam_ros.instance_masks import InstanceMasks
from fastsam_ros.tracking import InstanceTracker

STAGES: dict[str, tuple[Any, str]] = {  # stage -> (owner, attribute) of the call the worker makes
    "decode": (ros_io.ImageDecoder, "decode"),
    "segment": (FastSAMEngine, "segment"),
    "track": (InstanceTracker, "update"),
    "make_masks": (InstanceMasks, "make"),
    "instances_msg": (wire, "instances_cdr"),
    "publish": (rclpy.publisher.Publisher, "publish"),
}

_frame = threading.local()  # the record of the frame this thread is processing, if any
_received: dict[int, float] = {}  # stamp -> when its image callback ran


def minor_faults() -> int:
    """Minor page faults of this process so far (``/proc/self/stat``, field 10)."""
    with open("/proc/self/stat") as stat:
        return int(stat.read().rsplit(")", 1)[1].split()[7])


def _timed(stage: str, call: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.monotonic()
        try:
            return call(*args, **kwargs)
        finally:
            record = getattr(_frame, "record", None)
            if record is not None:  # a stage the worker ran for a frame (nested calls count in both)
                record[stage] = record.get(stage, 0.0) + (time.monotonic() - started) * 1000.0
    return wrapper


def install(out_path: str) -> None:
    """Wrap the stages and the node's image callback and frame processing, writing to ``out_path``."""
    for stage, (owner, name) in STAGES.items():
        setattr(owner, name, _timed(stage, getattr(owner, name)))
    on_image, process = node.FastSAMNode._on_image, node.FastSAMNode._process
    lock = threading.Lock()

    def probed_on_image(self: Any, msg: Any) -> None:
        _received[ros_io.stamp_ns(msg.header)] = time.monotonic()
        on_image(self, msg)

    def probed_process(self: Any, item: Any) -> None:
        record = {"stamp": item.stamp_ns, "received": _received.pop(item.stamp_ns, None), "start": time.monotonic()}
        faults = minor_faults()
        _frame.record = record
        try:
            process(self, item)
        finally:
            _frame.record = None
            record.update(end=time.monotonic(), faults=minor_faults() - faults)
            with lock, open(out_path, "a") as out:
                out.write(json.dumps(record) + "\n")

    node.FastSAMNode._on_image, node.FastSAMNode._process = probed_on_image, probed_process


if __name__ == "__main__":
    install(os.environ["FASTSAM_NODE_PROBE"])
    node.main()
