"""A burst of persistent prompts (issue 19): ``BURST`` published at once from one publisher, every one answered
(past ``max_persistent_prompts``: ``invalid``), and the node's frame latency while it answers the kept ones on every
frame, against the same frames with none, before and after, in one run."""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.stats import ratio, summarize

BURST = 300
ANSWER_WAIT_S = 60.0


def run(driver: Any, pixels: Any, click: tuple[float, float], rounds: int) -> dict[str, Any]:
    """``driver``: a :class:`bench.pipeline.Driver` on a running node; ``click``: a pixel on an instance."""
    from fastsam_ros.msg import Prompt
    from fastsam_ros.ros.conversions import BURST_QOS
    from harness.node_process import wait_until

    client = driver.client
    publisher = client.node.create_publisher(Prompt, f"{client.prefix}/prompt", BURST_QOS)  # a burst's queue
    try:
        wait_until(lambda: publisher.get_subscription_count() > 0, 10)
        without = [driver.frame(pixels)[0] for _ in range(rounds)]
        _, _, stamp = driver.frame(pixels)
        ids = [f"burst-{index:03d}" for index in range(BURST)]
        wanted = set(ids)
        before = {m.prompt_id for m in client.messages("selection")} & wanted
        started = time.monotonic()
        for prompt_id in ids:
            publisher.publish(client.prompt(prompt_id, stamp, points=[click], labels=[1], persistent=True))
        wait_until(lambda: len({m.prompt_id for m in client.messages("selection")} & wanted) == BURST,
                   ANSWER_WAIT_S)
        answered_s = time.monotonic() - started
        first: dict[str, Any] = {}
        for msg in client.messages("selection"):
            if msg.prompt_id in wanted and msg.prompt_id not in before:
                first.setdefault(msg.prompt_id, msg)
        statuses = [first[prompt_id].status for prompt_id in ids if prompt_id in first]
        with_prompts = [driver.frame(pixels)[0] for _ in range(rounds)]
        publisher.publish(client.prompt("", clear=True))
        time.sleep(0.5)
        after = [driver.frame(pixels)[0] for _ in range(rounds)]
    finally:
        client.node.destroy_publisher(publisher)
    baseline = summarize(without + after)
    kept = summarize(with_prompts)
    return {
        "published": BURST, "answered": len(first), "answered_in_s": round(answered_s, 2),
        "statuses": {status: statuses.count(status) for status in sorted(set(statuses))},
        "frame_ms_without": baseline, "frame_ms_with": kept,
        "frame_ms_without_before_after": [round(statistics.median(without), 2), round(statistics.median(after), 2)],
        "ratio": ratio(kept["p50"], baseline["p50"]),
    }
