"""``make demo``'s driver end to end: prompts answered, and every saved overlay shows its own prompt's selection."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from harness.demo import run_demo
from harness.overlay_check import shows_selection

REPO = Path(__file__).resolve().parents[1]


def saved(out: Path, image: str, prompt_id: str) -> tuple[np.ndarray, np.ndarray]:
    """The saved overlay (BGR) and selection mask (bool) of one prompt."""
    stem = Path(image).stem
    overlay = cv2.imread(str(out / f"{stem}_{prompt_id}.png"))
    mask = cv2.imread(str(out / f"{stem}_{prompt_id}_mask.png"), cv2.IMREAD_GRAYSCALE) > 0
    return overlay, mask


def test_demo_plays_frames_answers_every_prompt_and_stops_the_node(tiny_model: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the node's exports: none of other tests'
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
    assert json.loads((out / "summary.json").read_text())["images"] == summary["images"]
    for image in summary["images"]:
        for prompt in image["prompts"]:
            overlay = out / f"{Path(image['image']).stem}_{prompt['id']}.png"
            assert overlay.exists() == (prompt["status"] == "ok") == (prompt["overlay"] == overlay.name)


def test_every_saved_overlay_shows_its_own_prompts_selection(
    standin_model: Path, sample_images: Path, tmp_path: Path
) -> None:
    """The demo's own prompts on the real pictures: zidane_tie.png once showed the click on the right man."""
    out = tmp_path / "demo"
    summary = run_demo(str(standin_model), sample_images, REPO / "config" / "demo_prompts.json", out)
    assert summary["node_exit_code"] == 0
    assert [image["image"] for image in summary["images"]] == ["bus.jpg", "cat.jpg", "zidane.jpg"]
    for image in summary["images"]:
        frame = cv2.imread(str(sample_images / image["image"]))
        ids = [p["id"] for p in image["prompts"]]
        assert all(p["status"] == "ok" and p["overlay"] for p in image["prompts"]), image["prompts"]
        for prompt_id in ids:
            overlay, mask = saved(out, image["image"], prompt_id)
            assert mask.shape == frame.shape[:2] and mask.any()
            assert shows_selection(overlay, frame, mask), f"{image['image']}: {prompt_id}"
        for first, second in itertools.permutations(ids, 2):
            overlay, _ = saved(out, image["image"], first)
            _, other = saved(out, image["image"], second)
            _, own = saved(out, image["image"], first)
            if np.count_nonzero(own & other) < 0.5 * np.count_nonzero(other):  # a different object
                assert not shows_selection(overlay, frame, other & ~own), f"{first} shows {second}'s selection"
