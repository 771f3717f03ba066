"""Prompt files: JSON that says which prompts to answer on which images (pure, no inference).

Two forms are accepted::

    [{"id": "cup", "points": [[320, 240]]}, ...]                  # applied to every image
    {"bus.jpg": [{"id": "a", "boxes": [[10, 20, 200, 400]]}], ...}  # per image file name

A prompt is ``{"id": str, "points": [[x, y], ...], "labels": [1, 0, ...], "boxes": [[x1, y1, x2, y2], ...],
"text": str}``; every key but ``id`` is optional and labels default to all foreground. Only the *form*
is checked here (types, shapes, ids); whether a point lies inside a given image is selection's business.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsam_ros.types import BACKGROUND, FOREGROUND, Prompt

PROMPT_KEYS = ("id", "points", "labels", "boxes", "text")
RESERVED_IDS = ("overlay",)  # the CLI writes <stem>_overlay.png beside <stem>_<id>.png
_ID_PATTERN = re.compile(r"[\w.-]+")  # ids become file names: no separators, no spaces


class PromptFileError(ValueError):
    """A malformed prompt file; the message names the file and the problem."""


@dataclass(frozen=True)
class PromptPlan:
    """The prompts to answer on each image.

    ``common`` prompts apply to every image; ``per_image`` (None for a file in list form) maps an image's
    file name to its own prompts, and images it does not name get only the common ones.
    """

    common: tuple[Prompt, ...] = ()
    per_image: Mapping[str, tuple[Prompt, ...]] | None = None
    source: str = ""  # where the plan came from, for messages

    def for_image(self, *names: str) -> tuple[Prompt, ...]:
        """The prompts for the first of ``names`` the plan knows (e.g. a frame's name, then its video's)."""
        for name in names:
            if self.per_image is not None and name in self.per_image:
                return (*self.common, *self.per_image[name])
        return self.common

    def with_common(self, prompt: Prompt, origin: str) -> PromptPlan:
        """This plan with ``prompt`` added for every image; ``origin`` names it if its id is already taken."""
        lists = [self.common, *(self.per_image or {}).values()]
        if any(other.id == prompt.id for prompts in lists for other in prompts):
            raise PromptFileError(f"prompt file {self.source}: id {prompt.id!r} is taken by {origin}")
        return PromptPlan(common=(*self.common, prompt), per_image=self.per_image, source=self.source)


def load_prompts(path: str | Path) -> PromptPlan:
    """Read and check a prompt file; raises :class:`PromptFileError` naming the file and the problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise PromptFileError(f"prompt file {path}: cannot read it: {error}") from error
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise PromptFileError(
            f"prompt file {path}: invalid JSON at line {error.lineno} column {error.colno}: {error.msg}"
        ) from error
    return parse_prompts(data, source=str(path))


def parse_prompts(data: Any, source: str = "<prompts>") -> PromptPlan:
    """Check already-decoded JSON (a list of prompts, or an object of lists keyed by image file name)."""
    try:
        if isinstance(data, list):
            return PromptPlan(common=parse_prompt_list(data, ""), source=source)
        if isinstance(data, dict) and set(data) & set(PROMPT_KEYS):
            raise PromptFileError(
                f"holds one prompt object ({', '.join(map(repr, sorted(set(data) & set(PROMPT_KEYS))))} at the top "
                "level); put it in a list, [{...}], to apply it to every image, or key lists of prompts by image "
                'file name, {"bus.jpg": [{...}]}'
            )
        if isinstance(data, dict):
            per_image = {}
            for name, prompts in data.items():
                if not name.strip():
                    raise PromptFileError("an image name is empty")
                if not isinstance(prompts, list):
                    raise PromptFileError(f"{name!r}: expected a list of prompts, got {_kind(prompts)}")
                per_image[name] = parse_prompt_list(prompts, f"{name!r}: ")
            return PromptPlan(per_image=per_image, source=source)
        raise PromptFileError(
            f"expected a list of prompts or an object mapping image names to lists of prompts, got {_kind(data)}"
        )
    except PromptFileError as error:
        raise PromptFileError(f"prompt file {source}: {error}") from None


