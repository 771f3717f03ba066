"""``make eval-track``: the moving-camera benchmark through the node, with real messages.

Starts the fastsam node, plays every sequence of :func:`evaluation.evaluate_track.plan_sequences` as a camera
(one frame at a time: each frame is segmented before the next is sent, so none is dropped), clicks the target
on frame 0 twice as persistent prompts, one following (``follow``) and one with ``reapply`` (``pixel_fixed``),
scores each answer against the moved ground truth, and runs the reference methods on the node's own
`instances` (masks included). Then the same for the hard crossings
(:func:`evaluation.evaluate_track.plan_hard_crossings`), whose targets are chosen among those the click
selects on the node's own frame 0. Prints the table with the targets' pass/fail and writes
the JSON report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.evaluate_track import (
    DEFAULT_SEQUENCES,
    FRAMES,
    HARD_SEQUENCES,
    TrackSequence,
    check_targets,
    click_finds_target,
    first_frame,
    format_table,
    oracle_iou,
    plan_hard_crossings,
    plan_sequences,
    reference_followers,
    summarise,
    wrong_object,
)
from fastsam_ros.prompts.selection import select
from fastsam_ros.ros.conversions import mask_from_msg
from fastsam_ros.segmentation.masks import MaskGeometry, iou
from fastsam_ros.types import Segmentation
from harness.client import FastSAMClient
from harness.node_process import NodeProcess, private_ros_network, stamp_of

FOLLOW, FIXED = "follow", "pixel_fixed"
FIRST_STAMP = 1_700_000_000_000_000_000
FRAME_STEP_NS = 33_000_000


def segmentation_from_instances(msg: Any) -> Segmentation:
    """The node's `instances` as a core :class:`Segmentation` at image resolution (identity geometry)."""
    shape = (msg.height, msg.width)
    masks = np.stack([mask_from_msg(i.mask, shape) for i in msg.instances]) if msg.instances else np.zeros(
        (0, *shape), dtype=bool)
    return Segmentation(
        masks=masks, boxes=np.array([[i.box.x1, i.box.y1, i.box.x2, i.box.y2] for i in msg.instances],
                                    dtype=np.float32).reshape(-1, 4),
        scores=np.array([i.score for i in msg.instances], dtype=np.float32),
        geometry=MaskGeometry(shape, shape),
    )


def _answer_mask(selection: Any, shape: tuple[int, int]) -> np.ndarray:
    union = np.zeros(shape, dtype=bool)
    for obj in selection.objects:
        union |= mask_from_msg(obj.mask, shape)
    return union


def play(client: FastSAMClient, sequence: TrackSequence, first_stamp: int, timeout: float
         ) -> tuple[dict[str, list[float]], dict[str, list[bool]]]:
    """Per method, the IoU of its answer with the ground truth on every frame of ``sequence``, and whether the
    answer was the wrong object (:func:`evaluation.evaluate_track.wrong_object`)."""
    followers, _ = reference_followers()
    scores: dict[str, list[float]] = {name: [] for name in (FOLLOW, FIXED, *followers, "oracle")}
    wrong: dict[str, list[bool]] = {name: [] for name in scores}

    for index, (frame, truth, others) in enumerate(sequence.frames()):
        def score(name: str, answer: np.ndarray, truth: np.ndarray = truth, others: list = others) -> None:
            scores[name].append(iou(answer, truth))
            wrong[name].append(wrong_object(answer, truth, others))
        stamp = first_stamp + index * FRAME_STEP_NS
        client.publish_image(frame, stamp)
        instances = client.wait_for("instances", lambda m, s=stamp: stamp_of(m) == s, timeout)
        if instances is None:
            raise RuntimeError(f"{sequence.name}: frame {index} was not segmented within {timeout:g} s")
        if index == 0:
            for prompt_id in (FOLLOW, FIXED):
                client.prompt_pub.publish(client.prompt(prompt_id, stamp, points=[sequence.click], persistent=True,
                                                        reapply=prompt_id == FIXED))
        for prompt_id in (FOLLOW, FIXED):
            answer = client.wait_for("selection", lambda m, s=stamp, p=prompt_id: m.prompt_id == p
                                     and stamp_of(m) == s, timeout)
            if answer is None:
                raise RuntimeError(f"{sequence.name}: no {prompt_id} answer on frame {index}")
            score(prompt_id, _answer_mask(answer, truth.shape))
        segmentation = segmentation_from_instances(instances)
        for name, follower in followers.items():
            (answer,) = follower.answer(segmentation, frame, [sequence.prompt], lambda p, s=segmentation: select(s, p))
            score(name, answer.union_mask(truth.shape) if answer.ok else np.zeros(truth.shape, dtype=bool))
        scores["oracle"].append(oracle_iou(list(segmentation.masks.dense()), truth))
        wrong["oracle"].append(False)
    for prompt_id in (FOLLOW, FIXED):
        client.prompt_pub.publish(client.prompt(prompt_id, clear=True))
    for name in ("instances", "selection"):  # keep memory flat over hundreds of frames
        client.received[name].clear()
    return scores, wrong


