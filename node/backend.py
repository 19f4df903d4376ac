"""Where a node computes exact aggregates: the execution-backend interface.

The answer path (:mod:`accord.node.service`) hands a validated query and its dataset's schema to an
:class:`ExecutionBackend` and gets back the exact value of every measurement (:mod:`accord.node.plan`)
for every public group, before any noise. Everything engine-specific (SQL dialect, file loading,
load-time checks, contribution bounding) lives inside a backend: today DuckDB
(:mod:`accord.node.duckdb`); a PostgreSQL push-down backend implements the same interface.

Every backend returns exactly the public groups of :func:`accord.node.plan.group_keys`, in that
order (:func:`align` does this for backends that get rows back from SQL):

* groups present in the data but not public (an undeclared category, a NULL key) are dropped:
  releasing them would reveal that such values exist;
* public groups absent from the data get 0 for every measurement: leaving them out would reveal
  that they are empty;
* ``SUM`` of an empty group is 0 (``int`` for integer columns, ``float`` for float columns).
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from dataclasses import dataclass

from accord.node.plan import MeasureKind, Measurement, group_keys
from accord.query.model import Literal, Query
from accord.query.schema import ColumnType, DatasetSchema

__all__ = ["ExactAnswer", "ExecutionBackend", "PersonFilter", "align"]


@dataclass(frozen=True)
class PersonFilter:
    """Which people a query may count, from the consent register: ``include`` (only ``persons``)
    or ``exclude`` (everyone but ``persons``), for ``purpose`` at register ``version``. Person
    identifiers are compared with the dataset's privacy unit as text (an integer identifier ``42``
    matches ``"42"``). Applied before everything else: an excluded person's rows count nowhere."""

    purpose: str
    mode: str  # "include" | "exclude"
    persons: frozenset[str]
    version: int

    def __post_init__(self) -> None:
        if self.mode not in ("include", "exclude"):
            raise ValueError(f"mode must be include or exclude, not {self.mode!r}")


@dataclass(frozen=True)
class ExactAnswer:
    """Exact values before noise: ``values[m][i]`` is measurement ``m`` for ``groups[i]``."""

    groups: tuple[tuple[Literal, ...], ...]
    values: Mapping[Measurement, tuple[int | float, ...]]


class ExecutionBackend(abc.ABC):
    """Computes exact answers over a node's datasets. Implementations are thread-safe."""

    @abc.abstractmethod
    def execute(
        self,
        query: Query,
        schema: DatasetSchema,
        persons: PersonFilter | None = None,
        support: bool = False,
    ) -> ExactAnswer:
        """The exact value of every measurement of ``query`` (with ``support``, also each group's
        ``COUNT(*)``: :func:`~accord.node.plan.distinct_measurements`) for every public group of
        ``schema``, counting only the people ``persons`` lets it count (before anything else:
        WHERE, contribution bounding, every shortcut).

        ``schema`` is the dataset's full declared schema (bounding and clamping depend on all of
        it), whatever view the query was validated against. Raises
        :class:`~accord.errors.Unavailable` when the dataset cannot be read right now and
        :class:`~accord.errors.InternalError` for an engine failure."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the engine's resources; no query runs afterwards."""


def _zero(m: Measurement, schema: DatasetSchema) -> int | float:
    if m.kind is MeasureKind.SUM and m.column is not None:
        spec = schema.column(m.column)
        if spec is not None and spec.type is ColumnType.FLOAT:
            return 0.0
    return 0


def _number(value: object, zero: int | float) -> int | float:
    if isinstance(zero, float):
        assert isinstance(value, (int, float))
        return float(value)
    assert isinstance(value, int) and not isinstance(value, bool), f"unexpected {type(value).__name__}"
    return value


def align(
    query: Query,
    schema: DatasetSchema,
    measurements: tuple[Measurement, ...],
    rows: list[tuple[object, ...]],
) -> ExactAnswer:
    """Put SQL result ``rows`` (group key columns, then one column per measurement) in the order of
    the public groups, dropping groups that are not public and filling empty ones with 0."""
    groups = group_keys(query, schema)
    width = len(query.group_by)
    found: dict[tuple[object, ...], tuple[object, ...]] = {}
    for row in rows:
        found[tuple(row[:width])] = tuple(row[width:])
    zeros = tuple(_zero(m, schema) for m in measurements)
    columns: list[list[int | float]] = [[] for _ in measurements]
    for key in groups:
        values = found.get(key)
        for i, zero in enumerate(zeros):
            v = None if values is None else values[i]
            columns[i].append(zero if v is None else _number(v, zero))
    return ExactAnswer(groups, {m: tuple(col) for m, col in zip(measurements, columns, strict=True)})
