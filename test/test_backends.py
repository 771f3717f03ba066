"""Fast by default: backend choice (fake probes, no GPU), letterbox shapes, the export cache, and the engine on it.

The choice and cache logic run with fakes; the engine tests export the tiny random model to ONNX (seconds) into a
temporary cache; the stand-in tests check the export gives PyTorch's masks on the sample photos.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import shutil
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from fastsam_ros.segmentation import backends, export_cache
from fastsam_ros.segmentation.backends import Plan, Probe, choose, letterbox_shape
from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine
from fastsam_ros.segmentation.export_cache import ExportCache, ExportFailed, ExportKey

ALL_CPU = {"ultralytics": "8.4.190", "torch": "2.14.1", "onnx": "1.23.2", "onnxruntime": "1.32.0",
           "openvino": "2026.4.1"}
GPU = "NVIDIA H200"


@functools.lru_cache(maxsize=1)
def _auto_here() -> str:
    """What ``backend: auto`` picks on this machine: openvino on Intel CPUs, onnx elsewhere (probing imports torch)."""
    return choose("auto", False, backends.probe("cpu")).backend


def _probe(*missing: str, cuda: bool = False, tensorrt: bool = False, vendor: str = "AuthenticAMD") -> Probe:
    versions = {**ALL_CPU, **({"tensorrt": "10.13.0"} if tensorrt else {})}
    return Probe(cuda=cuda, gpu_name=GPU if cuda else "", versions={k: v for k, v in versions.items()
                                                                   if k not in missing}, cpu_vendor=vendor,
                 cpu=not cuda)


# ------------------------------------------------------------------------------------------- choice


@pytest.mark.parametrize(
    ("backend", "probe", "expected", "half", "reason"),
    [
        ("auto", _probe(), "onnx", False, "onnx"),
        ("auto", _probe(vendor=""), "onnx", False, "onnx"),  # Arm
        ("auto", _probe(vendor="GenuineIntel"), "openvino", False, "openvino"),
        ("auto", _probe("openvino", vendor="GenuineIntel"), "onnx", False, "onnx"),
        ("onnx", _probe(vendor="GenuineIntel"), "onnx", False, "onnx"),
        ("auto", _probe("onnxruntime"), "openvino", False, "openvino"),
        ("auto", _probe("onnx"), "openvino", False, "openvino"),
        ("auto", _probe("onnxruntime", "openvino"), "pytorch", False, "onnxruntime, openvino not installed"),
        ("onnx", _probe("onnxruntime"), "pytorch", False, "onnxruntime not installed"),
        ("openvino", _probe(), "openvino", False, "openvino"),
        ("pytorch", _probe(), "pytorch", False, "pytorch"),
        ("tensorrt", _probe(), "pytorch", False, "needs a CUDA device"),
        ("auto", _probe(cuda=True, tensorrt=True), "tensorrt", False, "TensorRT FP32"),
        ("tensorrt", _probe(cuda=True, tensorrt=True), "tensorrt", False, GPU),
        ("auto", _probe(cuda=True), "pytorch", False, "TensorRT needs tensorrt, not installed: PyTorch FP32"),
        ("auto", _probe("onnx", cuda=True, tensorrt=True), "pytorch", False, "needs onnx"),
        ("onnx", _probe(cuda=True), "pytorch", False, "CPU only"),
        ("pytorch", _probe(cuda=True, tensorrt=True), "pytorch", False, "pytorch"),
        ("auto", Probe(cpu=False, versions=ALL_CPU), "pytorch", False, "CPU or CUDA only"),  # mps, a missing GPU
    ],
)
def test_choose(backend: str, probe: Probe, expected: str, half: bool, reason: str) -> None:
    plan = choose(backend, False, probe)
    assert (plan.backend, plan.half) == (expected, half)
    assert reason in plan.reason
    assert plan.export == (expected != "pytorch")


def test_choose_keeps_the_half_parameter_for_pytorch() -> None:
    assert choose("pytorch", True, _probe(cuda=True)).half
    assert not choose("onnx", True, _probe()).half  # an ONNX CPU export is FP32


@pytest.mark.parametrize("half", [False, True])
@pytest.mark.parametrize("backend", ["auto", "tensorrt", "pytorch"])
@pytest.mark.parametrize("tensorrt", [False, True])
def test_every_cuda_backend_honours_half(half: bool, backend: str, tensorrt: bool) -> None:
    """``half: false`` on CUDA is FP32 whatever runs it (auto forced FP16 before)."""
    plan = choose(backend, half, _probe(cuda=True, tensorrt=tensorrt))
    assert plan.half == half
    assert plan.backend == ("tensorrt" if tensorrt and backend != "pytorch" else "pytorch")
    if backend != "pytorch":
        assert plan.reason.endswith("FP16" if half else "FP32")


def test_choose_rejects_unknown_backends() -> None:
    with pytest.raises(ValueError, match="backend must be one of auto, pytorch"):
        choose("tflite", False, _probe())


def test_cpu_vendor_from_cpuinfo() -> None:
    assert backends.cpu_vendor("processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\n") == "GenuineIntel"
    assert backends.cpu_vendor("processor\t: 0\nBogoMIPS\t: 50.00\n") == ""


@pytest.mark.parametrize(("device", "name"), [("0", "GPU0"), ("cuda", "GPU0"), ("cuda:1", "GPU1"), ("1,0", "GPU1")])
def test_probe_reads_the_gpu_of_the_device_string(monkeypatch: pytest.MonkeyPatch, device: str, name: str) -> None:
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # a GPU machine, faked: tests never need one
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda index: f"GPU{index}")
    probe = backends.probe(device)
    assert probe.cuda and not probe.cpu and probe.gpu_name == name
    plan = choose("auto", True, probe)
    assert (plan.backend, plan.half) == (("tensorrt", True) if probe.has("tensorrt") else ("pytorch", True))


def test_probe_of_this_machine_on_cpu() -> None:
    probe = backends.probe("cpu")
    assert not probe.cuda and probe.gpu_name == "" and probe.cpu
    assert not backends.probe("mps").cpu
    assert "torch" in probe.versions and "ultralytics" in probe.versions


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (720, 1280), (1080, 810), (97, 161), (1, 3000),
                                   (3000, 1), (33, 33), (500, 500), (1500, 2250)])
@pytest.mark.parametrize("imgsz", [160, 640, 1000])
def test_letterbox_shape_is_ultralytics_letterbox(shape: tuple[int, int], imgsz: int) -> None:
    from ultralytics.data.augment import LetterBox
    from ultralytics.utils.checks import check_imgsz

    size = check_imgsz(imgsz, stride=32)
    letterboxed = LetterBox((size, size), auto=True, stride=32)(image=np.zeros((*shape, 3), dtype=np.uint8))
    assert letterbox_shape(shape, imgsz, 32) == letterboxed.shape[:2]


# -------------------------------------------------------------------------------------------- cache keys


def _key(**changes: object) -> ExportKey:
    key = ExportKey.make("a" * 64, Plan("onnx", False, "", export=True), (480, 640), _probe())
    return ExportKey(**{**key.__dict__, **changes})  # type: ignore[arg-type]


def test_key_digest_changes_with_everything_the_export_depends_on() -> None:
    base = _key()
    variants = [_key(checkpoint_sha256="b" * 64), _key(shape=(384, 640)), _key(half=True), _key(gpu_name=GPU),
                _key(versions=(("ultralytics", "8.4.191"), *base.versions[1:])), _key(backend="openvino")]
    digests = {base.digest, *(v.digest for v in variants)}
    assert len(digests) == len(variants) + 1
    assert base.digest == _key().digest  # and only on that
    assert base.entry_name("FastSAM-s") == f"FastSAM-s-onnx-480x640-{base.digest}"


def test_key_names_the_runtime_versions_and_the_gpu_only_for_tensorrt() -> None:
    cpu = ExportKey.make("a" * 64, Plan("onnx", False, "", export=True), (480, 640), _probe(cuda=True))
    assert cpu.gpu_name == "" and dict(cpu.versions) == {"ultralytics": "8.4.190", "torch": "2.14.1",
                                                         "onnx": "1.23.2", "onnxruntime": "1.32.0"}
    trt_plan = Plan("tensorrt", True, "", export=True)
    trt = ExportKey.make("a" * 64, trt_plan, (640, 640), _probe(cuda=True, tensorrt=True))
    assert trt.gpu_name == GPU and dict(trt.versions)["tensorrt"] == "10.13.0" and trt.half
    assert trt.entry_name("m").startswith("m-tensorrt-640x640-fp16-")
    other_gpu = ExportKey.make("a" * 64, trt_plan, (640, 640),
                               Probe(cuda=True, gpu_name="Orin", versions=_probe(tensorrt=True).versions))
    assert other_gpu.digest != trt.digest


# --------------------------------------------------------------------------------- the cache (fake exports)


class FakeExporter:
    """Writes a file where ultralytics would put the export, and counts the calls."""

    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, checkpoint: Path, backend: str, shape: tuple[int, int], half: bool, device: str) -> Path:
        self.calls += 1
        if self.fail:
            raise RuntimeError("exporter exploded")
        out = checkpoint.with_suffix(".onnx")
        out.write_bytes(checkpoint.read_bytes() + b"|onnx")
        return out


def _checkpoint(folder: Path, content: bytes) -> tuple[Path, ExportKey]:
    path = folder / "model-s.pt"
    path.write_bytes(content)
    plan = Plan("onnx", False, "", export=True)
    return path, ExportKey.make(export_cache.file_sha256(path), plan, (480, 640), _probe())


def test_cache_exports_once_then_reuses(tmp_path: Path) -> None:
    exporter = FakeExporter()
    cache = ExportCache(tmp_path / "cache", exporter)
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    first = cache.get(checkpoint, key)
    assert first.made and exporter.calls == 1
    assert first.path.read_bytes() == b"weights-1|onnx"
    record = json.loads((first.path.parent / "key.json").read_text())
    assert record["checkpoint_sha256"] == key.checkpoint_sha256 and record["checkpoint"] == str(checkpoint.resolve())
    second = cache.get(checkpoint, key)
    assert not second.made and second.path == first.path and exporter.calls == 1
    left = sorted(p.name for p in (tmp_path / "cache").iterdir())
    assert left == [".locks", first.path.parent.name]  # no work folders left


def test_a_changed_checkpoint_is_exported_again_and_the_stale_export_removed(tmp_path: Path) -> None:
    exporter = FakeExporter()
    cache = ExportCache(tmp_path / "cache", exporter)
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    old = cache.get(checkpoint, key).path
    checkpoint, new_key = _checkpoint(tmp_path, b"weights-2")
    new = cache.get(checkpoint, new_key)
    assert new.made and exporter.calls == 2 and new.path != old
    assert new.path.read_bytes() == b"weights-2|onnx"
    assert not old.parent.exists()
    other_shape = ExportKey(**{**new_key.__dict__, "shape": (384, 640)})
    cache.get(checkpoint, other_shape)
    assert new.path.exists()  # another shape is another slot: both kept


def test_a_failed_export_is_remembered(tmp_path: Path) -> None:
    exporter = FakeExporter(fail=True)
    cache = ExportCache(tmp_path / "cache", exporter)
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    with pytest.raises(ExportFailed, match="exporter exploded"):
        cache.get(checkpoint, key)
    with pytest.raises(ExportFailed, match=r"earlier export failed \(RuntimeError: exporter exploded\); delete"):
        cache.get(checkpoint, key)
    assert exporter.calls == 1


def test_a_permanent_failure_stays_remembered_and_an_old_plain_note_is_permanent(tmp_path: Path) -> None:
    now = [1000.0]
    exporter = FakeExporter(fail=True)
    cache = ExportCache(tmp_path / "cache", exporter, clock=lambda: now[0])
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    with pytest.raises(ExportFailed):
        cache.get(checkpoint, key)
    now[0] += 365 * 86400.0
    with pytest.raises(ExportFailed, match="earlier export failed"):
        cache.get(checkpoint, key)
    note = tmp_path / "cache" / f"{key.entry_name('model-s')}.failed"
    note.write_text("RuntimeError: written by an earlier release\n")
    with pytest.raises(ExportFailed, match=r"\(RuntimeError: written by an earlier release\); delete"):
        cache.get(checkpoint, key)
    assert exporter.calls == 1


class OutOfMemoryError(RuntimeError):
    """Named as torch.cuda's."""


