"""`edge-rt health`, the probe behind the HEALTHCHECK and the Kubernetes probes, against real `edge-rt run`
processes started from deploy/edge.yaml (so the example config is also proven to run)."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from edge_rt.wire.security import create_keys
from tests.conftest import free_port
from tests.helpers import ROOT, assert_clean_failure, run_cli
from tests.wire.test_broker import DEMO, Proc

pytestmark = pytest.mark.timeout(120)

EDGE_YAML = ROOT / "deploy" / "edge.yaml"


def health(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return run_cli("health", *args, timeout=timeout)


def until_healthy(*args: str, within: float = 30) -> subprocess.CompletedProcess[str]:
    deadline = time.monotonic() + within
    while True:
        proc = health(*args)
        if proc.returncode == 0 or time.monotonic() > deadline:
            return proc
        time.sleep(0.5)


def start_from_deploy_config(endpoint: str, *sources: str, extra: tuple[str, ...] = ()) -> Proc:
    """deploy/edge.yaml as shipped, with this machine's model, cameras and loopback addresses on top."""
    args = ["run", "--config", str(EDGE_YAML), "--model", str(DEMO), "--device", "cpu", "--threads", "1"]
    args += ["--publish", endpoint, "--metrics-addr", "127.0.0.1", "--open-timeout", "1", *extra]
    for s in sources:
        args += ["--source", s]
    return Proc(*args)


def test_health_follows_a_real_runtime_from_online_to_gone(tmp_path: Path) -> None:
    port, metrics = free_port(), free_port()
    endpoint = f"tcp://127.0.0.1:{port}"
    dead = f"rtsp://127.0.0.1:{free_port()}/x"
    run = start_from_deploy_config(
        endpoint, "yard=synthetic://160x120?fps=8", f"door={dead}", extra=("--metrics-port", str(metrics))
    )
    try:
        run.wait_for("publishing on")
        ok = until_healthy("--endpoint", endpoint)
        assert ok.returncode == 0, ok.stdout + ok.stderr + "\n".join(run.lines[-10:])
        (line,) = ok.stdout.splitlines()
        assert line.startswith("healthy: 1 of 2 sources online (yard); door "), line
        # The probe's own view of the runtime's config: tcp://*:PORT is probed on loopback.
        config = tmp_path / "edge.yaml"
        config.write_text(f"publish: tcp://*:{port}\nmodel: m.onnx\n")
        assert health("--config", str(config)).returncode == 0
        by_metrics = health("--metrics", f"http://127.0.0.1:{metrics}/metrics")
        assert by_metrics.returncode == 0 and "1 of 2 sources online (yard)" in by_metrics.stdout, by_metrics.stdout
        other_box = health("--endpoint", endpoint, "--box", "nobody", "--timeout", "1")
        assert other_box.returncode == 1 and "no $health message for box 'nobody'" in other_box.stdout
    finally:
        code = run.stop()
    assert code == 0, "\n".join(run.lines[-10:])
    t0 = time.monotonic()
    gone = health("--endpoint", endpoint, "--timeout", "1")
    assert gone.returncode == 1 and gone.stdout.startswith("unhealthy: no $health message from"), gone.stdout
    assert time.monotonic() - t0 < 5
    down = health("--metrics", f"http://127.0.0.1:{metrics}/metrics", "--timeout", "1")
    assert down.returncode == 1 and "cannot read" in down.stdout


def test_a_runtime_whose_cameras_are_all_down_is_alive_but_not_ready_and_curve_is_honoured(tmp_path: Path) -> None:
    create_keys("box", tmp_path / "keys")
    create_keys("probe", tmp_path / "keys")
    create_keys("stranger", tmp_path / "keys")
    (tmp_path / "clients").mkdir()
    (tmp_path / "keys" / "probe.key").rename(tmp_path / "clients" / "probe.key")
    port = free_port()
    config = tmp_path / "edge.yaml"  # what the probe reads: the runtime's config, with CURVE
    config.write_text(
        f"model: {DEMO}\nsources: [door=rtsp://127.0.0.1:{free_port()}/x]\npublish: tcp://*:{port}\n"
        f"curve_secret_key: {tmp_path / 'keys' / 'box.key_secret'}\ncurve_allow: {tmp_path / 'clients'}\n"
    )
    run = start_from_deploy_config(
        f"tcp://127.0.0.1:{port}",
        f"door=rtsp://127.0.0.1:{free_port()}/x",
        extra=("--curve-secret-key", str(tmp_path / "keys" / "box.key_secret"), "--curve-allow", str(tmp_path / "clients")),
    )
    probe = ("--config", str(config), "--curve-secret-key", str(tmp_path / "keys" / "probe.key_secret"))
    try:
        run.wait_for("publishing on")
        alive = until_healthy(*probe, "--require", "alive")
        assert alive.returncode == 0 and "0 of 1 sources online; door " in alive.stdout, alive.stdout
        ready = health(*probe)
        assert ready.returncode == 1 and ready.stdout.startswith("unhealthy: 0 of 1 sources online; door "), ready.stdout
        stranger = health(
            "--config", str(config), "--curve-secret-key", str(tmp_path / "keys" / "stranger.key_secret"), "--timeout", "1"
        )
        assert stranger.returncode == 1 and "no $health message" in stranger.stdout, "an unlisted key learns nothing"
        assert_clean_failure(health("--config", str(config)), "the runtime publishes with CURVE: pass --curve-secret-key")
    finally:
        assert run.stop() == 0


@pytest.mark.parametrize(
    "args,expected",
    [
        (["--timeout", "0"], "--timeout must be > 0"),
        (["--endpoint", "localhost:5555"], "expected tcp://HOST:PORT"),
        (["--metrics", "ftp://x/metrics"], "expected http://HOST:PORT/metrics"),
        (["--config", "/nope.yaml"], "no such file"),
        (["--endpoint", "tcp://127.0.0.1:1", "--metrics", "http://127.0.0.1:1/metrics"], "not allowed with argument"),
        (
            ["--curve-server-key", "/nope.key", "--curve-secret-key", "/nope.key_secret"],
            "--curve-server-key '/nope.key': no such file",
        ),
    ],
)
def test_bad_health_options_are_one_line_and_exit_2(args: list[str], expected: str) -> None:
    proc = health(*args)
    assert_clean_failure(proc, expected)
    assert proc.returncode == 2


def test_a_runtime_that_connects_to_a_broker_is_probed_by_its_metrics(tmp_path: Path) -> None:
    """`publish: connect:...` (publishing to a broker) binds no local port: the config's metrics endpoint tells."""
    port = free_port()
    config = tmp_path / "edge.yaml"
    config.write_text(f"publish: connect:tcp://broker.example:5556\nmetrics_port: {port}\nmetrics_addr: 0.0.0.0\n")
    down = health("--config", str(config), "--timeout", "1")
    assert down.returncode == 1 and f"cannot read http://127.0.0.1:{port}/metrics" in down.stdout, down.stdout
    config.write_text("publish: connect:tcp://broker.example:5556\n")
    assert_clean_failure(health("--config", str(config)), "connects to a broker, so there is no local $health to probe")
