"""Exact (noise-free) execution of a query on the node's DuckDB datasets.

:meth:`Engine.execute` renders the query with :func:`accord.node.duckdb.sqlrender.render` (WHERE, per-person
contribution bounding, clamping, grouping: the semantics are documented there), runs it as one
SQL statement on a fresh cursor (so several threads may execute at once), and aligns the result
with the public group list of :func:`node.plan.group_keys`:

exactly as :func:`accord.node.backend.align` documents.

Every query bounds contributions per person, and clamps every summed column unless the dataset
declares ``on_violation = "reject"`` (then a file with a value outside the bounds is refused, so the
clamp is the identity): the statement is a function of the declaration and the query, never of
what the load-time checks found, so how long it runs does not reveal who has extra rows or which
values lay outside their bounds (the node's answer-time budget, :mod:`accord.node.timing`, hides
what the data still does to the running time).

Before each query the dataset file is ``stat``-ed; if its size, mtime or inode changed since the
load-time checks, the checks run again (and the CSV table is reloaded) before answering, so the
per-person row ranks (which replace the bounding window) and the declared bounds are never relied
on for unchecked data.
The file is stat-ed again after the query; if it changed while the query ran (Parquet is read at
query time) the query runs again on the re-checked file. A query that only asks ``COUNT(*)`` of the
whole dataset is answered from the exact counts of the load-time checks (see
:func:`_checked_count`), under the same stamp checks.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping

import duckdb

from accord.errors import DataError, InternalError, NotFound, Unavailable, Violation
from accord.node.backend import ExactAnswer, ExecutionBackend, PersonFilter, align
from accord.node.duckdb.catalog import FileStamp, LoadedDataset, file_stamp, load_dataset
from accord.node.duckdb.persons import PersonTables
from accord.node.duckdb.ranks import drop_ranks
from accord.node.duckdb.sqlrender import render
from accord.node.plan import MeasureKind, distinct_measurements
from accord.query.model import Query
from accord.query.schema import DatasetSchema

__all__ = ["Engine"]

log = logging.getLogger(__name__)

_ATTEMPTS = 3


class Engine(ExecutionBackend):
    """Executes queries over the datasets loaded by :func:`accord.node.duckdb.catalog.load_datasets`."""

    def __init__(self, con: duckdb.DuckDBPyConnection, datasets: Mapping[str, LoadedDataset]) -> None:
        self._con = con
        self._datasets = dict(datasets)
        self._failed: dict[str, FileStamp] = {}  # file stamps whose re-check rejected the data
        self._versions = dict.fromkeys(self._datasets, 0)
        self._lock = threading.Lock()
        self._persons = PersonTables(con)

    def close(self) -> None:
        with self._lock:
            self._con.close()

    def dataset(self, name: str) -> LoadedDataset:
        try:
            return self._datasets[name]
        except KeyError:
            raise NotFound(
                f"this node has no dataset {name!r}; ask the catalog for its datasets",
                (Violation("dataset", f"unknown dataset {name}"),),
            ) from None

    def execute(
        self,
        query: Query,
        schema: DatasetSchema,
        persons: PersonFilter | None = None,
        support: bool = False,
    ) -> ExactAnswer:
        """Exact values of every measurement of ``query`` (and, with ``support``, of each group's
        ``COUNT(*)``) for every public group (one SQL query), counting only the people ``persons``
        lets it count."""
        for _ in range(_ATTEMPTS):
            loaded = self._current(query.dataset)
            total = _checked_count(query, schema, loaded) if persons is None else None
            people = None
            if persons is not None:
                spec = schema.column(schema.privacy_unit)
                assert spec is not None
                people = (persons.mode, self._persons.table(persons, spec.type))
            if total is not None:
                measurements = distinct_measurements(query, support)
                rows: list[tuple[object, ...]] = [(total,)]
            else:
                rendered = render(
                    query,
                    schema,
                    True,  # always: whether anybody has extra rows must not pick the path
                    loaded.relation,
                    loaded.proven_bounds,
                    loaded.ranks,
                    people,
                    support,
                )
                cur = self._con.cursor()
                try:
                    rows = cur.execute(rendered.sql, list(rendered.params)).fetchall()
                except duckdb.CatalogException:
                    # A reload on another thread may have dropped a table this query named (the
                    # CSV table, the rank table, an old consent table): run it again on the new ones.
                    if self.dataset(query.dataset) is not loaded or persons is not None:
                        continue
                    raise
                except duckdb.Error as err:
                    log.error("query on dataset %s failed in DuckDB (%s)", query.dataset, type(err).__name__)
                    raise InternalError(f"the engine failed on dataset {query.dataset!r}") from None
                finally:
                    cur.close()
                measurements = rendered.measurements
            if self._stamp(loaded) == loaded.stamp:
                return align(query, schema, measurements, rows)
            log.info(
                "dataset %s changed during a query; running it again on the re-checked file", query.dataset
            )
        raise Unavailable(f"dataset {query.dataset!r} keeps changing; retry in a moment")

    def _stamp(self, loaded: LoadedDataset) -> FileStamp:
        try:
            return file_stamp(loaded.config.path)
        except OSError:
            log.error("dataset %s: cannot stat %s", loaded.name, loaded.config.path)
            raise Unavailable(f"dataset {loaded.name!r} is not available on this node right now") from None

    def _current(self, name: str) -> LoadedDataset:
        """The dataset as last checked, re-checking it first when its file changed."""
        loaded = self.dataset(name)
        stamp = self._stamp(loaded)
        if stamp == loaded.stamp:
            return loaded
        with self._lock:
            loaded = self._datasets[name]
            stamp = self._stamp(loaded)
            if stamp == loaded.stamp:
                return loaded  # another thread re-checked it meanwhile
            if self._failed.get(name) == stamp:
                raise _unavailable(name)
            log.info("dataset %s: file changed since it was checked; checking it again", name)
            version = self._versions[name] + (loaded.config.format == "csv")
            cur = self._con.cursor()
            try:
                fresh = load_dataset(loaded.config, cur, version)
            except DataError as err:
                self._failed[name] = stamp
                log.error("dataset %s: refusing queries until the file is fixed: %s", name, err.message)
                raise _unavailable(name) from None
            finally:
                cur.close()
            self._failed.pop(name, None)
            self._versions[name] = version
            self._datasets[name] = fresh
            # Queries already running keep their snapshot (DuckDB MVCC); new ones use `fresh`.
            cur = self._con.cursor()
            try:
                if fresh.relation != loaded.relation:
                    cur.execute(f"DROP TABLE IF EXISTS {loaded.relation}")
                drop_ranks(loaded.ranks, cur)
            finally:
                cur.close()
            return fresh


def _checked_count(query: Query, schema: DatasetSchema, loaded: LoadedDataset) -> int | None:
    """The exact ``COUNT(*)`` of the whole dataset, from the load-time checks, when that is all the
    query asks (no WHERE, no GROUP BY): the checks counted every person's rows, so the count after
    bounding is the sum of ``min(rows, k)`` over persons with an id (the same path, from the query's
    shape alone, whatever the data holds). Like plain DuckDB answering ``count(*)`` from a Parquet
    footer, this reads no data; it holds while the file stamp is unchanged, which
    :meth:`Engine.execute` checks as for every query. None when the query asks anything else or the
    checks were for another schema."""
    if query.where is not None or query.group_by:
        return None
    if any(m.kind is not MeasureKind.COUNT or m.column is not None for m in distinct_measurements(query)):
        return None
    checked = loaded.config.schema
    if (checked.privacy_unit, checked.max_rows_per_person) != (
        schema.privacy_unit,
        schema.max_rows_per_person,
    ):
        return None
    return loaded.report.bounded_rows


def _unavailable(name: str) -> Unavailable:
    return Unavailable(
        f"dataset {name!r} is not available: its file changed and failed the node's checks; "
        "the node operator has been told"
    )
