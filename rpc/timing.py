"""Server-side timings, sent as gRPC trailing metadata (never in the ``.proto`` messages).

Each server measures its own handler time with a monotonic clock and adds it to the call's
trailing metadata, so a caller can tell its own overhead from the server's work:

- a node's ``Answer`` carries :data:`NODE_SECONDS`: the node's time in its handler, from receiving
  the request to handing the reply back to gRPC (identity, parsing, execution, noise, storing);
- the coordinator's ``Submit`` carries :data:`COORDINATOR_SECONDS` (its own handler time,
  fan-out included) and :data:`SLOWEST_NODE_SECONDS` (the largest :data:`NODE_SECONDS` among the
  nodes that answered; absent when none did).

``end-to-end latency - SLOWEST_NODE_SECONDS`` is then the coordination overhead of one query: what
the federation adds on top of the slowest node's own work (transport, TLS, the coordinator's
parsing, validation, fan-out and combination, the client). The values are decimal seconds; only
successful calls carry them.

Every one of them is **off by default** and sent only when the operator opts in (a node's
``[timing] report_node_seconds``, the coordinator's ``report_coordinator_seconds`` and
``report_node_timings``): a node's handler time depends on its data (unless it pads its answers,
and even then it tells how near its budget it ran), and the coordinator's is about the slowest
node's plus a few milliseconds. Benchmarks turn them on; analysts do not get them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = [
    "COORDINATOR_SECONDS",
    "NODE_SECONDS",
    "SLOWEST_NODE_SECONDS",
    "ServerTiming",
    "format_seconds",
    "seconds_from_metadata",
]

NODE_SECONDS = "accord-node-seconds"
COORDINATOR_SECONDS = "accord-coordinator-seconds"
SLOWEST_NODE_SECONDS = "accord-slowest-node-seconds"


@dataclass(frozen=True)
class ServerTiming:
    """What the coordinator reported about one ``Submit`` (``None``: not reported)."""

    coordinator_seconds: float | None = None
    slowest_node_seconds: float | None = None


def format_seconds(seconds: float) -> str:
    """A metadata value for ``seconds`` (microsecond resolution)."""
    return f"{max(seconds, 0.0):.6f}"


def seconds_from_metadata(metadata: Iterable[Any] | None, key: str) -> float | None:
    """The value of ``key`` in gRPC ``metadata`` (pairs or ``_Metadatum``), or ``None`` when it is
    missing or not a finite, non-negative number (a peer's metadata is never trusted blindly)."""
    for item in metadata or ():
        k, v = item[0], item[1]
        if k != key:
            continue
        try:
            value = float(v.decode("ascii") if isinstance(v, bytes) else v)
        except (ValueError, UnicodeDecodeError):
            return None
        return value if math.isfinite(value) and value >= 0 else None
    return None
