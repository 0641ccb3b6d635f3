"""`edge-rt train` (one run, a resumed run, or k-fold cross-validation) and `edge-rt tune`.

Settings come from four places, lowest priority first: edge_rt's defaults, a ``--cfg`` YAML, then
the options and ``KEY=VALUE`` overrides on the command line (a setting given both ways with two
different values is refused). ``KEY=VALUE`` reaches Ultralytics for anything without an option of
its own, parsed and checked as the ``yolo`` CLI would, before any training starts.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .common import Parser, setup_logging

# Defaults of the options that Ultralytics also knows as keys; None on the parser, so that an
# option left out can be told from one given with its default value.
DEFAULTS: dict[str, Any] = {
    "model": "yolo11n.yaml",
    "epochs": 50,
    "imgsz": 640,
    "batch": 16,
    "device": "cpu",
    "project": "runs/train",
    "name": "exp",
    "seed": 0,
    "workers": 0,
}
_INT_KEYS = ("epochs", "imgsz", "batch", "seed", "workers", "patience")
AUGMENT_PRESETS = "night|weather|fisheye|default"


class KeyValueParser(Parser):
    """Takes ``KEY=VALUE`` anywhere on the line, as the ``yolo`` CLI does.

    argparse stops collecting a positional list at the first option after it, so the overrides are
    moved behind the options before parsing (an option's own value stays with its option).
    """

    def parse_known_args(self, args: Sequence[str] | None = None, namespace: Any = None) -> Any:  # type: ignore[override]
        if args is not None:
            args = _overrides_last(self, list(args))
        return super().parse_known_args(args, namespace)


def _is_override(token: str) -> bool:
    key, sep, _ = token.partition("=")
    return bool(sep) and not token.startswith("-") and key.replace("_", "a").isalnum()


def _overrides_last(parser: argparse.ArgumentParser, args: list[str]) -> list[str]:
    rest: list[str] = []
    pairs: list[str] = []
    i = 0
    while i < len(args):
        token = args[i]
        action = parser._option_string_actions.get(token)  # an option given as '--flag value'
        (pairs if _is_override(token) else rest).append(token)
        if action is not None and i + 1 < len(args):
            takes = action.nargs
            nxt = args[i + 1]
            if takes is None or (takes == "?" and not nxt.startswith("-") and not _is_override(nxt)):
                rest.append(nxt)
                i += 1
        i += 1
    # '--' keeps a trailing optional-value option (--resume) from taking the first pair as its value.
    return rest + ["--", *pairs] if pairs else rest


def _add_parser(sub: Any, name: str, **kwargs: Any) -> argparse.ArgumentParser:
    p = sub.add_parser(name, **kwargs)
    p.__class__ = KeyValueParser  # the subparsers action builds the parser class it was given
    return p  # type: ignore[no-any-return]


def add_train(sub: Any) -> None:
    p = _add_parser(
        sub,
        "train",
        help="fine-tune a YOLO detector with Ultralytics, then export it to ONNX (or cross-validate it: --folds)",
        description="Fine-tune a YOLO detector, validate best.pt and export it to ONNX. Any other Ultralytics "
        "setting can follow as KEY=VALUE (e.g. lr0=0.005 mosaic=0 cos_lr=true), checked against Ultralytics' keys.",
    )
    p.add_argument("--data", help="dataset YAML (Ultralytics format); required unless --cfg or --resume gives it")
    p.add_argument("--model", help="a .pt checkpoint to fine-tune or a model YAML (default yolo11n.yaml)")
    p.add_argument("--epochs", type=int, help="default 50")
    p.add_argument("--imgsz", type=int, help="default 640")
    p.add_argument("--batch", type=int, help="default 16")
    p.add_argument("--device", help="cpu, 0, 0,1 ... (default cpu)")
    p.add_argument("--project", help="default runs/train")
    p.add_argument("--name", help="default exp")
    p.add_argument("--seed", type=int, help="training seed, and the fold assignment with --folds (default 0)")
    p.add_argument("--workers", type=int, help="dataloader worker processes (default 0)")
    p.add_argument("--freeze", help="keep the first N layers at their starting weights, or 'backbone' (transfer learning)")
    p.add_argument("--patience", type=int, help="stop after N epochs without improvement (0: never; Ultralytics' default 100)")
    p.add_argument(
        "--resume",
        nargs="?",
        const=True,
        metavar="LAST.pt",
        help="continue an interrupted run from its weights/last.pt (default: the newest under --project/--name*)",
    )
    p.add_argument("--cfg", help="YAML of Ultralytics settings, e.g. a tune run's best_hyperparameters.yaml")
    p.add_argument("--augment", metavar="PRESET", help=f"augmentation preset for fixed cameras: {AUGMENT_PRESETS}")
    p.add_argument(
        "--folds", type=int, help="k-fold cross-validation over train+val: one model per fold, a summary and kfold.json"
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="any other Ultralytics setting (lr0=0.005, mosaic=0 ...)")
    p.set_defaults(handler=_cmd_train)


def add_tune(sub: Any) -> None:
    p = _add_parser(
        sub,
        "tune",
        help="search hyperparameters with Ultralytics' tuner (resumable); writes best_hyperparameters.yaml for train --cfg",
    )
    p.add_argument("--data", required=True, help="dataset YAML (Ultralytics format)")
    p.add_argument("--model", default="yolo11n.yaml", help="a .pt checkpoint or a model YAML (default yolo11n.yaml)")
    p.add_argument("--iterations", type=int, required=True, help="total iterations; a second call with the same --name continues")
    p.add_argument("--epochs", type=int, default=10, help="epochs per iteration (default 10)")
    p.add_argument("--imgsz", type=int, default=640, help="training image size of every iteration (default 640)")
    p.add_argument("--batch", type=int, default=16, help="batch size of every iteration (default 16)")
    p.add_argument("--device", default="cpu", help="cpu, 0, 0,1 ... (default cpu)")
    p.add_argument("--space", help="YAML of 'key: [min, max]' or '[min, max, gain]' (default: Ultralytics' space)")
    p.add_argument("--project", default="runs/tune", help="the folder of searches (default runs/tune)")
    p.add_argument("--name", default="tune", help="the search's directory under --project; reuse it to continue (default tune)")
    p.add_argument("--seed", type=int, default=0, help="training seed of every iteration (default 0)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="fixed Ultralytics settings for every iteration")
    p.set_defaults(handler=_cmd_tune)


def _check_model(model: str) -> None:
    """A missing model file, or weights Ultralytics would download while offline: one line before any work."""
    from ..training.yolo_io import check_model

    check_model(model)


def _option_value(key: str, value: Any, source: str) -> Any:
    """A KEY=VALUE or cfg value that stands for an option, checked as that option would be."""
    if key in _INT_KEYS and (not isinstance(value, int) or isinstance(value, bool)):
        raise ConfigError(f"{key}={value!r} in {source}: must be an integer")
    if key == "freeze" and not (isinstance(value, int) and not isinstance(value, bool)) and value != "backbone":
        raise ConfigError(f"freeze={value!r} in {source}: give a number of layers or 'backbone'")
    return value if key in _INT_KEYS or key == "freeze" or value is None else str(value)


def _resolve(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, Any]]:
    """(edge_rt's options, the other Ultralytics settings), from defaults < --cfg < command line."""
    from ..training.overrides import MAPPED_KEYS, check_values, load_cfg, parse_overrides, split_mapped

    try:
        cfg = load_cfg(Path(args.cfg)) if args.cfg else {}
        pairs = parse_overrides(args.overrides)
        cfg_options, cfg_rest = split_mapped(cfg)
        kv_options, kv_rest = split_mapped(pairs)
        check_values(cfg_rest, f"--cfg {args.cfg}")  # here, so the message names where the bad value came from
        check_values(kv_rest, "KEY=VALUE overrides")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    options: dict[str, Any] = {}
    for key in sorted(MAPPED_KEYS):
        flag = getattr(args, key, None)
        if key == "freeze" and flag is not None:
            flag = int(flag) if flag.isdigit() else flag
        if key in kv_options:
            value = _option_value(key, kv_options[key], "KEY=VALUE overrides")
            if flag is not None and flag != value:
                raise ConfigError(f"--{key} {flag} and {key}={kv_options[key]}: {key} given twice; keep one")
            flag = value
        if flag is None and key in cfg_options:
            flag = _option_value(key, cfg_options[key], f"--cfg {args.cfg}")
        options[key] = flag if flag is not None else DEFAULTS.get(key)
    for key in ("epochs", "imgsz", "batch"):
        if options[key] < 1:
            raise ConfigError(f"--{key} must be >= 1, got {options[key]}")
    return options, {**cfg_rest, **kv_rest}


def _cmd_train(args: argparse.Namespace) -> int:
    setup_logging("info")
    for flag in ("epochs", "imgsz", "batch", "folds"):
        value = getattr(args, flag)
        if value is not None and value < (2 if flag == "folds" else 1):
            raise ConfigError(f"--{flag} must be >= {2 if flag == 'folds' else 1}, got {value}")
    if args.resume is not None:
        return _cmd_resume(args)
    options, settings = _resolve(args)
    if options["data"] is None:
        raise ConfigError("--data is required: the dataset YAML to train on")
    _check_model(str(options["model"]))
    common = {
        "freeze": options["freeze"],
        "patience": options["patience"],
        "overrides": settings,
        "augment": args.augment,
    }
    positional = (
        options["epochs"],
        options["imgsz"],
        options["batch"],
        options["device"],
        Path(options["project"]),
        options["name"],
    )
    try:
        if args.folds:
            from ..training.kfold import format_kfold, kfold

            result = kfold(
                Path(options["data"]),
                str(options["model"]),
                args.folds,
                *positional[:4],
                project=positional[4],
                name=positional[5],
                workers=options["workers"],
                seed=options["seed"],
                **common,
            )
            print(format_kfold(result))
            print(f"kfold.json:   {result.json_path}")
            return 0
        from ..training.train import format_metrics, train

        trained = train(Path(options["data"]), str(options["model"]), *positional, options["workers"], options["seed"], **common)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"best weights: {trained.best_weights}")
    print(f"onnx:         {trained.onnx}")
    print(format_metrics(trained.metrics))
    return 0


def _cmd_resume(args: argparse.Namespace) -> int:
    """--resume [LAST.pt]: the run keeps its own settings; only what Ultralytics lets change may be given."""
    from ..training.overrides import parse_overrides
    from ..training.train import format_metrics, resume_training

    given = [
        f"--{k}"
        for k in ("model", "epochs", "imgsz", "seed", "freeze", "cfg", "augment", "folds")
        if getattr(args, k) is not None
    ]
    if given:
        raise ConfigError(
            f"--resume continues a run with the settings it started with; drop {', '.join(given)} (or start a new run)"
        )
    if args.resume is True:
        project = Path(args.project or DEFAULTS["project"])
        name = args.name or DEFAULTS["name"]
        candidates = [
            p
            for p in project.glob(f"{name}*/weights/last.pt")
            if p.parent.parent.name[len(name) :].isdigit() or p.parent.parent.name == name
        ]
        if not candidates:
            raise ConfigError(
                f"--resume: no {project}/{name}*/weights/last.pt; pass the checkpoint: --resume PATH/weights/last.pt"
            )
        checkpoint = max(candidates, key=lambda p: p.stat().st_mtime)
        print(f"resuming {checkpoint}")
    else:
        checkpoint = Path(args.resume)
    overrides: dict[str, Any] = {}
    try:
        overrides = parse_overrides(args.overrides)
        if args.patience is not None:
            overrides["patience"] = args.patience
        if args.workers is not None:
            overrides["workers"] = args.workers
        result = resume_training(
            checkpoint,
            data=Path(args.data) if args.data else None,
            device=args.device,
            batch=args.batch,
            workers=overrides.pop("workers", 0),
            overrides=overrides,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    print(f"best weights: {result.best_weights}")
    print(f"onnx:         {result.onnx}")
    print(format_metrics(result.metrics))
    return 0


def _cmd_tune(args: argparse.Namespace) -> int:
    from ..training.overrides import parse_overrides
    from ..training.tune import load_space, tune

    setup_logging("info")
    for flag in ("iterations", "epochs", "imgsz", "batch"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag} must be >= 1, got {getattr(args, flag)}")
    _check_model(args.model)
    try:
        space = load_space(Path(args.space)) if args.space else None
        result = tune(
            Path(args.data),
            args.model,
            args.iterations,
            epochs=args.epochs,
            imgsz=args.imgsz,
            batch=args.batch,
            device=args.device,
            project=Path(args.project),
            name=args.name,
            space=space,
            overrides=parse_overrides(args.overrides),
            seed=args.seed,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if result.resumed_from >= result.iterations:
        print(f"nothing to run: {result.tune_dir} already has {result.iterations} iterations (ask for more to continue)")
    elif result.resumed_from:
        print(f"continued from iteration {result.resumed_from} (results in {result.results})")
    print(f"iterations:   {result.iterations}")
    print(f"best:         iteration {result.best_iteration}, fitness {result.best_fitness:.4f} (val mAP50-95)")
    print(f"best cfg:     {result.best_yaml}  (edge-rt train --cfg {result.best_yaml} ...)")
    print(f"best weights: {result.best_weights}")
    print(f"plot:         {result.plot}")
    return 0
