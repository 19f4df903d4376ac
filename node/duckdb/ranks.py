"""Per-person row ranks computed once at load, so that bounding contributions without WHERE is a
filtered scan (see :mod:`node.duckdb.sqlrender`, step 2, "Load-time ranks").

:func:`build_ranks` writes a table with one entry per dataset row, in the dataset's own order:
the row's place in its person's bounding order (:func:`node.duckdb.sqlrender.bounding_order`). The
engine pairs it with the dataset by ``POSITIONAL JOIN``; the pairing is verified for every row
before the table is used.
"""

from __future__ import annotations

import itertools
import logging

import duckdb

from accord.node.config import DatasetConfig
from accord.node.duckdb.sqlrender import RowRanks, bounding_order, quote_ident

__all__ = ["build_ranks", "drop_ranks"]

log = logging.getLogger(__name__)

_RANK_TABLES = itertools.count(1)
"""Each rank table gets a new name, so a reload never touches the table running queries read."""


def _free_name(base: str, taken: set[str]) -> str:
    name = base
    while name in taken:
        name = "_" + name
    return name


def _rank_type(k: int) -> str:
    return "UTINYINT" if k + 1 <= 0xFF else "USMALLINT" if k + 1 <= 0xFFFF else "UINTEGER"


def build_ranks(
    config: DatasetConfig,
    con: duckdb.DuckDBPyConnection,
    relation: str,
    positioned: str,
    rows: int,
    passes: int,
    where: str,
) -> RowRanks | None:
    """Each row's place in its person's bounding order (:func:`node.duckdb.sqlrender.bounding_order`),
    capped at ``k + 1``, in a table with one row per dataset row in the dataset's own order, so
    that ``relation POSITIONAL JOIN ranks`` pairs every row with its own entry.

    ``positioned`` is the dataset's rows with their position (the Parquet row number, the CSV
    table's rowid) as a ``{pos}`` column. Rows are numbered per person in passes over disjoint sets
    of persons (``hash(pid) % passes``, as in :func:`node.duckdb.catalog._per_person`) so the
    window's memory stays bounded, then put in position order. The pairing is then *verified*: a
    32-bit hash of the person id kept beside each entry must match the dataset row it is paired
    with, for every row. If anything fails the dataset is still served, numbering rows per query
    (slower, the same answers), and the operator is told. Returns None then."""
    schema = config.schema
    k = schema.max_rows_per_person
    taken = {c.name for c in schema.columns}
    names = ("accord_pos", "accord_rank", "accord_check")
    pos, rank, check = (quote_ident(_free_name(n, taken)) for n in names)
    number = next(_RANK_TABLES)
    table = quote_ident(f"accord_{schema.name}__ranks{number}")
    staging = quote_ident(f"accord_{schema.name}__ranks{number}__staging")
    ordered = quote_ident(f"accord_{schema.name}__ranks{number}__ordered")
    pid = quote_ident(schema.privacy_unit)
    source = positioned.format(pos=pos)
    pid_hash = f"CAST(hash({pid}) % 4294967296 AS UINTEGER)"
    rank_type = _rank_type(k)
    try:
        con.execute(f"CREATE TABLE {staging} ({pos} BIGINT, {rank} {rank_type}, {check} UINTEGER)")
        con.execute(f"INSERT INTO {staging} SELECT {pos}, NULL, {pid_hash} FROM {source} WHERE {pid} IS NULL")
        place = f"row_number() OVER (PARTITION BY {pid} ORDER BY {bounding_order(schema)})"
        for i in range(passes):
            part = f" AND hash({pid}) % {passes} = {i}" if passes > 1 else ""
            con.execute(
                f"INSERT INTO {staging} SELECT {pos}, CAST(LEAST({place}, $1 + 1) AS {rank_type}), "
                f"{pid_hash} "
                f"FROM {source} WHERE {pid} IS NOT NULL{part}",
                [k],
            )
        con.execute(f"CREATE TABLE {ordered} AS SELECT {rank}, {check} FROM {staging} ORDER BY {pos}")
        con.execute(f"DROP TABLE {staging}")
        row = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE {check} IS DISTINCT FROM {pid_hash} OR {rank} IS NULL "
            f"AND {pid} IS NOT NULL) FROM {relation} POSITIONAL JOIN {ordered}"
        ).fetchone()
        assert row is not None
        if (int(row[0]), int(row[1])) != (rows, 0):
            log.warning(
                "%s: the per-person row ranks did not line up with the file (%d of %d rows); "
                "bounding contributions per query instead (slower, the same answers)",
                where,
                int(row[1]),
                rows,
            )
            con.execute(f"DROP TABLE {ordered}")
            return None
        con.execute(f"CREATE TABLE {table} AS SELECT {rank} FROM {ordered}")
        con.execute(f"DROP TABLE {ordered}")
    except duckdb.Error as err:
        log.warning(
            "%s: could not rank rows per person at load (%s); bounding contributions per query instead "
            "(slower, the same answers)",
            where,
            type(err).__name__,
        )
        for t in (staging, ordered, table):
            con.execute(f"DROP TABLE IF EXISTS {t}")
        return None
    return RowRanks(table, rank, schema.privacy_unit, k)


def drop_ranks(ranks: RowRanks | None, con: duckdb.DuckDBPyConnection) -> None:
    """Drop a dataset's rank table (after a reload replaced it)."""
    if ranks is not None:
        con.execute(f"DROP TABLE IF EXISTS {ranks.table}")
