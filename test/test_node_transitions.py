"""Correct under change: lifecycle transitions during frames and calls, tracker resets, unstamped and tiny frames,
bursts of prompts, and every answer checked against the fake engine's hand-made masks.

A robot acting on an ``ok`` answer about the wrong (or a stale) object is the worst failure: each test here drives the
node through a change and asserts that no such answer comes.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from fake_engine import SLOW_FRAME_S, SLOW_PIXEL

from ros_harness import FAKE_NODE, Probe, running_node, set_parameter, stamp_of, transition, wait_until

NODE = "/tr/fastsam"
SHAPE = (60, 80)
SQUARE = (slice(20, 40), slice(20, 40))
CENTRE = (30.0, 30.0)
RED, GREEN = (0, 0, 200), (0, 200, 0)  # BGR: two scenes with an object at the same place


def scene(colour: tuple[int, int, int], corner: tuple[int, int, int] | None = None) -> np.ndarray:
    frame = np.zeros((*SHAPE, 3), dtype=np.uint8)
    frame[SQUARE] = colour
    if corner is not None:
        frame[0, 0] = corner
    return frame


@pytest.fixture(scope="module")
def node_and_probe(tmp_path_factory: pytest.TempPathFactory):
    log = tmp_path_factory.mktemp("transitions") / "node.log"
    with running_node(log, "tr", program=FAKE_NODE, model="fake.pt", warmup=False) as node_and_probe:
        yield node_and_probe


@pytest.fixture()
def probe(node_and_probe) -> Probe:
    return node_and_probe[1]


_stamps = iter(range(100_000_000_000, 999_000_000_000, 1_000_000_000))


def segmented(probe: Probe, frame: np.ndarray) -> int:
    stamp = next(_stamps)
    probe.publish_image(frame, stamp)
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp) is not None, f"frame {stamp} not segmented"
    return stamp


def answers(probe: Probe, prompt_id: str, stamp: int | None = None) -> list:
    return [m for m in probe.messages("selection") if m.prompt_id == prompt_id
            and (stamp is None or stamp_of(m) == stamp)]


def reactivate(probe: Probe) -> None:
    assert transition(probe, NODE, "deactivate")
    assert transition(probe, NODE, "activate")
    assert wait_until(lambda: probe.image_pub.get_subscription_count() > 0, 20)
    time.sleep(0.3)


def test_a_prompt_for_the_newest_frame_after_reactivation_is_not_answered_on_a_frame_from_before(
        probe: Probe) -> None:
    segmented(probe, scene(RED))
    reactivate(probe)
    probe.prompt_pub.publish(probe.prompt("newest", points=[CENTRE]))  # stamp 0: the newest frame
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "newest")
    assert answer is not None and answer.status == "frame_not_available", answer
    assert "since the node was activated" in answer.reason
    stamp = segmented(probe, scene(GREEN))
    probe.prompt_pub.publish(probe.prompt("newest-again", points=[CENTRE]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "newest-again")
    assert answer.status == "ok" and stamp_of(answer) == stamp


def test_a_followed_prompt_never_answers_ok_with_an_object_of_a_new_stream(probe: Probe) -> None:
    first = segmented(probe, scene(RED))
    probe.prompt_pub.publish(probe.prompt("follow", first, points=[CENTRE], persistent=True))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "follow")
    assert answer.status == "ok" and answer.objects[0].track_id > 0
    reactivate(probe)  # the tracker starts afresh: its ids now name the new scene's objects
    stamps = [segmented(probe, scene(GREEN)) for _ in range(4)]
    for stamp in stamps:
        later = probe.wait_for("selection", lambda m, s=stamp: m.prompt_id == "follow" and stamp_of(m) == s)
        assert later is not None and later.status == "no_match", later
        assert "tracker was reset" in later.reason
    probe.prompt_pub.publish(probe.prompt("follow", clear=True))


def test_a_service_call_waiting_for_a_frame_is_answered_when_the_node_deactivates(probe: Probe) -> None:
    from fastsam_ros.srv import Segment

    stamp = next(_stamps)
    client = probe.node.create_client(Segment, f"{NODE.rsplit('/', 1)[0]}/segment")
    assert client.wait_for_service(timeout_sec=10)
    probe.publish_image(scene(RED, corner=SLOW_PIXEL), stamp)  # segmented for SLOW_FRAME_S
    time.sleep(0.5)
    request = Segment.Request(prompt=probe.prompt("during", stamp, points=[CENTRE]))
    future = client.call_async(request)  # waits for the frame in flight
    time.sleep(0.3)
    assert transition(probe, NODE, "deactivate")
    assert wait_until(future.done, 5), "a call in flight at deactivate must be answered, not left waiting"
    assert future.result().selection.status == "frame_not_available"
    probe.node.destroy_client(client)
    time.sleep(SLOW_FRAME_S)  # the slow frame finishes
    assert transition(probe, NODE, "activate")
    assert not [m for m in probe.messages("instances") if stamp_of(m) == stamp], "no output while inactive"


def test_a_frame_running_through_deactivate_sends_nothing_and_holds_activate_and_cleanup_off(
        probe: Probe) -> None:
    watch_frame = segmented(probe, scene(RED))
    probe.prompt_pub.publish(probe.prompt("watch", watch_frame, points=[CENTRE], persistent=True))
    assert probe.wait_for("selection", lambda m: m.prompt_id == "watch") is not None
    stamp = next(_stamps)
    published = time.monotonic()
    probe.publish_image(scene(RED, corner=SLOW_PIXEL), stamp)
    time.sleep(0.5)
    assert transition(probe, NODE, "deactivate"), "deactivate succeeds: outputs stop, the frame runs on"
    assert time.monotonic() - published < SLOW_FRAME_S, "deactivate waited (bounded) for less than the frame"
    assert not transition(probe, NODE, "activate"), "never two frames on one engine"
    assert not transition(probe, NODE, "cleanup"), "never free the model under a running frame"
    time.sleep(max(0.0, published + SLOW_FRAME_S + 1.0 - time.monotonic()))
    assert not [m for m in probe.messages("instances") + probe.messages("selection") if stamp_of(m) == stamp]
    assert transition(probe, NODE, "activate")
    assert wait_until(lambda: probe.image_pub.get_subscription_count() > 0, 20)
    time.sleep(0.3)
    probe.prompt_pub.publish(probe.prompt("watch", clear=True))


def test_an_unstamped_frame_is_stamped_with_its_arrival_on_every_output_and_can_be_prompted(probe: Probe) -> None:
    before = time.time_ns()
    probe.publish_image(scene(RED), 0)
    instances = probe.wait_for("instances", lambda m: stamp_of(m) >= before)
    assert instances is not None, "an unstamped frame is segmented"
    stamp = stamp_of(instances)
    probe.prompt_pub.publish(probe.prompt("unstamped", stamp, points=[CENTRE]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "unstamped")
    assert answer.status == "ok" and stamp_of(answer) == stamp


def test_mask_and_debug_image_stamps_never_go_backwards(probe: Probe) -> None:
    older = segmented(probe, scene(RED))
    newer = segmented(probe, scene(RED))
    probe.prompt_pub.publish(probe.prompt("now", newer, points=[CENTRE]))
    assert probe.wait_for("mask", lambda m: stamp_of(m) == newer) is not None
    probe.prompt_pub.publish(probe.prompt("then", older, points=[CENTRE]))
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "then")
    assert answer.status == "ok" and stamp_of(answer) == older, "the answer itself carries its frame's stamp"
    time.sleep(0.5)
    for topic in ("mask", "debug_image"):
        stamps = [stamp_of(m) for m in probe.messages(topic) if stamp_of(m) in (older, newer)]
        assert stamps == sorted(stamps) and stamps[-1] == newer, f"{topic} went back in time: {stamps}"


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (2, 2), (1, 1), (3, 7), (7, 3), (1, 2), (600, 2)])
def test_tiny_and_extreme_frames_are_segmented_tracked_and_answered(probe: Probe, shape: tuple[int, int]) -> None:
    frame = np.zeros((*shape, 3), dtype=np.uint8)
    frame[:] = RED  # one instance: the whole frame
    # Re-applied: a followed prompt gives no_match on a frame of another size (the tracker starts afresh).
    probe.prompt_pub.publish(probe.prompt("corner", points=[(0.0, 0.0)], persistent=True, reapply=True))
    time.sleep(0.3)
    stamp = next(_stamps)
    probe.publish_image(frame, stamp)
    answer = probe.wait_for("selection", lambda m: m.prompt_id == "corner" and stamp_of(m) == stamp, timeout=10)
    assert answer is not None, f"a {shape} frame got no answer"
    assert answer.status == "ok", answer.reason
    assert probe.wait_for("instances", lambda m: stamp_of(m) == stamp, timeout=5) is not None
    probe.prompt_pub.publish(probe.prompt("corner", clear=True))


def test_a_burst_of_persistent_prompts_is_answered_in_full_past_the_limit_invalid(probe: Probe) -> None:
    from fastsam_ros.msg import Prompt
    from fastsam_ros.ros.conversions import BURST_QOS

    probe.prompt_pub.publish(probe.prompt("", clear=True))  # room for exactly max_persistent_prompts
    stamp = segmented(probe, scene(RED))
    publisher = probe.node.create_publisher(Prompt, "/tr/prompt", BURST_QOS)  # a burst needs a deep queue
    assert wait_until(lambda: publisher.get_subscription_count() > 0, 10)
    ids = [f"burst-{i:03d}" for i in range(300)]
    for prompt_id in ids:
        publisher.publish(probe.prompt(prompt_id, stamp, points=[CENTRE], persistent=True))
    wait_until(lambda: len({m.prompt_id for m in probe.messages("selection") if m.prompt_id in ids}) == 300, 30)
    first = {}
    for m in probe.messages("selection"):
        if m.prompt_id in ids:
            first.setdefault(m.prompt_id, m)
    assert len(first) == 300, f"only {len(first)} of 300 prompts were answered"
    statuses = [first[prompt_id].status for prompt_id in ids]
    assert statuses == ["ok"] * 64 + ["invalid"] * 236, "the first 64 (max_persistent_prompts) kept, the rest refused"
    assert "max_persistent_prompts" in first[ids[-1]].reason
    publisher.publish(probe.prompt("", clear=True))
    probe.node.destroy_publisher(publisher)


def test_per_frame_stage_times_are_logged_on_request(node_and_probe) -> None:
    node, probe = node_and_probe
    assert set_parameter(probe, NODE, "log_stage_times", True)
    stamp = segmented(probe, scene(RED))
    assert wait_until(lambda: f"frame {stamp}: decode " in node.log(), 5), node.log()
    line = next(line for line in node.log().splitlines() if f"frame {stamp}: " in line)
    assert all(f"{stage} " in line for stage in ("decode", "segment", "track", "answers", "outputs")), line
    assert set_parameter(probe, NODE, "log_stage_times", False)
