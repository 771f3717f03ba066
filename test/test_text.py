"""Text prompts: ranking with a stub scorer, crops, the real open_clip model with random weights, and no CLIP."""

from __future__ import annotations

import json
import sys
import time
import warnings

import numpy as np
import pytest

from fastsam_ros.prompts.clip import ClipConfig, ClipScorer
from fastsam_ros.prompts.text import MIN_CROP_PIXELS, ClipUnavailable, make_crops, rank_by_text
from fastsam_ros.segmentation.masks import MaskGeometry, mask_box
from fastsam_ros.types import Prompt, Segmentation, Status

IMAGE_SHAPE = (120, 160)


def _segmentation(masks: np.ndarray, image_shape: tuple[int, int] = IMAGE_SHAPE) -> Segmentation:
    """Instances from network-resolution masks; boxes and areas measured on the upsampled masks."""
    geometry = MaskGeometry(image_shape, masks.shape[1:])
    full = [geometry.upsample(m) for m in masks]
    boxes = np.array([mask_box(f) or (0, 0, 0, 0) for f in full], dtype=np.float32).reshape(-1, 4)
    return Segmentation(
        masks=masks, boxes=boxes, scores=np.full(len(masks), 0.9, dtype=np.float32),
        geometry=geometry,
    )


def _rects(*rects: tuple[int, int, int, int], shape: tuple[int, int] = IMAGE_SHAPE) -> np.ndarray:
    masks = np.zeros((len(rects), *shape), dtype=bool)
    for mask, (x0, y0, x1, y1) in zip(masks, rects, strict=True):
        mask[y0:y1, x0:x1] = True
    return masks


# Four instances: 0 the whole left half, 1 a small square inside it, 2 a square on the right, 3 a tiny speck.
SCENE = _rects((0, 0, 80, 120), (20, 20, 50, 50), (100, 30, 150, 90), (150, 5, 155, 10))
IMAGE = np.random.default_rng(0).integers(0, 256, (*IMAGE_SHAPE, 3), dtype=np.uint8)


class StubScorer:
    """Known similarities per instance; records what it was asked."""

    def __init__(self, scores: dict[int, float], error: Exception | None = None) -> None:
        self.scores, self.error, self.calls = scores, error, []

    def score(self, text, image_bgr, segmentation, indices):
        self.calls.append((text, list(indices)))
        if self.error is not None:
            raise self.error
        return np.array([self.scores.get(int(i), np.nan) for i in indices])


# ------------------------------------------------------------------------------------------------ ranking


def test_best_match_is_selected_with_its_similarity():
    seg = _segmentation(SCENE)
    scorer = StubScorer({0: 0.21, 1: 0.31, 2: 0.25})
    result = rank_by_text(seg, IMAGE, Prompt(id="a", text="  the red   mug "), scorer, min_text_score=0.2)
    assert result.status is Status.OK and result.prompt_id == "a"
    (obj,) = result.objects
    assert obj.instances == (1,) and obj.score == pytest.approx(0.31)
    assert obj.box == (20.0, 20.0, 50.0, 50.0) and obj.area == 900
    assert scorer.calls == [("the red mug", [0, 1, 2, 3])]  # normalised text, every instance in one call


def test_return_all_gives_every_instance_above_the_threshold_best_first():
    seg = _segmentation(SCENE)
    result = rank_by_text(seg, IMAGE, Prompt(text="mug"), StubScorer({0: 0.21, 1: 0.31, 2: 0.25}),
                          min_text_score=0.22, return_all=True)
    assert result.ok
    assert [o.instances for o in result.objects] == [(1,), (2,)]
    assert [o.score for o in result.objects] == pytest.approx([0.31, 0.25])


def test_below_min_text_score_is_an_explicit_no_match_naming_the_best_score():
    seg = _segmentation(SCENE)
    result = rank_by_text(seg, IMAGE, Prompt(text="giraffe"), StubScorer({0: 0.12, 1: 0.15, 2: 0.1}),
                          min_text_score=0.2)
    assert result.status is Status.NO_MATCH and not result.objects
    assert "0.150" in result.reason and "min_text_score 0.2" in result.reason and "giraffe" in result.reason


def test_text_with_a_box_ranks_only_inside_it_and_clips_to_it():
    seg = _segmentation(SCENE)
    scorer = StubScorer({0: 0.4, 1: 0.3, 2: 0.35})
    # Instance 0 (the left half) is only partly inside: not a candidate; 1 is wholly inside; 2 is outside.
    box = (10.0, 10.0, 45.0, 60.0)
    result = rank_by_text(seg, IMAGE, Prompt(text="mug", boxes=(box,)), scorer, min_text_score=0.2)
    assert result.ok and scorer.calls[0][1] == [1]
    (obj,) = result.objects
    assert obj.instances == (1,) and obj.box == (20.0, 20.0, 45.0, 50.0)  # clipped at the box's right edge
    assert not obj.mask[:, 45:].any()


