"""Where the tests' own data lives (inside the repository: a fresh clone needs nothing beside it)."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
CENSUS = DATA / "census"
MERKLE_VECTORS = DATA / "merkle"
