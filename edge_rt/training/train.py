"""Fine-tune a YOLO detector with Ultralytics and export it to ONNX in one call.

Ultralytics is imported inside the functions only: it is heavy, it writes a settings file and sets
``OMP_NUM_THREADS=1`` on import, and the runtime side of edge_rt must not pay for any of that.

Offline notes (measured with ultralytics 8.4): set ``YOLO_OFFLINE=1`` so it skips its online
checks and telemetry; train from a model YAML or a local ``.pt`` (a bare name such as
``yolo11n.pt`` that is not on disk is downloaded); ``amp=False`` skips the AMP check, which
downloads a model on CUDA; ``plots=False`` avoids drawing, which wants the Arial font. Its dataset
check still sends one HTTP HEAD for Arial.ttf (to github.com) whatever YOLO_OFFLINE says; offline it
fails as fast as DNS does, and it is skipped when an Arial.ttf sits in the Ultralytics config dir.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge_rt.ops.progress import Progress
from edge_rt.training.dataset import require_valid
from edge_rt.training.overrides import MAPPED_KEYS, check_keys, check_values
from edge_rt.training.yolo_io import load_model, ultralytics_log

log = logging.getLogger("edge_rt.train")

METRIC_KEYS: tuple[str, ...] = ("mAP50", "mAP50-95", "precision", "recall")

# What Ultralytics lets a resumed run change (BaseTrainer.check_resume, 8.4); anything else it ignores
# with a warning, so we refuse it up front instead.
RESUMABLE_KEYS: frozenset[str] = frozenset(
    {"imgsz", "batch", "device", "close_mosaic", "save_period", "workers", "cache", "patience", "time", "freeze", "val", "plots"}
)


@dataclass(frozen=True)
class TrainResult:
    """What a training run leaves behind: the weights, their ONNX export (unless skipped) and the final val metrics."""

    best_weights: Path
    onnx: Path | None
    metrics: Mapping[str, float]
    save_dir: Path | None = None


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
    *,
    freeze: int | str | None = None,
    patience: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    augment: str | None = None,
    export_onnx: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Train ``model`` (a YAML to start from scratch or a local .pt to fine-tune) on ``data``.

    The dataset is checked first so a bad label fails here with a list of fixes, instead of being
    skipped with a warning halfway through an Ultralytics log. After training, ``best.pt`` is
    validated once more on the val split (the numbers we report) and exported to a static,
    simplified ONNX file next to it.

    ``freeze`` keeps the first N layers (or ``"backbone"``: the model YAML's backbone) at their
    starting weights, BatchNorm statistics included; ``overrides`` are any other Ultralytics
    settings (checked against its keys), applied over the ``augment`` preset's. With lr0 or momentum
    among them and no optimizer, AdamW is named (see :func:`explicit_optimizer`); the preset and that
    choice are logged in one line each. Off a terminal, Ultralytics' own log is cut to its warnings
    (:func:`~edge_rt.training.yolo_io.ultralytics_log`).

    Raises:
        ValueError: the dataset has problems (one per line in the message), an argument is bad, or
            the run folder cannot be written.
        ModelError: ``model`` is missing, or official weights that cannot be fetched.
    """
    data = Path(data)
    for arg, value in (("epochs", epochs), ("imgsz", imgsz), ("batch", batch)):
        if value < 1:
            raise ValueError(f"{arg}={value}: must be a positive integer")
    if imgsz % 32:
        raise ValueError(f"imgsz={imgsz}: must be a multiple of 32 (the model's largest stride)")
    if patience is not None and patience < 0:
        raise ValueError(f"patience={patience}: must be >= 0 (0 turns early stopping off)")
    if isinstance(freeze, int) and freeze < 0:
        raise ValueError(f"freeze={freeze}: must be >= 0 layers, or 'backbone'")
    if isinstance(freeze, str) and freeze != "backbone":
        raise ValueError(f"freeze={freeze!r}: give a number of layers or 'backbone'")
    overrides = dict(overrides or {})
    check_keys(overrides, "overrides")
    mapped = sorted(k for k in overrides if k in MAPPED_KEYS)
    if mapped:
        raise ValueError(f"overrides {mapped}: pass these as train() arguments, not overrides")
    preset = _augment_kwargs(augment) if augment is not None else {}
    chosen = explicit_optimizer(overrides)

    # Ultralytics puts a relative project under its global runs_dir setting; anchor it here instead.
    project = Path(project).resolve()
    kwargs: dict[str, Any] = {
        "data": str(data.resolve()),
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "device": device,
        "project": str(project),
        "name": name,
        "workers": workers,
        "seed": seed,
        "amp": False,
        "plots": False,
        "verbose": False,
        **preset,
        **overrides,
        **chosen,
    }
    if patience is not None:
        kwargs["patience"] = patience
    require_valid(data)
    check_values({k: v for k, v in kwargs.items() if k != "augmentations"}, "overrides")

    with ultralytics_log():
        yolo = load_model(model)  # check_model first: a missing or unfetchable model is one line
        if freeze is not None:
            kwargs["freeze"] = _freeze_layers(yolo, freeze)
        make_folder(project, "--project")
        if chosen:
            log.info(
                "optimizer=%s: Ultralytics' default optimizer=auto would replace %s with its own choice; "
                "give optimizer=SGD (or another) to choose",
                chosen["optimizer"],
                " and ".join(f"{k}={kwargs[k]}" for k in ("lr0", "momentum") if overrides.get(k) is not None),
            )
        if augment is not None:
            from edge_rt.training.augment import register

            log.info("%s", augment_line(augment, kwargs))
            register(yolo, augment)
        with _epoch_progress(yolo, epochs, progress):
            yolo.train(**kwargs)
        return _finish(yolo, data, imgsz, batch, device, workers, export_onnx)