def test_each_box_answers_on_its_own_from_one_scorer_call():
    seg = _segmentation(SCENE)
    scorer = StubScorer({0: 0.4, 1: 0.3, 2: 0.35})
    boxes = ((0.0, 0.0, 80.0, 120.0), (90.0, 20.0, 160.0, 100.0))
    result = rank_by_text(seg, IMAGE, Prompt(text="mug", boxes=boxes), scorer, min_text_score=0.2)
    assert [o.instances for o in result.objects] == [(0,), (2,)]
    assert len(scorer.calls) == 1 and scorer.calls[0][1] == [0, 1, 2]
    empty = rank_by_text(seg, IMAGE, Prompt(text="mug", boxes=((60.0, 100.0, 70.0, 110.0),)), scorer)
    assert empty.status is Status.NO_MATCH and "inside the box" in empty.reason


def test_unscorable_candidates_and_scorer_errors():
    seg = _segmentation(SCENE)
    tiny_only = rank_by_text(seg, IMAGE, Prompt(text="speck", boxes=((148.0, 0.0, 160.0, 20.0),)), StubScorer({}))
    assert tiny_only.status is Status.NO_MATCH and "too small" in tiny_only.reason
    failing = StubScorer({}, error=ClipUnavailable("open_clip is not installed (pip install open_clip_torch)"))
    error = rank_by_text(seg, IMAGE, Prompt(text="mug"), failing)
    assert error.status is Status.ERROR and "pip install open_clip_torch" in error.reason


def test_malformed_text_prompts():
    seg = _segmentation(SCENE)
    scorer = StubScorer({1: 0.3})
    assert rank_by_text(seg, IMAGE, Prompt(text="   "), scorer).status is Status.INVALID
    with_points = rank_by_text(seg, IMAGE, Prompt(text="mug", points=((30.0, 30.0),)), scorer)
    assert with_points.status is Status.INVALID and "points" in with_points.reason
    assert rank_by_text(seg, IMAGE[:60], Prompt(text="mug"), scorer).status is Status.INVALID
    nothing = _segmentation(np.zeros((0, *IMAGE_SHAPE), dtype=bool))
    assert rank_by_text(nothing, IMAGE, Prompt(text="mug"), scorer).status is Status.NO_MATCH
    assert scorer.calls == []


# -------------------------------------------------------------------------------------------------- crops


def test_crops_are_the_mask_box_with_everything_outside_the_mask_black():
    masks = np.zeros((2, *IMAGE_SHAPE), dtype=bool)
    masks[0, 10:40, 30:70] = True
    masks[0, 10:20, 30:40] = False  # a notch: inside the box, outside the mask
    masks[1, 0:5, 0:5] = True  # 25 pixels: too small
    seg = _segmentation(masks)
    crop, small = make_crops(IMAGE, seg, [0, 1])
    assert small is None
    assert crop.shape == (30, 40, 3) and crop.dtype == np.uint8
    expected = IMAGE[10:40, 30:70, ::-1].copy()
    expected[0:10, 0:10] = 0
    np.testing.assert_array_equal(crop, expected)
    assert make_crops(IMAGE, seg, [1], min_pixels=24)[0].shape == (5, 5, 3)
    assert make_crops(IMAGE, seg, [1], min_pixels=25)[0] is None  # "<= min_pixels" is too small
    with pytest.raises(ValueError):
        make_crops(IMAGE[:, :100], seg, [0])


def test_crops_of_letterboxed_masks_match_the_full_resolution_mask():
    # 120x160 image, 64x80 network masks: gain 0.5, two rows of padding top and bottom.
    net = np.zeros((1, 64, 80), dtype=bool)
    net[0, 10:30, 20:50] = True
    net[0, 15:20, 25:30] = False
    seg = _segmentation(net)
    full = seg.full_mask(0)
    x0, y0, x1, y1 = mask_box(full)
    (crop,) = make_crops(IMAGE, seg, [0])
    expected = np.where(full[y0:y1, x0:x1, None], IMAGE[y0:y1, x0:x1, ::-1], 0)
    np.testing.assert_array_equal(crop, expected)
    assert MIN_CROP_PIXELS == 100


# ---------------------------------------------------------------------------------------- the real model

TINY = "fastsam-test-tiny-clip"


