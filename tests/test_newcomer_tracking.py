"""What a newcomer hit walking tracking, recording, MQTT and the report (issue 28), each checked at the
level a user sees it: the CLI's exit code and its one line, the published messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from .conftest import free_port, write_clip
from .helpers import ROOT, assert_clean_failure, run_cli

pytestmark = pytest.mark.timeout(120)
DEMO = str(ROOT / "models/demo/demo.onnx")


@pytest.mark.parametrize(
    "argv,parser",
    [
        (["run", "-m", DEMO, "-s", "x.mp4", "--trak"], "edge-rt run"),
        (["bench", "objects", "--nope"], "edge-rt bench objects"),
    ],
)
def test_an_unknown_flag_points_at_the_commands_own_help(argv: list[str], parser: str) -> None:
    """`edge-rt run ... --trak` said `(see edge-rt --help)`, whose help does not list run's flags."""
    proc = run_cli(*argv)
    assert proc.returncode == 2
    assert_clean_failure(proc, f"{parser}: error: unrecognized arguments: --")
    assert f"(see {parser} --help)" in proc.stderr


def test_fps_0_says_what_leaving_it_out_does(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    proc = run_cli("run", "-m", DEMO, "-s", str(clip), "--fps", "0", "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert proc.returncode == 2
    assert_clean_failure(proc, "fps: 0 frames/s would never read a frame")
    assert "leave it out" in proc.stderr


def test_a_global_loop_with_no_file_is_refused_like_a_per_source_one() -> None:
    """--loop on an RTSP source alone was silently ignored; `loop: true` on its entry got exit 2."""
    proc = run_cli("run", "-m", DEMO, "-s", "rtsp://127.0.0.1:1/x", "--loop", "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert proc.returncode == 2
    assert_clean_failure(proc, "loop applies to files only, and no source is a file")