def make_folder(folder: Path, option: str) -> None:
    """Create the folder runs go in, so a path that cannot be written is one line, not Ultralytics' traceback.

    Raises:
        ValueError: the folder cannot be created (a file on the way, no permission, a read-only disk).
    """
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".edge_rt_write_test_{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        why = exc.strerror or str(exc)
        if isinstance(exc, (FileExistsError, NotADirectoryError)):
            blocking = next((p for p in (folder, *folder.parents) if p.is_file()), None)
            why = f"{blocking} is a file, not a folder" if blocking else why
        raise ValueError(f"{option} {folder}: cannot write there ({why}); choose another folder") from None


def explicit_optimizer(settings: Mapping[str, Any]) -> dict[str, Any]:
    """``{"optimizer": "AdamW"}`` where lr0 or momentum is set and no optimizer is named, else ``{}``.

    Ultralytics' default ``optimizer=auto`` picks its own optimizer, lr0 and momentum and ignores
    the ones given (it says so in its log, which is easy to miss): a tuned or hand-set lr0 would do
    nothing. AdamW is what ``auto`` picks for runs shorter than 10k iterations, and what tune trains with.

    Raises:
        ValueError: ``optimizer=auto`` named together with lr0 or momentum.
    """
    given = [k for k in ("lr0", "momentum") if settings.get(k) is not None]
    if not given:
        return {}
    optimizer = settings.get("optimizer")
    if optimizer is None:
        return {"optimizer": "AdamW"}
    if str(optimizer).lower() == "auto":
        values = ", ".join(f"{k}={settings[k]}" for k in given)
        raise ValueError(
            f"optimizer=auto with {values}: Ultralytics' auto picks its own lr0 and momentum and would ignore "
            f"{' and '.join(given)}; name an optimizer (optimizer=AdamW, SGD ...) or drop {' and '.join(given)}"
        )
    return {}


def augment_line(preset: str, kwargs: Mapping[str, Any]) -> str:
    """One line for the log: the preset, the settings it leads to (after overrides) and its transforms."""
    from edge_rt.training import augment

    chosen = augment.get_preset(preset)
    hyp = ", ".join(f"{k}={kwargs[k]}" for k in chosen.hyp) or "Ultralytics' defaults"
    ops = ", ".join(type(op).__name__ for op in chosen.ops)
    extra = f"; adds {ops} to the training pipeline" if ops else ""
    return f"augment preset {preset}: {hyp}{extra} ({chosen.purpose})"


def _augment_kwargs(preset: str) -> dict[str, Any]:
    """The preset's Ultralytics settings; user overrides are applied over them."""
    from edge_rt.training import augment

    if preset not in augment.PRESETS:
        raise ValueError(f"augment={preset!r}: unknown preset; use one of {', '.join(augment.PRESETS)}")
    return dict(augment.train_kwargs(preset))


def _freeze_layers(yolo: Any, freeze: int | str) -> int:
    """``freeze`` as a layer count checked against the model: Ultralytics fails late when nothing is left to train."""
    layers = len(yolo.model.model)
    if freeze == "backbone":
        spec = getattr(yolo.model, "yaml", None) or {}
        if not spec.get("backbone"):
            raise ValueError("freeze='backbone': this model's YAML names no backbone; give a number of layers")
        return len(spec["backbone"])
    n = int(freeze)
    if n >= layers:
        raise ValueError(f"freeze={n}: the model has {layers} layers, so nothing would train; use 0..{layers - 1}")
    return n


