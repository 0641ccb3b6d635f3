"""The malloc arena cap: applied on glibc, and a user's own MALLOC_ARENA_MAX wins."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

from tests.helpers import ROOT

pytestmark = [
    pytest.mark.timeout(60),
    pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt(M_ARENA_MAX) is glibc's"),
]

_CODE = "from edge_rt.ops.memory import cap_malloc_arenas; print(cap_malloc_arenas())"


@pytest.mark.parametrize("env,expected", [({}, "True"), ({"MALLOC_ARENA_MAX": "4"}, "False")])
def test_arena_cap(env: dict[str, str], expected: str) -> None:
    base = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    proc = subprocess.run([sys.executable, "-c", _CODE], cwd=ROOT, env={**base, **env}, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == expected


_TRIM = """
import ctypes
from edge_rt.ops.memory import trim_heap

def rss_kb():
    return int(next(l for l in open("/proc/self/status") if l.startswith("VmRSS")).split()[1])

libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
blocks = [libc.malloc(64 * 1024 - 64) for _ in range(3000)]  # ~190 MB below the mmap threshold: heap pages
for b in blocks:
    ctypes.memset(b, 1, 64 * 1024 - 64)
for b in blocks[:-1]:  # the last block pins the top of the heap: glibc's own trim cannot return the rest
    libc.free(b)
before = rss_kb()
print(trim_heap(), before - rss_kb())
"""


def test_trim_heap_returns_freed_pages_below_a_live_block() -> None:
    """What a released decoder leaves behind: freed pages under a live block stay resident until trimmed."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}  # the blocks come from the heap, not from mmap
    proc = subprocess.run([sys.executable, "-c", _TRIM], cwd=ROOT, env=env, capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    applied, returned_kb = proc.stdout.split()
    assert applied == "True"
    assert int(returned_kb) > 100_000, f"only {returned_kb} kB went back to the kernel"
