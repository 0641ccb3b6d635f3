"""The CLI reference page, written from the argparse parser itself, so `--help` and the docs agree.

    python -m edge_rt.cli.reference            # writes docs/reference/cli.md (`make docs` runs it)
    python -m edge_rt.cli.reference --check    # exit 1 when the page differs from a fresh generation

tests/test_docs.py fails when the page is stale or when an option has no help text.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

PAGE = Path("docs/reference/cli.md")
WIDTH = 100  # usage lines are wrapped at a fixed width, whatever the terminal, so the page is reproducible

HEADER = """\
# Command-line reference

<!-- Generated from the parser in edge_rt/cli/ by `python -m edge_rt.cli.reference` (`make docs`). Do not edit. -->

Every `edge-rt` command with every option, written from the same parser that prints `--help`, so
the two cannot disagree. A test fails when this page is stale or when an option has no help text;
`make docs` writes it again.
"""


def walk(
    parser: argparse.ArgumentParser, path: tuple[str, ...] = ("edge-rt",), summary: str = ""
) -> Iterator[tuple[tuple[str, ...], argparse.ArgumentParser, str]]:
    """Every parser under `parser`, depth first, with its command path and its one-line help."""
    yield path, parser, summary
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            for name, sub in action.choices.items():
                yield from walk(sub, (*path, name), helps.get(name, ""))


def documented(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """The options and positionals `--help` shows, in its order, without -h and the subcommand list."""
    return [
        a
        for a in parser._actions
        if a.help is not argparse.SUPPRESS and not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
    ]


def missing_help(parser: argparse.ArgumentParser) -> list[str]:
    """'edge-rt bench engine --iters' for every option or positional that has no help text."""
    out = []
    for path, p, _ in walk(parser):
        for action in documented(p):
            if not (action.help or "").strip():
                out.append(" ".join(path) + " " + (action.option_strings[-1] if action.option_strings else action.dest))
    return out


def _metavar(action: argparse.Action) -> str:
    if action.nargs == 0:
        return ""
    if action.metavar is not None:
        name = action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    elif action.choices is not None:
        name = "{" + ",".join(str(c) for c in action.choices) + "}"
    else:
        name = action.dest.upper() if action.option_strings else action.dest
    if action.nargs == "?":
        return f"[{name}]"
    if action.nargs == "*":
        return f"[{name} ...]"
    if action.nargs == "+":
        return f"{name} [{name} ...]"
    if isinstance(action.nargs, int):
        return " ".join([name] * action.nargs)
    return name


def _cell(text: str) -> str:
    """Help text as a table cell: Markdown's special characters taken literally, backticks kept as code."""
    parts = text.replace("\n", " ").split("`")
    for i in range(0, len(parts), 2):  # outside backticks
        part = parts[i].replace("\\", "\\\\")
        for ch in "*_[]{}":
            part = part.replace(ch, "\\" + ch)
        parts[i] = part.replace("<", "&lt;").replace(">", "&gt;")
    if len(parts) % 2 == 0:  # an odd number of backticks: take the last one literally
        parts[-2] = parts[-2] + "\\`" + parts.pop()
    return "`".join(parts).replace("|", "\\|")


def _anchor(path: tuple[str, ...]) -> str:
    return "-".join(path)


def _section(path: tuple[str, ...], parser: argparse.ArgumentParser, summary: str) -> str:
    formatter = argparse.HelpFormatter(prog=parser.prog, width=WIDTH)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups)
    usage = formatter.format_help().strip()
    depth = min(len(path) + 1, 4)
    lines = [f"{'#' * depth} {' '.join(path)} {{ #{_anchor(path)} }}", ""]
    if summary and summary != parser.description:
        lines += [_cell(summary).replace("\\|", "|") + ".", ""]
    if parser.description:
        if isinstance(parser.formatter_class, type) and issubclass(parser.formatter_class, argparse.RawDescriptionHelpFormatter):
            lines += ["```text", parser.description.strip(), "```", ""]
        else:
            lines += [_cell(parser.description).replace("\\|", "|"), ""]
    lines += ["```text", usage, "```", ""]
    actions = documented(parser)
    if actions:
        lines += ["| option | meaning |", "|---|---|"]
        for action in actions:
            helper = argparse.HelpFormatter(prog=parser.prog, width=WIDTH)
            text = helper._expand_help(action) if action.help else ""
            names = ", ".join(f"`{o}`" for o in action.option_strings) if action.option_strings else f"`{_metavar(action)}`"
            metavar = _metavar(action) if action.option_strings else ""
            invocation = names + (f" `{metavar}`" if metavar else "")
            if action.required and action.option_strings:
                text += " (required)"
            lines.append(f"| {invocation} | {_cell(text)} |")
        lines.append("")
    return "\n".join(lines)


def render(parser: argparse.ArgumentParser | None = None) -> str:
    """The whole page as Markdown."""
    if parser is None:
        from . import build_parser

        parser = build_parser()
    entries = list(walk(parser))
    index = ["| command | what it does |", "|---|---|"]
    for path, _, summary in entries[1:]:
        index.append(f"| [`{' '.join(path)}`](#{_anchor(path)}) | {_cell(summary)} |")
    sections = [_section(path, p, summary) for path, p, summary in entries]
    return "\n".join([HEADER, *index, "", *sections]).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m edge_rt.cli.reference", description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=PAGE, help=f"the page to write (default {PAGE})")
    ap.add_argument("--check", action="store_true", help="write nothing; exit 1 when the page differs from a fresh one")
    args = ap.parse_args(argv)
    text = render()
    if args.check:
        current = args.output.read_text(encoding="utf-8") if args.output.exists() else ""
        if current != text:
            print(f"{args.output} is stale: run `python -m edge_rt.cli.reference` (or `make docs`)", file=sys.stderr)
            return 1
        return 0
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
