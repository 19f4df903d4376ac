"""Public metadata of a dataset: what a node declares and what analysts may see.

This is the only description of data that crosses the wire. Bounds and category lists are public
by declaration (the operator writes them in the node config); they are never read from the data.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from fractions import Fraction

from accord.errors import ConfigError
from accord.query.model import Literal

__all__ = [
    "DEFAULT_MAX_ROWS",
    "MAX_ROWS_LIMIT",
    "ColumnSpec",
    "ColumnType",
    "DatasetSchema",
    "SecureAggregation",
]

DEFAULT_MAX_ROWS = 10**9
"""The most rows a dataset is declared to hold when its config does not say (``max_rows``)."""
MAX_ROWS_LIMIT = 2**62
"""The largest ``max_rows`` that may be declared (a count must stay within 64-bit integers)."""


class ColumnType(enum.Enum):
    INTEGER = "integer"
    FLOAT = "float"
    BOOLEAN = "boolean"
    STRING = "string"

    @property
    def numeric(self) -> bool:
        return self in (ColumnType.INTEGER, ColumnType.FLOAT)


@dataclass(frozen=True)
class ColumnSpec:
    """One column. ``lower``/``upper`` bound numeric columns (needed to SUM/AVG them);
    ``categories`` is the public list of values a column may be grouped by."""

    name: str
    type: ColumnType
    lower: int | float | None = None
    upper: int | float | None = None
    categories: tuple[Literal, ...] | None = None
    description: str = ""

    def __post_init__(self) -> None:
        where = f"column {self.name!r}"
        if (self.lower is None) != (self.upper is None):
            raise ConfigError(f"{where}: give both lower and upper bounds, or neither")
        if self.lower is not None:
            if not self.type.numeric:
                raise ConfigError(f"{where}: bounds only apply to integer or float columns")
            assert self.upper is not None
            if not self.lower <= self.upper:
                raise ConfigError(f"{where}: lower bound {self.lower} is above upper bound {self.upper}")
            if self.type is ColumnType.INTEGER and not (
                isinstance(self.lower, int) and isinstance(self.upper, int)
            ):
                raise ConfigError(f"{where}: an integer column needs integer bounds")
        if self.categories is not None:
            if len(self.categories) == 0:
                raise ConfigError(f"{where}: categories is empty; list the public values or remove the key")
            if len(set(self.categories)) != len(self.categories):
                raise ConfigError(f"{where}: categories lists a value twice")

    @property
    def bounded(self) -> bool:
        return self.lower is not None


_DELTA = re.compile(r"(?:0?\.[0-9]{1,30}|[0-9](?:\.[0-9]{1,20})?[eE]-[0-9]{1,2}|1/[0-9]{1,30})")
MAX_DELTA = Fraction(1, 10**4)


@dataclass(frozen=True)
class SecureAggregation:
    """A dataset answered by secure aggregation with distributed noise (public, in the catalog):
    each of its ``holders``' noise share is calibrated so that any ``honest_nodes`` of them
    together add the noise of the whole guarantee, and each query is (epsilon, ``delta``)-DP."""

    honest_nodes: int
    delta: str
    holders: tuple[str, ...] = ()
    """Every node that holds the dataset, in name order: the participants of every query, exactly
    (a node takes part only with these, so the honest holders are never left out)."""

    def __post_init__(self) -> None:
        if not 1 <= self.honest_nodes <= 64:
            raise ConfigError("honest_nodes must be from 1 to 64 (how many holders are assumed honest)")
        if len(self.holders) < 2 or list(self.holders) != sorted(set(self.holders)):
            raise ConfigError(
                "holders must list every node holding the dataset, at least two, each once (secure "
                "aggregation needs two or more holders; a dataset one node holds is answered with pure "
                "epsilon)"
            )
        if self.honest_nodes > len(self.holders):
            raise ConfigError(
                f"honest_nodes ({self.honest_nodes}) is more than the dataset's {len(self.holders)} holders"
            )
        if not _DELTA.fullmatch(self.delta):
            raise ConfigError(
                f'delta {self.delta[:40]!r} is not a decimal such as "1e-9" or a fraction such as '
                '"1/1000000000"'
            )
        if not 0 < self.delta_value <= MAX_DELTA:
            raise ConfigError(f"delta must be above 0 and at most {MAX_DELTA}; 1e-9 or smaller is usual")

    @property
    def delta_value(self) -> Fraction:
        return Fraction(self.delta)


@dataclass(frozen=True)
class DatasetSchema:
    """A dataset as analysts see it. ``privacy_unit`` is the person-identifier column; one person
    contributes at most ``max_rows_per_person`` rows to any answer (extra rows are dropped).
    ``max_rows`` is the most rows the dataset may hold (public, declared; the node refuses a file
    with more): with the bounds it decides, before anything runs, whether a sum could leave the
    range the engine and the noise work in (:func:`accord.query.sql.validate`)."""

    name: str
    columns: tuple[ColumnSpec, ...]
    privacy_unit: str
    max_rows_per_person: int
    description: str = ""
    max_rows: int = DEFAULT_MAX_ROWS
    secure: SecureAggregation | None = None
    """Secure aggregation for this dataset (None: each node adds its own noise)."""

    def __post_init__(self) -> None:
        where = f"dataset {self.name!r}"
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ConfigError(f"{where}: a column is declared twice")
        if self.privacy_unit not in names:
            raise ConfigError(
                f"{where}: privacy_unit {self.privacy_unit!r} is not one of its columns; "
                "declare the person-identifier column"
            )
        if self.max_rows_per_person < 1:
            raise ConfigError(f"{where}: max_rows_per_person must be at least 1")
        if not 1 <= self.max_rows <= MAX_ROWS_LIMIT:
            raise ConfigError(f"{where}: max_rows must be from 1 to {MAX_ROWS_LIMIT}")

    def column(self, name: str) -> ColumnSpec | None:
        for c in self.columns:
            if c.name == name:
                return c
        return None

    def view(self, columns: Iterable[str]) -> DatasetSchema:
        """This dataset as someone allowed only ``columns`` sees it: the other columns are gone, as
        if never declared, so a query naming one is refused exactly like a query naming a column
        that does not exist. The privacy unit stays (it can never be used in a query anyway)."""
        if isinstance(columns, str):
            raise TypeError("view() takes the names of the columns, not one string")
        keep = set(columns) | {self.privacy_unit}
        unknown = keep - {c.name for c in self.columns}
        if unknown:
            raise ConfigError(f"dataset {self.name!r} has no column(s) {', '.join(sorted(unknown))} to show")
        return replace(self, columns=tuple(c for c in self.columns if c.name in keep))
