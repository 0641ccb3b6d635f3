"""`edge-rt health`: is the runtime publishing? For container HEALTHCHECKs and Kubernetes exec probes.

A process that is alive but whose cameras are all down, or whose publishing thread is stuck, must not
look healthy. The runtime answers every new `$health` subscription with every source's state at once
(and beats every 2 s), so subscribing for a moment tells: exit 0 when the rule holds, 1 when it does
not, one line either way (the probe's output lands in `podman inspect` / `kubectl describe`).

Rules (`--require`):
- `online` (default; readiness, HEALTHCHECK): at least one source is `online`, i.e. frames flow.
- `alive` (liveness): a `$health` message arrived at all: the publishing thread turns. A dead camera is
  not a reason to restart the runtime (it reconnects by itself); a stuck runtime is.

`--metrics URL` judges by the Prometheus endpoint (`edge_rt_source_up`) instead, for a runtime that binds
no local ZeroMQ port (one that connects to a broker).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from typing import Any

from ..errors import ConfigError

DEFAULT_ENDPOINT = "tcp://127.0.0.1:5555"
GRACE_S = 0.3  # after the first health message: the rest of the snapshot (one message per source) follows within it


def add_health(sub: Any) -> None:
    p = sub.add_parser(
        "health",
        help="exit 0 if a runtime is publishing (a source online), 1 if not: for HEALTHCHECK and probes",
        description="Subscribes to $health (the runtime answers a new subscriber with every source's state at "
        "once) and prints one line. --require online (default): at least one source online. --require alive: "
        "any $health message arrived (the runtime's publishing loop turns, whatever its cameras do). "
        "--metrics URL reads edge_rt_source_up from the Prometheus endpoint instead.",
    )
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--endpoint", "-e", metavar="ENDPOINT", help=f"the runtime's publish endpoint (default {DEFAULT_ENDPOINT})"
    )
    where.add_argument(
        "--config",
        metavar="FILE.yaml",
        help="take the endpoint (and CURVE server key) from the runtime's config: tcp://*:PORT is probed on 127.0.0.1",
    )
    where.add_argument("--metrics", metavar="URL", help="judge by http://HOST:PORT/metrics (edge-rt run --metrics-port) instead")
    p.add_argument("--require", choices=("online", "alive"), default="online", help="the rule (default online)")
    p.add_argument("--timeout", type=float, default=3.0, metavar="SEC", help="give up after SEC seconds (default 3)")
    p.add_argument(
        "--box",
        metavar="NAME",
        help="behind a broker: judge only the box named NAME (its edge-rt run --name, else its hostname); "
        "without it every box that answers counts, and the line names them",
    )
    p.add_argument(
        "--curve-server-key", metavar="FILE", help="the runtime's public NAME.key (with --config: read from its secret key)"
    )
    p.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="this probe's NAME.key_secret; its NAME.key must be in the runtime's --curve-allow DIR",
    )
    p.set_defaults(handler=_cmd_health)


@dataclass(frozen=True)
class Verdict:
    healthy: bool
    line: str


def _cmd_health(args: argparse.Namespace) -> int:
    from ..wire.schema import BOX_NAME_MAX, is_box_name

    if not 0 < args.timeout <= 300:
        raise ConfigError(f"--timeout must be > 0 and <= 300, got {args.timeout:g}")
    if args.box is not None and not is_box_name(args.box):
        raise ConfigError(f"--box {args.box[:40]!r}: a box name is 1 to {BOX_NAME_MAX} letters, digits, '.', '_' or '-'")
    metrics = args.metrics or (_metrics_of_connecting_runtime(args.config) if args.config else None)
    if metrics:
        verdict = probe_metrics(metrics, args.require, args.timeout)
    else:
        endpoint, keys = _target(args)
        verdict = probe_health(endpoint, args.require, args.timeout, keys, args.box)
    print(("healthy: " if verdict.healthy else "unhealthy: ") + verdict.line, flush=True)
    return 0 if verdict.healthy else 1


def _target(args: argparse.Namespace) -> tuple[str, Any]:
    from ..wire.security import ClientKeys, KeyPair, load_public_key

    endpoint, server_key = args.endpoint or DEFAULT_ENDPOINT, None
    if args.config:
        from ..config import load_yaml

        values = load_yaml(args.config)
        publish = values.get("publish", DEFAULT_ENDPOINT)
        if not isinstance(publish, str) or "://" not in publish:
            raise ConfigError(f"config {args.config!r}: publish: expected tcp://HOST:PORT or ipc://PATH, got {publish!r}")
        endpoint = local_endpoint(publish)
        secret = values.get("curve_secret_key")
        if isinstance(secret, str) and args.curve_server_key is None:
            server_key = KeyPair.load(secret, f"config {args.config!r}: curve_secret_key").public
            if args.curve_secret_key is None:
                raise ConfigError(
                    "the runtime publishes with CURVE: pass --curve-secret-key of a client whose .key is in its curve_allow directory"
                )
    if "://" not in endpoint:
        raise ConfigError(f"--endpoint {endpoint!r}: expected tcp://HOST:PORT or ipc://PATH")
    if server_key is not None:
        return endpoint, ClientKeys(server_key, KeyPair.load(args.curve_secret_key, "--curve-secret-key"))
    if args.curve_server_key is not None:
        load_public_key(args.curve_server_key, "--curve-server-key")  # checked before the secret: the first missing one is named
    return endpoint, ClientKeys.from_options(args.curve_server_key, args.curve_secret_key)


def _metrics_of_connecting_runtime(config: str) -> str | None:
    """A runtime that connects to a broker (`publish: connect:...`) binds no port to subscribe to here:
    its own metrics endpoint tells instead."""
    from ..config import load_yaml

    values = load_yaml(config)
    publish = values.get("publish")
    if not (isinstance(publish, str) and publish.startswith("connect:")):
        return None
    port, addr = values.get("metrics_port"), values.get("metrics_addr", "127.0.0.1")
    if not isinstance(port, int) or isinstance(port, bool) or port <= 0:
        raise ConfigError(
            f"config {config!r}: publish {publish!r} connects to a broker, so there is no local $health to probe; "
            "set metrics_port, or probe the broker: --endpoint tcp://BROKER:PORT --box NAME"
        )
    host = "127.0.0.1" if addr in ("0.0.0.0", "*", "") else addr
    return f"http://{host}:{port}/metrics"


def local_endpoint(publish: str) -> str:
    """Where a probe on the same machine reaches a runtime that binds `publish`: a wildcard host is loopback."""
    scheme, _, rest = publish.partition("://")
    if scheme.lower() != "tcp":
        return publish
    host, _, port = rest.rpartition(":")
    if host in ("*", "0.0.0.0"):
        return f"tcp://127.0.0.1:{port}"
    if host in ("[::]", "[*]", "::"):
        return f"tcp://[::1]:{port}"
    return publish


def probe_health(endpoint: str, require: str, timeout: float, keys: Any = None, box: str | None = None) -> Verdict:
    """Subscribe to `$health` until the snapshot is in (or `timeout`), then judge."""
    import zmq

    from ..client import HealthMessage, Subscriber

    try:
        sub = Subscriber(endpoint, topics=["$health"], curve=keys)
    except zmq.ZMQError as exc:
        raise ConfigError(f"endpoint {endpoint!r}: {exc.strerror}") from None
    # (box, session, source) -> latest state: behind a broker, boxes share source names (and may share a box
    # name: two runtimes with one --name, or version-1 publishers without one)
    states: dict[tuple[str | None, str, str], str] = {}
    start = time.monotonic()
    deadline = start + timeout
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            msg = sub.receive(max(1, int(remaining * 1000)))
            if not isinstance(msg, HealthMessage) or (box is not None and msg.box != box):
                continue
            if not states:
                deadline = min(deadline, time.monotonic() + GRACE_S)
            states[(msg.box, msg.session, msg.source)] = msg.state
    finally:
        sub.close()
    if not states:
        whose = f" for box {box!r}" if box else ""
        return Verdict(False, f"no $health message{whose} from {endpoint} within {timeout:g}s (is edge-rt run publishing there?)")
    boxes = {b for b, _, _ in states}
    return _judge(require, _labelled(states), endpoint, f" ({len(boxes)} boxes)" if len(boxes) > 1 else "")


def _labelled(states: dict[tuple[str | None, str, str], str]) -> dict[str, str]:
    """Names for the line: `SOURCE`; `BOX/SOURCE` when several boxes answered; `@SESSION` where one
    box's source came from several processes (or from publishers that name no box)."""
    boxes = {b for b, _, _ in states}
    sessions: dict[tuple[str | None, str], set[str]] = {}
    for b, ses, src in states:
        sessions.setdefault((b, src), set()).add(ses)
    out = {}
    for (b, ses, src), st in states.items():
        label = f"{b or '?'}/{src}" if len(boxes) > 1 else src
        out[label + (f"@{ses[:8]}" if len(sessions[(b, src)]) > 1 else "")] = st
    return out


