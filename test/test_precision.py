"""The CPU export's precision (ROS-free): calibration sets, the INT8 agreement check, the cache of the quantized model
and of auto's choice, and refusal with the figures. Fakes stand in for the exports; the last test quantizes the real
stand-in (skips without ../shared)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from fake_engine import segmentation_from_masks

from fastsam_ros.segmentation import precision as precisions
from fastsam_ros.segmentation import precision_choice
from fastsam_ros.segmentation.precision_choice import PrecisionChoice, cpu_has_bf16

SHAPE = (48, 64)


def rect(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros(SHAPE, dtype=bool)
    mask[y1:y2, x1:x2] = True
    return mask


def image_folder(path: Path, count: int, seed: int = 0) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for k in range(count):
        cv2.imwrite(str(path / f"{k:03d}.png"), rng.integers(0, 255, (*SHAPE, 3), dtype=np.uint8))
    return path


def test_a_calibration_set_holds_back_the_last_images_and_is_keyed_by_content(tmp_path: Path) -> None:
    folder = image_folder(tmp_path / "a", 30)
    calibration = precisions.CalibrationSet.from_folder(folder)
    assert len(calibration.calibrate) == 14 and len(calibration.check) == precisions.HELD_BACK
    assert calibration.check[-1].name == "029.png"
    assert precisions.CalibrationSet.from_folder(folder).digest == calibration.digest
    cv2.imwrite(str(folder / "000.png"), np.zeros((*SHAPE, 3), np.uint8))  # same names, another image
    assert precisions.CalibrationSet.from_folder(folder).digest != calibration.digest


@pytest.mark.parametrize(("count", "message"), [(None, "is not a folder"),
                                               (10, "has 10 images; INT8 needs at least 24")])
def test_a_folder_that_cannot_calibrate_says_why(tmp_path: Path, count: int | None, message: str) -> None:
    folder = tmp_path / "x" if count is None else image_folder(tmp_path / "x", count)
    with pytest.raises(precisions.CalibrationError, match=message):
        precisions.CalibrationSet.from_folder(folder)


def test_agreement_matches_instances_by_mask_iou_and_compares_counts() -> None:
    fp32 = segmentation_from_masks([rect(0, 0, 10, 10), rect(20, 20, 40, 40)])
    same = segmentation_from_masks([rect(20, 20, 40, 40), rect(0, 0, 10, 10)])  # order does not matter
    shifted = segmentation_from_masks([rect(0, 0, 10, 5), rect(20, 20, 40, 40)])  # one half, one whole
    agreed = precisions.agreement([(fp32, same)])
    assert agreed.matched_iou == 1.0 and agreed.count_change == 0.0 and agreed.passed
    partial = precisions.agreement([(fp32, shifted)])
    assert partial.matched_iou == pytest.approx(0.75) and not partial.passed
    assert "REFUSED" in partial.describe() and "matched mask IoU 0.750" in partial.describe()
    lost = precisions.agreement([(fp32, segmentation_from_masks([rect(20, 20, 40, 40)]))])
    assert lost.count_change == 0.5 and lost.matched_iou == 0.5


def test_fastest_never_picks_a_refused_candidate() -> None:
    timings = {"fp32": 30.0, "bf16": 12.0, "int8": 20.0}
    assert precisions.fastest(timings, {"fp32": True, "bf16": True, "int8": True}) == "bf16"
    assert precisions.fastest(timings, {"fp32": True, "bf16": False, "int8": True}) == "int8"
    assert precisions.fastest(timings, {"fp32": True, "bf16": False, "int8": False}) == "fp32"


def test_bf16_is_read_from_the_cpu_flags() -> None:
    assert cpu_has_bf16("flags : fpu avx2 avx512_bf16") and cpu_has_bf16("flags : amx_bf16 amx_tile")
    assert not cpu_has_bf16("flags : fpu avx2 avx512f avx512_vnni")


class FakeExports:
    """Models are names; the FP32 export sees the reference masks, the INT8 one ``int8_masks``, each slept for."""

    def __init__(self, tmp_path: Path, int8_masks: list[np.ndarray], fp32_ms: float = 6.0,
                 int8_ms: float = 2.0) -> None:
        self.onnx = tmp_path / "entry" / "model.onnx"
        self.onnx.parent.mkdir(parents=True, exist_ok=True)
        self.onnx.write_bytes(b"fp32")
        self.int8_masks, self.ms = int8_masks, {"fp32": fp32_ms, "int8": int8_ms}
        self.quantized: list[Path] = []
        self.log: list[str] = []

    def load(self, path: Path, shape: tuple[int, int]) -> str:
        return "int8" if "int8-" in str(path) else "fp32"

    def segment_with(self, model: str, image: np.ndarray):
        time.sleep(self.ms[model] / 1000)
        masks = [rect(0, 0, 10, 10), rect(20, 20, 40, 40)] if model == "fp32" else self.int8_masks
        return segmentation_from_masks(masks)

    def quantize(self, fp32: Path, folder: Path, inputs) -> Path:
        model = folder / "model_openvino_model"
        self.quantized.append(model)
        model.mkdir(parents=True, exist_ok=True)
        (model / "model.xml").write_bytes(b"int8")
        return model

    def choice(self, asked: str, folder: Path | str) -> PrecisionChoice:
        return PrecisionChoice(asked, str(folder), self.load, self.segment_with, self.log.append, bf16=False)

    def choose(self, asked: str, folder: Path | str) -> tuple[str, Path]:
        _, chosen, path = self.choice(asked, folder).choose("fp32", self.onnx, SHAPE, lambda: self.onnx)
        return chosen, path


@pytest.fixture
def no_network_inputs(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(PrecisionChoice, "_network_inputs", staticmethod(lambda model, calibration: iter(())))


def test_int8_is_quantized_once_per_calibration_set_and_a_new_set_quantizes_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network_inputs) -> None:
    exports = FakeExports(tmp_path, [rect(0, 0, 10, 10), rect(20, 20, 40, 40)])
    monkeypatch.setattr(precisions, "quantize", exports.quantize)
    first = image_folder(tmp_path / "first", 24)
    assert exports.choose("int8", first)[0] == "int8"
    assert exports.choose("int8", first)[0] == "int8"
    assert len(exports.quantized) == 1, "the second start found the quantized model and its agreement cached"
    assert (exports.quantized[0].parent / "agreement.json").exists()
    second = image_folder(tmp_path / "second", 24, seed=1)
    chosen, path = exports.choose("int8", second)
    assert chosen == "int8" and len(exports.quantized) == 2 and path != exports.quantized[0]


def test_an_int8_model_that_disagrees_is_refused_with_its_figures(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network_inputs) -> None:
    exports = FakeExports(tmp_path, [rect(0, 0, 10, 5)])  # half of one instance, the other lost
    monkeypatch.setattr(precisions, "quantize", exports.quantize)
    chosen, path = exports.choose("int8", image_folder(tmp_path / "images", 24))
    assert (chosen, path) == ("fp32", exports.onnx)
    refusal = next(line for line in exports.log if line.startswith("precision int8 refused, running fp32"))
    assert "matched mask IoU 0.250" in refusal and "instance count change 50.0%" in refusal


def test_auto_times_the_candidates_runs_the_fastest_and_caches_the_choice(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_network_inputs) -> None:
    exports = FakeExports(tmp_path, [rect(0, 0, 10, 10), rect(20, 20, 40, 40)], fp32_ms=8.0, int8_ms=2.0)
    monkeypatch.setattr(precisions, "quantize", exports.quantize)
    monkeypatch.setattr(precision_choice, "TIMED_RUNS", 3)
    folder = image_folder(tmp_path / "images", 24)
    choice = exports.choice("auto", folder)
    assert choice.choose("fp32", exports.onnx, SHAPE, lambda: exports.onnx)[1] == "int8"
    assert choice.timings["int8"] < choice.timings["fp32"] and choice.timings["bf16"] is None
    table = next(line for line in exports.log if line.startswith("precision auto: int8, the fastest"))
    assert "bf16" in table and "refused: bf16 runs on OpenVINO exports only" in table
    exports.ms = {"fp32": 1.0, "int8": 9.0}  # a later start does not time again: it reads the choice
    assert exports.choose("auto", folder)[0] == "int8"
    assert exports.log[-1].startswith("precision auto: int8 (chosen at an earlier start")


def test_auto_without_calibration_images_runs_fp32_and_says_why(tmp_path: Path) -> None:
    exports = FakeExports(tmp_path, [])
    assert exports.choose("auto", "") == ("fp32", exports.onnx)
    assert "int8: no calibration_images folder" in exports.log[-1]


def test_the_standin_quantizes_and_is_checked_against_fp32(standin_model: Path, eval_data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The real path: ONNX export, static INT8 with the dev set's 80 calibration images, checked on the 16 held
    back. Under a bar it clears it runs; under one it does not, the node runs FP32 and logs the same figures."""
    from dataclasses import replace

    from fastsam_ros.config import NodeConfig
    from fastsam_ros.segmentation.engine import FastSAMEngine

    dev = eval_data / "images"
    frame = cv2.resize(cv2.imread(str(sorted(dev.glob("*.jpg"))[0])), (640, 480))
    config = replace(NodeConfig(model=str(standin_model)).engine, precision="int8", calibration_images=str(dev),
                     export_cache=str(tmp_path / "cache"))
    ran = {}
    for bar in (0.5, 0.99):
        monkeypatch.setattr(precisions, "MIN_MATCHED_IOU", bar)
        lines: list[str] = []
        engine = FastSAMEngine(config, log=lines.append)
        engine.segment(frame)
        check = next(line for line in lines if "against FP32 on 16 held-back images" in line)
        ran[bar] = engine.backend.precision, check
    (low, low_check), (high, high_check) = ran[0.5], ran[0.99]
    assert low == "int8" and low_check.startswith("INT8 passes")
    assert high == "fp32" and high_check.startswith("INT8 REFUSED")
    assert low_check.split(": ", 1)[1].split(" (")[0] == high_check.split(": ", 1)[1].split(" (")[0], "same figures"


