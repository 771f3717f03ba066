"""Helpers of ``make bench``: summaries, targets, tables, frames, the stage profiler (no timing is asserted)."""

from __future__ import annotations

import numpy as np
import pytest

from bench import machine
from bench.machine import cpu_model, parse_vmrss_mb
from bench.pipeline import camera_frame
from bench.stats import TARGETS, evaluate_targets, markdown_table, ratio, summarize, table, target_measurements


def test_summarize_gives_p50_p95_and_count() -> None:
    summary = summarize(range(1, 101))
    assert summary == {"p50": 50.5, "p95": 95.05, "n": 100}


def test_summarize_of_nothing_is_explicitly_empty() -> None:
    assert summarize([]) == {"p50": None, "p95": None, "n": 0}


def test_ratio_is_none_without_a_usable_denominator() -> None:
    assert ratio(110.0, 100.0) == 1.1
    assert ratio(None, 100.0) is None and ratio(1.0, None) is None and ratio(1.0, 0.0) is None


def _results(node_e2e: float = 105.0, cached: float = 4.0, latency_p95: float = 200.0, growth: float = 10.0,
             point: float = 0.5, box: float = 0.8, depth_3d: float = 1.5, many_node: float = 105.0,
             many_cached: float = 4.0, instances_msg: float = 4.0, labels: float = 2.5, overlay: float = 14.0,
             many_growth: float = 10.0,
             scaling: float = 1.15, tracking: float = 1.2, answered: int = 300, burst_ratio: float = 2.5,
             cameras_rss: float = 1.2, cameras_answered: float = 0.95, cameras_share: float = 0.05,
             int8: float = 2.4, auto: float = 1.0, engine: float = 102.0) -> dict:
    many = {
        "engine_ms": {"p50": 100.0, "p95": 110.0, "n": 30},
        "node_e2e_ms": {"p50": many_node, "p95": many_node + 10, "n": 30},
        "node_overhead_ms": {"p50": many_node - 100.0, "p95": many_node - 95.0, "n": 30},
        "cached_prompt_ms": {"p50": many_cached, "p95": many_cached + 2, "n": 30},
        "node_side": {"instances_msg_ms": {"p50": instances_msg, "p95": 6.0, "n": 30},
                      "labels_ms": {"p50": labels, "p95": 3.5, "n": 30},
                      "overlay_ms": {"p50": overlay, "p95": 16.0, "n": 30}},
        "stream": {"rss_growth_mb": many_growth},
        "scaling": {"ratio": scaling},
    }
    return {
        "many": many,
        "precision": {"fastsam_s_shaped": {"int8_vs_true_fp32": int8}, "engine": {"auto_vs_best_fixed": auto}},
        "cameras": {"rss_2_in_one_vs_1": cameras_rss, "answered_vs_single": cameras_answered,
                    "worst_share_error": cameras_share},
        "burst": {"published": 300, "answered": answered, "ratio": burst_ratio},
        "raw_predict_ms": {"p50": 100.0, "p95": 110.0, "n": 30},
        "engine_ms": {"p50": engine, "p95": engine + 5, "n": 30},
        "node_e2e_ms": {"p50": node_e2e, "p95": node_e2e + 10, "n": 30},
        "node_overhead_ms": {"p50": node_e2e - engine, "p95": node_e2e - engine + 5, "n": 30},
        "cached_prompt_ms": {"p50": cached, "p95": cached + 2, "n": 30},
        "stream": {"latency_ms": {"p50": 150.0, "p95": latency_p95, "n": 100}, "rss_growth_mb": growth},
        "selection_ms": {"point": {"p50": point, "p95": 1.0, "n": 200}, "box": {"p50": box, "p95": 1.5, "n": 200}},
        "depth_3d_ms": {"p50": depth_3d, "p95": depth_3d + 1, "n": 200},
        "tracking_ms": {"update": {"p50": 2.5, "p95": 2.9, "n": 200}, "follow": {"p50": 0.3, "p95": 0.4, "n": 9},
                        "update_real": {"p50": 1.5, "p95": 1.6, "n": 97, "instances": 100.0},
                        "update_inline": {"p50": tracking, "p95": 1.9, "n": 29, "instances": 100.0}},
    }


def test_targets_pass_when_every_figure_is_inside_its_limit() -> None:
    targets = evaluate_targets(_results())
    assert set(targets) == {t.name for t in TARGETS}
    assert all(t["pass"] is True for t in targets.values()), targets
    assert targets["node_e2e_vs_raw"]["measured"] == 1.05
    assert targets["stream_latency"]["measured"] == 2.0
    assert targets["selection"]["measured"] == 0.8  # the slower of point and box


