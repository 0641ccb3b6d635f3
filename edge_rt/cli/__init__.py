"""`edge-rt <command>`: parse, call the library, print the cause of a failure in one line, exit.

One module per command group. Commands import what they need inside their handler, so
`edge-rt run` never loads torch or Ultralytics and `edge-rt --help` starts fast.

May import: anything in edge_rt; nothing imports it (a tool: the runtime never imports it).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from collections.abc import Sequence

from .. import __version__
from ..errors import EdgeRtError
from . import bench, broker, dataset, export, health, keys, run, train
from .common import Parser
from .doctor import add_doctor
from .draw import add_draw
from .eval import add_eval
from .frigate import add_frigate
from .mqtt import add_mqtt


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="edge-rt", description="Real-time YOLO detection for edge boxes, published over ZeroMQ.")
    parser.add_argument("--version", action="version", version=f"edge-rt {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<command>", parser_class=Parser)
    run.add_run(sub)
    run.add_subscribe(sub)
    run.add_schema(sub)
    export.add_export(sub)
    train.add_train(sub)
    train.add_tune(sub)
    add_eval(sub)
    dataset.add_dataset(sub)
    run.add_demo(sub)
    bench.add_bench(sub)
    keys.add_keys(sub)
    broker.add_broker(sub)
    health.add_health(sub)
    add_draw(sub)
    add_frigate(sub)
    add_mqtt(sub)
    add_doctor(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # argparse would name the top-level parser, whose help does not list the command's flags
        _deepest(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "handler", None):
        parser.print_help()
        return 2
    try:
        return int(args.handler(args) or 0)
    except EdgeRtError as exc:
        print(f"edge-rt {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `edge-rt dataset check ... | head`: the reader left. Python's documented way out: point stdout at
        # devnull so the flush at exit does not raise a second time, and exit as a pipe-killed command does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _deepest(parser: argparse.ArgumentParser, args: argparse.Namespace) -> argparse.ArgumentParser:
    """The (sub)parser of the command the user typed, e.g. `edge-rt bench report`'s."""
    while True:
        action = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        chosen = getattr(args, action.dest, None) if action is not None else None
        if action is None or chosen not in action.choices:
            return parser
        parser = action.choices[chosen]


def entrypoint() -> None:
    code = main()
    stuck = [t.name for t in threading.enumerate() if t.name.startswith("edge_rt-") and t.is_alive()]  # the runtime's own threads
    if stuck:
        # A thread still inside native code (an engine call that hung, a read on a frozen camera) makes
        # a normal interpreter exit abort in C++ destructors (SIGABRT, exit 134): leave without them.
        logging.getLogger("edge_rt").debug("exiting past threads that did not finish: %s", ", ".join(stuck))
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    entrypoint()
