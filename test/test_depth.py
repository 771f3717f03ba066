"""3D from registered depth, pure: decoding, intrinsics, robust location on synthetic scenes of known geometry.

The scenes (``bench.bench_depth.edge_scene``): a plane at 2.0 m, a rectangle at 1.0 m in front of it, a known K,
and what real cameras and masks do at edges (flying pixels, mask spill, holes, noise).
"""

from __future__ import annotations

import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from bench.bench_depth import OBJECT_Z, PLANE_Z, edge_scene, run, unfiltered
from fastsam_ros.depth.locate import (
    DepthError,
    DepthFilter,
    DepthImage,
    Intrinsics,
    boxes_3d,
    cloud_points,
    decode_depth,
    depth_view,
    locate,
    locate_selection,
)
from fastsam_ros.types import SelectedObject, Selection, Status

K = (600.0, 0.0, 319.5, 0.0, 600.0, 239.5, 0.0, 0.0, 1.0)


def depth_msg(values: np.ndarray, encoding: str, pad: int = 0, bigendian: bool = False) -> SimpleNamespace:
    """A sensor_msgs/Image-like depth message with ``pad`` bytes of row padding."""
    dtype = np.dtype("u2" if encoding in ("16UC1", "mono16") else "f4").newbyteorder(">" if bigendian else "<")
    rows = values.astype(dtype).view(np.uint8).reshape(values.shape[0], -1)
    data = np.concatenate([rows, np.zeros((values.shape[0], pad), np.uint8)], axis=1).tobytes()
    return SimpleNamespace(encoding=encoding, height=values.shape[0], width=values.shape[1],
                           step=rows.shape[1] + pad, is_bigendian=int(bigendian), data=data)


# ---------------------------------------------------------------- decoding and camera model


@pytest.mark.parametrize("bigendian", [False, True])
def test_16uc1_is_millimetres_and_zero_is_no_data(bigendian: bool) -> None:
    raw = np.array([[0, 1000, 2500], [65535, 1, 400]], dtype=np.uint16)
    depth = decode_depth(depth_msg(raw, "16UC1", pad=6, bigendian=bigendian))
    metres = depth.metres(0, 0, 3, 2)
    assert depth.shape == (2, 3) and np.isnan(metres[0, 0])
    np.testing.assert_allclose(metres[~np.isnan(metres)], [1.0, 2.5, 65.535, 0.001, 0.4], rtol=1e-6)


def test_32fc1_is_metres_and_nan_inf_zero_negative_are_no_data() -> None:
    raw = np.array([[np.nan, np.inf, -np.inf, 0.0, -1.0, 1.25]], dtype=np.float32)
    metres = decode_depth(depth_msg(raw, "32FC1", pad=4, bigendian=True)).metres(0, 0, 6, 1)
    assert np.isnan(metres[0, :5]).all() and metres[0, 5] == np.float32(1.25)


def test_metres_reads_only_the_region_asked_for() -> None:
    raw = np.arange(20, dtype=np.uint16).reshape(4, 5) * 100
    np.testing.assert_allclose(decode_depth(depth_msg(raw, "mono16")).metres(1, 2, 3, 4), [[1.1, 1.2], [1.6, 1.7]])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"encoding": "rgb8"}, "unsupported depth encoding 'rgb8'; supported: 16UC1, mono16, 32FC1"),
        ({"height": 0}, "zero size"),
        ({"step": 5}, "does not hold a row"),
        ({"step": 7}, "does not hold a row"),  # not a whole number of uint16 pixels
        ({"data": b"\0" * 10}, "expected step x height = 24"),
    ],
)
def test_bad_depth_messages_say_why(change: dict, needle: str) -> None:
    msg = depth_msg(np.ones((2, 3), np.uint16), "16UC1", pad=6)
    for key, value in change.items():
        setattr(msg, key, value)
    with pytest.raises(DepthError, match=needle):
        decode_depth(msg)


def test_intrinsics_come_from_k_and_an_uncalibrated_k_is_refused() -> None:
    k = Intrinsics.from_msg(SimpleNamespace(k=K, width=640, height=480))
    assert (k.fx, k.fy, k.cx, k.cy, k.width, k.height) == (600.0, 600.0, 319.5, 239.5, 640, 480)
    with pytest.raises(DepthError, match="no usable focal length .* not calibrated"):
        Intrinsics.from_k([0.0] * 9)
    with pytest.raises(DepthError, match="no usable focal length"):
        Intrinsics.from_k((np.nan, 0, 1, 0, 600, 1, 0, 0, 1))
    with pytest.raises(DepthError, match="K needs 9 values, got 4"):
        Intrinsics.from_k([1.0, 2.0, 3.0, 4.0])


