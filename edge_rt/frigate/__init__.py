"""`edge-rt frigate`: a server for Frigate's `zmq` detector, so Frigate's cameras run on edge_rt's engines.

Frigate 0.17+ (`detectors: {NAME: {type: zmq, endpoint: ...}}`, `frigate/detectors/plugins/zmq_ipc.py`)
is the client: a REQ socket per detector process that handshakes for its model, then sends one tensor
per request and waits 200 ms for 20 rows of boxes. One module per responsibility:

- `protocol`: the frames on the wire, what a request may be, the answer's rows;
- `store`: the handshake, the served model and the folder received models are saved in;
- `detector`: one model as Frigate uses it, through edge_rt's preprocess, engine and postprocess;
- `server`: the ROUTER loop, batching, load shedding, counters.

May import: errors, wire/, ops/, detect/, engines/, runner. tests/test_imports.py holds the rule.
"""

from __future__ import annotations

from .detector import DetectSettings, ModelRunner
from .protocol import ROWS, BadRequest, ModelRequest, ModelUpload, TensorRequest, parse_request, to_rows
from .server import DEFAULT_ENDPOINT, FrigateServer, ServerSettings, ServerStats, ServerThread, SocketSettings
from .store import ModelHost, StoreSettings, safe_name

__all__ = [
    "DEFAULT_ENDPOINT",
    "ROWS",
    "BadRequest",
    "DetectSettings",
    "FrigateServer",
    "ModelHost",
    "ModelRequest",
    "ModelRunner",
    "ModelUpload",
    "ServerSettings",
    "ServerStats",
    "ServerThread",
    "SocketSettings",
    "StoreSettings",
    "TensorRequest",
    "parse_request",
    "safe_name",
    "to_rows",
]
