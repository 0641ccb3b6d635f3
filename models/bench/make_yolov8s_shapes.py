"""A YOLOv8s-sized benchmark model for the INT8 figures (README, "INT8 on a CPU"): no pretrained
weights can be downloaded here, and a randomly initialised YOLOv8s finds nothing, so this trains one
from scratch, briefly, on edge_rt's synthetic shapes. 11.1 M parameters, 28.6 GFLOPs at 640 like any
YOLOv8s: the speed figures hold for any YOLOv8s; the box-match figures are for this model.

    cd <repo> && YOLO_OFFLINE=1 PYTHONPATH=. .venv/bin/python models/bench/make_yolov8s_shapes.py --out bench-results/yolov8s_shapes.pt

Defaults (what the README's figures used): 700 images drawn with seed 0 at 320 px (630 train / 70
val), 8 epochs at imgsz 320, batch 16, 1 warm-up epoch, CPU, 2 threads: about 25 minutes on a shared
2-core CPU; val mAP50 0.32 (a weak model, with many boxes near the 0.25 threshold).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "2")  # before torch: Ultralytics would otherwise set 1
os.environ["YOLO_OFFLINE"] = "1"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="where best.pt is copied")
    p.add_argument("--work", type=Path, default=Path("/tmp/edge_rt_yolov8s_shapes"))
    p.add_argument("--images", type=int, default=700)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--imgsz", type=int, default=320)
    a = p.parse_args(argv)

    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    from ultralytics import YOLO

    from edge_rt.training.synth import synth_dataset

    data = a.work / "data" / "data.yaml"
    if not data.is_file():
        data = synth_dataset(a.work / "data", images=a.images, imgsz=a.imgsz, seed=0, val_fraction=0.1)
    t0 = time.time()
    model = YOLO("yolov8s.yaml")
    model.train(data=str(data), epochs=a.epochs, imgsz=a.imgsz, batch=16, device="cpu", workers=0, seed=0, amp=False,
                plots=False, project=str(a.work / "runs"), name="v8s", exist_ok=True, warmup_epochs=1, close_mosaic=2, verbose=False)
    trainer = model.trainer
    best = Path(trainer.best) if trainer is not None and Path(trainer.best).is_file() else a.work / "runs" / "v8s" / "weights" / "last.pt"
    a.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy2(best, a.out)
    print(f"{a.out}: trained {a.epochs} epochs in {(time.time() - t0) / 60:.1f} min", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
