"""Hyperparameter search with Ultralytics' tuner, resumable, ending in a YAML that `train --cfg` takes.

``ultralytics.engine.tuner.Tuner`` (8.4) mutates the best results so far, trains one model per
iteration (in a subprocess: ``python -m ultralytics.cfg.__init__ train ...``), appends one JSON line
per iteration to ``<tune dir>/tune_results.ndjson`` and rewrites ``best_hyperparameters.yaml``
(searched values only: we add the optimizer, see :func:`carry_optimizer`). It
resumes by itself when that file exists and it is built with ``resume=True`` (which also keeps the
directory name instead of making ``name2``): calling it with ``iterations=n`` runs only the
iterations past those already recorded. We call it one iteration at a time, so progress can be shown
per iteration, and keep a small ``edge_rt_tune.yaml`` beside its results so that a second call with
other settings (another dataset, model or epoch count) is refused instead of mixing two searches.

Fitness is what Ultralytics keeps in the iteration's ``best.pt``: ``DetMetrics.fitness`` of its best
epoch, which in 8.4 weighs [P, R, mAP50, mAP50-95] as [0, 0, 0, 1], i.e. the val split's mAP50-95.
Its own fitness plot skips zero-fitness iterations (all of them, on a model too young to detect
anything), so ``fitness.png`` is drawn here from the NDJSON with matplotlib's Agg canvas.

Seeds: every iteration trains with ``seed`` and starts from the same weights (a model YAML is built
under ``seed`` too), so one set of hyperparameters gives the same fitness twice. The mutations
themselves come from ``np.random.default_rng()`` inside the tuner, which takes no seed: two searches
share iteration 1 (the starting values) and differ from iteration 2 on.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from edge_rt.ops.progress import Progress
from edge_rt.training.dataset import require_valid
from edge_rt.training.overrides import MAPPED_KEYS, check_keys, check_values
from edge_rt.training.train import make_folder
from edge_rt.training.yolo_io import check_model, load_model, ultralytics_log

RESULTS = "tune_results.ndjson"
BEST_YAML = "best_hyperparameters.yaml"
SETTINGS = "edge_rt_tune.yaml"
PLOT = "fitness.png"


@dataclass(frozen=True)
class TuneResult:
    """Where a search stands: iterations run (in all calls), the best one, and the files to use."""

    tune_dir: Path
    iterations: int
    resumed_from: int
    best_iteration: int
    best_fitness: float
    best_yaml: Path | None
    best_weights: Path | None
    plot: Path
    results: Path


def load_space(path: Path) -> dict[str, tuple[float, ...]]:
    """A search space YAML: ``key: [min, max]`` or ``[min, max, gain]`` per Ultralytics setting.

    Raises:
        ValueError: missing file, bad YAML, an unknown key or a bad range (one line).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--space {path}: no such file; write a YAML such as 'lr0: [0.0001, 0.01]'")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"--space {path}: not valid YAML ({str(exc).splitlines()[0]}); fix the syntax") from None
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"--space {path}: expected a mapping of setting: [min, max] (e.g. lr0: [0.0001, 0.01])")
    check_keys(raw, f"--space {path}")
    space: dict[str, tuple[float, ...]] = {}
    for key, bounds in raw.items():
        ok = isinstance(bounds, list | tuple) and len(bounds) in (2, 3)
        ok = ok and all(isinstance(b, int | float) and not isinstance(b, bool) for b in bounds)
        if not ok or bounds[0] > bounds[1] or (len(bounds) == 3 and not 0 <= bounds[2] <= 1):
            raise ValueError(
                f"--space {path}: {key}: {bounds!r}; write [min, max] with min <= max, or [min, max, gain] with gain in 0..1"
            )
        space[key] = tuple(float(b) for b in bounds)
    return space


