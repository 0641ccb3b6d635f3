"""`edge-rt tune`: Ultralytics' tuner, resumed by a second call, its best YAML taken by `train --cfg`."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import cv2
import pytest
import yaml

from edge_rt.cli import main
from edge_rt.training.synth import synth_dataset

os.environ.setdefault("YOLO_OFFLINE", "1")

pytestmark = [pytest.mark.timeout(400), pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")]

DEMO_PT = Path(__file__).resolve().parents[2] / "models" / "demo" / "demo.pt"
SPACE = "lr0: [0.0001, 0.002]\nmomentum: [0.7, 0.95, 0.3]\nmosaic: [0.0, 1.0]\nclose_mosaic: [0, 2]\n"
# The demo model fine-tuned 1 epoch at 128 px keeps finding shapes (fitness ~0.3); at 64 px, or with
# Ultralytics' default lr0 0.01, every iteration scores 0 and "best" would mean nothing.
FIXED = ("lr0=0.0005", "warmup_epochs=0")


def _run(log: Path, *args: str) -> int:
    with log.open("a") as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        return main(list(args))


def _records(tune_dir: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in (tune_dir / "tune_results.ndjson").read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def search(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """Two iterations of 1 epoch at 128 px, then the same command asked for 3: one more runs."""
    root = tmp_path_factory.mktemp("tune")
    data = synth_dataset(root / "data", images=16, imgsz=128, seed=6, val_fraction=0.25)
    (root / "space.yaml").write_text(SPACE)
    base = ["tune", "--data", str(data), "--model", str(DEMO_PT), "--epochs", "1", "--imgsz", "128", "--batch", "8"]
    base += ["--space", str(root / "space.yaml"), "--project", str(root / "runs"), "--name", "search", *FIXED]
    log = root / "log"
    assert _run(log, *base, "--iterations", "2") == 0, log.read_text()
    tune_dir = root / "runs" / "search"
    first = _records(tune_dir)
    first_out = log.read_text()
    assert _run(log, *base, "--iterations", "3") == 0, log.read_text()
    return {
        "root": root,
        "data": data,
        "dir": tune_dir,
        "first": first,
        "first_out": first_out,
        "out": log.read_text(),
        "base": base,
    }


def test_first_call_runs_the_iterations_asked(search: dict[str, object]) -> None:
    first = search["first"]
    assert isinstance(first, list) and [r["iteration"] for r in first] == [1, 2]
    assert set(first[0]["hyperparameters"]) == {"lr0", "momentum", "mosaic", "close_mosaic"}, "the --space file's keys"
    assert "continued from" not in str(search["first_out"])


def test_second_call_continues_instead_of_starting_over(search: dict[str, object]) -> None:
    tune_dir = Path(str(search["dir"]))
    records = _records(tune_dir)
    assert [r["iteration"] for r in records] == [1, 2, 3]
    assert records[:2] == search["first"], "iterations 1 and 2 kept as they were, not run again"
    assert records[2]["hyperparameters"] != records[0]["hyperparameters"], "iteration 3 mutated from the history"
    assert "continued from iteration 2" in str(search["out"])
    assert "tune iterations: 3/3" in str(search["out"]) and "iteration 3: fitness" in str(search["out"]), "progress"
    assert not (tune_dir.parent / "search2").exists(), "same directory, not a new search"
    runs = [p for r in records for p in r.get("save_dirs", {}).values()]
    assert len(set(runs)) == 3, f"one run directory per iteration: {runs}"
    kept = [p for p in runs if Path(p).exists()]
    assert len(kept) == 1, f"only the best iteration's run is kept: {kept}"


def test_fitness_plot_is_a_png(search: dict[str, object]) -> None:
    png = cv2.imread(str(Path(str(search["dir"])) / "fitness.png"))
    assert png is not None and png.shape[0] > 200 and png.shape[1] > 400


def test_fitness_is_the_val_map50_95_the_plot_says_it_is(search: dict[str, object]) -> None:
    records = _records(Path(str(search["dir"])))
    assert all(float(r["fitness"]) > 0.05 for r in records), "the demo model still detects after 1 epoch"  # type: ignore[arg-type]
    for r in records:
        (metrics,) = r["datasets"].values()  # type: ignore[attr-defined]
        assert float(r["fitness"]) == pytest.approx(metrics["metrics/mAP50-95(B)"], abs=1e-5)  # type: ignore[arg-type]
    best = max(float(r["fitness"]) for r in records)  # type: ignore[arg-type]
    assert f"fitness {best:.4f} (val mAP50-95)" in str(search["out"])


def test_a_second_search_with_the_same_seed_starts_with_the_same_fitness(search: dict[str, object]) -> None:
    """Iteration 1 trains the starting values (no mutation yet): seeded, it scores the same in a new search."""
    base = [str(a) for a in search["base"]]  # type: ignore[attr-defined]
    base[base.index("--name") + 1] = "again"
    root = Path(str(search["root"]))
    assert _run(root / "again.log", *base, "--iterations", "1") == 0, (root / "again.log").read_text()
    (again,) = _records(root / "runs" / "again")
    first = search["first"][0]  # type: ignore[index]
    assert again["hyperparameters"] == first["hyperparameters"] and again["datasets"] == first["datasets"]


def test_best_yaml_round_trips_through_train_cfg(
    search: dict[str, object], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tuned lr0 and momentum reach the optimizer train builds: the file names the optimizer the search used,
    so Ultralytics' optimizer=auto (which picks its own lr0 and momentum) does not apply."""
    from ultralytics.engine.trainer import BaseTrainer

    tune_dir = Path(str(search["dir"]))
    best_yaml = tune_dir / "best_hyperparameters.yaml"
    best = yaml.safe_load(best_yaml.read_text())
    records = _records(tune_dir)
    winner = max(records, key=lambda r: float(r["fitness"]))  # type: ignore[arg-type]
    assert best.pop("optimizer", None) == "AdamW", "the optimizer every iteration trained with"
    assert best == pytest.approx(winner["hyperparameters"])
    built: list[tuple[str, float, tuple[float, float]]] = []
    build = BaseTrainer.build_optimizer

    def spy(self: BaseTrainer, *args: object, **kwargs: object) -> object:
        optimizer = build(self, *args, **kwargs)  # type: ignore[arg-type]
        group = optimizer.param_groups[0]
        built.append((type(optimizer).__name__, group["lr"], group["betas"]))
        return optimizer

    monkeypatch.setattr(BaseTrainer, "build_optimizer", spy)
    data = Path(str(search["data"]))
    code = _run(
        tmp_path / "log",
        *("train", "--data", str(data), "--model", str(DEMO_PT), "--epochs", "1", "--imgsz", "64", "--batch", "8"),
        *("--cfg", str(best_yaml), "--project", str(tmp_path), "--name", "tuned"),
    )
    assert code == 0, (tmp_path / "log").read_text()
    args = yaml.safe_load((tmp_path / "tuned" / "args.yaml").read_text())
    assert {k: args[k] for k in best} == pytest.approx(best) and args["optimizer"] == "AdamW"
    assert built == [("AdamW", pytest.approx(best["lr0"]), pytest.approx((best["momentum"], 0.999)))], built


def test_resuming_with_other_settings_is_refused(search: dict[str, object], capsys: pytest.CaptureFixture[str]) -> None:
    base = [str(a) for a in search["base"]]  # type: ignore[attr-defined]
    base[base.index("--epochs") + 1] = "2"
    code = main([*base, "--iterations", "4"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "holds a search started with epochs=1" in err[0], err
    assert len(_records(Path(str(search["dir"])))) == 3


@pytest.mark.parametrize(
    ("space", "expected"),
    [
        ("lr: [0.001, 0.01]\n", "unknown Ultralytics setting 'lr' (did you mean"),
        ("lr0: [0.01, 0.001]\n", "lr0: [0.01, 0.001]; write [min, max] with min <= max"),
        ("lr0: 0.01\n", "write [min, max]"),
    ],
)
def test_bad_space_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], space: str, expected: str) -> None:
    data = synth_dataset(tmp_path / "d", images=4, imgsz=64)
    (tmp_path / "space.yaml").write_text(space)
    code = main(
        [
            "tune",
            "--data",
            str(data),
            "--iterations",
            "1",
            "--space",
            str(tmp_path / "space.yaml"),
            "--project",
            str(tmp_path / "r"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and expected in err[0], err
    assert not (tmp_path / "r").exists()
