"""systemd's notify protocol, without libsystemd: READY once publishing, WATCHDOG while the pipeline
turns, STATUS for `systemctl status`, STOPPING on the way out.

A unit with `Type=notify` and `WatchdogSec=` sets NOTIFY_SOCKET and WATCHDOG_USEC; the protocol is
one datagram of `KEY=VALUE` lines to that socket (sd_notify(3)), so a socket call is all it takes.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable, Mapping

log = logging.getLogger("edge_rt.systemd")


class Notifier:
    """Sends to $NOTIFY_SOCKET; `from_env()` is None when not started by systemd."""

    def __init__(self, address: str, watchdog_s: float | None) -> None:
        self._address = "\0" + address[1:] if address.startswith("@") else address  # '@': abstract namespace
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        # Never wait: a datagram socket whose reader lags blocks the sender once 10 are queued, and the
        # sender is the publishing thread.
        self._sock.setblocking(False)
        self.watchdog_s = watchdog_s  # systemd kills us after this long without WATCHDOG=1
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> Notifier | None:
        address = env.get("NOTIFY_SOCKET")
        if not address:
            return None
        watchdog_s = None
        usec, pid = env.get("WATCHDOG_USEC"), env.get("WATCHDOG_PID")
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            watchdog_s = int(usec) / 1e6
        return cls(address, watchdog_s)

    def send(self, **fields: str) -> bool:
        message = "\n".join(f"{k.upper()}={v}" for k, v in fields.items()).encode()
        try:
            self._sock.sendto(message, self._address)
        except OSError as exc:  # systemd gone or the socket wrong: the runtime goes on without it, and says so once
            if not self._warned:
                self._warned = True
                log.warning(
                    "sd_notify to %r failed (%s): with WatchdogSec set, systemd will restart this service",
                    self._address.lstrip("\0"),
                    exc,
                )
            return False
        return True

    def pinger(self) -> Callable[[], None] | None:
        """For a service's main loop, called every turn: WATCHDOG=1 at half WatchdogSec (None without
        one), so a loop that stops turning stops the pings and systemd restarts the service."""
        if not self.watchdog_s:
            return None
        period, due = self.watchdog_s / 2, [0.0]

        def tick() -> None:
            now = time.monotonic()
            if now >= due[0]:
                due[0] = now + period
                self.send(watchdog="1")

        return tick

    def close(self) -> None:
        self._sock.close()


class ServiceWatch:
    """Called from the publishing thread's housekeeping: READY=1 once publishing,
    WATCHDOG=1 at half the watchdog interval while that thread keeps turning and no engine call has
    run longer than the watchdog interval (a stuck loop or a hung engine stops the pings, and systemd
    restarts the unit), STATUS with the sources online."""

    def __init__(
        self,
        notifier: Notifier,
        published: Callable[[], int],
        states: Callable[[], Mapping[str, str]],
        engine_busy_s: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.notifier = notifier
        self._published = published
        self._states = states
        self._engine_busy_s = engine_busy_s
        self.ready = False
        self._next = 0.0
        self._stopping_sent = False

    def tick(self) -> None:
        if self._stopping_sent:
            return  # nothing after STOPPING=1: a READY now would tell systemd we just started
        now = time.monotonic()
        if not self.ready and (self._published() > 0 or all(s != "starting" for s in self._states().values())):
            # Publishing: frames went out, or every source has been tried (cameras that are down at
            # start are retried while the run publishes their health; not ready would restart us).
            self.ready = True
            self.notifier.send(ready="1", status=self._status())
            self._next = now
        period = (self.notifier.watchdog_s or 10.0) / 2
        if now >= self._next:
            self._next = now + period
            fields = {"status": self._status()}
            if self.notifier.watchdog_s and self._engine_busy_s() < self.notifier.watchdog_s:
                fields["watchdog"] = "1"
            self.notifier.send(**fields)

    def stopping(self) -> None:
        if not self._stopping_sent:
            self._stopping_sent = True
            self.notifier.send(stopping="1", status="stopping")

    def _status(self) -> str:
        states = self._states()
        online = sum(1 for s in states.values() if s == "online")
        return f"{online}/{len(states)} sources online, {self._published()} frames published"
