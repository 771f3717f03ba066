"""``fastsam-segment`` end to end, in-process with one shared tiny engine (plus one subprocess and one real model)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_ros.cli import main
from fastsam_ros.prompts.selection import select
from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine
from fastsam_ros.types import Prompt

REPO = Path(__file__).resolve().parents[1]
WIDTH, HEIGHT = 160, 120
RECORD_KEYS = {"image", "width", "height", "timings_ms", "instances", "prompts"}
ANSWER_KEYS = {"status", "reason", "score", "bbox", "area"}


def scene_image(shift: int = 0) -> np.ndarray:
    image = np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8)
    cv2.circle(image, (50 + shift, 60), 30, (0, 0, 255), -1)
    cv2.rectangle(image, (100, 20), (150, 100), (255, 0, 0), -1)
    return image


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> FastSAMEngine:
    return FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160))


@pytest.fixture(scope="module")
def scene(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    cv2.imwrite(str(path), scene_image())
    return path


@pytest.fixture(scope="module")
def inside(engine: FastSAMEngine, scene: Path) -> tuple[int, int]:
    """A pixel where a click selects something with the tiny model (its random masks are small)."""
    segmentation = engine.segment(cv2.imread(str(scene)))
    for index in np.argsort(-segmentation.areas):
        ys, xs = np.nonzero(segmentation.full_mask(int(index)))
        for y, x in zip(ys[:: max(len(ys) // 20, 1)], xs[:: max(len(xs) // 20, 1)], strict=True):
            if select(segmentation, Prompt(id="t", points=((float(x), float(y)),))).ok:
                return int(x), int(y)
    pytest.fail("the tiny model selected nothing anywhere")


class ExplodingEngine:
    """Stands in for an engine that must not be reached, or that fails on every image."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def segment(self, image: np.ndarray) -> None:
        raise self.error


def read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_single_image_writes_json_overlay_and_a_mask_per_ok_prompt(
    engine: FastSAMEngine, scene: Path, inside: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "scene_off.png").write_bytes(b"stale mask from an earlier run")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps([{"id": "hit", "points": [list(inside)]}, {"id": "off", "points": [[500, 5]]},
                                   {"id": "words", "text": "a red ball"}]))
    code = main([str(scene), "--prompts", str(prompts), "--box", f"0,0,{WIDTH},{HEIGHT}", "--point", "5,5,0",
                 "--out", str(out)], engine=engine)
    assert code == 3, "exit 3: the image was segmented but 'off' and 'words' were not answered ok"

    record = read_json(out / "scene.json")
    assert set(record) == RECORD_KEYS
    assert (record["image"], record["width"], record["height"]) == ("scene.png", WIDTH, HEIGHT)
    assert {"preprocess", "inference", "postprocess", "total"} <= set(record["timings_ms"])
    assert record["instances"], "the tiny model reports instances on any image"
    for i, instance in enumerate(record["instances"]):
        assert set(instance) == {"index", "box", "score", "area"} and instance["index"] == i
        assert len(instance["box"]) == 4
    assert list(record["prompts"]) == ["hit", "off", "words", "cli"]
    assert all(set(answer) == ANSWER_KEYS for answer in record["prompts"].values())

    hit = record["prompts"]["hit"]
    assert hit["status"] == "ok" and hit["score"] > 0 and hit["area"] > 0
    mask = cv2.imread(str(out / "scene_hit.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (HEIGHT, WIDTH) and mask.dtype == np.uint8
    assert set(np.unique(mask)) <= {0, 255}
    assert mask[inside[1], inside[0]] == 255
    assert np.count_nonzero(mask) == hit["area"]
    ys, xs = np.nonzero(mask)
    assert hit["bbox"] == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]

    for failed, status in (("off", "invalid"), ("words", "error")):
        answer = record["prompts"][failed]
        assert answer["status"] == status and answer["reason"]
        assert answer["score"] is None and answer["bbox"] is None and answer["area"] is None
        assert not (out / f"scene_{failed}.png").exists(), "masks are written only for ok answers"
    assert (out / "scene_cli.png").exists() == (record["prompts"]["cli"]["status"] == "ok")

    overlay = cv2.imread(str(out / "scene_overlay.png"), cv2.IMREAD_UNCHANGED)
    assert overlay.shape == (HEIGHT, WIDTH, 3)
    assert "scene.png:" in capsys.readouterr().out


def test_folder_reports_a_corrupt_image_and_goes_on(
    engine: FastSAMEngine, inside: tuple[int, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), scene_image())
    cv2.imwrite(str(folder / "a.png"), scene_image(shift=10))  # same stem: must not overwrite a.jpg's results
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, ignored")
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({"a.jpg": [{"id": "hit", "points": [list(inside)]}], "typo.jpg": [],
                                   "a.png": [{"id": "off", "points": [[500, 5]]}]}))
    out = tmp_path / "out"

    code = main([str(folder), "--prompts", str(prompts), "--out", str(out)], engine=engine)
    err = capsys.readouterr().err
    assert code == 1, "a failed image wins over a prompt that was not ok (3)"
    assert "broken.jpg" in err and "not a readable image" in err and "Traceback" not in err
    assert "typo.jpg" in err, "prompt-file keys that match no image are worth a warning"
    assert sorted(p.name for p in out.glob("*.json")) == ["a.json", "a_png.json"]
    assert list(read_json(out / "a.json")["prompts"]) == ["hit"]
    assert read_json(out / "a_png.json")["prompts"]["off"]["status"] == "invalid"
    assert read_json(out / "a_png.json")["image"] == "a.png"

    (folder / "broken.jpg").unlink()
    assert main([str(folder), "--prompts", str(prompts), "--out", str(out)], engine=engine) == 3
    assert "1 prompt answer(s) were not ok" in capsys.readouterr().err
    assert main([str(folder), "--out", str(out)], engine=engine) == 0


