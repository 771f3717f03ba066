"""Lazy instance masks (prototype logits, made on demand) against ultralytics' eager ``process_mask``.

Random coefficients, prototypes and boxes: the pixels are ``process_mask(upsample=True)``'s up to float32 rounding
at zero, and every count, bound, run, point lookup and the empty-mask filter reads those same pixels. The real
frames' check (IoU with ``process_mask`` on the shared images) is in ``test_mask_accuracy.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from fastsam_ros.segmentation.instance_masks import InstanceMasks
from fastsam_ros.segmentation.mask_set import DenseMasks, pack_rows
from fastsam_ros.segmentation.masks import EncodedMask, encode_mask, mask_box

REPO = Path(__file__).resolve().parents[1]
torch = pytest.importorskip("torch")
ops = pytest.importorskip("ultralytics.utils.ops")


def _case(seed: int, count: int, proto_shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficients @ prototypes -> logits, boxes (some at the frame's edges, some tiny), and ultralytics' masks."""
    rng = np.random.default_rng(seed)
    ph, pw = proto_shape
    height, width = 4 * ph, 4 * pw
    protos = rng.standard_normal((32, ph, pw)).astype(np.float32)
    protos[0] = 1.0  # a constant prototype: its coefficient shifts the logits, so some masks are tiny or empty
    coefficients = (rng.standard_normal((count, 32)) * 0.4).astype(np.float32)
    coefficients[:, 0] = rng.uniform(-9, 2, count)
    protos, coefficients = torch.from_numpy(protos), torch.from_numpy(coefficients)
    size = np.array([width, height, width, height], dtype=np.float64)
    starts = rng.uniform(-0.1, 0.9, (count, 2)) * size[:2]
    extents = rng.uniform(0.005, 0.8, (count, 2)) * size[:2]
    corners = np.concatenate([starts, starts + extents], axis=1)
    corners[::5, 2:] = size[:2]  # reaching the frame's far edges
    corners[1::7, :2] = 0.0
    boxes = torch.from_numpy(np.clip(corners, 0, size).astype(np.float32))
    eager = ops.process_mask(protos, coefficients, boxes.clone(), (height, width), upsample=True).numpy().astype(bool)
    logits = (coefficients @ protos.float().view(32, -1)).view(-1, ph, pw).numpy()
    return logits, boxes.numpy(), eager


def _fields(encoded: list[EncodedMask]) -> list[tuple[int, int, int, int, list[int]]]:
    return [(mask.x, mask.y, mask.width, mask.height, mask.counts.tolist()) for mask in encoded]


CASES = [(0, 5, (120, 160)), (1, 40, (30, 40)), (2, 1, (17, 23)), (3, 100, (40, 24)), (4, 7, (8, 30))]


