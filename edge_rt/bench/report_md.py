"""The Markdown side of `edge-rt bench report` (bench/report.py): tables a person reads and pastes into
an issue. Everything in it is also in the JSON file; figures are medians (p50) and p99 in ms, rates per second."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .hardware import host_line
from .report_data import OK, Report, Section

TITLES = {
    "doctor": "Doctor",
    "parity": "Parity with Ultralytics (bus.jpg, zidane.jpg)",
    "engine": "Engine alone",
    "pipeline": "Pipeline with synthetic cameras",
    "compare": "edge_rt vs Ultralytics on a clip",
}


def _table(head: list[str], rows: list[list[Any]]) -> list[str]:
    def cell(v: Any) -> str:
        return f"{v:.2f}" if isinstance(v, float) else str(v).replace("|", "\\|")

    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
    ]


def _doctor(r: dict[str, Any]) -> list[str]:
    verdict = "this box can run edge_rt" if r["healthy"] else "**this box cannot run edge_rt as it is** (see the `fail` rows)"
    rows = [[c["status"], c["area"], c["found"], c["fix"]] for c in r["checks"]]
    return [verdict, "", *_table(["status", "area", "found", "fix"], rows)]


def _parity(r: dict[str, Any]) -> list[str]:
    rows = [
        [i["image"], i["reference_boxes"], i["candidate_boxes"], i["matched"], f"{i['match_rate']:.1%}", f"{i['max_conf_diff']:.4f}"]
        for i in r["images"]
    ]
    verdict = "same boxes as Ultralytics' predict" if r["all_matched"] else "**the boxes differ from Ultralytics' predict**"
    if r["reference_boxes"] == 0:
        verdict += ", but neither found anything on these images (a model for other classes?): the check shows little"
    s = r["settings"]
    return [
        f"{verdict} (same class, IoU >= 0.5; conf {s['conf']:g}, NMS IoU {s['iou']:g})",
        "",
        *_table(["image", "Ultralytics boxes", "edge_rt boxes", "matched", "match rate", "max conf diff"], rows),
    ]


def _engine(r: dict[str, Any]) -> list[str]:
    rows = [
        [e["batch"], f"{e['height']}x{e['width']}", e["iters"], e["call_ms"]["p50"], e["call_ms"]["p99"], e["image_ms"], e["image_p99_ms"],
         f"{e['images_per_s']:.1f}"]
        for e in r["results"]
    ]
    out = [
        f"up to {r['iters']} timed calls per batch size after up to {r['warmup']} warm-up calls, {r['budget_s']:g} s at most; "
        "ms per call, and per image (call / batch)",
        "",
        *_table(["batch", "input", "calls", "p50 ms", "p99 ms", "img p50 ms", "img p99 ms", "img/s"], rows),
    ]
    if r["batches_not_run"]:
        out += ["", f"batch {', '.join(map(str, r['batches_not_run']))} not run: {r['why_not_run']}"]
    return out


def _pipeline(r: dict[str, Any]) -> list[str]:
    w, h = r["frame_size"]
    rows = [
        [p["sources"] if len(p["source_names"]) == p["sources"] else f"{p['sources']} ({len(p['source_names'])} delivered)",
         f"{p['total_fps']:.1f}", f"{p['source_fps_median']:.1f}", f"{p['engine_alone_fps']:.1f} at {_hw(p)}", f"{p['ratio']:.0%}",
         f"{p['engine_batch']} ({p['batch_mean']:.1f})", p["to_subscriber"]["p50"], p["to_subscriber"]["p99"],
         p["stages"].get("inference", {}).get("p50", 0.0), p["skipped_total"], p["lost"]]
        for p in r["runs"]
    ]
    out = [
        f"{r['duration_s']:g} s measured per run after {r['warmup_s']:g} s of warm-up; {w}x{h} in-memory frames offered at 1.5x "
        "their share of the bare engine's rate, so the engine, not the cameras, is the limit",
        "",
        *_table(["sources", "frames/s", "per source", "engine alone img/s", "pipeline / engine", "batch (mean)",
                 "capture->subscriber p50 ms", "p99 ms", "inference p50 ms", "skipped", "lost"], rows),
    ]
    out += [
        "",
        "engine alone: the bare engine, same run, at the pipeline's batch and on its input (HxW: the frames letterboxed "
        "for the model; a dynamic model takes 16:9 frames at fewer rows than the Engine section's square input), so "
        "its img/s may differ from the Engine section's: the pipeline is compared with this one",
    ]
    for n, err in r["errors"].items():
        out.append(f"- {n} sources: error: {err}")
    return out


def _hw(run: dict[str, Any]) -> str:
    shape: list[int] = list(run.get("input_shape") or [])
    return f"{shape[0]}x{shape[1]}" if len(shape) == 2 else "?"


def _compare(r: dict[str, Any]) -> list[str]:
    u_where = "cpu" if r["ultralytics_device"] == "cpu" else f"cuda:{r['ultralytics_device']}"
    rows = [
        [f"edge_rt {r['edge_model']}", r["edge_device"], f"{r['edge_fps']:.1f}", r["edge_latency_ms"]["p50"], r["edge_latency_ms"]["p99"]],
        [f"Ultralytics {r['reference_model']}", u_where, f"{r['ultralytics_fps']:.1f}", r["ultralytics_latency_ms"]["p50"],
         r["ultralytics_latency_ms"]["p99"]],
    ]
    b = r["boxes"]
    boxes = (
        "- boxes: neither found any on this clip"
        if not b["reference_boxes"] and not b["edge_boxes"]
        else f"- boxes: edge_rt found {b['found']:.1%} of Ultralytics' {int(b['reference_boxes'])} (same class, IoU >= 0.5), "
        f"{b['extra']:.1%} extra"
    )
    return [
        f"**edge_rt / Ultralytics = {r['ratio']:.2f}x** frames/s on {r['frames']} frames ({r['clip']})",
        "",
        *_table(["", "device", "frames/s", "latency p50 ms", "p99 ms"], rows),
        "",
        "- latency: edge_rt capture -> subscriber; Ultralytics its own preprocess + inference + postprocess per frame",
        boxes,
    ]


RENDER: dict[str, Callable[[dict[str, Any]], list[str]]] = {
    "doctor": _doctor, "parity": _parity, "engine": _engine, "pipeline": _pipeline, "compare": _compare,
}


def _section(s: Section) -> list[str]:
    out = [f"## {TITLES.get(s.name, s.name)}", ""]
    if s.status == "skipped":
        return [*out, f"_skipped: {s.reason}_", ""]
    if s.status == "error":
        out += [f"**error:** {s.reason}", ""]
    if s.result is not None:
        out += [*RENDER[s.name](s.result), ""]
    if s.status == "failed":
        out += [f"**failed:** {s.reason}", ""]
    return out


def _versions(v: dict[str, str]) -> str:
    return ", ".join(f"{k} {val}" for k, val in v.items())


def render_markdown(report: Report) -> str:
    m = report.model
    shape = "x".join(map(str, m["imgsz"])) + (" dynamic" if m["dynamic_shape"] else "")
    batch = f"batch {m['batch']}" if m["batch"] is not None else "dynamic batch"
    verdict = "ok" if not report.problems else "problems: " + "; ".join(report.problems)
    out = [
        f"# edge_rt bench report: {report.hostname}, {report.created}",
        "",
        f"- **result:** {verdict}",
        f"- **model:** `{m['name']}` ({shape}, {batch}, {m['classes']} classes, {m['input_dtype']}, {m['size_mb']:g} MB) on {m['device']}",
        f"- **run:** {'--quick' if report.settings['quick'] else 'full'}, --device {report.settings['device']}, "
        f"{report.wall_s:.0f} s in all",
        f"- **{host_line(report.host)}**",
        f"- **versions:** {_versions(report.versions)}",
        "",
        *_table(
            ["section", "status", "seconds", "summary"],
            [[s.name, s.status, f"{s.seconds:.1f}", s.headline if s.status == OK else s.reason] for s in report.sections],
        ),
        "",
    ]
    for s in report.sections:
        out += _section(s)
    return "\n".join(out).rstrip() + "\n"
