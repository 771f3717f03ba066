"""``fastsam-segment``: FastSAM on images, folders, videos or a camera, without ROS.

For every frame it writes ``<stem>.json`` (instances and prompt answers), ``<stem>_overlay.png`` and, for each
prompt answered ``ok``, ``<stem>_<id>.png`` (the selection as a 0/255 mask at the image's resolution).

Exit status (the first that applies wins): 2 when nothing could start (bad arguments, prompt file, source or
model); 130 on Ctrl-C before a file source ended; 1 when some frames failed (an unreadable image, an error, a video
that ended before the frame count its container states; each is reported and the others go on); 3 when every frame
was segmented but some prompt was answered other than ``ok`` (``no_match``, ``invalid``, ``error``); 0 when all is
fine.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from fastsam_ros.overlay import draw_overlay
from fastsam_ros.prompts.clip import ClipConfig, ClipScorer
from fastsam_ros.prompts.prompt_file import PromptFileError, PromptPlan, load_prompts, names_not_in
from fastsam_ros.prompts.selection import SelectionParams, select
from fastsam_ros.prompts.text import TextScorer
from fastsam_ros.segmentation.backends import BACKENDS, normalise_device
from fastsam_ros.segmentation.engine import DEFAULT_MODEL, EngineConfig, FastSAMEngine, ModelLoadError
from fastsam_ros.sources import Frame, Source, SourceError, open_source
from fastsam_ros.tracking.follow import PromptFollower
from fastsam_ros.types import BACKGROUND, FOREGROUND, Prompt, Segmentation, Selection
from fastsam_ros.video import VideoWriter

PROG = "fastsam-segment"
EXIT_OK, EXIT_FRAMES_FAILED, EXIT_NOT_RUN, EXIT_PROMPTS_NOT_OK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_OUT = "out/segment"
CLI_PROMPT_ID = "cli"
_NUMBER_LIST = re.compile(r"\[\s*((?:-?[\d.eE+-]+\s*,\s*)*-?[\d.eE+-]+)\s*\]")


@dataclass(frozen=True)
class FrameResult:
    """What ``process_frame`` reports: a one-line summary and the ids of the prompts not answered ``ok``."""

    summary: str
    prompts_not_ok: tuple[str, ...]
    overlay: np.ndarray | None = None  # the frame's annotated image (for --video-out)


def build_parser() -> argparse.ArgumentParser:
    defaults = EngineConfig()
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Segment every object with FastSAM and answer point/box prompts; writes JSON, an overlay "
        "and one mask per prompt for each image.",
        epilog="Prompt files are JSON: a list of prompts for every image, or an object mapping image file names "
        '(e.g. "bus.jpg") to lists; a prompt is {"id": "a", "points": [[x, y]], "labels": [1], '
        '"boxes": [[x1, y1, x2, y2]], "text": "..."}. Video frames are named <video stem>_<frame:06d> and '
        "camera frames camera<index>_<n:06d>; a prompt file may key their lists by that name or by the video's "
        "file name (camera<index> for a camera). Exit status, the first that applies: 2 nothing ran, 1 some "
        "frames failed (unreadable, or a video that ended early), 3 some prompts were not ok (no_match, invalid, "
        "error), 0 all fine (130 on Ctrl-C before a file source ended).",
    )
    parser.add_argument("source", metavar="SOURCE",
                        help="an image, a folder of images, a video file, or a camera index (0, 1, ...)")
    parser.add_argument("--model", default=DEFAULT_MODEL, metavar="M",
                        help=f"FastSAM checkpoint or export (default {DEFAULT_MODEL})")
    parser.add_argument("--device", type=_device, default=defaults.device, metavar="D",
                        help=f"cpu, cuda:0, 0, ... (default {defaults.device})")
    parser.add_argument("--imgsz", type=_positive_int, default=defaults.imgsz, metavar="N",
                        help=f"inference size (default {defaults.imgsz})")
    parser.add_argument("--conf", type=_unit_interval, default=defaults.conf, metavar="C",
                        help=f"instance confidence threshold, 0 to 1 (default {defaults.conf})")
    parser.add_argument("--iou", type=_unit_interval, default=defaults.iou, metavar="I",
                        help=f"NMS IoU threshold, 0 to 1 (default {defaults.iou})")
    parser.add_argument("--backend", choices=BACKENDS, default=defaults.backend,
                        help="auto (the default) exports the checkpoint once to the fastest measured backend "
                        "(OpenVINO on Intel CPUs, ONNX Runtime on others, TensorRT FP16 on CUDA) for the first "
                        "image's shape and caches it; pytorch turns that off")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16", "int8"), default=defaults.precision,
                        help="the CPU export's precision: auto (the default) times what this machine allows and runs "
                        "the fastest that passed; int8 needs --calibration-images and is refused when it disagrees "
                        "with fp32")
    parser.add_argument("--calibration-images", default=defaults.calibration_images, metavar="DIR",
                        help="folder of images that calibrates INT8 and checks it (the last 16 held back)")
    parser.add_argument("--export-cache", default=defaults.export_cache, metavar="DIR",
                        help="folder of cached exports (default $XDG_CACHE_HOME/fastsam_ros or ~/.cache/fastsam_ros)")
    parser.add_argument("--point", action="append", type=_point, default=[], metavar="X,Y[,LABEL]",
                        help="a prompt point (label 1 foreground, the default, or 0 background); repeat for more")
    parser.add_argument("--box", action="append", type=_box, default=[], metavar="X1,Y1,X2,Y2",
                        help="a prompt box; repeat for more. --point and --box together form one prompt 'cli' "
                        "applied to every image")
    parser.add_argument("--text", metavar="TEXT",
                        help="a text prompt, scored with CLIP (joins --box in the 'cli' prompt; not with --point)")
    parser.add_argument("--clip-model", default=ClipConfig.model, metavar="NAME",
                        help=f"open_clip architecture (default "
                        f"{ClipConfig.model}; MobileCLIP-S1 on a Jetson)")
    parser.add_argument("--clip-pretrained", default=ClipConfig.pretrained, metavar="TAG",
                        help=f"open_clip weights tag, downloaded with internet (default {ClipConfig.pretrained})")
    parser.add_argument("--clip-weights", default="", metavar="FILE", help="local CLIP checkpoint (wins over the tag)")
    parser.add_argument("--min-text-score", type=_cosine, default=SelectionParams.min_text_score, metavar="S",
                        help=f"text prompts below this CLIP similarity select nothing (default "
                        f"{SelectionParams.min_text_score})")
    parser.add_argument("--prompts", type=Path, metavar="FILE", help="JSON prompt file (see below)")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), metavar="DIR",
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--max-frames", type=_positive_int, metavar="N",
                        help="stop a video or camera after N frames (a camera otherwise runs until Ctrl-C)")
    parser.add_argument("--reapply", action="store_true",
                        help="video or camera: re-apply the prompts' pixels, box or text to every frame, instead of "
                        "following the objects they first selected (the default)")
    parser.add_argument("--video-out", type=_video_file, metavar="FILE",
                        help="video or camera: also write the annotated frames as a video file (.mp4 or .avi)")
    return parser


def main(argv: Sequence[str] | None = None, *, engine: FastSAMEngine | None = None) -> int:
    """Run the command line; returns the exit status. ``engine`` (for tests) replaces loading ``--model``."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse already printed usage and the problem
        return int(exit_.code or 0)

    try:
        plan = _prompt_plan(args)
    except PromptFileError as error:
        return _fail(str(error))
    try:
        source = open_source(args.source, args.max_frames)
    except SourceError as error:
        return _fail(str(error))
    try:
        try:
            args.out.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            return _fail(f"cannot create output folder {args.out}: {error}")
        if engine is None:
            try:
                engine = _load_engine(args)
            except ModelLoadError as error:
                return _fail(str(error))
        params = SelectionParams(min_text_score=args.min_text_score)
        clip = ClipConfig(model=args.clip_model, pretrained=args.clip_pretrained, weights=args.clip_weights,
                          device=args.device)
        scorer = ClipScorer(clip, log=lambda reason: print(f"{PROG}: warning: text prompts disabled: {reason}",
                                                           file=sys.stderr))  # loads on the first text prompt
        streaming = source.kind in ("video", "camera")
        if args.video_out and not streaming:
            return _fail(f"--video-out needs a video file or a camera, not the {source.kind} {args.source}")
        follower = PromptFollower() if streaming and not args.reapply else None
        video_out = VideoWriter(args.video_out, source.fps) if streaming and args.video_out else None
        try:
            return _run(engine, source, plan, args.out, params, scorer, follower, video_out)
        finally:
            if video_out is not None:
                video_out.close()
    finally:
        source.release()


