"""Mask encoding and geometry: pure numpy, plus agreement with ultralytics' own mask upsampling."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from fastsam_ros.segmentation.masks import (
    EncodedMask,
    EncodedMasks,
    MaskGeometry,
    box_intersections,
    decode_crop,
    decode_mask,
    encode_crop,
    encode_crops,
    encode_mask,
    encode_region,
    iou,
    mask_box,
    region_stats,
)

# (image (H, W), network mask (h, w)) as ultralytics' rect letterbox produces them (auto=True, stride 32).
LETTERBOXES = [
    ((810, 1080), (480, 640)),  # 4:3 landscape at 640, no padding
    ((1080, 810), (640, 480)),  # portrait, no padding
    ((480, 640), (480, 640)),  # mask at image resolution: identity
    ((720, 1280), (384, 640)),  # 16:9 at 640: pad_y = 12
    ((1280, 720), (640, 384)),  # portrait 9:16 at 640: pad_x = 12
    ((1080, 810), (160, 128)),  # portrait at 160: pad_x = 4
    ((375, 500), (256, 320)),  # COCO-sized at 320: pad_y = 8
    ((333, 517), (224, 320)),  # fractional content height (205.96 -> 206 rows)
    ((701, 1280), (352, 640)),  # fractional content height (350.5 -> 350 rows), pad 1
    ((97, 61), (160, 128)),  # image smaller than the network input: upscaled before the net
    ((50, 3000), (32, 640)),  # extreme panorama
]


def _random_blobs(shape: tuple[int, int], rng: np.random.Generator, threshold: float = 0.6) -> np.ndarray:
    """Smooth random blobs with curved boundaries, like real instance masks."""
    h, w = shape
    low = rng.random((max(h // 16, 2), max(w // 16, 2)))
    return cv2.resize(low, (w, h), interpolation=cv2.INTER_CUBIC) > threshold


def _ultralytics_upsample(mask: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """What ultralytics does to network-resolution masks to draw them on the image (``Results.plot``, retina)."""
    import torch
    from ultralytics.utils.ops import scale_masks

    return (scale_masks(torch.from_numpy(mask)[None, None].float(), image_shape)[0, 0] > 0.5).numpy()


# ---------------------------------------------------------------------------------------------- run lengths


def _roundtrip(crop: np.ndarray) -> np.ndarray:
    counts = encode_crop(crop)
    assert counts.dtype == np.uint32
    assert int(counts.sum()) == crop.size
    return decode_crop(counts, *crop.shape)


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (13, 29), (64, 48), (3, 200)])
@pytest.mark.parametrize("density", [0.05, 0.5, 0.95])
def test_rle_roundtrip_random(shape: tuple[int, int], density: float) -> None:
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    for _ in range(5):
        crop = rng.random(shape) < density
        assert np.array_equal(_roundtrip(crop), crop)


def test_rle_starts_with_background_run() -> None:
    crop = np.array([[True, True, False], [False, True, True]])
    counts = encode_crop(crop)
    assert counts.tolist() == [0, 2, 2, 2]  # a set first pixel starts with an empty background run
    assert np.array_equal(decode_crop(counts, 2, 3), crop)
    crop[0, 0] = False
    assert encode_crop(crop).tolist() == [1, 1, 2, 2]


@pytest.mark.parametrize("shape", [(1, 1), (5, 9), (9, 5)])
def test_rle_empty_full_and_single_pixel(shape: tuple[int, int]) -> None:
    empty = np.zeros(shape, dtype=bool)
    full = np.ones(shape, dtype=bool)
    assert encode_crop(empty).tolist() == [empty.size]
    assert encode_crop(full).tolist() == [0, full.size]
    for y, x in [(0, 0), (shape[0] - 1, shape[1] - 1), (shape[0] // 2, shape[1] // 2)]:
        single = empty.copy()
        single[y, x] = True
        assert np.array_equal(_roundtrip(single), single)
    for crop in (empty, full):
        assert np.array_equal(_roundtrip(crop), crop)


def _runs_one_by_one(crop: np.ndarray) -> list[int]:
    """Run lengths of one crop the plain way (a reference for the all-at-once encoding)."""
    runs, value, length = [], False, 0
    for pixel in crop.ravel().tolist():
        if pixel != value:
            runs.append(length)
            value, length = pixel, 0
        length += 1
    return [*runs, length] if crop.size else []


def test_encoding_many_crops_at_once_matches_one_by_one() -> None:
    rng = np.random.default_rng(7)
    for _ in range(50):
        count = int(rng.integers(0, 12))
        crops = [rng.random((int(rng.integers(0, 9)), int(rng.integers(0, 9)))) < rng.random() for _ in range(count)]
        encoded = encode_crops(crops)
        assert len(encoded) == count
        for crop, counts in zip(crops, encoded, strict=True):
            assert counts.dtype == np.uint32
            assert counts.tolist() == _runs_one_by_one(crop)  # a crop's runs never continue into the next crop


def test_encoded_masks_are_the_masks_one_by_one_with_their_pixel_counts() -> None:
    """Flat masks of every parity of counts and position, empty ones among them, give each mask back and its area."""
    rng = np.random.default_rng(11)
    for _ in range(50):
        crops = [rng.random((int(rng.integers(0, 7)), int(rng.integers(0, 7)))) < rng.random()
                 for _ in range(int(rng.integers(0, 9)))]
        places = [(int(rng.integers(0, 50)), int(rng.integers(0, 50))) for _ in crops]
        encoded = EncodedMasks.join([(x, y, x + crop.shape[1], y + crop.shape[0]) for crop, (x, y) in
                                     zip(crops, places, strict=True)], encode_crops(crops))
        assert len(encoded) == len(crops)
        assert encoded.areas.tolist() == [int(crop.sum()) for crop in crops]
        for crop, (x, y), mask in zip(crops, places, encoded, strict=True):
            assert (mask.x, mask.y, mask.width, mask.height) == (x, y, crop.shape[1], crop.shape[0])
            assert mask.counts.tolist() == _runs_one_by_one(crop)
        assert encoded.lengths.tolist() == [len(_runs_one_by_one(crop)) for crop in crops]


def test_rle_zero_size_crop() -> None:
    assert encode_crop(np.zeros((0, 4), dtype=bool)).size == 0
    assert decode_crop(np.zeros(0, dtype=np.uint32), 0, 4).shape == (0, 4)


def test_rle_is_row_major() -> None:
    crop = np.zeros((3, 4), dtype=bool)
    crop[:, 1] = True  # a vertical line: one run per row in row-major order
    assert encode_crop(crop).tolist() == [1, 1, 3, 1, 3, 1, 2]


@pytest.mark.parametrize("counts", [[5], [3, 3, 3], [0, 13], [12, 1, 1]])
def test_decode_crop_rejects_wrong_totals(counts: list[int]) -> None:
    with pytest.raises(ValueError, match=r"run lengths sum to \d+, expected 3x4"):
        decode_crop(np.array(counts, dtype=np.uint32), 3, 4)


# ------------------------------------------------------------------------------------ image-resolution masks


def test_encode_decode_mask_at_image_resolution() -> None:
    rng = np.random.default_rng(7)
    for shape in [(810, 1080), (1080, 810), (37, 53)]:
        mask = _random_blobs(shape, rng, threshold=0.75)
        encoded = encode_mask(mask)
        box = mask_box(mask)
        assert box is not None
        assert (encoded.x, encoded.y, encoded.x + encoded.width, encoded.y + encoded.height) == box
        assert np.array_equal(decode_mask(encoded, shape), mask)
        assert encoded.nbytes == 16 + 4 * len(encoded.counts)
        if mask.size > 100_000:
            assert encoded.nbytes < mask.size // 8  # far smaller than even a packed bitmap


def test_encode_mask_touching_every_border() -> None:
    mask = np.zeros((20, 30), dtype=bool)
    mask[0, 0] = mask[-1, -1] = True
    encoded = encode_mask(mask)
    assert (encoded.x, encoded.y, encoded.width, encoded.height) == (0, 0, 30, 20)
    assert encoded.counts.tolist() == [0, 1, 598, 1]
    assert np.array_equal(decode_mask(encoded, mask.shape), mask)


def test_encode_empty_mask() -> None:
    encoded = encode_mask(np.zeros((6, 8), dtype=bool))
    assert (encoded.width, encoded.height, encoded.counts.size) == (0, 0, 0)
    assert not decode_mask(encoded, (6, 8)).any()
    assert not decode_mask(EncodedMask(3, 2, 0, 0, np.zeros(0, dtype=np.uint32)), (6, 8)).any()


def test_mask_box() -> None:
    assert mask_box(np.zeros((4, 5), dtype=bool)) is None
    mask = np.zeros((10, 12), dtype=bool)
    mask[3:7, 2:9] = True
    mask[8, 11] = True
    assert mask_box(mask) == (2, 3, 12, 9)  # (x0, y0, x1, y1), end exclusive
    single = np.zeros((5, 5), dtype=bool)
    single[4, 0] = True
    assert mask_box(single) == (0, 4, 1, 5)
    assert all(isinstance(v, int) for v in mask_box(single))
    assert mask_box(np.zeros((0, 5), dtype=bool)) is None and mask_box(np.zeros((3, 0), dtype=bool)) is None


def test_mask_box_is_the_extent_of_the_set_pixels_of_any_view() -> None:
    """OpenCV scans the mask: views with row and column strides, sparse and dense masks, single rows/columns."""
    rng = np.random.default_rng(4)
    for trial in range(200):
        base = rng.random((int(rng.integers(1, 40)), int(rng.integers(1, 40)))) < rng.choice([0.002, 0.05, 0.9])
        mask = [base, base[1:, 2:], base[::2, ::3], base[:, :1], base[:1], base.T][trial % 6]
        ys, xs = np.nonzero(mask)
        expected = None if ys.size == 0 else (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        assert mask_box(mask) == expected, trial


def test_iou() -> None:
    a = np.zeros((10, 10), dtype=bool)
    b = np.zeros((10, 10), dtype=bool)
    assert iou(a, b) == 0.0  # both empty
    a[:, :5] = True
    assert iou(a, b) == 0.0
    assert iou(a, a) == 1.0
    b[:, 3:8] = True  # 2 columns shared, 8 in the union
    assert iou(a, b) == pytest.approx(0.25)
    assert iou(a, b) == iou(b, a)


# ------------------------------------------------------------------------------------------------ geometry


def test_geometry_gain_and_content() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))
    assert geometry.gain == pytest.approx(0.5)
    assert geometry.content == (0, 12, 640, 360)  # (left, top, width, height) in mask cells
    portrait = MaskGeometry((1080, 810), (160, 128))
    assert portrait.content == (4, 0, 120, 160)
    # ultralytics' LetterBox: each side is rounded, padding split with round(d - 0.1) on top/left.
    assert MaskGeometry((701, 1280), (352, 640)).content == (0, 1, 640, 350)
    assert MaskGeometry((333, 517), (224, 320)).content == (0, 9, 320, 206)


def test_to_mask_coords_landscape_without_padding() -> None:
    geometry = MaskGeometry((810, 1080), (480, 640))  # gain 0.5926, no padding
    points = np.array([[0, 0], [1079.9, 809.9], [540, 405], [1.6, 1.6], [1.7, 1.7]])
    cells = geometry.to_mask_coords(points)
    assert cells.dtype == np.int64 and cells.shape == (5, 2)
    assert cells.tolist() == [[0, 0], [639, 479], [320, 240], [0, 0], [1, 1]]


def test_to_mask_coords_identity() -> None:
    geometry = MaskGeometry((480, 640), (480, 640))
    points = np.array([[0, 0], [639.5, 479.5], [10.99, 20.01]])
    assert geometry.to_mask_coords(points).tolist() == [[0, 0], [639, 479], [10, 20]]


def test_to_mask_coords_pad_on_y() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))  # gain 0.5, 12 rows of padding above and below
    points = np.array([[0, 0], [1279, 719], [640, 360], [3, 1]])
    assert geometry.to_mask_coords(points).tolist() == [[0, 12], [639, 371], [320, 192], [1, 12]]


def test_to_mask_coords_pad_on_x() -> None:
    geometry = MaskGeometry((1280, 720), (640, 384))  # portrait: 12 columns of padding left and right
    points = np.array([[0, 0], [719, 1279], [360, 640]])
    assert geometry.to_mask_coords(points).tolist() == [[12, 0], [371, 639], [192, 320]]
    small = MaskGeometry((1080, 810), (160, 128))  # gain 0.148, pad_x 4
    assert small.to_mask_coords(np.array([[0, 0], [809, 1079]])).tolist() == [[4, 0], [123, 159]]


def test_to_mask_coords_clips_at_the_borders() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))
    points = np.array([[-50, -50], [1280, 720], [5000, 5000], [-1, 360]])
    assert geometry.to_mask_coords(points).tolist() == [[0, 0], [639, 372], [639, 383], [0, 192]]
    assert geometry.to_mask_coords(np.zeros((0, 2))).shape == (0, 2)


def test_to_mask_coords_lands_inside_the_upsampled_cell() -> None:
    """A point's cell is the cell whose upsampled footprint holds that pixel (checked cell by cell)."""
    for image_shape, mask_shape in LETTERBOXES:
        geometry = MaskGeometry(image_shape, mask_shape)
        left, top, width, height = geometry.content
        rng = np.random.default_rng(3)
        for _ in range(20):
            my, mx = int(rng.integers(top, top + height)), int(rng.integers(left, left + width))
            cell = np.zeros(mask_shape, dtype=bool)
            cell[max(my - 1, top) : my + 2, max(mx - 1, left) : mx + 2] = True  # 3x3 so it survives upsampling
            ys, xs = np.nonzero(geometry.upsample(cell))
            assert len(xs), (image_shape, mask_shape)
            centre = geometry.to_mask_coords(np.array([[xs.mean(), ys.mean()]]))[0]
            assert abs(centre[0] - mx) <= 1 and abs(centre[1] - my) <= 1, (image_shape, mask_shape)
            hits = geometry.to_mask_coords(np.stack([xs + 0.5, ys + 0.5], axis=1))
            assert cell[hits[:, 1], hits[:, 0]].all(), (image_shape, mask_shape)