@pytest.mark.parametrize(("codec", "suffix"), [("MJPG", ".avi"), ("mp4v", ".mp4")])
def test_video_frames_are_numbered(
    engine: FastSAMEngine, tmp_path: Path, codec: str, suffix: str, capsys: pytest.CaptureFixture[str]
) -> None:
    video = tmp_path / f"clip{suffix}"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*codec), 5.0, (WIDTH, HEIGHT))
    if not writer.isOpened():
        pytest.skip(f"OpenCV cannot write {codec} here")
    for shift in range(3):
        writer.write(scene_image(shift * 5))
    writer.release()
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({video.name: [{"id": "off", "points": [[500, 5]]}]}))
    out = tmp_path / "out"

    assert main([str(video), "--max-frames", "2", "--prompts", str(prompts), "--out", str(out)], engine=engine) == 3
    assert sorted(p.name for p in out.glob("*.json")) == ["clip_000000.json", "clip_000001.json"]
    record = read_json(out / "clip_000001.json")
    assert record["image"] == "clip_000001" and list(record["prompts"]) == ["off"]
    assert (out / "clip_000001_overlay.png").exists()
    assert main([str(video), "--out", str(out)], engine=engine) == 0
    assert (out / "clip_000002.json").exists()
    assert "frame" in capsys.readouterr().err, "a progress bar on videos"


def test_a_truncated_video_is_reported_and_fails(
    engine: FastSAMEngine, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    whole = tmp_path / "whole.avi"
    writer = cv2.VideoWriter(str(whole), cv2.VideoWriter_fourcc(*"MJPG"), 5.0, (WIDTH, HEIGHT))
    if not writer.isOpened():
        pytest.skip("OpenCV cannot write MJPG here")
    rng = np.random.default_rng(0)
    for _ in range(24):  # noise: every MJPG frame is about the same size, so a quarter of the file holds ~6
        writer.write(rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8))
    writer.release()
    cut = tmp_path / "cut.avi"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 4])
    capture = cv2.VideoCapture(str(cut))
    stated = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    if stated != 24:
        pytest.skip(f"this OpenCV does not read the frame count from a cut AVI header (got {stated})")
    out = tmp_path / "out"

    assert main([str(cut), "--out", str(out)], engine=engine) == 1
    err = capsys.readouterr().err
    decoded = len(list(out.glob("*.json")))
    assert 0 < decoded < 24
    assert f"ended after {decoded} of the 24 frames its container states (truncated or corrupt)" in err
    assert f"{decoded} frames segmented, 1 failed" in err
    assert main([str(whole), "--out", str(tmp_path / "whole")], engine=engine) == 0, "the intact video is fine"
    assert main([str(cut), "--max-frames", "3", "--out", str(tmp_path / "head")], engine=engine) == 0, \
        "frames before the cut are whole"


class FakeCamera:
    """A camera that yields ``frames`` images, then raises ``then`` (Ctrl-C) or reports no frame."""

    def __init__(self, frames: int, then: BaseException | None = None) -> None:
        self.frames, self.then, self.released = frames, then, False

    def isOpened(self) -> bool:  # OpenCV's name
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        if self.frames == 0:
            if self.then is not None:
                raise self.then
            return False, None
        self.frames -= 1
        return True, scene_image()

    def release(self) -> None:
        self.released = True

    def get(self, prop: int) -> float:  # OpenCV's name; no property is known (the frame rate: 0)
        return 0.0


def test_camera_frames_stop_at_max_frames_or_cleanly_on_ctrl_c(
    engine: FastSAMEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    camera = FakeCamera(frames=5)
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: camera if index == 7 else None)
    out = tmp_path / "out"
    assert main(["7", "--max-frames", "2", "--out", str(out)], engine=engine) == 0
    assert sorted(p.name for p in out.glob("*.json")) == ["camera7_000000.json", "camera7_000001.json"]
    assert camera.released

    camera = FakeCamera(frames=1, then=KeyboardInterrupt())
    assert main(["7", "--out", str(tmp_path / "live")], engine=engine) == 0, "Ctrl-C is how a camera stops"
    assert (tmp_path / "live" / "camera7_000000.json").exists() and camera.released
    assert "stopped after 1 frame(s)" in capsys.readouterr().err