def probe_metrics(url: str, require: str, timeout: float) -> Verdict:
    """Read edge_rt_source_state from the Prometheus endpoint."""
    import urllib.error
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--metrics {url!r}: expected http://HOST:PORT/metrics")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            text = response.read(4 * 1024 * 1024).decode("utf-8", "replace")
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or exc
        return Verdict(False, f"cannot read {url}: {reason}")
    states: dict[str, str] = {}
    try:
        for family in text_string_to_metric_families(text):
            if family.name == "edge_rt_source_state":
                for s in family.samples:
                    if s.value == 1 and "source" in s.labels:
                        states[s.labels["source"]] = s.labels.get("edge_rt_source_state", "?")
    except ValueError as exc:
        return Verdict(False, f"{url}: not Prometheus metrics ({exc})")
    if not states:
        return Verdict(False, f"{url}: no edge_rt_source_state (is it edge-rt run's --metrics-port?)")
    return _judge(require, states, url)


def _judge(require: str, states: dict[str, str], where: str, boxes: str = "") -> Verdict:
    online = sorted(s for s, st in states.items() if st == "online")
    others = ", ".join(f"{s} {st}" for s, st in sorted(states.items()) if st != "online")
    detail = (
        f"{len(online)} of {len(states)} sources online"
        + (f" ({', '.join(online)})" if online else "")
        + (f"; {others}" if others else "")
    )
    if require == "alive":
        return Verdict(True, f"publishing on {where}{boxes}: {detail}")
    return Verdict(bool(online), f"{detail} on {where}{boxes}")
