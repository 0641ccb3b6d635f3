"""Keep a months-long run's resident set flat: cap glibc's malloc arenas.

glibc gives threads their own malloc arenas (up to 8 per core) and hands little of an arena's freed
memory back to the kernel. FFmpeg starts new decoder threads on every camera reopen, so a camera
that flaps lands its frame buffers in one arena after another: the soak saw RSS step up by ~20 MB
at a reopen, then stay there. Two arenas is what gunicorn and most long-running Python services set
(`MALLOC_ARENA_MAX=2`); a user's own MALLOC_ARENA_MAX wins.

Within the arenas that remain, a released decoder leaves free pages between live blocks that glibc
only returns from the top of the heap; `trim_heap()` after a capture is released hands them back.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger("edge_rt.memory")

_M_ARENA_MAX = -8  # from glibc's malloc.h


def _libc() -> ctypes.CDLL | None:
    """The C library already loaded in this process: dlopen(NULL), no find_library (it runs ldconfig
    in a subprocess, which a trim on every camera reopen must not pay)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def trim_heap() -> bool:
    """malloc_trim(0): free pages anywhere in the heap go back to the kernel (glibc only; a few ms)."""
    libc = _libc()
    trim = getattr(libc, "malloc_trim", None)  # absent on musl
    if trim is None:
        return False
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return bool(trim(0))


def cap_malloc_arenas(arenas: int = 2) -> bool:
    """mallopt(M_ARENA_MAX, arenas) unless MALLOC_ARENA_MAX is set; True when applied (glibc only)."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    mallopt = getattr(_libc(), "mallopt", None)  # absent on musl (Alpine)
    if mallopt is None:
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(_M_ARENA_MAX, arenas))
    log.debug("malloc arenas capped at %d: %s", arenas, applied)
    return applied