def _load_engine(args: argparse.Namespace) -> FastSAMEngine:
    config = EngineConfig(model=args.model, device=args.device, imgsz=args.imgsz, conf=args.conf, iou=args.iou,
                          backend=args.backend, export_cache=args.export_cache, precision=args.precision,
                          calibration_images=args.calibration_images)
    engine = FastSAMEngine(config, log=lambda line: print(f"{PROG}: {line}", file=sys.stderr))
    try:
        engine.warmup()  # device and export problems surface here once, not on every image
    except Exception as error:
        raise ModelLoadError(f"could not run model {args.model!r} on device {args.device!r}: "
                             f"{error.__class__.__name__}: {error}") from error
    return engine


def _run(engine: FastSAMEngine, source: Source, plan: PromptPlan, out_dir: Path,
         params: SelectionParams = SelectionParams(), text_scorer: TextScorer | None = None,
         follower: PromptFollower | None = None, video_out: VideoWriter | None = None) -> int:
    done = failed = not_ok = 0
    bar = tqdm(total=source.total, unit="frame" if source.kind in ("video", "camera") else "img", file=sys.stderr,
               disable=source.kind == "image", dynamic_ncols=True)
    try:
        for frame in source.frames:
            if frame.image is None:
                failed += 1
                bar.write(f"{PROG}: error: {frame.error}", file=sys.stderr)
            else:
                try:
                    result = process_frame(engine, frame, plan.for_image(frame.name, frame.alias), out_dir, params,
                                           text_scorer, follower)
                    if video_out is not None:
                        video_out.write(result.overlay)
                except Exception as error:  # one bad frame must not stop a folder or a video
                    failed += 1
                    bar.write(f"{PROG}: error: {frame.name}: {error.__class__.__name__}: {error}", file=sys.stderr)
                else:
                    done += 1
                    not_ok += len(result.prompts_not_ok)
                    if source.kind == "image":
                        print(result.summary)
            bar.update()
    except KeyboardInterrupt:
        bar.close()
        print(f"{PROG}: stopped after {done + failed} frame(s)", file=sys.stderr)
        if source.kind != "camera":
            return EXIT_INTERRUPTED
        return _exit_status(failed, not_ok)  # Ctrl-C is how a camera without --max-frames is meant to stop
    finally:
        bar.close()
    for name in names_not_in(plan, source.names) if source.kind in ("image", "folder") else []:
        print(f"{PROG}: warning: prompt file {plan.source} lists {name!r}, which is not among the images",
              file=sys.stderr)
    if source.kind != "image":
        what = "images" if source.kind == "folder" else "frames"
        print(f"{PROG}: {done} {what} segmented, {failed} failed; results in {out_dir}", file=sys.stderr)
    if not_ok:
        print(f"{PROG}: {not_ok} prompt answer(s) were not ok (see the JSON files' status and reason)",
              file=sys.stderr)
    return _exit_status(failed, not_ok)


