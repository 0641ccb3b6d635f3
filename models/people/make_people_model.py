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


def people_yaml() -> str:
    """The demo model's architecture, as models/demo/make_demo_model.py spells it out, with one class."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_demo_model", Path(__file__).resolve().parents[1] / "demo" / "make_demo_model.py")
    assert spec is not None and spec.loader is not None
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    return str(demo.MODEL_YAML).replace("nc: 4", "nc: 1").replace("demo detector", "people detector")


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
    model_yaml.write_text(people_yaml())
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
