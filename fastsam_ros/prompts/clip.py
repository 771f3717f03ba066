"""CLIP for text prompts, through ``open_clip_torch``: loaded lazily, never installed or downloaded unasked.

:class:`ClipScorer` is the real scorer (``open_clip_torch``). It imports and builds nothing until the first
text prompt, or :meth:`ClipScorer.load` (a node calls it at configure when asked to); when CLIP cannot be
had it raises :class:`ClipUnavailable` with what to do, logs that once, and :func:`rank_by_text` turns it
into a ``Status.ERROR`` answer, so point and box prompts are unaffected.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import warnings
import zipfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import numpy as np

from fastsam_ros.prompts.text import TEXT_CACHE_SIZE, ClipUnavailable, make_crops
from fastsam_ros.segmentation.backends import normalise_device
from fastsam_ros.types import Segmentation

_LOG = logging.getLogger("fastsam_ros.prompts.clip")


@dataclass(frozen=True)
class ClipConfig:
    """Which CLIP scores text prompts, and where its weights come from.

    ``model`` is an ``open_clip`` architecture. ``ViT-B-32`` is what FastSAM uses. On a Jetson prefer
    ``MobileCLIP-S1`` with ``pretrained="datacompdr"`` (or ``MobileCLIP-S2``; ``MobileCLIP2-S0`` with
    ``dfndr2b`` in open_clip 3.x): several times cheaper image encoders at ViT-B-level zero-shot accuracy.

    Weights: ``weights`` (a local checkpoint file: an open_clip state dict, ``.safetensors``, or OpenAI's
    TorchScript ``ViT-B-32.pt``) wins; otherwise ``pretrained`` is an open_clip tag that is downloaded once on
    a machine with internet (Hugging Face cache, or ``cache_dir``) and read from that cache afterwards.
    ``pretrained`` also tells how a local file was trained, which fixes its preprocessing (MobileCLIP
    normalises differently) and activation (OpenAI's ViT-B-32 uses QuickGELU), so keep it matching the file.
    """

    model: str = "ViT-B-32"
    pretrained: str = "openai"
    weights: str = ""
    device: str = "cpu"
    random_weights: bool = False  # tests and benchmarks only: the architecture with random weights
    cache_dir: str = ""  # where downloaded weights go ("" = open_clip's default, the Hugging Face cache)

    def __post_init__(self) -> None:  # torch reads no "0": the engine's spelling, cuda:0
        object.__setattr__(self, "device", normalise_device(self.device))


# ------------------------------------------------------------------------------------------------- the scorer


class ClipScorer:
    """:class:`TextScorer` backed by ``open_clip``, loaded lazily and at most once (thread-safe).

    Caches: text embeddings per phrase (whitespace-normalised; up to ``TEXT_CACHE_SIZE``), and the image
    embeddings of the last frame's instances (keyed on the ``Segmentation`` object), so a second phrase on
    the same frame costs one text encoding. ``text_encodes``, ``image_encodes`` (crops) and ``image_batches``
    (forward passes) count the work done.
    """

    def __init__(self, config: ClipConfig = ClipConfig(), log: Callable[[str], None] | None = None) -> None:
        self.config = config
        self._log = log or _LOG.error
        self._load_lock = threading.Lock()
        self._cache_lock = threading.Lock()
        self._model: Any = None
        self._preprocess: Any = None
        self._tokenizer: Any = None
        self._torch: Any = None
        self._error: ClipUnavailable | None = None
        self._texts: dict[str, Any] = {}
        self._frame: tuple[Segmentation, dict[int, Any]] | None = None
        self.text_encodes = 0
        self.image_encodes = 0
        self.image_batches = 0
        self.load_seconds: float | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def error(self) -> ClipUnavailable | None:
        """Why loading failed (then every later call raises it again without retrying), else None."""
        return self._error

    def load(self) -> None:
        """Import open_clip and build the model now; raises :class:`ClipUnavailable` (logged once)."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            if self._error is not None:
                raise self._error
            start = time.perf_counter()
            try:
                self._model, self._preprocess, self._tokenizer, self._torch = _build(self.config)
            except ClipUnavailable as error:
                self._error = error
                self._log(f"text prompts are unavailable: {error}")
                raise
            self.load_seconds = time.perf_counter() - start

    def text_embedding(self, text: str) -> Any:
        """The normalised ``(D,)`` embedding of ``text`` (a torch tensor), encoded once per phrase."""
        key = " ".join(text.split())
        cached = self._texts.get(key)
        if cached is not None:
            return cached
        self.load()
        torch = self._torch
        with torch.inference_mode():
            tokens = self._tokenizer([key]).to(self.config.device)
            features = self._model.encode_text(tokens).float()
            features = torch.nn.functional.normalize(features, dim=-1)[0]
        with self._cache_lock:
            self.text_encodes += 1
            if len(self._texts) >= TEXT_CACHE_SIZE:
                self._texts.pop(next(iter(self._texts)))
            self._texts[key] = features
        return features

    def image_embeddings(self, crops_rgb: Sequence[np.ndarray]) -> Any:
        """Normalised ``(K, D)`` embeddings of RGB crops, preprocessed as the model expects, one forward pass.

        No crops give a ``(0, 0)`` tensor.
        """
        self.load()
        torch = self._torch
        from PIL import Image

        if not crops_rgb:
            return torch.zeros((0, 0), device=self.config.device)
        with torch.inference_mode():
            batch = torch.stack([self._preprocess(Image.fromarray(crop)) for crop in crops_rgb])
            features = self._model.encode_image(batch.to(self.config.device)).float()
            features = torch.nn.functional.normalize(features, dim=-1)
        with self._cache_lock:
            self.image_encodes += len(crops_rgb)
            self.image_batches += 1
        return features

    def score(
        self, text: str, image_bgr: np.ndarray, segmentation: Segmentation, indices: Sequence[int]
    ) -> np.ndarray:
        text_features = self.text_embedding(text)  # loads first: fail before cropping anything
        with self._cache_lock:
            if self._frame is None or self._frame[0] is not segmentation:
                self._frame = (segmentation, {})
            known = self._frame[1]
            missing = [int(i) for i in dict.fromkeys(indices) if int(i) not in known]
        if missing:
            crops = make_crops(image_bgr, segmentation, missing)
            kept = [k for k, crop in enumerate(crops) if crop is not None]
            found: dict[int, Any] = dict.fromkeys(missing)
            if kept:
                features = self.image_embeddings([crops[k] for k in kept])
                for row, k in enumerate(kept):
                    found[missing[k]] = features[row]
            with self._cache_lock:
                known.update(found)
        scores = np.full(len(indices), np.nan)
        for position, index in enumerate(indices):
            feature = known.get(int(index))
            if feature is not None:
                scores[position] = float(feature @ text_features)
        return scores


def _build(config: ClipConfig) -> tuple[Any, Any, Any, Any]:
    """``(model, preprocess, tokenizer, torch)`` for ``config``, or :class:`ClipUnavailable`."""
    try:
        import open_clip
        import torch
    except ImportError as error:
        raise ClipUnavailable(f"open_clip is not installed (pip install open_clip_torch): {error}") from error

    name = config.model
    if ":" not in name and name not in open_clip.list_models():
        raise ClipUnavailable(
            f"open_clip {open_clip.__version__} has no architecture {name!r} "
            "(e.g. ViT-B-32, or MobileCLIP-S1 on a Jetson; see open_clip.list_models())"
        )
    tag_cfg = open_clip.get_pretrained_cfg(name, config.pretrained) if config.pretrained and ":" not in name else {}
    kwargs: dict[str, Any] = {"device": config.device}
    if config.cache_dir:
        kwargs["cache_dir"] = config.cache_dir

    if config.random_weights:
        pretrained = None
        kwargs["load_weights"] = False
    elif config.weights:
        path = os.path.expanduser(config.weights)
        if not os.path.isfile(path):
            raise ClipUnavailable(f"clip_weights {path} does not exist (or is not a file)")
        pretrained = path
    elif ":" in name:  # hf-hub:org/repo or local-dir:/path name their own weights
        pretrained = None
    else:
        if not tag_cfg:
            tags = open_clip.list_pretrained_tags_by_model(name)
            raise ClipUnavailable(
                f"open_clip knows no pretrained tag {config.pretrained!r} for {name} (known: {', '.join(tags)}); "
                "or set clip_weights to a local checkpoint"
            )
        pretrained = _cached_checkpoint(tag_cfg, config.cache_dir)
        if pretrained is None:
            _check_reachable(tag_cfg, name, config.pretrained)
            pretrained = config.pretrained  # open_clip downloads it into its cache

    if tag_cfg and pretrained != config.pretrained:
        # A file (or random weights) carries no preprocessing or activation settings: take them from the tag.
        kwargs.update(
            image_mean=tag_cfg.get("mean"), image_std=tag_cfg.get("std"),
            image_interpolation=tag_cfg.get("interpolation"), image_resize_mode=tag_cfg.get("resize_mode"),
            force_quick_gelu=bool(tag_cfg.get("quick_gelu", False)),
        )
    torchscript = pretrained is not None and _is_torchscript(pretrained)
    if torchscript:  # OpenAI's own checkpoints: open_clip's torch.load(weights_only=True) refuses them
        kwargs["load_weights"] = False

    what = f"{name} ({'random weights' if pretrained is None and config.random_weights else pretrained})"
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(
            name, pretrained=None if torchscript else pretrained, **kwargs
        )
        if torchscript:
            _load_torchscript(model, pretrained, torch)
        tokenizer = open_clip.get_tokenizer(name, **({"cache_dir": config.cache_dir} if config.cache_dir else {}))
    except Exception as error:  # open_clip raises RuntimeError, OSError, KeyError, ... for bad files and downloads
        hint = "" if config.weights else "; on a machine without internet set clip_weights to a local checkpoint"
        raise ClipUnavailable(f"could not build CLIP {what}: {error}{hint}") from error
    model.eval()
    if any(hasattr(m, "reparameterize") or hasattr(m, "fuse") for m in model.modules()):
        # MobileCLIP's MobileOne/FastViT blocks train with parallel branches; fuse them for inference.
        try:
            from timm.utils import reparameterize_model
        except ImportError:
            pass
        else:
            with torch.inference_mode(False):
                model = reparameterize_model(model, inplace=True)
    return model, preprocess, tokenizer, torch


def _cached_checkpoint(tag_cfg: dict, cache_dir: str) -> str | None:
    """Path of a tag's weights already downloaded into the cache open_clip uses, else None."""
    hub = tag_cfg.get("hf_hub", "")
    if hub:
        try:
            from huggingface_hub import try_to_load_from_cache
            from open_clip.pretrained import HF_WEIGHTS_NAME, _get_safe_alternatives
        except ImportError:
            hub = ""
        else:
            model_id, filename = os.path.split(hub)
            filename = filename or HF_WEIGHTS_NAME
            for candidate in (*_get_safe_alternatives(filename), filename):
                found = try_to_load_from_cache(model_id, candidate, cache_dir=cache_dir or None)
                if isinstance(found, str) and os.path.isfile(found):
                    return found
    url = tag_cfg.get("url", "")
    if url and not hub:
        path = os.path.join(cache_dir or os.path.expanduser("~/.cache/clip"), os.path.basename(urlparse(url).path))
        if os.path.isfile(path):
            return path
    return None


def _check_reachable(tag_cfg: dict, model: str, tag: str, timeout: float = 3.0) -> None:
    """Fail in seconds, not minutes of retries, when the weights' host cannot be reached (no internet)."""
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return  # the proxy decides; let the download try
    if tag_cfg.get("hf_hub"):
        try:
            from huggingface_hub import constants
        except ImportError:
            endpoint = "https://huggingface.co"
        else:
            if getattr(constants, "HF_HUB_OFFLINE", False):
                raise ClipUnavailable(
                    f"HF_HUB_OFFLINE is set and {model}/{tag} weights are not in the cache: "
                    "set clip_weights to a local checkpoint"
                )
            endpoint = constants.ENDPOINT
    else:
        endpoint = tag_cfg.get("url", "")
    parsed = urlparse(endpoint)
    host, port = parsed.hostname, parsed.port or (80 if parsed.scheme == "http" else 443)
    if not host:
        return
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        raise ClipUnavailable(
            f"cannot download {model} weights {tag!r}: {host} is unreachable ({error}); no internet? "
            "Set clip_weights to a local checkpoint file (or download once where there is internet)"
        ) from error


def _load_torchscript(model: Any, path: str, torch: Any) -> None:
    """Load the weights of a TorchScript CLIP archive (OpenAI's ``ViT-B-32.pt``) into ``model``, strictly."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated but is what these files are
        state = dict(torch.jit.load(path, map_location="cpu").state_dict())
    expected = model.state_dict()
    for key in list(state):  # scalars OpenAI stores beside the weights, and buffers open_clip rebuilds
        if key not in expected and (key in ("input_resolution", "context_length", "vocab_size") or
                                    key.endswith("attn_mask")):
            del state[key]
    model.load_state_dict(state, strict=True)


def _is_torchscript(path: str) -> bool:
    """Is ``path`` a TorchScript archive (OpenAI's original CLIP checkpoints are)?"""
    if not os.path.isfile(path) or not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith("/constants.pkl") or name == "constants.pkl" for name in archive.namelist())