def tune(
    data: Path,
    model: str,
    iterations: int,
    epochs: int = 10,
    imgsz: int = 640,
    batch: int = 16,
    device: str = "cpu",
    project: Path = Path("runs/tune"),
    name: str = "tune",
    space: Mapping[str, tuple[float, ...]] | None = None,
    overrides: Mapping[str, Any] | None = None,
    workers: int = 0,
    seed: int = 0,
) -> TuneResult:
    """Run the search up to ``iterations`` in ``project/name``, continuing a previous call there.

    Raises:
        ValueError: a bad dataset or argument (``optimizer=auto`` included: it would ignore the tuned
            lr0 and momentum), a folder that cannot be written, or one holding a search with other settings.
        ModelError: ``model`` is missing, or official weights that cannot be fetched.
    """
    data = Path(data)
    for arg, value in (("iterations", iterations), ("epochs", epochs), ("imgsz", imgsz), ("batch", batch)):
        if value < 1:
            raise ValueError(f"{arg}={value}: must be a positive integer")
    if imgsz % 32:
        raise ValueError(f"imgsz={imgsz}: must be a multiple of 32 (the model's largest stride)")
    overrides = dict(overrides or {})
    check_keys(overrides, "overrides")
    mapped = sorted(k for k in overrides if k in MAPPED_KEYS)
    if mapped:
        raise ValueError(f"{', '.join(f'{k}=' for k in mapped)}: use the tune options (--data, --model, --epochs...) instead")
    if str(overrides.get("optimizer", "")).lower() == "auto":
        raise ValueError(
            "optimizer=auto: Ultralytics' auto picks its own lr0 and momentum, so tuning them would change nothing; "
            "name an optimizer (AdamW, the default here, SGD ...)"
        )
    require_valid(data)
    check_model(model)

    tune_dir = Path(project).resolve() / name
    settings = {
        "data": str(data.resolve()),
        "model": model,
        "epochs": epochs,
        "imgsz": imgsz,
        "seed": seed,
        "space": _plain(space),
        "overrides": _plain(overrides),
    }
    done = _check_same_search(tune_dir, settings)
    args: dict[str, Any] = {
        "model": model,
        "data": settings["data"],
        "epochs": epochs,
        "imgsz": imgsz,
        "batch": batch,
        "device": device,
        "workers": workers,
        "seed": seed,
        "project": str(tune_dir.parent),
        "name": name,
        "optimizer": "AdamW",  # as YOLO.tune: 'auto' would overwrite the lr0 and momentum being tuned
        "amp": False,
        "plots": False,
        "val": True,
        "verbose": False,
        **overrides,
    }
    check_values(args, "overrides")
    if done >= iterations:
        carry_optimizer(tune_dir / BEST_YAML, str(args["optimizer"]))
        return _result(tune_dir, done)
    make_folder(tune_dir, "--project/--name")
    with ultralytics_log():
        _search(tune_dir, model, seed, iterations, done, args, space, settings)
    return _result(tune_dir, done)


def _search(
    tune_dir: Path,
    model: str,
    seed: int,
    iterations: int,
    done: int,
    args: dict[str, Any],
    space: Mapping[str, tuple[float, ...]] | None,
    settings: Mapping[str, Any],
) -> None:
    import torch
    from ultralytics.engine.tuner import Tuner

    # Every iteration starts from these weights; seeded, so a model YAML gives the same start when resumed.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        base = load_model(model).model
    (tune_dir / SETTINGS).write_text(yaml.safe_dump(settings, sort_keys=False))
    # resume=True: the tuner keeps project/name as it is (no name2) and continues its NDJSON.
    tuner = Tuner({**args, "resume": True, **({"space": dict(space)} if space else {})}, model=base)
    if Path(tuner.tune_dir) != tune_dir:
        raise RuntimeError(f"Ultralytics tunes in {tuner.tune_dir}, expected {tune_dir}")
    with Progress(iterations, "tune iterations") as bar:
        bar.done = done
        for n in range(done + 1, iterations + 1):
            # Each iteration's run in a folder of its own under the tune dir: Ultralytics names runs by the
            # next free "multitrain-N", which reuses a deleted loser's name and leaves two records on one run.
            tuner.args.project = str(tune_dir / "iterations" / str(n))
            tuner(iterations=n)
            carry_optimizer(tune_dir / BEST_YAML, str(args["optimizer"]))
            records = _records(tune_dir)
            _keep_best_runs(tune_dir, records)
            plot_fitness(tune_dir / RESULTS, tune_dir / PLOT)
            best = max(records, key=lambda r: r.get("fitness") or 0.0)
            bar.update(note=f"iteration {n}: fitness {records[-1].get('fitness', 0.0):.4f}, best {best.get('fitness', 0.0):.4f}")


