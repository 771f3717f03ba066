"""The lazy masks on real frames (the shared stand-in model and images; skipped without them).

The compiled float32 interpolation is not bit-exact PyTorch by design: these tests bound what that may change.
Every instance of every shared image must match ultralytics' ``process_mask`` (IoU >= 0.999), and the evaluation
of the selection rules must score the lazy masks as it scores ultralytics' own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from fastsam_ros.segmentation.instance_masks import InstanceMasks

torch = pytest.importorskip("torch")
ops = pytest.importorskip("ultralytics.utils.ops")

MIN_IOU = 0.999
EVAL_TOLERANCE = 0.002


def test_every_instance_on_the_shared_images_is_process_masks(standin_model: Path, sample_images: Path,
                                                               eval_data: Path) -> None:
    """At FastSAM's working point (conf 0.01, 100 instances: small and ragged masks too), on the sample frames and
    the COCO dev set: the same prototypes and coefficients through ``process_mask`` and through
    :class:`InstanceMasks`."""
    from ultralytics import FastSAM
    from ultralytics.models.fastsam import FastSAMPredictor

    recorded: list[tuple[Any, Any, tuple[int, int]]] = []

    class Recorder(FastSAMPredictor):
        def construct_result(self, pred: Any, img: Any, orig_img: Any, img_path: Any, proto: Any) -> Any:
            recorded.append((proto.clone(), pred.clone(), tuple(img.shape[2:])))  # boxes still network pixels
            return super().construct_result(pred, img, orig_img, img_path, proto)

    model = FastSAM(str(standin_model))
    paths = sorted(sample_images.glob("*.jpg")) + sorted((eval_data / "images").glob("*.jpg"))
    worst, instances = (1.0, ""), 0
    for path in paths:
        recorded.clear()
        model.predict(cv2.imread(str(path)), conf=0.01, iou=0.9, max_det=100, retina_masks=False, verbose=False,
                      predictor=Recorder)
        for proto, pred, shape in recorded:
            if not len(pred):
                continue
            eager = ops.process_mask(proto, pred[:, 6:], pred[:, :4].clone(), shape, upsample=True).numpy() > 0
            channels, ph, pw = proto.shape
            logits = (pred[:, 6:] @ proto.float().view(channels, -1)).view(-1, ph, pw).numpy()
            lazy = InstanceMasks.from_logits(logits, pred[:, :4].numpy(), shape).dense()
            union = (eager | lazy).reshape(len(eager), -1).sum(axis=1)
            iou = np.where(union > 0, (eager & lazy).reshape(len(eager), -1).sum(axis=1) / np.maximum(union, 1), 1)
            instances += len(eager)
            if iou.min() < worst[0]:
                worst = (float(iou.min()), f"{path.name} instance {int(iou.argmin())}")
    assert len(paths) > 100 and instances > 1000
    assert worst[0] >= MIN_IOU, f"IoU {worst[0]:.5f} with process_mask at {worst[1]}"


def test_the_evaluation_scores_lazy_masks_as_ultralytics_own(standin_model: Path, eval_data: Path) -> None:
    """``make eval``'s fastsam_ros figures (COCO dev set) with the lazy masks and with the masks ultralytics makes
    (its predictor outside :func:`deferred_masks`) differ by at most 0.002 per prompt kind."""
    from evaluation.evaluate import PROMPT_KINDS, iter_frames, rule_fastsam_ros, score_frame
    from fastsam_ros.segmentation.engine import EngineConfig, FastSAMEngine, segmentation_from_result

    engine = FastSAMEngine(EngineConfig(model=str(standin_model), backend="pytorch"))

    class EagerMasks:
        """The engine with ultralytics' ``process_mask`` masks (dense)."""

        @property
        def predictor(self) -> Any:
            return engine.predictor

        def segment_with_result(self, image: np.ndarray) -> tuple[Any, Any]:
            result = engine.predict_raw(image)
            return segmentation_from_result(result), result

    def figures(source: Any) -> dict[str, float]:
        rows = [row for frame in iter_frames(eval_data, source) for row in score_frame(
            frame, {"fastsam_ros": rule_fastsam_ros})]
        assert len(rows) > 300
        return {kind: float(np.mean([row["fastsam_ros"][kind] for row in rows])) for kind in PROMPT_KINDS}

    lazy, eager = figures(engine), figures(EagerMasks())
    assert all(abs(lazy[kind] - eager[kind]) <= EVAL_TOLERANCE for kind in PROMPT_KINDS), (lazy, eager)
