"""`edge-rt bench report`: one report a user can send. On any box it runs the doctor's checks, the
parity check against Ultralytics on the two images Ultralytics ships, `bench engine` at a few batch
sizes, `bench pipeline` with 1, 8 and 16 synthetic cameras and `bench compare` on a synthetic clip,
and writes one Markdown file (for people) and one JSON file (for tools) with the box's facts.

Each section runs even when an earlier one failed: a section records `ok`, `skipped` (with why:
no Ultralytics on a runtime-only image), `failed` (it ran and found the box broken: the doctor) or
`error` (it raised: its one line). The measuring is the bench modules' own; nothing is timed again here.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import importlib.util
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ..errors import EdgeRtError
from .hardware import describe_host
from .report_data import ERROR, FAILED, OK, SKIPPED, Report, Section

SECTIONS = ("doctor", "parity", "engine", "pipeline", "compare")
PARITY_IMAGES = ("bus.jpg", "zidane.jpg")
VERSIONED = ("numpy", "onnxruntime", "onnxruntime-gpu", "opencv-python", "opencv-python-headless", "opencv-contrib-python",
             "pyzmq", "ultralytics", "torch", "tensorrt", "tensorrt-cu12", "tensorrt-cu13", "cuda-python", "cuda-bindings")


class Skip(Exception):
    """A section that cannot run on this box, and why (not a failure)."""


class SectionError(Exception):
    """A section that raised after collecting part of its figures: the error, and what it has."""

    def __init__(self, message: str, result: Any) -> None:
        super().__init__(message)
        self.result = result


@dataclass(frozen=True)
class ReportSettings:
    """What each section runs; `quick` is the smoke-test size (the whole report in well under a minute on 2 CPU cores)."""

    model: Path
    device: str = "auto"
    quick: bool = False
    batches: tuple[int, ...] = (1, 4, 8)
    iters: int = 200
    warmup: int = 20
    engine_budget_s: float = 15.0  # per batch size at most, on a slow box (bench_engine's budget_s)
    sources: tuple[int, ...] = (1, 8, 16)
    duration_s: float = 10.0  # measured per pipeline run, after warmup_s
    warmup_s: float = 2.0
    frame_size: tuple[int, int] = (1280, 720)
    clip_frames: int = 150  # bench compare's clip, at most: fewer for a slow model (sized_by)
    compare_s: float = 10.0  # what the clip should take edge_rt's bare engine, about
    rounds: int = 1

    @classmethod
    def make(cls, model: Path, device: str = "auto", quick: bool = False, duration_s: float | None = None) -> ReportSettings:
        s = cls(model, device, quick)
        if quick:
            s = replace(s, batches=(1, 4), iters=50, warmup=10, engine_budget_s=3.0, duration_s=1.0, warmup_s=0.5, clip_frames=24)
        return s if duration_s is None else replace(s, duration_s=duration_s)

    def sized_by(self, images_per_s: float) -> ReportSettings:
        """A clip the measured engine runs in about compare_s (30 frames at least): a YOLOv8s on 2 CPU cores
        would otherwise spend minutes on it, twice (edge_rt, then Ultralytics)."""
        frames = max(min(self.clip_frames, 30), min(self.clip_frames, round(images_per_s * self.compare_s)))
        return replace(self, clip_frames=frames)


def default_stem(hostname: str | None = None, now: datetime.datetime | None = None) -> str:
    """edge-rt-report-<host>-<YYYYmmdd-HHMMSS>: one per box and run, safe as a file name."""
    host = re.sub(r"[^A-Za-z0-9_.-]+", "-", hostname or socket.gethostname()).strip("-.") or "box"
    return f"edge-rt-report-{host}-{(now or datetime.datetime.now()).strftime('%Y%m%d-%H%M%S')}"


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    line = text[0] if text else ""
    return line if isinstance(exc, EdgeRtError) else f"{type(exc).__name__}: {line}" if line else type(exc).__name__


def _versions() -> dict[str, str]:
    from .. import __version__

    out = {"edge_rt": __version__}
    for dist in VERSIONED:
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            pass
    return out


def _ultralytics_assets() -> Path:
    """Where Ultralytics keeps bus.jpg and zidane.jpg; Skip without Ultralytics (runtime-only images have none)."""
    for needed in ("ultralytics", "torch"):
        if importlib.util.find_spec(needed) is None:
            raise Skip("Ultralytics not installed" + ("" if needed == "ultralytics" else " (no torch)"))
    spec = importlib.util.find_spec("ultralytics")
    roots = list(spec.submodule_search_locations or []) if spec else []
    return Path(roots[0]) / "assets" if roots else Path("assets")


def _reference_runs(s: ReportSettings, model: dict[str, Any]) -> Path:
    """Ultralytics' assets folder, when Ultralytics can run this model as the reference; Skip otherwise."""
    assets = _ultralytics_assets()
    folder = s.model if s.model.is_dir() else s.model.parent
    ultralytics_ir = s.model.suffix.lower() in ("", ".xml") and (folder / "metadata.yaml").is_file()
    if s.model.suffix.lower() != ".onnx" and not ultralytics_ir:
        raise Skip(
            f"Ultralytics runs the reference from an ONNX model or its own OpenVINO folder (metadata.yaml beside the .xml), "
            f"and {s.model.name} is neither"
        )
    if model["graph_preprocess"]:
        raise Skip("the model letterboxes in its graph (uint8 frames in): Ultralytics cannot run it; check the export it came from")
    return assets


