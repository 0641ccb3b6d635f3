"""The running pipeline's moving parts; edge_rt/pipeline.py wires them.

`inference` (engine calls with their watchdog, one or several in flight), `loops` (the prepare and
infer threads and the one-item queues between them), `duties` (what the publishing thread does
between frames: `$health` changes and heartbeats, the engine watchdog, the drain deadline, the last
words), `outbox` (sequence numbers, topics and the sink: a frame's detections, its events, the end of
each stream), `messages` (the message dicts themselves, from stage outputs) and `timing` (a frame's
stage stamps as latency and timestamps).

May import: errors, wire/, ops/, camera/, detect/, engines/, tracking/, recording/.
tests/test_imports.py holds the rule.
"""
