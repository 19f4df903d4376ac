"""The DuckDB execution backend: the node's datasets in an embedded DuckDB, checked at load.

Every DuckDB-specific construct of the node lives in this package: loading and checking the files
(:mod:`.catalog`), per-person row ranks (:mod:`.ranks`), rendering a query to DuckDB SQL
(:mod:`.sqlrender`) and running it (:mod:`.engine`).
"""

from __future__ import annotations

import duckdb

from accord.node.config import DatasetConfig
from accord.node.duckdb.catalog import load_datasets
from accord.node.duckdb.engine import Engine

__all__ = ["Engine", "open_duckdb"]


def open_duckdb(datasets: tuple[DatasetConfig, ...]) -> Engine:
    """Load and check every dataset into a fresh in-memory DuckDB (raises
    :class:`~accord.errors.DataError` for a dataset that breaks its declaration)."""
    con = duckdb.connect(":memory:")
    # A server has no terminal: DuckDB's progress bar (long load checks, large windows) would write
    # into its stdout. Cursors inherit the setting.
    con.execute("SET enable_progress_bar = false")
    try:
        loaded = load_datasets(datasets, con)
    except BaseException:
        con.close()
        raise
    return Engine(con, loaded)
