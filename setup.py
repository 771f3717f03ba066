"""The ROS-free core of fastsam_ros as a plain Python distribution: ``pip install .`` in a venv *without* ROS.

It gives the ``fastsam_ros`` core (segmentation, prompts, tracking, depth, the CLI) and the ``fastsam-segment``
command. The ROS shell (``fastsam_ros.ros``, ``fastsam_ros.msg``/``srv``)
come from the CMake/colcon build (CMakeLists.txt, package.xml) and need a ROS 2 environment.

Never install this into the ROS venv made by ``make setup``: rosidl registers the CMake-installed package
as the ``fastsam_ros`` distribution, and pip would uninstall it (messages included) to replace it.
"""

from pathlib import Path

from setuptools import setup

# setuptools' default build/ is the CMake build directory, and an egg-info in the source root would be seen
# as an installed `fastsam_ros` distribution when the repo is on PYTHONPATH: keep both under build/setuptools.
BUILD_BASE = Path(__file__).resolve().parent / "build" / "setuptools"
BUILD_BASE.mkdir(parents=True, exist_ok=True)

setup(
    name="fastsam-ros",
    version="0.1.0",
    description="FastSAM (Ultralytics) segmentation with point/box prompt selection; ROS-free core and CLI",
    license="AGPL-3.0-only",
    python_requires=">=3.10",
    packages=["fastsam_ros", "fastsam_ros.segmentation", "fastsam_ros.prompts", "fastsam_ros.tracking",
              "fastsam_ros.depth"],
    install_requires=[
        "numpy",
        "numba",  # fastsam_ros/segmentation/mask_kernel.py
        # cv2: ultralytics brings opencv-python; do not add opencv-python-headless next to it.
        "ultralytics",
        "torch",
        "tqdm",
        # backend auto on CPU: the checkpoint exported once to ONNX Runtime or OpenVINO
        # (fastsam_ros/segmentation/backends.py)
        "onnx",
        "onnxruntime",
        "openvino",
    ],
    entry_points={"console_scripts": ["fastsam-segment=fastsam_ros.cli:main"]},
    options={"build": {"build_base": str(BUILD_BASE)}, "egg_info": {"egg_base": str(BUILD_BASE)}},
)
