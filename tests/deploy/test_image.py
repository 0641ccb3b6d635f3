"""`make test-deploy`: the CPU image really built and run with podman on this machine.

No image registry is reachable here, so the base is a Debian bookworm made with `debootstrap
--variant=minbase`, trimmed as Debian's `-slim` images are, and `podman import`ed (kept in podman's
storage: later runs reuse it), and podman runs with runc, cgroupfs and no default ulimits from a
containers.conf this test writes. The build sees the host's CA bundle (read-only) so pip reaches the
package registry through a TLS-inspecting proxy, and the host pip's index when one is configured.
Then the image runs deploy/edge.yaml (model and cameras swapped for the demo model and a short clip,
all mounted) under a box name given by `--name`, as compose and the DaemonSet do; a subscriber on the
host receives detections on BOX/clip, each naming its box; the HEALTHCHECK turns healthy; and SIGTERM
(podman stop) ends it with exit 0 and an end-of-stream.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from edge_rt.client import DetectionMessage, EndOfStream, Subscriber
from tests.conftest import free_port
from tests.helpers import ROOT, validate

pytestmark = [
    pytest.mark.deploy,
    pytest.mark.timeout(1800),
    pytest.mark.skipif(
        os.environ.get("EDGE_RT_TEST_DEPLOY") != "1",
        reason="builds and runs the container image with podman (minutes, root, network to the package registries): make test-deploy",
    ),
]

BASE = "localhost/edge-rt-test/debian:bookworm-minbase-slim"
IMAGE = "localhost/edge-rt:cpu-test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")
MIRROR = os.environ.get("EDGE_RT_DEBIAN_MIRROR", "http://deb.debian.org/debian")
FRESH = os.environ.get("EDGE_RT_DEPLOY_FRESH") == "1"  # rebuild the base and the image without podman's cache
# What Debian's -slim images leave out (debuerreotype's slimify): docs, man pages, translations. The
# dpkg rule keeps them out of what the Containerfile installs too.
SLIM_DPKG = """\
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/groff/*
path-exclude /usr/share/info/*
path-exclude /usr/share/lintian/*
path-exclude /usr/share/linda/*
path-exclude /usr/share/locale/*
"""
CONTAINERS_CONF = """\
# Written by tests/deploy/test_image.py for this machine: runc, cgroupfs (no systemd as PID 1 here),
# and no default ulimits (the sandbox refuses podman's default nofile/nproc settings).
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
"""

TIMINGS: dict[str, float] = {}


def podman(*args: str, timeout: float = 120, check: bool = True, **kw: object) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]
    if check and proc.returncode != 0:
        raise AssertionError(
            f"podman {' '.join(args[:3])} ... exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc  # type: ignore[no-any-return]


def timed(what: str, t0: float) -> None:
    TIMINGS[what] = time.monotonic() - t0
    print(f"[test-deploy] {what}: {TIMINGS[what]:.1f} s", flush=True)


@pytest.fixture(scope="module")
def containers_conf(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    for tool in ("podman", "debootstrap", "runc"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install -y podman debootstrap runc (make test-deploy does it)")
    conf = tmp_path_factory.mktemp("podman") / "containers.conf"
    conf.write_text(CONTAINERS_CONF)
    old = os.environ.get("CONTAINERS_CONF")
    os.environ["CONTAINERS_CONF"] = str(conf)
    yield conf
    if old is None:
        os.environ.pop("CONTAINERS_CONF", None)
    else:
        os.environ["CONTAINERS_CONF"] = old


@pytest.fixture(scope="module")
def base_image(containers_conf: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Debian bookworm, minbase, imported once into podman's storage."""
    if podman("image", "exists", BASE, check=False).returncode == 0 and not FRESH:
        print(f"[test-deploy] reusing {BASE} (EDGE_RT_DEPLOY_FRESH=1 rebuilds it)", flush=True)
        return BASE
    t0 = time.monotonic()
    root = tmp_path_factory.mktemp("rootfs") / "bookworm"
    proc = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), MIRROR], capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, f"debootstrap failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    timed("debootstrap", t0)
    slim(root)
    t0 = time.monotonic()
    tar = subprocess.Popen(["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE)
    podman("import", "--change", 'CMD ["/bin/bash"]', "-", BASE, stdin=tar.stdout, timeout=600)
    assert tar.wait(60) == 0
    shutil.rmtree(root, ignore_errors=True)
    timed("podman import", t0)
    return BASE


def slim(root: Path) -> None:
    """Trim the debootstrapped tree as Debian's -slim images are: no .debs, apt lists, docs or translations."""
    (root / "etc/dpkg/dpkg.cfg.d/slim").write_text(SLIM_DPKG)
    for pattern in ("var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_*"):
        for f in root.glob(pattern):
            f.unlink()
    for d in ("usr/share/doc", "usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/groff", "usr/share/lintian"):
        for entry in (root / d).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                for f in entry.rglob("*"):
                    if (f.is_file() or f.is_symlink()) and f.name != "copyright":
                        f.unlink()
            elif entry.name != "locale.alias":
                entry.unlink()


def host_pip_index() -> str | None:
    """The package index the host's pip uses (PIP_INDEX_URL, then pip's config), when the build can reach it."""
    url = os.environ.get("PIP_INDEX_URL")
    if not url:
        proc = subprocess.run([sys.executable, "-m", "pip", "config", "get", "global.index-url"], capture_output=True, text=True)
        url = proc.stdout.strip() if proc.returncode == 0 else None
    return url if url and url.startswith(("http://", "https://")) else None  # file:// indexes stay on the host


@pytest.fixture(scope="module")
def image(base_image: str) -> str:
    assert HOST_CA.is_file(), f"{HOST_CA} is missing: the build mounts the host's CA bundle for pip"
    before = podman("image", "inspect", "--format", "{{.Id}}", IMAGE, check=False).stdout.strip()
    index = host_pip_index()
    t0 = time.monotonic()
    podman(
        "build", "--format", "docker", "--network", "host", *(["--no-cache"] if FRESH else []),
        "-f", str(ROOT / "deploy" / "Containerfile"), "--ignorefile", str(ROOT / "deploy" / "Containerfile.dockerignore"),
        "--build-arg", f"BASE_IMAGE={base_image}", "--build-arg", "TARGET=cpu",
        "--volume", f"{HOST_CA}:/run/build-ca.crt:ro", "--build-arg", "PIP_CERT=/run/build-ca.crt",
        *(["--build-arg", f"PYPI_INDEX={index}"] if index else []),
        "-t", IMAGE, str(ROOT),
        timeout=1500,
    )  # fmt: skip
    timed("podman build", t0)
    print(f"[test-deploy] pip's index in the build: {index or 'pypi.org (the default)'}", flush=True)
    after = podman("image", "inspect", "--format", "{{.Id}}", IMAGE).stdout.strip()
    if before and before != after:
        podman("rmi", before, check=False)  # the previous build, now untagged: do not pile them up
    size = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip())
    print(f"[test-deploy] image {IMAGE}: {size / 1e6:.0f} MB", flush=True)
    return IMAGE


def test_cpu_image_publishes_detections_turns_healthy_and_stops_with_exit_0(image: str, tmp_path: Path) -> None:
    from edge_rt.training.synth_video import synth_clip

    clips = tmp_path / "clips"
    synth_clip(clips / "clip.mp4", frames=60, size=(640, 360), fps=30, seed=3)
    config = yaml.safe_load((ROOT / "deploy" / "edge.yaml").read_text())  # as shipped, but this machine's model and clip
    config["model"] = "/models/demo.onnx"
    config["sources"] = [{"name": "clip", "uri": "/clips/clip.mp4", "loop": True, "fps": 10}]
    (tmp_path / "edge.yaml").write_text(yaml.safe_dump(config))
    for p in (tmp_path, clips):
        p.chmod(0o755)  # the container's user (uid 10001) reads the mounts
    for p in (tmp_path / "edge.yaml", clips / "clip.mp4"):
        p.chmod(0o644)
    port, metrics = free_port(), free_port()
    name = f"edge-rt-test-{os.getpid()}"
    box = "ci-box-1"  # named on the command line, as compose and the DaemonSet do: topics BOX/SOURCE
    t0 = time.monotonic()
    podman(
        "run", "-d", "--name", name,
        "-p", f"127.0.0.1:{port}:5555", "-p", f"127.0.0.1:{metrics}:9108",
        "-v", f"{ROOT / 'models' / 'demo'}:/models:ro",
        "-v", f"{tmp_path / 'edge.yaml'}:/config/edge.yaml:ro",
        "-v", f"{clips}:/clips:ro",
        image, "run", "--config", "/config/edge.yaml", "--name", box,
    )  # fmt: skip
    try:
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001", "not root"
        with Subscriber(f"tcp://127.0.0.1:{port}", topics=[f"{box}/clip"]) as sub:
            detections: list[DetectionMessage] = []
            deadline = time.monotonic() + 120
            while len(detections) < 20 and time.monotonic() < deadline:
                msg = sub.receive(500)
                if isinstance(msg, DetectionMessage):
                    validate(msg.raw)
                    detections.append(msg)
            assert len(detections) >= 20, "no detections from the container:\n" + podman("logs", name).stderr[-3000:]
            timed("run -> 20 detection messages at the host's subscriber", t0)
            assert sum(len(m.detections) for m in detections) > 0, "the demo model finds the clip's shapes"
            assert {(m.box, m.source) for m in detections} == {(box, "clip")}, "every message names its box and camera"
            healthy = None
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                check = podman("healthcheck", "run", name, check=False, timeout=60)
                if check.returncode == 0:
                    healthy = check
                    break
                time.sleep(2)
            assert healthy is not None, f"never healthy: {check.stdout} {check.stderr}"
            status = podman("inspect", "--format", "{{.State.Health.Status}}", name).stdout.strip()
            assert status == "healthy", status
            timed("run -> HEALTHCHECK healthy", t0)
            t1 = time.monotonic()
            podman("stop", "--time", "20", name, timeout=60)
            timed("podman stop (SIGTERM -> exit)", t1)
            eos = None
            until = time.monotonic() + 5
            while eos is None and time.monotonic() < until:
                msg = sub.receive(200)
                if isinstance(msg, EndOfStream):
                    eos = msg
        state = podman("inspect", "--format", "{{.State.ExitCode}} {{.State.OOMKilled}}", name).stdout.split()
        logs = podman("logs", name)
        assert state[0] == "0", f"exit {state}:\n{logs.stderr[-3000:]}"
        assert TIMINGS["podman stop (SIGTERM -> exit)"] < 15, "SIGTERM, not the SIGKILL after --time"
        assert eos is not None and eos.reason and eos.box == box, "an end-of-stream before the socket closed"
        assert '"msg": "SIGTERM received: stopping"' in logs.stderr, logs.stderr[-2000:]  # JSON logs on stderr
    finally:
        podman("rm", "-f", name, check=False)
    print(f"[test-deploy] timings: { {k: round(v, 1) for k, v in TIMINGS.items()} }", flush=True)
