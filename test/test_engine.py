"""FastSAMEngine: loading (with clear errors), all-instance segmentation, and exported (ONNX) models.

Runs with ``tiny_model`` (random weights, no download) everywhere it can; tests that need the real
stand-in checkpoint or sample images skip with the reason when those are absent.
"""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_ros.segmentation.engine import (
    EngineConfig,
    FastSAMEngine,
    ModelLoadError,
    check_image,
    resolve_model,
    segmentation_from_result,
)
from fastsam_ros.segmentation.masks import MaskGeometry, iou, mask_box


def _synthetic_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR frame with a few flat shapes and mild noise."""
    rng = np.random.default_rng(seed)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = (40, 90, 160)
    cv2.rectangle(image, (width // 10, height // 6), (width // 2, height * 5 // 6), (250, 250, 250), -1)
    cv2.circle(image, (width * 3 // 4, height // 2), min(height, width) // 5, (10, 200, 30), -1)
    noise = rng.integers(-10, 11, image.shape)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / ((box[2] - box[0]) * (box[3] - box[1]) + areas - inter)


@pytest.fixture(scope="module")
def tiny_engine(tiny_model: Path) -> FastSAMEngine:
    return FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160))


# ------------------------------------------------------------------------------------------ segmentation


@pytest.mark.parametrize(("height", "width"), [(240, 320), (300, 200), (97, 161)])
def test_segment_shapes_are_consistent(tiny_engine: FastSAMEngine, height: int, width: int) -> None:
    image = _synthetic_image(height, width)
    segmentation = tiny_engine.segment(image)
    n = len(segmentation)
    assert n > 0, "the tiny model's raised class biases should report instances on any image"
    assert n <= tiny_engine.config.max_det

    masks = segmentation.masks
    assert masks.is_lazy and len(masks) == n
    assert masks.shape == segmentation.geometry.mask_shape
    assert max(masks.shape) == tiny_engine.config.imgsz  # network resolution, letterboxed
    assert segmentation.image_shape == (height, width) == segmentation.geometry.image_shape

    boxes = segmentation.boxes
    assert boxes.shape == (n, 4) and boxes.dtype == np.float32
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= width).all() and (boxes[:, 3] <= height).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()

    scores = segmentation.scores
    assert scores.shape == (n,) and scores.dtype == np.float32
    assert ((scores >= tiny_engine.config.conf) & (scores <= 1)).all()

    areas = segmentation.areas
    assert areas.shape == (n,) and areas.dtype == np.int64
    for i in range(n):
        full = segmentation.full_mask(i)
        pixels = int(full.sum())
        box = mask_box(full)
        # Within 3 %, plus half a pixel along each edge for thin masks (a 4-cell strip is 7.5 or 8 pixels tall).
        slack = 0.03 * pixels + (box[2] - box[0] + box[3] - box[1] if box else 0)
        assert abs(int(areas[i]) - pixels) <= slack, (i, int(areas[i]), pixels)


def test_segment_geometry_is_ultralytics_letterbox(tiny_engine: FastSAMEngine) -> None:
    from ultralytics.data.augment import LetterBox

    for height, width in [(240, 320), (300, 200), (97, 161)]:
        image = _synthetic_image(height, width)
        geometry = tiny_engine.segment(image).geometry
        letterboxed = LetterBox((160, 160), auto=True, stride=32)(image=image)
        assert geometry.mask_shape == letterboxed.shape[:2]
        content = np.argwhere((letterboxed != 114).any(axis=2))
        (top, left), (bottom, right) = content.min(axis=0), content.max(axis=0) + 1
        # Like ultralytics' scale_masks/scale_boxes, the geometry infers the content from the shapes alone, which
        # can be one cell short of what LetterBox drew (97x161: 159 columns of 160).
        g_left, g_top, g_width, g_height = geometry.content
        assert (g_left, g_top) == (left, top)
        assert 0 <= right - (g_left + g_width) <= 1 and 0 <= bottom - (g_top + g_height) <= 1


def test_full_masks_equal_ultralytics_own_upsampling(tiny_engine: FastSAMEngine) -> None:
    import torch
    from ultralytics.utils.ops import scale_masks

    image = _synthetic_image(300, 200, seed=3)
    result = tiny_engine.predict_raw(image)
    segmentation = segmentation_from_result(result)
    reference = scale_masks(result.masks.data[None].float(), result.orig_shape)[0] > 0.5
    assert reference.shape[1:] == torch.Size(segmentation.image_shape)
    for i in range(len(segmentation)):
        assert np.array_equal(segmentation.full_mask(i), reference[i].numpy()), i


@pytest.mark.parametrize(("height", "width", "conf"), [(240, 320, 0.25), (97, 161, 0.01), (300, 200, 0.01)])
def test_deferred_masks_equal_ultralytics_masks(tiny_model: Path, height: int, width: int, conf: float) -> None:
    """segment() keeps prototype logits; every pixel, box, score and area equals ultralytics' eager predict."""
    engine = FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160, conf=conf, max_det=300))
    image = _synthetic_image(height, width, seed=5)
    lazy = engine.segment(image)
    eager = segmentation_from_result(engine.predict_raw(image))
    assert lazy.masks.is_lazy and not eager.masks.is_lazy
    assert len(lazy) == len(eager) > 0
    assert np.array_equal(lazy.boxes, eager.boxes) and np.array_equal(lazy.scores, eager.scores)
    assert np.array_equal(lazy.masks.dense(), eager.masks.dense())
    assert np.array_equal(lazy.areas, eager.areas)
    for i in range(len(lazy)):
        assert np.array_equal(lazy.full_mask(i), eager.full_mask(i)), i
        a, b = lazy.encoded_mask(i), eager.encoded_mask(i)
        assert (a.x, a.y, a.width, a.height) == (b.x, b.y, b.width, b.height) and np.array_equal(a.counts, b.counts)
    points = np.array([[5, 7], [width // 2, height // 2], [width - 1, height - 1]])
    cells = lazy.geometry.to_mask_coords(points)
    assert np.array_equal(lazy.masks.at(cells[:, 0], cells[:, 1]), eager.masks.at(cells[:, 0], cells[:, 1]))


def test_segment_with_result_gives_ultralytics_masks(tiny_engine: FastSAMEngine) -> None:
    """The evaluation's one inference: the Results it hands ultralytics' prompt rules carry ultralytics' masks."""
    image = _synthetic_image(240, 320, seed=4)
    segmentation, result = tiny_engine.segment_with_result(image)
    reference = tiny_engine.predict_raw(image)
    assert segmentation.masks.is_lazy
    assert np.array_equal(result.masks.data.numpy(), reference.masks.data.numpy())
    assert np.array_equal(result.boxes.data.numpy(), reference.boxes.data.numpy())


def test_segment_without_detections(tiny_model: Path) -> None:
    engine = FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160, conf=0.999))
    segmentation = engine.segment(_synthetic_image(120, 200))
    assert len(segmentation) == 0
    assert len(segmentation.masks) == 0 and segmentation.boxes.shape == (0, 4)
    assert segmentation.image_shape == (120, 200)
    assert segmentation.timings.inference_ms > 0


def test_timings_add_up(tiny_engine: FastSAMEngine) -> None:
    timings = tiny_engine.segment(_synthetic_image(240, 320)).timings
    assert timings.preprocess_ms > 0 and timings.inference_ms > 0 and timings.postprocess_ms > 0
    assert timings.total_ms == pytest.approx(timings.preprocess_ms + timings.inference_ms + timings.postprocess_ms)
    assert timings.total_ms < 60_000


def test_warmup_runs_a_prediction_at_the_configured_size(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=320))
    assert engine.predictor is None  # ultralytics builds its predictor on the first prediction
    seen: list[tuple[int, ...]] = []
    predict = engine._predict  # warmup runs PyTorch directly: a blank frame's shape must not pick the export's
    monkeypatch.setattr(engine, "_predict", lambda model, half, image: seen.append(image.shape) or predict(model, half,
                                                                                                          image))
    engine.warmup()
    assert seen == [(160, 320, 3)]  # one blank frame, half as high as wide at imgsz
    assert engine.predictor is not None and engine.predictor.model is not None  # the first real frame skips setup
    assert len(engine.segment(_synthetic_image(240, 320))) > 0