def test_auto_runs_bf16_only_once_it_agrees_with_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                        no_network_inputs) -> None:
    """An OpenVINO export on a bf16 CPU: bf16 is faster here but moves the masks, so auto refuses it."""
    exports = FakeExports(tmp_path, [rect(0, 0, 10, 10), rect(20, 20, 40, 40)], fp32_ms=8.0, int8_ms=6.0)
    exports.ms["bf16"] = 1.0
    openvino = tmp_path / "model_openvino_model"
    openvino.mkdir()
    loads = iter(["bf16"])
    monkeypatch.setattr(exports, "load", lambda path, shape: "int8" if "int8-" in str(path) else next(loads))
    segment = exports.segment_with
    monkeypatch.setattr(exports, "segment_with", lambda model, image: segmentation_from_masks(
        [rect(0, 0, 10, 4)]) if model == "bf16" and not time.sleep(0.001) else segment(model, image))
    monkeypatch.setattr(precisions, "quantize", exports.quantize)
    monkeypatch.setattr(precision_choice, "configure_runtime", lambda *args: None)
    monkeypatch.setattr(precision_choice, "TIMED_RUNS", 3)
    choice = PrecisionChoice("auto", str(image_folder(tmp_path / "images", 24)), exports.load, exports.segment_with,
                             exports.log.append, bf16=True)
    model, chosen, _ = choice.choose("fp32", openvino, SHAPE, lambda: exports.onnx)
    assert chosen == "int8" and model == "int8"
    assert any(line.startswith("bf16 REFUSED against FP32") for line in exports.log)
    table = next(line for line in exports.log if line.startswith("precision auto: int8"))
    assert "bf16     not run  refused: bf16 REFUSED" in table