def segment_once(client: FastSAMClient, frame: np.ndarray, stamp: int, timeout: float) -> Segmentation:
    """The node's instances of one frame."""
    client.publish_image(frame, stamp)
    instances = client.wait_for("instances", lambda m: stamp_of(m) == stamp, timeout)
    if instances is None:
        raise RuntimeError(f"a frame was not segmented within {timeout:g} s")
    return segmentation_from_instances(instances)


def run(data: Path, model: str, out: Path, count: int = DEFAULT_SEQUENCES, timeout: float = 120.0,
        domain_id: int | None = None, progress: bool = True, hard_count: int = HARD_SEQUENCES) -> dict[str, Any]:
    started = time.monotonic()
    domain_id = private_ros_network(domain_id)
    sequences = plan_sequences(data, count)
    out.parent.mkdir(parents=True, exist_ok=True)
    node = NodeProcess(out.with_suffix(".node.log"), namespace="track", model=model, domain_id=domain_id)
    client = FastSAMClient(namespace="track", domain_id=domain_id, outputs=("instances", "selection"))
    per_sequence: dict[str, dict[str, list[float]]] = {}
    wrong: dict[str, dict[str, list[bool]]] = {}
    hard: list[TrackSequence] = []
    try:
        if not client.wait_for_connections(node, timeout=300):
            raise SystemExit(f"the node did not come up:\n{node.log()}")
        # The hard crossings keep only targets the click selects on the node's frame 0 (probed before any play).
        stamps = itertools.count(FIRST_STAMP, FRAMES * 10 * FRAME_STEP_NS)
        hard = plan_hard_crossings(data, hard_count, lambda s: click_finds_target(
            s, segment_once(client, first_frame(s)[0], next(stamps), timeout)))
        for number, sequence in enumerate(sequences + hard):
            scores, wrong[sequence.name] = play(client, sequence, next(stamps), timeout)
            per_sequence[sequence.name] = scores
            kind = " (hard crossing)" if sequence.hard else " (crossing)" if sequence.crossing else ""
            if progress:
                print(f"[{number + 1}/{len(sequences) + len(hard)}] {sequence.name}{kind}: "
                      + ", ".join(f"{m} {np.mean(v):.3f}" for m, v in scores.items()), file=sys.stderr, flush=True)
    finally:
        client.close()
        exit_code = node.stop()
    _, note = reference_followers()
    names = [s.name for s in sequences]
    report: dict[str, Any] = {
        "model": str(model), "data": str(data), "frames_per_sequence": FRAMES,
        "overall": summarise(per_sequence, names, wrong),
        "crossing": summarise(per_sequence, [s.name for s in sequences if s.crossing], wrong),
        "hard_crossing": summarise(per_sequence, [s.name for s in hard], wrong),
        "notes": [note] if note else [],
        "sequences": {name: {m: round(float(np.mean(v)), 4) for m, v in scores.items()}
                      for name, scores in per_sequence.items()},
        "node_exit_code": exit_code, "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    report["targets"] = check_targets(report)
    report["seconds"] = round(time.monotonic() - started, 1)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.eval_track", description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="YOLO-seg dataset folder with images/ and labels/")
    parser.add_argument("--model", required=True, help="FastSAM checkpoint or export")
    parser.add_argument("--out", type=Path, default=Path("out/eval-track.json"))
    parser.add_argument("--sequences", type=int, default=DEFAULT_SEQUENCES, help="how many sequences (one per image)")
    parser.add_argument("--hard-sequences", type=int, default=HARD_SEQUENCES,
                        help="how many hard crossings (one per image)")
    parser.add_argument("--domain-id", type=int, metavar="N", help="ROS domain (default: ROS_DOMAIN_ID, else random)")
    parser.add_argument("--quiet", action="store_true", help="no per-sequence progress lines")
    args = parser.parse_args(argv)
    report = run(args.data, args.model, args.out, args.sequences, domain_id=args.domain_id, progress=not args.quiet,
                 hard_count=args.hard_sequences)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(format_table(report))
    print(f"report in {args.out}")
    return 0 if report["node_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