def test_cpu_threads_outlast_ultralytics_device_setup(tiny_model: Path) -> None:
    """ultralytics resets torch's threads when its predictor picks the device; the parameter must still win."""
    import torch
    from ultralytics.utils import NUM_THREADS

    wanted = NUM_THREADS + 1
    try:
        engine = FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160, cpu_threads=wanted))
        engine.segment(_synthetic_image(120, 160))
        assert torch.get_num_threads() == wanted
        FastSAMEngine(EngineConfig(model=str(tiny_model), imgsz=160)).segment(_synthetic_image(120, 160))
        assert torch.get_num_threads() == NUM_THREADS  # 0: ultralytics' own choice
    finally:
        torch.set_num_threads(NUM_THREADS)


@pytest.mark.parametrize(
    ("image", "message"),
    [
        (np.zeros((32, 32, 3), dtype=np.float32), r"HxWx3 uint8 BGR image, got shape \(32, 32, 3\) dtype float32"),
        (np.zeros((32, 32, 3), dtype=np.uint16), r"HxWx3 uint8 .* dtype uint16"),
        (np.zeros((32, 32), dtype=np.uint8), r"HxWx3 uint8 .* got shape \(32, 32\)"),
        (np.zeros((32, 32, 4), dtype=np.uint8), r"HxWx3 uint8 .* got shape \(32, 32, 4\)"),
        (np.zeros((32, 32, 1), dtype=np.uint8), r"HxWx3 uint8 .* got shape \(32, 32, 1\)"),
        (np.zeros((0, 32, 3), dtype=np.uint8), r"zero size 32x0"),
        (np.zeros((32, 0, 3), dtype=np.uint8), r"zero size 0x32"),
        ([[0, 0, 0]], r"HxWx3 uint8 .* got shape None dtype list"),
    ],
)
def test_bad_images_raise_value_error(tiny_engine: FastSAMEngine, image: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_image(image)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):
        tiny_engine.segment(image)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ loading


