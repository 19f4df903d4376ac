"""What a node remembers (see :mod:`accord.node.state.base`) and how its config picks a backend."""

from __future__ import annotations

from accord.node.config import StateConfig
from accord.node.state.base import Answer, NodeState, StateInUse
from accord.node.state.memory import MemoryState
from accord.node.state.sqlite import SqliteState

__all__ = ["Answer", "MemoryState", "NodeState", "SqliteState", "StateInUse", "open_state"]


def open_state(config: StateConfig, node: str) -> NodeState:
    """The state backend ``config`` names, opened for node ``node``."""
    if config.backend == "memory":
        return MemoryState()
    assert config.path is not None, "StateConfig checks that sqlite has a path"
    return SqliteState(config.path, node)
