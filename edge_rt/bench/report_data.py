"""What `bench report` hands its Markdown renderer: the report and its sections, with their statuses.

Apart from report.py, which runs the sections and imports the renderer, so that report_md.py reads these
without importing report.py back.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

SCHEMA = "edge_rt.bench_report"
SCHEMA_VERSION = 1
OK, SKIPPED, FAILED, ERROR = "ok", "skipped", "failed", "error"


@dataclass(frozen=True)
class Section:
    name: str
    status: str  # ok | skipped | failed | error
    seconds: float
    reason: str = ""  # why skipped, what failed, or the error's one line
    result: Any = None  # JSON-ready figures
    headline: str = ""  # the progress line's summary


@dataclass(frozen=True)
class Report:
    created: str  # ISO 8601, local time with its offset
    hostname: str
    settings: dict[str, Any]
    model: dict[str, Any]
    host: dict[str, Any]  # bench/hardware.py's facts, read right after the benchmarks (GPU clocks then)
    versions: dict[str, str]
    sections: tuple[Section, ...]
    wall_s: float
    schema: str = SCHEMA
    version: int = SCHEMA_VERSION

    @property
    def problems(self) -> tuple[str, ...]:
        """"section: why" for each section that failed (the doctor found the box broken) or raised."""
        return tuple(f"{s.name}: {s.reason}" for s in self.sections if s.status in (FAILED, ERROR))

    @property
    def exit_code(self) -> int:
        """1 when the doctor found the box broken or a section raised; skipped sections are fine."""
        return 1 if self.problems else 0

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["sections"] = {s.name: {k: v for k, v in asdict(s).items() if k != "name"} for s in self.sections}
        out["skipped"] = {s.name: s.reason for s in self.sections if s.status == SKIPPED}
        out["problems"] = list(self.problems)
        out["exit_code"] = self.exit_code
        return out


__all__ = ["ERROR", "FAILED", "OK", "SCHEMA", "SCHEMA_VERSION", "SKIPPED", "Report", "Section"]