@pytest.mark.parametrize("error", [MemoryError("host"), OSError(errno.ENOSPC, "No space left on device"),
                                   OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("CUDA error: out of memory")])
def test_a_transient_failure_is_retried_on_a_later_start_after_a_back_off(tmp_path: Path, error: Exception) -> None:
    now = [1000.0]
    failures = [error, error]

    def exporter(checkpoint: Path, backend: str, shape: tuple[int, int], half: bool, device: str) -> Path:
        calls.append(now[0])
        if failures:
            raise failures.pop()
        return FakeExporter()(checkpoint, backend, shape, half, device)

    calls: list[float] = []
    cache = ExportCache(tmp_path / "cache", exporter, clock=lambda: now[0])
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    with pytest.raises(ExportFailed, match=type(error).__name__):
        cache.get(checkpoint, key)
    with pytest.raises(ExportFailed, match=r"transient, 1 tries\); retried after"):
        cache.get(checkpoint, key)  # a restart at once: not yet
    now[0] += export_cache.RETRY_AFTER_S
    with pytest.raises(ExportFailed, match=type(error).__name__):
        cache.get(checkpoint, key)  # tried again, failed again: the back-off doubles
    now[0] += export_cache.RETRY_AFTER_S
    with pytest.raises(ExportFailed, match="transient, 2 tries"):
        cache.get(checkpoint, key)
    now[0] += export_cache.RETRY_AFTER_S
    hit = cache.get(checkpoint, key)
    assert hit.made and calls == [1000.0, 1600.0, 2800.0]
    assert not (tmp_path / "cache" / f"{key.entry_name('model-s')}.failed").exists()


