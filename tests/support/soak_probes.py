"""The soak's probes (tests/soak.py): the edge-rt process seen from /proc, the long- and short-lived
subscribers, and the flapping RTSP camera. Every wait in here is bounded."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from edge_rt.client import DetectionMessage, EndOfStream, Subscriber
from tests.support.rtsp import RtspServer, RtspServerError

# -- the edge-rt process, seen from /proc ---------------------------------------------------------


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            out[key] = value.strip()
    return out


def proc_sample(pid: int) -> dict[str, float]:
    st = proc_status(pid)
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return {
        "rss_mb": round(int(st["VmRSS"].split()[0]) / 1024, 2),
        "hwm_mb": round(int(st["VmHWM"].split()[0]) / 1024, 2),
        "anon_mb": round(int(st["RssAnon"].split()[0]) / 1024, 2),  # heap and arenas; RSS - anon: mapped files
        "threads": int(st["Threads"]),
        "fds": len(os.listdir(f"/proc/{pid}/fd")),
        "cpu_s": (int(fields[11]) + int(fields[12])) / ticks,  # utime + stime
    }


# -- the subscribers ------------------------------------------------------------------------------


def count_malformed(sub: Subscriber, counter: Counter[str]) -> None:
    """Count malformed messages on the sources' topics; "$..." topics ($health) are the publisher's own
    and not detections: a client that does not know them may call them malformed, which is not a fault."""

    def on_malformed(what: str) -> None:
        if not what.startswith("topic '$"):
            counter["malformed"] += 1

    sub.on_malformed = on_malformed


@dataclass
class Window:
    latencies: list[float] = field(default_factory=list)
    per_source: Counter[str] = field(default_factory=Counter)
    lost: int = 0
    malformed: int = 0


class LongSubscriber(threading.Thread):
    """The sources' topics, for the whole run: capture -> received latency per message, swapped out each
    interval. It subscribes to the sources' topics by name, so that topics such as $health never reach it."""

    def __init__(self, endpoint: str, topics: Sequence[str]) -> None:
        super().__init__(name="long-subscriber", daemon=True)
        self.sub = Subscriber(endpoint, topics=topics)
        self._bad: Counter[str] = Counter()
        count_malformed(self.sub, self._bad)
        self._lock = threading.Lock()
        self._window = Window()
        self._halt = threading.Event()
        self.seen: set[str] = set()
        self.eos: dict[str, str] = {}
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self._halt.is_set():
                msg = self.sub.receive(200)
                now = time.time_ns()
                with self._lock:
                    self._window.malformed += self._bad.pop("malformed", 0)
                    if msg is None:
                        continue
                    self._window.lost += msg.gap
                    if isinstance(msg, DetectionMessage):
                        self._window.latencies.append((now - msg.timestamps["capture_ns"]) / 1e6)
                        self._window.per_source[msg.source] += 1
                        self.seen.add(msg.source)
                    elif isinstance(msg, EndOfStream):
                        self.eos[msg.source] = msg.reason
        except BaseException as exc:  # noqa: BLE001 - reported by the main loop
            self.error = exc
        finally:
            self.sub.close()

    def take(self) -> Window:
        with self._lock:
            window, self._window = self._window, Window()
        return window

    def stop(self) -> None:
        self._halt.set()
        self.join(5)


def short_subscriber(endpoint: str, seconds: float) -> tuple[int, int, int]:
    """Connect to every topic, read for `seconds`, disconnect: (detection messages, topics seen,
    malformed). Topics starting with "$" ($health) are the publisher's, not sources: not counted."""
    n, topics, bad = 0, set(), Counter()
    with Subscriber(endpoint) as sub:
        count_malformed(sub, bad)
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            msg = sub.receive(int(left * 1000) + 1)
            if isinstance(msg, DetectionMessage) and not msg.source.startswith("$"):
                n += 1
                topics.add(msg.source)
    return n, len(topics), bad["malformed"]


# -- the flapping camera --------------------------------------------------------------------------


class Flapper(threading.Thread):
    """Up `up` s, down `down` s, phased so that t0 + k * period is the middle of an up window."""

    def __init__(self, cam: RtspServer, t0: float, up: float, down: float) -> None:
        super().__init__(name="flapper", daemon=True)
        self.cam, self.t0, self.up, self.down = cam, t0, up, down
        self.flaps = 0
        self.failures: list[str] = []
        self._halt = threading.Event()

    def should_be_up(self, now: float) -> bool:
        phase = (now - self.t0) % (self.up + self.down)
        return phase < self.up / 2 or phase >= self.up / 2 + self.down

    def run(self) -> None:
        while not self._halt.wait(0.1):
            want = self.should_be_up(time.monotonic())
            try:
                if want and not self.cam.running:
                    self.cam.start()
                elif not want and self.cam.running:
                    self.cam.stop()
                    self.flaps += 1
            except (RtspServerError, OSError) as exc:  # the camera itself failed to come back: say so, keep going
                self.failures.append(f"t={time.monotonic() - self.t0:.0f}s: {(str(exc) or type(exc).__name__).splitlines()[0]}")
                self._halt.wait(1.0)

    def stop(self) -> None:
        """Bounded: a start() in progress ends within the camera's start_timeout, a stop() within ~10 s."""
        self._halt.set()
        self.join(self.cam.start_timeout + 15)
