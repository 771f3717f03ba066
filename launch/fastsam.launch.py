"""Start the fastsam lifecycle node: ``ros2 launch fastsam_ros fastsam.launch.py model:=FastSAM-s.pt``.

The node runs in the ``fastsam`` namespace by default (node ``/fastsam/fastsam``, topics ``/fastsam/instances``,
``/fastsam/prompt``, ... and the service ``/fastsam/segment``), so its outputs never land on generic root names such
as ``/mask`` or ``/selection`` where other nodes publish; ``namespace:=/`` puts it back at the root. The camera is
remapped from the ``image`` argument, an absolute topic, so the namespace does not move it.
Parameters come from ``params_file`` (default: the package's ``config/fastsam.yaml``). A parameter argument
left empty (the default) keeps the file's value; a given one overrides it, converted to the parameter's type.
``video:=clip.mp4`` (or a camera index) also starts ``video_source`` publishing it on the ``image`` topic.
``cameras:=[front,rear]`` serves several cameras with one model: each camera's ``image``, ``depth`` and
``camera_info`` come from the arguments with ``{camera}`` replaced by its name (``image:=/{camera}/color/image_raw``);
left at their defaults they are ``/<camera>/image_raw``, ``/<camera>/depth/image_raw`` and ``/<camera>/camera_info``.
``node_spec`` is plain data (no launch imports) so tests run the exact same node description as a
subprocess where ``launch``/``launch_ros`` are not installed.
"""

from __future__ import annotations

import os
from typing import Any

from fastsam_ros.config import parameter_table

# Node parameters that are also launch arguments; type and description come from NodeConfig. Add a name here.
PARAMETER_ARGUMENTS = ("model", "device", "half", "imgsz", "image_transport", "use_depth", "cameras", "precision",
                       "calibration_images")

# Launch-only arguments: name -> (default, description).
LAUNCH_ARGUMENTS = {
    "image": ("/camera/image_raw", "camera topic (remapped onto the node's `image` and `image/compressed`)"),
    "depth": ("/camera/depth/image_raw", "depth image registered to `image` (remapped onto `depth`; use_depth)"),
    "camera_info": ("/camera/camera_info", "the colour camera's CameraInfo (remapped onto `camera_info`): 3D with "
                    "use_depth, and /clicked_point projected to pixels"),
    "namespace": ("fastsam", "namespace for the node and its relative topics (/ for none)"),
    "params_file": ("", "YAML parameters file; empty uses the package's config/fastsam.yaml"),
    "video": ("", "a video file or camera index to publish on `image` with video_source; empty: none"),
    "video_rate": ("0.0", "video_source frames per second; 0 uses the file's own rate"),
    "video_loop": ("false", "video_source restarts the file at its end"),
    "web": ("false", "also start fastsam_web, the web page for pointing at objects (loopback only)"),
    "web_port": ("8080", "fastsam_web's port"),
}
NODE_ARGUMENTS = tuple(name for name in LAUNCH_ARGUMENTS if not name.startswith(("video", "web")))

_TRUE_FALSE = {"true": True, "false": False}


def default_params_file() -> str:
    """The installed ``config/fastsam.yaml`` (falls back to the source tree when run from it)."""
    try:
        from ament_index_python.packages import get_package_share_directory

        return os.path.join(get_package_share_directory("fastsam_ros"), "config", "fastsam.yaml")
    except Exception:  # not installed: running from the repository
        return os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "config", "fastsam.yaml")


def parameter_overrides(arguments: dict[str, str]) -> dict[str, Any]:
    """The parameter arguments that were given, as their parameters' types; empty ones are left to the file."""
    types = {name: type(default) for name, default, _ in parameter_table()}
    return {name: _typed(name, text, types[name]) for name, text in arguments.items() if text != ""}


def _typed(name: str, text: str, kind: type) -> Any:
    if kind is tuple:  # a list argument: [front,rear] (brackets and spaces optional)
        return [item.strip() for item in text.strip().strip("[]").split(",") if item.strip()]
    try:
        return _TRUE_FALSE[text.lower()] if kind is bool else kind(text)
    except (KeyError, ValueError):
        expected = "true or false" if kind is bool else f"a value of type {kind.__name__}"
        raise ValueError(f"launch argument {name}:={text!r}: expected {expected}") from None


CAMERA_TOPICS = ("image", "depth", "camera_info")  # each camera's inputs, remapped from the launch arguments


def camera_topic(argument: str, value: str, camera: str) -> str:
    """Camera ``camera``'s topic for launch argument ``argument`` (``image``, ``depth`` or ``camera_info``)."""
    if "{camera}" in value:
        return value.replace("{camera}", camera)
    default = LAUNCH_ARGUMENTS[argument][0]
    if value == default:  # /camera/image_raw -> /front/image_raw
        return f"/{camera}/" + default.split("/", 2)[2]
    raise ValueError(f"launch argument {argument}:={value!r}: with cameras, name each camera's topic with "
                     f"{{camera}}, e.g. {argument}:=/{{camera}}{default.split('/camera', 1)[1]}")


