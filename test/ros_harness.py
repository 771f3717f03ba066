"""Test-side names for the node launcher and the client (they live in the package for the demo and bench)."""

from fastsam_ros.client import FastSAMClient as Probe
from fastsam_ros.node_process import NodeProcess, command_from_spec, load_launch_module, stamp_of, wait_until

__all__ = ["NodeProcess", "Probe", "command_from_spec", "load_launch_module", "stamp_of", "wait_until"]
