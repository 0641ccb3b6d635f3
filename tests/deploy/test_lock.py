"""The lock (constraints.txt) that `make install`, CI and the images install from: complete, exact, within
pyproject.toml's ranges, and holding the hand-picked pins of constraints.in."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.helpers import ROOT


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, eq, version = line.partition("==")
            assert eq and version and not re.search(r"[<>~!,;@ ]", version), f"{path.name}: not an exact pin: {line!r}"
            out[canonicalize_name(name)] = version
    return out


def requirements() -> list[Requirement]:
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    # What `make install` installs (the Makefile's EXTRAS); gpu is for an NVIDIA box, msgpack is in dev.
    wanted = [r for name in ("cpu", "openvino", "train", "dev", "record", "docs") for r in extras[name]]
    return [Requirement(r) for r in project["dependencies"] + wanted]


def test_the_lock_pins_every_requirement_within_its_range() -> None:
    lock = pins(ROOT / "constraints.txt")
    for req in requirements():
        name = canonicalize_name(req.name)
        assert name in lock, f"constraints.txt has no pin for {req}: run `make lock`"
        assert req.specifier.contains(lock[name], prereleases=True), f"constraints.txt: {name}=={lock[name]} is outside {req}"


def test_the_lock_keeps_the_hand_picked_pins() -> None:
    lock, chosen = pins(ROOT / "constraints.txt"), pins(ROOT / "constraints.in")
    assert chosen["torch"] == "2.14.1" and chosen["torchvision"] == "0.29.1", "the torch releases on this machine's disk"
    assert {n: lock.get(n) for n in chosen} == chosen


def test_the_images_opencv_follows_the_lock() -> None:
    lock = pins(ROOT / "constraints.txt")
    assert lock["opencv-python-headless"] == lock["opencv-python"]


def test_make_install_and_the_images_install_from_the_lock() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert "-c constraints.txt -e '.[$(EXTRAS)]'" in makefile
    assert re.search(r"^lock:", makefile, re.M), "make lock refreshes it"
    containerfile = (ROOT / "deploy" / "Containerfile").read_text()
    assert "COPY constraints.txt" in containerfile and "-c requirements/lock.txt" in containerfile
