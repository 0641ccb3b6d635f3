"""Progress: a bar on a terminal, plain lines in a log."""

from __future__ import annotations

import io

from edge_rt.ops.progress import Progress


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_log_gets_plain_lines_rate_limited_and_the_last() -> None:
    out = io.StringIO()
    with Progress(5, "folds", stream=out, every_s=3600) as p:
        for i in range(5):
            p.update(note=f"fold {i}")
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("folds: 1/5") and lines[-1].startswith("folds: 5/5")
    assert len(lines) == 2 and "\r" not in out.getvalue()


def test_terminal_gets_one_bar_redrawn_in_place() -> None:
    out = _Tty()
    p = Progress(4, "frames", stream=out)
    for _ in range(4):
        p.update()
    p.close()
    text = out.getvalue()
    assert text.count("\r") == 4 and text.endswith("\n") and text.count("\n") == 1
    assert "[" + "#" * 24 + "] 4/4" in text
