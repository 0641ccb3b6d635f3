"""The documentation: the site builds strictly, the CLI reference matches the parser, and every
`edge-rt ...` command shown in a code block still parses with the current CLI."""

from __future__ import annotations

import argparse
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_rt.cli import build_parser, reference

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GENERATED = DOCS / "reference" / "cli.md"

# Lines shown in the docs that start with `edge-rt` but are not commands to run, each with its reason.
NOT_COMMANDS = {
    # Synopses: [optional] and (a | b) are usage notation, not shell; the generated CLI reference covers these flags.
    "edge-rt bench engine   --model M [--model M2] [--batch 1,2,4,8] [--device D] [--shape HxW] [--frame-size WxH] "
    "[--iters N] [--warmup N] [--json F]": "synopsis",
    "edge-rt bench pipeline --model M (--source S [--source S2 ...] | --synthetic N [--frame-size WxH]) [--fps F] "
    "[--duration SEC] [--json F] [--plot F.png]": "synopsis",
    "edge-rt bench compare  --model M --source S [--reference W.pt] [--device D]": "synopsis",
    "edge-rt bench publish  [--count N] [--rate R]": "synopsis",
}

SHELL_LANGS = {"", "sh", "bash", "shell", "console", "text"}
SEPARATORS = {"&&", "||", ";", "|", "&"}
REDIRECTS = {">", ">>", "<", ">&", "<&", "&>"}
PREFIXES = {"sudo", "time", "nice", "exec", "env", "/usr/bin/time", "do", "then", "else"}


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", ROOT / "deploy" / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [f for f in files if f != GENERATED]


