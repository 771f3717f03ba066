"""Prompt files: both forms, defaults, lookups, and a clear error naming the file for every malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fastsam_ros.prompts.prompt_file import PromptFileError, PromptPlan, load_prompts, names_not_in, parse_prompts
from fastsam_ros.types import Prompt


def write(tmp_path: Path, content: object, name: str = "prompts.json") -> Path:
    path = tmp_path / name
    path.write_text(content if isinstance(content, str) else json.dumps(content), encoding="utf-8")
    return path


def test_list_form_applies_to_every_image(tmp_path: Path) -> None:
    path = write(tmp_path, [
        {"id": "a", "points": [[10, 20], [30.5, 40]], "labels": [1, 0]},
        {"id": "b", "boxes": [[1, 2, 3, 4]]},
        {"id": "c", "points": [[5, 6]], "boxes": [[0, 0, 9, 9]], "text": "a cup"},
    ])
    plan = load_prompts(path)
    assert plan.per_image is None
    assert plan.source == str(path)
    a, b, c = plan.for_image("bus.jpg")
    assert a == Prompt(id="a", points=((10.0, 20.0), (30.5, 40.0)), labels=(1, 0))
    assert b == Prompt(id="b", boxes=((1.0, 2.0, 3.0, 4.0),))
    assert c.text == "a cup" and c.labels == (1,), "labels default to all foreground"
    assert plan.for_image("anything.png") == plan.for_image("bus.jpg")


def test_mapping_form_is_per_image_file_name(tmp_path: Path) -> None:
    plan = load_prompts(write(tmp_path, {
        "bus.jpg": [{"id": "a", "points": [[1, 2]]}, {"id": "b", "text": "bus"}],
        "dogs.jpg": [{"id": "a", "boxes": [[0, 0, 5, 5]]}],  # ids only need to be unique per image
        "empty.jpg": [],
    }))
    assert [p.id for p in plan.for_image("bus.jpg")] == ["a", "b"]
    assert plan.for_image("dogs.jpg")[0].boxes == ((0.0, 0.0, 5.0, 5.0),)
    assert plan.for_image("empty.jpg") == ()
    assert plan.for_image("zidane.jpg") == (), "images the file does not name get no prompts"
    assert plan.for_image("clip_000003", "clip.mp4") == plan.for_image("clip.mp4") == ()
    assert names_not_in(plan, ["bus.jpg", "dogs.jpg"]) == ["empty.jpg"]


def test_lookup_falls_back_to_later_names() -> None:
    plan = parse_prompts({"clip.mp4": [{"id": "a", "points": [[1, 2]]}], "clip_000002": [{"id": "b", "text": "x"}]})
    assert [p.id for p in plan.for_image("clip_000001", "clip.mp4")] == ["a"]
    assert [p.id for p in plan.for_image("clip_000002", "clip.mp4")] == ["b"], "the frame's own name wins"


def test_with_common_adds_a_prompt_everywhere_and_rejects_a_taken_id() -> None:
    extra = Prompt(id="cli", points=((1.0, 1.0),), labels=(1,))
    listed = parse_prompts([{"id": "a", "text": "x"}], source="p.json").with_common(extra, "--point")
    assert [p.id for p in listed.for_image("x.jpg")] == ["a", "cli"]
    mapped = parse_prompts({"x.jpg": [{"id": "a", "text": "x"}]}, source="p.json").with_common(extra, "--point")
    assert [p.id for p in mapped.for_image("x.jpg")] == ["cli", "a"]
    assert [p.id for p in mapped.for_image("y.jpg")] == ["cli"]
    assert [p.id for p in PromptPlan().with_common(extra, "--point").for_image("z.png")] == ["cli"]
    with pytest.raises(PromptFileError, match=r"p\.json: id 'cli' is taken by --point"):
        parse_prompts({"x.jpg": [{"id": "cli", "text": "x"}]}, source="p.json").with_common(extra, "--point")


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ('[{"id": "a", "points": [[1, 2]]]', "invalid JSON at line 1 column"),
        ("", "invalid JSON"),
        ('"just a string"', "expected a list of prompts or an object"),
        ('{"bus.jpg": {"id": "a"}}', "'bus.jpg': expected a list of prompts, got an object"),
        ('{"": []}', "an image name is empty"),
        ("[[1, 2]]", "prompt 0: expected an object, got a list"),
        ('[{"points": [[1, 2]]}]', "prompt 0: missing 'id'"),
        ('[{"id": 3, "points": [[1, 2]]}]', "id must be a non-empty string"),
        ('[{"id": "", "points": [[1, 2]]}]', "id must be a non-empty string"),
        ('[{"id": "a/b", "points": [[1, 2]]}]', "id must be a non-empty string"),
        ('[{"id": "..", "points": [[1, 2]]}]', "id must be a non-empty string"),
        ('[{"id": "overlay", "points": [[1, 2]]}]', "id 'overlay' is reserved"),
        ('[{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]', "prompt 1: duplicate id 'a'"),
        ('{"bus.jpg": [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}]}', "'bus.jpg': prompt 1: duplicate id"),
        ('[{"id": "a", "point": [[1, 2]]}]', "unknown key(s) 'point'"),
        ('[{"id": "a", "points": [1, 2]}]', "points[0]: expected [x, y] as 2 finite numbers, got 1"),
        ('[{"id": "a", "points": [[1, 2, 3]]}]', "points[0]: expected [x, y]"),
        ('[{"id": "a", "points": [["1", 2]]}]', "points[0]: expected [x, y]"),
        ('[{"id": "a", "points": [[true, 2]]}]', "points[0]: expected [x, y]"),
        ('[{"id": "a", "points": [[NaN, 2]]}]', "points[0]: expected [x, y]"),
        ('[{"id": "a", "points": {"x": 1}}]', "'points' must be a list, got an object"),
        ('[{"id": "a", "points": [[1, 2]], "labels": [1, 0]}]', "1 points but 2 labels"),
        ('[{"id": "a", "points": [[1, 2]], "labels": [2]}]', "labels[0]: expected 1 (foreground) or 0"),
        ('[{"id": "a", "points": [[1, 2]], "labels": [true]}]', "labels[0]: expected 1 (foreground) or 0"),
        ('[{"id": "a", "points": [[1, 2]], "labels": 1}]', "'labels' must be a list, got a number"),
        ('[{"id": "a", "boxes": [[1, 2, 3]]}]', "boxes[0]: expected [x1, y1, x2, y2] as 4 finite numbers"),
        ('[{"id": "a", "boxes": [1, 2, 3, 4]}]', "boxes[0]: expected [x1, y1, x2, y2]"),
        ('[{"id": "a", "text": 5}]', "'text' must be a string, got a number"),
        ('[{"id": "a"}]', "has no points, boxes or text"),
        ('[{"id": "a", "text": "  "}]', "has no points, boxes or text"),
    ],
)
def test_malformed_files_name_the_file_and_the_problem(tmp_path: Path, content: str, problem: str) -> None:
    path = write(tmp_path, content)
    with pytest.raises(PromptFileError) as caught:
        load_prompts(path)
    message = str(caught.value)
    assert message.startswith(f"prompt file {path}: "), message
    assert problem in message, message


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match=r"missing\.json: cannot read it"):
        load_prompts(tmp_path / "missing.json")
    binary = tmp_path / "binary.json"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(PromptFileError, match=r"binary\.json"):
        load_prompts(binary)
