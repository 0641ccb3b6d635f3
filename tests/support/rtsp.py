"""A real RTSP camera for tests, driven from the test process (pure stdlib).

The server itself (``rtsp_server.py`` beside this file) needs PyGObject and the
GStreamer RTSP server, which live in the *system* python (``/usr/bin/python3``,
Debian packages listed in ``.ci/apt-packages.txt``), not in the project's venv.
This module only spawns it and talks to it with signals, so it imports fine
anywhere.

Example::

    from tests.support.rtsp import RtspServer, free_port, rtsp_available

    ok, reason = rtsp_available()
    if not ok:
        pytest.skip(reason)
    with RtspServer(port=free_port(), width=320, height=240, fps=15) as cam:
        cap = cv2.VideoCapture(cam.url, cv2.CAP_FFMPEG, [...])
        cam.freeze()    # session stays open, no more frames
        cam.resume()
        cam.stop()      # the camera dies (TCP closed)...
        cam.start()     # ...and comes back on the same port

``RTSP_SERVER_PYTHON`` overrides the interpreter (default ``/usr/bin/python3``).
"""

from __future__ import annotations

import functools
import os
import queue
import signal
import socket
import subprocess
import threading
import time
from collections import deque
from pathlib import Path

SERVER_SCRIPT = Path(__file__).with_name("rtsp_server.py")
DEFAULT_PYTHON = "/usr/bin/python3"


def system_python() -> str:
    return os.environ.get("RTSP_SERVER_PYTHON", DEFAULT_PYTHON)


def _child_env() -> dict[str, str]:
    # Don't leak the venv's interpreter settings into the system python.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONHOME", "PYTHONPATH", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env.setdefault("GST_DEBUG", "0")
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (bind to port 0, read it, close)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


