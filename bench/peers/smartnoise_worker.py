"""Peer worker: SmartNoise SQL over pandas (run with bench/.venvs/smartnoise-sql; see workerlib).

Idiomatic use, as SmartNoise documents it: ``snsql.from_df(df, privacy=Privacy(epsilon=...),
metadata=...)`` then ``reader.execute(sql)``. ``from_df`` copies the DataFrame into an in-memory
SQLite database (``DataFrame.to_sql``), which is most of the end-to-end time.

Privacy setup: metadata with the declared bounds, ``row_privacy: True`` (one row per person, as in
Accord's file, so no per-person reservoir sampling), ``censor_dims: False`` (the regions are
public, so no thresholding of groups). Differences from Accord, reported in the row's note:

* SmartNoise charges epsilon per computed statistic: ``AVG`` is a noisy ``SUM`` and a noisy
  ``COUNT`` each at the reader's epsilon. For a mean the reader gets epsilon / 2, so the query
  spends epsilon in total, as Accord's does (checked with the reader's odometer).
* ``Privacy``'s default delta (1e-15) is accounted by SmartNoise even without thresholding.
* ``censor_dims: False`` releases the groups found in the data; it does not add public groups
  that are empty (all 12 regions are present here, so the output is the same).
"""

from __future__ import annotations

import re
import warnings
from importlib.metadata import version
from typing import Any

import pandas as pd
import snsql
from workerlib import Peer, Unsupported, main, numbers

warnings.filterwarnings("ignore")  # SmartNoise warns on every query about ignored metadata keys

SCHEMA = "bench"
_TYPES = {"integer": "int", "float": "float", "boolean": "boolean", "string": "string"}


def _metadata(spec: dict[str, Any]) -> dict[str, Any]:
    table: dict[str, Any] = {"row_privacy": True, "censor_dims": False}
    for name, col in spec["columns"].items():
        entry: dict[str, Any] = {"type": _TYPES[col["type"]]}
        if col.get("lower") is not None:
            entry["lower"], entry["upper"] = col["lower"], col["upper"]
        table[name] = entry
    return {SCHEMA: {SCHEMA: {spec["table"]: table}}}


def _stats(spec: dict[str, Any]) -> int:
    """How many noisy statistics SmartNoise computes (and charges epsilon for) in this query."""
    return 2 if spec["agg"] == "mean" else 1


def _sql(spec: dict[str, Any]) -> str:
    sql = re.sub(rf"\bFROM\s+{re.escape(spec['table'])}\b", f"FROM {SCHEMA}.{spec['table']}", spec["sql"])
    if sql == spec["sql"]:
        raise Unsupported("could not point the query at SmartNoise's table")
    return sql


def open_file(path: str, spec: dict[str, Any], eps: float) -> Any:
    privacy = snsql.Privacy(epsilon=eps / _stats(spec))
    return snsql.from_df(pd.read_parquet(path), privacy=privacy, metadata=_metadata(spec))


load = open_file  # the reader *is* the loaded data (an in-memory SQLite copy)


def release(reader: Any, spec: dict[str, Any], eps: float) -> list[float]:
    rows = reader.execute(_sql(spec))[1:]  # the first row is the header
    group = spec.get("group_by")
    if group is None:
        return numbers([rows[0][0]])
    got = {r[0]: r[1] for r in rows}
    return numbers([got.get(k) for k in spec["keys"]])


def describe(reader: Any, spec: dict[str, Any], eps: float) -> dict[str, Any]:
    spent_eps, spent_delta = reader.get_privacy_cost([_sql(spec)])
    return {
        "epsilon_per_statistic": eps / _stats(spec),
        "query_cost_epsilon": float(spent_eps),
        "query_cost_delta": float(spent_delta),
    }


PEER = Peer(
    "smartnoise-sql",
    f"smartnoise-sql {version('smartnoise-sql')}, opendp {version('opendp')}, pandas {pd.__version__}",
    open_file,
    load,
    release,
    describe,
    notes=[
        "row_privacy (one row per person in the file), censor_dims off (public regions), "
        "default delta 1e-15; AVG = SUM + COUNT each at epsilon/2 so the query spends epsilon",
        "end to end includes pandas read_parquet and from_df's copy into in-memory SQLite",
    ],
)

if __name__ == "__main__":
    raise SystemExit(main(PEER))
