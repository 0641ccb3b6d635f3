"""Reproduce the demo detector shipped in models/demo/ (see README.md there for the numbers).

Trains a narrow YOLO11 (width 0.125, ~0.8 M parameters) from scratch on synthetic shapes drawn by
edge_rt.training.synth, exports it to ONNX at 320x320 (static batch 1, and a dynamic-shape twin), and
scores both exports on a held-out set drawn with a different seed. CPU only, no downloads.

    cd <repo> && YOLO_OFFLINE=1 PYTHONPATH=. python models/demo/make_demo_model.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

# YOLO11 backbone and head as in ultralytics/cfg/models/11/yolo11.yaml, written out so the demo
# architecture does not change when Ultralytics edits its file; narrower than 'n' (0.25 wide) because
# four flat shape classes need little capacity and a 2-core CPU trains this one ~2.4x faster.
MODEL_YAML = """\
# edge_rt demo detector: YOLO11 layout, depth 0.33, width 0.125
nc: 4
depth_multiple: 0.33
width_multiple: 0.125
max_channels: 512
backbone:
  - [-1, 1, Conv, [64, 3, 2]] # 0-P1/2
  - [-1, 1, Conv, [128, 3, 2]] # 1-P2/4
  - [-1, 2, C3k2, [256, False, 0.25]]
  - [-1, 1, Conv, [256, 3, 2]] # 3-P3/8
  - [-1, 2, C3k2, [512, False, 0.25]]
  - [-1, 1, Conv, [512, 3, 2]] # 5-P4/16
  - [-1, 2, C3k2, [512, True]]
  - [-1, 1, Conv, [1024, 3, 2]] # 7-P5/32
  - [-1, 2, C3k2, [1024, True]]
  - [-1, 1, SPPF, [1024, 5]] # 9
  - [-1, 2, C2PSA, [1024]] # 10
head:
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 6], 1, Concat, [1]] # cat backbone P4
  - [-1, 2, C3k2, [512, False]] # 13
  - [-1, 1, nn.Upsample, [None, 2, "nearest"]]
  - [[-1, 4], 1, Concat, [1]] # cat backbone P3
  - [-1, 2, C3k2, [256, False]] # 16 (P3/8-small)
  - [-1, 1, Conv, [256, 3, 2]]
  - [[-1, 13], 1, Concat, [1]] # cat head P4
  - [-1, 2, C3k2, [512, False]] # 19 (P4/16-medium)
  - [-1, 1, Conv, [512, 3, 2]]
  - [[-1, 10], 1, Concat, [1]] # cat head P5
  - [-1, 2, C3k2, [1024, True]] # 22 (P5/32-large)
  - [[16, 19, 22], 1, Detect, [nc]] # Detect(P3, P4, P5)
"""


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/edge_rt_demo"), help="scratch dir (datasets, runs)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where demo files go")
    p.add_argument("--images", type=int, default=1000, help="synthetic images (train + val)")
    p.add_argument("--seed", type=int, default=0, help="seed of the training dataset and of training")
    p.add_argument("--heldout-images", type=int, default=500, help="images drawn for the held-out set")
    p.add_argument("--heldout-seed", type=int, default=1, help="seed of the held-out set (not --seed)")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--epochs", type=int, default=45)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    if args.heldout_seed == args.seed:
        print("--heldout-seed must differ from --seed, or the held-out set repeats training images", file=sys.stderr)
        return 2
    # Before torch/ultralytics are imported: Ultralytics sets OMP_NUM_THREADS=1 when it is unset.
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    import torch

    torch.set_num_threads(args.threads)

    from edge_rt.training.synth import synth_dataset
    from edge_rt.training.train import box_metrics, format_metrics, train

    work: Path = args.work.resolve()
    out: Path = args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)

    data = synth_dataset(work / "data", images=args.images, imgsz=args.imgsz, seed=args.seed)
    # The held-out set is the val split of a dataset drawn with another seed; half of it is plenty.
    heldout = synth_dataset(
        work / "heldout", images=args.heldout_images, imgsz=args.imgsz, seed=args.heldout_seed, val_fraction=0.5
    )
    model_yaml = work / "edge_rt_demo.yaml"
    model_yaml.write_text(MODEL_YAML)

    t0 = time.perf_counter()
    result = train(
        data,
        str(model_yaml),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        project=work / "runs",
        name="demo",
        workers=0,
        seed=args.seed,
    )
    train_s = time.perf_counter() - t0
    print(f"trained in {train_s / 60:.1f} min; val split of the training dataset:")
    print(format_metrics(result.metrics))

    static = out / "demo.onnx"
    shutil.copyfile(result.onnx, static)
    if result.best_weights.stat().st_size < 6_000_000:
        shutil.copyfile(result.best_weights, out / "demo.pt")

    from ultralytics import YOLO

    dynamic_src = YOLO(str(result.best_weights)).export(
        format="onnx", imgsz=args.imgsz, simplify=True, dynamic=True, device="cpu"
    )
    dynamic = out / "demo_dynamic.onnx"
    shutil.copyfile(dynamic_src, dynamic)

    report: dict[str, object] = {
        "train_minutes": round(train_s / 60, 1),
        "train_val": result.metrics,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
    }
    for onnx in (static, dynamic):
        val = YOLO(str(onnx), task="detect").val(
            data=str(heldout),
            split="val",
            imgsz=args.imgsz,
            batch=1,
            device="cpu",
            plots=False,
            project=str(work / "eval"),
            name=onnx.stem,
            exist_ok=True,
            verbose=False,
        )
        metrics = box_metrics(val)
        report[f"heldout_{onnx.stem}"] = metrics
        print(f"held-out (seed {args.heldout_seed}) {onnx.name} ({onnx.stat().st_size / 1e6:.1f} MB):")
        print(format_metrics(metrics))
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {work / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
