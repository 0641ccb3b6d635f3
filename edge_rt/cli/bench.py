"""`edge-rt bench engine|pipeline|compare|publish|track|objects|report`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import DEVICE_HELP, HINT_CHOICES, PRECISION_CHOICES, PRECISION_HELP, Parser, device_arg, setup_logging


def add_bench(sub: Any) -> None:
    p = sub.add_parser(
        "bench",
        help="measure: the engine alone, the whole pipeline, edge_rt vs Ultralytics, the publisher, trackers against ground truth, "
        "tracking's cost, and one report of all of it to send",
    )
    bsub = p.add_subparsers(dest="what", metavar="<what>", parser_class=Parser, required=True)
    e = bsub.add_parser("engine", help="the engine alone, like trtexec: latency per call and per image, throughput")
    e.add_argument("--model", "-m", action="append", required=True, help="repeat to compare models side by side")
    e.add_argument("--batch", default="1", help="comma-separated batch sizes (default 1)")
    e.add_argument("--device", action="append", type=device_arg, metavar="DEVICE", help=f"{DEVICE_HELP}; repeat to compare devices (default cpu)")
    e.add_argument(
        "--engine-hint",
        choices=("latency", "throughput"),
        default="latency",
        help="OpenVINO: latency times one call at a time; throughput keeps one request per stream in flight (default latency)",
    )
    e.add_argument("--engine-precision", choices=PRECISION_CHOICES, default="auto", help=PRECISION_HELP)
    e.add_argument(
        "--shape",
        metavar="HxW",
        help="input size for dynamic-shape models, e.g. 384x640 (default: export size; fixed-shape models keep theirs)",
    )
    e.add_argument(
        "--frame-size",
        metavar="WxH",
        default="1280x720",
        help="camera frames fed to models that letterbox in their graph (exported with --graph-preprocess); default 1280x720",
    )
    e.add_argument("--iters", type=int, default=200, help="timed calls per batch size (default 200)")
    e.add_argument("--warmup", type=int, default=20, help="untimed calls first (default 20)")
    e.add_argument("--threads", type=int, help="CPU threads for ONNX Runtime (default: all cores)")
    e.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    pp = bsub.add_parser("pipeline", help="the whole runtime, measured at a real ZeroMQ subscriber")
    pp.add_argument("--model", "-m", required=True, help="the model the pipeline runs (.onnx or a TensorRT .engine)")
    pp.add_argument("--source", "-s", action="append", default=[], help="files loop; repeat for several (or use --synthetic)")
    pp.add_argument(
        "--synthetic",
        type=int,
        default=0,
        metavar="N",
        help="add N synthetic cameras (in-memory frames: no decoding is measured); without --fps they offer 1.5x the bare engine's rate",
    )
    pp.add_argument("--frame-size", metavar="WxH", default="1280x720", help="size of the synthetic frames (default 1280x720)")
    pp.add_argument("--fps", type=float, help="pace sources like cameras (default: as fast as the pipeline goes)")
    pp.add_argument("--duration", type=float, default=20.0, help="seconds measured, after a 2 s warm-up")
    pp.add_argument("--device", default="cpu", type=device_arg, metavar="DEVICE", help=f"where the engine runs: {DEVICE_HELP} (default cpu)")
    pp.add_argument("--engine-hint", choices=HINT_CHOICES, default="auto", help="OpenVINO's hint, as `run --engine-hint` (default auto)")
    pp.add_argument("--engine-precision", choices=PRECISION_CHOICES, default="auto", help=PRECISION_HELP)
    pp.add_argument("--max-batch", type=int, help="largest batch per engine call (default: the model's, or one frame per source)")
    pp.add_argument("--track", action="store_true", help="run with tracking on: the tracker's own stage shows as `track`")
    pp.add_argument(
        "--record",
        metavar="DIR",
        help="run with event clips written to DIR (as `run --record`; turns tracking on): compare with and without it",
    )
    pp.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    pp.add_argument("--plot", metavar="FILE.png", help="plot capture -> subscriber latency over the run")
    c = bsub.add_parser("compare", help="the same clip through edge_rt and through Ultralytics' streaming predict")
    c.add_argument("--model", "-m", required=True, help="the model edge_rt runs")
    c.add_argument("--source", "-s", required=True, help="a video file")
    c.add_argument("--reference", help="what Ultralytics runs (default: the same model), e.g. the original .pt")
    c.add_argument(
        "--device",
        default="cpu",
        type=device_arg,
        metavar="DEVICE",
        help=f"where edge_rt runs ({DEVICE_HELP}); on a GPU, Ultralytics' .pt runs with PyTorch on device 0 (default cpu)",
    )
    c.add_argument(
        "--reference-export",
        metavar="PATH",
        help="also time Ultralytics' own export of --reference, e.g. its OpenVINO INT8 folder (yolov8s_int8_openvino_model/) "
        "or an .onnx: the ratio is then against it, and its boxes are scored against the .pt's too",
    )
    c.add_argument("--engine-hint", choices=HINT_CHOICES, default="auto", help="OpenVINO's hint for edge_rt, as `run --engine-hint` (default auto)")
    c.add_argument("--engine-precision", choices=PRECISION_CHOICES, default="auto", help=PRECISION_HELP)
    c.add_argument("--imgsz", type=int, help="Ultralytics' input size (default: the model's)")
    c.add_argument("--rounds", type=int, default=1, help="run both this many times, alternating; report the medians (default 1)")
    c.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    t = bsub.add_parser(
        "track",
        help="trackers against ground truth: edge_rt's ByteTracker, Ultralytics' ByteTrack and BoT-SORT on the same detections",
        description="Runs the detector once over every frame of the clip (conf 0.1, as Ultralytics' track mode), feeds the same "
        "boxes to each tracker (every frame, or every k-th with --every), and scores each with TrackEval against a "
        "MOTChallenge ground-truth file (HOTA, DetA, AssA, MOTA, IDF1, ID switches). --messages scores a recorded "
        "`edge-rt run --track` (the JSON lines `edge-rt subscribe` prints). Make a clip and its ground truth with "
        "`edge-rt dataset clip OUT.mp4 --tracks` (shapes) or `--tracks --people SCENE` (people, with the true crossings of a "
        "line, which are then counted too). Several --source: a table each, then the mean.",
    )
    t.add_argument("--model", "-m", help="the detector (with --source)")
    t.add_argument(
        "--source",
        "-s",
        action="append",
        help="the video file the ground truth describes (with --model); repeat for several clips: a table each, then the mean",
    )
    t.add_argument(
        "--gt",
        action="append",
        help="MOTChallenge ground truth: frame,id,left,top,width,height,conf,class,visibility (default: the source's "
        "<stem>.gt.txt beside it, as `edge-rt dataset clip --tracks` writes it); one per --source",
    )
    t.add_argument(
        "--lines",
        help="true line crossings to count against (default: the source's <stem>.lines.json where it exists; "
        "`dataset clip --tracks --people` writes one)",
    )
    t.add_argument("--every", default="1,2", help="give the trackers every k-th frame, comma-separated (default 1,2)")
    t.add_argument(
        "--trackers",
        default="edge_rt,bytetrack,botsort",
        help="which trackers, comma-separated: edge_rt, bytetrack, botsort (default all three)",
    )
    t.add_argument("--messages", help="also score a recorded run: `edge-rt subscribe` output of `edge-rt run --track`")
    t.add_argument("--imgsz", type=int, help="model input size (dynamic-shape models only)")
    t.add_argument("--conf", type=float, default=0.1, help="detector threshold (default 0.1, as Ultralytics' track mode)")
    t.add_argument("--device", default="cpu", type=device_arg, metavar="DEVICE", help=f"where the detector runs: {DEVICE_HELP} (default cpu)")
    t.add_argument("--fps", type=float, help="the clip's frame rate, where the file does not say")
    t.add_argument(
        "--min-visibility",
        type=float,
        default=0.0,
        help="ignore ground-truth boxes less visible than this (0..1), and tracker boxes on them (default 0: score all)",
    )
    t.add_argument("--json", metavar="FILE", help="also write the scores as JSON")
    o = bsub.add_parser(
        "objects",
        help="what tracking costs per frame: tracker, a zone, a line and events on N moving objects (no model)",
        description="Times the objects stage alone (ByteTrack, one zone, one line and their events) on synthetic "
        "boxes: N objects moving across a 1920x1080 frame, for each N of --objects. Prints milliseconds per frame "
        "(p50, p95, p99) and the events raised. Loads no model and opens no source: it is what --track adds to each frame.",
    )
    o.add_argument("--objects", default="20,200", help="objects per frame, comma-separated (default 20,200)")
    o.add_argument("--frames", type=int, default=600, help="frames measured per count, after 60 of warm-up (default 600)")
    o.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    pub = bsub.add_parser("publish", help="publisher throughput and publish-to-subscriber latency over tcp loopback")
    pub.add_argument("--count", type=int, default=100_000, help="messages for the throughput part (default 100000, at least 1000)")
    pub.add_argument("--rate", type=float, default=2000.0, help="paced rate for the latency part (messages/s)")
    pub.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    r = bsub.add_parser(
        "report",
        help="one report to send: doctor, parity with Ultralytics, engine, pipeline with 1/8/16 cameras, edge_rt vs "
        "Ultralytics; writes NAME.md and NAME.json",
        description="Runs `edge-rt doctor`, the parity check on the images Ultralytics ships (bus.jpg, zidane.jpg), "
        "`bench engine` at batch 1,4,8, `bench pipeline` with 1, 8 and 16 synthetic cameras and `bench compare` on a "
        "synthetic clip, and writes one Markdown and one JSON file with the box's hardware, versions and each section's "
        "figures. A section that cannot run here (no Ultralytics) is skipped with the reason; one that fails is recorded "
        "with its error and the next still runs. Exit 0 when every section ran or was skipped, 1 when the doctor found "
        "the box broken or a section failed; a missing model or an unknown device is one line before anything runs.",
    )
    r.add_argument("--model", "-m", help="the model to measure (default: the demo model, models/demo/demo_dynamic.onnx in a checkout)")
    r.add_argument(
        "--device", default="auto", type=device_arg, metavar="DEVICE", help=f"where edge_rt runs: {DEVICE_HELP} (default auto: the fastest here)"
    )
    r.add_argument("--quick", action="store_true", help="smoke-test sizes: the whole report in under a minute on a small CPU")
    r.add_argument("--duration", type=float, metavar="SEC", help="seconds measured per pipeline run (default 10; 1 with --quick)")
    r.add_argument(
        "--output", "-o", metavar="NAME", help="write NAME.md and NAME.json (default edge-rt-report-<hostname>-<date>-<time>)"
    )
    r.add_argument("--json", metavar="FILE", help="write the JSON here instead of NAME.json")
    p.set_defaults(handler=_cmd_bench)


def _cmd_bench(args: argparse.Namespace) -> int:
    from .. import bench as bench_lib

    setup_logging("warning")
    if args.what == "report":
        return _cmd_report(args)
    if args.what == "engine":
        try:
            batches = [int(b) for b in args.batch.split(",")]
        except ValueError:
            raise ConfigError(f"--batch {args.batch!r}: expected comma-separated integers, e.g. 1,2,4,8") from None
        if any(b < 1 for b in batches):
            raise ConfigError("--batch sizes must be >= 1")
        results = []
        for model in args.model:
            for device in args.device or ["cpu"]:
                results += bench_lib.bench_engine(
                    Path(model),
                    device,
                    batches,
                    args.iters,
                    args.warmup,
                    bench_lib.parse_shape(args.shape),
                    args.threads,
                    bench_lib.parse_frame_size(args.frame_size),
                    hint=args.engine_hint,
                    precision=_precision(args),
                )
        print(bench_lib.engine_table(results))
        out: Any = results
    elif args.what == "pipeline":
        out = bench_lib.bench_pipeline(
            Path(args.model),
            args.source,
            args.fps,
            args.duration,
            args.device,
            args.max_batch,
            synthetic=args.synthetic,
            frame_size=bench_lib.parse_frame_size(args.frame_size),
            track=args.track,
            record=args.record,
            hint=args.engine_hint,
            precision=_precision(args),
        )
        print(bench_lib.pipeline_table(out))
        if args.record:
            clips = sorted(Path(args.record).glob("*/*.mp4"))
            size = sum(c.stat().st_size for c in clips) / 1e6
            print(f"recorded {len(clips)} clip(s), {size:.1f} MB, in {args.record}")
        if args.plot:
            print(f"plot: {bench_lib.plot_pipeline(out, Path(args.plot))}")
    elif args.what == "compare":
        out = bench_lib.bench_compare(
            Path(args.model),
            args.source,
            Path(args.reference) if args.reference else None,
            args.device,
            args.imgsz,
            args.rounds,
            reference_export=Path(args.reference_export) if args.reference_export else None,
            hint=args.engine_hint,
            precision=_precision(args),
        )
        print(bench_lib.compare_table(out))
    elif args.what == "track":
        return _bench_track(args)
    elif args.what == "objects":
        from ..bench.objects import bench_objects, objects_table

        try:
            counts = [int(x) for x in args.objects.split(",")]
        except ValueError:
            raise ConfigError(f"--objects {args.objects!r}: expected numbers, e.g. 20,200") from None
        out = bench_objects(counts, args.frames)
        print(objects_table(out))
    else:
        if args.count < 1000 or args.rate <= 0:
            raise ConfigError("--count must be >= 1000 and --rate > 0")
        out = bench_lib.bench_publish(args.count, args.rate)
        print(bench_lib.publish_table(out))
    if getattr(args, "json", None):
        bench_lib.write_json(out, Path(args.json))
        print(f"json: {args.json}")
    return 0


def _precision(args: argparse.Namespace) -> str | None:
    return None if args.engine_precision == "auto" else str(args.engine_precision)


def _cmd_report(args: argparse.Namespace) -> int:
    import os
    import sys

    from ..bench.report import ReportSettings, report_paths, run_report, write_report
    from ..demo import default_model
    from ..errors import ModelError

    if args.duration is not None and args.duration <= 0:
        raise ConfigError(f"--duration {args.duration:g}: must be > 0")
    # the dynamic-batch demo model: the engine and pipeline sections then measure batches, not batch 1 only
    model = Path(args.model) if args.model else default_model().with_name("demo_dynamic.onnx")
    if not args.model and not model.is_file():
        raise ModelError(f"the demo model {model} is not here (it ships in the repository, not in the package): pass --model FILE.onnx")
    md, js = report_paths(args.output, args.json)
    # Ultralytics (the parity and compare sections) logs `Loading ...` to stdout, which holds only the two paths.
    os.environ.setdefault("YOLO_VERBOSE", "False")
    settings = ReportSettings.make(model, args.device, args.quick, args.duration)
    report = run_report(settings, progress=lambda line: print(line, file=sys.stderr, flush=True))
    write_report(report, md, js)
    print(f"report: {md}\njson: {js}")
    for problem in report.problems:
        print(f"edge-rt bench report: {problem}", file=sys.stderr)
    return report.exit_code


def _bench_track(args: argparse.Namespace) -> int:
    """One clip: its table; several: a table each, then the mean (and --json holds all of them)."""
    from .. import bench as bench_lib
    from ..bench.track import bench_track, parse_every, parse_trackers
    from ..bench.track_table import mean_table, track_table
    from ..training.synth_tracks import gt_path

    sources = [Path(s) for s in args.source or []]
    gts = [Path(g) for g in args.gt or []]
    if gts and sources and len(gts) != len(sources):
        raise ConfigError(
            f"{len(sources)} --source and {len(gts)} --gt: give one --gt per --source, or none (each clip's <stem>.gt.txt)"
        )
    if not gts:
        if not sources:
            raise ConfigError("--gt: the ground truth to score against (or --source with its <stem>.gt.txt beside it)")
        gone = [s for s in sources if not s.is_file()]
        if gone:  # its ground truth is looked for beside it: name the clip, not a .gt.txt the user never typed
            raise ConfigError(f"--source {str(gone[0])!r}: no such file; pass the clip the ground truth describes")
        gts = [gt_path(s) for s in sources]
        missing = [g for g in gts if not g.is_file()]
        if missing:
            raise ConfigError(
                f"--gt not given and {str(missing[0])!r} does not exist; pass --gt, or make the clip with `edge-rt dataset clip OUT.mp4 --tracks`"
            )
    if len(gts) > 1 and (args.messages or args.lines):
        raise ConfigError("--messages and --lines score one clip; pass one --source")
    results = []
    for i, gt in enumerate(gts):
        source = sources[i] if sources else None
        out = bench_track(
            gt,
            Path(args.model) if args.model else None,
            source,
            parse_every(args.every),
            args.imgsz,
            parse_trackers(args.trackers),
            Path(args.messages) if args.messages else None,
            args.conf,
            args.device,
            args.min_visibility,
            args.fps,
            Path(args.lines) if args.lines else None,  # bench_track finds <stem>.lines.json beside the source itself
        )
        print(track_table(out))
        results.append(out)
        if len(gts) > 1:
            print()
    if len(results) > 1:
        print(mean_table(results))
    if args.json:
        bench_lib.write_json(results[0] if len(results) == 1 else results, Path(args.json))
        print(f"json: {args.json}")
    return 0
