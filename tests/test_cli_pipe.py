"""A reader that leaves early (`edge-rt schema | head -1`) ends the command quietly, not with a traceback."""

from __future__ import annotations

import os
import subprocess
import sys


def test_a_closed_pipe_is_exit_141_without_a_traceback() -> None:
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write
    try:
        done = subprocess.run(
            [sys.executable, "-m", "edge_rt", "schema"], stdout=write_end, stderr=subprocess.PIPE, timeout=60
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141
    assert b"Traceback" not in done.stderr and b"BrokenPipeError" not in done.stderr, done.stderr.decode()
