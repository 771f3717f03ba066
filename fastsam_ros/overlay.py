"""A picture of one frame's segmentation and prompt answers (pure numpy/OpenCV; the CLI and the node's debug image).

* every instance tinted in its own colour at low alpha, with a thin outline in that colour; where
  instances nest, the smaller one's tint is on top and both outlines show;
* each prompt's selected objects filled strongly in the prompt's highlight colour, with a thick outline
  and a tag ``id score``;
* prompt points as green (foreground) or red (background) dots, prompt boxes as rectangles in the
  prompt's colour, and a legend with each prompt's status.

Instance masks are upsampled only inside their own boxes, so the cost follows the instances' area.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence

import cv2
import numpy as np

from fastsam_ros.types import BACKGROUND, Prompt, Segmentation, Selection

INSTANCE_ALPHA = 0.35
SELECTION_ALPHA = 0.6
FOREGROUND_BGR = (0, 200, 0)
BACKGROUND_BGR = (0, 0, 230)
# Saturated highlight colours (BGR) for prompts: yellow, magenta, cyan, orange, spring green, violet.
HIGHLIGHT_BGR = ((0, 255, 255), (255, 0, 255), (255, 255, 0), (0, 140, 255), (128, 255, 0), (255, 80, 160))
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def instance_colors(count: int) -> np.ndarray:
    """``(count, 3)`` uint8 BGR colours, distinct for neighbouring indices (golden-ratio hue steps)."""
    colors = np.zeros((count, 3), dtype=np.uint8)
    for i in range(count):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 == 0 else 0.8
        r, g, b = colorsys.hsv_to_rgb(hue, 0.65, value)
        colors[i] = (round(b * 255), round(g * 255), round(r * 255))
    return colors


def highlight_color(index: int) -> tuple[int, int, int]:
    return HIGHLIGHT_BGR[index % len(HIGHLIGHT_BGR)]


def draw_overlay(
    image_bgr: np.ndarray,
    segmentation: Segmentation,
    selections: Sequence[Selection] = (),
    prompts: Sequence[Prompt] = (),
) -> np.ndarray:
    """A new BGR image: ``image_bgr`` with every instance, the selections and the prompts drawn on it."""
    height, width = image_bgr.shape[:2]
    if (height, width) != segmentation.image_shape:
        raise ValueError(f"image is {width}x{height} but the segmentation is of a "
                         f"{segmentation.image_shape[1]}x{segmentation.image_shape[0]} image")
    scale = max(min(height, width) / 480.0, 0.5)  # line widths and text follow the image size
    out = _draw_instances(image_bgr, segmentation, thickness=max(1, round(scale)))

    color_of = {prompt.id: highlight_color(i) for i, prompt in enumerate(prompts)}
    for i, selection in enumerate(selections):
        color_of.setdefault(selection.prompt_id, highlight_color(len(prompts) + i))
    line = max(1, round(2 * scale))
    for prompt in prompts:  # boxes under the selections, so the selections' tags stay readable
        for box in prompt.boxes:
            _draw_box(out, box, color_of[prompt.id], line)
    for selection in selections:
        for obj in selection.objects:
            _draw_selected(out, obj.mask, obj.box, color_of[selection.prompt_id],
                           f"{selection.prompt_id} {obj.score:.2f}", scale)
    for prompt in prompts:
        _draw_points(out, prompt, scale)
    _draw_legend(out, selections, color_of, scale)
    return out


def _draw_instances(image_bgr: np.ndarray, segmentation: Segmentation, thickness: int) -> np.ndarray:
    """Tint every instance (one blend over the frame) and outline each one in its colour."""
    count = len(segmentation)
    if count == 0:
        return image_bgr.copy()
    colors = instance_colors(count)
    painted = image_bgr.copy()
    outlines: list[tuple[int, list[np.ndarray]]] = []
    segmentation.masks.make()  # every instance's pixels, in few kernel calls
    # Largest first, so where instances nest the smaller one's colour ends up on top.
    for index in np.argsort(-segmentation.areas, kind="stable"):
        region, x0, y0 = segmentation.instance_region(int(index))
        if region.size == 0:
            continue
        region = np.ascontiguousarray(region).view(np.uint8)  # 0/1, no copy
        _fill(painted[y0 : y0 + region.shape[0], x0 : x0 + region.shape[1]], region, colors[index])
        contours, _ = cv2.findContours(region, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE, offset=(x0, y0))
        outlines.append((int(index), contours))
    # One blend over the frame: pixels no instance covers blend with themselves and stay unchanged.
    out = cv2.addWeighted(image_bgr, 1.0 - INSTANCE_ALPHA, painted, INSTANCE_ALPHA, 0.0)
    for index, contours in outlines:
        cv2.drawContours(out, contours, -1, tuple(int(c) for c in colors[index]), thickness)
    return out


def _fill(view: np.ndarray, mask: np.ndarray, color: np.ndarray) -> None:
    """Set ``view`` (a slice of a BGR image, changed in place) to ``color`` where the 0/1 ``mask`` is set.

    OpenCV's masked subtract-then-add with a scalar is several times faster than numpy's boolean assignment.
    """
    cv2.subtract(view, view, dst=view, mask=mask)
    cv2.add(view, (int(color[0]), int(color[1]), int(color[2]), 0), dst=view, mask=mask)


def _draw_selected(out: np.ndarray, mask: np.ndarray, box: tuple[float, float, float, float],
                   color: tuple[int, int, int], tag: str, scale: float) -> None:
    """Fill one selected object strongly, outline it thickly (dark edge under a bright line), tag it."""
    height, width = out.shape[:2]
    x0, y0 = max(int(box[0]), 0), max(int(box[1]), 0)
    x1, y1 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
    crop, region = out[y0:y1, x0:x1], mask[y0:y1, x0:x1]
    fill = np.empty_like(crop)
    fill[:] = color
    blended = cv2.addWeighted(crop, 1.0 - SELECTION_ALPHA, fill, SELECTION_ALPHA, 0.0)
    crop[region] = blended[region]
    contours, _ = cv2.findContours(region.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE,
                                   offset=(x0, y0))
    line = max(2, round(3 * scale))
    cv2.drawContours(out, contours, -1, (0, 0, 0), line + max(2, round(2 * scale)), cv2.LINE_AA)
    cv2.drawContours(out, contours, -1, color, line, cv2.LINE_AA)
    _draw_tag(out, tag, (x0, y0), color, scale)


def _draw_box(out: np.ndarray, box: tuple[float, float, float, float], color: tuple[int, int, int], line: int) -> None:
    if not all(math.isfinite(v) for v in box):  # an invalid prompt must not break the overlay
        return
    p1, p2 = (round(box[0]), round(box[1])), (round(box[2]) - 1, round(box[3]) - 1)
    cv2.rectangle(out, p1, p2, (0, 0, 0), line + 2, cv2.LINE_AA)
    cv2.rectangle(out, p1, p2, color, line, cv2.LINE_AA)


def _draw_points(out: np.ndarray, prompt: Prompt, scale: float) -> None:
    """Green (foreground) or red (background) dots with a white rim, visible on any background."""
    radius = max(3, round(5 * scale))
    labels = prompt.labels or (1,) * len(prompt.points)
    for (x, y), label in zip(prompt.points, labels, strict=False):
        if not (math.isfinite(x) and math.isfinite(y)):  # an invalid prompt must not break the overlay
            continue
        center = (round(x), round(y))
        dot = BACKGROUND_BGR if label == BACKGROUND else FOREGROUND_BGR
        cv2.circle(out, center, radius + max(1, round(scale)), (255, 255, 255), -1, cv2.LINE_AA)
        cv2.circle(out, center, radius, dot, -1, cv2.LINE_AA)


def _draw_tag(out: np.ndarray, text: str, corner: tuple[int, int], color: tuple[int, int, int], scale: float) -> None:
    """``text`` on a filled ``color`` label whose bottom-left sits at ``corner`` (moved inside the image)."""
    font_scale, thickness = 0.5 * scale, max(1, round(scale))
    (text_w, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    pad = max(2, round(2 * scale))
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x = min(max(corner[0], 0), max(out.shape[1] - box_w, 0))
    y = min(max(corner[1], box_h), out.shape[0])
    cv2.rectangle(out, (x, y - box_h), (x + box_w, y), color, -1)
    cv2.putText(out, text, (x + pad, y - pad - baseline), _FONT, font_scale, (0, 0, 0), thickness, cv2.LINE_AA)


def _draw_legend(out: np.ndarray, selections: Sequence[Selection], color_of: dict[str, tuple[int, int, int]],
                 scale: float) -> None:
    """One line per prompt in the top-left corner: ``id: status`` (and the reason when it failed)."""
    y = 0
    for selection in selections:
        text = f"{selection.prompt_id}: {selection.status.value}"
        if not selection.ok and selection.reason:
            text += f" ({selection.reason[:60]})"
        font_scale, thickness = 0.5 * scale, max(1, round(scale))
        (_, text_h), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
        y += text_h + baseline + max(2, round(4 * scale))
        _draw_tag(out, text, (0, y), color_of[selection.prompt_id] if selection.ok else (200, 200, 200), scale)
