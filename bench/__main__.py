"""``make bench``: every figure of the performance issue in one run, printed as a table and written as JSON.

``python -m bench [--model M] [--out out/bench.json] [--stream-seconds 60] [--quick]``

All stages run on the same machine in one process tree, so that ratios hold on a noisy machine:

1. ``selection_ms``: the pure selection step, 100 instances on 640x480 (``bench/bench_selection.py``);
   ``depth_3d_ms``: 3D position, extent and points of one 100,000-pixel object (``bench/bench_depth.py``);
   ``tracking_ms``: instance tracking and a followed prompt's answer, 100 instances on 640x480, panning
   (``bench/bench_tracking.py``), and the tracker update on the model's lazy masks, right after each frame's
   inference (``update_inline``, as in the node) and replayed (``update_real``);
2. ``raw_predict_ms`` / ``engine_ms`` / ``node_e2e_ms`` / ``cached_prompt_ms`` / ``reinfer_prompt_ms``,
   interleaved round by round on 640x480 camera frames, the node in its own process (``bench/pipeline.py``);
   the same on one native-size photo (``native``);
3. ``stream``: a 30 Hz camera with a persistent click prompt (``bench/stream.py``);
4. ``many``: the same at FastSAM's working point, ~100 instances per frame (the stand-in at ``conf`` 0.003; the
   instance count is in every row), the engine at ~5 vs ~100 instances, the node-side costs in process, and a
   FastSAM-s-shaped network's forward time at imgsz 640 and 1024 (``bench/many.py``);
5. ``exports``: PyTorch, ONNX Runtime and OpenVINO on CPU through our engine (``bench/exports.py``);
6. ``precision``: network time per precision (ONNX Runtime and OpenVINO, FP32, bf16, INT8) for the stand-in and a
   FastSAM-s-shaped network, and the engine with ``precision`` auto against each fixed one (``bench/precisions.py``);
7. ``cameras``: 1, 2 and 4 cameras at 15 Hz in one node with ``cameras`` against one node per camera: memory,
   answered frames per second, each camera's share and latency (``bench/cameras.py``).

Targets of the issue are judged in ``targets``; the JSON gets a ``meta`` block (date, command, CPU, cores,
load, versions, model, sizes, device) and a markdown table is written beside it for the README.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

from bench import burst, cameras, exports, machine, many, pipeline, precisions, stats
from bench.bench_depth import run as run_depth
from bench.bench_selection import run as run_selection
from bench.bench_tracking import REAL_IMAGE
from bench.bench_tracking import run as run_tracking
from bench.bench_tracking import run_real as run_tracking_real
from bench.shared_data import add_model_and_images
from bench.stream import node_stages

NATIVE_IMAGE = "bus.jpg"
SCALING_IMAGE = "zidane.jpg"  # the frame of the 5-vs-100-instances figure


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    add_model_and_images(parser)
    parser.add_argument("--out", type=Path, default=Path("out/bench.json"), help="JSON results (a .md table beside)")
    parser.add_argument("--work-dir", type=Path, default=Path("out/bench"),
                        help="exported models and the node's log (gitignored)")
    parser.add_argument("--rounds", type=int, default=60,
                        help="interleaved rounds on 640x480 frames (the p50 of 30 paired rounds moved by 0.5 ms or "
                        "more between runs)")
    parser.add_argument("--native-rounds", type=int, default=6, help="rounds on the native-size photo")
    parser.add_argument("--stream-seconds", type=float, default=60.0)
    parser.add_argument("--camera-hz", type=float, default=30.0)
    parser.add_argument("--export-rounds", type=int, default=12, help="timed calls per export format")
    parser.add_argument("--no-exports", action="store_true", help="skip the export comparison")
    parser.add_argument("--no-many", action="store_true", help="skip the ~100-instances figures (bench/many.py)")
    parser.add_argument("--camera-seconds", type=float, default=20.0, help="each run of the cameras section")
    parser.add_argument("--data", type=Path, default=Path("../shared/data/coco-seg-dev"),
                        help="the dev set: INT8 calibration images for the precision section")
    parser.add_argument("--no-precision", action="store_true", help="skip the precision section")
    parser.add_argument("--no-cameras", action="store_true", help="skip the cameras section (bench/cameras.py)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: few rounds, a 10 s stream")
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.native_rounds, args.export_rounds = 4, 2, 3
        args.stream_seconds = min(args.stream_seconds, 10.0)
        args.camera_seconds = min(args.camera_seconds, 5.0)
    return args


def _stage(name: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)


def _selection() -> dict[str, Any]:
    repeats = 200
    figures = run_selection(n_instances=100, image_shape=(480, 640), repeats=repeats)
    return {kind: {"p50": v["p50_ms"], "p95": v["p95_ms"], "n": repeats} for kind, v in figures.items()}


def _depth_3d() -> dict[str, Any]:
    figures = run_depth(pixels=100_000, repeats=200)
    return {**figures["locate_ms"], "mask_pixels": figures["mask_pixels"], "encoding": figures["encoding"]}


def _tracking(model: str, images: Path) -> dict[str, Any]:
    figures = run_tracking(n_instances=100, image_shape=(480, 640), frames=200)
    results = {kind: {"p50": v["p50_ms"], "p95": v["p95_ms"], "n": v["n"]} for kind, v in figures.items()}
    for kind, real in run_tracking_real(model, images / REAL_IMAGE).items():
        results[kind] = {"p50": real["p50_ms"], "p95": real["p95_ms"], "n": real["n"], "instances": real["instances"]}
    return results


def run(args: argparse.Namespace) -> dict[str, Any]:
    from fastsam_ros.config import NodeConfig
    from fastsam_ros.segmentation.engine import FastSAMEngine
    from harness.client import FastSAMClient
    from harness.node_process import NodeProcess, private_ros_network

    started = time.monotonic()
    model = str(Path(args.model))
    config = NodeConfig(model=model)  # the node's defaults (config/fastsam.yaml mirrors them)
    results: dict[str, Any] = {"meta": machine.describe(model)}
    args.work_dir.mkdir(parents=True, exist_ok=True)
    _stage(f"ROS_DOMAIN_ID={private_ros_network()}, localhost only")

    _stage("selection")
    results["selection_ms"] = _selection()
    results["depth_3d_ms"] = _depth_3d()
    _stage("tracking")
    results["tracking_ms"] = _tracking(model, args.images)

    _stage("starting the node; loading the models here")
    node = NodeProcess(args.work_dir / "node.log", namespace="bench", model=model)
    client = FastSAMClient(namespace="bench")
    try:
        engine = FastSAMEngine(config.engine)
        raw = pipeline.RawPredictor(model, config.engine)
        frames = pipeline.plan_frames(engine, pipeline.load_frames(args.images, pipeline.FRAME_IMAGES,
                                                                   pipeline.CAMERA_SHAPE))
        native = pipeline.plan_frames(engine, pipeline.load_frames(args.images, (NATIVE_IMAGE,), None))
        for frame in frames + native:
            raw(frame.pixels)
        if not client.wait_for_connections(node, timeout=300):
            raise SystemExit(f"the node did not come up:\n{node.log()}")
        driver = pipeline.Driver(client, node)
        for frame in frames + native:  # the node's first frames pay for lazy setup
            driver.frame(frame.pixels)

        _stage(f"pipeline: {args.rounds} interleaved rounds on {len(frames)} 640x480 frames")
        figures = pipeline.run_rounds(raw, engine, driver, frames, args.rounds)
        results.update({k: v for k, v in figures.items() if k != "details"})
        results["pipeline"] = figures["details"]
        results["node_stages_ms"] = node_stages(driver)  # the node's own split of those frames (its last 100)
        _stage(f"native {NATIVE_IMAGE}: {args.native_rounds} rounds")
        results["native"] = pipeline.run_rounds(raw, engine, driver, native, args.native_rounds)

        _stage(f"stream: {args.camera_hz:g} Hz for {args.stream_seconds:g} s")
        streamed = next((f for f in frames if f.click is not None), None)
        if streamed is None:
            raise SystemExit("no instance found on any frame: nothing to prompt")
        results["stream"] = pipeline_stream(driver, streamed, args)
        _stage(f"prompt burst: {burst.BURST} persistent prompts at once, frames with and without them")
        results["burst"] = burst.run(driver, streamed.pixels, streamed.click, args.rounds)
        import torch

        results["meta"]["software"]["torch_threads"] = torch.get_num_threads()  # as ultralytics left it
        # engine_ms and the node run the default backend (fastsam_ros/segmentation/backends.py);
        # raw_predict_ms is PyTorch
        results["meta"]["backend"] = dataclasses.asdict(engine.backend)
    finally:
        client.close()
        exit_code = node.stop()
    results["meta"]["node_exit_code"] = exit_code

    if not args.no_many:
        results["many"] = run_many(args, model, config.engine, engine)
        results["meta"]["node_exit_code"] = exit_code or results["many"]["node_exit_code"]

    if not args.no_precision:
        _stage("precision: FP32, bf16 and INT8 networks; the engine with precision auto against fixed ones")
        try:
            results["precision"] = precisions.run(model, args.images, args.data, args.work_dir,
                                                  max(args.export_rounds, 10))
        except Exception as error:  # keep every figure measured so far
            results["precision"] = {"error": f"{error.__class__.__name__}: {error}"}

    if not args.no_cameras:
        _stage(f"cameras: 1, 2 and 4 cameras at {cameras.CAMERA_HZ:g} Hz, one node against one node each")
        results["cameras"] = cameras.run(model, args.images, args.work_dir, args.camera_seconds)
        codes = [code for run in results["cameras"]["runs"].values() for code in run["node_exit_codes"]]
        results["meta"]["node_exit_code"] = results["meta"]["node_exit_code"] or next((c for c in codes if c), 0)

    if not args.no_exports:
        _stage("exports: PyTorch, ONNX Runtime, OpenVINO")
        try:
            results["exports"] = exports.compare(Path(model), args.work_dir, [f.pixels for f in frames],
                                                 args.export_rounds, config.engine)
        except Exception as error:  # keep every figure measured so far
            results["exports"] = {"error": f"{error.__class__.__name__}: {error}"}
    results["meta"].update({
        "device": config.device, "imgsz": config.imgsz, "conf": config.conf, "iou": config.iou,
        "image_sizes": {"pipeline": results["pipeline"]["image_size"],
                        "native": results["native"]["details"]["image_size"],
                        "stream": f"{streamed.pixels.shape[1]}x{streamed.pixels.shape[0]}"},
        "load_average_at_end": machine.load_average(), "reference_ms_at_end": machine.reference_ms(),
        "total_s": round(time.monotonic() - started, 1),
    })
    results["targets"] = stats.evaluate_targets(results)
    return results


def run_many(args: argparse.Namespace, model: str, engine_config: Any, engine: Any) -> dict[str, Any]:
    """Every figure again at FastSAM's working point (~100 instances per frame), and a FastSAM-s-shaped network.

    The node runs with ``conf`` 0.003 (``bench/many.py``); the raw and engine figures use the same settings.
    """
    from fastsam_ros.segmentation.engine import FastSAMEngine
    from harness.client import FastSAMClient
    from harness.node_process import NodeProcess

    many_engine_config = many.many_config(engine_config)
    out: dict[str, Any] = {"settings": dict(many.MANY)}
    engine_many = FastSAMEngine(many_engine_config)
    frames = pipeline.plan_frames(engine_many, pipeline.load_frames(args.images, many.MANY_IMAGES,
                                                                    pipeline.CAMERA_SHAPE))
    scaling_frame = next((f for f in frames if f.name == SCALING_IMAGE), frames[0])
    _stage(f"many instances: engine at {engine_config.conf:g} vs {many.SCALING['conf']:g} on {scaling_frame.name}")
    engine_scaling = FastSAMEngine(many.many_config(engine_config, many.SCALING))
    out["scaling"] = many.engine_scaling(engine, engine_scaling, scaling_frame.pixels, max(args.rounds, 8))
    out["scaling"].update(frame=f"{scaling_frame.name} 640x480", settings=dict(many.SCALING))
    del engine_scaling
    _stage("many instances: Instances message, overlay, cached click in process")
    out["node_side"] = many.node_side(engine_many, frames, args.rounds)
    _stage("many instances: FastSAM-s-shaped network (yolov8s-seg.yaml, nc=1, random weights)")
    out["fastsam_s_network_ms"] = {str(size): many.network_ms(size, max(args.export_rounds, 3))
                                   for size in (640, 1024)}

    _stage(f"many instances: node with conf {many.MANY['conf']:g}, {args.rounds} interleaved rounds")
    node = NodeProcess(args.work_dir / "node_many.log", namespace="bench_many", model=model, **many.MANY)
    client = FastSAMClient(namespace="bench_many")
    try:
        raw = pipeline.RawPredictor(model, many_engine_config)
        for frame in frames:
            raw(frame.pixels)
        if not client.wait_for_connections(node, timeout=300):
            raise SystemExit(f"the node did not come up:\n{node.log()}")
        driver = pipeline.Driver(client, node)
        for frame in frames:
            driver.frame(frame.pixels)
        figures = pipeline.run_rounds(raw, engine_many, driver, frames, args.rounds)
        out.update({k: v for k, v in figures.items() if k != "details"})
        out["pipeline"] = figures["details"]
        out["node_stages_ms"] = node_stages(driver)
        streamed = next((f for f in frames if f.click is not None), None)
        if streamed is not None:
            _stage(f"many instances: stream {args.camera_hz:g} Hz for {args.stream_seconds:g} s")
            out["stream"] = pipeline_stream(driver, streamed, args)
    finally:
        client.close()
        out["node_exit_code"] = node.stop()
    return out


def pipeline_stream(driver: Any, frame: Any, args: argparse.Namespace) -> dict[str, Any]:
    from bench.stream import run_stream

    result = run_stream(driver, frame.pixels, frame.click, args.stream_seconds, args.camera_hz)
    result["frame"] = frame.name
    return result


def _tracking_frames(kind: str, figures: dict[str, Any]) -> str:
    if kind == "update_real":
        return f"{figures.get('instances', '?')} instances, lazy masks on {REAL_IMAGE}, replayed"
    if kind == "update_inline":
        return f"{figures.get('instances', '?')} instances, lazy masks on {REAL_IMAGE}, right after inference"
    return "100 instances"


PIPELINE_FIGURES = ("raw_predict_ms", "engine_ms", "node_e2e_ms", "node_overhead_ms", "cached_prompt_ms",
                    "reinfer_prompt_ms")  # pipeline.run_rounds' figures, in the report's order


def figure_rows(results: dict[str, Any]) -> list[tuple[Any, ...]]:
    """``(what, p50, p95, n)`` rows of every timing in ``results``."""
    size = results["pipeline"]["image_size"]
    rows = [(f"{key} ({size})", results[key]["p50"], results[key]["p95"], results[key]["n"])
            for key in PIPELINE_FIGURES if key in results]
    rows += [(f"selection_ms {kind} (100 instances, 640x480)", v["p50"], v["p95"], v["n"])
             for kind, v in results["selection_ms"].items()]
    depth = results.get("depth_3d_ms")
    if depth:
        rows.append((f"depth_3d_ms (one object, {depth['mask_pixels']} px, {depth['encoding']})", depth["p50"],
                     depth["p95"], depth["n"]))
    rows += [(f"tracking_ms {kind} ({_tracking_frames(kind, v)}, 640x480, panning)", v["p50"], v["p95"], v["n"])
             for kind, v in results.get("tracking_ms", {}).items()]
    native = results.get("native", {})
    nsize = native.get("details", {}).get("image_size", "")
    rows += [(f"native {key} ({NATIVE_IMAGE} {nsize})", native[key]["p50"], native[key]["p95"], native[key]["n"])
             for key in ("raw_predict_ms", "engine_ms", "node_e2e_ms", "cached_prompt_ms") if key in native]
    stream = results.get("stream")
    if stream:
        rows.append((f"stream latency_ms ({stream['camera_hz']:g} Hz, {stream['seconds']:g} s)",
                     stream["latency_ms"]["p50"], stream["latency_ms"]["p95"], stream["latency_ms"]["n"]))
        rows.append(("stream node inference_ms", stream["node_inference_ms"]["p50"],
                     stream["node_inference_ms"]["p95"], stream["node_inference_ms"]["n"]))
    burst_figures = results.get("burst")
    if burst_figures:
        for key, label in (("frame_ms_without", "no persistent prompt"), ("frame_ms_with", "after a burst")):
            figures = burst_figures[key]
            rows.append((f"burst node frame_ms ({label})", figures["p50"], figures["p95"], figures["n"]))
    rows += many_rows(results.get("many") or {})
    for name, entry in (results.get("exports") or {}).get("formats", {}).items():
        if "engine_ms" in entry:
            threads = entry.get("threads") or "all"  # ONNX Runtime reports 0: its default, every physical core
            rows.append((f"export {name} engine_ms ({size}, {threads} threads)", entry["engine_ms"]["p50"],
                         entry["engine_ms"]["p95"], entry["engine_ms"]["n"]))
    return rows


def _count(value: float | None) -> str:
    return "?" if value is None else f"{value:g}"


def many_rows(figures: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Rows of the ~100-instances figures, each naming the instance count it was measured at."""
    if not figures:
        return []
    rows = []
    count = _count((figures.get("pipeline") or {}).get("instances_per_frame", {}).get("p50"))
    for key in PIPELINE_FIGURES:
        if key in figures:
            rows.append((f"{key} (640x480, {count} instances)", figures[key]["p50"], figures[key]["p95"],
                         figures[key]["n"]))
    scaling = figures.get("scaling") or {}
    if scaling:
        for key, label in (("engine_few_ms", "few"), ("engine_many_ms", "many")):
            entry = scaling[key]
            rows.append((f"engine_ms {scaling['frame']}, {_count(scaling['instances'][label]['p50'])} instances",
                         entry["p50"], entry["p95"], entry["n"]))
    side = figures.get("node_side") or {}
    side_count = _count((side.get("instances") or {}).get("p50"))
    for key in ("instances_msg_ms", "labels_ms", "overlay_ms", "cached_click_ms"):
        if key in side:
            rows.append((f"{key} in process ({side_count} instances)", side[key]["p50"], side[key]["p95"],
                         side[key]["n"]))
    stream = figures.get("stream")
    if stream:
        rows.append((f"stream latency_ms ({count} instances)", stream["latency_ms"]["p50"],
                     stream["latency_ms"]["p95"], stream["latency_ms"]["n"]))
    for size, entry in (figures.get("fastsam_s_network_ms") or {}).items():
        rows.append((f"FastSAM-s-shaped network forward, imgsz {size} ({entry['input']})", entry["p50"],
                     entry["p95"], entry["n"]))
    return rows


