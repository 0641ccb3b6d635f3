"""Shared test helpers: run the real CLI, collect real ZeroMQ messages, validate them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from edge_rt.client import DetectionMessage, EndOfStream, Message, Subscriber
from edge_rt.wire.schema import json_schema

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "edge_rt", *args]


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["YOLO_OFFLINE"] = "1"
    e["PYTHONPATH"] = str(ROOT)
    return e


def run_cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cli(*args), capture_output=True, text=True, timeout=timeout, env=env())


def start_cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(cli(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env())


class CliProcess:
    """An `edge-rt` command in its own process whose stderr a thread collects, so a test can wait for a log line."""

    def __init__(self, *args: str, extra_env: dict[str, str] | None = None) -> None:
        self.args = cli(*args)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env() | (extra_env or {}))
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def stderr(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, text: str, timeout: float = 30) -> str:
        """The first stderr line containing `text`; fails at once if the process exits first."""
        deadline = time.monotonic() + timeout
        while True:
            hit = next((line for line in self.lines if text in line), None)
            if hit is not None:
                return hit
            if self.proc.poll() is not None:
                self._reader.join(2)
                hit = next((line for line in self.lines if text in line), None)
                if hit is not None:
                    return hit
                raise AssertionError(f"exited {self.proc.returncode} before {text!r}:\n" + "\n".join(self.lines[-20:]))
            assert time.monotonic() < deadline, f"no {text!r} within {timeout}s:\n" + "\n".join(self.lines[-20:])
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        finally:
            self.proc.kill()
            self._reader.join(5)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)


_validator = None


def validate(raw: Any) -> None:
    """Every message on the wire must satisfy the JSON Schema shipped in the package."""
    global _validator
    if _validator is None:
        import jsonschema

        schema = json_schema()
        jsonschema.Draft202012Validator.check_schema(schema)
        _validator = jsonschema.Draft202012Validator(schema)
    _validator.validate(dict(raw))


def collect(sub: Subscriber, sources: Sequence[str], timeout: float = 60) -> dict[str, list[Message]]:
    """Messages per source until each named source sent end-of-stream (bounded)."""
    out: dict[str, list[Message]] = {s: [] for s in sources}
    deadline = time.monotonic() + timeout
    while not all(out[s] and isinstance(out[s][-1], EndOfStream) for s in sources):
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out; got { {k: len(v) for k, v in out.items()} }"
        msg = sub.receive(int(remaining * 1000))
        if msg is None:
            continue
        validate(msg.raw)
        out.setdefault(msg.source, []).append(msg)
    return out


def detections_of(messages: list[Message]) -> list[DetectionMessage]:
    return [m for m in messages if isinstance(m, DetectionMessage)]


def read_frames(path: Path) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, im = cap.read()
        if not ok:
            break
        frames.append(im)
    cap.release()
    return frames


def assert_clean_failure(proc: subprocess.CompletedProcess[str], expected: str) -> None:
    """A user mistake: non-zero exit, no traceback, and one `error:` line that says what is wrong."""
    assert proc.returncode != 0, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, proc.stderr
    assert expected in errors[0], errors[0]