def code_blocks(text: str) -> Iterator[tuple[str, int, list[str]]]:
    """(language, first line number, lines) of every fenced code block, indented ones included."""
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)(```+|~~~+)\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        indent, fence, lang = m.groups()
        start, body = i + 1, []
        i += 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i][len(indent) :] if lines[i].startswith(indent) else lines[i])
            i += 1
        i += 1
        yield lang.lower(), start + 1, body


def logical_lines(body: list[str], first: int) -> Iterator[tuple[int, str]]:
    """Lines with their `\\` continuations joined."""
    buf, at = "", first
    for n, line in enumerate(body, first):
        if not buf:
            at = n
        if line.rstrip().endswith("\\"):
            buf += line.rstrip()[:-1] + " "
            continue
        yield at, buf + line
        buf = ""
    if buf:
        yield at, buf


def expand_variables(line: str) -> str:
    """`$s`, `${NAME}` and `$(cmd)` outside single quotes become `0`, a value any option takes (`--seed $s`)."""
    out, quoted, i = [], False, 0
    while i < len(line):
        ch = line[i]
        if ch == "'":
            quoted = not quoted
        elif ch == "$" and not quoted:
            m = re.match(r"\$(\{\w+\}|\w+|\([^)]*\))", line[i:])
            if m:
                out.append("0")
                i += m.end()
                continue
        out.append(ch)
        i += 1
    return "".join(out)


def tokens(line: str) -> list[str]:
    lex = shlex.shlex(line, posix=True, punctuation_chars=True)
    lex.whitespace_split = True
    lex.commenters = "#"
    return list(lex)


def commands(line: str) -> Iterator[list[str]]:
    """The argument lists of `edge-rt` commands in one shell line (after `$ `, `sudo`, `A=B`, `&&`, `|`)."""
    text = line.strip()
    if text.startswith("$ "):
        text = text[2:]
    try:
        toks = tokens(expand_variables(text))
    except ValueError:  # an unbalanced quote: prose in a text block, not a command
        return
    group: list[str] = []
    for tok in [*toks, ";"]:
        if tok in SEPARATORS:
            yield from _edge_rt(group)
            group = []
        else:
            group.append(tok)


def _edge_rt(group: list[str]) -> Iterator[list[str]]:
    words: list[str] = []
    skip = False
    for tok in group:
        if skip:
            skip = False
            continue
        if tok in REDIRECTS:
            skip = True
            continue
        if re.fullmatch(r"\d", tok) and words == []:  # `2>` splits into `2`, `>`
            continue
        words.append(tok)
    while words:
        if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):  # VAR=value before a command
            words.pop(0)
        elif words[0] in PREFIXES:  # sudo, nice -n 19, /usr/bin/time -v: drop it and its options
            words.pop(0)
            while words and (words[0].startswith("-") or words[0].isdigit()):
                words.pop(0)
        else:
            break
    if words and (words[0] == "edge-rt" or words[0].endswith("/edge-rt")):
        if len(words) > 1 and words[1].endswith(":"):  # `edge-rt run: error: ...`: what a command printed
            return
        yield words[1:]


def shown_commands() -> Iterator[tuple[str, list[str], str]]:
    for path in doc_files():
        rel = path.relative_to(ROOT)
        for lang, first, body in code_blocks(path.read_text(encoding="utf-8")):
            if lang not in SHELL_LANGS:
                continue
            for n, line in logical_lines(body, first):
                if " ".join(line.split()) in {" ".join(k.split()) for k in NOT_COMMANDS}:
                    continue
                for args in commands(line):
                    yield f"{rel}:{n}", args, line.strip()


def _relaxed(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The same parser with nothing required: a command shown with `...` for the rest of its options."""
    for _, p, _ in reference.walk(parser):
        for action in p._actions:
            action.required = False
    return parser


STRICT = build_parser()
RELAXED = _relaxed(build_parser())


def test_the_docs_show_edge_rt_commands_at_all() -> None:
    found = list(shown_commands())
    assert len(found) > 100, f"only {len(found)} edge-rt commands found in the docs: is the extraction broken?"


def test_every_edge_rt_command_in_the_docs_parses(capsys: pytest.CaptureFixture[str]) -> None:
    failures = []
    for where, args, line in shown_commands():
        placeholder = "..." in args or "…" in args
        parser = RELAXED if placeholder else STRICT
        argv = [a for a in args if a not in ("...", "…")]
        try:
            parser.parse_args(argv)
        except SystemExit as exc:
            if exc.code not in (0, None):  # --help and --version exit 0
                err = capsys.readouterr().err.strip().splitlines()
                failures.append(f"{where}: {line}\n    {err[-1] if err else exc}")
        capsys.readouterr()
    assert not failures, "commands in the docs that the CLI refuses:\n" + "\n".join(failures)


def test_the_allow_list_names_only_lines_that_are_in_the_docs() -> None:
    text = " ".join(" ".join(p.read_text(encoding="utf-8").split()) for p in doc_files())
    stale = [k for k in NOT_COMMANDS if " ".join(k.split()) not in text]
    assert not stale, f"NOT_COMMANDS entries no page shows any more: {stale}"


def test_every_option_has_help_text() -> None:
    missing = reference.missing_help(build_parser())
    assert not missing, "options without help text (the CLI reference would show them blank):\n" + "\n".join(missing)


def test_the_cli_reference_is_the_parser_today() -> None:
    fresh = reference.render(build_parser())
    current = GENERATED.read_text(encoding="utf-8") if GENERATED.exists() else ""
    assert current == fresh, f"{GENERATED.relative_to(ROOT)} is stale: run `python -m edge_rt.cli.reference` (or `make docs`)"


def test_the_cli_reference_names_every_command() -> None:
    text = GENERATED.read_text(encoding="utf-8")
    for path, _, _ in reference.walk(build_parser()):
        assert f"{' '.join(path)} {{ #{'-'.join(path)} }}" in text, path


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    """Broken links, pages missing from the navigation and bad anchors are warnings, and --strict fails on them."""
    pytest.importorskip("mkdocs", reason="the docs extra: pip install -e '.[docs]'")
    pytest.importorskip("material", reason="the docs extra: pip install -e '.[docs]'")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
        env={**__import__("os").environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / "site" / "index.html").is_file()
    assert (tmp_path / "site" / "reference" / "client.html").read_text(encoding="utf-8").count("Subscriber") > 3


def test_no_absolute_paths_of_a_machine_in_the_docs() -> None:
    bad = re.compile(r"(/work/|/home/\w|/root/|file:///)")  # (/tmp/... in commands is a path on the box, e.g. Argus)
    hits = [
        f"{p.relative_to(ROOT)}:{n}"
        for p in doc_files()
        for n, line in enumerate(p.read_text().splitlines(), 1)
        if bad.search(line)
    ]
    assert not hits, hits


def test_readme_links_point_at_files_that_exist() -> None:
    for page in (ROOT / "README.md", ROOT / "deploy" / "README.md"):
        for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (page.parent / target).exists(), f"{page.relative_to(ROOT)}: {target}"


def test_readme_is_a_front_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines: move reference text into docs/"


# Python the docs show: every `from edge_rt... import ...`, `import edge_rt...`, `python -m edge_rt...` and
# mkdocstrings' `::: edge_rt...` must still import after modules move (edge_rt's rooms, issue 30).
_FROM = re.compile(r"^\s*(?:>>>\s*)?from (edge_rt[\w.]*) import ([\w, ]+)", re.M)
_IMPORT = re.compile(r"^\s*(?:>>>\s*)?import (edge_rt[\w.]*)", re.M)
_MODULE = re.compile(r"(?:^:::|python -m) (edge_rt[\w.]*)", re.M)


def doc_imports() -> list[tuple[str, str | None, str]]:
    """(module, name or None, where) for each import the docs and docstrings that mkdocs renders show."""
    out: list[tuple[str, str | None, str]] = []
    for path in [*doc_files(), ROOT / "Makefile", ROOT / "mkdocs.yml"]:
        text, where = path.read_text(), str(path.relative_to(ROOT))
        out += [(m.group(1), n.strip(), where) for m in _FROM.finditer(text) for n in m.group(2).split(",") if n.strip()]
        out += [(m.group(1), None, where) for m in _IMPORT.finditer(text)]
        out += [(m.group(1), None, where) for m in _MODULE.finditer(text)]
    return out


def test_the_docs_show_edge_rt_imports_at_all() -> None:
    names = {(module, name) for module, name, _ in doc_imports()}
    assert {("edge_rt", "Subscriber"), ("edge_rt", "EndOfStream"), ("edge_rt", "HealthMessage"), ("edge_rt", "EventMessage")} <= names
    assert ("edge_rt.client", None) in names, "the client's API page (mkdocstrings)"


@pytest.mark.parametrize(("module", "name", "where"), sorted(set(doc_imports()), key=str))
def test_every_import_the_docs_show_works(module: str, name: str | None, where: str) -> None:
    import importlib

    mod = importlib.import_module(module)
    if name is not None:
        assert hasattr(mod, name), f"{where}: `from {module} import {name}` fails: {module} has no {name}"


def test_the_package_root_offers_what_the_client_docs_use() -> None:
    import edge_rt

    for name in edge_rt.__all__:
        assert getattr(edge_rt, name) is not None, name