PRECISION_HEADER = ("network at 640 (1x3x480x640)", *precisions.CASES, "INT8 vs true FP32")


def precision_rows(figures: dict[str, Any]) -> list[tuple[Any, ...]]:
    """Network p50 ms per runtime and precision; then the engine with precision auto against each fixed one."""
    rows = [(name, *(figures[name]["ms"][case]["p50"] for case in precisions.CASES),
             f"{figures[name]['int8_vs_true_fp32']}x")
            for name in ("standin", "fastsam_s_shaped") if name in figures]
    engine = figures.get("engine")
    if engine:
        cells = [f"{name} {entry['p50']} ms (runs {entry['runs']})" for name, entry in engine["ms"].items()]
        rows.append(("engine (stand-in, precision ...)", *cells, f"auto/best {engine['auto_vs_best_fixed']}x"))
    return rows


CAMERA_HEADER = ("cameras at 15 Hz", "processes", "RSS MB", "answered/s", "latency p50 ms", "latency p95 ms",
                 "share of fair")


def camera_rows(figures: dict[str, Any]) -> list[tuple[Any, ...]]:
    """One row per run of the cameras section; latency and share as the range over its cameras."""
    def spread(values: list[float | None]) -> str:
        known = [value for value in values if value is not None]
        return "-" if not known else f"{min(known):.1f}" if min(known) == max(known) else \
            f"{min(known):.1f}-{max(known):.1f}"

    rows = []
    for run in figures["runs"].values():
        cams = list(run["per_camera"].values())
        shares = [c["share_of_fair"] for c in cams]
        rows.append((f"{run['cameras']} in {'one node' if run['one_node'] else 'one node each'}", run["processes"],
                     run["rss_mb"], run["answered_per_s"], spread([c["latency_ms"]["p50"] for c in cams]),
                     spread([c["latency_ms"]["p95"] for c in cams]),
                     f"{min(shares):.2f}-{max(shares):.2f}" if len(shares) > 1 else "1"))
    return rows


