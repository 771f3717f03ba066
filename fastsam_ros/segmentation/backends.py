"""Fast by default: pick the fastest measured backend for the device, export the checkpoint to it once, cache it.

Why: ONNX Runtime or OpenVINO run the network 1.4-1.9x faster than PyTorch on the development CPUs, and a
TensorRT FP16 engine is the usual fast path on NVIDIA GPUs, but both must be exported at a fixed input shape
first. This module does that on the first start and reuses the export on later ones.

- **Which backend** (:func:`choose`, pure, tested with fake probes): ``auto`` on CPU is OpenVINO on Intel
  CPUs and ONNX Runtime on others (the faster of the two measured on each, see ``CPU_PREFERENCE``), else the
  other one, else PyTorch; ``auto`` on CUDA is a TensorRT engine when ``tensorrt`` imports, else PyTorch, both
  of the ``half`` parameter's precision (FP16 with ``half: true``, FP32 without: the user's choice of speed or
  PyTorch-FP32 masks holds on every backend). An explicit ``onnx``/``openvino``/``tensorrt`` is honoured where
  it can run; whatever cannot run (package missing, wrong device) falls back to PyTorch with one log line saying
  why, never a crash.

The export itself and its cache: :mod:`fastsam_ros.segmentation.export_cache`; swapping the predictor's model
for the export: :mod:`fastsam_ros.segmentation.fast_path`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKENDS = ("auto", "pytorch", "onnx", "openvino", "tensorrt")
# The packages whose versions decide whether an export can be reused (the exporter's and the runtime's).
KEY_PACKAGES = ("ultralytics", "torch")
PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",), "tensorrt": ("onnx", "tensorrt")}
# ``auto`` on CPU: the first of these that is installed, by CPU vendor, from ``python -m bench.exports`` (a stage
# of ``make bench``) on the two development CPUs we had: on a 2-core AMD EPYC ONNX Runtime was the faster (164 vs
# 179 ms per 640x480 frame, PyTorch 315); on a 2-core Intel Xeon with AMX OpenVINO (FP32) was as fast or faster
# in every run (73 vs 75, 108 vs 141, 165 vs 361 ms under rising load). Intel's own runtime wins on Intel.
CPU_PREFERENCE = {"GenuineIntel": ("openvino", "onnx")}
CPU_PREFERENCE_DEFAULT = ("onnx", "openvino")


def normalise_device(device: str) -> str:
    """``device`` in the one spelling that torch, open_clip and ultralytics all take: ``cpu``, ``mps``, ``cuda:N``.

    ultralytics also reads ``0`` and ``cuda``, torch does not read ``0``, so every consumer gets this form
    (``0`` and ``cuda`` are ``cuda:0``). One device: a list such as ``0,1`` is refused.
    """
    name = device.strip().lower()
    if name in ("cpu", "mps"):
        return name
    index = re.fullmatch(r"(?:cuda:?)?(\d+)|cuda", name)
    if index is None:
        raise ValueError(f"device must be cpu, cuda:N, N, cuda or mps (one device), got {device!r}")
    return f"cuda:{int(index.group(1) or 0)}"


# ------------------------------------------------------------------------------------------- what to run


@dataclass(frozen=True)
class Probe:
    """What this machine offers: whether the device is a usable GPU, its name, installed package versions."""

    cuda: bool = False
    gpu_name: str = ""
    cpu: bool = True  # the device is the CPU (neither this nor cuda: mps, a missing GPU, ...: PyTorch decides)
    versions: Mapping[str, str] = dataclasses.field(default_factory=dict)  # only installed packages
    cpu_vendor: str = ""  # /proc/cpuinfo's vendor_id: GenuineIntel, AuthenticAMD; "" elsewhere (Arm)

    def has(self, backend: str) -> bool:
        return all(package in self.versions for package in PACKAGES[backend])


@dataclass(frozen=True)
class Plan:
    """The backend to run: ``pytorch`` or an exported one, its precision, and why (for the log)."""

    backend: str
    half: bool
    reason: str
    export: bool = False  # the checkpoint is exported (and cached) for this backend


def _version(package: str) -> str | None:
    from importlib import metadata

    with contextlib.suppress(metadata.PackageNotFoundError):
        return metadata.version(package)
    if package == "tensorrt" and importlib.util.find_spec("tensorrt") is not None:  # Jetson: apt, no dist-info
        with contextlib.suppress(Exception):
            import tensorrt

            return str(tensorrt.__version__)
    return None


def probe(device: str) -> Probe:
    """Look at the real machine (cheap: no runtime is imported except torch, and tensorrt only on CUDA)."""
    import torch

    name = device.strip().lower()
    index = re.fullmatch(r"(?:cuda:?)?(\d+)(?:,\d+)*|cuda", name)  # 0, cuda, cuda:0, 0,1 (ultralytics' forms)
    cuda = index is not None and torch.cuda.is_available()
    packages = {*KEY_PACKAGES, "onnx", "onnxruntime", "openvino", *(("tensorrt",) if cuda else ())}
    versions = {package: version for package in sorted(packages) if (version := _version(package)) is not None}
    gpu_name = torch.cuda.get_device_name(int(index.group(1) or 0)) if cuda and index is not None else ""
    return Probe(cuda=cuda, gpu_name=gpu_name, versions=versions, cpu_vendor=cpu_vendor(), cpu=name == "cpu")


def cpu_vendor(cpuinfo: str | None = None) -> str:
    """The CPU's ``vendor_id`` from ``/proc/cpuinfo`` ("" where there is none)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return ""
    for line in cpuinfo.splitlines():
        if line.startswith("vendor_id"):
            return line.partition(":")[2].strip()
    return ""