def process_frame(engine: FastSAMEngine, frame: Frame, prompts: Sequence[Prompt], out_dir: Path,
                  params: SelectionParams = SelectionParams(),
                  text_scorer: TextScorer | None = None, follower: PromptFollower | None = None) -> FrameResult:
    """Segment one frame, answer its prompts and write its files; with a ``follower`` (the frames of one video or
    camera) each prompt follows the objects it first selected."""
    assert frame.image is not None
    segmentation = engine.segment(frame.image)
    start = time.perf_counter()

    def rules(prompt: Prompt) -> Selection:
        return select(segmentation, prompt, params, frame.image, text_scorer)

    if follower is not None:
        selections = follower.answer(segmentation, frame.image, prompts, rules)
    else:
        selections = [rules(prompt) for prompt in prompts]
    selection_ms = (time.perf_counter() - start) * 1000.0
    start = time.perf_counter()
    overlay = draw_overlay(frame.image, segmentation, selections, prompts)
    overlay_ms = (time.perf_counter() - start) * 1000.0

    record = frame_record(frame.name, segmentation, selections)
    record["timings_ms"].update(selection=round(selection_ms, 3), overlay=round(overlay_ms, 3))
    (out_dir / f"{frame.stem}.json").write_text(dumps(record) + "\n", encoding="utf-8")
    _write_png(out_dir / f"{frame.stem}_overlay.png", overlay)
    for selection in selections:
        path = out_dir / f"{frame.stem}_{selection.prompt_id}.png"
        if selection.ok:
            _write_png(path, selection.union_mask(segmentation.image_shape).astype(np.uint8) * 255)
        else:
            path.unlink(missing_ok=True)  # a mask from an earlier run would contradict the JSON
    answers = ", ".join(f"{s.prompt_id}: {s.status.value}" for s in selections)
    summary = f"{frame.name}: {len(segmentation)} instances" + (f"; {answers}" if answers else "")
    return FrameResult(summary, tuple(s.prompt_id for s in selections if not s.ok), overlay)


