"""The CLI's inputs: an image, a folder of images, a video file or a camera index, as one stream of frames (OpenCV).

A frame that cannot be read is a frame with the reason, so one bad file never stops a folder.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".jp2", ".pgm", ".ppm"})
VIDEO_SUFFIXES = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv"})


class SourceError(Exception):
    """The source cannot be opened at all (the message says why)."""


@dataclass(frozen=True)
class Frame:
    """One image to segment, or the reason it could not be read."""

    stem: str  # output file names start with it
    name: str  # the JSON's "image"; prompt files key their lists by it
    image: np.ndarray | None
    error: str = ""
    alias: str = ""  # a second prompt-file key: the video's or camera's name for its frames


@dataclass
class Source:
    kind: str  # "image", "folder", "video" or "camera"
    frames: Iterator[Frame]
    total: int | None = None
    names: tuple[str, ...] = ()  # image names known up front, to warn about prompt-file keys matching none
    fps: float = 0.0  # a video's or camera's own frame rate (0: unknown)
    release: Callable[[], None] = field(default=lambda: None)


def open_source(text: str, max_frames: int | None = None) -> Source:
    """An image, a folder of images, a video file or a camera index as a stream of frames."""
    path = Path(text)
    if not path.exists():
        if text.isdigit():
            return _camera_source(int(text), max_frames)
        raise SourceError(f"source {text} does not exist (expected an image, a folder, a video or a camera index)")
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise SourceError(f"folder {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return Source("folder", _image_frames(files), total=len(files), names=tuple(p.name for p in files))
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_source(path, max_frames)
    return Source("image", _image_frames([path]), total=1, names=(path.name,))


def read_image(path: Path) -> tuple[np.ndarray | None, str]:
    """``(BGR image, "")`` or ``(None, why it could not be read)``; works with any file name."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as error:
        return None, f"{path}: cannot read the file: {error}"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        return None, f"{path}: not a readable image (empty, corrupt or an unsupported format)"
    return image, ""


def _image_frames(paths: Sequence[Path]) -> Iterator[Frame]:
    seen: set[str] = set()
    for path in paths:
        stem = path.stem
        if stem in seen:  # a.jpg and a.png in one folder must not overwrite each other's results
            stem = f"{path.stem}_{path.suffix.lstrip('.').lower()}"
        seen.add(stem)
        image, error = read_image(path)
        yield Frame(stem=stem, name=path.name, image=image, error=error)


def _video_source(path: Path, max_frames: int | None) -> Source:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"video {path} cannot be opened (corrupt, or a codec OpenCV lacks)")
    count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    total = count if count > 0 else None
    if max_frames is not None:
        total = min(total, max_frames) if total is not None else max_frames
    frames = _capture_frames(capture, lambda i: f"{path.stem}_{i:06d}", path.name, max_frames,
                             expected=count if count > 0 else None, what=f"video {path}")
    return Source("video", frames, total=total, names=(path.name,), release=capture.release,
                  fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0))


def _camera_source(index: int, max_frames: int | None) -> Source:
    capture = cv2.VideoCapture(index)
    if not capture.isOpened():
        capture.release()
        raise SourceError(f"camera {index} cannot be opened")
    frames = _capture_frames(capture, lambda i: f"camera{index}_{i:06d}", f"camera{index}", max_frames)
    return Source("camera", frames, total=max_frames, names=(f"camera{index}",), release=capture.release,
                  fps=float(capture.get(cv2.CAP_PROP_FPS) or 0.0))


def _capture_frames(capture: Any, stem_of: Callable[[int], str], alias: str, max_frames: int | None,
                    expected: int | None = None, what: str = "") -> Iterator[Frame]:
    """Frames until the capture ends; ending before the ``expected`` count (truncated, corrupt) is one failed frame."""
    index = 0
    while max_frames is None or index < max_frames:
        ok, image = capture.read()
        if not ok or image is None:
            if expected is not None and index < expected:
                stem = stem_of(index)
                yield Frame(stem=stem, name=stem, image=None, alias=alias,
                            error=f"{what} ended after {index} of the {expected} frames its container states "
                            "(truncated or corrupt)")
            return
        if image.ndim == 2:
            image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
        stem = stem_of(index)
        yield Frame(stem=stem, name=stem, image=image, alias=alias)
        index += 1
