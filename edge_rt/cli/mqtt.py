"""`edge-rt mqtt`: bridge a box's messages to an MQTT broker and Home Assistant (see edge_rt/mqtt/, docs/mqtt.md)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

from .common import add_service_options, on_signals, setup_logging

log = logging.getLogger("edge_rt.mqtt")


def add_mqtt(sub: Any) -> None:
    p = sub.add_parser(
        "mqtt",
        help="publish a box's events, counts, health (and detections) to an MQTT broker, with Home Assistant discovery",
        description="Subscribes to a box (or an `edge-rt broker`) over ZeroMQ and publishes to MQTT: events on "
        "PREFIX/BOX/SOURCE/events, object counts per class and zone (retained), camera health (retained), availability "
        "online/offline on PREFIX/NAME/available (retained, the last will), and Home Assistant discovery configs under "
        "homeassistant/. While the MQTT broker is away, events wait in a bounded queue. A broker that refuses the login "
        "at start: one line and exit 5; one that cannot be reached: a warning, then retries with back-off. "
        "Exit 0 on SIGTERM/SIGINT, after publishing offline. See docs/mqtt.md.",
    )
    p.add_argument("--from", dest="endpoint", required=True, metavar="ENDPOINT", help="the box's ZeroMQ endpoint, e.g. tcp://127.0.0.1:5555")
    p.add_argument(
        "--broker",
        required=True,
        metavar="HOST[:PORT]",
        help="the MQTT broker: HOST[:PORT] (default port 1883, 8883 with TLS), or mqtt://... / mqtts://... (TLS)",
    )
    p.add_argument(
        "--credentials",
        metavar="FILE",
        help="file with 'username=NAME' and 'password=SECRET' lines (chmod 600); never pass secrets on the command line",
    )
    p.add_argument("--tls", action="store_true", help="connect with TLS, trusting the system's CAs (mqtts:// does the same)")
    p.add_argument("--tls-ca", metavar="FILE", help="TLS, trusting this PEM CA certificate (e.g. the broker's own CA)")
    p.add_argument("--tls-cert", metavar="FILE", help="TLS client certificate (PEM), for brokers that require one")
    p.add_argument("--tls-key", metavar="FILE", help="the client certificate's private key (PEM), if not inside --tls-cert")
    p.add_argument(
        "--name",
        metavar="NAME",
        help="this bridge's name: MQTT client id edge_rt-NAME and topic PREFIX/NAME/available (default: the hostname, "
        "as `edge-rt run` names its box); unique per bridge",
    )
    p.add_argument("--topic-prefix", default="edge_rt", metavar="PREFIX", help="first topic level(s) (default edge_rt)")
    p.add_argument(
        "--discovery-prefix", default="homeassistant", metavar="PREFIX", help="Home Assistant's discovery prefix (default homeassistant)"
    )
    p.add_argument("--no-discovery", action="store_true", help="publish no Home Assistant discovery configs")
    p.add_argument("--box", metavar="NAME", help="only this box's messages (behind `edge-rt broker`)")
    p.add_argument("--source", action="append", default=[], dest="sources", metavar="NAME", help="only this camera; repeatable")
    p.add_argument("--queue", type=int, default=1000, metavar="N", help="events kept while the MQTT broker is away (default 1000); beyond, the oldest are dropped and counted")
    p.add_argument(
        "--detections-rate",
        type=float,
        default=0.0,
        metavar="HZ",
        help="also publish detections, at most HZ messages per camera per second (default 0: off)",
    )
    p.add_argument("--qos", type=int, default=1, choices=(0, 1), help="QoS of events (default 1: acknowledged)")
    p.add_argument(
        "--keepalive", type=int, default=30, metavar="SEC", help="MQTT keepalive (default 30); a hung bridge is offline after 1.5x"
    )
    p.add_argument("--connect-timeout", type=float, default=10.0, metavar="SEC", help="wait this long for the broker's first answer (default 10)")
    p.add_argument(
        "--box-timeout",
        type=float,
        default=10.0,
        metavar="SEC",
        help="a box silent this long (it sends health every 2 s) has its cameras' health set to offline (default 10)",
    )
    p.add_argument("--curve-server-key", metavar="FILE", help="the box's (or broker's) public NAME.key: subscribe with CURVE")
    p.add_argument("--curve-secret-key", metavar="FILE", help="this bridge's NAME.key_secret (from `edge-rt keys`) for CURVE")
    p.add_argument("--metrics-port", type=int, metavar="PORT", help="serve Prometheus metrics (edge_rt_mqtt_*) on this port")
    p.add_argument("--metrics-addr", default="127.0.0.1", metavar="ADDR", help="address for --metrics-port (default 127.0.0.1)")
    add_service_options(p, "the counters")
    p.set_defaults(handler=_cmd_mqtt)


def _settings(args: argparse.Namespace) -> Any:
    from ..errors import ConfigError
    from ..mqtt.settings import BrokerAddress, Credentials, MqttSettings, TlsOptions, default_name
    from ..wire.security import ClientKeys

    tls = None
    if args.tls or args.tls_ca or args.tls_cert or args.tls_key:
        if args.tls_key and not args.tls_cert:
            raise ConfigError("--tls-key needs --tls-cert (the certificate the key belongs to)")
        tls = TlsOptions(*(Path(f).expanduser() if f else None for f in (args.tls_ca, args.tls_cert, args.tls_key)))
    if args.metrics_port is not None and not 0 <= args.metrics_port <= 65535:
        raise ConfigError(f"--metrics-port {args.metrics_port}: expected 0 to 65535")
    return MqttSettings(
        endpoint=args.endpoint,
        broker=BrokerAddress.parse(args.broker, tls=tls is not None),
        name=args.name if args.name is not None else default_name(),
        topic_prefix=args.topic_prefix,
        discovery_prefix=None if args.no_discovery else args.discovery_prefix,
        credentials=Credentials.load(args.credentials) if args.credentials else None,
        tls=tls,
        curve=ClientKeys.from_options(args.curve_server_key, args.curve_secret_key),
        box=args.box,
        sources=tuple(args.sources),
        queue=args.queue,
        detections_rate=args.detections_rate,
        qos=args.qos,
        keepalive=args.keepalive,
        connect_timeout=args.connect_timeout,
        box_timeout=args.box_timeout,
        stats_interval=args.stats_interval,
    ).check()


def _cmd_mqtt(args: argparse.Namespace) -> int:
    from ..mqtt.bridge import Bridge
    from ..ops.systemd import Notifier

    setup_logging(args.log_level, args.log_format)  # first: the credentials file's permission warning is a log line
    settings = _settings(args)
    metrics: Any = None
    notifier = None
    with Bridge(settings) as bridge:
        on_signals(bridge.stop)
        try:
            if args.metrics_port is not None:
                from ..mqtt.metrics import MetricsServer

                metrics = MetricsServer(bridge.stats)
                port = metrics.serve(args.metrics_port, args.metrics_addr)
                log.info("metrics on http://%s:%d/metrics", args.metrics_addr, port)
            discovery = f"discovery under {settings.discovery_prefix}/" if settings.discovery_prefix else "no discovery"
            log.info(
                "mqtt: %s -> MQTT %s, topics %s/..., availability %s, %s",
                settings.endpoint, settings.broker, settings.topic_prefix, bridge.topics.available, discovery,
            )
            bridge.start()  # a refused login raises here: one line, exit 5
            notifier = Notifier.from_env()
            if notifier is not None:
                notifier.send(ready="1", status=f"bridging {settings.endpoint} -> {settings.broker}")
            stats = bridge.run(notifier.pinger() if notifier is not None else None)
        finally:
            if notifier is not None:
                notifier.send(stopping="1", status="stopping")
                notifier.close()
            if metrics is not None:
                metrics.close()
    log.info("mqtt stopped: %s", stats.line())
    return 0