def frame_record(name: str, segmentation: Segmentation, selections: Sequence[Selection]) -> dict[str, Any]:
    """The JSON document for one frame (without the CLI's own selection/overlay timings)."""
    height, width = segmentation.image_shape
    timings = segmentation.timings
    return {
        "image": name,
        "width": width,
        "height": height,
        "timings_ms": {
            "preprocess": round(timings.preprocess_ms, 3),
            "inference": round(timings.inference_ms, 3),
            "postprocess": round(timings.postprocess_ms, 3),
            "total": round(timings.total_ms, 3),
        },
        "instances": [
            {
                "index": i,
                "box": [round(float(v), 2) for v in segmentation.boxes[i]],
                "score": round(float(segmentation.scores[i]), 4),
                "area": int(segmentation.areas[i]),
            }
            for i in range(len(segmentation))
        ],
        "prompts": {s.prompt_id: selection_record(s, segmentation.image_shape) for s in selections},
    }


def dumps(record: dict[str, Any]) -> str:
    """Indented JSON with each list of numbers (boxes) kept on one line."""
    text = json.dumps(record, indent=2)
    return _NUMBER_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m.group(1).split(",")) + "]", text)


def selection_record(selection: Selection, image_shape: tuple[int, int]) -> dict[str, Any]:
    """Status and reason, and for ``ok`` the union's box and pixel count and the best object's score."""
    record: dict[str, Any] = {"status": selection.status.value, "reason": selection.reason,
                              "score": None, "bbox": None, "area": None}
    if selection.ok and selection.objects:
        boxes = np.array([obj.box for obj in selection.objects], dtype=np.float64)
        record["score"] = round(max(obj.score for obj in selection.objects), 4)
        record["bbox"] = [float(boxes[:, 0].min()), float(boxes[:, 1].min()),
                          float(boxes[:, 2].max()), float(boxes[:, 3].max())]
        area = selection.objects[0].area if len(selection.objects) == 1 else \
            int(np.count_nonzero(selection.union_mask(image_shape)))
        record["area"] = int(area)
    return record


# --- arguments -------------------------------------------------------------------------------------------------


def _prompt_plan(args: argparse.Namespace) -> PromptPlan:
    """The prompt file's plan, with the ``--point``/``--box`` prompt added to every image."""
    plan = load_prompts(args.prompts) if args.prompts is not None else PromptPlan()
    if not (args.point or args.box or args.text):
        return plan
    cli = Prompt(id=CLI_PROMPT_ID, points=tuple(p[:2] for p in args.point), labels=tuple(p[2] for p in args.point),
                 boxes=tuple(args.box), text=args.text or "")
    return plan.with_common(cli, "--point/--box/--text")


def _numbers(text: str, what: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{what} {text!r} must be comma-separated numbers") from None
    if not all(np.isfinite(values)):
        raise argparse.ArgumentTypeError(f"{what} {text!r} must be finite numbers")
    return values


def _point(text: str) -> tuple[float, float, int]:
    values = _numbers(text, "point")
    if len(values) not in (2, 3):
        raise argparse.ArgumentTypeError(f"point {text!r} must be X,Y or X,Y,LABEL")
    label = FOREGROUND if len(values) == 2 else values[2]
    if label not in (FOREGROUND, BACKGROUND):
        raise argparse.ArgumentTypeError(f"point {text!r}: LABEL must be 1 (foreground) or 0 (background)")
    return values[0], values[1], int(label)


def _box(text: str) -> tuple[float, float, float, float]:
    values = _numbers(text, "box")
    if len(values) != 4:
        raise argparse.ArgumentTypeError(f"box {text!r} must be X1,Y1,X2,Y2")
    return values[0], values[1], values[2], values[3]


def _number_between(text: str, low: float, high: float) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not low <= value <= high:  # also rejects nan
        raise argparse.ArgumentTypeError(f"{text} must be between {low:g} and {high:g}")
    return value


def _unit_interval(text: str) -> float:
    """A threshold on scores or IoU, checked here so a typo fails before the model loads."""
    return _number_between(text, 0.0, 1.0)


def _cosine(text: str) -> float:
    return _number_between(text, -1.0, 1.0)


def _video_file(text: str) -> Path:
    if Path(text).suffix.lower() not in (".mp4", ".avi"):
        raise argparse.ArgumentTypeError(f"{text!r}: the annotated video must be a .mp4 or .avi file")
    return Path(text)


def _device(text: str) -> str:
    try:
        return normalise_device(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


def _write_png(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise OSError(f"could not encode {path.name}")
    path.write_bytes(data.tobytes())


def _fail(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return EXIT_NOT_RUN


def _exit_status(failed: int, prompts_not_ok: int) -> int:
    if failed:
        return EXIT_FRAMES_FAILED
    return EXIT_PROMPTS_NOT_OK if prompts_not_ok else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
