"""What a newcomer hit walking tracking, recording, MQTT and the report (issue 28), each checked at the
level a user sees it: the CLI's exit code and its one line, the published messages."""

from __future__ import annotations

import json
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
import yaml

from edge_rt.client import DetectionMessage, EndOfStream, EventMessage, Message, Subscriber
from edge_rt.training.synth_tracks import synth_track_clip
from tests.conftest import free_port, write_clip
from tests.helpers import ROOT, CliProcess, assert_clean_failure, run_cli

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


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """docs/tracking/example.yaml on the clip its header makes (`edge-rt dataset clip clip.mp4 --tracks`)."""
    folder = tmp_path_factory.mktemp("example")
    clip = synth_track_clip(folder / "clip.mp4").video
    config = yaml.safe_load((ROOT / "docs/tracking/example.yaml").read_text())
    config["model"] = DEMO
    config["sources"][0]["uri"] = str(clip)
    out = folder / "example.yaml"
    out.write_text(yaml.safe_dump(config))
    return out


def test_the_two_shell_recipe_shows_the_crossings_on_a_file(example: Path) -> None:
    """tracking.md: the run, then 2 s later a subscriber in another shell. The clip ends in ~2 s: without
    --await-subscribers the subscriber got nothing."""
    for page, start in (("docs/tracking.md", "edge-rt run --config docs/tracking/example.yaml"), ("docs/tracking/example.yaml", "#   edge-rt run")):
        line = next(x for x in (ROOT / page).read_text().splitlines() if x.startswith(start))
        assert "--await-subscribers 1" in line, f"{page}: {line}"
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run = CliProcess("run", "--config", str(example), "--name", "gate-box", "--await-subscribers", "1", "--publish", endpoint)
    try:
        run.wait_for("waiting up to")
        time.sleep(2)  # a person switching shells
        sub = CliProcess("subscribe", endpoint, "--events-only", "--event", "cross")
        assert run.proc.wait(60) == 0, run.stderr
        time.sleep(0.5)
        sub.stop(signal.SIGINT)
        events = [json.loads(line) for line in sub.proc.stdout.read().splitlines()] if sub.proc.stdout else []
    finally:
        run.kill()
    assert events and {e["event"] for e in events} == {"cross"} and {e["box"] for e in events} == {"gate-box"}
    assert "no subscriber" not in run.stderr


def test_a_run_nobody_heard_says_so_in_its_summary(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=4)
    proc = run_cli("run", "-m", DEMO, "-s", str(clip), "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert proc.returncode == 0, proc.stderr
    line = next((x for x in proc.stderr.splitlines() if "no subscriber" in x), "")
    assert "WARNING" in line and "nobody received the 4 message(s)" in line and "--await-subscribers 1" in line, proc.stderr


@pytest.fixture(scope="module")
def published(example: Path) -> list[Message]:
    """Everything the example's run publishes, read with the Python client as client.md shows."""
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    run = CliProcess("run", "--config", str(example), "--await-subscribers", "1", "--publish", endpoint)
    try:
        with Subscriber(endpoint, events=True, until_eos=True) as sub:
            messages = list(sub)  # ends by itself (the test's timeout would fail it otherwise)
            assert sub.ended
        assert run.proc.wait(30) == 0, run.stderr
    finally:
        run.kill()
    return messages


def test_the_python_loop_ends_at_end_of_stream_and_ids_count_the_objects(published: list[Message]) -> None:
    """`for msg in sub:` never ended on a file run; ids jumped (1, 5, 6, 7, 12 ...) past unconfirmed tracks."""
    messages = published
    assert isinstance(messages[-1], EndOfStream)
    published = {d.track_id for m in messages if isinstance(m, DetectionMessage) for d in m.detections}
    started = [m.track_id for m in messages if isinstance(m, EventMessage) and m.event == "start"]
    assert started == list(range(1, len(started) + 1)) and published == set(started), (started, sorted(published))


def test_draw_clip_counts_the_events_the_run_publishes(example: Path, published: list[Message], tmp_path: Path) -> None:
    """draw clip said 37 `end`s where the run published 39: the objects still tracked at the file's end."""
    kinds = Counter(m.event for m in published if isinstance(m, EventMessage))
    assert kinds["end"] == kinds["start"] > 0  # each start has its end
    proc = run_cli("draw", "clip", "--config", str(example), "--output", str(tmp_path / "a.mp4"))
    assert proc.returncode == 0, proc.stderr
    said = dict(x.split() for x in proc.stdout.split("events: ")[1].split(" -> ")[0].split(", "))
    assert {k: int(v) for k, v in said.items()} == {k: v for k, v in kinds.items() if v}, proc.stdout


def test_bench_objects_help_says_what_it_measures() -> None:
    proc = run_cli("bench", "objects", "--help")
    assert proc.returncode == 0
    usage, _, rest = proc.stdout.partition("\n\n")
    assert "synthetic" in rest.split("options:")[0] and "Loads no model" in proc.stdout.replace("\n", " ").replace("  ", " ")


def test_frigate_at_a_glance_is_what_print_config_prints() -> None:
    """frigate.md's first YAML had another endpoint than the command beside it, and no objects.track."""
    page = (ROOT / "docs/frigate.md").read_text()
    glance = page.split("## At a glance", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    printed = run_cli("frigate", "--model", DEMO, "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert yaml.safe_load(glance) == yaml.safe_load(printed.stdout)


def test_a_copied_config_says_that_its_paths_are_read_from_the_current_folder(tmp_path: Path) -> None:
    """A copy of example.yaml found clip.mp4 beside it but not models/demo/demo.onnx, and no page said why."""
    elsewhere = tmp_path / "configs"
    (elsewhere / "models").mkdir(parents=True)
    (elsewhere / "models" / "m.onnx").write_bytes((ROOT / "models/demo/demo.onnx").read_bytes())
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    config = elsewhere / "gate.yaml"
    config.write_text(yaml.safe_dump({"model": "models/m.onnx", "sources": [str(clip)]}))
    proc = run_cli("run", "--config", str(config), "--publish", f"tcp://127.0.0.1:{free_port()}")
    assert proc.returncode == 2
    assert_clean_failure(proc, "model: 'models/m.onnx' is not in the current folder")
    assert "relative paths in a config are read from the folder edge-rt runs in" in proc.stderr
    assert str(elsewhere / "models/m.onnx") in proc.stderr
    assert "current folder" in (ROOT / "docs/running.md").read_text()
