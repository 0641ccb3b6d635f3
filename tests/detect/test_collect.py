"""`edge-rt run --collect`: frames the model is unsure about saved as a dataset, rate-limited, off the publish path."""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_rt.camera.sources import Frame
from edge_rt.client import DetectionMessage, Subscriber
from edge_rt.config import build_run_config, load_yaml
from edge_rt.detect.collect import CollectSettings, FrameCollector
from edge_rt.detect.postprocess import Detections
from edge_rt.errors import ConfigError
from edge_rt.training.synth_video import synth_clip
from tests.helpers import ROOT, assert_clean_failure, collect, detections_of, run_cli, start_cli

pytestmark = pytest.mark.timeout(60)

DEMO = ROOT / "models" / "demo" / "demo.onnx"
NAMES = {0: "circle", 1: "square", 2: "triangle", 3: "cross"}
STEM = re.compile(r"^(?P<source>[A-Za-z0-9_.-]+)_(?P<stamp>\d{8}T\d{6}\.\d{3}Z)_(?P<index>\d{6})$")


def _in_window(m: DetectionMessage, lo: float, hi: float) -> bool:
    return any(lo <= d.conf < hi for d in m.detections)


def _labels(path: Path) -> np.ndarray:
    rows = [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
    return np.asarray(rows, dtype=np.float64).reshape(-1, 5)


def test_run_collects_unsure_frames_as_a_dataset_rate_limited_per_camera(tmp_path: Path) -> None:
    lo, hi, interval = 0.4, 0.6, 0.33  # 6.6 frame periods at 20 fps: no frame sits on the boundary
    clips = {
        name: synth_clip(tmp_path / f"{name}.mp4", frames=45, size=(640, 360), seed=seed) for name, seed in (("a", 3), ("b", 4))
    }
    out = tmp_path / "hard"
    endpoint = f"ipc://{tmp_path}/edge.sock"
    with Subscriber(endpoint) as sub:
        proc = start_cli(
            "run", "--model", str(DEMO), "--device", "cpu", "--publish", endpoint, "--await-subscribers", "1",
            "--source", f"a={clips['a']}", "--source", f"b={clips['b']}", "--fps", "20",
            "--collect", str(out), "--collect-conf", f"{lo},{hi}", "--collect-interval", str(interval),
        )  # fmt: skip
        try:
            messages = collect(sub, ["a", "b"])
            _, err = proc.communicate(timeout=30)
        finally:
            proc.kill()
    assert proc.returncode == 0, err

    images = sorted((out / "images").glob("*.jpg"))
    assert sorted(p.name for p in (out / "labels").iterdir()) == sorted(p.stem + ".txt" for p in images)
    saved: dict[str, list[DetectionMessage]] = {"a": [], "b": []}
    for image in images:
        m = STEM.match(image.stem)
        assert m, f"{image.name}: expected SOURCE_YYYYmmddTHHMMSS.mmmZ_INDEX"
        msg = next(x for x in detections_of(messages[m["source"]]) if x.frame_index == int(m["index"]))
        seconds, ns = divmod(msg.timestamps["capture_ns"], 1_000_000_000)
        assert m["stamp"] == time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{ns // 1_000_000:03d}Z"
        assert _in_window(msg, lo, hi), f"{image.name}: no detection in [{lo}, {hi})"
        assert cv2.imread(str(image)).shape == (msg.height, msg.width, 3)
        # The label is what was published for that frame: every box with conf >= LO, normalised.
        kept = [d for d in msg.detections if d.conf >= lo]
        expected = [
            [d.cls, (d.box[0] + d.box[2]) / 2 / msg.width, (d.box[1] + d.box[3]) / 2 / msg.height,
             (d.box[2] - d.box[0]) / msg.width, (d.box[3] - d.box[1]) / msg.height]
            for d in kept
        ]  # fmt: skip
        np.testing.assert_allclose(_labels(out / "labels" / f"{image.stem}.txt"), np.reshape(expected, (-1, 5)), atol=1e-4)
        saved[m["source"]].append(msg)

    for source in ("a", "b"):
        taken = sorted(x.timestamps["capture_ns"] for x in saved[source])
        assert len(taken) >= 3, f"{source}: only {len(taken)} frames collected"
        gaps = np.diff(taken) / 1e9
        assert gaps.min() >= interval - 1e-3, (
            f"{source}: collected frames {gaps.min():.3f}s apart (--collect-interval {interval})"
        )
        # Every frame in the window was collected unless one of its source was, less than the interval before.
        window = [x for x in detections_of(messages[source]) if _in_window(x, lo, hi)]
        limited = 0
        for x in window:
            if x in saved[source]:
                continue
            before = [t for t in taken if t <= x.timestamps["capture_ns"]]
            assert before and (x.timestamps["capture_ns"] - before[-1]) / 1e9 < interval + 1e-3, (
                f"{source} frame {x.frame_index} missed"
            )
            limited += 1
        assert limited > 0, "the rate limit never had to hold a frame back: the test proves nothing"
        assert len(window) < len(detections_of(messages[source])), "every frame in the window: LO,HI selects nothing"
    assert f"collect: {len(images)} frame(s) saved to {out}" in err
    assert re.search(r"a: .*collected \d+, collect_dropped 0", err) and re.search(r"b: .*collected \d+, collect_dropped 0", err)

    check = run_cli("dataset", "check", str(out / "data.yaml"))
    assert check.returncode == 0, check.stderr
    assert (out / "classes.txt").read_text().split() == list(NAMES.values())


def _file_in_the_way(tmp_path: Path) -> list[str]:
    (tmp_path / "afile").write_text("not a folder")
    return ["--collect", str(tmp_path / "afile" / "hard"), "--collect-conf", "0.3,0.6"]


def _other_model_dir(tmp_path: Path) -> list[str]:
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "data.yaml").write_text("train: images\nval: images\nnames: [person, car]\n")
    return ["--collect", str(tmp_path / "old"), "--collect-conf", "0.3,0.6"]


@pytest.mark.parametrize(
    "make_args,expected",
    [
        (lambda t: ["--collect", str(t / "c"), "--collect-conf", "0.9,0.2"], "collect_conf: expected LO,HI"),
        (lambda t: ["--collect", str(t / "c"), "--collect-conf", "0.5"], "collect_conf: expected LO,HI"),
        (lambda t: ["--collect", str(t / "c"), "--collect-conf", "0.1,0.2"], "HI 0.2 is not above conf 0.25"),
        (lambda t: ["--collect", str(t / "c")], "collect: needs collect_conf"),
        (lambda t: ["--collect-conf", "0.3,0.6"], "collect_conf: needs collect DIR"),
        (lambda t: ["--collect", str(t / "c"), "--collect-conf", "0.3,0.6", "--collect-interval", "-1"], "collect_interval"),
        (_file_in_the_way, "cannot write there (Not a directory)"),
        (_other_model_dir, "lists classes {0: 'person', 1: 'car'}, this model has"),
    ],
    ids=["reversed", "one-number", "above-conf", "no-window", "no-dir", "interval", "unwritable", "other-classes"],
)
def test_collect_mistakes_are_one_line_at_start_up(make_args, expected: str, tmp_path: Path) -> None:
    clip = synth_clip(tmp_path / "clip.mp4", frames=2, size=(160, 96))
    proc = run_cli(
        "run",
        "--model",
        str(DEMO),
        "--device",
        "cpu",
        "--publish",
        f"ipc://{tmp_path}/x.sock",
        "--source",
        str(clip),
        *make_args(tmp_path),
    )
    assert_clean_failure(proc, expected)
    assert "done" not in proc.stderr, "refused before the run, not after it"


def test_config_file_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "edge.yaml"
    cfg.write_text(
        f"model: m.onnx\nsources: [0]\ncollect: {tmp_path / 'hard'}\ncollect-conf: [0.3, 0.6]\ncollect_interval: 2\ncollect_max: 50\n"
    )
    config = build_run_config(load_yaml(cfg), {})
    assert (config.collect, config.collect_conf, config.collect_interval, config.collect_max) == (
        str(tmp_path / "hard"),
        (0.3, 0.6),
        2.0,
        50,
    )
    assert build_run_config(load_yaml(cfg), {"collect_conf": "0.35,0.5"}).collect_conf == (0.35, 0.5), "the flag wins"
    cfg.write_text("model: m.onnx\nsources: [0]\ncollect: hard\ncollect_conf: [0.6, 0.3]\n")
    with pytest.raises(ConfigError, match=r"^collect_conf: expected LO,HI.*got \[0\.6, 0\.3\]$"):
        build_run_config(load_yaml(cfg), {})
    cfg.write_text("model: m.onnx\nsources: [0]\ncollect: hard\ncollect_conf: 0.3,0.6\ncollect_max: 0\n")
    with pytest.raises(ConfigError, match="^collect_max: must be >= 1"):
        build_run_config(load_yaml(cfg), {})


def _frame(source: str, index: int, t_s: float, shape: tuple[int, int] = (360, 640)) -> Frame:
    image = np.random.default_rng(index).integers(0, 255, (*shape, 3), dtype=np.uint8)
    return Frame(source, index, image, 1_764_000_000_000_000_000 + int(t_s * 1e9), int(t_s * 1e9))


def _dets(*confs: float) -> Detections:
    n = len(confs)
    boxes = np.tile(np.array([[10, 20, 110, 220]], np.float32), (n, 1)) + np.arange(n, dtype=np.float32)[:, None] * 50
    return Detections(boxes, np.array(confs, np.float32), np.arange(n, dtype=np.int64) % 4)


def _wait(predicate, timeout: float = 10) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_disk_cap_counts_earlier_runs_and_stops_with_one_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = CollectSettings(tmp_path / "hard", 0.3, 0.6, interval_s=0.0, max_frames=3)
    caplog.set_level(logging.INFO, logger="edge_rt.collect")
    first = FrameCollector(settings, NAMES)
    first.start()
    for i in range(6):
        first.offer(_frame("cam0", i, i * 0.1), _dets(0.9, 0.5, 0.2))
    first.close()
    assert len(list((tmp_path / "hard" / "images").glob("*.jpg"))) == 3
    assert [r.message for r in caplog.records].count(
        f"collect: {settings.directory} holds 3 frames (--collect-max): collection stops"
    ) == 1
    assert "stopped at --collect-max" in first.summary()
    label = next((tmp_path / "hard" / "labels").glob("*.txt")).read_text().splitlines()
    assert len(label) == 2, "boxes with conf >= LO: the 0.9 and the 0.5, not the 0.2"

    caplog.clear()
    second = FrameCollector(settings, NAMES)  # a restarted service: the folder is already full
    second.start()
    second.offer(_frame("cam0", 10, 5.0), _dets(0.5))
    second.close()
    assert second.saved == {} and len(list((tmp_path / "hard" / "images").glob("*.jpg"))) == 3
    assert any("already holds 3 frame(s)" in r.message for r in caplog.records)


def test_a_full_queue_drops_and_counts_and_a_write_error_stops_collection_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = CollectSettings(tmp_path / "hard", 0.3, 0.6, interval_s=1.0)
    collector = FrameCollector(settings, NAMES, queue_size=1)
    # The writer is not started yet: one frame fits the queue, the next ones are dropped at once, not waited for.
    t0 = time.perf_counter()
    for i, t in enumerate((0.0, 1.5, 3.0)):
        collector.offer(_frame("cam0", i, t, (1080, 1920)), _dets(0.5))
    assert time.perf_counter() - t0 < 0.5, "offering must never wait for the writer"
    assert collector.counters("cam0") == {"collected": 0, "collect_dropped": 2}
    collector.offer(_frame("cam0", 3, 3.5), _dets(0.95, 0.2))  # no detection in the window: not taken
    collector.start()
    _wait(lambda: collector.saved.get("cam0") == 1)
    assert collector.counters("cam0") == {"collected": 1, "collect_dropped": 2}
    assert [p.stem.split("_")[-1] for p in (tmp_path / "hard" / "images").iterdir()] == ["000000"]

    # The disk goes away under the run: one error line, collection stops, nothing raises.
    caplog.set_level(logging.INFO, logger="edge_rt.collect")
    (tmp_path / "hard" / "images").rename(tmp_path / "hard" / "images.old")
    (tmp_path / "hard" / "images").write_text("now a file")
    collector.offer(_frame("cam0", 20, 5.0), _dets(0.5))
    _wait(lambda: collector.error is not None)
    collector.offer(_frame("cam0", 40, 7.0), _dets(0.5))
    collector.offer(_frame("cam1", 41, 7.0), _dets(0.5))
    collector.close()
    errors = [r.message for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "cannot write to" in errors[0] and "the run goes on" in errors[0], errors
    assert collector.counters("cam0") == {"collected": 1, "collect_dropped": 3}
    assert collector.counters("cam1") == {"collected": 0, "collect_dropped": 0}, "after the error nothing more is selected"
    assert "stopped by a write error" in collector.summary()
    assert len(list((tmp_path / "hard" / "labels").iterdir())) == 1, "no label without its image, no half-written files"


def test_counters_reach_the_pipeline_summary_and_prometheus(tmp_path: Path) -> None:
    """In process, unpaced, interval 0: every frame in the window is saved or counted as dropped."""
    from edge_rt.engines import load_engine
    from edge_rt.ops.metrics import Metrics
    from edge_rt.ops.prometheus import PrometheusMetrics
    from edge_rt.runner import build_pipeline, collect_settings
    from tests.ops.test_prometheus import _scrape

    clip = synth_clip(tmp_path / "clip.mp4", frames=30, size=(320, 192), seed=4)
    config = build_run_config(
        {},
        {
            "model": str(DEMO),
            "sources": [f"door={clip}"],
            "collect": str(tmp_path / "hard"),
            "collect_conf": "0.4,0.6",
            "collect_interval": 0,
        },
    )
    settings = collect_settings(config)
    assert settings is not None
    engine = load_engine(DEMO, "cpu")
    collector = FrameCollector(settings, engine.info.names)

    class Sink:
        def __init__(self) -> None:
            self.messages: list[dict] = []

        def publish(self, topic: str, message: dict) -> bool:
            self.messages.append(message)
            return True

    sink = Sink()
    pipeline = build_pipeline(config, engine, sink, Metrics(), collector)
    metrics = PrometheusMetrics(pipeline.counters, pipeline.health.states)
    port = metrics.serve(0)
    try:
        collector.start()
        pipeline.run()
        collector.close()
        got = _scrape(port)
    finally:
        metrics.close()
        engine.close()
    window = [m for m in sink.messages if m.get("detections") and any(0.4 <= d["conf"] < 0.6 for d in m["detections"])]
    counts = pipeline.counters()["door"]
    files = len(list((tmp_path / "hard" / "images").glob("*.jpg")))
    assert counts["collected"] == files > 0
    assert counts["collected"] + counts["collect_dropped"] == len(window)
    assert got[("edge_rt_frames_collected_total", (("source", "door"),))] == files
    assert got[("edge_rt_collect_dropped_total", (("source", "door"),))] == counts["collect_dropped"]


def test_without_collect_the_summary_has_no_collect_counters(tmp_path: Path) -> None:
    clip = synth_clip(tmp_path / "clip.mp4", frames=3, size=(160, 96))
    proc = run_cli("run", "--model", str(DEMO), "--source", str(clip), "--publish", f"ipc://{tmp_path}/x.sock", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert "cam0: 3 frames" in proc.stderr
    assert not re.search(r"collected \d|collect_dropped|edge_rt\.collect", proc.stderr), proc.stderr
