"""The node config's ``[audit]`` table: the key that signs the node's checkpoints and cosigns its
peers', how often checkpoints are issued, and the other nodes this node witnesses.

```toml
[audit]                           # optional: signing the audit log (see the README, "Auditing")
key = "audit/county.key"          # the node's Ed25519 signing key (`accord node audit-key`)
checkpoint_seconds = 60           # optional (default 60): sign a checkpoint this often if the log grew
witness_seconds = 60              # optional (default 60): witness the peers this often

[[audit.witness]]                 # optional, repeatable: a node this node witnesses
name = "district"                 # its certificate name
address = "district.example:50051"
key = "district.node.accord/audit+1a2b3c4d+AU..."   # its checkpoint key (its operator publishes it)
```

Without ``key`` the node still keeps its log (every decision, in the same transaction), but
signs no checkpoint and witnesses nobody: auditors can then read it but not hold it to anything,
so production nodes set it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.config import Table, relative_path
from accord.policies.note import NoteError, NoteVerifier

__all__ = ["AuditConfig", "WitnessPeer", "audit_config", "audit_origin", "audit_table", "witness_name"]


def audit_origin(node: str) -> str:
    """The origin line of node ``node``'s checkpoints, and the name of its checkpoint key."""
    return f"{node}.node.accord/audit"


def witness_name(node: str) -> str:
    """The name node ``node`` cosigns as (its cosignature key)."""
    return f"{node}.node.accord/witness"


@dataclass(frozen=True)
class WitnessPeer:
    """A node this node witnesses: its name, where it listens and its checkpoint key (a vkey)."""

    name: str
    address: str
    key: str

    def verifier(self) -> NoteVerifier:
        return NoteVerifier.from_vkey(self.key)


@dataclass(frozen=True)
class AuditConfig:
    key: Path | None = None
    checkpoint_seconds: float = 60.0
    witness_seconds: float = 60.0
    witness: tuple[WitnessPeer, ...] = ()


def _seconds(t: Table, key: str, default: float) -> float:
    value = float(t.get(key, float, default))
    if not 0.05 <= value <= 86_400:
        raise t.error(key, "must be between 0.05 and 86400 seconds; 60 is a good start")
    return value


def audit_config(t: Table, node: str) -> AuditConfig:
    t.check_keys({"key", "checkpoint_seconds", "witness_seconds", "witness"})
    peers: list[WitnessPeer] = []
    raw = t.get("witness", list, [])
    for i, item in enumerate(raw):
        p = Table(t.file, f"{t.key('witness')}[{i}]", item)
        p.check_keys({"name", "address", "key"})
        peer = WitnessPeer(
            p.name("name"), p.address("address", listen=False), p.get("key", str, required=True)
        )
        if peer.name == node:
            raise p.error("name", "a node does not witness itself; list the other nodes")
        if peer.name in {q.name for q in peers}:
            raise p.error("name", f"{peer.name!r} is listed twice; remove one")
        try:
            verifier = peer.verifier()
        except NoteError as err:
            raise p.error(
                "key", f"{err}; paste the key `accord node audit-key` printed on {peer.name}"
            ) from None
        if verifier.name != audit_origin(peer.name):
            raise p.error("key", f"is the key of {verifier.name!r}, not of {audit_origin(peer.name)!r}")
        peers.append(peer)
    return AuditConfig(
        key=t.path("key") if t.has("key") else None,
        checkpoint_seconds=_seconds(t, "checkpoint_seconds", 60.0),
        witness_seconds=_seconds(t, "witness_seconds", 60.0),
        witness=tuple(peers),
    )


def audit_table(config: AuditConfig, folder: Path) -> dict[str, Any]:
    """``config`` as the TOML table :func:`audit_config` reads back."""
    out: dict[str, Any] = {
        "checkpoint_seconds": config.checkpoint_seconds,
        "witness_seconds": config.witness_seconds,
    }
    if config.key is not None:
        out["key"] = relative_path(config.key, folder)
    if config.witness:
        out["witness"] = [{"name": p.name, "address": p.address, "key": p.key} for p in config.witness]
    return out
