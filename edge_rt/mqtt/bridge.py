"""The bridge's loop: ZeroMQ messages in, MQTT out, on one thread.

Per message: the board updates what it counts, changed values go out retained (a new entity's Home
Assistant config just before its first value), an event goes out as the box published it (extra
fields such as a recording's `clip` included), detections only at --detections-rate. On every
(re)connection and on Home Assistant's `online`: availability, every config, every current value,
then the events queued meanwhile. Waits are bounded (100 ms on ZeroMQ), so a signal stops it at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .. import __version__
from ..errors import ConfigError
from ..wire.received import DetectionMessage, EventMessage, Message
from ..wire.schema import encode
from .link import CONNECTED, HA_ONLINE, LOST, REFUSED, Link, LinkStats
from .settings import MqttSettings
from .state import NO_BOX, Board
from .topics import Entity, Topics

log = logging.getLogger("edge_rt.mqtt")


@dataclass(frozen=True)
class BridgeStats:
    link: LinkStats
    received: int  # valid messages from ZeroMQ
    lost: int  # seq gaps: messages the box sent that never arrived
    malformed: int
    detections_skipped: int  # by --detections-rate, or while the broker was away

    def line(self) -> str:
        published = ", ".join(f"{n} {kind}" for kind, n in sorted(self.link.published.items())) or "nothing"
        return (
            f"{'connected' if self.link.online else 'broker away'}; published {published}; "
            f"{self.link.queued} queued, {self.link.dropped} dropped, {self.link.reconnects} reconnects; "
            f"from ZeroMQ {self.received} messages ({self.lost} lost, {self.malformed} malformed)"
            + (f"; {self.detections_skipped} detections not sent (rate limit or broker away)" if self.detections_skipped else "")
        )


class Bridge:
    """Build with checked settings; `run()` until `stop()`; `close()` always (or use `with`)."""

    def __init__(self, settings: MqttSettings) -> None:
        import zmq

        from ..client import Subscriber

        self.settings = settings
        self.topics = Topics(settings.topic_prefix, settings.name, settings.discovery_prefix)
        self.board = Board()
        self._announced: set[Entity] = set()
        self._stop = threading.Event()
        self._next_detections: dict[tuple[str, str], float] = {}
        self.detections_skipped = 0
        self._down_since: float | None = time.monotonic()
        self._refusal_said = False
        self.link = Link(settings, self.topics)  # TLS files and credentials are checked here, before any socket
        try:  # before MQTT: what the box sends while the first connection is made waits in ZeroMQ's queue
            self.sub = Subscriber(
                settings.endpoint, curve=settings.curve, health=True, events=True, box=settings.box, sources=settings.sources
            )
        except zmq.ZMQError as exc:
            raise ConfigError(f"--from {settings.endpoint!r}: {exc.strerror}") from None
        self.sub.on_malformed = self._malformed

    def stop(self) -> None:
        """From a signal handler: the loop ends within 100 ms."""
        self._stop.set()

    def start(self) -> None:
        """The first MQTT connection, synchronously (see Link.start): a refused login raises here."""
        self.link.start(self._stop.is_set)

    def run(self, tick: Callable[[], None] | None = None) -> BridgeStats:
        """Until stop(); call start() first."""
        interval = self.settings.stats_interval
        next_stats = time.monotonic() + interval
        while not self._stop.is_set():
            msg = self.sub.receive(100)
            self._notices()
            now = time.monotonic()
            if msg is not None:
                self._message(msg, now)
            for e in self.board.silent(now, self.settings.box_timeout):
                self._state(e)
            if self.link.online and self.link.queued:
                self.link.flush()  # what paho's full queue refused a moment ago
            if interval and now >= next_stats:
                next_stats = now + interval
                log.info("mqtt: %s", self.stats().line())
            if tick is not None:
                tick()
        return self.stats()

    def stats(self) -> BridgeStats:
        return BridgeStats(self.link.stats(), self.sub.received, self.sub.tracker.missed, self.sub.malformed, self.detections_skipped)

    def close(self) -> None:
        try:
            self.link.close()
        finally:
            self.sub.close()

    def __enter__(self) -> Bridge:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- ZeroMQ side ---

    def _message(self, msg: Message, now: float) -> None:
        for e in self.board.update(msg, now):
            self._state(e)
        box = msg.box or NO_BOX
        if isinstance(msg, EventMessage):
            self.link.send_event(self.topics.events(box, msg.source), encode(dict(msg.raw)))
        elif isinstance(msg, DetectionMessage) and self.settings.detections_rate > 0:
            key = (box, msg.source)
            if not self.link.online or now < self._next_detections.get(key, 0.0):
                self.detections_skipped += 1
                return
            self._next_detections[key] = now + 1 / self.settings.detections_rate
            self.link.publish("detections", self.topics.detections(box, msg.source), encode(dict(msg.raw)), qos=0)

    def _malformed(self, error: str) -> None:
        if self.sub.malformed == 1 or self.sub.malformed % 1000 == 0:
            log.warning("malformed message #%d from ZeroMQ, skipped: %s", self.sub.malformed, error)

    # --- MQTT side ---

    def _state(self, e: Entity) -> None:
        """A changed value, retained; while the broker is away the next resync sends the value of then."""
        if not self.link.online:
            return
        if e not in self._announced:
            self._announce(e)
        self.link.publish("state", self.topics.state(e), self.board.values[e], retain=True)

    def _announce(self, e: Entity) -> None:
        for topic, payload in self.topics.discovery(e, __version__):
            self.link.publish("config", topic, payload, retain=True)
        self._announced.add(e)

    def _resync(self) -> None:
        """Everything retained, again: the broker may have restarted without its retained messages, and Home
        Assistant wants the configs after it restarts."""
        self.link.publish("availability", self.topics.available, "online", retain=True)
        for e, value in list(self.board.values.items()):
            self._announce(e)
            self.link.publish("state", self.topics.state(e), value, retain=True)

    def _notices(self) -> None:
        while True:
            try:
                notice = self.link.notices.get_nowait()
            except queue.Empty:
                return
            if notice.kind == CONNECTED:
                self._connected()
            elif notice.kind == LOST and self.link.online:
                self.link.online = False
                self._down_since = time.monotonic()
                log.warning(
                    "MQTT broker %s lost (%s): reconnecting with back-off; events wait in a queue of %d",
                    self.settings.broker, notice.detail, self.settings.queue,
                )
            elif notice.kind == REFUSED:
                if not self.link.ever_connected:
                    raise self.link.refused(notice.detail)  # this login never worked: a mistake, not an outage
                if not self._refusal_said:
                    self._refusal_said = True
                    log.error("MQTT broker %s refused the connection: %s; retrying with back-off", self.settings.broker, notice.detail)
            elif notice.kind == HA_ONLINE and self.link.online:
                log.info("Home Assistant is online: discovery configs and states sent again")
                self._resync()

    def _connected(self) -> None:
        first = not self.link.ever_connected
        self.link.ever_connected = True
        self._refusal_said = False
        if not first:
            self.link.reconnects += 1
        self._resync()
        sent, dropped = self.link.flush(), self.link.outage_drops()
        self.link.online = True
        away = time.monotonic() - (self._down_since or time.monotonic())
        queued = f": {sent} queued events sent" + (f", {dropped} dropped (the queue holds {self.settings.queue})" if dropped else "")
        queued += f", {self.link.queued} still waiting" if self.link.queued else ""
        if first:
            tls = "TLS" if self.settings.tls is not None else "no TLS"
            user = f"user {self.settings.credentials.username}" if self.settings.credentials else "no login"
            log.info("connected to MQTT broker %s as %s (%s, %s)%s", self.settings.broker, self.settings.client_id, tls, user, queued if sent or dropped else "")
        else:
            log.info("MQTT broker %s back after %.1f s%s", self.settings.broker, away, queued)
