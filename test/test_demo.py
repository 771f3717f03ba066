"""``make demo``'s driver end to end with the tiny model on synthetic frames: prompts answered, files written."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from fastsam_ros.demo import run_demo


def test_demo_plays_frames_answers_every_prompt_and_stops_the_node(tiny_model: Path, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(4)
    for name in ("a.png", "b.png", "unprompted.png"):
        cv2.imwrite(str(images / name), rng.integers(0, 256, (240, 320, 3), dtype=np.uint8))
    prompts = tmp_path / "prompts.json"
    prompts.write_text(json.dumps({
        "a.png": [{"id": "click", "points": [[160, 120]]}, {"id": "whole", "boxes": [[0, 0, 320, 240]]}],
        "b.png": [{"id": "fg_bg", "points": [[100, 100], [10, 10]], "labels": [1, 0]}],
    }))
    out = tmp_path / "out"
    summary = run_demo(str(tiny_model), images, prompts, out)
    assert summary["node_exit_code"] == 0
    assert [image["image"] for image in summary["images"]] == ["a.png", "b.png"]
    answered = {p["id"]: p for image in summary["images"] for p in image["prompts"]}
    assert set(answered) == {"click", "whole", "fg_bg"}
    assert answered["click"]["sent_as"] == "click" and answered["whole"]["sent_as"] == "prompt"
    assert all(p["status"] in ("ok", "no_match") for p in answered.values())
    assert json.loads((out / "summary.json").read_text())["images"] == summary["images"]
    for image in summary["images"]:
        for prompt in image["prompts"]:
            overlay = out / f"{Path(image['image']).stem}_{prompt['id']}.png"
            assert overlay.exists() == (prompt["status"] == "ok")