def _cells(geometry: MaskGeometry, box: tuple[float, ...]) -> tuple[int, ...]:
    return tuple(int(v) for v in geometry.boxes_to_mask_cells(np.asarray(box))[0])


def test_boxes_to_mask_cells() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))
    assert _cells(geometry, (0, 0, 1280, 720)) == (0, 12, 640, 372)  # the image content
    assert _cells(geometry, (100, 100, 301, 201)) == (50, 62, 151, 113)  # floor start, ceil end
    assert _cells(geometry, (-100, -100, 5000, 5000)) == (0, 0, 640, 384)  # clipped to the mask
    portrait = MaskGeometry((1280, 720), (640, 384))
    assert _cells(portrait, (0, 0, 720, 1280)) == (12, 0, 372, 640)
    identity = MaskGeometry((480, 640), (480, 640))
    assert _cells(identity, (10.5, 20.5, 30.5, 40.5)) == (10, 20, 31, 41)


def test_boxes_to_mask_cells_cover_the_points_inside() -> None:
    rng = np.random.default_rng(5)
    for image_shape, mask_shape in LETTERBOXES:
        geometry = MaskGeometry(image_shape, mask_shape)
        h, w = image_shape
        for _ in range(10):
            x1, x2 = np.sort(rng.uniform(0, w, 2))
            y1, y2 = np.sort(rng.uniform(0, h, 2))
            mx1, my1, mx2, my2 = _cells(geometry, (x1, y1, x2, y2))
            inside = np.stack([rng.uniform(x1, x2, 50), rng.uniform(y1, y2, 50)], axis=1)
            cells = geometry.to_mask_coords(inside)
            assert ((cells[:, 0] >= mx1) & (cells[:, 0] < mx2) & (cells[:, 1] >= my1) & (cells[:, 1] < my2)).all()


