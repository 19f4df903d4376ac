"""The consent register's person sets as DuckDB tables, so the engine leaves people out (or, for an
opt-in purpose, keeps only people) inside the one SQL statement of each query.

One table per (purpose, include/exclude, register version, person-id type), made the first time a
query needs it: a single column ``person`` typed like the dataset's privacy unit (an identifier
that cannot be read as that type matches no row, so it is left out of the table). The two newest
versions of each (purpose, mode, type) are kept, so a query that started just before a consent
change still finds the table it named; older ones are dropped.
"""

from __future__ import annotations

import itertools
import threading

import duckdb
import pyarrow as pa

from accord.node.backend import PersonFilter
from accord.node.duckdb.sqlrender import SQL_TYPES, quote_ident
from accord.query.schema import ColumnType

__all__ = ["PersonTables"]

_NAMES = itertools.count(1)
_KEEP = 2


def _values(persons: frozenset[str], kind: ColumnType) -> pa.Array:
    if kind is ColumnType.INTEGER:
        ints = []
        for p in persons:
            try:
                value = int(p)
            except ValueError:
                continue  # no integer identifier can equal it
            if -(2**63) <= value < 2**63:
                ints.append(value)
        return pa.array(ints, type=pa.int64())
    return pa.array(sorted(persons), type=pa.string())


class PersonTables:
    """The person tables of one DuckDB connection (thread-safe)."""

    def __init__(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con
        self._lock = threading.Lock()
        self._tables: dict[tuple[str, str, ColumnType], list[tuple[int, str]]] = {}

    def table(self, persons: PersonFilter, kind: ColumnType) -> str:
        """The quoted name of the table holding ``persons`` as ``kind`` identifiers."""
        key = (persons.purpose, persons.mode, kind)
        with self._lock:
            for version, name in self._tables.get(key, []):
                if version == persons.version:
                    return name
            name = quote_ident(f"accord_persons_{next(_NAMES)}")
            cur = self._con.cursor()
            try:
                values = pa.table({"person": _values(persons.persons, kind)})
                cur.register("accord_persons_arrow", values)
                cur.execute(
                    f"CREATE TABLE {name} AS SELECT DISTINCT CAST(person AS {SQL_TYPES[kind]}) AS person "
                    "FROM accord_persons_arrow"
                )
                cur.unregister("accord_persons_arrow")
                versions = sorted([*self._tables.get(key, []), (persons.version, name)])
                for _, stale in versions[:-_KEEP]:
                    cur.execute(f"DROP TABLE IF EXISTS {stale}")
                self._tables[key] = versions[-_KEEP:]
            finally:
                cur.close()
            return name
