"""What a node remembers (see :mod:`accord.node.state.base`) and how its config picks a backend."""

from __future__ import annotations

from accord.node.config import StateConfig
from accord.node.state.base import Answer, LedgerLine, NodeState, StateInUse, Usage
from accord.node.state.memory import MemoryState
from accord.node.state.sqlite import SqliteState, StateReader

__all__ = [
    "Answer",
    "LedgerLine",
    "MemoryState",
    "NodeState",
    "SqliteState",
    "StateInUse",
    "StateReader",
    "Usage",
    "open_state",
]


def open_state(config: StateConfig, node: str) -> NodeState:
    """The state backend ``config`` names, opened for node ``node``."""
    if config.backend == "memory":
        return MemoryState(node)
    assert config.path is not None, "StateConfig checks that sqlite has a path"
    return SqliteState(config.path, node)