def test_two_processes_asking_for_one_key_export_it_once(tmp_path: Path) -> None:
    """The second waits on the entry's lock, then finds the first one's export (threads: flock is per open file)."""
    running, most, calls = [0], [0], []
    guard = threading.Lock()
    fake = FakeExporter()

    def slow(checkpoint: Path, backend: str, shape: tuple[int, int], half: bool, device: str) -> Path:
        with guard:
            running[0] += 1
            most[0] = max(most[0], running[0])
            calls.append(checkpoint)
        time.sleep(0.5)
        with guard:
            running[0] -= 1
        return fake(checkpoint, backend, shape, half, device)

    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    hits: list[export_cache.CacheHit] = []
    threads = [threading.Thread(target=lambda: hits.append(ExportCache(tmp_path / "cache", slow).get(checkpoint, key)))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(hits) == 2 and len(calls) == 1 and most[0] == 1
    assert sorted(hit.made for hit in hits) == [False, True] and hits[0].path == hits[1].path


def test_work_folders_of_killed_exports_are_swept_and_live_ones_kept(tmp_path: Path) -> None:
    import fcntl

    root = tmp_path / "cache"
    root.mkdir()
    killed = root / ".export-other-onnx-480x640-0123456789abcdef"
    (killed / "entry").mkdir(parents=True)
    (killed / "model.pt").write_bytes(b"a full checkpoint copy")
    (root / ".locks").mkdir()
    (root / ".locks" / "other-onnx-480x640-0123456789abcdef").touch()  # its exporter died: the lock is free
    live = root / ".export-live"
    live.mkdir()
    old_release, fresh_release = root / ".export-k3j2h1ab", root / ".export-q9w8e7rt"  # mkdtemp names, no lock
    old_release.mkdir()
    fresh_release.mkdir()
    os.utime(old_release, (time.time() - 2 * 86400,) * 2)
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    with (root / ".locks" / "live").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another process exporting now
        assert ExportCache(root, FakeExporter()).get(checkpoint, key).made
    assert not killed.exists() and not old_release.exists()
    assert live.exists() and fresh_release.exists()


def test_other_library_versions_exports_are_kept_and_unused_ones_age_out(tmp_path: Path) -> None:
    cache = ExportCache(tmp_path / "cache", FakeExporter())
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    venv_a = cache.get(checkpoint, key).path
    upgraded = ExportKey(**{**key.__dict__, "versions": (("ultralytics", "8.4.191"), *key.versions[1:])})
    venv_b = cache.get(checkpoint, upgraded).path
    assert venv_a.exists() and venv_b.exists()  # venv A may start again: its export stays
    month = time.time() - export_cache.UNUSED_FOR_S - 60
    os.utime(venv_a.parent / "key.json", (month, month))
    assert not cache.get(checkpoint, key).made  # used again: counts as used now
    os.utime(venv_a.parent / "key.json", (month, month))
    cache.get(checkpoint, ExportKey(**{**upgraded.__dict__, "shape": (384, 640)}))
    assert not venv_a.parent.exists() and venv_b.exists()


@pytest.mark.parametrize("damage", ["empty artifact", "other key", "unreadable key"])
def test_an_entry_that_fails_the_quick_check_is_exported_again(tmp_path: Path, damage: str) -> None:
    exporter = FakeExporter()
    cache = ExportCache(tmp_path / "cache", exporter)
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    path = cache.get(checkpoint, key).path
    record = path.parent / "key.json"
    if damage == "empty artifact":
        path.write_bytes(b"")
    elif damage == "other key":
        record.write_text(json.dumps({**json.loads(record.read_text()), "checkpoint_sha256": "b" * 64}))
    else:
        record.write_text("{")
    again = cache.get(checkpoint, key)
    assert again.made and exporter.calls == 2 and again.path.read_bytes() == b"weights-1|onnx"


def test_an_unwritable_cache_is_an_export_failure(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    checkpoint, key = _checkpoint(tmp_path, b"weights-1")
    with pytest.raises(ExportFailed, match="cannot write the export cache"):
        ExportCache(blocker / "cache", FakeExporter()).get(checkpoint, key)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert export_cache.default_cache_dir() == tmp_path / "fastsam_ros"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert export_cache.default_cache_dir() == Path.home() / ".cache" / "fastsam_ros"


# ------------------------------------------------------------------------------ the engine (tiny model, ONNX)


def _frame(height: int = 120, width: int = 160) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)


def _engine(model: Path, cache: Path, lines: list[str] | None = None, **settings: object) -> FastSAMEngine:
    config = EngineConfig(model=str(model), imgsz=160, export_cache=str(cache), **settings)  # type: ignore[arg-type]
    return FastSAMEngine(config, log=(lines if lines is not None else []).append)


def test_engine_exports_on_the_first_frame_then_loads_the_cache(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    model = tmp_path / "tiny.pt"
    shutil.copy(tiny_model, model)
    lines: list[str] = []
    engine = _engine(model, tmp_path / "cache", lines)
    engine.warmup()
    assert engine.backend.backend == "pytorch" and not list((tmp_path / "cache").glob("*"))  # not before a frame
    assert len(engine.segment(_frame())) > 0
    info = engine.backend
    assert (info.backend, info.shape, info.made) == (_auto_here(), (128, 160), True)
    assert info.export_s > 0 and Path(info.path).name == export_cache.ARTIFACTS[_auto_here()]
    assert engine.predictor.model.format == export_cache.FORMATS[_auto_here()]  # the frame ran on the export
    assert any("exported in" in line and "first start" in line for line in lines), lines

    lines.clear()
    again = _engine(model, tmp_path / "cache", lines)
    again.segment(_frame())
    assert (again.backend.backend, again.backend.made, again.backend.path) == (_auto_here(), False, info.path)
    assert any("found in the cache" in line for line in lines), lines

    again.segment(_frame(160, 120))  # another letterbox shape: PyTorch, said once
    again.segment(_frame(160, 120))
    assert again.predictor.model.format == "pt"
    assert sum("run on PyTorch" in line for line in lines) == 1


def test_warmup_of_a_later_start_loads_the_cached_export_before_any_frame(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "tiny.pt"
    shutil.copy(tiny_model, model)
    _engine(model, tmp_path / "cache").segment(_frame())  # the first start: exports for 128x160
    lines: list[str] = []
    later = _engine(model, tmp_path / "cache", lines)
    later.warmup()
    assert (later.backend.backend, later.backend.shape, later.backend.made) == (_auto_here(), (128, 160), False)
    assert any("found in the cache" in line for line in lines), lines
    later.segment(_frame())
    assert later.predictor.model.format == export_cache.FORMATS[_auto_here()]

    moved = _engine(model, tmp_path / "cache")  # the camera changed: its first frame gets its own export
    moved.warmup()
    moved.segment(_frame(160, 120))
    assert (moved.backend.backend, moved.backend.shape, moved.backend.made) == (_auto_here(), (160, 128), True)
    assert moved.predictor.model.format == export_cache.FORMATS[_auto_here()]


def test_engine_exports_again_when_the_checkpoint_changes(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    import torch

    model = tmp_path / "tiny.pt"
    shutil.copy(tiny_model, model)
    first = _engine(model, tmp_path / "cache")
    first.segment(_frame())
    checkpoint = torch.load(model, weights_only=False)
    next(checkpoint["model"].parameters()).data += 0.01  # retrained weights, same file name
    torch.save(checkpoint, model)
    second = _engine(model, tmp_path / "cache")
    second.segment(_frame())
    assert second.backend.made and second.backend.path != first.backend.path
    assert not Path(first.backend.path).exists()
    assert len([p for p in (tmp_path / "cache").iterdir() if p.name != ".locks"]) == 1


def test_a_cached_export_that_does_not_load_is_exported_again(tiny_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "tiny.pt"
    shutil.copy(tiny_model, model)
    _engine(model, tmp_path / "cache").segment(_frame())  # the first start exports
    (entry,) = [p.parent for p in (tmp_path / "cache").glob("*/key.json")]
    artifact = entry / export_cache.ARTIFACTS[_auto_here()]
    for target in [*artifact.glob("*.xml")] if artifact.is_dir() else [artifact]:
        target.write_bytes(b"not a model, but not empty either")
    lines: list[str] = []
    again = _engine(model, tmp_path / "cache", lines)
    again.segment(_frame())
    assert (again.backend.backend, again.backend.made) == (_auto_here(), True)
    assert again.predictor.model.format == export_cache.FORMATS[_auto_here()]
    assert any("does not load" in line and "again" in line for line in lines), lines


def test_backend_pytorch_turns_the_export_off(tiny_model: Path, tmp_path: Path) -> None:
    engine = _engine(tiny_model, tmp_path / "cache", backend="pytorch")
    engine.segment(_frame())
    assert engine.backend.backend == "pytorch" and not (tmp_path / "cache").exists()


def test_missing_runtime_falls_back_to_pytorch_with_a_log_line(tiny_model: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(backends, "probe", lambda device: _probe("onnxruntime", "openvino"))
    lines: list[str] = []
    engine = _engine(tiny_model, tmp_path / "cache", lines)
    assert len(engine.segment(_frame())) > 0
    assert engine.backend.backend == "pytorch"
    assert lines == ["backend auto: onnxruntime, openvino not installed: PyTorch"]


def test_failed_export_falls_back_to_pytorch_with_a_log_line(tiny_model: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(export_cache, "ultralytics_export", FakeExporter(fail=True))
    lines: list[str] = []
    engine = _engine(tiny_model, tmp_path / "cache", lines)
    assert len(engine.segment(_frame())) > 0
    assert engine.backend.backend == "pytorch" and "exporter exploded" in engine.backend.reason
    assert any(f"{_auto_here()} export unavailable, running PyTorch" in line for line in lines), lines


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_cpu_threads_reach_the_runtime(tiny_model: Path, tmp_path: Path, backend: str) -> None:
    pytest.importorskip({"onnx": "onnxruntime", "openvino": "openvino"}[backend])
    import torch

    default = torch.get_num_threads()
    try:
        engine = _engine(tiny_model, tmp_path / "cache", backend=backend, cpu_threads=1)
        engine.segment(_frame())
        assert engine.backend.backend == backend and engine.backend.threads == 1
        assert torch.get_num_threads() == 1  # ultralytics' torch pre/postprocessing too
        runtime = engine.predictor.model.backend
        reported = (runtime.session.get_session_options().intra_op_num_threads if backend == "onnx"
                    else int(runtime.ov_compiled_model.get_property("INFERENCE_NUM_THREADS")))
        assert reported == 1
        unset = _engine(tiny_model, tmp_path / "cache", backend=backend)
        unset.segment(_frame())
        assert unset.backend.threads == {"onnx": 0, "openvino": os.cpu_count()}[backend]  # the runtime's default
    finally:
        torch.set_num_threads(default)


def test_an_export_given_as_the_model_runs_as_is(tiny_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    made = _engine(tiny_model, tmp_path / "cache")
    made.segment(_frame())
    lines: list[str] = []
    engine = _engine(Path(made.backend.path), tmp_path / "other", lines)
    assert len(engine.segment(_frame())) > 0
    assert engine.backend.backend == _auto_here() and not engine.backend.made and not (tmp_path / "other").exists()


# ------------------------------------------------------------------------ real weights: the masks of PyTorch


@pytest.mark.parametrize("name", ["bus.jpg", "zidane.jpg"])
def test_default_backend_gives_pytorch_masks_on_the_samples_slowish(standin_model: Path, sample_images: Path,
                                                                    tmp_path: Path, name: str) -> None:
    pytest.importorskip("onnxruntime")
    image = cv2.imread(str(sample_images / name))
    if image is None:
        pytest.skip(f"{sample_images / name} is absent")
    config = EngineConfig(model=str(standin_model), export_cache=str(tmp_path / "cache"))
    fast = FastSAMEngine(config).segment(image)
    engine_backend = FastSAMEngine(config)
    engine_backend.segment(image)
    assert engine_backend.backend.backend == _auto_here() and not engine_backend.backend.made
    reference = FastSAMEngine(EngineConfig(model=str(standin_model), backend="pytorch")).segment(image)
    assert len(reference) >= 2 and len(fast) == len(reference)
    a = reference.masks.dense().reshape(len(reference), -1).astype(np.float32)
    b = fast.masks.dense().reshape(len(fast), -1).astype(np.float32)
    assert a.shape == b.shape
    inter = a @ b.T
    ious = inter / (a.sum(1)[:, None] + b.sum(1)[None, :] - inter)
    best = ious.max(axis=1)
    assert best.min() >= 0.99, best
    assert np.allclose(np.sort(fast.scores), np.sort(reference.scores), atol=2e-3)


# ------------------------------------------------------------------------------------------------- the CLI


@pytest.mark.parametrize(("flags", "exported"), [([], True), (["--backend", "pytorch"], False)])
def test_cli_runs_the_export_by_default_and_not_with_backend_pytorch(tiny_model: Path, tmp_path: Path,
                                                                     flags: list[str], exported: bool) -> None:
    pytest.importorskip("onnxruntime")
    from fastsam_ros.cli import main

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), _frame())
    cache = tmp_path / "cache"
    code = main([str(image), "--model", str(tiny_model), "--imgsz", "160", "--export-cache", str(cache),
                 "--out", str(tmp_path / "out"), *flags])
    assert code == 0
    assert [p.parent.name.split("-")[2] for p in cache.glob("*/key.json")] == ([_auto_here()] if exported else [])
    assert json.loads((tmp_path / "out" / "scene.json").read_text())
