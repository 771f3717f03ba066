"""``make demo``: the node on sample images played as a camera, with clicks, boxes and background points.

Starts the fastsam node from the launch file's node description, publishes each image that the
prompt file names as a camera frame, sends its prompts (single foreground points as clicks on
``prompt/point``, the rest on ``prompt``), saves for each ``ok`` answer the node's ``debug_image`` overlay
of that answer and its mask, and writes a latency summary, then stops the node and exits.

Pairing an overlay with its prompt: the node publishes the frame's own overlay (no prompt) and one per
answered prompt, all with the frame's stamp, from different threads. The demo sends one prompt at a time
and saves the first overlay with the frame's stamp, received after the prompt was sent, that fills the
answer's own mask in the highlight colour (``harness.overlay_check``): never the frame's overlay, never the
previous prompt's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from fastsam_ros.prompts.prompt_file import load_prompts
from fastsam_ros.types import FOREGROUND, Prompt
from harness.client import FastSAMClient
from harness.node_process import NodeProcess, private_ros_network, stamp_of
from harness.overlay_check import shows_selection

CLICK_ID = "click"  # the prompt id the node gives to clicks on prompt/point (and every GUI click)


def _is_click(prompt: Prompt) -> bool:
    return len(prompt.points) == 1 and not prompt.boxes and not prompt.text and prompt.labels in ((), (FOREGROUND,))


def _send(client: FastSAMClient, prompt: Prompt, stamp: int) -> None:
    """Publish one prompt for frame ``stamp`` (single foreground points as clicks, like an image viewer)."""
    if _is_click(prompt):
        from geometry_msgs.msg import PointStamped

        click = PointStamped()
        click.header.stamp.sec, click.header.stamp.nanosec = divmod(stamp, 1_000_000_000)
        click.point.x, click.point.y = prompt.points[0]
        client.point_pub.publish(click)
        return
    client.prompt_pub.publish(client.prompt(prompt.id, stamp, points=list(prompt.points), labels=list(prompt.labels),
                                            boxes=list(prompt.boxes), text=prompt.text))


def _answer_mask(answer: Any, image_shape: tuple[int, int]) -> np.ndarray:
    """The union of the answer's objects as an ``(H, W)`` bool mask, decoded from the message."""
    from fastsam_ros.ros.conversions import mask_from_msg

    union = np.zeros(image_shape, dtype=bool)
    for obj in answer.objects:
        union |= mask_from_msg(obj.mask, image_shape)
    return union


def _overlay_for(client: FastSAMClient, start: int, stamp: int, frame: np.ndarray, mask: np.ndarray,
                 timeout: float) -> np.ndarray | None:
    """The first ``debug_image`` from index ``start`` on with ``stamp`` that shows ``mask`` selected, as BGR."""
    from fastsam_ros.ros.images import image_to_bgr

    deadline = time.monotonic() + timeout
    checked = start
    while True:
        overlays = client.messages("debug_image")
        for msg in overlays[checked:]:
            if stamp_of(msg) == stamp:
                pixels = image_to_bgr(msg)
                if shows_selection(pixels, frame, mask):
                    return pixels
        checked = len(overlays)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        client.wait_for_nth("debug_image", checked, timeout=remaining)  # wakes on the next overlay


