"""CLIP cost per text prompt: ``python bench/bench_text.py`` (``--model``, ``--instances``, ``--repeats``).

A synthetic 640x480 frame with 50 instances, answered by :func:`fastsam_ros.text.rank_by_text` with a
:class:`fastsam_ros.text.ClipScorer` built with random weights (the architecture, hence the cost, of the real
model; no weights exist on this machine). Cases:

- first call: the first text prompt of the process (imports open_clip, builds the model, encodes text and crops);
- new frame, cached text: the same phrase on a new frame (crops and image encoder only);
- new frame, new text: a new phrase on a new frame;
- same frame, new text: another phrase on a frame already scored (its image embeddings are cached);
- crops only: cutting the 50 masked crops out of the frame (part of every new-frame case).

``run()`` returns the figures as a dict (milliseconds, p50/p95 over ``repeats``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.bench_selection import synthetic_segmentation
from fastsam_ros.text import ClipConfig, ClipScorer, make_crops, rank_by_text
from fastsam_ros.types import Prompt, Segmentation


def synthetic_frame(
    n_instances: int = 50, image_shape: tuple[int, int] = (480, 640), seed: int = 0
) -> tuple[np.ndarray, Segmentation]:
    """A smooth random image and ``n_instances`` ellipses of many sizes, all large enough to be scored."""
    height, width = image_shape
    rng = np.random.default_rng(seed)
    image = cv2.resize(rng.integers(0, 256, (height // 16, width // 16, 3), dtype=np.uint8), (width, height))
    segmentation = synthetic_segmentation(n_instances, image_shape, seed, large=3, large_scale=0.4, min_axis=8)
    return image, segmentation


def _new_frame(segmentation: Segmentation) -> Segmentation:
    """The same instances as a new frame's result (a distinct object: nothing cached for it)."""
    return Segmentation(
        masks=segmentation.masks, boxes=segmentation.boxes, scores=segmentation.scores,
        geometry=segmentation.geometry,
    )


def _ms(samples: list[float]) -> dict:
    values = np.asarray(samples) * 1000.0
    return {"p50_ms": float(np.percentile(values, 50)), "p95_ms": float(np.percentile(values, 95)), "n": len(values)}


def run(model: str = "ViT-B-32", pretrained: str = "openai", instances: int = 50, repeats: int = 3) -> dict:
    image, segmentation = synthetic_frame(instances)
    scorer = ClipScorer(ClipConfig(model=model, pretrained=pretrained, random_weights=True))

    def prompt(seg: Segmentation, text: str) -> float:
        start = time.perf_counter()
        result = rank_by_text(seg, image, Prompt(text=text), scorer, min_text_score=-1.0)
        elapsed = time.perf_counter() - start
        assert result.ok, result.reason
        return elapsed

    first = prompt(segmentation, "the red mug")
    load_s = scorer.load_seconds or 0.0
    scored = scorer.image_encodes
    cached_text = [prompt(_new_frame(segmentation), "the red mug") for _ in range(repeats)]
    new_text = [prompt(_new_frame(segmentation), f"a blue chair number {k}") for k in range(repeats)]
    frame = _new_frame(segmentation)
    prompt(frame, "a green bottle")
    same_frame = [prompt(frame, f"a wooden table number {k}") for k in range(max(repeats, 5))]
    crops = []
    for _ in range(max(repeats, 5)):
        start = time.perf_counter()
        make_crops(image, segmentation, range(len(segmentation)))
        crops.append(time.perf_counter() - start)
    import torch

    return {
        "model": model, "instances": instances, "scored_crops": scored, "image_shape": list(segmentation.image_shape),
        "device": scorer.config.device, "torch_threads": torch.get_num_threads(),
        "first_call": {**_ms([first]), "load_ms": load_s * 1000.0},
        "new_frame_cached_text": _ms(cached_text),
        "new_frame_new_text": _ms(new_text),
        "same_frame_new_text": _ms(same_frame),
        "crops_only": _ms(crops),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ViT-B-32")
    parser.add_argument("--pretrained", default="openai", help="the tag whose preprocessing to use")
    parser.add_argument("--instances", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the dict as JSON instead of a table")
    args = parser.parse_args(argv)
    results = run(args.model, args.pretrained, args.instances, args.repeats)
    if args.json:
        print(json.dumps(results, indent=2))
        return 0
    print(f"{results['model']} (random weights) on {results['device']}, {results['torch_threads']} torch threads: "
          f"{results['instances']} instances on a {results['image_shape'][1]}x{results['image_shape'][0]} frame, "
          f"{results['scored_crops']} crops scored")
    print(f"{'case':<28}{'p50 ms':>10}{'p95 ms':>10}{'n':>4}")
    for case in ("first_call", "new_frame_cached_text", "new_frame_new_text", "same_frame_new_text", "crops_only"):
        row = results[case]
        print(f"{case:<28}{row['p50_ms']:>10.1f}{row['p95_ms']:>10.1f}{row['n']:>4}")
    load_ms = results["first_call"]["load_ms"]
    print(f"(first call includes importing open_clip and building the model: {load_ms:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
