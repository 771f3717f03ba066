"""3D per selected object: ``python bench/bench_depth.py [--pixels 100000] [--repeats 200]``.

Times :func:`fastsam_ros.depth.locate.locate` (depth of the object's box to metres, outlier rejection, back-projection,
median and extent) on a synthetic scene, and compares rejection rules on its edges. ``edge_scene`` is also the
scene of ``test/test_depth.py``: a plane at 2.0 m and a rectangle at 1.0 m in front of it, seen by a known pinhole
camera, with what real depth cameras and masks do at the object's edges:

* flying pixels: a ring ``flying_px`` wide whose depth runs from the object's to the background's;
* mask spill: the mask is the object dilated by ``spill_px``, so it covers that ring and some background;
* holes (no data) and noise growing with the square of the distance, as stereo and structured light give.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastsam_ros.depth.locate import DepthFilter, DepthImage, DepthView, Intrinsics, locate
from fastsam_ros.segmentation.masks import mask_box

PLANE_Z = 2.0
OBJECT_Z = 1.0
# Where the rules part: a 180x120 px box (spill a small share of the mask) and an 8x80 px pole (spill most of it).
RULE_SCENES = {"180x120 px, 3 px spill": {}, "8x80 px, 4 px spill": {"object_size": (8, 80), "spill_px": 4}}


@dataclass(frozen=True)
class EdgeScene:
    """A synthetic registered depth frame with its truth."""

    metres: np.ndarray  # (H, W) float32, NaN = no data
    mask: np.ndarray  # (H, W) bool: what a segmentation would select (object + spill)
    on_object: np.ndarray  # (H, W) bool: pixels that truly are the object
    intrinsics: Intrinsics

    @property
    def box(self) -> tuple[float, float, float, float]:
        x0, y0, x1, y1 = mask_box(self.mask) or (0, 0, 0, 0)
        return float(x0), float(y0), float(x1), float(y1)

    def truth(self) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
        """The object's own median point and axis-aligned size (noise-free, every pixel)."""
        rows, cols = np.nonzero(self.on_object)
        k = self.intrinsics
        xs, ys = (cols - k.cx) * OBJECT_Z / k.fx, (rows - k.cy) * OBJECT_Z / k.fy
        return ((float(np.median(xs)), float(np.median(ys)), OBJECT_Z),
                (float(np.ptp(xs)), float(np.ptp(ys)), 0.0))

    def depth_image(self, encoding: str = "32FC1") -> DepthImage:
        """The scene as a decoded 16UC1 (millimetres, 0 = no data) or 32FC1 (metres, NaN) image."""
        if encoding == "16UC1":
            return DepthImage(raw=np.nan_to_num(np.round(self.metres * 1000), nan=0).astype(np.uint16), scale=0.001)
        return DepthImage(raw=self.metres.astype(np.float32), scale=1.0)

    def view(self, encoding: str = "32FC1", depth_filter: DepthFilter | None = None,
             depth_range: tuple[float, float] = (0.1, 10.0)) -> DepthView:
        return DepthView(depth=self.depth_image(encoding), intrinsics=self.intrinsics, depth_range=depth_range,
                         filter=depth_filter or DepthFilter())


def edge_scene(
    object_size: tuple[int, int] = (180, 120), offset: tuple[int, int] = (60, -30), image_shape=(480, 640),
    flying_px: int = 2, spill_px: int = 3, noise_at_1m: float = 0.0, holes: float = 0.0, seed: int = 0,
) -> EdgeScene:
    """A ``object_size`` (w, h) pixel rectangle at 1.0 m, centred ``offset`` pixels from the principal point."""
    height, width = image_shape
    k = Intrinsics(fx=600.0, fy=600.0, cx=(width - 1) / 2, cy=(height - 1) / 2, width=width, height=height)
    u0 = int(round(k.cx + offset[0] - object_size[0] / 2))
    v0 = int(round(k.cy + offset[1] - object_size[1] / 2))
    on_object = np.zeros(image_shape, dtype=bool)
    on_object[v0 : v0 + object_size[1], u0 : u0 + object_size[0]] = True
    metres = np.full(image_shape, PLANE_Z, dtype=np.float32)
    metres[on_object] = OBJECT_Z
    grown = on_object
    for ring in range(1, flying_px + 1):  # depth smeared from the object's towards the background's
        outer = cv2.dilate(on_object.view(np.uint8), np.ones((3, 3), np.uint8), iterations=ring).view(bool)
        metres[outer & ~grown] = OBJECT_Z + (PLANE_Z - OBJECT_Z) * ring / (flying_px + 1)
        grown = outer
    rng = np.random.default_rng(seed)
    if noise_at_1m:
        metres += rng.normal(0.0, noise_at_1m, image_shape).astype(np.float32) * metres**2
    if holes:
        metres[rng.random(image_shape) < holes] = np.nan
    mask = cv2.dilate(on_object.view(np.uint8), np.ones((3, 3), np.uint8), iterations=spill_px).view(bool)
    return EdgeScene(metres=metres, mask=mask, on_object=on_object, intrinsics=k)


