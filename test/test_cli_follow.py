"""``fastsam-segment`` on a camera: prompts follow the objects they first selected, ``--reapply`` keeps the pixels,
``--video-out`` writes the annotated frames. Exact answers from a fake engine whose masks are painted colours."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_engine import FakeEngine

from fastsam_ros.cli import main
from fastsam_ros.video import VideoReader

SHAPE = (120, 200)
MUG, BOOK, PLATE = (0, 0, 200), (0, 200, 0), (100, 100, 100)  # BGR, distinct red values: separate instances
WORLD = {MUG: (40, 40, 65, 75), BOOK: (0, 30, 30, 90), PLATE: (90, 90, 180, 115)}
PANS = (0, 15, 30, 45)  # the scene moves right; at 45 px the book is under the mug's first pixel
CLICK = "52,57"


def scene(pan: int) -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    for colour, (x1, y1, x2, y2) in WORLD.items():
        frame[y1:y2, x1 + pan : min(x2 + pan, SHAPE[1])] = colour
    return frame


class PanningCamera:
    """cv2.VideoCapture stand-in: the scene at each pan, then the end."""

    def __init__(self) -> None:
        self.frames = [scene(pan) for pan in PANS]

    def isOpened(self) -> bool:  # OpenCV's names
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def get(self, prop: int) -> float:
        return 10.0 if prop == cv2.CAP_PROP_FPS else 0.0

    def release(self) -> None:
        pass


@pytest.fixture()
def camera(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "VideoCapture", lambda index: PanningCamera())


def boxes(out: Path) -> list:
    return [json.loads((out / f"camera3_{n:06d}.json").read_text())["prompts"]["cli"]["bbox"]
            for n in range(len(PANS))]


def test_a_click_on_a_camera_follows_the_mug_and_writes_an_annotated_video(camera, tmp_path: Path) -> None:
    out, video = tmp_path / "out", tmp_path / "annotated.avi"
    assert main(["3", "--point", CLICK, "--out", str(out), "--video-out", str(video)], engine=FakeEngine()) == 0
    x1, y1, x2, y2 = WORLD[MUG]
    assert boxes(out) == [[x1 + pan, y1, x2 + pan, y2] for pan in PANS]
    reader = VideoReader(str(video))
    written = [reader.read() for _ in range(len(PANS) + 1)]
    assert reader.fps == pytest.approx(10.0), "the camera's own rate"
    assert [frame is not None for frame in written] == [True] * len(PANS) + [False]
    assert written[0].shape == (*SHAPE, 3)


def test_reapply_keeps_the_clicked_pixel_and_picks_the_book_once_it_is_there(camera, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert main(["3", "--point", CLICK, "--reapply", "--out", str(out)], engine=FakeEngine()) == 3, \
        "the pixel lies on nothing at pan 15: no_match"
    answers = [json.loads((out / f"camera3_{n:06d}.json").read_text())["prompts"]["cli"] for n in range(len(PANS))]
    assert [a["status"] for a in answers] == ["ok", "no_match", "ok", "ok"]
    x1, y1, x2, y2 = WORLD[BOOK]
    assert [a["bbox"] for a in answers[2:]] == [[x1 + 30, y1, x2 + 30, y2], [x1 + 45, y1, x2 + 45, y2]]


def test_video_out_needs_a_video_or_camera_and_a_video_suffix(tmp_path: Path, capsys) -> None:
    image = tmp_path / "still.png"
    cv2.imwrite(str(image), scene(0))
    assert main([str(image), "--video-out", str(tmp_path / "a.mp4")], engine=FakeEngine()) == 2
    assert "--video-out needs a video file or a camera" in capsys.readouterr().err
    assert main([str(image), "--video-out", str(tmp_path / "a.gif")], engine=FakeEngine()) == 2
    assert "must be a .mp4 or .avi file" in capsys.readouterr().err
