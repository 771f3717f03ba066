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
- **Which shape**: exports are static (the fastest and simplest to run), so the export is made lazily for the
  letterbox shape of the *first frame* (:func:`letterbox_shape`: the tensor PyTorch builds for that frame, so
  the export does the same work and gives the same masks). Frames of any other shape run on PyTorch (one log
  line). A camera has one shape; a folder of mixed photos in the CLI gets the export for its first image only.
  A later start loads the newest cached export of the checkpoint at warm-up (configure), ahead of the first frame.
- **Cache**: one folder per export under ``export_cache`` (default ``$XDG_CACHE_HOME/fastsam_ros`` or
  ``~/.cache/fastsam_ros``), named by a digest of :class:`ExportKey` (checkpoint SHA-256, format, shape,
  precision, GPU name, library versions): a changed checkpoint gets a new export and the one it supersedes is
  removed; an upgraded library gets its own (another venv's stays), and exports unused for 30 days go. An export
  that fails leaves a ``.failed`` note, so later starts go straight to PyTorch (out of memory or disk: retried
  after a back-off). :class:`ExportCache` says how several processes share one cache.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import importlib.util
import io
import json
import logging
import os
import re
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BACKENDS = ("auto", "pytorch", "onnx", "openvino", "tensorrt")
# ultralytics' export format of each exported backend, its artifact in a cache entry, and the packages whose
# versions decide whether an export can be reused (the exporter's and the runtime's).
FORMATS = {"onnx": "onnx", "openvino": "openvino", "tensorrt": "engine"}
ARTIFACTS = {"onnx": "model.onnx", "openvino": "model_openvino_model", "tensorrt": "model.engine"}
PACKAGES = {"onnx": ("onnx", "onnxruntime"), "openvino": ("openvino",), "tensorrt": ("onnx", "tensorrt")}
KEY_PACKAGES = ("ultralytics", "torch")
# ``auto`` on CPU: the first of these that is installed, by CPU vendor, from ``python -m bench.exports`` (a stage
# of ``make bench``) on the two development CPUs we had: on a 2-core AMD EPYC ONNX Runtime was the faster (164 vs
# 179 ms per 640x480 frame, PyTorch 315); on a 2-core Intel Xeon with AMX OpenVINO (FP32) was as fast or faster
# in every run (73 vs 75, 108 vs 141, 165 vs 361 ms under rising load). Intel's own runtime wins on Intel.
CPU_PREFERENCE = {"GenuineIntel": ("openvino", "onnx")}
CPU_PREFERENCE_DEFAULT = ("onnx", "openvino")
# No graph simplification: it needs onnxslim, which is not among our requirements (a static export runs as is).
EXPORT_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "onnx": {"dynamic": False, "simplify": False},
    "openvino": {"dynamic": False},
    "tensorrt": {"dynamic": False, "simplify": False},
}


class ExportFailed(RuntimeError):
    """The export could not be made or loaded; the message says why (the caller falls back to PyTorch)."""


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


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fastsam_ros``, or ``~/.cache/fastsam_ros``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fastsam_ros"


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


# ---------------------------------------------------------------------------------------------- the cache


@dataclass(frozen=True)
class ExportKey:
    """Everything an export depends on; equal keys mean the cached export can be reused."""

    checkpoint_sha256: str
    backend: str
    shape: tuple[int, int]
    half: bool
    gpu_name: str  # "" on CPU; a TensorRT engine only runs on the GPU model it was built for
    versions: tuple[tuple[str, str], ...]
    settings: tuple[tuple[str, Any], ...]

    @classmethod
    def make(cls, checkpoint_sha256: str, plan: Plan, shape: tuple[int, int], machine: Probe) -> ExportKey:
        packages = (*KEY_PACKAGES, *PACKAGES[plan.backend])
        return cls(checkpoint_sha256=checkpoint_sha256, backend=plan.backend, shape=(int(shape[0]), int(shape[1])),
                   half=plan.half, gpu_name=machine.gpu_name if plan.backend == "tensorrt" else "",
                   versions=tuple((p, machine.versions.get(p, "")) for p in packages),
                   settings=tuple(sorted(EXPORT_SETTINGS[plan.backend].items())))

    @property
    def digest(self) -> str:
        text = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def entry_name(self, stem: str) -> str:
        height, width = self.shape
        return f"{stem}-{self.backend}-{height}x{width}{'-fp16' if self.half else ''}-{self.digest}"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