# ------------------------------------------------------------------------------------------------ upsampling


@pytest.mark.parametrize(("image_shape", "mask_shape"), LETTERBOXES)
def test_upsample_matches_ultralytics_scale_masks(image_shape: tuple[int, int], mask_shape: tuple[int, int]) -> None:
    """Bit-exact with ``scale_masks(masks[None].float(), orig_shape)[0] > 0.5`` (ties at 0.5 included)."""
    geometry = MaskGeometry(image_shape, mask_shape)
    rng = np.random.default_rng(sum(image_shape) * 7 + sum(mask_shape))
    for _ in range(3):
        mask = _random_blobs(mask_shape, rng)
        ours = geometry.upsample(mask)
        reference = _ultralytics_upsample(mask, image_shape)
        assert ours.shape == image_shape and ours.dtype == bool
        differing = int(np.count_nonzero(ours ^ reference))
        assert differing == 0, f"{differing} of {int(reference.sum())} pixels differ, IoU {iou(ours, reference):.5f}"


def test_upsample_matches_ultralytics_on_a_single_cell_and_on_thin_lines() -> None:
    geometry = MaskGeometry((1080, 810), (160, 128))  # each cell is 6.75 image pixels
    for mask in (np.zeros((160, 128), dtype=bool), np.ones((160, 128), dtype=bool)):
        assert np.array_equal(geometry.upsample(mask), _ultralytics_upsample(mask, (1080, 810)))
    single = np.zeros((160, 128), dtype=bool)
    single[80, 60] = True
    up = geometry.upsample(single)
    assert np.array_equal(up, _ultralytics_upsample(single, (1080, 810)))
    # Bilinear keeps (1 - dx)(1 - dy) > 0.5 around the centre: 4 (1 - ln 2) / 2 = 0.61 of a 6.75 x 6.75 cell = 28 pixels
    assert 20 <= up.sum() <= 36
    line = np.zeros((160, 128), dtype=bool)
    line[:, 30] = True
    line[100, :] = True
    assert np.array_equal(geometry.upsample(line), _ultralytics_upsample(line, (1080, 810)))


