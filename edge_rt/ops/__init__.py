"""Operations: what keeps a box observable and well-behaved as a service.

`health` (the `$health` board: state changes, heartbeats), `metrics` (latency percentiles, the stats
line), `prometheus` (the scrape endpoint), `systemd` (sd_notify and the watchdog), `memory` (the
malloc arena cap), `progress` (progress lines) and `redact` (camera passwords out of every log line).

May import: errors, wire/ (the health messages' schema). Never a stage: what it needs of one (a
capture state change, the tracker's counts) it names as a Protocol. tests/test_imports.py holds the rule.
"""