def _upsampled(logits: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``F.interpolate(bilinear)`` of the logits, as ``process_mask`` computes them before ``> 0``."""
    return torch.nn.functional.interpolate(torch.from_numpy(logits)[None], shape, mode="bilinear")[0].numpy()


@pytest.mark.parametrize(("seed", "count", "proto_shape"), CASES)
def test_lazy_masks_are_process_masks_and_every_reader_agrees(seed: int, count: int,
                                                               proto_shape: tuple[int, int]) -> None:
    """The compiled pass's pixels differ from ``process_mask``'s at most where the interpolated logit is within
    float32 rounding of zero; every other reader (runs, bounds, counts, points, grids) gives exactly those pixels."""
    logits, boxes, eager = _case(seed, count, proto_shape)
    shape = eager.shape[1:]
    lazy = InstanceMasks.from_logits(logits, boxes, shape)
    dense = lazy.dense()  # one compiled pass
    differ = dense != eager
    assert np.all(np.abs(_upsampled(logits, shape)[differ]) < 1e-5)
    assert np.array_equal(InstanceMasks.from_logits(logits, boxes, shape).nonempty(),
                          dense.reshape(count, -1).any(axis=1))
    expected = _fields([encode_mask(mask) for mask in dense])
    some = list(range(count))[::-3]  # a few, in another order: run lengths of the instances asked for
    assert _fields(InstanceMasks.from_logits(logits, boxes, shape).encoded(some)) == [expected[i] for i in some]
    one_by_one = InstanceMasks.from_logits(logits, boxes, shape)
    full = (0, 0, shape[1], shape[0])
    assert np.array_equal(np.stack([one_by_one.window(i, full) for i in range(count)]), dense)  # a pass each
    assert _fields(one_by_one.encoded()) == expected  # gathered from a pass each
    assert _fields(lazy.encoded()) == expected
    height, width = shape
    window = (width // 5, height // 7, width - 3, height - 1)
    for i in range(count):
        assert lazy.bounds(i) == mask_box(dense[i])
        assert lazy.count(i, window) == int(dense[i, window[1] : window[3], window[0] : window[2]].sum())
        assert np.array_equal(lazy.window(i, (-3, -2, 9, 11)), np.pad(dense[i], ((2, 0), (3, 0)))[:13, :12])
    rng = np.random.default_rng(seed)
    xs, ys = rng.integers(0, width, 300), rng.integers(0, height, 300)
    assert np.array_equal(InstanceMasks.from_logits(logits, boxes, shape).at(xs, ys), dense[:, ys, xs])
    for step, offset in ((12, 6), (5, 0), (3, 2)):  # the tracker's grid: only grid points are evaluated
        fresh = InstanceMasks.from_logits(logits, boxes, shape)
        assert np.array_equal(fresh.grid(step, offset), dense[:, offset::step, offset::step])
    for cells in (3, 2, 1):  # the tracker's packed grid: the sign of the logit the upsample weighs 7/8, in the crops
        first, step = cells // 2, 4 * cells
        gys, gxs = np.arange(4 * first + 2, height, step), np.arange(4 * first + 2, width, step)
        if len(gxs) > 64:
            continue
        crops = np.clip(np.ceil(boxes), 0, [width, height, width, height])
        inside = ((gys[None, :, None] >= crops[:, 1, None, None]) & (gys[None, :, None] < crops[:, 3, None, None])
                  & (gxs[None, None, :] >= crops[:, 0, None, None]) & (gxs[None, None, :] < crops[:, 2, None, None]))
        fresh = InstanceMasks.from_logits(logits, boxes, shape)
        assert np.array_equal(fresh.packed_grid(cells), pack_rows(inside & (logits[:, first::cells, first::cells] > 0)))
    keep = np.arange(count) % 3 == 0
    assert np.array_equal(lazy.subset(keep).dense(), dense[keep])
    assert lazy._logits is None  # once every pixel is made the logits are let go; lookups still answer
    assert np.array_equal(lazy.at(xs, ys), dense[:, ys, xs])
    for step, offset in ((12, 6), (5, 0)):
        assert np.array_equal(lazy.grid(step, offset), dense[:, offset::step, offset::step])
    if width <= 4 * 64:  # without logits the packed grid is the exact one
        assert np.array_equal(lazy.packed_grid(1), pack_rows(dense[:, 2::4, 2::4]))
    assert np.array_equal(lazy.nonempty(), dense.reshape(count, -1).any(axis=1))


def _cancelling_logits() -> np.ndarray:
    """Logits whose upsample cancels to within an ulp of 0 at thousands of pixels (each even column -1/7 of the
    next, each odd row -7 times the one above): there the order of the float32 sums decides the sign."""
    logits = np.random.default_rng(0).standard_normal((4, 30, 40)).astype(np.float32)
    logits[:, :, 0::2] = -logits[:, :, 1::2] / np.float32(7)
    logits[:, 1::2, :] = -logits[:, 0::2, :] * np.float32(7)
    return logits


@pytest.mark.parametrize("scale", [(4, 4), (3.5, 2.25)])
def test_pixels_within_rounding_of_zero_are_the_same_for_every_reader(scale: tuple[float, float]) -> None:
    """Where only rounding decides, the compiled pass and the point lookups still agree (one float32 formula:
    along x, then y), at 4x and at other scales."""
    logits = _cancelling_logits()
    height, width = int(30 * scale[0]), int(40 * scale[1])
    boxes = np.array([[0, 0, width, height], [3, 5, width - 7, height], [9, 1, 30, 29], [0, 0, 0, 9]], np.float32)
    ys, xs = (grid.ravel() for grid in np.mgrid[0:height, 0:width])
    pointwise = InstanceMasks.from_logits(logits, boxes, (height, width)).at(xs, ys).reshape(4, height, width)
    compiled = InstanceMasks.from_logits(logits, boxes, (height, width))
    assert np.array_equal(compiled.dense(), pointwise)
    assert _fields(compiled.encoded()) == _fields([encode_mask(mask) for mask in pointwise])
    if scale == (4, 4):  # the case is the one it claims to be (at 4x the weights are the ones it cancels for)
        assert np.count_nonzero(np.abs(_upsampled(logits, (height, width))) < 1e-5) > 1000


def test_dense_masks_serve_the_same_interface() -> None:
    masks = np.zeros((2, 6, 8), dtype=bool)
    masks[0, 1:3, 2:5] = True
    dense = DenseMasks(masks)
    assert not dense.is_lazy and dense.shape == (6, 8) and len(dense) == 2
    assert dense.bounds(0) == (2, 1, 5, 3) and dense.bounds(1) is None
    assert dense.count(0, (0, 0, 3, 6)) == 2
    assert dense.nonempty().tolist() == [True, False]
    assert dense.at(np.array([2, 0]), np.array([1, 0])).tolist() == [[True, False], [False, False]]
    assert np.array_equal(dense.grid(2, 1), masks[:, 1::2, 1::2])
    assert np.array_equal(dense.packed_grid(1), pack_rows(masks[:, 2::4, 2::4]))
    assert dense.packed_grid(1).tolist() == [[0b01], [0b00]]  # grid row: pixel row 2; bits: pixel columns 2, 6
    assert _fields(dense.encoded()) == _fields([encode_mask(mask) for mask in masks])
    assert np.array_equal(dense.subset(np.array([1])).dense(), masks[1:])


def test_the_result_types_do_not_import_the_compiled_kernel() -> None:
    """The layer rule: the result types sit below the kernel (numba: seconds to import and compile)."""
    code = "import sys, fastsam_ros.types; assert 'numba' not in sys.modules, 'numba'; " \
           "assert 'fastsam_ros.segmentation.instance_masks' not in sys.modules, 'instance_masks'"
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def test_a_click_makes_only_the_pixels_of_the_masks_under_it() -> None:
    """Masks are made for what a rule reads: a point prompt makes the candidates under the point, no others."""
    from fastsam_ros.prompts.selection import select
    from fastsam_ros.segmentation.masks import MaskGeometry
    from fastsam_ros.types import Prompt, Segmentation

    logits, boxes, eager = _case(3, 100, (40, 24))
    lazy = InstanceMasks.from_logits(logits, boxes, eager.shape[1:])
    shape = eager.shape[1:]
    segmentation = Segmentation(masks=lazy, boxes=boxes, scores=np.ones(100, np.float32),
                                geometry=MaskGeometry(shape, shape))
    x, y = 40, 70
    answer = select(segmentation, Prompt(id="p", points=((x + 0.5, y + 0.5),), labels=(1,)))
    under = np.flatnonzero(eager[:, y, x])
    assert answer.ok and answer.objects[0].instances[0] == under[np.argmin(eager[under].sum(axis=(1, 2)))]
    assert set(lazy._made) == set(under.tolist())  # the point lookup itself made nothing


def test_the_warm_up_compiles_every_kernel_a_frame_uses() -> None:
    """A frame must not compile a kernel again (seconds holding the GIL: the node's executor stalls): the warm-up
    calls each with the types frames pass."""
    from fastsam_ros.segmentation import mask_kernel
    from fastsam_ros.segmentation.instance_masks import compile_kernels
    from fastsam_ros.segmentation.masks import MaskGeometry
    from fastsam_ros.tracking import tracker as tracking
    from fastsam_ros.types import Segmentation

    compile_kernels()
    tracking.compile_kernels()
    kernels = (mask_kernel.make_masks, mask_kernel.packed_signs, mask_kernel.positive_at, tracking._overlaps,
               tracking._match, tracking._bounds, tracking._area)
    compiled = [len(kernel.signatures) for kernel in kernels]
    logits, boxes, eager = _case(1, 40, (30, 40))
    tracker = tracking.InstanceTracker()
    for shift in (0, 1, 2):  # a panning camera: tracks continue
        moved = np.roll(logits, shift, axis=2)
        lazy = InstanceMasks.from_logits(moved, boxes, eager.shape[1:])
        segmentation = Segmentation(masks=lazy, boxes=boxes, scores=np.ones(40, np.float32),
                                    geometry=MaskGeometry(eager.shape[1:], eager.shape[1:]))
        tracker.update(segmentation)
        segmentation.masks.at(np.arange(5), np.arange(5))  # a click
        segmentation.encoded_masks()
    assert [len(kernel.signatures) for kernel in kernels] == compiled


def test_no_instances_encode_to_nothing() -> None:
    """A frame without instances (lazy or dense) gives an empty encoding, not an error."""
    for masks in (InstanceMasks.from_logits(np.zeros((0, 4, 4), np.float32), np.zeros((0, 4), np.float32), (16, 16)),
                  DenseMasks(np.zeros((0, 16, 16), bool))):
        encoded = masks.encoded()
        assert len(encoded) == 0 and encoded.counts.size == 0 and encoded.areas.size == 0
