"""Test-side names for the node launcher and the client (harness/, at the checkout's root, not installed)."""

from harness.client import FastSAMClient as Probe
from harness.node_process import NodeProcess, command_from_spec, load_launch_module, stamp_of, wait_until

__all__ = ["NodeProcess", "Probe", "command_from_spec", "load_launch_module", "stamp_of", "wait_until"]
