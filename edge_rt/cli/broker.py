"""`edge-rt broker`: fan-in for a fleet, one address for every box's detections (see edge_rt/wire/broker.py)."""

from __future__ import annotations

import argparse
import logging
from typing import Any

from ..ops.systemd import Notifier
from .common import add_service_options, on_signals, setup_logging

log = logging.getLogger("edge_rt.broker")


def add_broker(sub: Any) -> None:
    p = sub.add_parser(
        "broker",
        help="forward many boxes' detections to one address (ZeroMQ XSUB/XPUB proxy)",
        description="Boxes publish to the frontend, consumers subscribe at the backend; topics (camera names, "
        "BOX/camera from a box run with --name) and payloads pass unchanged, and subscriptions (new $health "
        "subscribers included) reach every box. The broker binds both sides and boxes dial it (`edge-rt run --publish "
        "connect:tcp://BROKER:5556`); 'connect:ENDPOINT' as a frontend dials a box that binds its own port instead. "
        "Exit 0 on SIGTERM/SIGINT.",
    )
    p.add_argument(
        "--frontend",
        "-f",
        action="append",
        required=True,
        metavar="[connect:]ENDPOINT",
        help="where boxes publish: bind this (e.g. tcp://*:5556), or connect:tcp://BOX:5555 to dial a box; repeatable",
    )
    p.add_argument(
        "--backend", "-b", required=True, metavar="ENDPOINT", help="where consumers subscribe: bind this (e.g. tcp://*:5555)"
    )
    p.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="the broker's NAME.key_secret (from `edge-rt keys`): CURVE on both sides; needs --curve-allow",
    )
    p.add_argument(
        "--curve-allow",
        metavar="DIR",
        help="with CURVE, admit only the consumers whose public NAME.key files are in DIR (and the boxes too, "
        "unless --curve-allow-publishers is given)",
    )
    p.add_argument(
        "--curve-allow-publishers", metavar="DIR", help="with CURVE, the boxes' public NAME.key files allowed to publish"
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="allow endpoints other machines can reach without CURVE (anyone could publish and read)",
    )
    add_service_options(p, "message counts")
    p.set_defaults(handler=_cmd_broker)


def _cmd_broker(args: argparse.Namespace) -> int:
    from ..errors import ConfigError
    from ..wire.broker import Broker, BrokerConfig, BrokerKeys, Endpoint

    keys = None
    if args.curve_secret_key or args.curve_allow or args.curve_allow_publishers:
        if not (args.curve_secret_key and args.curve_allow):
            missing = "--curve-allow DIR" if args.curve_secret_key else "--curve-secret-key FILE"
            raise ConfigError(f"{missing} is missing: CURVE needs the broker's secret key file and the consumers' public keys")
        keys = BrokerKeys.load(args.curve_secret_key, args.curve_allow, args.curve_allow_publishers)
    config = BrokerConfig(
        frontends=tuple(Endpoint.parse(f, "--frontend") for f in args.frontend),
        backend=Endpoint.parse(args.backend, "--backend", allow_connect=False),
        keys=keys,
        insecure=args.insecure,
        stats_interval=args.stats_interval,
    ).check()
    setup_logging(args.log_level, args.log_format)
    with Broker(config) as broker:
        on_signals(broker.stop)
        frontends = ", ".join(str(f) for f in config.frontends)
        curve = (
            f"CURVE on (publishers from {keys.publishers_dir}, consumers from {keys.server.allow_dir})" if keys else "no CURVE"
        )
        log.info("broker: boxes publish to %s, consumers subscribe at %s, %s", frontends, config.backend, curve)
        if keys is None and args.insecure:
            log.warning("--insecure: forwarding unencrypted; anyone who reaches these ports can publish and read")
        notifier = Notifier.from_env()
        if notifier is not None:  # Type=notify: READY once bound; WATCHDOG while the proxy loop lives
            notifier.send(ready="1", status=f"forwarding {frontends} -> {config.backend}")
        stats = broker.run(notifier.pinger() if notifier is not None else None)
        if notifier is not None:
            notifier.send(stopping="1", status="stopping")
            notifier.close()
    log.info("broker stopped: %d messages from boxes, %d to consumers", stats.from_boxes, stats.to_consumers)
    return 0
