"""`edge-rt eval`: the accuracy (and speed) of a deployed model file, or of several side by side."""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..training.evaluate import EvalResult


def add_eval(sub: Any) -> None:
    p = sub.add_parser(
        "eval",
        help="precision, recall and mAP of a .pt, ONNX or TensorRT model on a dataset split, as deployed",
        description="Score a model file through edge_rt's own engine, letterbox and NMS (what `edge-rt run` publishes) "
        "with Ultralytics' metric code, or compare several files of one model by accuracy, speed and size.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--model", help="a .pt, .onnx or TensorRT .engine file")
    which.add_argument("--compare", nargs="+", metavar="MODEL", help="two or more model files, e.g. A.pt B.onnx C-int8.onnx")
    p.add_argument("--data", required=True, help="dataset YAML (Ultralytics format) whose labels are the ground truth")
    p.add_argument("--split", default="val", choices=("val", "test", "train"), help="which split to score (default val)")
    p.add_argument("--imgsz", type=int, help="input size for a .pt or dynamic-shape export (default: the model's)")
    p.add_argument("--batch", type=int, help="images per engine call (default: the model's fixed batch, else 1)")
    p.add_argument("--conf", type=float, default=0.001, help="confidence threshold (default 0.001, as yolo val)")
    p.add_argument("--iou", type=float, default=0.7, help="NMS IoU threshold (default 0.7, as yolo val)")
    p.add_argument("--max-det", type=int, default=300, help="boxes kept per image (default 300)")
    p.add_argument(
        "--cm-conf", type=float, default=0.25, help="confidence from which boxes count in the confusion matrix (default 0.25)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or tensorrt (a .pt: cpu or cuda); default auto")
    p.add_argument("--json", type=Path, help="write every figure to this JSON file")
    p.add_argument("--plots", type=Path, help="write confusion_matrix.png, PR_curve.png and F1_curve.png here")
    p.set_defaults(handler=_cmd_eval)


def _cmd_eval(args: argparse.Namespace) -> int:
    from ..training.evaluate import compare, evaluate, results_json

    options: dict[str, Any] = dict(
        imgsz=args.imgsz,
        batch=args.batch,
        conf=args.conf,
        iou=args.iou,
        max_det=args.max_det,
        device=args.device,
        confusion_conf=args.cm_conf,
    )
    for flag, value in (("imgsz", args.imgsz), ("batch", args.batch), ("max-det", args.max_det)):
        if value is not None and value < 1:
            raise ConfigError(f"--{flag} {value}: must be >= 1")
    if args.json is not None and not args.json.parent.is_dir():
        raise ConfigError(f"--json {args.json}: folder {args.json.parent} does not exist; create it or pick another path")
    if args.plots is not None:  # before minutes of evaluation, not after
        try:
            args.plots.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"--plots {args.plots}: cannot create the folder ({exc.strerror}); pick another path") from None
    if args.model:
        result = evaluate(Path(args.model), Path(args.data), args.split, **options)
        print(format_report(result))
        results: Sequence[EvalResult] = (result,)
        document = results_json(result)
    else:
        results = compare([Path(m) for m in args.compare], Path(args.data), args.split, **options)
        for r in results:
            print(format_report(r), end="\n\n")
        print(format_compare(results))
        document = results_json(results)
    if args.plots is not None:
        _plots(results, args.plots)
    if args.json is not None:
        try:
            args.json.write_text(json.dumps(document, indent=1) + "\n")
        except OSError as exc:
            raise ConfigError(f"--json {args.json}: cannot write it ({exc.strerror}); pick another path") from None
        print(f"json: {args.json}")
    return 0


def _plots(results: Sequence[EvalResult], folder: Path) -> None:
    from ..training.eval_plots import write_plots

    labels = _labels(results)
    for r, label in zip(results, labels):
        target = folder / label.strip("/").replace("/", "_").replace(".", "_") if len(results) > 1 else folder
        written = write_plots(r, target)
        print(f"plots: {', '.join(str(p) for p in written)}")


def _labels(results: Sequence[EvalResult]) -> list[str]:
    """File names, or the paths as given where two files share a name (runs/a/best.onnx, runs/b/best.onnx)."""
    names = [r.model.name for r in results]
    return names if len(set(names)) == len(names) else [str(r.model) for r in results]


def format_report(r: EvalResult) -> str:
    """Ultralytics val's table (all, then one row per class with labels), with how it was run above it."""
    head = f"{r.model} ({r.kind}, {r.device}) on {r.data.name} {r.split}: imgsz {r.imgsz[0]}x{r.imgsz[1]}, batch {r.batch}, conf {r.conf:g}, iou {r.iou:g}"
    row = "{:>16} {:>7} {:>10} {:>7} {:>7} {:>7} {:>9}"
    lines = [head, row.format("class", "images", "instances", "P", "R", "mAP50", "mAP50-95")]
    lines.append(row.format("all", r.images, r.instances, *(f"{v:.3f}" for v in (r.precision, r.recall, r.map50, r.map50_95))))
    for c in r.per_class:
        lines.append(
            row.format(c.name[:16], c.images, c.instances, *(f"{v:.3f}" for v in (c.precision, c.recall, c.map50, c.map50_95)))
        )
    s = r.speed
    lines.append(
        f"speed: {s.preprocess_ms:.1f} ms preprocess, {s.inference_ms:.1f} ms inference, {s.postprocess_ms:.1f} ms postprocess "
        f"per image (medians over {s.batches} batches after warm-up)"
    )
    lines += [f"note: {n}" for n in r.notes]
    return "\n".join(lines)


def format_compare(results: Sequence[EvalResult]) -> str:
    """One line per file: accuracy, the mAP50-95 it loses against the first file, speed and size."""
    labels = _labels(results)
    name_w = max(5, *(len(label) for label in labels))
    kind_w = max(6, *(len(r.kind) for r in results))
    row = f"{{:<{name_w}}} {{:<{kind_w}}} {{:>8}} {{:>6}} {{:>6}} {{:>6}} {{:>8}} {{:>8}} {{:>9}} {{:>9}}"
    lines = [row.format("model", "format", "size MB", "P", "R", "mAP50", "mAP50-95", "d mAP", "infer ms", "total ms")]
    base = results[0].map50_95
    for i, (r, label) in enumerate(zip(results, labels)):
        delta = "-" if i == 0 else f"{r.map50_95 - base:+.3f}"
        lines.append(
            row.format(
                label,
                r.kind,
                f"{r.file_bytes / 1e6:.1f}",
                *(f"{v:.3f}" for v in (r.precision, r.recall, r.map50, r.map50_95)),
                delta,
                f"{r.speed.inference_ms:.2f}",
                f"{r.speed.total_ms:.2f}",
            )
        )
    devices = sorted({r.device for r in results})
    lines.append(
        f"{results[0].images} images of {results[0].data.name} {results[0].split}; d mAP = mAP50-95 minus the first row's; "
        f"ms per image, medians after warm-up, on {', '.join(devices)}"
    )
    return "\n".join(lines)
