"""Test-side names for the node launcher and the client (harness/, at the checkout's root, not installed)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.client import FastSAMClient as Probe
from harness.node_process import NodeProcess, command_from_spec, load_launch_module, stamp_of, wait_until

# The node with test/fake_engine.py's painted-mask engine in place of the network.
FAKE_NODE = [sys.executable, str(Path(__file__).resolve().parent / "fake_engine_node.py")]


@contextlib.contextmanager
def running_node(log: Path, namespace: str, compressed: bool = False, connect: bool = True,
                 timeout: float = 60.0, **parameters: Any) -> Iterator[tuple[NodeProcess, Probe]]:
    """The node in its own process and a client on its namespace; on exit both stop, and the node must have
    exited cleanly (status 0). ``connect``: wait until the node subscribes and publishes first."""
    node = NodeProcess(log, namespace=namespace, **parameters)
    client = Probe(namespace=namespace, compressed=compressed)
    try:
        if connect:
            assert client.wait_for_connections(node, timeout), f"node never came up:\n{node.log()}"
        yield node, client
    finally:
        client.close()
        code = node.stop()
        assert code == 0, f"node exited with {code}:\n{node.log()}"


__all__ = ["FAKE_NODE", "NodeProcess", "Probe", "command_from_spec", "load_launch_module", "running_node",
           "stamp_of", "wait_until"]
