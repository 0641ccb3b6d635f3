"""Event clips: `edge-rt run --record DIR` (config `record:`) keeps the camera's own video around events.

May import: errors, ops/, camera/, detect/, tracking/. tests/test_imports.py holds the rule.
"""

from .recorder import Recorder
from .settings import RecordConfig, SourceRecord, parse_record, source_records

__all__ = ["RecordConfig", "Recorder", "SourceRecord", "parse_record", "source_records"]
