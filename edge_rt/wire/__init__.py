"""The wire: what leaves the box and how it is read back.

`schema` (names, versions, encode/decode; the JSON Schemas in edge_rt/schemas/), `publish` (the
ZeroMQ publisher), `broker` (the fleet's XSUB/XPUB proxy), `security` (CURVE keys, allow-list, the
exposure check) and `received` (the typed messages a subscriber gets). The subscriber itself,
`edge_rt.client`, stays at the top where users import it.

May import: errors only. Everything else builds on it. tests/test_imports.py holds the rule.
"""
