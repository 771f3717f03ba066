"""FastSAM for ROS 2: a ROS-free segmentation/selection core (engine, selection, masks, CLI) and a thin node.

``extend_path`` lets the source tree and the CMake-installed package (which holds the generated
``fastsam_ros.msg``/``fastsam_ros.srv``) act as one package when the repo is on ``PYTHONPATH``.
"""

__path__ = __import__("pkgutil").extend_path(__path__, __name__)
