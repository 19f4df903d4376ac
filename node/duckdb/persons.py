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
import logging
import re
import threading

import duckdb
import pyarrow as pa

from accord.errors import InternalError
from accord.node.backend import PersonFilter
from accord.node.duckdb.sqlrender import SQL_TYPES, quote_ident
from accord.query.schema import ColumnType

__all__ = ["PersonTables"]

log = logging.getLogger(__name__)

_NAMES = itertools.count(1)
_KEEP = 2
_DECIMAL = re.compile(r"-?(0|[1-9][0-9]*)")  # ASCII only: int() would also take "+4_2" and "٤٢"


def _values(persons: frozenset[str], kind: ColumnType) -> pa.Array:
    """The identifiers as the person column's type; one that cannot be read as it (written any
    other way than the column's values are) matches nobody and is left out."""
    if kind is ColumnType.INTEGER:
        ints = [int(p) for p in persons if _DECIMAL.fullmatch(p)]
        return pa.array([v for v in ints if -(2**63) <= v < 2**63], type=pa.int64())
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
                typed = f"TRY_CAST(person AS {SQL_TYPES[kind]})"
                cur.execute(
                    f"CREATE TABLE {name} AS SELECT DISTINCT {typed} AS person FROM accord_persons_arrow "
                    f"WHERE {typed} IS NOT NULL"
                )
                cur.unregister("accord_persons_arrow")
                versions = sorted([*self._tables.get(key, []), (persons.version, name)])
                for _, stale in versions[:-_KEEP]:
                    cur.execute(f"DROP TABLE IF EXISTS {stale}")
                self._tables[key] = versions[-_KEEP:]
            except duckdb.Error as err:  # its message may quote an identifier: never pass it on
                log.error(
                    "could not build the consent table for purpose %s (%s)",
                    persons.purpose,
                    type(err).__name__,
                )
                raise InternalError("the node could not apply the consent register") from None
            finally:
                cur.close()
            return name