Exporter = Callable[[Path, str, tuple[int, int], bool, str], Path]


def ultralytics_export(checkpoint: Path, backend: str, shape: tuple[int, int], half: bool, device: str) -> Path:
    """Export ``checkpoint`` with ultralytics' exporter; the artifact lands beside the checkpoint."""
    from ultralytics import FastSAM
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.utils import LOGGER

    options: dict[str, Any] = {"format": FORMATS[backend], "imgsz": list(shape), "verbose": False,
                               **EXPORT_SETTINGS[backend]}
    if half:  # ultralytics 8.4 renamed half=True to quantize=16
        options.update({"quantize": 16} if "quantize" in DEFAULT_CFG_DICT else {"half": True})
    if backend == "tensorrt":
        options["device"] = device
    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # the exporter's progress lines would flood the node's log
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's tracer deprecation warnings
            return Path(str(FastSAM(str(checkpoint)).export(**options)).rstrip("/"))
    finally:
        LOGGER.setLevel(level)


@dataclass(frozen=True)
class CacheHit:
    path: Path
    made: bool  # exported now (first start) rather than found
    export_s: float  # seconds the export took (0 when found)


# A failure of these kinds may pass (memory, disk): its note lets a later start retry after a back-off that doubles
# per failure; any other failure (an unsupported op, a broken exporter) keeps its note until it is deleted.
TRANSIENT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.ENOMEM, errno.EAGAIN, errno.EIO})
RETRY_AFTER_S = 600.0
RETRY_AFTER_MAX_S = 86_400.0
UNUSED_FOR_S = 30 * 86_400.0  # an export no start has used for this long is removed, whatever made it
LEGACY_WORK_AGE_S = 86_400.0  # an unlocked work folder of an earlier release (no lock file) is left this long


def is_transient(error: BaseException) -> bool:
    """Out of memory (host or GPU) or out of disk: worth trying again on a later start."""
    if isinstance(error, MemoryError) or error.__class__.__name__ == "OutOfMemoryError":  # torch.cuda's
        return True
    if isinstance(error, OSError) and error.errno in TRANSIENT_ERRNOS:
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()  # CUDA OOM, older torch


@dataclass(frozen=True)
class FailureNote:
    """What an entry's ``.failed`` note says: why, whether it may pass, how often, and when last."""

    reason: str
    transient: bool = False
    count: int = 1
    time: float = 0.0

    @classmethod
    def read(cls, path: Path) -> FailureNote | None:
        try:
            text = path.read_text()
        except OSError:  # none, or none readable: the export is tried (and fails where the cache is unwritable)
            return None
        try:
            return cls(**json.loads(text))
        except (ValueError, TypeError):  # an earlier release's plain-text note: permanent, as it was then
            return cls(text.strip())

    def retry_at(self) -> float | None:
        """When a later start may export again (None: never, the failure is permanent)."""
        if not self.transient:
            return None
        return self.time + min(RETRY_AFTER_S * 2 ** (self.count - 1), RETRY_AFTER_MAX_S)