def test_depth_view_refuses_depth_or_camera_info_of_another_size_and_a_bad_range() -> None:
    depth = DepthImage(raw=np.ones((240, 320), np.float32), scale=1.0)
    k = Intrinsics.from_k(K, 640, 480)
    with pytest.raises(DepthError, match="depth image is 320x240, the colour image 640x480: .* registered"):
        depth_view(depth, k, (480, 640), (0.1, 10.0))
    with pytest.raises(DepthError, match="camera_info is for 640x480, the colour image is 320x240"):
        depth_view(depth, k, (240, 320), (0.1, 10.0))
    assert depth_view(depth, Intrinsics.from_k(K), (240, 320), (0.1, 10.0)).depth_range == (0.1, 10.0)  # 0x0: unstated
    with pytest.raises(DepthError, match="depth_range must be"):
        depth_view(depth, Intrinsics.from_k(K, 320, 240), (240, 320), (5.0, 1.0))


# ---------------------------------------------------------------- robust location on known geometry


def _on_object(points: np.ndarray, scene) -> np.ndarray:
    """Whether each 3D point projects back onto a pixel of the true object."""
    k = scene.intrinsics
    cols = np.rint(points[:, 0] * k.fx / points[:, 2] + k.cx).astype(int)
    rows = np.rint(points[:, 1] * k.fy / points[:, 2] + k.cy).astype(int)
    return scene.on_object[rows, cols]


@pytest.mark.parametrize("encoding", ["16UC1", "32FC1"])
def test_object_in_front_of_a_plane_is_located_within_a_centimetre(encoding: str) -> None:
    scene = edge_scene()  # 180x120 px at 1.0 m, 2 px of flying pixels, the mask 3 px too large
    located = locate(scene.mask, scene.box, scene.view(encoding))
    where = located.location
    position, size = scene.truth()
    assert where.has_position and where.reason == ""
    np.testing.assert_allclose(where.position, position, atol=0.01)
    np.testing.assert_allclose(where.size[:2], size[:2], atol=0.01)
    assert where.size[2] < 0.01  # a flat face: no flying pixel survived
    points = located.points
    assert points.dtype == np.float32 and points.shape == (where.pixels, 3)
    assert np.abs(points[:, 2] - OBJECT_Z).max() < 0.002  # every cloud point on the object's surface
    assert _on_object(points, scene).all()
    assert where.pixels == np.count_nonzero(scene.on_object)  # and the whole surface, flying pixels rejected
    naive_position, naive_size = unfiltered(scene, scene.mask)  # the same scene without rejection: clearly wrong
    assert np.abs(naive_size[:2] - size[:2]).max() > 0.1 and naive_size[2] > 0.9


def test_noise_and_holes_keep_the_position_within_a_centimetre() -> None:
    scene = edge_scene(noise_at_1m=0.004, holes=0.05, seed=3)
    located = locate(scene.mask, scene.box, scene.view("16UC1"))
    position, size = scene.truth()
    np.testing.assert_allclose(located.location.position, position, atol=0.01)
    np.testing.assert_allclose(located.location.size[:2], size[:2], atol=0.01)
    assert located.location.pixels < np.count_nonzero(scene.on_object)  # holes are not counted
    assert np.abs(located.points[:, 2] - OBJECT_Z).max() < 0.05  # background at 2 m and flying pixels are out


def test_a_thin_object_needs_the_eroded_core_when_spill_is_most_of_its_mask() -> None:
    scene = edge_scene(object_size=(8, 80), spill_px=4)  # mask 16x88, the object only 8x80 of it
    position, _ = scene.truth()
    good = locate(scene.mask, scene.box, scene.view()).location
    np.testing.assert_allclose(good.position, position, atol=0.01)
    without_core = locate(scene.mask, scene.box, scene.view(depth_filter=DepthFilter(erode_px=0))).location
    assert abs(without_core.position[2] - OBJECT_Z) > 0.2  # the median falls behind the object


def test_no_valid_depth_and_depth_outside_the_range_are_reasons() -> None:
    scene = edge_scene(object_size=(40, 30), spill_px=0, flying_px=0)
    blank = scene.view()
    blank.depth.raw[:] = np.nan
    missing = locate(scene.mask, scene.box, blank).location
    assert not missing.has_position and missing.pixels == 0
    assert missing.reason == "no valid depth under the object's 1200 pixels (all 0, NaN or inf)"
    far = locate(scene.mask, scene.box, scene.view(depth_range=(3.0, 10.0))).location
    assert far.reason == "all 1200 depth pixels of the object are outside depth_range [3, 10] m (median 1.00 m)"
    near = locate(scene.mask, scene.box, scene.view(depth_range=(0.1, 1.5))).location
    assert near.has_position and near.position[2] == pytest.approx(OBJECT_Z)