def parse_prompt_list(items: list[Any], where: str = "") -> tuple[Prompt, ...]:
    """A list of prompt objects, with unique ids."""
    prompts: list[Prompt] = []
    seen: set[str] = set()
    for index, item in enumerate(items):
        prompt = parse_prompt(item, f"{where}prompt {index}")
        if prompt.id in seen:
            raise PromptFileError(f"{where}prompt {index}: duplicate id {prompt.id!r}")
        seen.add(prompt.id)
        prompts.append(prompt)
    return tuple(prompts)


def parse_prompt(item: Any, where: str = "prompt") -> Prompt:
    """One prompt object as a :class:`Prompt`; ``where`` prefixes error messages."""
    if not isinstance(item, dict):
        raise PromptFileError(f"{where}: expected an object, got {_kind(item)}")
    unknown = sorted(set(item) - set(PROMPT_KEYS))
    if unknown:
        allowed = ", ".join(PROMPT_KEYS)
        raise PromptFileError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; allowed: {allowed}")
    if "id" not in item:
        raise PromptFileError(f"{where}: missing 'id'")
    prompt_id = item["id"]
    if not isinstance(prompt_id, str) or not _ID_PATTERN.fullmatch(prompt_id) or prompt_id in (".", ".."):
        raise PromptFileError(
            f"{where}: id must be a non-empty string of letters, digits, '_', '-' or '.', got {prompt_id!r}"
        )
    if prompt_id in RESERVED_IDS:
        raise PromptFileError(f"{where}: id {prompt_id!r} is reserved")
    where = f"{where} ({prompt_id!r})"

    points = tuple(
        _numbers(p, 2, f"{where}: points[{i}]", "[x, y]") for i, p in enumerate(_list(item, "points", where))
    )
    boxes = tuple(
        _numbers(b, 4, f"{where}: boxes[{i}]", "[x1, y1, x2, y2]") for i, b in enumerate(_list(item, "boxes", where))
    )
    labels = tuple(_label(v, f"{where}: labels[{i}]") for i, v in enumerate(_list(item, "labels", where)))
    if "labels" in item and len(labels) != len(points):
        raise PromptFileError(f"{where}: {len(points)} points but {len(labels)} labels")
    if not labels:
        labels = (FOREGROUND,) * len(points)
    text = item.get("text", "")
    if not isinstance(text, str):
        raise PromptFileError(f"{where}: 'text' must be a string, got {_kind(text)}")
    if not (points or boxes or text.strip()):
        raise PromptFileError(f"{where}: has no points, boxes or text")
    return Prompt(id=prompt_id, points=points, labels=labels, boxes=boxes, text=text)


def _list(item: dict[str, Any], key: str, where: str) -> list[Any]:
    value = item.get(key, [])
    if not isinstance(value, list):
        raise PromptFileError(f"{where}: '{key}' must be a list, got {_kind(value)}")
    return value


def _numbers(value: Any, count: int, where: str, form: str) -> tuple[float, ...]:
    if not (isinstance(value, list) and len(value) == count and all(_is_number(v) for v in value)):
        raise PromptFileError(f"{where}: expected {form} as {count} finite numbers, got {json.dumps(value)}")
    return tuple(float(v) for v in value)


def _label(value: Any, where: str) -> int:
    if isinstance(value, bool) or value not in (FOREGROUND, BACKGROUND):
        raise PromptFileError(f"{where}: expected 1 (foreground) or 0 (background), got {json.dumps(value)}")
    return int(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def names_not_in(plan: PromptPlan, names: Iterable[str]) -> list[str]:
    """Image names the plan lists that are not among ``names`` (likely typos worth a warning)."""
    if plan.per_image is None:
        return []
    known = set(names)
    return [name for name in plan.per_image if name not in known]