def report(results: dict[str, Any]) -> str:
    meta = results["meta"]
    host = meta["machine"]
    machine_line = (f"{host['cpu']}, {host['cores']} cores, load {host['load_average_at_start']} -> "
                    f"{meta.get('load_average_at_end')}, reference loop {host.get('reference_ms_at_start')} -> "
                    f"{meta.get('reference_ms_at_end')} ms (machine.reference_ms: its speed at the time)")
    lines = [f"fastsam_ros bench {meta['date']}: {meta['command']}",
             f"machine: {machine_line}; model {Path(meta['model']['path']).name} on {meta['device']}, imgsz "
             f"{meta['imgsz']}, torch {meta['software']['torch']} ({meta['software'].get('torch_threads')} threads), "
             f"ultralytics {meta['software']['ultralytics']}; engine and node on backend "
             f"{meta.get('backend', {}).get('backend', '?')} {meta.get('backend', {}).get('precision', '')} "
             f"(raw_predict: PyTorch)", "",
             stats.table(figure_rows(results), ("what", "p50 ms", "p95 ms", "n"))]
    for label, stages in (("~5", results.get("node_stages_ms")),
                          ("~100", (results.get("many") or {}).get("node_stages_ms"))):
        if stages:
            lines.append(f"node's own p50 per stage at {label} instances: "
                         + ", ".join(f"{stage} {ms:.2f}" for stage, ms in stages.items()) + " ms")
    stream = results.get("stream")
    if stream:
        lines += ["", f"stream: {stream['frames_published']} frames published at {stream['publish_rate_hz']} Hz, "
                  f"{stream['answers']} answered ({stream['output_rate_hz']} Hz output), {stream['frames_dropped']} "
                  f"skipped by the newest-frame slot or lost (node: {stream['node_frames_dropped']} dropped, "
                  f"{stream['lost_in_transport']} never arrived); RSS {stream['rss_start_mb']} -> "
                  f"{stream['rss_end_mb']} MB (growth {stream['rss_growth_mb']} MB: median of the last 10 s minus "
                  f"the first 10 s; max {stream['rss_max_mb']})"]
    compared = results.get("exports") or {}
    fastest = compared.get("fastest")
    if fastest:
        load = compared.get("load_average", {})
        lines.append(f"fastest CPU path: {fastest['format']} ({fastest['engine_ms']['p50']} ms p50, "
                     f"{fastest['speedup_vs_pytorch']}x PyTorch as ultralytics runs it; 1-min load "
                     f"{load.get('before', ['?'])[0]} -> {load.get('after', ['?'])[0]} while timed)")
    elif compared:
        lines.append(f"exports: {compared.get('skipped') or compared.get('error')}")
    if (results.get("precision") or {}).get("standin"):
        lines += ["", stats.table(precision_rows(results["precision"]), PRECISION_HEADER)]
    if results.get("cameras"):
        lines += ["", stats.table(camera_rows(results["cameras"]), CAMERA_HEADER)]
    target_rows = [(t["target"], t["measured"], t["limit"], t["unit"],
                    {True: "pass", False: "FAIL", None: "not measured"}[t["pass"]])
                   for t in results["targets"].values()]
    lines += ["", stats.table(target_rows, ("target", "measured", "limit", "unit", "result"))]
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    """The README's results table: what, p50, p95, n, with the machine, date and command."""
    meta = results["meta"]
    rows = [(what, p50, p95, n) for what, p50, p95, n in figure_rows(results)]
    target_rows = [(t["target"], t["measured"], t["unit"], {True: "pass", False: "fail", None: "-"}[t["pass"]])
                   for t in results["targets"].values()]
    return "\n".join([
        f"`{meta['command']}` on {meta['date'][:10]}; {meta['machine']['cpu']}, {meta['machine']['cores']} cores "
        f"(load {meta['machine']['load_average_at_start']}; reference loop "
        f"{meta['machine'].get('reference_ms_at_start')} -> {meta.get('reference_ms_at_end')} ms), "
        f"{Path(meta['model']['path']).name} on {meta['device']}, imgsz {meta['imgsz']}, "
        f"torch {meta['software']['torch']}, ultralytics {meta['software']['ultralytics']}.",
        "", stats.markdown_table(rows, ("what", "p50 ms", "p95 ms", "n")),
        *(["", stats.markdown_table(precision_rows(results["precision"]), PRECISION_HEADER)]
          if (results.get("precision") or {}).get("standin") else []),
        *(["", stats.markdown_table(camera_rows(results["cameras"]), CAMERA_HEADER)] if results.get("cameras")
          else []),
        "", stats.markdown_table(target_rows, ("target", "measured", "unit", "result")), ""])


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    results = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(results))
    print(report(results))
    print(f"\nresults in {args.out} (markdown table in {args.out.with_suffix('.md')})")
    return 0 if results["meta"]["node_exit_code"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
