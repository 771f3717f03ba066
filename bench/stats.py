"""Pure helpers of ``make bench``: percentiles, the targets of the issue and the printed table.

No ROS, torch or timing here, so ``test/test_bench.py`` checks them alone.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np


def summarize(samples: Iterable[float], digits: int = 2) -> dict[str, Any]:
    """``{"p50", "p95", "n"}`` of ``samples`` (linear interpolation, numpy's default); None when empty."""
    values = np.asarray([float(s) for s in samples], dtype=np.float64)
    if values.size == 0:
        return {"p50": None, "p95": None, "n": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": round(float(p50), digits), "p95": round(float(p95), digits), "n": int(values.size)}


def print_figures(title: str, figures: Mapping[str, Mapping[str, Any]], as_json: bool) -> None:
    """A micro-benchmark's ``{name: summarize(...)}`` figures: JSON for ``make bench``, else one line each."""
    if as_json:
        print(json.dumps(figures))
        return
    print(title)
    width = max(map(len, figures), default=0)
    for name, values in figures.items():
        count = f"   n {values['n']}" if "n" in values else ""
        print(f"  {name:<{width}} p50 {values['p50_ms']:7.3f} ms   p95 {values['p95_ms']:7.3f} ms{count}")


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded, or None when either is missing or the denominator is not positive."""
    if numerator is None or denominator is None or denominator <= 0:
        return None
    return round(float(numerator) / float(denominator), digits)


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``measured`` must stay below ``limit`` (or at most ``limit`` when ``inclusive``);
    with ``higher_is_better``, above it (or at least it)."""

    name: str
    description: str
    limit: float
    unit: str
    inclusive: bool = False
    higher_is_better: bool = False

    def check(self, measured: float | None) -> dict[str, Any]:
        if measured is None:
            passed = None  # not measured in this run: neither pass nor fail
        elif self.higher_is_better:
            passed = bool(measured >= self.limit) if self.inclusive else bool(measured > self.limit)
        else:
            passed = bool(measured <= self.limit) if self.inclusive else bool(measured < self.limit)
        return {"target": self.description, "measured": measured, "limit": self.limit, "unit": self.unit,
                "pass": passed}


TARGETS = (
    Target("node_e2e_vs_raw", "node_e2e p50 at most 1.10x raw_predict p50", 1.10, "x", inclusive=True),
    Target("cached_prompt", "cached_prompt p50 under 10 ms", 10.0, "ms"),
    Target("node_overhead", "~5 instances: node_e2e minus engine on the same frame, p50, at most 3 ms (the node's own "
                            "cost)", 3.0, "ms", inclusive=True),
    Target("stream_latency", "stream latency p95 under 2.5x one inference (raw_predict p50)", 2.5, "x"),
    Target("stream_memory", "stream resident memory growth under 50 MB", 50.0, "MB"),
    Target("selection", "selection p50 under 2 ms (100 instances on 640x480, point and box)", 2.0, "ms"),
    Target("depth_3d", "3D of one 100,000-pixel object p50 under 3 ms", 3.0, "ms"),
    Target("tracking", "tracking update p50 under 2 ms (the engine's lazy masks, ~100 instances on 640x480, panning "
                       "camera, right after each frame's inference as in the node)", 2.0, "ms"),
    Target("burst_unanswered", "a burst of 300 persistent prompts: every one answered (those past "
                               "max_persistent_prompts invalid)", 0, "prompts", inclusive=True),
    Target("burst_frame_latency", "frame p50 with max_persistent_prompts followed at most 3x without", 3.0, "x",
           inclusive=True),
    # At FastSAM's working point: ~100 instances per frame (bench/many.py).
    Target("many_node_overhead", "~100 instances: node_e2e minus engine on the same frame, p50, at most 5 ms", 5.0,
           "ms", inclusive=True),
    Target("many_cached_prompt", "~100 instances: cached_prompt p50 under 5 ms", 5.0, "ms"),
    Target("many_instances_msg", "~100 instances: Instances with masks built and serialized, p50 under 5 ms", 5.0,
           "ms"),
    Target("many_labels", "~100 instances: the instance label image (instances/labels) p50 under 3 ms", 3.0, "ms"),
    Target("many_overlay", "~100 instances: debug overlay p50 under 15 ms", 15.0, "ms"),
    Target("many_stream_memory", "~100 instances: stream resident memory growth under 50 MB", 50.0, "MB"),
    # Precision (bench/precisions.py): the FastSAM-s-shaped network at 640 on this CPU.
    Target("precision_int8", "FastSAM-s-shaped network: INT8 as the node runs it (OpenVINO) at least 2x true FP32 (the "
                             "faster of ONNX Runtime and OpenVINO f32)", 2.0, "x", inclusive=True,
           higher_is_better=True),
    Target("precision_auto", "engine with precision auto at most 1.05x the best fixed precision", 1.05, "x",
           inclusive=True),
    # Several cameras in one node (bench/cameras.py), 15 Hz each.
    Target("cameras_rss", "2 cameras in one node: RSS at most 1.3x one single-camera node", 1.3, "x", inclusive=True),
    Target("cameras_answered", "2 and 4 cameras in one node: answered frames/s at least 0.9x one camera's", 0.9, "x",
           inclusive=True, higher_is_better=True),
    Target("cameras_share", "2 and 4 cameras in one node: every camera's answers within 10 % of a fair share", 0.10,
           "", inclusive=True),
    Target("many_engine_scaling", "engine p50 at ~100 instances at most 1.15x at ~5 (same frame, interleaved)",
           1.15, "x", inclusive=True),
)


def _p50(results: Mapping[str, Any], *path: str) -> float | None:
    node: Any = results
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node.get("p50") if isinstance(node, Mapping) else None


def target_measurements(results: Mapping[str, Any]) -> dict[str, float | None]:
    """The value each target is judged on, from the results dict that ``python -m bench`` writes."""
    raw = _p50(results, "raw_predict_ms")
    stream = results.get("stream") or {}
    latency_p95 = (stream.get("latency_ms") or {}).get("p95")
    selection = [_p50(results, "selection_ms", kind) for kind in ("point", "box")]
    selection = [value for value in selection if value is not None]
    many = results.get("many") or {}
    return {
        "many_node_overhead": _p50(results, "many", "node_overhead_ms"),
        "node_overhead": _p50(results, "node_overhead_ms"),
        "many_cached_prompt": _p50(results, "many", "cached_prompt_ms"),
        "many_instances_msg": _p50(results, "many", "node_side", "instances_msg_ms"),
        "many_labels": _p50(results, "many", "node_side", "labels_ms"),
        "many_overlay": _p50(results, "many", "node_side", "overlay_ms"),
        "many_stream_memory": (many.get("stream") or {}).get("rss_growth_mb"),
        "many_engine_scaling": (many.get("scaling") or {}).get("ratio"),
        "precision_int8": ((results.get("precision") or {}).get("fastsam_s_shaped") or {}).get("int8_vs_true_fp32"),
        "precision_auto": ((results.get("precision") or {}).get("engine") or {}).get("auto_vs_best_fixed"),
        "cameras_rss": (results.get("cameras") or {}).get("rss_2_in_one_vs_1"),
        "cameras_answered": (results.get("cameras") or {}).get("answered_vs_single"),
        "cameras_share": (results.get("cameras") or {}).get("worst_share_error"),
        "node_e2e_vs_raw": ratio(_p50(results, "node_e2e_ms"), raw),
        "burst_unanswered": (burst["published"] - burst["answered"]) if (burst := results.get("burst")) else None,
        "burst_frame_latency": (results.get("burst") or {}).get("ratio"),
        "cached_prompt": _p50(results, "cached_prompt_ms"),
        "stream_latency": ratio(latency_p95, raw),
        "stream_memory": stream.get("rss_growth_mb"),
        "selection": max(selection) if selection else None,
        "depth_3d": _p50(results, "depth_3d_ms"),
        # What the node pays: lazy masks, each update right after its frame's inference (replayed frames run faster).
        "tracking": _p50(results, "tracking_ms", "update_inline"),
    }


def evaluate_targets(results: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Each target with its measured value and pass/fail (None where the run did not measure it)."""
    measured = target_measurements(results)
    return {target.name: target.check(measured[target.name]) for target in TARGETS}


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"
    return str(value)


def table(rows: Iterable[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    """A plain fixed-width text table (first column left-aligned, the rest right-aligned)."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max(len(str(h)), *(len(r[i]) for r in cells)) if cells else len(str(h)) for i, h in enumerate(header)]
    def line(values: list[str]) -> str:
        return "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(values, widths,
                                                                                                 strict=True)))
    return "\n".join([line(list(header)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def markdown_table(rows: Iterable[tuple[Any, ...]], header: tuple[str, ...]) -> str:
    """The same rows as a GitHub markdown table (for the README)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