def test_upsample_ignores_the_letterbox_padding() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))
    padding_only = np.zeros((384, 640), dtype=bool)
    padding_only[:12] = padding_only[372:] = True
    assert not geometry.upsample(padding_only).any()
    content = ~padding_only
    assert geometry.upsample(content).all()


@pytest.mark.parametrize(("image_shape", "mask_shape"), LETTERBOXES)
def test_upsample_region_is_exactly_the_crop_of_upsample(
    image_shape: tuple[int, int], mask_shape: tuple[int, int]
) -> None:
    geometry = MaskGeometry(image_shape, mask_shape)
    rng = np.random.default_rng(11)
    mask = _random_blobs(mask_shape, rng, threshold=0.5)
    full = geometry.upsample(mask)
    h, w = image_shape
    regions = [(0, 0, w, h), (0, 0, 1, 1), (w - 1, h - 1, w, h), (w // 3, h // 4, w // 3 + 1, h - 1)]
    for _ in range(15):
        x0, x1 = sorted(int(v) for v in rng.integers(0, w + 1, 2))
        y0, y1 = sorted(int(v) for v in rng.integers(0, h + 1, 2))
        regions.append((x0, y0, x1, y1))
    for x0, y0, x1, y1 in regions:
        region = geometry.upsample_region(mask, x0, y0, x1, y1)
        assert region.shape == (y1 - y0, x1 - x0)
        assert np.array_equal(region, full[y0:y1, x0:x1]), (x0, y0, x1, y1)


def test_upsample_region_empty_and_inverted() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))
    mask = np.ones((384, 640), dtype=bool)
    assert geometry.upsample_region(mask, 10, 10, 10, 20).shape == (10, 0)
    assert geometry.upsample_region(mask, 10, 20, 5, 10).shape == (0, 0)


