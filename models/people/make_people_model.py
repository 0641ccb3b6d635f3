"""Reproduce the people detector shipped in models/people/ (README.md there has the numbers).

Fine-tunes the demo architecture (YOLO11 layout, width 0.125, one class: person) from the demo model's
weights on people cut out of Ultralytics' bus.jpg and zidane.jpg (edge_rt.training.people), standing on
the two photos emptied of them; exports it to ONNX with dynamic shapes. It is the "someone else's
fine-tuned detector" the tracker is scored with (edge-rt bench track on the people clips), not a person
detector for real cameras. CPU only, no downloads.

    cd <repo> && YOLO_OFFLINE=1 PYTHONPATH=. python models/people/make_people_model.py
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

MODEL_YAML = """\
# edge_rt people detector: YOLO11 layout, depth 0.33, width 0.125
nc: 1
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--work", type=Path, default=Path("/tmp/edge_rt_people"), help="scratch dir (dataset, runs)")
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent, help="where the model files go")
    p.add_argument("--images", type=int, default=600)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--epochs", type=int, default=25)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    args = p.parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch: Ultralytics sets 1 when it is unset
    import torch

    torch.set_num_threads(args.threads)
    from ultralytics import YOLO

    from edge_rt.training.people import people_dataset
    from edge_rt.training.train import format_metrics, train

    work, out = args.work.resolve(), args.out.resolve()
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data = people_dataset(work / "data", images=args.images, seed=args.seed)
    model_yaml = work / "edge_rt_people.yaml"
    model_yaml.write_text(MODEL_YAML)
    start = work / "start.pt"  # the demo weights under the one-class head: everything but the class branch carries over
    YOLO(str(model_yaml)).load(str(Path(__file__).resolve().parents[1] / "demo" / "demo.pt")).save(str(start))
    t0 = time.perf_counter()
    result = train(
        data,
        str(start),
        epochs=args.epochs,
        imgsz=args.imgsz,
        batch=args.batch,
        device="cpu",
        project=work / "runs",
        name="people",
        workers=0,
        seed=args.seed,
    )
    minutes = (time.perf_counter() - t0) / 60
    print(f"trained in {minutes:.1f} min; val split:")
    print(format_metrics(result.metrics))
    shutil.copyfile(result.best_weights, out / "people.pt")
    dynamic = YOLO(str(result.best_weights)).export(format="onnx", imgsz=args.imgsz, simplify=True, dynamic=True, device="cpu")
    shutil.copyfile(dynamic, out / "people.onnx")
    report = {"train_minutes": round(minutes, 1), "val": result.metrics, "args": {k: str(v) for k, v in vars(args).items()}}
    (work / "report.json").write_text(json.dumps(report, indent=2))
    print(f"report: {work / 'report.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
