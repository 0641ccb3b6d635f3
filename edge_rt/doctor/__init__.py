"""`edge-rt doctor`: what this box can run edge_rt on, and the one line that fixes what it cannot.

May import: errors, engines/, bench/ (the host facts). A tool: the runtime never imports it.
"""

from .checks import FAIL, INFO, OK, WARN, Check, healthy, run_checks

__all__ = ["FAIL", "INFO", "OK", "WARN", "Check", "healthy", "run_checks"]
