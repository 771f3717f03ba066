"""Start the fastsam lifecycle node: ``ros2 launch fastsam_ros fastsam.launch.py model:=FastSAM-s.pt``.

``video:=clip.mp4`` (or a camera index) also starts ``video_source`` publishing it on the ``image`` topic.

``node_spec`` is plain data (no launch imports) so tests run the exact same node description
as a subprocess where ``launch``/``launch_ros`` are not installed.
"""

from __future__ import annotations

import os
from typing import Any

ARGUMENTS = {
    "model": ("FastSAM-s.pt", "FastSAM checkpoint/export path, or a name ultralytics downloads"),
    "device": ("cpu", "inference device: cpu, cuda:0, ..."),
    "image": ("/camera/image_raw", "camera topic to segment (remapped onto the node's `image`)"),
    "depth": ("/camera/depth/image_raw", "depth image registered to `image` (remapped onto `depth`; use_depth)"),
    "camera_info": ("/camera/camera_info", "the colour camera's CameraInfo (remapped onto `camera_info`; use_depth)"),
    "use_depth": ("", "true: 3D positions of selected objects from depth; empty keeps the params file's value"),
    "namespace": ("", "namespace for the node and its relative topics"),
    "params_file": ("", "YAML parameters file; empty uses the package's config/fastsam.yaml"),
    "video": ("", "a video file or camera index to publish on `image` with video_source; empty: none"),
    "video_rate": ("0.0", "video_source frames per second; 0 uses the file's own rate"),
    "video_loop": ("false", "video_source restarts the file at its end"),
}
NODE_ARGUMENTS = tuple(name for name in ARGUMENTS if not name.startswith("video"))


def default_params_file() -> str:
    """The installed ``config/fastsam.yaml`` (falls back to the source tree when run from it)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("fastsam_ros"), "config", "fastsam.yaml")
    except Exception:  # not installed: running from the repository
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "fastsam.yaml")


def node_spec(model: str, device: str, image: str, namespace: str, params_file: str,
              depth: str = ARGUMENTS["depth"][0], camera_info: str = ARGUMENTS["camera_info"][0],
              use_depth: str = "") -> dict[str, Any]:
    """Everything that defines the node: executable, name, parameters (file first, then overrides), remaps."""
    overrides: dict[str, Any] = {"model": model, "device": device}
    if use_depth:
        if use_depth.lower() not in ("true", "false"):
            raise ValueError(f"use_depth must be true, false or empty, got {use_depth!r}")
        overrides["use_depth"] = use_depth.lower() == "true"
    return {
        "package": "fastsam_ros",
        "executable": "fastsam_node",
        "name": "fastsam",
        "namespace": namespace,
        "parameters": [params_file or default_params_file(), overrides],
        "remappings": [("image", image), ("image/compressed", image + "/compressed"), ("depth", depth),
                       ("camera_info", camera_info)],
        "output": "screen",
    }


def video_spec(video: str, rate: str, loop: str, image: str, camera_info: str, namespace: str) -> dict[str, Any]:
    """``video_source`` publishing ``video`` where the fastsam node listens."""
    return {
        "package": "fastsam_ros",
        "executable": "video_source",
        "name": "video_source",
        "namespace": namespace,
        "parameters": [{"source": video, "rate": float(rate), "loop": loop.lower() in ("true", "1", "yes")}],
        "remappings": [("image", image), ("camera_info", camera_info)],
        "output": "screen",
    }


def _launch_node(context: Any) -> list[Any]:
    from launch_ros.actions import LifecycleNode

    values = {name: context.perform_substitution(_config(name)) for name in ARGUMENTS}
    actions = [LifecycleNode(**node_spec(**{name: values[name] for name in NODE_ARGUMENTS}))]
    if values["video"]:
        from launch_ros.actions import Node

        actions.append(Node(**video_spec(values["video"], values["video_rate"], values["video_loop"],
                                         values["image"], values["camera_info"], values["namespace"])))
    return actions


def _config(name: str) -> Any:
    from launch.substitutions import LaunchConfiguration

    return LaunchConfiguration(name)


def generate_launch_description() -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    arguments = [DeclareLaunchArgument(name, default_value=default, description=doc)
                 for name, (default, doc) in ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_node)])