class _epoch_progress:
    """One progress line (or a bar) per epoch, from Ultralytics' on_fit_epoch_end callback."""

    def __init__(self, yolo: Any, epochs: int, enabled: bool, start: int = 0) -> None:
        self.progress = Progress(epochs, "train epochs") if enabled else None
        self.seen = start
        if self.progress is not None:
            self.progress.done = start
        self.stopped_at: int | None = None
        if self.progress is not None:
            yolo.add_callback("on_fit_epoch_end", self._on_epoch)

    def _on_epoch(self, trainer: Any) -> None:
        assert self.progress is not None
        if self.progress.total != trainer.epochs:  # a resumed run, or time= changed the epoch count
            self.progress.total = int(trainer.epochs)
        done = int(trainer.epoch) + 1
        if done <= self.seen:  # Ultralytics calls this once more for its final validation of best.pt
            return
        metrics = trainer.metrics or {}
        map50 = metrics.get("metrics/mAP50(B)")
        note = f"mAP50 {float(map50):.3f}" if map50 is not None else ""
        self.progress.update(done - self.seen, note=note)
        self.seen = done
        if trainer.stop and done < trainer.epochs:
            self.stopped_at = done

    def __enter__(self) -> _epoch_progress:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            note = f"early stop after epoch {self.stopped_at} (patience)" if self.stopped_at else ""
            self.progress.close(note)


def resume_training(
    checkpoint: Path,
    *,
    data: Path | None = None,
    device: str | None = None,
    batch: int | None = None,
    workers: int = 0,
    overrides: Mapping[str, Any] | None = None,
    export_onnx: bool = True,
    progress: bool = True,
) -> TrainResult:
    """Continue an interrupted run from its ``last.pt``, with the settings it was started with.

    Ultralytics keeps the optimizer state in ``last.pt`` until the run finishes, then strips it: a
    finished run is refused here (Ultralytics would silently start a new run instead).

    Raises:
        ValueError: no such checkpoint, a finished run, or a setting a resumed run cannot change.
    """
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise ValueError(f"resume {checkpoint}: no such checkpoint; pass the run's weights/last.pt")
    overrides = dict(overrides or {})
    check_keys(overrides, "overrides")
    fixed = sorted(k for k in overrides if k not in RESUMABLE_KEYS)
    if fixed:
        raise ValueError(
            f"resume: {', '.join(fixed)} cannot change on a resumed run (it keeps the settings it started with); "
            f"start a new run with --model {checkpoint} to fine-tune with other settings"
        )

    from ultralytics import YOLO
    from ultralytics.utils.patches import torch_load

    ckpt = torch_load(str(checkpoint), map_location="cpu", weights_only=False)
    args = dict(ckpt.get("train_args") or {})
    epoch = int(ckpt.get("epoch", -1))
    if ckpt.get("optimizer") is None or epoch < 0 or not args:
        raise ValueError(
            f"resume {checkpoint}: not an interrupted run (finished runs lose their optimizer state); "
            f"fine-tune further with --model {checkpoint} instead"
        )
    if epoch + 1 >= int(args.get("epochs", 0)):
        raise ValueError(
            f"resume {checkpoint}: all {args.get('epochs')} epochs already ran; fine-tune further with --model {checkpoint}"
        )
    data = Path(data) if data is not None else Path(str(args.get("data")))
    require_valid(data)

    kwargs: dict[str, Any] = {"resume": True, "data": str(data.resolve()), **overrides}
    if device is not None:
        kwargs["device"] = device
    if batch is not None:
        kwargs["batch"] = batch
    kwargs["workers"] = workers
    check_values({k: v for k, v in kwargs.items() if k != "resume"}, "overrides")
    with ultralytics_log():
        yolo = YOLO(str(checkpoint))
        with _epoch_progress(yolo, int(args["epochs"]), progress, start=epoch + 1):
            yolo.train(**kwargs)
        ran: dict[str, Any] = {**args, **vars(yolo.trainer.args)} if yolo.trainer is not None else args
        return _finish(yolo, data, int(ran["imgsz"]), int(ran["batch"]), str(ran["device"] or "cpu"), workers, export_onnx)


def _finish(yolo: Any, data: Path, imgsz: int, batch: int, device: str, workers: int, export_onnx: bool) -> TrainResult:
    """Validate ``best.pt`` on the val split (the figures we report) and export it to ONNX."""
    from ultralytics import YOLO

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
    onnx = None
    if export_onnx:
        onnx = Path(trained.export(format="onnx", imgsz=imgsz, simplify=True, dynamic=False, device=device))
    return TrainResult(best_weights=best, onnx=onnx, metrics=metrics, save_dir=save_dir)


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
