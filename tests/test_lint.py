"""The package stays typed and linted: ruff over code and tests, mypy over the package."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .helpers import ROOT

pytestmark = pytest.mark.timeout(300)


def test_ruff() -> None:
    proc = subprocess.run([sys.executable, "-m", "ruff", "check", "edge_rt", "tests", "models"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_mypy() -> None:
    proc = subprocess.run([sys.executable, "-m", "mypy", "edge_rt"], cwd=ROOT, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