def carry_optimizer(best_yaml: Path, optimizer: str) -> None:
    """Add the optimizer the search trained with to its ``best_hyperparameters.yaml`` (rewritten each iteration).

    Ultralytics writes only the searched values; ``train --cfg`` with that file would run with
    ``optimizer=auto``, which replaces lr0 and momentum with its own: the search would change nothing.
    """
    if not best_yaml.is_file():
        return
    text = best_yaml.read_text()
    if "optimizer" in (yaml.safe_load(text) or {}):
        return
    line = yaml.safe_dump({"optimizer": optimizer}, sort_keys=False)
    note = "# edge_rt: the optimizer every iteration trained with (optimizer=auto would ignore lr0 and momentum)\n"
    best_yaml.write_text(text + ("" if text.endswith("\n") else "\n") + note + line)


def _plain(value: Any) -> Any:
    """A YAML/JSON-comparable copy (tuples as lists)."""
    return json.loads(json.dumps(value)) if value else None


def _check_same_search(tune_dir: Path, settings: Mapping[str, Any]) -> int:
    """Iterations already recorded in ``tune_dir``; refuses a directory whose search had other settings."""
    results = tune_dir / RESULTS
    if not results.is_file():
        return 0
    saved_file = tune_dir / SETTINGS
    if saved_file.is_file():
        saved = yaml.safe_load(saved_file.read_text()) or {}
        changed = [k for k in settings if saved.get(k) != settings[k]]
        if changed:
            was = ", ".join(f"{k}={saved.get(k)!r}" for k in changed)
            raise ValueError(
                f"{tune_dir} holds a search started with {was}; resume it with the same settings or choose another --name"
            )
    return len(_records(tune_dir))


def _records(tune_dir: Path) -> list[dict[str, Any]]:
    path = tune_dir / RESULTS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _keep_best_runs(tune_dir: Path, records: list[dict[str, Any]]) -> None:
    """Delete every iteration's run but the best one (the tuner only tidies within one call)."""
    if not records:
        return
    best = max(records, key=lambda r: r.get("fitness") or 0.0)
    keep = {str(Path(p).resolve()) for p in (best.get("save_dirs") or {}).values()}
    for r in records:
        for p in (r.get("save_dirs") or {}).values():
            if str(Path(p).resolve()) not in keep:
                shutil.rmtree(p, ignore_errors=True)
    for folder in sorted((tune_dir / "iterations").glob("*/multitrain*"), reverse=True):
        if folder.is_dir() and not any(c.is_dir() for c in folder.iterdir()):
            shutil.rmtree(folder, ignore_errors=True)  # only Ultralytics' sweep summary was left in it
    for folder in (tune_dir / "iterations").glob("*"):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def plot_fitness(results: Path, png: Path) -> Path:
    """Fitness of each iteration and the best so far, as a PNG (no pyplot state, no fonts fetched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = [json.loads(line) for line in Path(results).read_text().splitlines() if line.strip()]
    its = [int(r.get("iteration", i)) for i, r in enumerate(records, start=1)]
    fit = [float(r.get("fitness") or 0.0) for r in records]
    best = [max(fit[: i + 1]) for i in range(len(fit))]
    fig = Figure(figsize=(6, 3.5), dpi=120)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    ax.plot(its, fit, "o", color="0.45", label="iteration")
    ax.step(its, best, where="post", color="#2563eb", linewidth=2, label="best so far")
    ax.set_xlabel("iteration")
    ax.set_ylabel("fitness = val mAP50-95")
    ax.set_title("fitness of each iteration (its best epoch)", fontsize=10)
    ax.set_xticks(its)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(str(png))
    return Path(png)


def _result(tune_dir: Path, resumed_from: int) -> TuneResult:
    records = _records(tune_dir)
    if not records:
        raise RuntimeError(f"the tuner wrote no results in {tune_dir / RESULTS}")
    best_i = max(range(len(records)), key=lambda i: records[i].get("fitness") or 0.0)
    plot = tune_dir / PLOT
    if not plot.is_file():
        plot_fitness(tune_dir / RESULTS, plot)
    best_yaml = tune_dir / BEST_YAML
    weights = tune_dir / "weights" / "best.pt"
    return TuneResult(
        tune_dir=tune_dir,
        iterations=len(records),
        resumed_from=resumed_from,
        best_iteration=int(records[best_i].get("iteration", best_i + 1)),
        best_fitness=float(records[best_i].get("fitness") or 0.0),
        best_yaml=best_yaml if best_yaml.is_file() else None,
        best_weights=weights if weights.is_file() else None,
        plot=plot,
        results=tune_dir / RESULTS,
    )
