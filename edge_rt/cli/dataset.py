"""`edge-rt dataset`: make, check and prepare datasets."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import Parser


def add_dataset(sub: Any) -> None:
    p = sub.add_parser("dataset", help="make a synthetic dataset, or check one")
    dsub = p.add_subparsers(dest="action", metavar="<action>", parser_class=Parser, required=True)
    s = dsub.add_parser("synth", help="write a synthetic shapes dataset (Ultralytics format) to OUT")
    s.add_argument("out")
    s.add_argument("--images", type=int, default=400)
    s.add_argument("--imgsz", type=int, default=320)
    s.add_argument("--seed", type=int, default=0)
    c = dsub.add_parser("check", help="check a dataset YAML, its folders and labels")
    c.add_argument("data")
    v = dsub.add_parser("clip", help="write a moving-shapes video (mp4) for demos and benchmarks")
    v.add_argument("out")
    v.add_argument("--frames", type=int, default=300)
    v.add_argument("--size", default="640x360", metavar="WxH")
    v.add_argument("--fps", type=int, default=30)
    v.add_argument("--seed", type=int, default=7)
    p.set_defaults(handler=_cmd_dataset)


def _cmd_dataset(args: argparse.Namespace) -> int:
    from ..training.dataset import check_dataset
    from ..training.synth import synth_clip, synth_dataset

    if args.action == "clip":
        try:
            w, h = (int(v) for v in args.size.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--size {args.size!r}: expected WIDTHxHEIGHT, e.g. 640x360") from None
        if args.frames < 1 or args.fps < 1 or w < 32 or h < 32:
            raise ConfigError("--frames and --fps must be >= 1, the size at least 32x32")
        print(synth_clip(Path(args.out), frames=args.frames, size=(w, h), fps=args.fps, seed=args.seed))
        return 0
    if args.action == "synth":
        if args.images < 2 or args.imgsz < 32:
            raise ConfigError("--images must be >= 2 and --imgsz >= 32")
        print(synth_dataset(Path(args.out), images=args.images, imgsz=args.imgsz, seed=args.seed))
        return 0
    problems = check_dataset(Path(args.data))
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        raise ConfigError(f"dataset {args.data!r}: {len(problems)} problem(s), listed above")
    print(f"dataset {args.data}: OK")
    return 0
