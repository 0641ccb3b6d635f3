"""`edge-rt export`: weights to ONNX or a TensorRT engine."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import setup_logging


def add_export(sub: Any) -> None:
    p = sub.add_parser(
        "export",
        help="export .pt weights to ONNX (fp32/fp16/int8), an OpenVINO IR or a TensorRT engine, and prove parity",
        description="Defaults <- --target profile (export/NAME.yaml) <- flags. With --verify the export and the "
        "original weights run on the same frames; a box match rate below --min-match fails the export.",
    )
    p.add_argument("--weights", "-w", required=True, help="Ultralytics .pt checkpoint")
    p.add_argument("--format", "-f", choices=("onnx", "engine", "openvino"), help="default onnx (or the profile's)")
    p.add_argument("--output", "-o", help="output file (default: next to the weights)")
    p.add_argument(
        "--target",
        "-t",
        metavar="PROFILE",
        help="cpu-fp32, cpu-int8, openvino-fp32, openvino-fp16, openvino-int8, cuda-fp16, trt-fp16, trt-int8, "
        "jetson-orin-fp16, or a YAML path",
    )
    p.add_argument(
        "--imgsz",
        metavar="SIZE|HxW",
        help="input size, a multiple of 32 (default 640), or height x width for a static rectangle: 384x640 fits 16:9 cameras with ~40%% less compute",
    )
    p.add_argument("--half", action="store_const", const="fp16", dest="precision", help="FP16")
    p.add_argument("--int8", action="store_const", const="int8", dest="precision", help="INT8 (needs --calibration)")
    p.add_argument("--calibration", metavar="DIR|VIDEO", help="images or a video to calibrate INT8 on")
    p.add_argument("--calibration-frames", type=int, help="frames taken from it (default 64)")
    p.add_argument("--dynamic", action="store_true", default=None, help="dynamic batch and input size")
    p.add_argument("--max-batch", type=int, help="largest batch (fixed batch for static ONNX)")
    p.add_argument(
        "--graph-preprocess",
        action="store_true",
        default=None,
        help="letterbox inside the graph: the model takes uint8 camera frames, so on a GPU they cross once, as uint8",
    )
    p.add_argument(
        "--nms", action="store_true", default=None, help="NMS inside the graph: output (B, 300, 6), the only copy back from a GPU"
    )
    p.add_argument("--nms-conf", type=float, help="confidence threshold baked into --nms (default 0.25; runs cannot go lower)")
    p.add_argument("--nms-iou", type=float, help="IoU threshold baked into --nms (default 0.7)")
    p.add_argument("--workspace-gb", type=float, help="TensorRT builder workspace (default 4)")
    p.add_argument("--timing-cache", help="TensorRT timing cache file, reused across builds")
    p.add_argument("--verify", action="store_true", help="compare the export with the weights on held-out frames")
    p.add_argument("--verify-source", metavar="DIR|VIDEO", help="frames for --verify (default: the calibration source)")
    p.add_argument("--verify-frames", type=int, default=64, help="frames --verify takes, spread over the source (default 64)")
    p.add_argument("--min-match", type=float, default=0.95, help="box match rate --verify requires (default 0.95)")
    p.set_defaults(handler=_cmd_export)


def _cmd_export(args: argparse.Namespace) -> int:
    from ..exporters import export, imgsz_text, resolve_options

    setup_logging("info")
    options = resolve_options(
        args.target,
        {
            "format": args.format,
            "precision": args.precision,
            "imgsz": args.imgsz,
            "dynamic": args.dynamic,
            "max_batch": args.max_batch,
            "workspace_gb": args.workspace_gb,
            "calibration_frames": args.calibration_frames,
            "graph_preprocess": args.graph_preprocess,
            "nms": args.nms,
            "nms_conf": args.nms_conf,
            "nms_iou": args.nms_iou,
        },
    )
    weights = Path(args.weights)
    ext = {"engine": ".engine", "openvino": ".xml"}.get(options.format, ".onnx")
    suffix = ext if options.format == "engine" else (f"_{options.precision}{ext}" if options.precision != "fp32" else ext)
    output = Path(args.output) if args.output else weights.with_name(weights.stem + suffix)
    verify_frames = None
    if args.verify:
        from ..exporters.calibration import FrameSource

        source = args.verify_source or args.calibration
        if source is None:
            raise ConfigError("--verify needs frames: --verify-source DIR|VIDEO (or --calibration)")
        flag = "--verify-source" if args.verify_source else "--calibration"
        verify_frames = FrameSource(source, args.verify_frames, flag).checked()  # decoded as compared, never all held
    result = export(
        weights,
        output,
        options,
        calibration=Path(args.calibration) if args.calibration else None,
        verify_frames=verify_frames,
        min_match=args.min_match,
        timing_cache=Path(args.timing_cache) if args.timing_cache else None,
        target=args.target,
    )
    extras = "".join(
        f", {name}" for name, on in (("letterbox in graph", options.graph_preprocess), ("NMS in graph", options.nms)) if on
    )
    print(f"exported {result.path} ({options.format}, {options.precision}, imgsz {imgsz_text(options.imgsz)}{extras})")
    if result.parity is not None:
        print(f"parity: {result.parity.summary()}")
    return 0