@pytest.fixture(scope="module")
def open_clip(tmp_path_factory):
    """open_clip with a registered tiny architecture (same code path as ViT-B-32, milliseconds to run)."""
    module = pytest.importorskip("open_clip")
    config = tmp_path_factory.mktemp("clip") / f"{TINY}.json"
    config.write_text(json.dumps({
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
    }))
    module.add_model_config(config)
    return module


@pytest.fixture(scope="module")
def tiny_scorer(open_clip):
    scorer = ClipScorer(ClipConfig(model=TINY, random_weights=True))
    scorer.load()
    return scorer


def _random_crops(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(1)
    return [rng.integers(0, 256, (int(rng.integers(20, 200)), int(rng.integers(20, 200)), 3), dtype=np.uint8)
            for _ in range(count)]


def _cosines(scorer: ClipScorer, text: str, crops_rgb: list[np.ndarray]) -> np.ndarray:
    """Cosine similarity of each crop with ``text`` through the scorer's public embeddings."""
    return (scorer.image_embeddings(crops_rgb) @ scorer.text_embedding(text)).cpu().numpy().astype(np.float64)


def test_clip_scorer_scores_crops_and_encodes_each_phrase_once(tiny_scorer):
    crops = _random_crops(3)
    first = _cosines(tiny_scorer, "the red mug", crops)
    encodes = tiny_scorer.text_encodes
    again = _cosines(tiny_scorer, " the red  mug", crops)  # same phrase after whitespace normalisation
    assert tiny_scorer.text_encodes == encodes
    assert first.shape == (3,) and np.all(np.abs(first) <= 1.0 + 1e-6)
    np.testing.assert_allclose(again, first, rtol=1e-5, atol=1e-6)
    # One batch scores the same as one crop at a time.
    single = np.array([_cosines(tiny_scorer, "the red mug", [crop])[0] for crop in crops])
    np.testing.assert_allclose(single, first, rtol=1e-4, atol=1e-5)
    _cosines(tiny_scorer, "a blue chair", crops)
    assert tiny_scorer.text_encodes == encodes + 1


def test_text_prompt_end_to_end_with_the_real_scorer(tiny_scorer):
    seg = _segmentation(SCENE)  # a new frame: its crops are not cached yet
    images_before, batches_before = tiny_scorer.image_encodes, tiny_scorer.image_batches
    scores = tiny_scorer.score("a cat", IMAGE, seg, [0, 1, 2, 3])
    assert np.isnan(scores[3]) and not np.isnan(scores[:3]).any()  # the 25-pixel speck is not scored
    assert tiny_scorer.image_encodes == images_before + 3  # the three scorable crops ...
    assert tiny_scorer.image_batches == batches_before + 1  # ... in one forward pass
    expected = _cosines(tiny_scorer, "a cat", [c for c in make_crops(IMAGE, seg, [0, 1, 2]) if c is not None])
    np.testing.assert_allclose(scores[:3], expected, rtol=1e-4, atol=1e-5)
    images_before = tiny_scorer.image_encodes

    result = rank_by_text(seg, IMAGE, Prompt(id="p", text="a cat"), tiny_scorer, min_text_score=-1.0)
    assert result.ok and result.objects[0].instances == (int(np.nanargmax(scores)),)
    assert result.objects[0].score == pytest.approx(float(np.nanmax(scores)), abs=1e-5)
    # A new phrase on the same frame reuses the frame's image embeddings: only the text is encoded.
    rank_by_text(seg, IMAGE, Prompt(text="a dog"), tiny_scorer, min_text_score=-1.0)
    assert tiny_scorer.image_encodes == images_before
    everything = rank_by_text(seg, IMAGE, Prompt(text="a dog"), tiny_scorer, min_text_score=-1.0, return_all=True)
    assert len(everything.objects) == 3


def test_local_checkpoints_load_the_same_weights(open_clip, tmp_path):
    import torch

    source = open_clip.create_model(TINY, pretrained=None).eval()
    torch.save(source.state_dict(), tmp_path / "tiny.pt")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated; OpenAI's ViT-B-32.pt is one
        scripted = torch.jit.script(source)
        torch.jit.save(scripted, tmp_path / "tiny_jit.pt")
    with torch.inference_mode():
        reference = torch.nn.functional.normalize(source.encode_text(open_clip.tokenize(["a mug"])), dim=-1)[0]
    for name in ("tiny.pt", "tiny_jit.pt"):
        scorer = ClipScorer(ClipConfig(model=TINY, pretrained="", weights=str(tmp_path / name)))
        torch.testing.assert_close(scorer.text_embedding("a mug"), reference, rtol=1e-4, atol=1e-5)


def test_vit_b_32_with_random_weights_builds_and_scores(open_clip):
    scorer = ClipScorer(ClipConfig(model="ViT-B-32", random_weights=True))
    start = time.perf_counter()
    scores = _cosines(scorer, "the red mug", _random_crops(3))
    assert scores.shape == (3,) and np.isfinite(scores).all()
    assert scorer.loaded and scorer.load_seconds is not None
    assert time.perf_counter() - start < 60


# --------------------------------------------------------------------------------------------- no CLIP here


def test_constructing_the_scorer_imports_nothing(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    scorer = ClipScorer(ClipConfig())
    assert not scorer.loaded and scorer.error is None


def test_missing_open_clip_fails_with_what_to_install_and_logs_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "open_clip", None)
    logged: list[str] = []
    scorer = ClipScorer(ClipConfig(), log=logged.append)
    with pytest.raises(ClipUnavailable, match="pip install open_clip_torch"):
        scorer.load()
    seg = _segmentation(SCENE)
    for _ in range(2):
        result = rank_by_text(seg, IMAGE, Prompt(text="mug"), scorer)
        assert result.status is Status.ERROR and "pip install open_clip_torch" in result.reason
    assert len(logged) == 1 and "pip install open_clip_torch" in logged[0]
    assert scorer.error is not None


def test_missing_local_weights_name_the_path(open_clip, tmp_path):
    missing = tmp_path / "nowhere" / "ViT-B-32.pt"
    scorer = ClipScorer(ClipConfig(weights=str(missing)), log=lambda _: None)
    with pytest.raises(ClipUnavailable, match="nowhere/ViT-B-32.pt"):
        scorer.load()


def test_a_broken_checkpoint_is_reported(open_clip, tmp_path):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(ClipUnavailable, match="broken.pt"):
        ClipScorer(ClipConfig(model=TINY, pretrained="", weights=str(broken)), log=lambda _: None).load()


def test_unknown_architecture_and_tag(open_clip):
    with pytest.raises(ClipUnavailable, match="no architecture 'ViT-Q-99'"):
        ClipScorer(ClipConfig(model="ViT-Q-99"), log=lambda _: None).load()
    with pytest.raises(ClipUnavailable, match="openai"):  # the known tags are listed
        ClipScorer(ClipConfig(pretrained="no-such-tag"), log=lambda _: None).load()


def test_download_without_internet_fails_fast_and_says_what_to_do(open_clip, monkeypatch, tmp_path):
    from huggingface_hub import constants

    for variable in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setattr(constants, "ENDPOINT", "https://hub.invalid")  # never resolves, with or without internet
    scorer = ClipScorer(ClipConfig(cache_dir=str(tmp_path)), log=lambda _: None)  # an empty cache
    start = time.perf_counter()
    with pytest.raises(ClipUnavailable, match="clip_weights"):
        scorer.load()
    assert time.perf_counter() - start < 15


def test_a_local_file_takes_preprocessing_and_activation_from_its_tag(open_clip, monkeypatch, tmp_path):
    weights = tmp_path / "ViT-B-32.pt"
    weights.write_bytes(b"stand-in")
    seen = {}

    def fake_create(name, pretrained=None, **kwargs):
        seen.update(kwargs, name=name, pretrained=pretrained)
        raise RuntimeError("stop here")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", fake_create)
    with pytest.raises(ClipUnavailable, match="stop here"):
        ClipScorer(ClipConfig(weights=str(weights)), log=lambda _: None).load()
    assert seen["name"] == "ViT-B-32" and seen["pretrained"] == str(weights)
    assert seen["force_quick_gelu"] is True  # OpenAI's ViT-B-32 was trained with QuickGELU
    assert seen["image_mean"] == pytest.approx((0.48145466, 0.4578275, 0.40821073))
    seen.clear()
    with pytest.raises(ClipUnavailable):
        ClipScorer(ClipConfig(model="MobileCLIP-S1", pretrained="datacompdr", weights=str(weights)),
                   log=lambda _: None).load()
    assert seen["image_mean"] == (0.0, 0.0, 0.0) and seen["image_std"] == (1.0, 1.0, 1.0)


def test_concurrent_first_prompts_load_once(monkeypatch):
    import threading

    import fastsam_ros.prompts.clip as clip

    builds = []

    def slow_build(config):
        builds.append(config)
        time.sleep(0.2)
        return object(), None, None, None

    monkeypatch.setattr(clip, "_build", slow_build)
    scorer = ClipScorer(ClipConfig())
    threads = [threading.Thread(target=scorer.load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(builds) == 1 and scorer.loaded
