"""Objects instead of boxes: a tracker per source, zones and lines, and the events they raise.

The stage sits between postprocess and publish; see stage.py for how the pieces meet.

May import: errors, ops/, camera/, detect/. tests/test_imports.py holds the rule.
"""
