"""The handshake's side of the server: which model is served, the folder Frigate's models land in.

Frigate names its model by the base name of its `model.path` and, when we say we lack it, sends the
file. One model is served at a time, to every client: a handshake that names another model loads it
from the folder (or from the bytes Frigate then sends) and it replaces the served one, so the model
Frigate is configured for is the model that answers it. Several Frigate detectors configured with one
model never switch anything.

A received file is written only under the folder, by its base name, if it is small enough, is an
ONNX file ONNX Runtime loads as a detection model, and does not replace a different file already
there; otherwise the answer says `model_saved: false`. Nothing here raises for what a client sends.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import ConfigError
from .protocol import TensorRequest

log = logging.getLogger("edge_rt.frigate")

UPLOAD_SUFFIXES = (".onnx",)  # a TensorRT engine cannot travel alone: it needs its sidecar beside it
LOOKUP_SUFFIXES = (".onnx", ".engine", ".plan", ".trt")
MAX_NAME = 200


class Served(Protocol):
    """A loaded model as the server uses it (`detector.ModelRunner` is one): up to `batch` requests per call."""

    batch: int

    def detect(self, requests: Sequence[TensorRequest]) -> list[np.ndarray]: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class StoreSettings:
    folder: Path
    max_bytes: int  # largest model file accepted from a client
    uploads: bool = True  # False: never write what a client sends

    def check(self) -> StoreSettings:
        if self.max_bytes <= 0:
            raise ConfigError(f"--max-model-mb must be > 0, got {self.max_bytes / 2**20:g}")
        if not self.folder.is_dir():
            raise ConfigError(f"--model-dir {str(self.folder)!r}: no such folder")
        return self


def safe_name(name: str, suffixes: tuple[str, ...] = LOOKUP_SUFFIXES) -> str | None:
    """The base name a client's model name may be stored under, or None: never a path, a hidden
    file (our uploads in progress are hidden), a control character, or another file type."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    if not base or base.startswith(".") or len(base) > MAX_NAME or not base.isprintable():
        return None
    return base if base.lower().endswith(suffixes) else None


class ModelHost:
    """The served model, and the two handshake answers that may replace it.

    `load` builds a served model from a file (raising whatever the file makes it raise); `served` and
    `name` are the model loaded at start.
    """

    def __init__(self, settings: StoreSettings, load: Callable[[Path], Served], served: Served, name: str) -> None:
        self.settings = settings
        self._load = load
        self.served = served
        self.name = name
        self.switches = 0

    def answer_request(self, requested: str) -> dict[str, bool]:
        """`model_request`: available = we have a file of that name; loaded = it is what answers now."""
        if requested == self.name:
            return {"model_available": True, "model_loaded": True}
        base = safe_name(requested)
        path = self.settings.folder / base if base else None
        if path is None or not path.is_file():
            log.info("handshake: Frigate asks for model %r, not in %s: it may send it", requested, self.settings.folder)
            return {"model_available": False, "model_loaded": False}
        return {"model_available": True, "model_loaded": self._switch(path, base or requested)}

    def answer_upload(self, requested: str, data: memoryview) -> dict[str, bool]:
        """`model_data`: save the file under the folder by its base name, load it, serve it."""
        refused = {"model_saved": False, "model_loaded": False}
        if not self.settings.uploads:
            log.warning("handshake: model %r sent by a client refused: uploads are off (--refuse-uploads)", requested)
            return refused
        base = safe_name(requested, UPLOAD_SUFFIXES)
        if base is None:
            log.warning("handshake: model name %r refused: a file name ending in .onnx is expected", requested[:80])
            return refused
        if data.nbytes > self.settings.max_bytes:
            log.warning(
                "handshake: model %r refused: %.1f MiB, over --max-model-mb %g",
                base,
                data.nbytes / 2**20,
                self.settings.max_bytes / 2**20,
            )
            return refused
        final = self.settings.folder / base
        if final.exists():
            if not final.is_file() or final.read_bytes() != data:
                log.warning("handshake: model %r refused: a different %s already exists (not overwritten)", base, final)
                return refused
            return {"model_saved": True, "model_loaded": self._switch(final, base)}
        return self._save_and_switch(base, final, data)

    def _save_and_switch(self, base: str, final: Path, data: memoryview) -> dict[str, bool]:
        # Written under a hidden name with the same suffix (the loader picks the backend by suffix), loaded
        # from there, and only then renamed into place: a file that does not load never appears.
        partial = final.with_name(f".upload-{secrets.token_hex(4)}-{base}")
        try:
            fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        except OSError as exc:
            log.warning("handshake: model %r not saved in %s: %s", base, self.settings.folder, exc.strerror or exc)
            partial.unlink(missing_ok=True)
            return {"model_saved": False, "model_loaded": False}
        try:
            served = self._try_load(partial, base)
            if served is None:
                return {"model_saved": False, "model_loaded": False}
            os.replace(partial, final)
        finally:
            partial.unlink(missing_ok=True)
        log.info("handshake: model %s received from Frigate (%.1f MiB), saved as %s", base, data.nbytes / 2**20, final)
        self._serve(served, base)
        return {"model_saved": True, "model_loaded": True}

    def _switch(self, path: Path, base: str) -> bool:
        served = self._try_load(path, base)
        if served is None:
            return False
        self._serve(served, base)
        return True

    def _try_load(self, path: Path, base: str) -> Served | None:
        try:
            return self._load(path)
        except Exception as exc:  # a client's file must never stop the server: whatever it raises is a refusal
            log.warning("handshake: model %r does not load: %s", base, str(exc).replace(str(path), base)[:300])
            return None

    def _serve(self, served: Served, name: str) -> None:
        old, old_name = self.served, self.name
        self.served, self.name = served, name
        self.switches += 1
        old.close()
        log.warning("now serving model %s (was %s), for every client: a Frigate handshake asked for it", name, old_name)

    def close(self) -> None:
        self.served.close()
