"""`edge-rt doctor`: the first command on a new box (see edge_rt/doctor/checks.py)."""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from typing import Any


def add_doctor(sub: Any) -> None:
    p = sub.add_parser(
        "doctor",
        help="check this box: packages, OpenCV's build, ONNX Runtime providers (loaded for real), the NVIDIA driver "
        "against cuda-python, TensorRT, Jetson power mode, ZeroMQ CURVE, cameras, disk",
        description="One line per thing checked, and for each that is off the line that fixes it. Exit 0 when the box "
        "can run edge_rt on what it has (a CPU box without a GPU included), 1 when something it needs is broken.",
    )
    p.add_argument("--json", action="store_true", help="print the checks as JSON (a list of {area, status, found, fix})")
    p.set_defaults(handler=_cmd_doctor)


def _cmd_doctor(args: argparse.Namespace) -> int:
    from ..doctor import healthy, run_checks

    checks = run_checks()
    ok = healthy(checks)
    if args.json:
        print(json.dumps({"healthy": ok, "checks": [asdict(c) for c in checks]}, indent=2))
        return 0 if ok else 1
    width = max(len(c.area) for c in checks)
    for c in checks:
        print(f"{c.status:<5} {c.area:<{width}}  {c.found}")
        if c.fix and c.status != "ok":
            print(f"{'':<5} {'':<{width}}  fix: {c.fix}")
    print("this box can run edge_rt" if ok else "this box cannot run edge_rt as it is: see the 'fail' lines")
    return 0 if ok else 1
