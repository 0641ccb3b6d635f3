"""Which INT8 variant to ship, by measurement: QDQ vs QOperator, per-channel vs per-tensor weights,
percentile vs min/max ranges, which layers stay float. One calibration, every variant written from
it, each scored against Ultralytics' predict on the original .pt (held-out frames) and timed in
interleaved rounds (A B C A B C ...) so a neighbour's load hits every variant alike.

    python -m edge_rt.bench.int8_variants --weights best.pt --calibration clip.mp4 --heldout other.mp4 \\
        --imgsz 384x640 --out bench-results/int8_variants
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..exporters import imgsz_text, parse_imgsz
from ..exporters.int8 import Int8Settings

VARIANTS: dict[str, Int8Settings | None] = {
    "fp32": None,
    "qdq-perchannel-percentile": Int8Settings(method="percentile", keep_float="head+feeders"),
    "qoperator-perchannel-percentile": Int8Settings(quant_format="qoperator", method="percentile", keep_float="head+feeders"),
    "qdq-pertensor-percentile": Int8Settings(per_channel=False, method="percentile", keep_float="head+feeders"),
    "qdq-perchannel-percentile-headonly": Int8Settings(keep_float="head", method="percentile"),
    "qdq-perchannel-percentile-headoutputs": Int8Settings(keep_float="head-outputs", method="percentile"),
    "qdq-perchannel-minmax": Int8Settings(method="minmax", keep_float="head+feeders"),
    "qoperator-perchannel-minmax": Int8Settings(quant_format="qoperator", method="minmax", keep_float="head+feeders"),
    "qdq-pertensor-minmax": Int8Settings(per_channel=False, method="minmax", keep_float="head+feeders"),
    "qdq-perchannel-minmax-headonly": Int8Settings(method="minmax", keep_float="head"),
    "qoperator-perchannel-minmax-headonly": Int8Settings(quant_format="qoperator", method="minmax", keep_float="head"),
    "qdq-perchannel-minmax-headoutputs": Int8Settings(method="minmax", keep_float="head-outputs"),
    "qdq-perchannel-minmax-headcls": Int8Settings(method="minmax", keep_float="head-cls"),
    "qdq-pertensor-minmax-headoutputs": Int8Settings(per_channel=False, method="minmax", keep_float="head-outputs"),
    "qdq-perchannel-minmax-headcls-int8stem": Int8Settings(method="minmax", keep_float="head-cls", float_stem=False),
    "qdq-perchannel-minmax-headcls1": Int8Settings(method="minmax", keep_float="head-cls1"),
    "qdq-perchannel-minmax-headcls1-int8stem": Int8Settings(method="minmax", keep_float="head-cls1", float_stem=False),
    "qdq-perchannel-minmax-headclsp3": Int8Settings(method="minmax", keep_float="head-cls-p3"),
}


@dataclass(frozen=True)
class VariantResult:
    name: str
    ms_median: float  # one inference, batch 1, median over rounds of the per-round median
    ms_rounds: list[float]
    reference_boxes: int
    boxes: int
    matched: int

    @property
    def found(self) -> float:
        return self.matched / max(self.reference_boxes, 1)

    @property
    def extra(self) -> float:
        return (self.boxes - self.matched) / max(self.reference_boxes, 1)


def study(
    weights: Path,
    calibration: Path,
    heldout: Path,
    imgsz: int | tuple[int, int],
    out: Path,
    frames: int = 64,
    heldout_frames: int = 100,
    rounds: int = 5,
    iters: int = 20,
    threads: int | None = None,
    variants: list[str] | None = None,
) -> list[VariantResult]:
    from ..detect.postprocess import PostprocessSettings
    from ..detect.preprocess import make_preprocessor
    from ..engines import load_engine
    from ..exporters.calibration import CalibrationFrames, load_frames
    from ..exporters.int8 import Int8Quantizer
    from ..exporters.onnx import export_onnx
    from ..exporters.verify import match, runtime_detector, ultralytics_detector

    out.mkdir(parents=True, exist_ok=True)
    hw = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    paths: dict[str, Path] = {"fp32": export_onnx(weights, out / "fp32.onnx", imgsz)}
    with tempfile.TemporaryDirectory(prefix="edge-rt-int8-study-") as tmp:
        q = Int8Quantizer(paths["fp32"], Path(tmp))
        cal = CalibrationFrames(calibration, frames).checked()
        chosen = {n: VARIANTS[n] for n in (variants or list(VARIANTS))}
        for name, settings in sorted(chosen.items(), key=lambda kv: kv[1] is not None and kv[1].method != "minmax"):
            if settings is not None:
                q.calibrate(cal, settings.method)
                paths[name] = q.write(out / f"{name}.onnx", settings)

    held = load_frames(heldout, heldout_frames)
    post = PostprocessSettings()
    ref = ultralytics_detector(weights, hw, post)
    reference = [ref(f) for f in held]
    counts: dict[str, tuple[int, int, int]] = {}
    for name, path in paths.items():
        det = runtime_detector(path, post)
        found = [det(f) for f in held]
        counts[name] = (
            sum(len(r) for r in reference),
            sum(len(c) for c in found),
            sum(len(match(r, c, 0.5)) for r, c in zip(reference, found)),
        )

    engines = {name: load_engine(path, "cpu", threads=threads) for name, path in paths.items()}
    pre = make_preprocessor(engines["fp32"].info)
    tensor = pre([held[0]]).tensor.copy()
    for engine in engines.values():
        for _ in range(3):
            engine.infer(tensor, None)
    timings: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(rounds):
        for name, engine in engines.items():
            samples = []
            for _ in range(iters):
                t0 = time.perf_counter_ns()
                engine.infer(tensor, None)
                samples.append((time.perf_counter_ns() - t0) / 1e6)
            timings[name].append(float(np.median(samples)))
    for engine in engines.values():
        engine.close()
    results = [VariantResult(n, float(np.median(timings[n])), timings[n], *counts[n]) for n in paths]
    (out / "variants.json").write_text(
        json.dumps(
            {
                "weights": str(weights),
                "imgsz": list(hw),
                "calibration_frames": frames,
                "heldout_frames": len(held),
                "results": [{**asdict(r), "found": r.found, "extra": r.extra} for r in results],
            },
            indent=2,
        )
    )
    return results


def table(results: list[VariantResult], imgsz: int | tuple[int, int]) -> str:
    base = next(r for r in results if r.name == "fp32").ms_median
    lines = [
        f"INT8 variants at {imgsz_text(imgsz)}, batch 1; boxes against Ultralytics' predict on the .pt (same class, IoU >= 0.5)",
        f"{'variant':<38} {'ms':>7} {'vs fp32':>8} {'found':>7} {'extra':>7} {'boxes':>11}",
    ]
    for r in results:
        lines.append(
            f"{r.name:<38} {r.ms_median:>7.1f} {base / r.ms_median:>7.2f}x {r.found:>7.1%} {r.extra:>7.1%} "
            f"{r.boxes:>5}/{r.reference_boxes:<5}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--weights", required=True, type=Path)
    p.add_argument("--calibration", required=True, type=Path)
    p.add_argument("--heldout", required=True, type=Path, help="frames the calibration never saw")
    p.add_argument("--imgsz", default="640")
    p.add_argument("--out", type=Path, default=Path("bench-results/int8_variants"))
    p.add_argument("--frames", type=int, default=64)
    p.add_argument("--heldout-frames", type=int, default=100)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--threads", type=int)
    p.add_argument("--variants", help=f"comma-separated, fp32 always included (default all: {', '.join(VARIANTS)})")
    a = p.parse_args(argv)
    chosen = ["fp32", *[v for v in (a.variants or "").split(",") if v and v != "fp32"]] if a.variants else None
    unknown = [v for v in chosen or [] if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}")
    imgsz = parse_imgsz(a.imgsz)
    results = study(
        a.weights, a.calibration, a.heldout, imgsz, a.out, a.frames, a.heldout_frames, a.rounds, a.iters, a.threads, chosen
    )
    print(table(results, imgsz))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
