"""`edge-rt train` a user can steer: frozen layers, KEY=VALUE overrides, --cfg files, --resume."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import pytest
import yaml

from edge_rt.cli import main
from edge_rt.training.synth import synth_dataset

os.environ.setdefault("YOLO_OFFLINE", "1")

pytestmark = [pytest.mark.timeout(300), pytest.mark.filterwarnings("ignore:Converting a tensor to a Python boolean")]

DEMO_PT = Path(__file__).resolve().parents[2] / "models" / "demo" / "demo.pt"
BACKBONE = 11  # layers 0-10 of the YOLO11 layout the demo model uses


def _run(log: Path, *args: str) -> int:
    """The real CLI in this process (no second torch import), its stdout kept for the assertions."""
    with log.open("w") as f, contextlib.redirect_stdout(f):
        return main(list(args))


def _error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """A user mistake: exit 2 and exactly one line on stderr."""
    code = main(list(args))
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return synth_dataset(tmp_path_factory.mktemp("opts") / "data", images=16, imgsz=64, seed=5, val_fraction=0.25)


@pytest.fixture(scope="module")
def frozen_run(data: Path) -> Path:
    """The demo model fine-tuned 1 epoch, backbone frozen, AdamW at lr0=0.01 from the first step.

    Settings come from all three places: a --cfg file (epochs, imgsz, mosaic, lr0), options, and
    KEY=VALUE (lr0 again, which wins over the file). No optimizer is named: with lr0 set, edge_rt
    chooses AdamW instead of Ultralytics' optimizer=auto, which would ignore lr0.
    """
    runs = data.parent / "runs"
    cfg = data.parent / "hyp.yaml"
    cfg.write_text("epochs: 1\nimgsz: 64\nmosaic: 0.25\nlr0: 0.002\nwarmup_epochs: 0\n")
    code = _run(
        data.parent / "frozen.log",
        *("train", "--data", str(data), "--model", str(DEMO_PT), "--batch", "8", "--cfg", str(cfg), "--patience", "3"),
        *("--freeze", "backbone", "--project", str(runs), "--name", "frozen", "lr0=0.01", "cos_lr=true"),
    )
    assert code == 0, (data.parent / "frozen.log").read_text()
    return runs / "frozen"


def _layer(key: str) -> int:
    return int(key.split(".")[1])  # model.<layer>.<...>


def test_freeze_keeps_the_backbone_and_trains_the_rest(frozen_run: Path) -> None:
    from ultralytics.utils.patches import torch_load

    start = torch_load(str(DEMO_PT), map_location="cpu", weights_only=False)["model"].state_dict()
    best = torch_load(str(frozen_run / "weights" / "best.pt"), map_location="cpu", weights_only=False)["model"].state_dict()
    assert yaml.safe_load((frozen_run / "args.yaml").read_text())["freeze"] == BACKBONE
    frozen = [k for k in start if _layer(k) < BACKBONE]
    assert frozen and all((start[k] == best[k]).all() for k in frozen), "weights and BatchNorm statistics unchanged"
    changed: dict[int, bool] = {}
    for k in start:
        if _layer(k) >= BACKBONE and ".dfl" not in k and start[k].is_floating_point():  # DFL is fixed by design
            changed[_layer(k)] = changed.get(_layer(k), False) or not (start[k] == best[k]).all()
    assert changed and all(changed.values()), f"every layer after the backbone trained: {changed}"


def test_overrides_and_cfg_file_reach_ultralytics(frozen_run: Path) -> None:
    args = yaml.safe_load((frozen_run / "args.yaml").read_text())
    assert (args["optimizer"], args["cos_lr"], args["patience"]) == ("AdamW", True, 3), "AdamW chosen: lr0 is set"
    assert (args["epochs"], args["imgsz"], args["mosaic"], args["warmup_epochs"]) == (1, 64, 0.25, 0), "from --cfg"
    assert args["lr0"] == 0.01, "KEY=VALUE wins over the --cfg file"
    assert args["amp"] is False and args["plots"] is False, "offline defaults kept"
    assert (frozen_run / "weights" / "best.onnx").is_file(), "exported as before"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["lr=0.01"], "unknown Ultralytics setting 'lr' (did you mean 'lrf' or 'lr0'?) in KEY=VALUE overrides"),
        (["epoch=3", "mosiac=0"], "'epoch' (did you mean 'epochs'?), 'mosiac' (did you mean 'mosaic'?)"),
        (["lr0=2"], "'lr0=2' is an invalid value. Valid 'lr0' values are between 0.0 and 1.0."),
        (["cos_lr=maybe"], "'cos_lr=maybe' is of invalid type str"),
        (["lr0"], "'lr0': expected KEY=VALUE"),
        (["mode=val"], "'mode=val' in KEY=VALUE overrides: edge-rt train always trains"),
        (["save_dir=/tmp/x"], "edge_rt names the run directory from --project and --name"),
        (["epochs=3", "--epochs", "4"], "--epochs 4 and epochs=3: epochs given twice"),
        (["epochs=two"], "epochs='two' in KEY=VALUE overrides: must be an integer"),
        (["--freeze", "99"], "freeze=99: the model has 24 layers, so nothing would train; use 0..23"),
        (["--freeze", "head"], "freeze='head': give a number of layers or 'backbone'"),
        (["--augment", "snow"], "augment='snow': unknown preset; use one of default, night, weather, fisheye"),
        (["--folds", "1"], "--folds must be >= 2, got 1"),
    ],
)
def test_mistakes_are_one_line(
    data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], expected: str
) -> None:
    base = ["train", "--data", str(data), "--model", str(DEMO_PT), "--epochs", "1", "--imgsz", "64", "--project", str(tmp_path)]
    assert expected in _error(capsys, *base, *extra)
    assert not list(tmp_path.iterdir()), "nothing trained"


def test_unknown_key_in_a_cfg_file_is_one_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "best_hyperparameters.yaml"
    cfg.write_text("lr0: 0.01\nmomentun: 0.9\n")
    line = _error(capsys, "train", "--data", str(data), "--cfg", str(cfg))
    assert f"unknown Ultralytics setting 'momentun' (did you mean 'momentum'?) in --cfg {cfg}" in line
    cfg.write_text("lr0: 5\n")
    assert f"--cfg {cfg}: 'lr0=5' is an invalid value" in _error(capsys, "train", "--data", str(data), "--cfg", str(cfg))


class _Interrupt(Exception):
    """Stands for Ctrl-C or a power cut after the first epoch's checkpoint."""


