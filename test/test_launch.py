"""launch/fastsam.launch.py against small stand-ins for ``launch``/``launch_ros``.

The stand-ins record what the launch file builds; the node tests run the same ``node_spec`` for real, and
test/test_ros2_launch.py runs the launch file itself under the real ``ros2 launch`` where it is installed.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path

import pytest

from ros_harness import command_from_spec, load_launch_module


class _Recorder:
    def __init__(self, *args, **kwargs) -> None:
        self.args, self.kwargs = args, kwargs


class LaunchConfiguration(_Recorder):
    @property
    def name(self) -> str:
        return self.args[0]


@pytest.fixture
def fake_launch(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    created: list[_Recorder] = []

    def recording(name: str) -> type:
        def init(self, *args, **kwargs) -> None:
            _Recorder.__init__(self, *args, **kwargs)
            created.append(self)

        return type(name, (_Recorder,), {"__init__": init})

    modules = {
        "launch": types.SimpleNamespace(LaunchDescription=lambda entities: list(entities)),
        "launch.actions": types.SimpleNamespace(DeclareLaunchArgument=recording("DeclareLaunchArgument"),
                                                OpaqueFunction=recording("OpaqueFunction")),
        "launch.substitutions": types.SimpleNamespace(LaunchConfiguration=LaunchConfiguration),
        "launch_ros": types.SimpleNamespace(),
        "launch_ros.actions": types.SimpleNamespace(LifecycleNode=recording("LifecycleNode"), Node=recording("Node")),
    }
    for name, module in modules.items():
        monkeypatch.setitem(sys.modules, name, module)
    return types.SimpleNamespace(created=created)


REQUIRED_ARGUMENTS = {"model", "device", "half", "imgsz", "image", "image_transport", "namespace", "params_file"}


def run_launch(arguments: dict[str, str]) -> _Recorder:
    """Build the description, resolve its arguments as ``ros2 launch`` would, and return the node action."""
    node, *others = launch_actions(arguments)
    assert not others, "no video_source without a video argument"
    return node


def launch_actions(arguments: dict[str, str]) -> list[_Recorder]:
    """Every action the launch file starts for these arguments."""
    launch = load_launch_module()
    entities = launch.generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    assert set(declared) >= REQUIRED_ARGUMENTS | {"depth", "camera_info", "use_depth", "video", "video_rate",
                                                  "video_loop"}
    values = {**declared, **arguments}
    context = types.SimpleNamespace(perform_substitution=lambda sub: values[sub.name])
    (opaque,) = [e for e in entities if type(e).__name__ == "OpaqueFunction"]
    return opaque.kwargs["function"](context)


def test_parameter_arguments_default_to_empty_so_the_params_file_decides(fake_launch) -> None:
    entities = load_launch_module().generate_launch_description()
    declared = {e.args[0]: e.kwargs["default_value"] for e in entities if type(e).__name__ == "DeclareLaunchArgument"}
    parameters = ("model", "device", "half", "imgsz", "image_transport")
    assert {name: declared[name] for name in parameters} == dict.fromkeys(parameters, "")


def test_defaults_start_the_lifecycle_node_with_the_package_config_alone(fake_launch) -> None:
    node = run_launch({})
    assert type(node).__name__ == "LifecycleNode"
    kwargs = node.kwargs
    assert (kwargs["package"], kwargs["executable"], kwargs["name"]) == ("fastsam_ros", "fastsam_node", "fastsam")
    # /fastsam/instances, /fastsam/selection, ...: never the generic root names other nodes publish on
    assert kwargs["namespace"] == "fastsam"
    (params_file,) = kwargs["parameters"]  # no overrides: a YAML `device: cuda:0` is not replaced by cpu
    assert Path(params_file).name == "fastsam.yaml" and Path(params_file).exists()
    assert ("image", "/camera/image_raw") in kwargs["remappings"]
    assert ("depth", "/camera/depth/image_raw") in kwargs["remappings"]
    assert ("camera_info", "/camera/camera_info") in kwargs["remappings"]


def test_given_arguments_override_the_file_with_typed_values(fake_launch) -> None:
    node = run_launch({"model": "/opt/FastSAM-x.engine", "device": "cuda:0", "half": "true", "imgsz": "320",
                       "image": "/front/image", "namespace": "perception", "params_file": "/tmp/mine.yaml"})
    kwargs = node.kwargs
    assert kwargs["namespace"] == "perception"
    assert kwargs["parameters"] == ["/tmp/mine.yaml", {"model": "/opt/FastSAM-x.engine", "device": "cuda:0",
                                                       "half": True, "imgsz": 320}]
    assert ("image/compressed", "/front/image/compressed") in kwargs["remappings"]


def test_depth_arguments_remap_the_depth_inputs_and_switch_use_depth(fake_launch) -> None:
    node = run_launch({"depth": "/cam/aligned_depth_to_color/image_raw", "camera_info": "/cam/color/camera_info",
                       "use_depth": "True"})
    kwargs = node.kwargs
    assert kwargs["parameters"][1] == {"use_depth": True}
    assert ("depth", "/cam/aligned_depth_to_color/image_raw") in kwargs["remappings"]
    assert ("camera_info", "/cam/color/camera_info") in kwargs["remappings"]


def test_only_the_given_arguments_override(fake_launch) -> None:
    node = run_launch({"device": "cuda:0", "image_transport": "compressed", "half": "False"})
    assert node.kwargs["parameters"][1] == {"device": "cuda:0", "image_transport": "compressed", "half": False}


@pytest.mark.parametrize(("name", "text", "expected"), [("imgsz", "big", "int"), ("half", "yes", "true or false")])
def test_a_mistyped_argument_is_refused_by_name(fake_launch, name: str, text: str, expected: str) -> None:
    with pytest.raises(ValueError, match=f"{name}:='{text}': expected .*{expected}"):
        run_launch({name: text})


def test_spec_becomes_an_equivalent_ros_args_command_line() -> None:
    spec = load_launch_module().node_spec("/cam/image", "ns", "/p.yaml", model="m.pt", half=True)
    command = command_from_spec(spec, {"imgsz": 320, "warmup": False})
    args = command[command.index("--ros-args"):]
    assert args[:3] == ["--ros-args", "-r", "__node:=fastsam"]
    assert "__ns:=/ns" in args and "/p.yaml" in args
    assert "model:=m.pt" in args and "half:=true" in args and "imgsz:=320" in args and "warmup:=false" in args
    assert "image:=/cam/image" in args


def test_the_node_description_defaults_to_the_launch_file_s_namespace() -> None:
    """The harness and the tests start the node from ``node_spec``: by default where ``ros2 launch`` puts it."""
    command = command_from_spec(load_launch_module().node_spec(params_file="/p.yaml"), {})
    assert "__ns:=/fastsam" in command and "image:=/camera/image_raw" in command


def test_namespace_slash_puts_the_node_at_the_root(fake_launch) -> None:
    assert run_launch({"namespace": "/"}).kwargs["namespace"] == "/"
    command = command_from_spec(load_launch_module().node_spec(namespace="/", params_file="/p.yaml"), {})
    assert "__ns:=/" in command


def test_spec_without_overrides_passes_the_file_alone() -> None:
    command = command_from_spec(load_launch_module().node_spec(params_file="/p.yaml"), {})
    assert "-p" not in command and command[command.index("--params-file") + 1] == "/p.yaml"


def test_a_video_argument_also_starts_video_source_on_the_node_s_camera_topic(fake_launch) -> None:
    node, video = launch_actions({"video": "/data/clip.mp4", "video_rate": "5", "video_loop": "true",
                                  "image": "/front/image", "camera_info": "/front/camera_info",
                                  "namespace": "perception"})
    assert type(node).__name__ == "LifecycleNode" and type(video).__name__ == "Node"
    kwargs = video.kwargs
    assert (kwargs["package"], kwargs["executable"], kwargs["namespace"]) == ("fastsam_ros", "video_source",
                                                                               "perception")
    assert kwargs["parameters"] == [{"source": "/data/clip.mp4", "rate": 5.0, "loop": True}]
    assert ("image", "/front/image") in kwargs["remappings"]
    assert ("camera_info", "/front/camera_info") in kwargs["remappings"]


def test_cameras_remap_each_camera_under_its_name(fake_launch) -> None:
    node = run_launch({"cameras": "[front, rear]", "image": "/{camera}/color/image_raw"})
    kwargs = node.kwargs
    assert kwargs["parameters"][1] == {"cameras": ["front", "rear"]}
    remaps = dict(kwargs["remappings"])
    assert remaps["front/image"] == "/front/color/image_raw" and remaps["rear/image"] == "/rear/color/image_raw"
    assert remaps["rear/image/compressed"] == "/rear/color/image_raw/compressed"
    # left at their defaults, depth and camera_info follow the single-camera names under each camera
    assert remaps["front/depth"] == "/front/depth/image_raw" and remaps["rear/camera_info"] == "/rear/camera_info"
    assert "image" not in remaps, "no camera without a name"


def test_with_cameras_a_topic_without_the_camera_placeholder_is_refused(fake_launch) -> None:
    with pytest.raises(ValueError, match=r"image:='/one/image': with cameras, name each camera's topic with "
                                         r"\{camera\}"):
        run_launch({"cameras": "[front,rear]", "image": "/one/image"})


def test_a_video_plays_as_the_first_camera(fake_launch) -> None:
    _, video = launch_actions({"cameras": "[front,rear]", "video": "clip.mp4"})
    assert ("image", "/front/image_raw") in video.kwargs["remappings"]


def test_the_web_page_shows_the_first_camera(fake_launch) -> None:
    _, web = launch_actions({"cameras": "[front,rear]", "web": "true"})
    assert web.kwargs["namespace"] == "fastsam/front"
