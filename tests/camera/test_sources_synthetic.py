"""Synthetic sources: in-memory frames through the real capture threads, slots and batcher."""

from __future__ import annotations

import time

import numpy as np
import pytest

from edge_rt.camera.capture import CaptureState, SourceGroup
from edge_rt.camera.sources import Frame, SourceKind, parse_source
from edge_rt.camera.synthetic import render_synthetic
from edge_rt.detect.batching import Batcher
from edge_rt.errors import ConfigError, SourceError
from tests.helpers import assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    "text,kwargs,name,fps",
    [
        ("synthetic://1280x720", {}, "cam2", 30.0),  # a camera has a frame rate: 30 unless told
        ("door=synthetic://640x360?fps=12.5", {}, "door", 12.5),
        ("synthetic://640x360?frames=3&fps=7", {}, "cam2", 7.0),
        ("SYNTHETIC://320X240", {"fps": 15}, "cam2", 15.0),  # the spec's fps (--fps) paces it too
        ("synthetic://320x240?fps=15", {"fps": 15}, "cam2", 15.0),  # the same rate twice is fine
    ],
)
def test_parse_synthetic(text: str, kwargs: dict, name: str, fps: float) -> None:
    spec = parse_source(text, 2, **kwargs)
    assert (spec.kind, spec.name, spec.fps) == (SourceKind.SYNTHETIC, name, fps)
    assert spec.keeps_latest_only and spec.kind.live and not spec.kind.can_stall


@pytest.mark.parametrize(
    "text,kwargs,error,expected",
    [
        ("synthetic://big", {}, SourceError, "expected synthetic://WIDTHxHEIGHT"),
        ("synthetic://1280x720x3", {}, SourceError, "expected synthetic://WIDTHxHEIGHT"),
        ("synthetic://", {}, SourceError, "expected synthetic://WIDTHxHEIGHT"),
        ("synthetic://8x8", {}, SourceError, "each side must be 16..8192"),
        ("synthetic://99999x720", {}, SourceError, "each side must be 16..8192"),
        ("synthetic://640x360?fps=0", {}, SourceError, "must be > 0"),
        ("synthetic://640x360?fps=fast", {}, SourceError, "is not a number"),
        ("synthetic://640x360?speed=3", {}, SourceError, "unknown option 'speed=3'"),
        ("synthetic://640x360?fps", {}, SourceError, "unknown option 'fps'"),
        ("synthetic://640x360?frames=0", {}, SourceError, "whole number 1..64"),
        ("synthetic://640x360?frames=2.5", {}, SourceError, "whole number 1..64"),
        ("synthetic://640x360?frames=nan", {}, SourceError, "whole number 1..64"),
        ("synthetic://640x360?fps=inf", {}, SourceError, "must be > 0 and <= 10000"),
        ("synthetic://640x360?fps=10", {"fps": 20}, ConfigError, "fps given twice"),
        ("synthetic://640x360", {"loop": True}, ConfigError, "loop applies to files only"),
    ],
)
def test_parse_synthetic_errors(text: str, kwargs: dict, error: type, expected: str) -> None:
    with pytest.raises(error, match=expected):
        parse_source(text, 0, **kwargs)


def test_frames_are_prerendered_shared_and_read_only() -> None:
    frames = render_synthetic(320, 240, 4)
    assert len(frames) == 4 and all(f.shape == (240, 320, 3) and f.dtype == np.uint8 for f in frames)
    assert render_synthetic(320, 240, 4) is frames, "sources of one size share the same frames"
    assert not frames[0].flags.writeable, "shared frames must not be drawn on"
    assert not np.array_equal(frames[0], frames[1]), "the shapes move"


def _collect(group: SourceGroup, batcher: Batcher, seconds: float, slow_s: float = 0.0) -> list[Frame]:
    frames: list[Frame] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        batch = batcher.next_batch(0.2)
        if batch is not None:
            frames.extend(batch.frames)
            time.sleep(slow_s)
    return frames


def test_synthetic_sources_deliver_frames_of_their_size_at_their_rate() -> None:
    group = SourceGroup([parse_source("a=synthetic://1280x720?fps=20", 0), parse_source("b=synthetic://640x360", 1, fps=40)])
    batcher = Batcher(group.slots, group.cond, max_batch=2, max_wait_s=0.005)
    group.start()
    try:
        frames = _collect(group, batcher, 2.0)
    finally:
        group.stop()
    by_source = {s: [f for f in frames if f.source == s] for s in ("a", "b")}
    assert {f.image.shape for f in by_source["a"]} == {(720, 1280, 3)}
    assert {f.image.shape for f in by_source["b"]} == {(360, 640, 3)}
    # Paced like a camera: ~20 and ~40 frames/s over 2 s (loose bounds for a busy 2-core box).
    assert 30 <= len(by_source["a"]) <= 42, len(by_source["a"])
    assert 60 <= len(by_source["b"]) <= 82, len(by_source["b"])
    gaps = np.diff([f.capture_mono_ns for f in by_source["a"]]) / 1e6
    assert 40 <= float(np.median(gaps)) <= 60, "one frame every 50 ms"
    assert [f.index for f in by_source["a"]] == list(range(len(by_source["a"]))), "a fast consumer misses nothing"
    assert all(t.events[0].state is CaptureState.ONLINE for t in group.threads)


def test_a_slow_consumer_gets_the_newest_frame_and_the_skips_are_counted() -> None:
    group = SourceGroup([parse_source("synthetic://320x240?fps=100", 0)])
    batcher = Batcher(group.slots, group.cond, max_batch=1, max_wait_s=0.0)
    group.start()
    try:
        frames = _collect(group, batcher, 1.5, slow_s=0.05)  # ~20 takes/s from a 100 frames/s camera
    finally:
        group.stop()
    counters = group.slots[0].counters
    assert 10 <= len(frames) <= 35
    assert counters.skipped >= 50, counters
    assert counters.paced_out == 0, "paced by waiting for ticks, never by dropping frames it read"
    assert counters.read == counters.delivered + counters.skipped + (1 if group.slots[0].ready() else 0)
    assert frames[-1].index - frames[0].index + 1 > len(frames), "frame indexes jump over what was skipped"


def test_a_bad_synthetic_source_is_one_clear_line() -> None:
    proc = run_cli("run", "-m", "missing.onnx", "-s", "synthetic://1280by720", timeout=60)
    assert_clean_failure(proc, "expected synthetic://WIDTHxHEIGHT")