@pytest.fixture(scope="module")
def interrupted(data: Path) -> Path:
    """A 2-epoch Ultralytics run stopped after writing epoch 1's last.pt (optimizer state still in it)."""
    from ultralytics import YOLO

    def stop(trainer: object) -> None:
        raise _Interrupt

    yolo = YOLO(str(DEMO_PT))
    yolo.add_callback("on_model_save", stop)
    with pytest.raises(_Interrupt):
        yolo.train(
            data=str(data), epochs=2, imgsz=64, batch=8, workers=0, device="cpu", amp=False, plots=False, verbose=False,
            project=str(data.parent / "runs"), name="interrupted", mosaic=0.0, lr0=0.004,
            optimizer="SGD",  # 'auto' would replace lr0 with its own pick in the checkpoint's train_args
        )  # fmt: skip
    return data.parent / "runs" / "interrupted"


def test_resume_continues_an_interrupted_run(interrupted: Path, tmp_path: Path) -> None:
    import csv

    assert len(list(csv.DictReader((interrupted / "results.csv").open()))) == 1
    code = _run(tmp_path / "log", "train", "--resume", "--project", str(interrupted.parent), "--name", "interrupted")
    out = (tmp_path / "log").read_text()
    assert code == 0 and f"resuming {interrupted / 'weights' / 'last.pt'}" in out
    rows = list(csv.DictReader((interrupted / "results.csv").open()))
    assert [int(float(r["epoch"])) for r in rows] == [1, 2], "epoch 2 ran in the same run, epoch 1 not again"
    args = yaml.safe_load((interrupted / "args.yaml").read_text())
    assert (args["optimizer"], args["lr0"], args["mosaic"]) == ("SGD", 0.004, 0.0), "the run kept its own settings"
    assert f"best weights: {interrupted / 'weights' / 'best.pt'}" in out


def test_resume_refuses_a_finished_run_and_changed_settings(frozen_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    last = frozen_run / "weights" / "last.pt"
    assert "not an interrupted run" in _error(capsys, "train", "--resume", str(last))
    assert "lr0 cannot change on a resumed run" in _error(capsys, "train", "--resume", str(last), "lr0=0.1")
    assert "drop --epochs" in _error(capsys, "train", "--epochs", "3", "--resume", str(last))
    missing = frozen_run.parent / "nothing"
    assert "no such checkpoint" in _error(capsys, "train", "--resume", str(missing / "last.pt"))


def test_values_are_parsed_as_the_yolo_cli_parses_them() -> None:
    from edge_rt.training.overrides import parse_overrides

    got = parse_overrides(["lr0=0.01", "epochs=3", "cos_lr=True", "rect=false", "fraction=None", "name=001", "optimizer=SGD"])
    assert got == {"lr0": 0.01, "epochs": 3, "cos_lr": True, "rect": False, "fraction": None, "name": "001", "optimizer": "SGD"}
    assert type(got["epochs"]) is int and type(got["lr0"]) is float