def test_missing_model_path_is_a_clear_error(tmp_path: Path) -> None:
    missing = tmp_path / "weights" / "FastSAM-s.pt"
    with pytest.raises(ModelLoadError) as caught:
        FastSAMEngine(EngineConfig(model=str(missing)))
    message = str(caught.value)
    assert str(missing) in message
    assert "does not exist" in message and "FastSAM-s.pt" in message and "internet" in message
    assert caught.value.__cause__ is None and caught.value.__context__ is None  # raised before ultralytics runs


def test_resolve_model_accepts_existing_files_and_bare_names(tiny_model: Path, tmp_path: Path) -> None:
    assert resolve_model(str(tiny_model)) == str(tiny_model)
    assert resolve_model("FastSAM-s.pt") == "FastSAM-s.pt"  # left for ultralytics to download
    assert resolve_model("FastSAM-x.pt") == "FastSAM-x.pt"
    openvino = tmp_path / "FastSAM-s_openvino_model"
    openvino.mkdir()
    assert resolve_model(str(openvino)) == str(openvino)


@pytest.mark.parametrize("name", ["model.txt", "model.yaml", "model.pth", "model"])
def test_wrong_model_suffix_is_rejected(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"not a model")
    with pytest.raises(ModelLoadError, match=r"has suffix .*expected one of") as caught:
        FastSAMEngine(EngineConfig(model=str(path)))
    assert str(path) in str(caught.value)


def test_folder_that_is_not_an_openvino_export_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="not an OpenVINO export"):
        resolve_model(str(tmp_path))


def test_corrupt_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "FastSAM-s.pt"
    path.write_bytes(b"\x00" * 1024)
    with pytest.raises(ModelLoadError) as caught:
        FastSAMEngine(EngineConfig(model=str(path)))
    message = str(caught.value)
    assert str(path) in message and "corrupt" in message


