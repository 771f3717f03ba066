"""A smooth synthetic camera moving over a still image: frames and ground truth moved by the same transform.

Used by ``make eval-track`` (moving-camera sequences with exact ground truth) and ``make demo-video`` (a clip
from the sample images). Each frame is a similarity transform of the source image: the view centre pans along
a straight line, the zoom and the rotation change monotonically, all eased in and out (smoothstep), like a
hand-held or robot camera that accelerates and stops. Regions outside the source image are black.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

FRAME_SIZE = (640, 480)  # (width, height) of rendered frames


@dataclass(frozen=True)
class CameraPath:
    """Where the camera looks over ``frames`` frames of a source image of ``source_size`` (width, height)."""

    source_size: tuple[int, int]
    pan: tuple[float, float]  # how far the scene moves in the frame by the end, output pixels (dx, dy)
    zoom: float = 1.0  # magnification at the end (1.0 at the start)
    rotation_deg: float = 0.0  # rotation at the end (0 at the start)
    frames: int = 24
    frame_size: tuple[int, int] = FRAME_SIZE

    @property
    def base_scale(self) -> float:
        """Frame 0 covers the frame with the whole source (no black border at the start)."""
        return max(self.frame_size[0] / self.source_size[0], self.frame_size[1] / self.source_size[1])

    def progress(self, index: int) -> float:
        """Eased progress 0..1 of frame ``index``."""
        u = index / max(self.frames - 1, 1)
        return u * u * (3 - 2 * u)

    def matrix(self, index: int) -> np.ndarray:
        """``(2, 3)`` affine map from source pixels to frame ``index``'s pixels."""
        u = self.progress(index)
        scale = self.base_scale * (1 + (self.zoom - 1) * u)
        angle = np.deg2rad(self.rotation_deg * u)
        # The view centre moves in the source so that, at base scale, the scene moves by ``pan`` in the frame.
        centre = np.array(self.source_size, dtype=np.float64) / 2 - np.array(self.pan) * u / self.base_scale
        rotation = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        offset = np.array(self.frame_size, dtype=np.float64) / 2 - rotation @ centre
        return np.hstack([rotation, offset[:, None]])

    def map_points(self, index: int, points: np.ndarray) -> np.ndarray:
        """Source points ``(K, 2)`` as frame ``index`` pixels."""
        matrix = self.matrix(index)
        return np.asarray(points, dtype=np.float64).reshape(-1, 2) @ matrix[:, :2].T + matrix[:, 2]

    def unmap_points(self, index: int, points: np.ndarray) -> np.ndarray:
        """Frame ``index`` pixels ``(K, 2)`` as source points."""
        inverse = cv2.invertAffineTransform(self.matrix(index))
        return np.asarray(points, dtype=np.float64).reshape(-1, 2) @ inverse[:, :2].T + inverse[:, 2]

    def render(self, index: int, image: np.ndarray) -> np.ndarray:
        """Frame ``index`` of a BGR source image."""
        return cv2.warpAffine(image, self.matrix(index), self.frame_size, flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT)

    def render_mask(self, index: int, mask: np.ndarray) -> np.ndarray:
        """A source-resolution bool mask moved into frame ``index`` (nearest neighbour: stays binary)."""
        moved = cv2.warpAffine(mask.astype(np.uint8), self.matrix(index), self.frame_size, flags=cv2.INTER_NEAREST,
                               borderMode=cv2.BORDER_CONSTANT)
        return moved.astype(bool)
