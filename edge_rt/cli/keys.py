"""`edge-rt keys`: a CURVE key pair in ZeroMQ's certificate format, for the publisher or a client."""

from __future__ import annotations

import argparse
from typing import Any


def add_keys(sub: Any) -> None:
    p = sub.add_parser(
        "keys",
        help="create a CURVE key pair (NAME.key, NAME.key_secret) for `run --curve-*` and `subscribe --curve-*`",
        description="Writes DIR/NAME.key (public: give it to the other side) and DIR/NAME.key_secret "
        "(secret, mode 0600: keep it on this machine) in ZeroMQ's certificate format. The publisher "
        "runs with --curve-secret-key box.key_secret --curve-allow DIR_OF_CLIENT_KEYS; a client "
        "subscribes with --curve-server-key box.key --curve-secret-key client.key_secret.",
    )
    p.add_argument("name", metavar="NAME", help="file name without suffix, e.g. the box's or the client's name")
    p.add_argument("--dir", "-d", required=True, metavar="DIR", help="where to write the two files (created if missing)")
    p.add_argument("--force", action="store_true", help="replace an existing key pair of that name")
    p.set_defaults(handler=_cmd_keys)


def _cmd_keys(args: argparse.Namespace) -> int:
    from ..wire.security import create_keys

    public, secret = create_keys(args.name, args.dir, force=args.force)
    print(public)
    print(secret)
    return 0