@pytest.mark.parametrize(("image_shape", "mask_shape"), LETTERBOXES)
def test_cells_to_image_region_holds_every_upsampled_pixel(
    image_shape: tuple[int, int], mask_shape: tuple[int, int]
) -> None:
    """Upsampling only ``cells_to_image_region(mask_box(mask))`` loses nothing, and stays tight."""
    geometry = MaskGeometry(image_shape, mask_shape)
    rng = np.random.default_rng(13)
    masks = [(_random_blobs(mask_shape, rng, threshold=0.8), False) for _ in range(4)]
    for size in (1, 2, 5):  # small squares, where one cell more or less matters
        for _ in range(4):
            mask = np.zeros(mask_shape, dtype=bool)
            y, x = int(rng.integers(0, mask_shape[0])), int(rng.integers(0, mask_shape[1]))
            mask[y : y + size, x : x + size] = True
            masks.append((mask, size > 1))
    for mask, solid in masks:
        full = geometry.upsample(mask)
        cells = mask_box(mask)
        assert cells is not None
        x0, y0, x1, y1 = geometry.cells_to_image_region(cells)
        outside = full.copy()
        outside[y0:y1, x0:x1] = False
        assert not outside.any(), (cells, (x0, y0, x1, y1), mask_box(full))
        tight = mask_box(full)
        if solid and tight is not None:  # edges of a solid block land on cell edges: ~2 pixels of slack
            assert max(tight[0] - x0, tight[1] - y0, x1 - tight[2], y1 - tight[3]) <= 3, (tight, (x0, y0, x1, y1))
    assert geometry.cells_to_image_region((0, 0, 0, 0)) == (0, 0, 0, 0)


