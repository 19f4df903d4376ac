"""The rooms of the source tree (the packages under the one ``accord`` namespace) and their files.

Each room is a top-level folder reached as ``accord.<room>`` through the symbolic links in
``accord/``; the modules that sit in ``accord/`` itself (the error tree, the configuration reader,
the command-line dispatcher) are rooms of their own. The architecture tests read the source here.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("query", "policies", "protos", "rpc", "node", "coordinator", "demo")
"""Rooms that are folders, from the bottom of the import order to the top."""


def top_modules() -> list[Path]:
    """The modules in ``accord/`` itself (real files; the folders there are links to the rooms)."""
    return sorted(p for p in (ROOT / "accord").glob("*.py") if not p.is_symlink())


def room_of(path: Path) -> str:
    """``query`` for ``query/sql.py``; ``errors`` for ``accord/errors.py``."""
    rel = path.relative_to(ROOT)
    return rel.stem if rel.parts[0] == "accord" else rel.parts[0]


def sources(room: str | None = None) -> list[Path]:
    """Hand-written modules (generated ``*_pb2*`` excluded) of ``room``, or of every room."""
    out: list[Path] = []
    for folder in FOLDERS if room is None else (room,) if room in FOLDERS else ():
        out += sorted(p for p in (ROOT / folder).rglob("*.py") if "_pb2" not in p.name)
    out += [p for p in top_modules() if room is None or room_of(p) == room]
    return out


def module_name(path: Path) -> str:
    """The import name of a source file: ``query/sql.py`` -> ``accord.query.sql``."""
    rel = path.relative_to(ROOT)
    parts = list(rel.with_suffix("").parts)
    if parts[0] != "accord":
        parts.insert(0, "accord")
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)