def test_loads_the_model_named_on_the_command_line(tiny_model: Path, scene: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main([str(scene), "--model", str(tiny_model), "--imgsz", "160", "--out", str(out)]) == 0
    assert read_json(out / "scene.json")["prompts"] == {}


def test_missing_model_is_one_clear_message(scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main([str(scene), "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert "nope.pt does not exist" in err and "Traceback" not in err


def test_a_device_no_runtime_reads_is_a_usage_error(scene: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(scene), "--device", "gpu0"]) == 2
    err = capsys.readouterr().err
    assert "device must be cpu, cuda:N" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("content", "problem"),
    [("[{", "invalid JSON"), ('[{"points": [[1, 2]]}]', "missing 'id'"),
     ('[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "duplicate id 'a'"),
     ('[{"id": "cli", "text": "x"}]', "id 'cli' is taken by --point/--box"),
     ('{"id": "a", "points": [[1, 2]]}', "holds one prompt object ('id', 'points' at the top level); put it in a "
      "list, [{...}]")],
)
def test_bad_prompt_file_stops_before_inference(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, problem: str
) -> None:
    prompts = tmp_path / "bad.json"
    prompts.write_text(content)
    out = tmp_path / "out"
    code = main([str(scene), "--prompts", str(prompts), "--point", "1,1", "--out", str(out)],
                engine=ExplodingEngine(AssertionError("inference must not run")))
    err = capsys.readouterr().err
    assert code == 2
    assert str(prompts) in err and problem in err
    assert not out.exists() or not any(out.iterdir())


def test_sources_that_cannot_be_opened(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    never = ExplodingEngine(AssertionError("inference must not run"))
    assert main([str(tmp_path / "missing.jpg"), "--out", str(tmp_path / "out")], engine=never) == 2
    assert "missing.jpg does not exist" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main([str(tmp_path / "empty"), "--out", str(tmp_path / "out")], engine=never) == 2
    assert "holds no images" in capsys.readouterr().err
    assert main(["99", "--max-frames", "1", "--out", str(tmp_path / "out")], engine=never) == 2
    assert "camera 99 cannot be opened" in capsys.readouterr().err
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    assert main([str(tmp_path / "broken.mp4"), "--out", str(tmp_path / "out")], engine=never) == 2


def test_bad_arguments_exit_2(scene: Path, capsys: pytest.CaptureFixture[str]) -> None:
    never = ExplodingEngine(AssertionError("inference must not run"))
    for bad in (["--point", "1"], ["--point", "1,2,5"], ["--box", "1,2,3"], ["--point", "a,b"], ["--imgsz", "0"]):
        assert main([str(scene), *bad], engine=never) == 2
        assert "error: argument" in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value", "problem"), [
    ("--conf", "2", "2 must be between 0 and 1"), ("--iou", "5", "5 must be between 0 and 1"),
    ("--conf", "-0.1", "-0.1 must be between 0 and 1"), ("--iou", "nan", "nan must be between 0 and 1"),
    ("--conf", "high", "'high' is not a number"), ("--min-text-score", "3", "3 must be between -1 and 1"),
])
def test_thresholds_out_of_range_fail_before_the_model_loads(
    scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str, problem: str
) -> None:
    code = main([str(scene), flag, value, "--model", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert f"argument {flag}: {problem}" in err
    assert "nope.pt" not in err and "Traceback" not in err


def test_readme_synopsis_is_the_parsers_usage() -> None:
    from fastsam_ros.cli import build_parser

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Offline CLI", 1)[1].split("```", 2)[1]
    synopsis = " ".join(block.split())
    usage = " ".join(build_parser().format_usage().split()).removeprefix("usage: ")
    assert synopsis == usage


def test_failures_during_inference_and_ctrl_c(scene: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = str(tmp_path / "out")
    assert main([str(scene), "--out", out], engine=ExplodingEngine(RuntimeError("CUDA fell over"))) == 1
    assert "scene.png: RuntimeError: CUDA fell over" in capsys.readouterr().err
    assert main([str(scene), "--out", out], engine=ExplodingEngine(KeyboardInterrupt())) == 130
    assert "stopped after" in capsys.readouterr().err


def test_help_runs_as_a_module() -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "fastsam_ros.cli", "--help"], capture_output=True, text=True,
                            env=env, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "--prompts FILE" in result.stdout and "--max-frames" in result.stdout


def test_click_on_a_person_in_bus_jpg(standin_model: Path, sample_images: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = main([str(sample_images / "bus.jpg"), "--model", str(standin_model), "--point", "300,500",
                 "--out", str(out)])
    assert code == 0
    answer = read_json(out / "bus.json")["prompts"]["cli"]
    assert answer["status"] == "ok", answer
    mask = cv2.imread(str(out / "bus_cli.png"), cv2.IMREAD_UNCHANGED)
    assert mask.shape == (1080, 810)
    assert mask[500, 300] == 255
    x1, y1, x2, y2 = answer["bbox"]
    assert x2 - x1 < 300 and y2 - y1 > 300, "a standing person, not the bus behind them"