def test_depth_range_cuts_the_background_before_the_window() -> None:
    scene = edge_scene(object_size=(8, 80), spill_px=6)  # the background is most of the mask
    view = scene.view(depth_range=(0.1, 1.5), depth_filter=DepthFilter(erode_px=0))
    assert locate(scene.mask, scene.box, view).location.position[2] == pytest.approx(OBJECT_Z, abs=0.01)
    assert PLANE_Z > 1.5


# ---------------------------------------------------------------- selections, cloud and boxes


def _selection(scene, prompt_id: str = "mug", track_id: int = 0) -> Selection:
    obj = SelectedObject.from_mask(scene.mask, 0.9, (0,))
    far = np.zeros_like(scene.mask)
    far[5:15, 5:25] = True  # an object on the background plane
    return Selection(prompt_id, Status.OK, objects=(obj, SelectedObject.from_mask(far, 0.5, (1,))))


def test_locate_selection_fills_every_object_in_order() -> None:
    scene = edge_scene()
    selection, located = locate_selection(_selection(scene), scene.view())
    first, second = (obj.location for obj in selection.objects)
    assert first.position[2] == pytest.approx(OBJECT_Z) and second.position[2] == pytest.approx(PLANE_Z)
    assert [where.location for where in located] == [first, second]
    assert selection.prompt_id == "mug" and selection.objects[0].mask is scene.mask  # nothing else changes


def test_a_frame_without_depth_gives_every_object_the_reason() -> None:
    selection, located = locate_selection(_selection(edge_scene()), "no depth image received yet")
    assert [obj.location.reason for obj in selection.objects] == ["no depth image received yet"] * 2
    assert not any(obj.location.has_position for obj in selection.objects)
    assert cloud_points(located).shape == (0, 3) and boxes_3d(selection, located) == []


def test_cloud_is_every_located_point_and_boxes_are_labelled() -> None:
    scene = edge_scene()
    selection, located = locate_selection(_selection(scene), scene.view())
    cloud = cloud_points(located)
    assert cloud.shape == (sum(where.location.pixels for where in located), 3) and cloud.dtype == np.float32
    boxes = boxes_3d(selection, located)
    assert [box.label for box in boxes] == ["mug 1.00 m", "mug 2.00 m"]
    x0, x1 = located[0].lower[0], located[0].upper[0]
    assert boxes[0].centre[0] == pytest.approx((x0 + x1) / 2) and boxes[0].size == located[0].location.size


def test_position_is_the_median_point_of_the_kept_pixels() -> None:
    metres = np.full((6, 8), 2.0, np.float32)
    metres[2, 2:6] = (1.00, 1.03, 1.01, 1.02)  # an even count: the median is the middle pair's mean
    mask = metres < 1.5
    view = depth_view(DepthImage(raw=metres, scale=1.0), Intrinsics.from_k((100, 0, 3, 0, 100, 2, 0, 0, 1)),
                      (6, 8), (0.1, 10.0))
    where = locate(mask, (2, 2, 6, 3), view).location
    assert where.position[2] == pytest.approx(1.015) and where.pixels == 4
    assert where.position[0] == pytest.approx(np.median([-0.01, 0.0, 0.0101, 0.0204]), abs=1e-6)
    assert where.position[1] == 0.0 and where.size[2] == pytest.approx(0.03)


def test_the_3d_core_imports_without_ros() -> None:
    blocked = "import sys\nfor name in ('rclpy', 'sensor_msgs', 'visualization_msgs', 'fastsam_ros.msg'):\n" \
              "    sys.modules[name] = None\nimport fastsam_ros.depth.locate, fastsam_ros.depth.pairing\n"
    subprocess.run([sys.executable, "-c", blocked], check=True)


def test_the_bench_compares_the_rules_and_only_locate_is_right_on_both_edges() -> None:
    figures = run(pixels=20_000, repeats=3)
    assert figures["locate_ms"]["n"] == 3 and 19_000 < figures["mask_pixels"] < 23_000
    worst: dict[str, float] = {}
    for rules in figures["rules"].values():
        for rule, errors in rules.items():
            worst[rule] = max(worst.get(rule, 0.0), errors["position_error_cm"], errors["size_error_xy_cm"])
    assert worst.pop("eroded core + depth window (locate)") < 1
    assert len(worst) == 3 and min(worst.values()) > 2, worst  # each simpler rule fails on one of the edges
