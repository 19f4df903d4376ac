"""An auditor's copy of one node's audit log: a plain directory, written by ``accord audit fetch``
and read offline by ``verify``, ``check`` and ``report``.

```
DIR/
  log.json                      {"node": ..., "origin": ..., "key": <the node's checkpoint vkey>}
  entries.jsonl                 entry i on line i: its canonical bytes, then "\\n"
  hashes.bin                    the Merkle leaf hash of entry i at bytes [32 i, 32 i + 32), written
                                by fetch once the entries were checked against a signed checkpoint
  checkpoints/<size>-<root>.note   every checkpoint fetched, a signed note with its cosignatures
                                (<root>: the first 16 hex digits of its root hash)
  evidence/                     what fetch refused: a checkpoint that contradicts one held (a
                                fork or a rollback), entries that did not match their checkpoint
  committed.json                how long entries.jsonl and hashes.bin were after the last complete
                                fetch (written atomically once both are on disk)
```

Entries and hashes are only ever appended (and fsynced) after they were checked, then
``committed.json`` records their new lengths; a fetch that fails leaves the directory as it
was, plus its evidence, and one interrupted half-way (the process killed between the two
files) is cut back to the last commit by the next fetch (:meth:`AuditDir.recover`).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from accord.errors import ConfigError
from accord.policies.merkle import HASH_SIZE

__all__ = ["AuditDir", "LogInfo"]


@dataclass(frozen=True)
class LogInfo:
    node: str
    origin: str
    key: str


class AuditDir:
    """The directory ``path`` (see the module docstring)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.entries_path = self.path / "entries.jsonl"
        self.hashes_path = self.path / "hashes.bin"
        self.checkpoints_path = self.path / "checkpoints"
        self.evidence_path = self.path / "evidence"

    def require(self) -> None:
        if not (self.path / "log.json").is_file():
            raise ConfigError(
                f"{self.path} is not an audit directory (no log.json); fetch a node's log into it first "
                "with `accord audit fetch`"
            )

    def info(self) -> LogInfo:
        self.require()
        try:
            data = json.loads((self.path / "log.json").read_text(encoding="utf-8"))
            return LogInfo(str(data["node"]), str(data["origin"]), str(data["key"]))
        except (ValueError, KeyError, TypeError):
            raise ConfigError(f"{self.path / 'log.json'} is damaged; fetch into a new directory") from None

    def create(self, info: LogInfo) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        self.checkpoints_path.mkdir(exist_ok=True)
        text = json.dumps(
            {"node": info.node, "origin": info.origin, "key": info.key}, indent=2, sort_keys=True
        )
        _write_new(self.path / "log.json", text.encode() + b"\n")
        self.entries_path.touch()
        self.hashes_path.touch()

    def entry_count(self) -> int:
        """How many entries the copy holds (by its hashes: entries are appended with them)."""
        return (self.hashes_path.stat().st_size // HASH_SIZE) if self.hashes_path.exists() else 0

    def lines(self) -> Iterator[bytes]:
        """The raw lines of entries.jsonl, each with its newline (the last may lack it)."""
        if not self.entries_path.exists():
            return
        with self.entries_path.open("rb") as f:
            yield from f

    def hashes(self) -> bytes:
        return self.hashes_path.read_bytes() if self.hashes_path.exists() else b""

    def append(self, entries: list[bytes], leaves: list[bytes]) -> None:
        """Append checked ``entries`` and their leaf hashes, durably, then commit their lengths."""
        for path, data in (
            (self.entries_path, b"".join(e + b"\n" for e in entries)),
            (self.hashes_path, b"".join(leaves)),
        ):
            with path.open("ab") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        sizes = {
            "entries_bytes": self.entries_path.stat().st_size,
            "hashes_bytes": self.hashes_path.stat().st_size,
        }
        _write_replace(self.path / "committed.json", json.dumps(sizes, sort_keys=True).encode() + b"\n")

    def recover(self) -> None:
        """Cut entries.jsonl and hashes.bin back to their committed lengths (what an interrupted
        fetch appended past them was never committed)."""
        try:
            sizes = json.loads((self.path / "committed.json").read_text(encoding="utf-8"))
            committed = {
                self.entries_path: int(sizes["entries_bytes"]),
                self.hashes_path: int(sizes["hashes_bytes"]),
            }
        except FileNotFoundError:
            committed = {self.entries_path: 0, self.hashes_path: 0}
        except (ValueError, KeyError, TypeError):
            raise ConfigError(
                f"{self.path / 'committed.json'} is damaged; fetch into a new directory"
            ) from None
        for path, size in committed.items():
            if path.exists() and path.stat().st_size > size:
                with path.open("r+b") as f:
                    f.truncate(size)
                    os.fsync(f.fileno())

    def checkpoint_files(self) -> list[Path]:
        if not self.checkpoints_path.is_dir():
            return []
        return sorted(self.checkpoints_path.glob("*.note"))

    def save_checkpoint(self, size: int, root: bytes, note: str) -> Path:
        """Keep ``note`` (replacing the copy of the same checkpoint: it may carry more cosignatures)."""
        self.checkpoints_path.mkdir(parents=True, exist_ok=True)
        path = self.checkpoints_path / f"{size:012d}-{root.hex()[:16]}.note"
        _write_replace(path, note.encode("utf-8"))
        return path

    def save_evidence(self, name: str, data: bytes) -> Path:
        self.evidence_path.mkdir(parents=True, exist_ok=True)
        path = self.evidence_path / name
        _write_replace(path, data)
        return path

    def evidence_files(self) -> list[Path]:
        return sorted(self.evidence_path.iterdir()) if self.evidence_path.is_dir() else []


def _write_replace(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _write_new(path: Path, data: bytes) -> None:
    if path.exists():
        raise ConfigError(f"{path} exists already; fetch into a new directory")
    _write_replace(path, data)
