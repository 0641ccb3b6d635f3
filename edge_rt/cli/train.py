"""`edge-rt train`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import setup_logging


def add_train(sub: Any) -> None:
    p = sub.add_parser("train", help="fine-tune a YOLO detector with Ultralytics, then export it to ONNX")
    p.add_argument("--data", required=True, help="dataset YAML (Ultralytics format)")
    p.add_argument("--model", default="yolo11n.yaml", help="a .pt checkpoint to fine-tune or a model YAML (default yolo11n.yaml)")
    p.add_argument("--epochs", type=int, default=50)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ... (default cpu)")
    p.add_argument("--project", default="runs/train")
    p.add_argument("--name", default="exp")
    p.set_defaults(handler=_cmd_train)


def _cmd_train(args: argparse.Namespace) -> int:
    from ..training.train import format_metrics, train

    setup_logging("info")
    for flag in ("epochs", "imgsz", "batch"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    model = args.model
    if model.endswith(".pt") and not Path(model).is_file():
        import os

        if os.environ.get("YOLO_OFFLINE"):
            raise ConfigError(f"--model {model}: no such file, and YOLO_OFFLINE is set so Ultralytics cannot fetch it")
    try:
        result = train(Path(args.data), model, args.epochs, args.imgsz, args.batch, args.device, Path(args.project), args.name)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"best weights: {result.best_weights}")
    print(f"onnx:         {result.onnx}")
    print(format_metrics(result.metrics))
    return 0
