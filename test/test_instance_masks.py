"""Lazy instance masks (prototype logits, made on demand) against ultralytics' eager ``process_mask``.

Random coefficients, prototypes and boxes: every pixel, count, bound, point lookup and the empty-mask filter
must equal what ``process_mask(upsample=True)`` makes, whichever way the lazy masks compute them.
"""

from __future__ import annotations

import numpy as np
import pytest

from fastsam_ros.engine import _arithmetic, _upsampler
from fastsam_ros.instance_masks import Arithmetic, InstanceMasks, calibrate, pack_rows
from fastsam_ros.masks import EncodedMask, encode_mask, mask_box

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


@pytest.mark.parametrize(("seed", "count", "proto_shape"), CASES)
@pytest.mark.parametrize("path", ["compiled", "kernel"])
def test_lazy_masks_equal_process_mask(seed: int, count: int, proto_shape: tuple[int, int], path: str) -> None:
    """``compiled``: pixels made by the emulation in compiled code; ``kernel``: by PyTorch's kernel (no emulation)."""
    logits, boxes, eager = _case(seed, count, proto_shape)
    arithmetic = _arithmetic("cpu")
    if arithmetic is None:
        pytest.skip("no emulation reproduces this PyTorch build's bilinear kernel (the kernel path serves)")
    upsample, emulation = (_upsampler("cpu"), None) if path == "kernel" else (None, arithmetic)
    lazy = InstanceMasks.from_logits(logits, boxes, eager.shape[1:], emulation, upsample)
    assert np.array_equal(lazy.nonempty(), eager.reshape(count, -1).any(axis=1))
    expected = _fields([encode_mask(mask) for mask in eager])
    some = list(range(count))[::-3]  # a few, in another order: run lengths of the instances asked for
    assert _fields(InstanceMasks.from_logits(logits, boxes, eager.shape[1:], emulation, upsample).encoded(some)) == [
        expected[i] for i in some]
    one_by_one = InstanceMasks.from_logits(logits, boxes, eager.shape[1:], emulation, upsample)
    full = (0, 0, eager.shape[2], eager.shape[1])
    assert np.array_equal(np.stack([one_by_one.window(i, full) for i in range(count)]), eager)  # a call each
    assert _fields(one_by_one.encoded()) == expected  # gathered from a pass each
    assert np.array_equal(lazy.dense(), eager)  # batched calls
    assert _fields(lazy.encoded()) == expected
    height, width = eager.shape[1:]
    window = (width // 5, height // 7, width - 3, height - 1)
    for i in range(count):
        assert lazy.bounds(i) == mask_box(eager[i])
        assert lazy.count(i, window) == int(eager[i, window[1] : window[3], window[0] : window[2]].sum())
        assert np.array_equal(lazy.window(i, (-3, -2, 9, 11)), np.pad(eager[i], ((2, 0), (3, 0)))[:13, :12])
    rng = np.random.default_rng(seed)
    xs, ys = rng.integers(0, width, 300), rng.integers(0, height, 300)
    assert np.array_equal(lazy.at(xs, ys), eager[:, ys, xs])
    for step, offset in ((12, 6), (5, 0), (3, 2)):  # the tracker's grid: only grid points are evaluated
        for grid_emulation in (arithmetic, emulation):  # None: the kernel makes the pixels
            fresh = InstanceMasks.from_logits(logits, boxes, eager.shape[1:], grid_emulation, upsample)
            assert np.array_equal(fresh.grid(step, offset), eager[:, offset::step, offset::step])
    for cells in (3, 2, 1):  # the tracker's packed grid: the sign of the logit the upsample weighs 7/8, in the crops
        first, step = cells // 2, 4 * cells
        gys, gxs = np.arange(4 * first + 2, height, step), np.arange(4 * first + 2, width, step)
        if len(gxs) > 64:
            continue
        crops = np.clip(np.ceil(boxes), 0, [width, height, width, height])
        inside = ((gys[None, :, None] >= crops[:, 1, None, None]) & (gys[None, :, None] < crops[:, 3, None, None])
                  & (gxs[None, None, :] >= crops[:, 0, None, None]) & (gxs[None, None, :] < crops[:, 2, None, None]))
        fresh = InstanceMasks.from_logits(logits, boxes, eager.shape[1:], emulation, upsample)
        assert np.array_equal(fresh.packed_grid(cells), pack_rows(inside & (logits[:, first::cells, first::cells] > 0)))
    keep = np.arange(count) % 3 == 0
    assert np.array_equal(lazy.subset(keep).dense(), eager[keep])
    assert lazy._logits is None  # once every pixel is made the logits are let go; lookups still answer
    assert np.array_equal(lazy.at(xs, ys), eager[:, ys, xs])
    if width <= 4 * 64:  # without logits the packed grid is the exact one
        assert np.array_equal(lazy.packed_grid(1), pack_rows(eager[:, 2::4, 2::4]))
    assert np.array_equal(lazy.nonempty(), eager.reshape(count, -1).any(axis=1))


ROUNDINGS = [Arithmetic(x, y) for x in (True, False) for y in (True, False)]


def _cancelling_logits() -> np.ndarray:
    """Logits whose upsample cancels to within an ulp of 0 at thousands of pixels (each even column -1/7 of the
    next, each odd row -7 times the one above): there the four roundings disagree on the sign."""
    logits = np.random.default_rng(0).standard_normal((4, 30, 40)).astype(np.float32)
    logits[:, :, 0::2] = -logits[:, :, 1::2] / np.float32(7)
    logits[:, 1::2, :] = -logits[:, 0::2, :] * np.float32(7)
    return logits


@pytest.mark.parametrize("arithmetic", ROUNDINGS)
@pytest.mark.parametrize("scale", [(4, 4), (3.5, 2.25)])
def test_compiled_masks_round_as_the_emulation(arithmetic: Arithmetic, scale: tuple[float, float]) -> None:
    """Every rounding a kernel may have, and resizes other than 4x: the compiled pixels are the emulation's."""
    logits = _cancelling_logits()
    height, width = int(30 * scale[0]), int(40 * scale[1])
    boxes = np.array([[0, 0, width, height], [3, 5, width - 7, height], [9, 1, 30, 29], [0, 0, 0, 9]], np.float32)
    ys, xs = (grid.ravel() for grid in np.mgrid[0:height, 0:width])
    emulated = {rounding: InstanceMasks.from_logits(logits, boxes, (height, width), rounding, None).at(xs, ys)
                for rounding in ROUNDINGS}
    if scale == (4, 4):  # the data tells the roundings apart (at 4x the weights are the ones it cancels for)
        assert all(np.count_nonzero(emulated[arithmetic] != other) > 100 for rounding, other in emulated.items()
                   if rounding != arithmetic)
    compiled = InstanceMasks.from_logits(logits, boxes, (height, width), arithmetic, None)
    assert np.array_equal(compiled.dense(), emulated[arithmetic].reshape(4, height, width))
    assert _fields(compiled.encoded()) == _fields([encode_mask(mask) for mask in compiled.dense()])


def test_calibration_finds_the_kernels_rounding() -> None:
    """The emulation is chosen by measuring the kernel; a kernel no emulation matches is reported as None."""
    assert isinstance(_arithmetic("cpu"), Arithmetic | None)

    def halved(logits: np.ndarray) -> np.ndarray:  # a "kernel" no emulation reproduces
        return np.repeat(np.repeat(logits, 4, axis=1), 4, axis=2) * np.float32(0.5)

    assert calibrate(halved) is None


def test_dense_masks_serve_the_same_interface() -> None:
    masks = np.zeros((2, 6, 8), dtype=bool)
    masks[0, 1:3, 2:5] = True
    dense = InstanceMasks.from_dense(masks)
    assert not dense.is_lazy and dense.shape == (6, 8) and len(dense) == 2
    assert dense.bounds(0) == (2, 1, 5, 3) and dense.bounds(1) is None
    assert dense.count(0, (0, 0, 3, 6)) == 2
    assert dense.nonempty().tolist() == [True, False]
    assert dense.at(np.array([2, 0]), np.array([1, 0])).tolist() == [[True, False], [False, False]]
    assert np.array_equal(dense.grid(2, 1), masks[:, 1::2, 1::2])
    assert np.array_equal(dense.packed_grid(1), pack_rows(masks[:, 2::4, 2::4]))
    assert dense.packed_grid(1).tolist() == [[0b01], [0b00]]  # grid row: pixel row 2; bits: pixel columns 2, 6


def test_lazy_masks_need_a_way_to_compute() -> None:
    with pytest.raises(ValueError, match="kernel"):
        InstanceMasks.from_logits(np.zeros((1, 3, 5), np.float32), np.zeros((1, 4)), (12, 21), None, None)


def test_a_click_makes_only_the_pixels_of_the_masks_under_it() -> None:
    """Masks are made for what a rule reads: a point prompt makes the candidates under the point, no others."""
    from fastsam_ros.masks import MaskGeometry
    from fastsam_ros.selection import select
    from fastsam_ros.types import Prompt, Segmentation

    logits, boxes, eager = _case(3, 100, (40, 24))
    arithmetic = _arithmetic("cpu")
    lazy = InstanceMasks.from_logits(logits, boxes, eager.shape[1:], arithmetic, _upsampler("cpu"))
    shape = eager.shape[1:]
    segmentation = Segmentation(masks=lazy, boxes=boxes, scores=np.ones(100, np.float32),
                                geometry=MaskGeometry(shape, shape))
    x, y = 40, 70
    answer = select(segmentation, Prompt(id="p", points=((x + 0.5, y + 0.5),), labels=(1,)))
    under = np.flatnonzero(eager[:, y, x])
    assert answer.ok and answer.objects[0].instances[0] == under[np.argmin(eager[under].sum(axis=(1, 2)))]
    made = set(lazy._windows) | set(lazy._made)  # by PyTorch's kernel, by the compiled pass
    if arithmetic is not None:  # the point lookup itself made nothing
        assert made == set(under.tolist())
    assert len(made) < 100


def test_the_warm_up_compiles_every_kernel_a_frame_uses() -> None:
    """A frame must not compile a kernel again (seconds holding the GIL: the node's executor stalls): the warm-up
    calls each with the types frames pass."""
    from fastsam_ros import mask_kernel, tracking
    from fastsam_ros.instance_masks import compile_kernels
    from fastsam_ros.masks import MaskGeometry
    from fastsam_ros.types import Segmentation

    compile_kernels()
    tracking.compile_kernels()
    kernels = (mask_kernel.make_masks, mask_kernel.packed_signs, tracking._overlaps, tracking._match,
               tracking._bounds, tracking._area)
    compiled = [len(kernel.signatures) for kernel in kernels]
    logits, boxes, eager = _case(1, 40, (30, 40))
    tracker = tracking.InstanceTracker()
    for shift in (0, 1, 2):  # a panning camera: tracks continue
        moved = np.roll(logits, shift, axis=2)
        lazy = InstanceMasks.from_logits(moved, boxes, eager.shape[1:], _arithmetic("cpu"), _upsampler("cpu"))
        segmentation = Segmentation(masks=lazy, boxes=boxes, scores=np.ones(40, np.float32),
                                    geometry=MaskGeometry(eager.shape[1:], eager.shape[1:]))
        tracker.update(segmentation)
        segmentation.encoded_masks()
    assert [len(kernel.signatures) for kernel in kernels] == compiled


def test_no_instances_encode_to_nothing() -> None:
    """A frame without instances (the compiled path as much as the others) gives an empty encoding, not an error."""
    for arithmetic in (Arithmetic(True, True), None):
        masks = InstanceMasks.from_logits(np.zeros((0, 4, 4), np.float32), np.zeros((0, 4), np.float32), (16, 16),
                                          arithmetic, _upsampler("cpu"))
        encoded = masks.encoded()
        assert len(encoded) == 0 and encoded.counts.size == 0 and encoded.areas.size == 0
