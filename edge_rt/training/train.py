"""Fine-tune a YOLO detector with Ultralytics and export it to ONNX in one call.

Ultralytics is imported inside ``train`` only: it is heavy, it writes a settings file and sets
``OMP_NUM_THREADS=1`` on import, and the runtime side of edge_rt must not pay for any of that.

Offline notes (measured with ultralytics 8.4): set ``YOLO_OFFLINE=1`` so it skips its online
checks and telemetry; train from a model YAML or a local ``.pt`` (a bare name such as
``yolo11n.pt`` that is not on disk is downloaded); ``amp=False`` skips the AMP check, which
downloads a model on CUDA; ``plots=False`` avoids drawing, which wants the Arial font. Its dataset
check still sends one HTTP HEAD for Arial.ttf (to github.com) whatever YOLO_OFFLINE says; offline it
fails as fast as DNS does, and it is skipped when an Arial.ttf sits in the Ultralytics config dir.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_rt.training.dataset import check_dataset

METRIC_KEYS: tuple[str, ...] = ("mAP50", "mAP50-95", "precision", "recall")


@dataclass(frozen=True)
class TrainResult:
    """What a training run leaves behind: the weights, their ONNX export and the final val metrics."""

    best_weights: Path
    onnx: Path
    metrics: Mapping[str, float]


def train(
    data: Path,
    model: str,
    epochs: int,
    imgsz: int,
    batch: int = 16,
    device: str = "cpu",
    project: Path = Path("runs/train"),
    name: str = "exp",
    workers: int = 0,
    seed: int = 0,
) -> TrainResult:
    """Train ``model`` (a YAML to start from scratch or a local .pt to fine-tune) on ``data``.

    The dataset is checked first so a bad label fails here with a list of fixes, instead of being
    skipped with a warning halfway through an Ultralytics log. After training, ``best.pt`` is
    validated once more on the val split (the numbers we report) and exported to a static,
    simplified ONNX file next to it.

    Raises:
        ValueError: the dataset has problems (one per line in the message), or an argument is bad.
    """
    data = Path(data)
    for arg, value in (("epochs", epochs), ("imgsz", imgsz), ("batch", batch)):
        if value < 1:
            raise ValueError(f"{arg}={value}: must be a positive integer")
    if imgsz % 32:
        raise ValueError(f"imgsz={imgsz}: must be a multiple of 32 (the model's largest stride)")
    problems = check_dataset(data)
    if problems:
        listed = "\n".join(f"  {p}" for p in problems)
        raise ValueError(f"dataset {data} has {len(problems)} problem(s):\n{listed}")

    from ultralytics import YOLO  # heavy; only when training

    # Ultralytics puts a relative project under its global runs_dir setting; anchor it here instead.
    project = Path(project).resolve()
    yolo = YOLO(model)
    yolo.train(
        data=str(data.resolve()),
        epochs=epochs,
        imgsz=imgsz,
        batch=batch,
        device=device,
        project=str(project),
        name=name,
        workers=workers,
        seed=seed,
        amp=False,
        plots=False,
        verbose=False,
    )
    trainer = yolo.trainer
    if trainer is None:
        raise RuntimeError("Ultralytics returned without a trainer; training did not run")
    save_dir = Path(trainer.save_dir)
    best = Path(trainer.best)
    if not best.is_file():
        best = Path(trainer.last)
    if not best.is_file():
        raise RuntimeError(f"training finished without writing weights in {save_dir / 'weights'}")

    trained = YOLO(str(best))
    val = trained.val(
        data=str(data.resolve()),
        split="val",
        imgsz=imgsz,
        batch=batch,
        device=device,
        workers=workers,
        plots=False,
        project=str(save_dir),
        name="val",
        exist_ok=True,
        verbose=False,
    )
    metrics = box_metrics(val)
    onnx = Path(trained.export(format="onnx", imgsz=imgsz, simplify=True, dynamic=False, device=device))
    return TrainResult(best_weights=best, onnx=onnx, metrics=metrics)


def box_metrics(val: Any) -> dict[str, float]:
    """The four figures we report, from an Ultralytics validation result."""
    return {
        "mAP50": float(val.box.map50),
        "mAP50-95": float(val.box.map),
        "precision": float(val.box.mp),
        "recall": float(val.box.mr),
    }


def format_metrics(metrics: Mapping[str, float]) -> str:
    """A short aligned two-column table of metrics, known keys first, for logs and the CLI."""
    keys = [k for k in METRIC_KEYS if k in metrics] + sorted(k for k in metrics if k not in METRIC_KEYS)
    if not keys:
        return "(no metrics)"
    width = max(len("metric"), *(len(k) for k in keys))
    lines = [f"{'metric':<{width}}  value", f"{'-' * width}  ------"]
    lines += [f"{k:<{width}}  {float(metrics[k]):.4f}" for k in keys]
    return "\n".join(lines)
