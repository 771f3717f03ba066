"""``fastsam_node`` with :class:`FakeEngine` in place of the network: run as a script by node tests.

Two variables set up what a robot may or may not have:

* ``FAKE_NO_VISION_MSGS=1``: ``vision_msgs`` cannot be imported (a robot without ros-jazzy-vision-msgs);
* ``FAKE_TF=<target>:<source>:<tx,ty,tz>:<qx,qy,qz,qw>[:<from_s>]``: tf2's buffer knows that one transform (from
  ``from_s`` seconds of stamp on; before, it raises as tf2 does for a stamp its history does not cover).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

if os.environ.get("FAKE_NO_VISION_MSGS") == "1":
    sys.modules["vision_msgs"] = None  # `import vision_msgs` now raises ImportError

from fake_engine import FakeEngine

import fastsam_ros.ros.node as node_module
from fastsam_ros.ros import transforms
from fastsam_ros.ros.process import main

node_module.FastSAMEngine = FakeEngine

if os.environ.get("FAKE_TF"):
    from fake_tf import StampedBuffer

    transforms.transform_buffer = lambda node: StampedBuffer.parse(os.environ["FAKE_TF"])

if __name__ == "__main__":
    main(sys.argv)
