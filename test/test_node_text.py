"""Text prompts through the node with a real open_clip model (random weights loaded from a local checkpoint).

No CLIP weights exist on these machines, so scores mean nothing here; what is tested is the real path:
``clip_weights`` loading, the ``prompt/text`` topic, text in ``Prompt`` and in the service.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from ros_harness import NodeProcess, Probe, stamp_of, wait_until

FRAME = np.random.default_rng(11).integers(0, 256, (240, 320, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def clip_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    open_clip = pytest.importorskip("open_clip", reason="open_clip_torch is not installed")
    import torch

    model = open_clip.create_model("ViT-S-32")  # the smallest ViT in open_clip: fast to build and run
    path = tmp_path_factory.mktemp("clip") / "vit-s-32-random.pt"
    torch.save(model.state_dict(), path)
    return path


@pytest.fixture(scope="module")
def probe(tiny_model: Path, clip_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("text") / "node.log"
    node = NodeProcess(log, namespace="txt", model=tiny_model, imgsz=320, clip_model="ViT-S-32",
                       clip_pretrained="", clip_weights=str(clip_checkpoint), clip_load_at_configure=True,
                       min_text_score=-1.0)
    probe = Probe(namespace="txt")
    try:
        assert probe.wait_for_connections(node, timeout=120), node.log()
        probe.publish_image(FRAME, 7_000_000_000)
        assert probe.wait_for("instances", lambda m: stamp_of(m) == 7_000_000_000) is not None, node.log()
        yield probe
    finally:
        probe.close()
        assert node.stop() == 0, node.log()


def test_text_topic_selects_the_best_matching_instance(probe: Probe) -> None:
    from std_msgs.msg import String

    publisher = probe.node.create_publisher(String, "/txt/prompt/text", 10)
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 20)
    time.sleep(0.5)  # discovery completes both ways a moment after matching
    publisher.publish(String(data="a red mug"))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "text", timeout=60)
    assert answer is not None and answer.status == "ok", answer
    assert stamp_of(answer) == 7_000_000_000 and len(answer.objects) == 1
    assert -1.0 <= answer.objects[0].score <= 1.0


def test_text_with_a_box_in_the_prompt_and_the_service(probe: Probe) -> None:
    from fastsam_ros.srv import Segment

    probe.prompt_pub.publish(probe.prompt("mug-in-box", text="a mug", boxes=[(0.0, 0.0, 320.0, 240.0)]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "mug-in-box", timeout=60)
    assert answer is not None and answer.status == "ok", answer  # min_text_score -1: every instance qualifies
    for obj in answer.objects:
        assert obj.box.x2 <= 320.0 and obj.box.y2 <= 240.0
    response = probe.call(Segment, "/txt/segment", Segment.Request(prompt=probe.prompt("svc-text", text="a dog")), 60)
    assert response is not None and response.selection.status == "ok"
