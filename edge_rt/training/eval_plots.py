"""PNG figures of an evaluation: confusion matrix, precision-recall and F1-confidence curves.

Drawn with matplotlib's object API (no pyplot, no global backend switch) and its bundled font:
Ultralytics' own plotting may try to download Arial, which an offline edge box cannot.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .evaluate import EvalResult

_DPI = 150


def _figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=_DPI, layout="constrained")


def confusion_matrix_png(result: EvalResult, path: Path) -> Path:
    """Columns are the true class (background: boxes that match no label), rows what the model said.

    Colour is the share of each true class's column (as Ultralytics' normalised matrix); every
    cell also shows its count. Boxes above ``result.confusion_conf``, matched at IoU > 0.45 as Ultralytics does.
    """
    counts = np.asarray(result.confusion, dtype=np.float64)
    labels = [*result.names, "background"]
    share = counts / np.maximum(counts.sum(0, keepdims=True), 1)
    n = len(labels)
    side = max(4.0, 1.0 + 0.75 * n)
    fig = _figure(side + 1.2, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("true")
    ax.set_ylabel("predicted")
    if n <= 30:
        for i in range(n):
            for j in range(n):
                if counts[i, j]:
                    text = f"{share[i, j]:.2f}\n{int(counts[i, j])}"
                    colour = "white" if share[i, j] > 0.55 else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_title(
        f"{result.model.name} on {result.split} ({result.images} images, boxes above conf {result.confusion_conf:g})", fontsize=9
    )
    return _save(fig, path)


def pr_curve_png(result: EvalResult, path: Path) -> Path:
    """Precision against recall at IoU 0.5, one line per class and the mean over classes (bold)."""
    c = result.curves
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    x = np.asarray(c.x)
    rows = np.asarray(c.precision)
    ap50 = {m.cls: m.map50 for m in result.per_class}
    for cls, row in zip(c.classes, rows):
        ax.plot(x, row, linewidth=1, label=f"{result.names[cls]} {ap50.get(cls, 0.0):.3f}")
    if len(rows):
        ax.plot(x, rows.mean(0), linewidth=3, color="blue", label=f"all classes {result.map50:.3f} mAP@0.5")
    _axes(ax, "Recall", "Precision", f"{result.model.name}: precision-recall ({result.kind})")
    return _save(fig, path)


def f1_curve_png(result: EvalResult, path: Path) -> Path:
    """F1 against the confidence threshold: where to set ``--conf`` for a deployment."""
    c = result.curves
    fig = _figure(6.4, 4.8)
    ax = fig.add_subplot()
    x = np.asarray(c.x)
    rows = np.asarray(c.f1)
    for cls, row in zip(c.classes, rows):
        ax.plot(x, row, linewidth=1, label=result.names[cls])
    if len(rows):
        mean = rows.mean(0)
        best = int(mean.argmax())
        ax.plot(x, mean, linewidth=3, color="blue", label=f"all classes {mean[best]:.2f} at {x[best]:.3f}")
    _axes(ax, "Confidence", "F1", f"{result.model.name}: F1-confidence ({result.kind})")
    return _save(fig, path)


def _axes(ax: Any, xlabel: str, ylabel: str, title: str) -> None:
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=7)


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def write_plots(result: EvalResult, folder: Path) -> list[Path]:
    """confusion_matrix.png, PR_curve.png and F1_curve.png in ``folder`` (created)."""
    return [
        confusion_matrix_png(result, folder / "confusion_matrix.png"),
        pr_curve_png(result, folder / "PR_curve.png"),
        f1_curve_png(result, folder / "F1_curve.png"),
    ]
