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


TRANSITIONS = ("configure", "activate", "deactivate", "cleanup", "shutdown")


def transition(probe: Probe, node: str, label: str, timeout: float = 60.0) -> bool:
    """Drive ``node`` (its full name) through a lifecycle transition over the standard service."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState

    ids = {"configure": Transition.TRANSITION_CONFIGURE, "activate": Transition.TRANSITION_ACTIVATE,
           "deactivate": Transition.TRANSITION_DEACTIVATE, "cleanup": Transition.TRANSITION_CLEANUP,
           "shutdown": Transition.TRANSITION_INACTIVE_SHUTDOWN}
    response = probe.call(ChangeState, f"{node}/change_state",
                          ChangeState.Request(transition=Transition(id=ids[label])), timeout=timeout)
    assert response is not None, f"{node}/change_state did not answer {label}"
    return bool(response.success)


def lifecycle_state(probe: Probe, node: str) -> str:
    from lifecycle_msgs.srv import GetState

    return probe.call(GetState, f"{node}/get_state", GetState.Request()).current_state.label


def set_parameter(probe: Probe, node: str, name: str, value: Any) -> bool:
    """Set one parameter over the standard service; whether the node took it."""
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    response = probe.call(SetParameters, f"{node}/set_parameters",
                          SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
    return bool(response.results[0].successful)


__all__ = ["FAKE_NODE", "TRANSITIONS", "NodeProcess", "Probe", "command_from_spec", "lifecycle_state",
           "load_launch_module", "running_node", "set_parameter", "stamp_of", "transition", "wait_until"]