def test_region_stats_and_encoding_place_a_region_in_the_frame() -> None:
    """Box, area, centroid and the encoding of a region at (x0, y0) equal those of the same pixels in a frame."""
    rng = np.random.default_rng(7)
    region = rng.random((23, 31)) > 0.6
    region[0], region[:, 0] = False, False  # the tight box starts inside the region
    frame = np.zeros((80, 90), dtype=bool)
    frame[40:63, 11:42] = region
    ys, xs = np.nonzero(frame)
    box, area, centroid = region_stats(region, 11, 40)
    assert box == tuple(float(v) for v in mask_box(frame)) and area == len(xs)
    assert centroid == (float(xs.mean()), float(ys.mean()))
    encoded = encode_region(region, 11, 40)
    assert encoded.area == area and np.array_equal(decode_mask(encoded, frame.shape), frame)
    whole = encode_mask(frame)
    assert (whole.x, whole.y, whole.width, whole.height) == (encoded.x, encoded.y, encoded.width, encoded.height)
    assert np.array_equal(whole.counts, encoded.counts)
    assert region_stats(np.zeros((4, 4), dtype=bool)) is None


def test_box_intersections() -> None:
    boxes = np.array([[0, 0, 10, 10], [5, 5, 15, 25], [20, 20, 30, 30]], dtype=np.float32)
    assert box_intersections(boxes, (5, 0, 12, 8)).tolist() == [40.0, 21.0, 0.0]


def test_pixels_per_cell_and_boxes_to_cells() -> None:
    geometry = MaskGeometry((720, 1280), (384, 640))  # content 640x360 at (0, 12)
    assert geometry.pixels_per_cell == pytest.approx(4.0)
    cells = geometry.boxes_to_mask_cells(np.array([[0, 0, 1280, 720], [100, 100, 301, 201]]))
    assert cells.tolist() == [[0, 12, 640, 372], [50, 62, 151, 113]]
