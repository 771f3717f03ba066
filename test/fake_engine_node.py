"""``fastsam_node`` with :class:`FakeEngine` in place of the network: run as a script by node tests."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_engine import FakeEngine

import fastsam_ros.ros.node as node_module
from fastsam_ros.ros.process import main

node_module.FastSAMEngine = FakeEngine

if __name__ == "__main__":
    main(sys.argv)
