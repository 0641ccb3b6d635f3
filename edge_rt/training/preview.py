"""A PNG grid of augmented training samples, drawn through Ultralytics' own training dataset.

The samples come from ``build_yolo_dataset`` in train mode with the preset's hyperparameters, plus
the preset's transforms installed exactly as ``augment.register`` installs them during training, so
the grid shows what the model will see: mosaics, affine warps, colour jitter, the preset's effects,
and the boxes as they reach the loss.
"""

from __future__ import annotations

import logging
import math
import random
import tempfile
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from ..errors import ConfigError
from .augment import install, train_kwargs
from .dataset import check_dataset, class_names, split_files

_COLOURS = [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207), (10, 249, 72), (23, 204, 146)]


def augmented_samples(data_yaml: Path, preset: str, n: int = 16, seed: int = 0, imgsz: int = 320) -> list[dict[str, Any]]:
    """``n`` training samples as Ultralytics' data loader yields them: a CHW RGB uint8 ``img``
    tensor, normalised ``bboxes`` (cx, cy, w, h) and ``cls``, seeded so a seed repeats the grid."""
    data_yaml = Path(data_yaml)
    hyp = train_kwargs(preset)
    problems = check_dataset(data_yaml)
    if problems:
        more = f" (and {len(problems) - 1} more; run edge-rt dataset check)" if len(problems) > 1 else ""
        raise ConfigError(f"{problems[0]}{more}")
    data = yaml.safe_load(data_yaml.read_text())
    names = class_names(data) or ()
    root = Path(str(data["path"])).resolve() if data.get("path") else data_yaml.parent.resolve()
    images = [image for image, _ in split_files(root, data["train"], "train", data_yaml)]

    from ultralytics.cfg import get_cfg
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.utils import LOGGER
    from ultralytics.utils.torch_utils import init_seeds

    level = LOGGER.level
    LOGGER.setLevel(logging.WARNING)  # its dataset scan prints a progress bar and a summary per build
    try:
        cfg = get_cfg(overrides={"imgsz": imgsz, **hyp})
        with tempfile.TemporaryDirectory() as tmp:
            listing = Path(tmp) / "train.txt"  # absolute paths: Ultralytics finds each label from its image
            listing.write_text("".join(f"{p}\n" for p in images))
            info = {"names": dict(enumerate(names)), "nc": len(names), "channels": 3}
            dataset: Any = build_yolo_dataset(cfg, str(listing), batch=n, data=info, mode="train", stride=32)  # type: ignore[arg-type]
        install(dataset, preset)
        init_seeds(seed)
        picks = [random.randrange(len(dataset)) for _ in range(n)]
        return [dataset[i] for i in picks]
    finally:
        LOGGER.setLevel(level)


def draw_sample(sample: dict[str, Any], names: tuple[str, ...] | list[str]) -> np.ndarray:
    """A BGR image of one sample with its boxes and class names drawn."""
    img = np.ascontiguousarray(sample["img"].numpy().transpose(1, 2, 0)[..., ::-1])
    h, w = img.shape[:2]
    boxes = sample["bboxes"].numpy().reshape(-1, 4)
    classes = sample["cls"].numpy().reshape(-1).astype(int)
    scale = max(0.3, min(w, h) / 640)
    for (cx, cy, bw, bh), c in zip(boxes, classes):
        p1 = (int(round((cx - bw / 2) * w)), int(round((cy - bh / 2) * h)))
        p2 = (int(round((cx + bw / 2) * w)), int(round((cy + bh / 2) * h)))
        colour = _COLOURS[c % len(_COLOURS)]
        cv2.rectangle(img, p1, p2, colour, 1, cv2.LINE_AA)
        text = names[c] if 0 <= c < len(names) else str(c)
        cv2.putText(img, text, (p1[0] + 1, max(p1[1] - 2, 8)), cv2.FONT_HERSHEY_SIMPLEX, scale, colour, 1, cv2.LINE_AA)
    return img


def grid(tiles: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """Tiles of equal size in a near-square grid, ``gap`` white pixels apart."""
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    h, w = tiles[0].shape[:2]
    out = np.full((rows * h + (rows - 1) * gap, cols * w + (cols - 1) * gap, 3), 255, np.uint8)
    for i, tile in enumerate(tiles):
        r, c = divmod(i, cols)
        out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out


def preview(data_yaml: Path, preset: str, out: Path, n: int = 16, seed: int = 0, imgsz: int = 320) -> Path:
    """Write a PNG grid of ``n`` augmented training samples of ``data_yaml`` to ``out``."""
    if n < 1:
        raise ConfigError(f"--n {n}: must be at least 1")
    if imgsz < 32 or imgsz % 32:
        raise ConfigError(f"--imgsz {imgsz}: must be a multiple of 32, at least 32 (the model's stride)")
    out = Path(out)
    if out.suffix.lower() != ".png":
        raise ConfigError(f"--out {out}: write a .png file")
    out.parent.mkdir(parents=True, exist_ok=True)  # before the work: a folder that cannot be made fails at once
    samples = augmented_samples(data_yaml, preset, n=n, seed=seed, imgsz=imgsz)
    names = class_names(yaml.safe_load(Path(data_yaml).read_text())) or ()
    if not cv2.imwrite(str(out), grid([draw_sample(s, names) for s in samples]), [cv2.IMWRITE_PNG_COMPRESSION, 9]):
        raise ConfigError(f"--out {out}: cannot write the PNG there; check the folder exists and is writable")
    return out