def remappings(image: str, depth: str, camera_info: str, cameras: list[str] | tuple[str, ...] = ()) -> list[
        tuple[str, str]]:
    """The node's camera inputs from the launch arguments: its own, or each camera's under its name."""
    arguments = {"image": image, "depth": depth, "camera_info": camera_info}
    if not cameras:
        return [("image", image), ("image/compressed", image + "/compressed"), ("depth", depth),
                ("camera_info", camera_info)]
    pairs = []
    for camera in cameras:
        topics = {name: camera_topic(name, arguments[name], camera) for name in CAMERA_TOPICS}
        pairs += [(f"{camera}/image", topics["image"]), (f"{camera}/image/compressed", topics["image"] + "/compressed"),
                  (f"{camera}/depth", topics["depth"]), (f"{camera}/camera_info", topics["camera_info"])]
    return pairs


def node_spec(image: str = LAUNCH_ARGUMENTS["image"][0], namespace: str = LAUNCH_ARGUMENTS["namespace"][0],
              params_file: str = "",
              depth: str = LAUNCH_ARGUMENTS["depth"][0], camera_info: str = LAUNCH_ARGUMENTS["camera_info"][0],
              **parameters: Any) -> dict[str, Any]:
    """Everything that defines the node: executable, name, parameters (the file, then typed overrides), remaps."""
    return {
        "package": "fastsam_ros",
        "executable": "fastsam_node",
        "name": "fastsam",
        "namespace": namespace,
        "parameters": [params_file or default_params_file(), *([parameters] if parameters else [])],
        "remappings": remappings(image, depth, camera_info, parameters.get("cameras") or ()),
        "output": "screen",
    }


def video_spec(video: str, rate: str, loop: str, image: str, camera_info: str, namespace: str) -> dict[str, Any]:
    """``video_source`` publishing ``video`` where the fastsam node listens."""
    return {
        "package": "fastsam_ros",
        "executable": "video_source",
        "name": "video_source",
        "namespace": namespace,
        "parameters": [{"source": video, "rate": float(rate), "loop": _typed("video_loop", loop, bool)}],
        "remappings": [("image", image), ("camera_info", camera_info)],
        "output": "screen",
    }


def web_spec(port: str, namespace: str) -> dict[str, Any]:
    """``fastsam_web`` beside the node, in its namespace (its topics are relative, like the node's)."""
    return {
        "package": "fastsam_ros",
        "executable": "fastsam_web",
        "name": "fastsam_web",
        "namespace": namespace,
        "parameters": [{"port": int(port)}],
        "output": "screen",
    }


def _launch_node(context: Any) -> list[Any]:
    from launch.substitutions import LaunchConfiguration
    from launch_ros.actions import LifecycleNode

    def value(name: str) -> str:
        return context.perform_substitution(LaunchConfiguration(name))

    overrides = parameter_overrides({name: value(name) for name in PARAMETER_ARGUMENTS})
    actions = [LifecycleNode(**node_spec(**{name: value(name) for name in NODE_ARGUMENTS}, **overrides))]
    first = (overrides.get("cameras") or [None])[0]
    if value("video"):  # played as the only camera, or as the first of several
        from launch_ros.actions import Node

        image, info = ((value("image"), value("camera_info")) if first is None else
                       (camera_topic("image", value("image"), first), camera_topic("camera_info", value("camera_info"),
                                                                                 first)))
        actions.append(Node(**video_spec(value("video"), value("video_rate"), value("video_loop"), image, info,
                                         value("namespace"))))
    if _typed("web", value("web"), bool):
        from launch_ros.actions import Node

        namespace = value("namespace") if first is None else f"{value('namespace').rstrip('/')}/{first}"
        actions.append(Node(**web_spec(value("web_port"), namespace)))  # the page shows one camera: the first
    return actions


def generate_launch_description() -> Any:
    from launch import LaunchDescription
    from launch.actions import DeclareLaunchArgument, OpaqueFunction

    docs = {name: doc for name, _, doc in parameter_table()}
    arguments = [DeclareLaunchArgument(name, default_value="", description=f"{docs[name]} (empty: params_file's)")
                 for name in PARAMETER_ARGUMENTS]
    arguments += [DeclareLaunchArgument(name, default_value=default, description=doc)
                  for name, (default, doc) in LAUNCH_ARGUMENTS.items()]
    return LaunchDescription([*arguments, OpaqueFunction(function=_launch_node)])