def choose(backend: str, half: bool, machine: Probe) -> Plan:
    """The backend to run for the ``backend`` parameter on ``machine`` (pure: tests pass fake probes)."""
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "pytorch":
        return Plan("pytorch", half, "backend: pytorch")
    if machine.cuda:
        precision = "FP16" if half else "FP32"  # the half parameter, on every CUDA backend
        if backend in ("auto", "tensorrt"):
            if machine.has("tensorrt"):
                return Plan("tensorrt", half, f"backend {backend} on {machine.gpu_name}: TensorRT {precision}",
                            export=True)
            missing = ", ".join(p for p in PACKAGES["tensorrt"] if p not in machine.versions)
            return Plan("pytorch", half, f"backend {backend}: TensorRT needs {missing}, not installed: "
                                         f"PyTorch {precision}")
        return Plan("pytorch", half, f"backend {backend} runs on the CPU only here, the device is a GPU: PyTorch")
    if backend == "tensorrt":
        return Plan("pytorch", half, "backend tensorrt needs a CUDA device: PyTorch")
    if not machine.cpu:
        return Plan("pytorch", half, f"backend {backend}: exports run on the CPU or CUDA only: PyTorch")
    preference = CPU_PREFERENCE.get(machine.cpu_vendor, CPU_PREFERENCE_DEFAULT)
    candidates = preference if backend == "auto" else (backend,)
    for candidate in candidates:
        if machine.has(candidate):
            return Plan(candidate, False, f"backend {backend} on CPU: {candidate}", export=True)
    missing = ", ".join(sorted({p for c in candidates for p in PACKAGES[c] if p not in machine.versions}))
    return Plan("pytorch", half, f"backend {backend}: {missing} not installed: PyTorch")


def backend_of(path: Path) -> str:
    """The backend that runs a model file or export folder (``pytorch`` for a checkpoint)."""
    by_suffix = {".onnx": "onnx", ".engine": "tensorrt", ".pt": "pytorch"}
    return by_suffix.get(path.suffix, "openvino" if path.name.endswith("_openvino_model") else path.suffix.lstrip("."))


def letterbox_shape(image_shape: tuple[int, int], imgsz: int, stride: int) -> tuple[int, int]:
    """``(h, w)`` of the tensor ultralytics builds for a frame on a PyTorch model (minimal-padding letterbox).

    The same arithmetic as ``ultralytics.data.augment.LetterBox(auto=True)`` after ``check_imgsz``; a static
    export of this shape letterboxes that frame identically, so its masks match PyTorch's.
    """
    size = -(-imgsz // stride) * stride  # check_imgsz rounds up to the stride
    height, width = image_shape
    ratio = min(size / height, size / width)
    new_w, new_h = max(round(width * ratio), 1), max(round(height * ratio), 1)
    return new_h + (size - new_h) % stride, new_w + (size - new_w) % stride


# ----------------------------------------------------------------------------------------- running it


@dataclass(frozen=True)
class BackendInfo:
    """What runs frames of the exported shape, for logs, diagnostics and the bench."""

    backend: str  # "pytorch", "onnx", "openvino", "tensorrt"
    half: bool
    shape: tuple[int, int] | None = None  # the letterbox shape the export serves
    path: str = ""
    made: bool = False  # exported on this start
    export_s: float = 0.0
    load_s: float = 0.0
    threads: int | None = None  # the runtime's inference threads (None: PyTorch, see torch.get_num_threads)
    reason: str = ""
    precision: str = ""  # what the export computes in: fp32, bf16, int8 (CPU), fp16 (CUDA)


def configure_runtime(model: Any, path: Path, threads: int, precision: str = "fp32") -> int | None:
    """Give an ONNX Runtime or OpenVINO model ``threads`` inference threads, and OpenVINO ``precision`` (fp32 unless
    bf16 is asked for).

    ultralytics' AutoBackend sets neither runtime's threads (ONNX Runtime gets default ``SessionOptions``, OpenVINO
    only ``PERFORMANCE_HINT: LATENCY``), and both default to every core. OpenVINO also computes in bf16 on CPUs
    with AMX or AVX512-BF16 unless told otherwise, which moved masks (mean IoU 0.986 against PyTorch on the
    development CPU): it is recompiled with ``INFERENCE_PRECISION_HINT: f32``, so every backend gives PyTorch's
    masks. Returns the runtime's thread count as it reports it (0: ONNX Runtime's own default).
    """
    backend = model.predictor.model.backend
    if hasattr(backend, "session"):  # ONNX Runtime
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads > 0:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        # ONNX Runtime's pool threads otherwise spin on every core after each run, waiting for the next: in the
        # node that is exactly when the frame's tracking, answers and messages need the CPU.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        backend.session = onnxruntime.InferenceSession(str(path), options, providers=backend.session.get_providers())
        return int(backend.session.get_session_options().intra_op_num_threads)
    if hasattr(backend, "ov_compiled_model"):  # OpenVINO
        import openvino

        xml = next(Path(path).glob("*.xml")) if Path(path).is_dir() else Path(path)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY",
                                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        backend.ov_compiled_model = openvino.Core().compile_model(str(xml), "CPU", config)
        return int(backend.ov_compiled_model.get_property("INFERENCE_NUM_THREADS"))
    return None
