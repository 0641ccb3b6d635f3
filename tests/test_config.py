"""The typed config: YAML and flags merged, every bad value named."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge_rt.camera.sources import SourceKind
from edge_rt.config import build_run_config, load_yaml
from edge_rt.errors import ConfigError

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
        # Found by tests/test_fuzz.py: each was a crash (OverflowError, ValueError, TypeError, RecursionError) or a NaN let through.
        ("model: m.onnx\nsources: [0]\nconf: .nan\n", "conf: expected a finite number, got nan"),
        ("model: m.onnx\nsources: [0]\nfps: .inf\n", "fps: expected a finite number, got inf"),
        (f"model: m.onnx\nsources: [0]\nmax_wait_ms: {'9' * 400}\n", "max_wait_ms: 99999"),
        ("model: m.onnx\nsources: [0]\nclasses: ['\u00b2']\n", "classes: expected class ids (integers >= 0), got '\u00b2'"),
        ("model: m.onnx\nsources:\n  - {uri: '0', 1: x, port: 2}\n", "sources[0]: unknown key 1"),
        ("model: m.onnx\nsources:\n  - {uri: [0]}\n", "sources[0].uri: expected a string"),
        ("model: m.onnx\nstamp: 2001-13-45\n", "a value YAML cannot represent: month must be in 1..12"),
        ("when: 2001-01-01 00:00:00 +99:00\n", "a value YAML cannot represent: offset must be"),
        (f"big: {'9' * 5000}\n", "a value YAML cannot represent: Exceeds the limit"),
        ("a: " + "[" * 3000 + "]" * 3000 + "\n", "nested too deeply"),
        ("flag: !!bool maybe\n", "a value YAML cannot represent: KeyError: 'maybe'"),
        ("when: !!timestamp x\n", "a value YAML cannot represent: AttributeError"),
        ("n: !!float ''\n", "a value YAML cannot represent: IndexError"),
        ("!" + "9" * 5000 + " x\n", "9999..."),  # PyYAML quotes the whole tag; the line is cut at 200 characters
    ],
)
def test_bad_values_are_named(text: str, expected: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        build_run_config(load_yaml(cfg), {})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_an_alias_bomb_is_refused_without_walking_it(tmp_path: Path) -> None:
    """9**9 elements if anything repr()s or str()s the value: the error shows a short, cut repr instead."""
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    lines += [f"{q}: &{q} [{', '.join(['*' + p] * 9)}]" for p, q in zip("abcdefgh", "bcdefghi")]
    cfg = tmp_path / "bomb.yaml"
    for tail in ("model: *i", "model: m.onnx\nsources: [{uri: *i}]", "model: m.onnx\nsources: [0]\nclasses: *i"):
        cfg.write_text("\n".join(lines) + "\n" + tail + "\n")
        values = {k: v for k, v in load_yaml(cfg).items() if len(k) > 1}  # the anchors' own keys are not options
        with pytest.raises(ConfigError) as err:
            build_run_config(values, {})
        assert len(str(err.value)) < 200, str(err.value)[:300]


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
