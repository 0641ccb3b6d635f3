"""The typed config: YAML and flags merged, every bad value named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_rt.config import build_run_config, load_yaml
from edge_rt.errors import ConfigError
from edge_rt.sources import SourceKind

from .conftest import write_clip


def test_yaml_sources_in_every_form(tmp_path: Path) -> None:
    clip = write_clip(tmp_path / "c.mp4", frames=2)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "model: m.onnx\nfps: 10\nloop: true\nsources:\n"
        f"  - 0\n  - yard=rtsp://10.0.0.2/live\n  - {{name: replay, uri: {clip}, fps: 5}}\n"
    )
    config = build_run_config(load_yaml(cfg), {})
    cam, yard, replay = config.sources
    assert (cam.name, cam.kind, cam.fps, cam.loop) == ("cam0", SourceKind.CAMERA, 10, False)
    assert (yard.name, yard.kind) == ("yard", SourceKind.STREAM)
    assert (replay.name, replay.fps, replay.loop) == ("replay", 5, True), "per-source values win; loop reaches files only"


@pytest.mark.parametrize(
    "text,expected",
    [
        ("model: m.onnx\nsources: [0]\nmax_det: 0\n", "max_det: must be >= 1"),
        ("model: m.onnx\nsources: [0]\nclasses: [a]\n", "classes: expected class ids"),
        ("model: m.onnx\nsources: [0]\ndevice: npu\n", "device: 'npu' is not one of"),
        ("model: m.onnx\nsources:\n  - {uri: '0', port: 1}\n", "sources[0]: unknown key 'port'"),
        ("model: m.onnx\nsources: [[0]]\n", "sources[0]: expected a string or a mapping"),
        ("- just\n- a list\n", "expected a mapping of options"),
    ],
)
def test_bad_values_are_named(text: str, expected: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        build_run_config(load_yaml(cfg), {})
    assert expected in str(err.value)


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    cfg = tmp_path / "latin1.yaml"
    cfg.write_bytes("model: caf\xe9.onnx\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="cannot read it"):
        load_yaml(cfg)


def test_default_endpoint_is_loopback() -> None:
    config = build_run_config({}, {"model": "m.onnx", "sources": ["0"]})
    assert config.publish == "tcp://127.0.0.1:5555" and not config.insecure and config.curve_secret_key is None


@pytest.mark.parametrize(
    "text,cli,expected",
    [
        ("publish: tcp://*:5555\n", {}, "or --insecure"),
        ("publish: tcp://*:5555\ninsecure: true\n", {}, None),
        ("publish: tcp://*:5555\n", {"insecure": True}, None),
        ("publish: tcp://0.0.0.0:5555\ncurve_secret_key: box.key_secret\ncurve-allow: clients\n", {}, None),
        ("publish: tcp://10.1.2.3:5555\ncurve_secret_key: box.key_secret\n", {}, "curve_allow (--curve-allow DIR) is missing"),
        ("publish: tcp://*:5555\n", {"curve_secret_key": "box.key_secret", "curve_allow": "clients"}, None),
        ("publish: ipc:///tmp/edge.sock\n", {}, None),
        ("insecure: yes please\n", {}, "insecure: expected true or false"),
        ("curve_allow: ''\ncurve_secret_key: k\n", {}, "curve_allow: expected a non-empty string"),
    ],
)
def test_security_keys_in_yaml_and_flags(text: str, cli: dict, expected: str | None, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model: m.onnx\nsources: [0]\n" + text)
    if expected is None:
        config = build_run_config(load_yaml(cfg), cli)
        assert config.insecure or config.curve_allow or config.publish.startswith("ipc://")
    else:
        with pytest.raises(ConfigError, match=re.escape(expected)):
            build_run_config(load_yaml(cfg), cli)
