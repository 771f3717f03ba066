"""Video files and cameras as a stream of BGR frames (OpenCV), for ``video_source`` and the CLI's annotated video.

ROS-free: :class:`VideoReader` opens a file or a camera index, reports the file's frame rate, and loops a file
when asked; :func:`frame_period` decides the publishing period; :class:`VideoWriter` writes BGR frames to a
video file.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

DEFAULT_RATE_HZ = 30.0  # when neither the caller nor the file says


class VideoError(RuntimeError):
    """A video source or output that cannot be used; the message says which and why."""


def camera_index(source: str) -> int | None:
    """The camera index that ``source`` names ("0", "1", ...), or None for a file path."""
    text = source.strip()
    return int(text) if text.isdigit() else None


class VideoReader:
    """Frames of a video file or a camera; a file restarts at its end when ``loop`` is set."""

    def __init__(self, source: str, loop: bool = False) -> None:
        index = camera_index(source)
        if index is None and not Path(source).is_file():
            raise VideoError(f"video source {source!r} is neither an existing file nor a camera index (0, 1, ...)")
        self.source, self.is_camera, self.loop = source, index is not None, loop and index is None
        self._capture = cv2.VideoCapture(index if index is not None else source)
        if not self._capture.isOpened():
            self._capture.release()
            what = f"camera {index}" if index is not None else f"video {source}"
            raise VideoError(f"{what} cannot be opened (no such device, a corrupt file, or a codec OpenCV lacks)")
        self.frames_read = 0

    @property
    def fps(self) -> float:
        """The file's or camera's own frame rate (0 when it does not say)."""
        rate = float(self._capture.get(cv2.CAP_PROP_FPS) or 0.0)
        return rate if np.isfinite(rate) and 0 < rate < 1000 else 0.0

    def read(self) -> np.ndarray | None:
        """The next frame (HxWx3 uint8 BGR), or None at the end (a looping file starts again instead)."""
        ok, image = self._capture.read()
        if (not ok or image is None) and self.loop and self.frames_read:
            self._capture.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self._capture.read()
        if not ok or image is None:
            return None
        self.frames_read += 1
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR) if image.ndim == 2 else image

    def close(self) -> None:
        self._capture.release()


def frame_period(rate: float, file_fps: float) -> float:
    """Seconds between published frames: ``rate`` when given (> 0), else the file's rate, else 30 Hz."""
    if rate < 0 or not np.isfinite(rate):
        raise VideoError(f"rate must be 0 (the file's own) or a positive number of frames per second, got {rate}")
    return 1.0 / (rate or file_fps or DEFAULT_RATE_HZ)


class VideoWriter:
    """BGR frames into a video file (``.mp4`` with the mp4v codec, ``.avi`` with MJPG); opened on the first frame."""

    def __init__(self, path: str | Path, fps: float) -> None:
        self.path, self.fps = Path(path), fps or DEFAULT_RATE_HZ
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.frames = 0

    def write(self, image: np.ndarray) -> None:
        size = (image.shape[1], image.shape[0])
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            codec = "MJPG" if self.path.suffix.lower() == ".avi" else "mp4v"
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*codec), self.fps, size)
            if not self._writer.isOpened():
                raise VideoError(f"cannot write video {self.path} (use .mp4 or .avi)")
            self._size = size
        if size != self._size:  # a video has one frame size: later frames are scaled to the first one's
            image = cv2.resize(image, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