def test_the_stem_the_coarsest_block_the_head_reads_and_its_decoding_stay_float(tmp_path: Path) -> None:
    """Which modules feed the head is read from the export's graph (here a hand-made one: ultralytics' names)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    def node(name: str, inputs: list[str], output: str) -> object:
        return helper.make_node("Identity" if len(inputs) == 1 else "Add", inputs, [output], name=name)

    nodes = [node("/model.0/conv/Conv", ["images"], "x0"), node("/model.12/cv1/conv/Conv", ["x0"], "x12"),
             node("/model.15/cv2/act/Mul", ["x12"], "x15"), node("/model.18/cv2/act/Mul", ["x15"], "x18"),
             node("/model.22/cv2.0/cv2.0.0/conv/Conv", ["x15"], "h0"), node("/model.22/proto/cv1/conv/Conv",
                                                                             ["x18"], "h1"),
             node("/model.22/Concat", ["h0", "h1"], "output0")]
    value = [helper.make_tensor_value_info(name, TensorProto.FLOAT, [1]) for name in ("images", "output0")]
    path = tmp_path / "model.onnx"
    onnx.save(helper.make_model(helper.make_graph(nodes, "g", value[:1], value[1:])), str(path))
    head = precisions.head_inputs(path)
    assert head == (22, {15, 18})
    names = ["/model.0/conv/Conv/WithoutBiases", "/model.3/conv/Conv", "/model.12/cv1/conv/Conv",
             "/model.15/cv2/act/Mul", "/model.18/m.0/cv1/conv/Conv", "/model.22/cv2.0/cv2.0.0/conv/Conv/WithoutBiases",
             "/model.22/cv2.0/cv2.0.0/act/Sigmoid", "/model.22/cv3.1/cv3.1.2/Conv",
             "/model.22/proto/upsample/ConvTranspose", "/model.22/dfl/Softmax", "/model.22/Concat", "images"]
    assert precisions.float_ops(names, head) == [  # the stem, the coarsest block the head reads, its decoding
        "/model.0/conv/Conv/WithoutBiases", "/model.18/m.0/cv1/conv/Conv", "/model.22/cv2.0/cv2.0.0/act/Sigmoid",
        "/model.22/dfl/Softmax", "/model.22/Concat"]


def test_without_nncf_int8_is_refused_with_the_reason_and_fp32_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                     no_network_inputs) -> None:
    exports = FakeExports(tmp_path, [rect(0, 0, 10, 10), rect(20, 20, 40, 40)])

    def missing(*args: object) -> None:
        raise ImportError("No module named 'nncf'")

    monkeypatch.setattr(precisions, "quantize", missing)
    assert exports.choose("int8", image_folder(tmp_path / "images", 24)) == ("fp32", exports.onnx)
    assert exports.log[-1] == ("precision int8 refused, running fp32: INT8 needs nncf and openvino (pip install nncf "
                               "openvino): No module named 'nncf'")