# Sections: each returns (result, headline) or raises Skip / an error; `failed` is the doctor's own verdict.


def run_doctor(_: ReportSettings, model: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from ..doctor import healthy, run_checks

    checks = run_checks()
    counts = {st: sum(c.status == st for c in checks) for st in ("ok", "info", "warn", "fail")}
    summary = ", ".join(f"{n} {st}" for st, n in counts.items() if n)
    return {"healthy": healthy(checks), "checks": [asdict(c) for c in checks], "counts": counts}, summary


def run_parity(s: ReportSettings, model: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """edge_rt's preprocess, engine and postprocess against Ultralytics' predict on the same ONNX, per image."""
    import cv2
    import numpy as np

    from ..detect.postprocess import PostprocessSettings
    from ..exporters.verify import compare, runtime_detector, ultralytics_detector

    assets = _reference_runs(s, model)
    frames: dict[str, np.ndarray] = {}
    for name in PARITY_IMAGES:
        image = cv2.imread(str(assets / name))
        if image is not None:
            frames[name] = image
    missing = [n for n in PARITY_IMAGES if n not in frames]
    if missing:
        raise Skip(f"Ultralytics' sample images {', '.join(missing)} are not in {assets} (or unreadable)")
    h, w = model["imgsz"]
    settings = PostprocessSettings()
    ours = runtime_detector(s.model, settings, s.device)
    reference = ultralytics_detector(s.model, h if h == w else (h, w), settings)  # Ultralytics runs it on the CPU
    images = []
    for name, frame in frames.items():
        r = compare(reference, ours, [frame])
        images.append({"image": name, **asdict(r), "match_rate": r.match_rate, "found": r.found, "extra": r.extra})
    ref_n = sum(i["reference_boxes"] for i in images)
    matched = all(i["matched"] == i["reference_boxes"] == i["candidate_boxes"] for i in images)
    result = {"images": images, "all_matched": matched, "reference_boxes": ref_n, "settings": asdict(settings)}
    boxes = ", ".join(f"{i['image']} {i['matched']}/{i['reference_boxes']}" for i in images)
    none = ", no boxes from either: the check shows little" if ref_n == 0 else ""
    return result, f"{'same boxes' if matched else 'boxes differ'} ({boxes} matched{none})"


def run_engine(s: ReportSettings, model: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from .engine import bench_engine

    # a fixed-batch model runs only its own batch: measure that one whatever the list says
    batches = s.batches if model["batch"] is None else tuple(sorted({*s.batches, model["batch"]}))
    rows = bench_engine(s.model, s.device, batches, s.iters, s.warmup, budget_s=s.engine_budget_s)
    ran = [r.batch for r in rows]
    result = {
        "iters": s.iters,
        "warmup": s.warmup,
        "budget_s": s.engine_budget_s,
        "results": [{k: v for k, v in asdict(r).items() if k != "host"} for r in rows],
        "batches_not_run": [b for b in batches if b not in ran],
    }
    if result["batches_not_run"]:
        fixed = model["batch"] is not None
        result["why_not_run"] = f"the model's batch is fixed at {model['batch']}" if fixed else (
            f"the NMS in its graph handles batches up to {model['max_batch']}")
    head = ", ".join(f"b{r.batch} {r.call_ms['p50']:.2f} ms p50 / {r.images_per_s:.1f} img/s" for r in rows)
    return result, head


def pipeline_row(r: Any) -> dict[str, Any]:
    """A PipelineResult for the report: without its per-frame timeline and host, with its totals."""
    row = {k: v for k, v in asdict(r).items() if k not in ("timeline", "host")}
    fps = sorted(r.fps.values())
    return {**row, "total_fps": r.total_fps, "ratio": r.ratio, "source_fps_median": fps[len(fps) // 2] if fps else 0.0,
            "skipped_total": sum(r.skipped.values())}


def run_pipeline(s: ReportSettings, model: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """One run per source count; a count that fails is recorded and the next still runs."""
    from .pipeline import bench_pipeline

    runs, errors = [], {}
    for n in s.sources:
        try:
            r = bench_pipeline(
                s.model, [], None, s.duration_s, s.device, None, s.warmup_s, synthetic=n, frame_size=s.frame_size,
                engine_budget_s=s.engine_budget_s / 2,
            )
            row = pipeline_row(r)
            runs.append({"sources": n, "source_names": row.pop("sources"), **row})
        except Exception as exc:  # noqa: BLE001 - one count's failure is that count's line in the report
            errors[str(n)] = _one_line(exc)
    result = {"duration_s": s.duration_s, "warmup_s": s.warmup_s, "frame_size": list(s.frame_size), "runs": runs, "errors": errors}
    if errors:
        raise SectionError("; ".join(f"{n} sources: {e}" for n, e in errors.items()), result)
    return result, ", ".join(f"{r['sources']} src {r['total_fps']:.1f} fps" for r in runs)


def run_compare(s: ReportSettings, model: dict[str, Any]) -> tuple[dict[str, Any], str]:
    from ..training.synth_video import synth_clip
    from .compare import bench_compare

    _reference_runs(s, model)
    with tempfile.TemporaryDirectory(prefix="edge-rt-report-") as tmp:
        clip = synth_clip(Path(tmp) / "clip.mp4", frames=s.clip_frames, size=s.frame_size)
        r = bench_compare(s.model, str(clip), None, s.device, None, s.rounds)
    result = {k: v for k, v in asdict(r).items() if k not in ("host", "source")}
    result.update(ratio=r.ratio, clip=f"a synthetic {s.frame_size[0]}x{s.frame_size[1]} clip")
    return result, f"edge_rt {r.edge_fps:.1f} fps vs Ultralytics {r.ultralytics_fps:.1f} fps = {r.ratio:.2f}x"


RUNNERS: dict[str, Callable[[ReportSettings, dict[str, Any]], tuple[Any, str]]] = {
    "doctor": run_doctor,
    "parity": run_parity,
    "engine": run_engine,
    "pipeline": run_pipeline,
    "compare": run_compare,
}


def run_section(name: str, s: ReportSettings, model: dict[str, Any]) -> Section:
    t0 = time.monotonic()
    try:
        result, headline = RUNNERS[name](s, model)
    except Skip as why:
        return Section(name, SKIPPED, time.monotonic() - t0, str(why))
    except SectionError as exc:
        return Section(name, ERROR, time.monotonic() - t0, str(exc), exc.result)
    except Exception as exc:  # noqa: BLE001 - a section that raises is a line in the report, never the end of it
        return Section(name, ERROR, time.monotonic() - t0, _one_line(exc))
    if name == "doctor" and not result["healthy"]:
        fails = [c["area"] for c in result["checks"] if c["status"] == "fail"] or ["no engine: ONNX Runtime CPU or TensorRT"]
        return Section(name, FAILED, time.monotonic() - t0, f"this box cannot run edge_rt as it is: {', '.join(fails)}", result, headline)
    return Section(name, OK, time.monotonic() - t0, "", result, headline)


def model_facts(model: Path, device: str, max_batch: int = 1) -> dict[str, Any]:
    """Loads the model once before anything runs: a missing or unreadable model, or a device this box
    lacks, is the user's one-line error (EdgeRtError), not five failed sections."""
    from ..engines import load_engine

    # loaded for the batch the engine section sends next: the TensorRT provider's cached engine is then that one
    engine = load_engine(model, device, max_batch=max_batch)
    try:
        i = engine.info
        return {
            "path": str(model),
            "name": model.name,
            "size_mb": round(model.stat().st_size / 1e6, 2),
            "device": engine.device,
            "imgsz": list(i.imgsz),
            "batch": i.batch,
            "max_batch": i.max_batch,
            "dynamic_shape": i.dynamic_shape,
            "end2end": i.end2end,
            "graph_preprocess": i.graph_preprocess,
            "input_dtype": i.input_dtype,
            "classes": i.num_classes,
        }
    finally:
        engine.close()


def run_report(settings: ReportSettings, progress: Callable[[str], None] = lambda line: None) -> Report:
    """Every section in turn; `progress` gets one line per section as it ends."""
    t0 = time.monotonic()
    created = datetime.datetime.now().astimezone()
    model = model_facts(settings.model, settings.device, max(settings.batches, default=1))
    sections = []
    for k, name in enumerate(SECTIONS, 1):
        sec = run_section(name, settings, model)
        sections.append(sec)
        if name == "engine" and sec.status == OK and sec.result["results"]:
            settings = settings.sized_by(sec.result["results"][0]["images_per_s"])
        what = sec.headline if sec.status == OK else f"{sec.status}: {sec.reason}"
        progress(f"bench report [{k}/{len(SECTIONS)}] {name}: {what} ({sec.seconds:.1f} s)")
    settings_json = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(settings).items()}
    return Report(
        created=created.isoformat(timespec="seconds"),
        hostname=socket.gethostname(),
        settings=settings_json,
        model=model,
        host=describe_host(model["device"]),
        versions=_versions(),
        sections=tuple(sections),
        wall_s=time.monotonic() - t0,
    )


def report_paths(output: str | None, json_file: str | None) -> tuple[Path, Path]:
    """`--output STEM` -> STEM.md and STEM.json (a .md or .json ending is taken off); `--json FILE` names
    the JSON apart. Checked before minutes of measuring: a folder that is not there is a ConfigError."""
    from ..errors import ConfigError

    stem = Path(output) if output else Path(default_stem())
    if stem.suffix.lower() in (".md", ".json"):
        stem = stem.with_suffix("")
    md, js = stem.with_name(stem.name + ".md"), Path(json_file) if json_file else stem.with_name(stem.name + ".json")
    for p in (md, js):
        if not p.parent.is_dir():
            raise ConfigError(f"{p}: the folder {str(p.parent)!r} does not exist")
        if not os.access(p.parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
            raise ConfigError(f"{p}: cannot write there; choose another --output")
    return md, js


def write_report(report: Report, md: Path, js: Path) -> None:
    import json

    from ..errors import ConfigError
    from .report_md import render_markdown

    try:
        md.write_text(render_markdown(report))
        js.write_text(json.dumps(report.to_json(), indent=2, default=str) + "\n")
    except OSError as exc:  # a disk that filled up while the report ran: one line, not a traceback
        raise ConfigError(f"cannot write the report to {md} / {js}: {exc.strerror or exc}") from None