def unfiltered(scene: EdgeScene, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median point and size of every valid pixel in ``pixels``: the rule without rejection."""
    rows, cols = np.nonzero(pixels & np.isfinite(scene.metres))
    z = scene.metres[rows, cols]
    k = scene.intrinsics
    points = np.stack(((cols - k.cx) * z / k.fx, (rows - k.cy) * z / k.fy, z), axis=1)
    return np.median(points, axis=0), np.ptp(points, axis=0)


def compare_rules(scene: EdgeScene) -> dict[str, dict[str, float]]:
    """Position and size errors (cm) and the share of points off the object (%) for each rejection rule."""
    truth_position, truth_size = (np.asarray(v) for v in scene.truth())
    eroded = cv2.erode(scene.mask.view(np.uint8), np.ones((3, 3), np.uint8), iterations=DepthFilter.erode_px,
                       borderType=cv2.BORDER_CONSTANT, borderValue=0).view(bool)
    rules = {
        "median of the mask": unfiltered(scene, scene.mask),
        f"mask eroded {DepthFilter.erode_px} px": unfiltered(scene, eroded),
        "depth window only": _located(scene, DepthFilter(erode_px=0)),
        "eroded core + depth window (locate)": _located(scene, DepthFilter()),
    }
    out = {}
    for name, (position, size) in rules.items():
        out[name] = {"position_error_cm": round(float(np.abs(position - truth_position).max()) * 100, 2),
                     "size_error_xy_cm": round(float(np.abs(size - truth_size)[:2].max()) * 100, 2),
                     "size_z_cm": round(float(size[2]) * 100, 2)}
    return out


def _located(scene: EdgeScene, depth_filter: DepthFilter) -> tuple[np.ndarray, np.ndarray]:
    location = locate(scene.mask, scene.box, scene.view(depth_filter=depth_filter)).location
    return np.asarray(location.position), np.asarray(location.size)


def object_of(pixels: int, image_shape: tuple[int, int] = (480, 640)) -> tuple[int, int]:
    """A rectangle of about ``pixels`` pixels with the image's aspect ratio."""
    height, width = image_shape
    scale = (pixels / (height * width)) ** 0.5
    return int(round(width * scale)), int(round(height * scale))


def run(pixels: int = 100_000, repeats: int = 200, encoding: str = "16UC1") -> dict[str, object]:
    """``locate`` timings on one object of about ``pixels`` pixels, and the rules compared on ``RULE_SCENES``."""
    scene = edge_scene(object_size=object_of(pixels), offset=(0, 0), noise_at_1m=0.003, holes=0.02)
    view = scene.view(encoding)
    locate(scene.mask, scene.box, view)  # first call pays for lazy imports
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        located = locate(scene.mask, scene.box, view)
        samples.append((time.perf_counter() - started) * 1000)
    p50, p95 = np.percentile(samples, [50, 95])
    rules = {name: compare_rules(edge_scene(noise_at_1m=0.003, holes=0.02, **shape))
             for name, shape in RULE_SCENES.items()}
    return {"locate_ms": {"p50": round(float(p50), 3), "p95": round(float(p95), 3), "n": repeats},
            "mask_pixels": int(np.count_nonzero(scene.mask)), "points": located.location.pixels,
            "encoding": encoding, "rules": rules}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pixels", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=200)
    parser.add_argument("--encoding", choices=("16UC1", "32FC1"), default="16UC1")
    args = parser.parse_args(argv)
    print(json.dumps(run(args.pixels, args.repeats, args.encoding), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
