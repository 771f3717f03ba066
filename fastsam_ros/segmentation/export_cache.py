"""Exports of a checkpoint for a backend, made once and cached on disk, shared safely between processes.

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
import io
import json
import logging
import os
import shutil
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fastsam_ros.segmentation.backends import KEY_PACKAGES, PACKAGES, Plan, Probe

# ultralytics' export format of each exported backend, its artifact in a cache entry, and its
# settings.
FORMATS = {"onnx": "onnx", "openvino": "openvino", "tensorrt": "engine"}
ARTIFACTS = {"onnx": "model.onnx", "openvino": "model_openvino_model", "tensorrt": "model.engine"}
# No graph simplification: it needs onnxslim, which is not among our requirements (a static export runs as is).
EXPORT_SETTINGS: Mapping[str, Mapping[str, Any]] = {
    "onnx": {"dynamic": False, "simplify": False},
    "openvino": {"dynamic": False},
    "tensorrt": {"dynamic": False, "simplify": False},
}


class ExportFailed(RuntimeError):
    """The export could not be made or loaded; the message says why (the caller falls back to PyTorch)."""


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/fastsam_ros``, or ``~/.cache/fastsam_ros``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "fastsam_ros"


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