@pytest.mark.parametrize(("change", "name"), [
    ({"node_e2e": 111.0, "engine": 110.0}, "node_e2e_vs_raw"),
    ({"cached": 10.0}, "cached_prompt"),  # "under 10 ms": 10 itself fails
    ({"latency_p95": 251.0}, "stream_latency"),
    ({"growth": 50.0}, "stream_memory"),
    ({"box": 2.5}, "selection"),
    ({"many_node": 105.1}, "many_node_overhead"),  # engine 100 + 5 is the limit, inclusive
    ({"many_cached": 5.0}, "many_cached_prompt"),
    ({"instances_msg": 5.0}, "many_instances_msg"),
    ({"labels": 3.0}, "many_labels"),
    ({"overlay": 15.0}, "many_overlay"),
    ({"many_growth": 50.0}, "many_stream_memory"),
    ({"scaling": 1.151}, "many_engine_scaling"),
    ({"depth_3d": 3.0}, "depth_3d"),
    ({"tracking": 2.0}, "tracking"),
    ({"answered": 299}, "burst_unanswered"),
    ({"burst_ratio": 3.01}, "burst_frame_latency"),
    ({"int8": 1.99}, "precision_int8"),
    ({"engine": 101.9}, "node_overhead"),  # node_e2e 105: 3.1 ms of the node's own
    ({"auto": 1.06}, "precision_auto"),
    ({"cameras_rss": 1.31}, "cameras_rss"),
    ({"cameras_answered": 0.89}, "cameras_answered"),  # at least 0.9: below fails
    ({"cameras_share": 0.11}, "cameras_share"),
])
def test_each_target_fails_on_its_own_figure(change: dict, name: str) -> None:
    targets = evaluate_targets(_results(**change))
    assert [n for n, t in targets.items() if t["pass"] is False] == [name]


def test_node_e2e_target_is_inclusive_at_1_10() -> None:
    assert evaluate_targets(_results(node_e2e=110.0))["node_e2e_vs_raw"]["pass"] is True


def test_unmeasured_targets_are_neither_pass_nor_fail() -> None:
    results = _results()
    del results["stream"]
    measured = target_measurements(results)
    assert measured["stream_latency"] is None and measured["stream_memory"] is None
    targets = evaluate_targets(results)
    assert targets["stream_latency"]["pass"] is None and targets["stream_memory"]["pass"] is None


def test_tables_align_and_show_missing_values() -> None:
    rows = [("raw_predict_ms", 101.234, 120.0, 30), ("stream", None, 0.5, 0)]
    text = table(rows, ("what", "p50", "p95", "n")).splitlines()
    assert len({len(line) for line in text}) == 1, "fixed width"
    assert text[2].startswith("raw_predict_ms") and "101.2" in text[2] and "-" in text[3]
    md = markdown_table(rows, ("what", "p50", "p95", "n")).splitlines()
    assert md[0] == "| what | p50 | p95 | n |" and md[2].startswith("| raw_predict_ms | 101.2 |")


def test_reference_loop_reports_the_median_of_its_runs_in_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([0.0, 0.010, 5.0, 5.030, 7.0, 7.020])  # runs of 10, 30 and 20 ms
    monkeypatch.setattr(machine.time, "perf_counter", lambda: next(ticks))
    assert machine.reference_ms(repeats=3) == 20.0


def test_machine_parsers() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t: x\n") == "AMD EPYC 7B13"
    assert parse_vmrss_mb("Name:\tpython\nVmRSS:\t  204800 kB\n") == 200.0
    assert parse_vmrss_mb("Name:\tpython\n") is None


@pytest.mark.parametrize("shape", [(1080, 810), (720, 1280), (480, 640), (100, 100)])
def test_camera_frame_crops_to_the_aspect_ratio_then_resizes(shape: tuple[int, int]) -> None:
    image = np.zeros((*shape, 3), dtype=np.uint8)
    image[shape[0] // 2, shape[1] // 2] = 255  # the centre survives a centre crop
    frame = camera_frame(image, (480, 640))
    assert frame.shape == (480, 640, 3) and frame.dtype == np.uint8 and frame.flags.c_contiguous
    assert frame.max() > 0


def test_stream_memory_growth_is_the_trend_not_a_swing_between_two_samples() -> None:
    from bench.stream import growth_mb

    swinging = list(1200.0 + np.random.default_rng(0).uniform(-25, 25, 60))  # heaps trimmed and refilled: no leak
    swinging[0], swinging[-1] = 1175.0, 1225.0  # start and end at opposite ends of the swing
    assert abs(growth_mb(swinging)) < 10
    leaking = [1200.0 + 1.5 * k for k in range(60)]  # 1.5 MB per second
    assert growth_mb(leaking) == pytest.approx(1.5 * 50, abs=0.1)
    assert growth_mb([1200.0 + k for k in range(9)]) == 6.0  # a --quick stream: first and last thirds
    assert growth_mb([1200.0, 1300.0]) is None


def test_node_overhead_is_paired_with_the_engine_on_the_same_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """Frames whose engine times differ (2 and 30 ms) and a node 1.5 ms slower on each: the paired figure is 1.5
    on every round, where the difference of the two p50s would mix the frames."""
    from types import SimpleNamespace

    from bench import pipeline

    clock = [0.0]
    monkeypatch.setattr(pipeline.time, "perf_counter", lambda: clock[0])
    engine_ms = {"small": 2.0, "big": 30.0}

    class Engine:
        def segment(self, pixels: np.ndarray) -> None:
            clock[0] += engine_ms[str(pixels[0, 0, 0])] / 1000.0

    class Driver:
        def frame(self, pixels: np.ndarray) -> tuple[float, object, int]:
            return engine_ms[str(pixels[0, 0, 0])] + 1.5, SimpleNamespace(instances=[], inference_ms=0.0), 0

    frames = [pipeline.BenchFrame(name, np.full((1, 1, 1), name, dtype=object), None)
              for name in ("small", "big", "big")]
    figures = pipeline.run_rounds(lambda pixels: None, Engine(), Driver(), frames, rounds=6, prompts=False)
    assert figures["node_overhead_ms"]["n"] == 6
    assert figures["node_overhead_ms"]["p50"] == pytest.approx(1.5)
    assert figures["node_overhead_ms"]["p95"] == pytest.approx(1.5)
