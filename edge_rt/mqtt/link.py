"""The MQTT side of the bridge: one paho client, the connection as the bridge saw it, the outage queue.

paho's network thread only reports (a `Notice` on a queue); the bridge's loop does every publish, so
what follows a (re)connection (availability, discovery, states, then the queued events) goes out in
order. While the broker is away, events wait in a bounded deque here, the oldest dropped and counted
when it is full; paho would keep QoS 1 messages published while disconnected in a dict of its own,
unbounded unless told (its bound here is only a backstop).
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import PublishError
from .settings import MqttSettings
from .topics import Topics

log = logging.getLogger("edge_rt.mqtt")

CONNECTED, REFUSED, LOST, HA_ONLINE = "connected", "refused", "lost", "ha_online"
RECONNECT_MIN_S, RECONNECT_MAX_S = 1, 10
PAHO_QUEUE_MARGIN = 1000  # paho's own bound: in flight at a drop, or published in the moment before we heard of it


@dataclass(frozen=True)
class Notice:
    """From paho's thread to the bridge's loop."""

    kind: str  # CONNECTED, REFUSED, LOST or HA_ONLINE
    detail: str = ""


@dataclass(frozen=True)
class LinkStats:
    online: bool
    published: dict[str, int]  # per kind: event, state, config, detections, availability
    queued: int
    dropped: int  # events dropped from a full queue while the broker was away
    reconnects: int


class Link:
    """Connects, publishes, queues; `start()` connects synchronously, `close()` says offline and leaves."""

    def __init__(self, settings: MqttSettings, topics: Topics) -> None:
        import paho.mqtt.client as mqtt

        self.settings = settings
        self.topics = topics
        self.notices: queue.SimpleQueue[Notice] = queue.SimpleQueue()
        self.online = False  # set by the bridge's loop once it has resynced after a connection
        self.ever_connected = False
        self.published: Counter[str] = Counter()
        self.dropped = 0
        self.reconnects = 0
        self._events: deque[tuple[str, bytes]] = deque()
        self._dropped_in_outage = 0
        self._stopping = False
        self._answered = threading.Event()
        self._refusal: str | None = None
        self._closed_unanswered = False
        self._ok = mqtt.MQTT_ERR_SUCCESS
        self._no_conn = mqtt.MQTT_ERR_NO_CONN
        client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=mqtt.MQTTv311,
            clean_session=True,
        )
        client.will_set(topics.available, "offline", qos=1, retain=True)
        if settings.credentials is not None:
            client.username_pw_set(settings.credentials.username, settings.credentials.password)
        if settings.tls is not None:
            client.tls_set_context(settings.tls.context())
        client.reconnect_delay_set(RECONNECT_MIN_S, RECONNECT_MAX_S)
        client.connect_timeout = min(5.0, settings.connect_timeout)  # bounds every connect attempt and TLS handshake
        client.max_inflight_messages_set(100)
        client.max_queued_messages_set(settings.queue + PAHO_QUEUE_MARGIN)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        self._client = client

    # --- paho's thread: report only, never raise (an exception would end paho's loop) ---

    def _on_connect(self, client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            self._refusal = str(reason)
            self.notices.put(Notice(REFUSED, str(reason)))
        else:
            if self.topics.ha_status is not None:
                client.subscribe(self.topics.ha_status, qos=1)  # a clean session forgets subscriptions
            self.notices.put(Notice(CONNECTED))
        self._answered.set()

    def _on_disconnect(self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if not self._answered.is_set() and not self.ever_connected:
            self._closed_unanswered = True  # before any CONNACK: a TLS port spoken to in plain, or no MQTT broker at all
            self._answered.set()
        if not self._stopping:  # paho calls a dropped connection "Unspecified error"
            self.notices.put(Notice(LOST, "connection closed" if str(reason) == "Unspecified error" else str(reason)))

    def _on_message(self, _client: Any, _userdata: Any, message: Any) -> None:
        # Home Assistant's birth message: it (re)started and wants the configs. A retained one is old news.
        if message.topic == self.topics.ha_status and message.payload.strip() == b"online" and not message.retain:
            self.notices.put(Notice(HA_ONLINE))

    # --- the bridge's loop ---

    def start(self, stopping: Callable[[], bool]) -> None:
        """Connect once synchronously: a refused login or a TLS failure raises PublishError (one line, exit 5);
        a broker that cannot be reached is said once and retried with back-off while the bridge runs."""
        s = self.settings
        reached = True
        try:
            self._client.connect(s.broker.host, s.broker.port, s.keepalive)
        except ssl.SSLCertVerificationError as exc:
            raise PublishError(
                f"MQTT broker {s.broker}: TLS certificate not accepted ({exc.verify_message}); give its CA with --tls-ca FILE"
            ) from None
        except ssl.SSLError as exc:
            raise PublishError(f"MQTT broker {s.broker}: TLS handshake failed ({exc.reason or exc}); is {s.broker.port} its TLS port?") from None
        except OSError as exc:
            if s.tls is not None and isinstance(exc, ConnectionResetError):  # a plain MQTT port hangs up on a TLS hello
                raise PublishError(
                    f"MQTT broker {s.broker}: closed the connection in the TLS handshake; is {s.broker.port} its TLS port (usually 8883)?"
                ) from None
            reached = False
            why = exc.strerror or str(exc) or type(exc).__name__
            log.warning(
                "MQTT broker %s unreachable (%s): retrying with back-off (%d to %d s); events wait in a queue of %d",
                s.broker, why, RECONNECT_MIN_S, RECONNECT_MAX_S, s.queue,
            )
            self._client.connect_async(s.broker.host, s.broker.port, s.keepalive)
        self._client.loop_start()
        if not reached:
            return
        deadline = time.monotonic() + s.connect_timeout
        while not self._answered.wait(0.1):
            if stopping():
                return
            if time.monotonic() > deadline:
                log.warning("MQTT broker %s: no answer within %g s; retrying with back-off while the bridge runs", s.broker, s.connect_timeout)
                return
        if self._refusal is not None:
            raise self.refused(self._refusal)
        if self._closed_unanswered:
            hint = "is it an MQTT broker?" if s.tls else f"if {s.broker.port} is a TLS port, add --tls or --tls-ca FILE, or use mqtts://"
            raise PublishError(f"MQTT broker {s.broker} closed the connection without answering ({hint})")

    def refused(self, reason: str) -> PublishError:
        """The line for a broker that never accepted this login (the password itself is never in it)."""
        creds = self.settings.credentials
        hint = (
            f"check the username and password in --credentials {creds.path}"
            if creds is not None
            else "it may need a login: --credentials FILE with username= and password= lines"
        )
        return PublishError(f"MQTT broker {self.settings.broker} refused the connection: {reason} ({hint})")

    def publish(self, kind: str, topic: str, payload: bytes | str, retain: bool = False, qos: int = 1) -> bool:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        # NO_CONN with QoS 1: the connection dropped a moment ago; paho keeps it and sends it on reconnection
        if info.rc == self._ok or (info.rc == self._no_conn and qos > 0):
            self.published[kind] += 1
            return True
        return False

    def send_event(self, topic: str, payload: bytes) -> None:
        """Through the queue, so order holds: sent at once while online, kept while the broker is away or paho's
        own queue is full (a broker slower than the box); a full queue drops its oldest, counted."""
        if len(self._events) >= self.settings.queue:
            self._events.popleft()
            self.dropped += 1
            self._dropped_in_outage += 1
            if self._dropped_in_outage == 1:
                log.warning("MQTT event queue full (%d): dropping the oldest events until the broker takes them again", self.settings.queue)
        self._events.append((topic, payload))
        if self.online:
            self.flush()

    def flush(self) -> int:
        """The queued events, oldest first, until paho refuses one (it stays first in line); -> how many went."""
        sent = 0
        while self._events:
            topic, payload = self._events[0]
            if not self.publish("event", topic, payload, qos=self.settings.qos):
                break
            self._events.popleft()
            sent += 1
        return sent

    @property
    def queued(self) -> int:
        return len(self._events)

    def outage_drops(self) -> int:
        """Events dropped since the last call: what the 'back after' line reports."""
        dropped, self._dropped_in_outage = self._dropped_in_outage, 0
        return dropped

    def stats(self) -> LinkStats:
        return LinkStats(self.online, dict(self.published), len(self._events), self.dropped, self.reconnects)

    def close(self) -> None:
        """`offline` (retained) and a clean disconnect, so the broker does not send the last will; bounded."""
        self._stopping = True
        if self._client.is_connected():
            info = self._client.publish(self.topics.available, "offline", qos=1, retain=True)
            try:
                info.wait_for_publish(timeout=2.0)
            except (RuntimeError, ValueError):
                pass  # the broker went away meanwhile: its last will says offline
        self._client.disconnect()
        # loop_stop joins paho's thread, which may be inside one connect attempt (bounded by connect_timeout) or a
        # DNS lookup (bounded only by the resolver): wait a bounded time; the thread is a daemon and exit goes past it.
        stopper = threading.Thread(target=self._client.loop_stop, name="edge_rt-mqtt-stop", daemon=True)
        stopper.start()
        stopper.join(self._client.connect_timeout + 2.0)