def run_demo(model: str, images: Path, prompts: Path, out: Path, timeout: float = 60.0,
             domain_id: int | None = None) -> dict[str, Any]:
    """Play the images, answer their prompts, save overlays and masks; ``domain_id`` None keeps ROS_DOMAIN_ID."""
    out.mkdir(parents=True, exist_ok=True)
    domain_id = private_ros_network(domain_id)
    plan = load_prompts(prompts)
    frames = [(path, plan.for_image(path.name)) for path in sorted(images.iterdir())]
    frames = [(path, listed) for path, listed in frames if listed]
    if not frames:
        raise SystemExit(f"none of the images in {images} has prompts in {prompts}")
    node = NodeProcess(out / "node.log", namespace="demo", model=model, domain_id=domain_id)
    client = FastSAMClient(namespace="demo", domain_id=domain_id)
    summary: dict[str, Any] = {"model": model, "ros_domain_id": domain_id, "images": []}
    try:
        if not client.wait_for_connections(node, timeout=120):
            raise SystemExit(f"the node did not come up; see {out / 'node.log'}:\n{node.log()}")
        for index, (path, listed) in enumerate(frames):
            pixels = cv2.imread(str(path))
            stamp = 1_700_000_000_000_000_000 + index * 100_000_000
            sent = time.monotonic()
            client.publish_image(pixels, stamp)
            instances = client.wait_for("instances", lambda m, s=stamp: stamp_of(m) == s, timeout)
            if instances is None:
                raise SystemExit(f"no instances for {path.name}; see {out / 'node.log'}")
            entry = {"image": path.name, "instances": len(instances.instances),
                     "inference_ms": round(instances.inference_ms, 1),
                     "image_to_instances_ms": round((time.monotonic() - sent) * 1000, 1), "prompts": []}
            for prompt in listed:
                answer_id = CLICK_ID if _is_click(prompt) else prompt.id
                mine = lambda m, s=stamp, a=answer_id: stamp_of(m) == s and m.prompt_id == a  # noqa: E731
                answers_before, overlays_before = client.count("selection", mine), client.count("debug_image")
                for stale in (out / f"{path.stem}_{prompt.id}.png", out / f"{path.stem}_{prompt.id}_mask.png"):
                    stale.unlink(missing_ok=True)  # an earlier run's files would contradict this answer
                asked = time.monotonic()
                _send(client, prompt, stamp)
                answer = client.wait_for_nth("selection", answers_before, mine, timeout)
                if answer is None:
                    raise SystemExit(f"prompt {prompt.id!r} on {path.name} was not answered")
                latency = (time.monotonic() - asked) * 1000
                record = {"id": prompt.id, "sent_as": "click" if _is_click(prompt) else "prompt",
                          "status": answer.status, "reason": answer.reason, "objects": len(answer.objects),
                          "latency_ms": round(latency, 1), "overlay": None}
                if answer.status == "ok":
                    mask = _answer_mask(answer, pixels.shape[:2])
                    overlay = _overlay_for(client, overlays_before, stamp, pixels, mask, timeout=10)
                    cv2.imwrite(str(out / f"{path.stem}_{prompt.id}_mask.png"), mask.astype(np.uint8) * 255)
                    if overlay is not None:
                        record["overlay"] = f"{path.stem}_{prompt.id}.png"
                        cv2.imwrite(str(out / record["overlay"]), overlay)
                entry["prompts"].append(record)
            summary["images"].append(entry)
    finally:
        client.close()
        summary["node_exit_code"] = node.stop()
    latencies = [p["latency_ms"] for image in summary["images"] for p in image["prompts"]]
    inference = [image["inference_ms"] for image in summary["images"]]
    summary["prompt_latency_ms_median"] = round(statistics.median(latencies), 1)
    summary["inference_ms_median"] = round(statistics.median(inference), 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    return summary


def _print(summary: dict[str, Any], out: Path) -> None:
    print(f"{'image':<12} {'instances':>9} {'inference ms':>12} {'prompt':<16} {'sent as':<7} {'status':<10} "
          f"{'answer ms':>9}")
    for image in summary["images"]:
        for n, prompt in enumerate(image["prompts"]):
            head = (f"{image['image']:<12} {image['instances']:>9} {image['inference_ms']:>12}" if n == 0
                    else " " * 35)
            print(f"{head} {prompt['id']:<16} {prompt['sent_as']:<7} {prompt['status']:<10} {prompt['latency_ms']:>9}")
    print(f"median inference {summary['inference_ms_median']} ms, median prompt answer "
          f"{summary['prompt_latency_ms_median']} ms (from the cache, no re-inference); overlays and summary.json "
          f"in {out}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="FastSAM-s.pt")
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--prompts", type=Path, required=True)
    parser.add_argument("--out", type=Path, default=Path("out/demo"))
    parser.add_argument("--domain-id", type=int, metavar="N",
                        help="ROS domain of the node and the demo (default: ROS_DOMAIN_ID, else a random 1-100)")
    args = parser.parse_args(argv)
    summary = run_demo(args.model, args.images, args.prompts, args.out, domain_id=args.domain_id)
    _print(summary, args.out)
    missing = [f"{image['image']}: {p['id']}" for image in summary["images"] for p in image["prompts"]
               if p["status"] == "ok" and p["overlay"] is None]
    if missing:
        print(f"no debug_image showed the selection of {', '.join(missing)}", file=sys.stderr)
    if summary["node_exit_code"] != 0:
        print(f"the node exited with {summary['node_exit_code']}; see {args.out / 'node.log'}", file=sys.stderr)
    return 1 if missing or summary["node_exit_code"] != 0 else 0


if __name__ == "__main__":
    sys.exit(main())