@functools.cache
def rtsp_available() -> tuple[bool, str]:
    """(True, "encoder=NAME") when the RTSP test server can run here, else (False, why).

    Checks the system python, PyGObject, GStreamer + GstRtspServer typelibs and
    the elements the pipeline needs (an H.264 encoder among them) by running
    ``rtsp_server.py --check``.  Cached for the process.
    """
    python = system_python()
    if not (os.path.isfile(python) and os.access(python, os.X_OK)):
        return False, f"no system python at {python} (set RTSP_SERVER_PYTHON)"
    try:
        proc = subprocess.run(
            [python, "-I", str(SERVER_SCRIPT), "--check"],
            capture_output=True,
            text=True,
            timeout=30,
            env=_child_env(),
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"RTSP test server check failed: {exc!r}"
    if proc.returncode != 0:
        why = proc.stderr.strip() or proc.stdout.strip() or f"exit {proc.returncode}"
        return False, (f"RTSP test server unavailable ({why.splitlines()[-1]}); install the packages in .ci/apt-packages.txt")
    return True, proc.stdout.strip().removeprefix("OK ").strip()


class RtspServerError(RuntimeError):
    pass


class RtspServer:
    """A synthetic RTSP camera (moving H.264 test pattern) in a child process.

    ``start()`` returns once the server is listening (or raises
    ``RtspServerError`` within ``start_timeout`` seconds). ``freeze()`` keeps
    the RTSP/TCP session open but stops frames; ``resume()`` restarts them.
    ``stop()`` ends the server (SIGTERM, then SIGKILL to its process group);
    ``kill()`` ends it abruptly (SIGKILL) like a crash. In both cases the kernel
    closes the TCP connections, so clients see end-of-stream at once -- unlike a
    camera that loses power or network, which looks like ``freeze()`` to them.
    ``start()`` again serves on the same port.
    """

    def __init__(
        self,
        port: int | None = None,
        mount: str = "/cam",
        width: int = 320,
        height: int = 240,
        fps: int = 15,
        *,
        host: str = "127.0.0.1",
        encoder: str = "auto",
        pattern: str = "ball",
        start_timeout: float = 15.0,
        ack_timeout: float = 5.0,
    ) -> None:
        self.host = host
        self.port = free_port(host) if port is None else int(port)
        self.mount = mount if mount.startswith("/") else "/" + mount
        self.width, self.height, self.fps = int(width), int(height), int(fps)
        self.encoder = encoder  # becomes the chosen encoder's name after start()
        self.pattern = pattern
        self.start_timeout = start_timeout
        self.ack_timeout = ack_timeout
        self._proc: subprocess.Popen[str] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: deque[str] = deque(maxlen=50)
        self._threads: list[threading.Thread] = []

    # -- properties ---------------------------------------------------------
    @property
    def url(self) -> str:
        return f"rtsp://{self.host}:{self.port}{self.mount}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ----------------------------------------------------------
    def start(self) -> RtspServer:
        if self.running:
            raise RtspServerError("RTSP server already running")
        self._lines = queue.Queue()
        self._stderr.clear()
        cmd = [
            system_python(),
            "-I",
            "-u",
            str(SERVER_SCRIPT),
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--mount",
            self.mount,
            "--width",
            str(self.width),
            "--height",
            str(self.height),
            "--fps",
            str(self.fps),
            "--pattern",
            self.pattern,
            "--encoder",
            self.encoder if self.encoder in ("auto", "x264enc", "openh264enc") else "auto",
        ]
        self._proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
            start_new_session=True,
            env=_child_env(),
        )
        self._threads = [
            threading.Thread(target=self._pump_stdout, args=(self._proc, self._lines), daemon=True),
            threading.Thread(target=self._pump_stderr, args=(self._proc,), daemon=True),
        ]
        for t in self._threads:
            t.start()
        try:
            line = self._expect("READY", self.start_timeout)
        except RtspServerError:
            self._terminate(graceful=False)
            raise
        # "READY rtsp://... encoder=x264enc"
        for part in line.split():
            if part.startswith("encoder="):
                self.encoder = part.split("=", 1)[1]
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM the server, SIGKILL its process group if it lingers. Idempotent."""
        self._terminate(graceful=True, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL the server's process group at once (a crashing camera)."""
        self._terminate(graceful=False)

    def freeze(self) -> None:
        """Stop sending frames; the RTSP session and its TCP connection stay open."""
        self._signal_and_ack(signal.SIGUSR1, "FROZEN")

    def resume(self) -> None:
        self._signal_and_ack(signal.SIGUSR2, "RESUMED")

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort: never leave a server behind
        try:
            if self.running:
                self._terminate(graceful=False)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"RtspServer({self.url!r}, {self.width}x{self.height}@{self.fps}, running={self.running})"

    # -- internals ----------------------------------------------------------
    @staticmethod
    def _pump_stdout(proc: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.rstrip("\n"))
        lines.put(None)  # EOF: the process is gone

    def _pump_stderr(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self._stderr.append(line.rstrip("\n"))

    def _expect(self, word: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RtspServerError(f"RTSP server did not say {word} within {timeout:.1f}s{self._stderr_tail()}")
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                code = self._proc.wait(timeout=5) if self._proc is not None else None
                raise RtspServerError(f"RTSP server exited (status {code}) before {word}{self._stderr_tail()}")
            if line.split(" ", 1)[0] == word:
                return line

    def _signal_and_ack(self, sig: int, ack: str) -> None:
        if not self.running:
            raise RtspServerError("RTSP server is not running")
        assert self._proc is not None
        os.kill(self._proc.pid, sig)
        self._expect(ack, self.ack_timeout)

    def _terminate(self, graceful: bool, timeout: float = 5.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            if graceful:
                try:
                    os.kill(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
                try:
                    proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    pass
            # Whatever is left in its process group (it leads its own session).
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:  # pragma: no cover - a stuck zombie
                pass
        for t in self._threads:
            t.join(timeout=2)
        for stream in (proc.stdout, proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except Exception:
                pass
        self._threads = []
        self._proc = None

    def _stderr_tail(self) -> str:
        # Give the stderr pump a moment to collect the reason for a failure.
        time.sleep(0.1)
        tail = "\n".join(list(self._stderr)[-10:])
        return f"; stderr:\n{tail}" if tail else ""
