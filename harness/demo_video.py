"""``make demo-video``: a clip made from a sample image, played through the node by ``video_source``, one click.

Renders a short clip of a camera panning, zooming and turning over a sample image (``evaluation.camera_motion``)
into ``OUT/clip.mp4``, starts the fastsam node and ``video_source`` playing that file, clicks once, as a
persistent prompt, on the first frame the node segments (at the pixel of its largest instance farthest from the
instance's edge), and writes the node's ``debug_image`` overlays as ``OUT/annotated.mp4``, one per segmented
frame, with each answer's status and track id in ``OUT/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import cv2

from evaluation.camera_motion import CameraPath
from evaluation.evaluate import farthest_inside
from fastsam_ros.ros.conversions import mask_from_msg
from fastsam_ros.ros.images import image_to_bgr
from fastsam_ros.video import VideoWriter
from harness.client import FastSAMClient
from harness.node_process import NodeProcess, private_ros_network, stamp_of

CLIP_IMAGE = "bus.jpg"
CLIP_FRAMES, CLIP_FPS, PLAY_RATE_HZ = 40, 10.0, 2.0  # played slower than recorded: every frame gets segmented on CPU
PROMPT_ID = "clicked"


def make_clip(image_path: Path, path: Path) -> CameraPath:
    """The clip: the camera pans 40 % of the frame width to the left, zooms to 1.2 and turns 3 degrees."""
    image = cv2.imread(str(image_path))
    if image is None:
        raise SystemExit(f"cannot read {image_path}")
    camera = CameraPath((image.shape[1], image.shape[0]), (256.0, 0.0), 1.2, 3.0, CLIP_FRAMES)
    writer = VideoWriter(path, CLIP_FPS)
    for index in range(CLIP_FRAMES):
        writer.write(camera.render(index, image))
    writer.close()
    return camera


def _click_for(instances: Any) -> tuple[float, float]:
    shape = (instances.height, instances.width)
    largest = max(instances.instances, key=lambda instance: instance.area)
    return farthest_inside(mask_from_msg(largest.mask, shape))


def run_demo(model: str, images: Path, out: Path, timeout: float = 120.0,
             domain_id: int | None = None) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    domain_id = private_ros_network(domain_id)
    clip = out / "clip.mp4"
    make_clip(images / CLIP_IMAGE, clip)
    node = NodeProcess(out / "node.log", namespace="demo_video", model=model, domain_id=domain_id)
    client = FastSAMClient(namespace="demo_video", domain_id=domain_id, outputs=("instances", "selection",
                                                                                "debug_image"))
    player = None
    summary: dict[str, Any] = {"model": model, "clip": str(clip), "clip_frames": CLIP_FRAMES,
                               "played_at_hz": PLAY_RATE_HZ}
    try:
        if not client.wait_for_connections(node, timeout=300):
            raise SystemExit(f"the node did not come up; see {out / 'node.log'}:\n{node.log()}")
        with open(out / "video_source.log", "w") as log:
            player = subprocess.Popen(
                [sys.executable, "-m", "fastsam_ros.ros.video_source", "--ros-args", "-r", "image:=/camera/image_raw",
                 "-r", "camera_info:=/camera/camera_info", "-p", f"source:={clip}", "-p", f"rate:={PLAY_RATE_HZ}"],
                stdout=log, stderr=subprocess.STDOUT)
        first = client.wait_for("instances", lambda m: len(m.instances) > 0, timeout)
        if first is None:
            raise SystemExit("the node segmented no frame of the clip with an instance in it")
        click = _click_for(first)
        client.prompt_pub.publish(client.prompt(PROMPT_ID, stamp_of(first), points=[click], persistent=True))
        summary.update(click=[round(v, 1) for v in click], first_stamp=stamp_of(first))
        if player.wait(timeout=CLIP_FRAMES / PLAY_RATE_HZ + timeout) != 0:
            raise SystemExit(f"video_source failed; see {out / 'video_source.log'}")
        time.sleep(2.0)  # the last frame's answer and overlay
    finally:
        if player is not None and player.poll() is None:
            player.kill()
        client.close()
        summary["node_exit_code"] = node.stop()
    answers = {stamp_of(m): m for m in client.messages("selection") if m.prompt_id == PROMPT_ID}
    overlays: dict[int, Any] = {}
    for msg in client.messages("debug_image"):  # one per stamp (the first frame also has the click's own)
        overlays[stamp_of(msg)] = msg
    writer = VideoWriter(out / "annotated.mp4", PLAY_RATE_HZ)
    for stamp in sorted(overlays):
        writer.write(image_to_bgr(overlays[stamp]))
    writer.close()
    frames = [{"stamp": stamp, "status": answers[stamp].status, "reason": answers[stamp].reason,
               "track_ids": [o.track_id for o in answers[stamp].objects]} for stamp in sorted(answers)]
    statuses = [frame["status"] for frame in frames]
    summary.update(frames_segmented=len(frames), annotated_frames=writer.frames,
                   statuses={status: statuses.count(status) for status in sorted(set(statuses))},
                   track_ids=sorted({i for frame in frames for i in frame["track_ids"]}), frames=frames)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="FastSAM-s.pt")
    parser.add_argument("--images", type=Path, required=True, help=f"the sample images (uses {CLIP_IMAGE})")
    parser.add_argument("--out", type=Path, default=Path("out/demo-video"))
    parser.add_argument("--domain-id", type=int, metavar="N")
    args = parser.parse_args(argv)
    summary = run_demo(args.model, args.images, args.out, domain_id=args.domain_id)
    print(f"clicked {summary['click']} on the first segmented frame; {summary['frames_segmented']} of "
          f"{summary['clip_frames']} clip frames segmented, answers {summary['statuses']}, track ids "
          f"{summary['track_ids']}; annotated video {args.out / 'annotated.mp4'}")
    return 0 if summary["node_exit_code"] == 0 and summary["annotated_frames"] else 1


if __name__ == "__main__":
    sys.exit(main())