class ExportCache:
    """Exports on disk, one folder per :class:`ExportKey`, safe for several processes on one cache.

    - An export runs under the entry's lock (``flock`` on ``.locks/<entry>``): a second process asking for the same
      key waits and then loads the first one's export instead of exporting it again. Lock files stay (an unlinked
      lock file would let two processes hold "the" lock); they are empty.
    - Each export works in ``.export-<entry>`` (a copy of the checkpoint and the exporter's output) and renames the
      finished entry into place. A process killed meanwhile leaves that folder: any later export sweeps the work
      folders whose entry lock is free.
    - A failure leaves ``<entry>.failed`` (:class:`FailureNote`): permanent ones send later starts straight to
      PyTorch; transient ones (memory, disk) are retried after a back-off.
    - An entry counts when its ``key.json`` is its key and its artifact is not empty; one that a runtime cannot
      load is :meth:`discard`-ed and exported again. Entries are removed when a new export supersedes them (same
      checkpoint file, slot and library versions, other weights) or when no start has used them for 30 days;
      entries of other library versions are left to the venv that uses them.
    """

    def __init__(self, root: Path, exporter: Exporter | None = None, clock: Callable[[], float] = time.time) -> None:
        self.root = Path(root).expanduser()
        self._exporter = exporter or ultralytics_export
        self._clock = clock

    def get(self, checkpoint: Path, key: ExportKey, device: str = "cpu") -> CacheHit:
        """The export for ``key``, made from ``checkpoint`` if absent; :class:`ExportFailed` if it cannot be."""
        name = key.entry_name(Path(checkpoint).stem)
        found = self._found(name, key)
        if found is not None:
            return found
        self._check_note(name)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = self._lock(name, wait=True)
        except OSError as error:
            raise ExportFailed(f"cannot write the export cache {self.root}: {error}") from error
        with lock:
            found = self._found(name, key)  # another process exported it while this one waited
            if found is not None:
                return found
            self._check_note(name)
            self._sweep_work_folders()
            return self._export(checkpoint, key, name, device)

    def discard(self, checkpoint: Path, key: ExportKey) -> None:
        """Remove ``key``'s entry (a runtime could not load it), so that the next :meth:`get` exports it again."""
        name = key.entry_name(Path(checkpoint).stem)
        with self._lock(name, wait=True):
            shutil.rmtree(self.root / name, ignore_errors=True)

    def shapes(self, key: ExportKey) -> list[tuple[int, int]]:
        """Shapes of the cached exports that match ``key`` in everything but the shape, newest first."""
        wanted = json.loads(json.dumps(dataclasses.asdict(key)))
        wanted.pop("shape")
        found = []
        for record_file in self.root.glob("*/key.json"):
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads(record_file.read_text())
                if all(record[name] == value for name, value in wanted.items()):
                    found.append((record["made"], tuple(record["shape"])))
        return [shape for _, shape in sorted(found, reverse=True)]

    def _found(self, name: str, key: ExportKey) -> CacheHit | None:
        """The entry if it is complete and is ``key``'s (a quick check; loading it is the real one). Marks it used."""
        entry = self.root / name
        artifact = entry / ARTIFACTS[key.backend]
        try:
            record = json.loads((entry / "key.json").read_text())
            ours = json.loads(json.dumps(dataclasses.asdict(key)))
            if any(record.get(item) != value for item, value in ours.items()) or not _artifact_size(artifact):
                return None
        except (OSError, ValueError):
            return None
        with contextlib.suppress(OSError):  # a read-only cache is still a cache
            os.utime(entry / "key.json")
        return CacheHit(artifact, made=False, export_s=0.0)

    def _check_note(self, name: str) -> None:
        note_file = self.root / f"{name}.failed"
        note = FailureNote.read(note_file)
        if note is None:
            return
        retry_at = note.retry_at()
        if retry_at is None:
            raise ExportFailed(f"an earlier export failed ({note.reason}); delete {note_file} to retry")
        if self._clock() < retry_at:
            when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(retry_at))
            raise ExportFailed(f"an earlier export failed ({note.reason}; transient, {note.count} tries); "
                               f"retried after {when}, or delete {note_file} to retry now")

    def _export(self, checkpoint: Path, key: ExportKey, name: str, device: str) -> CacheHit:
        entry, note_file = self.root / name, self.root / f"{name}.failed"
        work = self.root / f".export-{name}"
        shutil.rmtree(work, ignore_errors=True)  # this entry's lock is held: any work folder of it is stale
        try:
            started = time.perf_counter()
            work.mkdir()
            source = work / "model.pt"
            shutil.copyfile(checkpoint, source)
            produced = self._exporter(source, key.backend, key.shape, key.half, device)
            export_s = time.perf_counter() - started
            staged = work / "entry"
            staged.mkdir()
            shutil.move(str(produced), str(staged / ARTIFACTS[key.backend]))
            record = {**dataclasses.asdict(key), "checkpoint": str(Path(checkpoint).resolve()),
                      "export_s": round(export_s, 2), "made": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
            (staged / "key.json").write_text(json.dumps(record, indent=1) + "\n")
            shutil.rmtree(entry, ignore_errors=True)  # one that failed the quick check
            os.rename(staged, entry)
        except Exception as error:  # exporters fail in many ways; every one means "run PyTorch"
            reason = f"{error.__class__.__name__}: {error}"
            self._write_note(note_file, reason, is_transient(error))
            raise ExportFailed(f"export to {key.backend} failed: {reason}") from error
        finally:
            shutil.rmtree(work, ignore_errors=True)
        note_file.unlink(missing_ok=True)  # a transient failure that passed
        self._remove_stale(key, Path(checkpoint).resolve(), keep=entry)
        return CacheHit(entry / ARTIFACTS[key.backend], made=True, export_s=export_s)

    def _write_note(self, note_file: Path, reason: str, transient: bool) -> None:
        earlier = FailureNote.read(note_file)
        count = earlier.count + 1 if earlier is not None and earlier.transient and transient else 1
        note = FailureNote(reason, transient, count, self._clock())
        with contextlib.suppress(OSError):
            note_file.write_text(json.dumps(dataclasses.asdict(note)) + "\n")

    def _lock(self, name: str, wait: bool) -> contextlib.AbstractContextManager[None]:
        """Hold ``.locks/<name>``; with ``wait`` false, :class:`BlockingIOError` when another process holds it."""
        (self.root / ".locks").mkdir(exist_ok=True)
        stream = (self.root / ".locks" / name).open("a")
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BaseException:
            stream.close()
            raise

        @contextlib.contextmanager
        def held() -> Iterator[None]:
            with stream:  # closing it releases the lock (also when the process dies)
                yield

        return held()

    def _unlocked(self, name: str) -> contextlib.AbstractContextManager[None] | None:
        """The entry's lock if no process holds it now, else None."""
        try:
            return self._lock(name, wait=False)
        except OSError:  # BlockingIOError: held by a live exporter
            return None

    def _sweep_work_folders(self) -> None:
        """Remove the work folders of exports that were killed (their entry's lock is free)."""
        for work in self.root.glob(".export-*"):
            name = work.name.removeprefix(".export-")
            if not (self.root / ".locks" / name).exists():  # an earlier release's random name: by age
                with contextlib.suppress(OSError):
                    if self._clock() - work.stat().st_mtime > LEGACY_WORK_AGE_S:
                        shutil.rmtree(work, ignore_errors=True)
                continue
            lock = self._unlocked(name)
            if lock is not None:
                with lock:
                    shutil.rmtree(work, ignore_errors=True)

    def _remove_stale(self, key: ExportKey, checkpoint: Path, keep: Path) -> None:
        """Drop the exports that the new one supersedes, and the ones no start has used for 30 days.

        Superseded: an earlier version of the same checkpoint file for the same backend, shape, precision, GPU and
        library versions. Another venv's exports (other versions) are its own; they only age out.
        """
        for record_file in self.root.glob("*/key.json"):
            entry = record_file.parent
            if entry == keep:
                continue
            with contextlib.suppress(OSError, ValueError, KeyError):
                record = json.loads(record_file.read_text())
                superseded = (record["checkpoint"] == str(checkpoint) and record["backend"] == key.backend
                              and tuple(record["shape"]) == key.shape and record["gpu_name"] == key.gpu_name
                              and record["half"] == key.half
                              and [tuple(v) for v in record["versions"]] == [tuple(v) for v in key.versions])
                unused = self._clock() - record_file.stat().st_mtime > UNUSED_FOR_S
                if superseded or unused:
                    lock = self._unlocked(entry.name)
                    if lock is not None:
                        with lock:
                            shutil.rmtree(entry, ignore_errors=True)


def _artifact_size(artifact: Path) -> int:
    """Bytes of an export file, or of every file in an export folder (OpenVINO's .xml and .bin)."""
    if artifact.is_dir():
        return sum(path.stat().st_size for path in artifact.iterdir() if path.is_file())
    return artifact.stat().st_size


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


def configure_runtime(model: Any, path: Path, threads: int) -> int | None:
    """Give an ONNX Runtime or OpenVINO model ``threads`` inference threads, and OpenVINO FP32 precision.

    ultralytics' AutoBackend sets neither runtime's threads (ONNX Runtime gets default ``SessionOptions``, OpenVINO
    only ``PERFORMANCE_HINT: LATENCY``), and both default to every core. OpenVINO also computes in bf16 on CPUs
    with AMX or AVX512-BF16 unless told otherwise, which moved masks (mean IoU 0.986 against PyTorch on the
    development CPU): it is recompiled with ``INFERENCE_PRECISION_HINT: f32``, so every backend gives PyTorch's
    masks. Returns the runtime's thread count as it reports it (0: ONNX Runtime's own default).
    """
    backend = model.predictor.model.backend
    if hasattr(backend, "session"):  # ONNX Runtime
        import onnxruntime

        if threads > 0:
            options = onnxruntime.SessionOptions()
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
            backend.session = onnxruntime.InferenceSession(str(path), options,
                                                           providers=backend.session.get_providers())
        return int(backend.session.get_session_options().intra_op_num_threads)
    if hasattr(backend, "ov_compiled_model"):  # OpenVINO
        import openvino

        xml = next(Path(path).glob("*.xml")) if Path(path).is_dir() else Path(path)
        config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads > 0:
            config["INFERENCE_NUM_THREADS"] = threads
        backend.ov_compiled_model = openvino.Core().compile_model(str(xml), "CPU", config)
        return int(backend.ov_compiled_model.get_property("INFERENCE_NUM_THREADS"))
    return None


class BackendSwitch:
    """PyTorch for every frame, except frames of the first frame's letterbox shape: those run the cached export.

    ``model_for(image_shape)`` returns the ultralytics model to call and whether to ask for FP16. The first call
    exports (first start) or loads (later starts) the export; a failure is logged once and PyTorch carries on.
    ``preload`` (the engine's warm-up) loads the newest cached export of the checkpoint ahead of the first frame.
    """

    def __init__(self, pytorch_model: Any, plan: Plan, *, machine: Probe, imgsz: int, device: str,
                 cpu_threads: int, cache: ExportCache, log: Callable[[str], None],
                 predict: Callable[[Any, bool, Any], Any]) -> None:
        self._pytorch = pytorch_model
        # the engine's own prediction (model, half, image): the export's first run builds the same predictor the
        # engine uses (ultralytics rebuilds it, runtime session included, when the predictor class changes)
        self._predict = predict
        self._plan = plan
        self._machine = machine
        self._imgsz = imgsz
        self._device = device
        self._cpu_threads = cpu_threads
        self._cache = cache
        self._log = log
        self._shape: tuple[int, int] | None = None
        self._exported: Any = None
        self._preloaded = False  # _shape came from the cache, not from a frame: the first frame may replace it
        self._retired: list[Any] = []  # a preloaded export the first frame replaced
        self._sha = ""
        self._other_shapes: set[tuple[int, int]] = set()
        # PyTorch until the first frame's export is loaded (or the model as given, when it is an export)
        self.info = BackendInfo("pytorch" if plan.export else plan.backend, plan.half, reason=plan.reason)

    @property
    def pytorch_half(self) -> bool:
        """FP16 for the PyTorch model (CUDA only: ultralytics runs FP32 on the CPU whatever it is asked)."""
        return self._plan.half

    def preload(self) -> None:
        """Load the newest cached export of this checkpoint before any frame (a later start, at configure).

        The first real frame still decides: of another shape, it gets that shape's export instead.
        """
        if not self._plan.export or self._shape is not None:
            return
        try:
            shapes = self._cache.shapes(self._key((0, 0)))
        except OSError:
            return
        if shapes:
            self._shape, self._preloaded = shapes[0], True
            self._exported = self._load(shapes[0])

    def model_for(self, image_shape: tuple[int, ...]) -> tuple[Any, bool]:
        if not self._plan.export:
            return self._pytorch, self._plan.half
        stride = int(max(self._pytorch.model.stride))
        shape = letterbox_shape((int(image_shape[0]), int(image_shape[1])), self._imgsz, stride)
        if self._preloaded:
            self._preloaded = False
            if shape != self._shape:  # the camera changed since the export was made
                # Kept, not destroyed: tearing down a compiled runtime model while the process runs on crashed
                # with SIGSEGV under `make test` (one model of memory, once per start).
                self._retired.append(self._exported)
                self._shape, self._exported = None, None
                self.info = BackendInfo("pytorch", self._plan.half, reason=self._plan.reason)
        if self._shape is None:
            self._shape = shape
            self._exported = self._load(shape)
        if shape == self._shape and self._exported is not None:
            return self._exported, self._plan.half
        if shape != self._shape and shape not in self._other_shapes:
            self._other_shapes.add(shape)
            self._log(f"frames of letterbox shape {shape[0]}x{shape[1]} run on PyTorch: the {self._plan.backend} "
                      f"export serves {self._shape[0]}x{self._shape[1]}, the first frame's")
        return self._pytorch, self._plan.half

    def _key(self, shape: tuple[int, int]) -> ExportKey:
        if not self._sha:
            self._sha = file_sha256(Path(self._pytorch.ckpt_path))
        return ExportKey.make(self._sha, self._plan, shape, self._machine)

    def _load(self, shape: tuple[int, int]) -> Any:
        plan = self._plan
        checkpoint = Path(self._pytorch.ckpt_path)
        try:
            key = self._key(shape)
            if not (self._cache.root / key.entry_name(checkpoint.stem) / "key.json").exists():
                self._log(f"exporting {checkpoint.name} to {plan.backend} at {shape[0]}x{shape[1]} once "
                          f"(cached in {self._cache.root})...")
            hit = self._cache.get(checkpoint, key, self._device)
            started = time.perf_counter()
            try:
                model = self._load_export(hit.path, shape)
            except Exception as error:
                if hit.made:
                    raise
                self._log(f"the cached export {hit.path} does not load ({error.__class__.__name__}: {error}): "
                          f"exporting {checkpoint.name} to {plan.backend} again...")
                self._cache.discard(checkpoint, key)
                hit = self._cache.get(checkpoint, key, self._device)
                started = time.perf_counter()
                model = self._load_export(hit.path, shape)
            load_s = time.perf_counter() - started
        except Exception as error:  # ExportFailed, or a runtime that cannot load what was exported
            reason = str(error) if isinstance(error, ExportFailed) else f"{error.__class__.__name__}: {error}"
            self._log(f"{plan.backend} export unavailable, running PyTorch: {reason}")
            self.info = dataclasses.replace(self.info, reason=f"{plan.reason}; failed: {reason}")
            return None
        threads = configure_runtime(model, hit.path, self._cpu_threads)
        if self._cpu_threads > 0 and not self._machine.cuda:  # the export's predictor reset torch's threads
            import torch

            torch.set_num_threads(self._cpu_threads)
        self.info = BackendInfo(plan.backend, plan.half, shape, str(hit.path), hit.made, round(hit.export_s, 2),
                                round(load_s, 2), threads, plan.reason)
        first = f"exported in {hit.export_s:.1f} s (first start), " if hit.made else "found in the cache, "
        self._log(f"running {plan.backend} at {shape[0]}x{shape[1]}: {first}loaded in {load_s:.1f} s from {hit.path}")
        return model

    def _load_export(self, path: Path, shape: tuple[int, int]) -> Any:
        import numpy as np
        from ultralytics import FastSAM

        model = FastSAM(str(path))
        self._predict(model, self._plan.half, np.zeros((*shape, 3), dtype=np.uint8))  # its predictor; it runs
        return model