def test_bare_name_offline_fails_fast_with_download_hint(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """``FastSAM-s.pt`` without a local copy and without network: one clear error, in seconds, no stray files."""
    from ultralytics.utils import SETTINGS

    if (Path(SETTINGS["weights_dir"]) / "FastSAM-s.pt").exists():
        pytest.skip("FastSAM-s.pt is cached in ultralytics' weights_dir, so nothing would be downloaded")

    def offline(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "offline (simulated by the test)")

    # Whatever this machine's network, behave as a robot without one: every name lookup fails.
    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    monkeypatch.chdir(tmp_path)  # ultralytics downloads bare names into the working directory
    start = time.perf_counter()
    with pytest.raises(ModelLoadError) as caught:
        FastSAMEngine(EngineConfig(model="FastSAM-s.pt"))
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert "FastSAM-s.pt" in message
    assert "download" in message.lower() and "internet" in message
    assert "copy the checkpoint" in message
    assert elapsed < 20, f"a failed offline download took {elapsed:.1f} s"
    assert list(tmp_path.iterdir()) == []  # no partial download left behind


# -------------------------------------------------------------------------------- exported models (ONNX)


def _export_onnx(checkpoint: Path, folder: Path, imgsz: int) -> Path:
    pytest.importorskip("onnx", reason="ONNX export needs the onnx package")
    pytest.importorskip("onnxruntime", reason="ONNX inference needs onnxruntime")
    from ultralytics import YOLO

    source = folder / checkpoint.name
    shutil.copy(checkpoint, source)  # the export lands beside its source
    exported = Path(YOLO(str(source)).export(format="onnx", imgsz=imgsz, simplify=False, verbose=False))
    assert exported.suffix == ".onnx" and exported.exists()
    return exported


def test_onnx_export_of_tiny_model_loads_and_matches_pt_slowish(
    tiny_model: Path, tiny_engine: FastSAMEngine, tmp_path: Path
) -> None:
    """A static 160x160 ONNX export: same network outputs as the .pt on a square frame (no letterbox padding)."""
    import torch

    exported = _export_onnx(tiny_model, tmp_path, imgsz=160)
    engine = FastSAMEngine(EngineConfig(model=str(exported), imgsz=160))
    image = _synthetic_image(320, 320, seed=5)
    onnx_result = engine.segment(image)
    pt_result = tiny_engine.segment(image)
    assert len(onnx_result) > 0
    assert onnx_result.geometry == pt_result.geometry == MaskGeometry((320, 320), (160, 160))
    assert onnx_result.masks.is_lazy and onnx_result.boxes.shape == (len(onnx_result), 4)
    assert onnx_result.masks.dense().dtype == bool
    # The random network's scores saturate into ties, so NMS may keep different instances: compare the
    # raw network outputs on the identical preprocessed frame instead of the kept instances.
    frame = tiny_engine.predictor.preprocess([image])
    with torch.no_grad():
        pt_out = tiny_engine.predictor.model(frame)
        onnx_out = engine.predictor.model(frame.to(engine.predictor.device))
    pt_out = pt_out[0] if isinstance(pt_out[0], (list, tuple)) else pt_out  # .pt adds a dict of head outputs
    assert len(onnx_out) == len(pt_out) == 2  # (predictions (1, 4 + classes + 32, anchors), prototypes)
    for onnx_tensor, pt_tensor in zip(onnx_out, pt_out, strict=True):
        onnx_tensor = torch.as_tensor(onnx_tensor).float().cpu()
        assert onnx_tensor.shape == pt_tensor.shape
        assert torch.allclose(onnx_tensor, pt_tensor.float().cpu(), atol=1e-3, rtol=1e-3)
    assert float(onnx_result.scores.max()) == pytest.approx(float(pt_result.scores.max()), abs=1e-4)


def test_onnx_export_of_standin_matches_pt_on_bus_slowish(
    standin_model: Path, sample_images: Path, tmp_path: Path
) -> None:
    """Real weights: the ONNX export finds the same instances with the same masks as the .pt."""
    bus = sample_images / "bus.jpg"
    if not bus.exists():
        pytest.skip(f"{bus} is absent")
    exported = _export_onnx(standin_model, tmp_path, imgsz=320)
    image = cv2.imread(str(bus))[100:910, :810].copy()  # square, so .pt (rect) and ONNX (static) letterbox alike
    pt_result = FastSAMEngine(EngineConfig(model=str(standin_model), imgsz=320)).segment(image)
    onnx_result = FastSAMEngine(EngineConfig(model=str(exported), imgsz=320)).segment(image)
    assert len(pt_result) >= 3 and len(onnx_result) == len(pt_result)
    for i in range(len(pt_result)):
        overlaps = _box_iou(pt_result.boxes[i], onnx_result.boxes)
        j = int(overlaps.argmax())
        assert overlaps[j] > 0.99
        assert onnx_result.scores[j] == pytest.approx(pt_result.scores[i], abs=1e-3)
        assert iou(pt_result.full_mask(i), onnx_result.full_mask(j)) > 0.98


# ----------------------------------------------------------------------------------- real stand-in weights


def test_standin_finds_people_on_bus(standin_model: Path, sample_images: Path) -> None:
    bus = sample_images / "bus.jpg"
    if not bus.exists():
        pytest.skip(f"{bus} is absent")
    image = cv2.imread(str(bus))
    segmentation = FastSAMEngine(EngineConfig(model=str(standin_model), imgsz=640)).segment(image)
    assert segmentation.image_shape == (1080, 810)
    assert len(segmentation) >= 4
    person = np.array([50, 400, 250, 900], dtype=np.float32)  # the man on the left
    overlaps = _box_iou(person, segmentation.boxes)
    best = int(overlaps.argmax())
    assert overlaps[best] > 0.7, segmentation.boxes
    ys, xs = np.nonzero(segmentation.full_mask(best))
    assert 50 <= xs.mean() <= 250 and 400 <= ys.mean() <= 900
    assert segmentation.areas[best] > 0.2 * (200 * 500)
