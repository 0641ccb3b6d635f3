"""The malloc arena cap: applied on glibc, and a user's own MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from .helpers import ROOT

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's"),
]

_CODE = "from edge_rt.memory import cap_malloc_arenas; print(cap_malloc_arenas())"


@pytest.mark.parametrize("env,expected", [({}, "True"), ({"MALLOC_ARENA_MAX": "4"}, "False")])
def test_arena_cap(env: dict[str, str], expected: str) -> None:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    proc = subprocess.run([sys.executable, "-c", _CODE], cwd=ROOT, env={**base, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected
