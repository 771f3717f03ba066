"""Wire size of ``fastsam_ros/Instances`` per frame (lossless per-instance masks) on the sample images.

``python bench/bench_messages.py [--model M] [--images DIR]`` prints, per image: instances, serialized
bytes with masks, without masks (``publish_instance_masks: false``), and what a raw mono8 label image of
the same frame would take (which would lose every overlap).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import cv2

if __package__ in (None, ""):  # run as a script: make the checkout importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.shared_data import add_model_and_images

SAMPLES = ("bus.jpg", "zidane.jpg", "sa_8776.jpg")


def run(model: str, images: Path, names: tuple[str, ...] = SAMPLES) -> list[dict[str, Any]]:
    from fastsam_ros.engine import EngineConfig, FastSAMEngine
    from fastsam_ros.wire import instances_cdr

    engine = FastSAMEngine(EngineConfig(model=model))
    rows = []
    for name in names:
        image = cv2.imread(str(images / name))
        if image is None:
            continue
        segmentation = engine.segment(image)
        with_masks = len(instances_cdr(segmentation, 0, 0, "", with_masks=True))
        boxes_only = len(instances_cdr(segmentation, 0, 0, "", with_masks=False))
        height, width = image.shape[:2]
        rows.append({"image": name, "size": f"{width}x{height}", "instances": len(segmentation),
                     "bytes_with_masks": with_masks, "bytes_boxes_only": boxes_only,
                     "mono8_label_image_bytes": width * height})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_and_images(parser)
    args = parser.parse_args(argv)
    print(f"{'image':<12} {'size':>9} {'instances':>9} {'with masks B':>12} {'boxes only B':>12} {'mono8 label B':>13}")
    for row in run(args.model, args.images):
        print(f"{row['image']:<12} {row['size']:>9} {row['instances']:>9} {row['bytes_with_masks']:>12} "
              f"{row['bytes_boxes_only']:>12} {row['mono8_label_image_bytes']:>13}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
