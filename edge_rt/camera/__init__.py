"""Cameras: where frames come from.

`sources` parses a source (RTSP, file, device, GStreamer, `synthetic://`) into a spec and defines the
Frame; `slot` is the one-slot "latest frame" box; `capture` runs one thread per source as a state machine; `readers` opens
OpenCV (or the synthetic reader); `reconnect` is the back-off schedule; `synthetic` renders test cameras.

May import: errors, ops/ (memory, redact). Never wire/: a camera knows nothing of the bus (the health
board in ops/ reads its state changes through a protocol). tests/test_imports.py holds the rule.
"""
