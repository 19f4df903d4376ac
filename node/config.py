"""The node's TOML configuration: loaded into frozen dataclasses and validated at start-up, and
written back by :mod:`accord.node.config_writer` (the demo, the benchmarks and the tests).

```toml
[node]
name = "county"                 # identity; must match the node certificate's name
listen = "127.0.0.1:50051"
max_workers = 8                 # optional (default 8): queries executed at once
max_concurrent_rpcs = 32        # optional (default 32): RPCs accepted at once

[tls]
cert = "certs/nodes/county.pem"
key = "certs/nodes/county.key"
ca = "certs/ca.pem"
crl = "certs/crl.pem"           # optional: the federation's revocation list (`accord pki revoke`),
                                # reloaded within a second of changing

[fairness]                      # optional: one analyst's share of this node
max_in_flight = 4               # optional (default 4): one analyst's queries running at once
per_minute = 120                # optional (default 120): one analyst's queries a minute...
burst = 20                      # optional (default 20): ...in bursts of up to this many

[access]
coordinators = ["coordinator"]  # certificate names allowed to send queries

[queries]                       # optional: how fresh a signed query must be, how much it may spend
max_age_seconds = 300           # optional (default 300): refuse queries signed longer ago
clock_skew_seconds = 60         # optional (default 60): allowance for clocks that disagree
max_epsilon = "1"               # optional (default "1"): the most epsilon one query may spend here

[agreements]                    # the data-sharing agreements this node holds
dir = "agreements"              # one TOML file per agreement (see accord.policies.agreements)

[consent]                       # optional: the consent register
path = "state/consent.sqlite3"  # optional (default state/consent.sqlite3 beside this file)

[timing]                        # optional: when answers leave the node (see the README, "Timing")
answer_seconds = 1.0            # optional (default 1.0): no answer leaves before this many seconds
                                # after the request arrived; 0 turns padding off (answer times
                                # then depend on the data: tests and benchmarks only)
report_node_seconds = false     # optional (default false): send the node's handler time to the
                                # coordinator as trailing metadata (a data-dependent disclosure)

[state]                         # optional: what the node remembers (answered queries)
backend = "sqlite"              # optional (default "sqlite"); "memory" forgets on restart
path = "state/county.sqlite3"   # optional (default state/<name>.sqlite3 beside this file)

[datasets.residents]              # the key is the dataset name analysts write after FROM
path = "data/residents.parquet"   # .parquet or .csv (inferred from the suffix, or `format = "csv"`)
format = "parquet"                # optional: "parquet" or "csv"
description = "..."               # optional
privacy_unit = "person_id"        # the person-identifier column (must be declared below)
max_rows_per_person = 1           # optional (default 1): rows one person may contribute
max_rows = 1000000000             # optional (default 10^9): the most rows the file may hold
                                  # (public; with the bounds it decides which sums cannot overflow)
on_violation = "reject"           # optional (default "reject") or "clamp": what to do when the
                                  # data breaks the declared bounds/categories
answer_seconds = 2.0              # optional: this dataset's answer-time budget ([timing]'s otherwise)
grouped_answer_seconds = 3.0      # optional: the budget of its GROUP BY queries (answer_seconds otherwise)

[datasets.residents.columns.age]  # every column analysts may use; others are not exposed
type = "integer"                  # integer | float | boolean | string
lower = 0                         # optional bounds (numeric columns; needed for SUM/AVG)
upper = 110
description = "..."               # optional

[datasets.residents.columns.district]
type = "string"
categories = ["north", "south"]   # optional public values (needed for GROUP BY)
```
Relative paths resolve against the directory of the config file. Unknown keys are rejected with a
did-you-mean hint. Every error is a :class:`~accord.errors.ConfigError` naming the file, the key
(for example ``datasets.residents.columns.age.upper``) and the fix.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

from accord.config import Table, read_toml
from accord.errors import ConfigError, InvalidQuery
from accord.query.epsilon import Epsilon
from accord.query.model import Literal
from accord.query.schema import DEFAULT_MAX_ROWS, MAX_ROWS_LIMIT, ColumnSpec, ColumnType, DatasetSchema
from accord.rpc.fairness import FairnessConfig, fairness_config
from accord.rpc.transport import TlsFiles

__all__ = [
    "STATE_BACKENDS",
    "DatasetConfig",
    "NodeConfig",
    "StateConfig",
    "load_node_config",
]

_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FORMATS = ("parquet", "csv")
ON_VIOLATION = ("reject", "clamp")
STATE_BACKENDS = ("sqlite", "memory")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

_NODE_KEYS = {"name", "listen", "max_workers", "max_concurrent_rpcs"}
_DATASET_KEYS = {
    "path",
    "format",
    "description",
    "privacy_unit",
    "max_rows_per_person",
    "max_rows",
    "on_violation",
    "columns",
    "answer_seconds",
    "grouped_answer_seconds",
}
_COLUMN_KEYS = {"type", "lower", "upper", "categories", "description"}


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: its public schema, where its file is, the file format and the violation policy."""

    schema: DatasetSchema
    path: Path
    format: str  # "parquet" | "csv"
    on_violation: str = "reject"  # "reject" | "clamp"
    answer_seconds: float | None = None  # this dataset's answer-time budget (the node's otherwise)
    grouped_answer_seconds: float | None = None  # ... of its GROUP BY queries (answer_seconds otherwise)


@dataclass(frozen=True)
class StateConfig:
    """Where the node keeps what it must remember (see :mod:`accord.node.state`). ``path`` is the
    SQLite file; the ``memory`` backend keeps nothing across restarts (tests and benchmarks)."""

    backend: str = "sqlite"
    path: Path | None = None

    def __post_init__(self) -> None:
        if self.backend not in STATE_BACKENDS:
            raise ConfigError(f"state backend {self.backend!r} is not one of {', '.join(STATE_BACKENDS)}")
        if self.backend == "sqlite" and self.path is None:
            raise ConfigError("the sqlite state backend needs a path")


@dataclass(frozen=True)
class NodeConfig:
    name: str
    listen: str
    tls_cert: Path
    tls_key: Path
    tls_ca: Path
    coordinators: tuple[str, ...]
    datasets: tuple[DatasetConfig, ...]
    state: StateConfig
    agreements_dir: Path
    consent_path: Path
    max_workers: int = 8
    max_concurrent_rpcs: int = 32
    query_max_age_seconds: int = 300
    clock_skew_seconds: int = 60
    max_epsilon: Epsilon = field(default_factory=lambda: Epsilon(Fraction(1)))
    tls_crl: Path | None = None
    fairness: FairnessConfig = field(default_factory=FairnessConfig)

    @property
    def tls(self) -> TlsFiles:
        return TlsFiles(self.tls_cert, self.tls_key, self.tls_ca, self.tls_crl)

    answer_seconds: float = 1.0  # [timing]: no answer leaves earlier (0: padding off)
    report_node_seconds: bool = False  # [timing]: send the node's handler time (a disclosure)

    def dataset(self, name: str) -> DatasetConfig | None:
        for d in self.datasets:
            if d.schema.name == name:
                return d
        return None


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node config file. Raises :class:`ConfigError` naming the file and key."""
    file = Path(path)
    top = Table(file, "", read_toml(file, "pass the node config with --config"))
    top.check_keys(
        {
            "node",
            "tls",
            "access",
            "queries",
            "agreements",
            "consent",
            "state",
            "datasets",
            "timing",
            "fairness",
        }
    )

    node = top.sub("node", required=True)
    node.check_keys(_NODE_KEYS)
    name = node.name("name")
    listen = node.address("listen", listen=True)
    max_workers = node.integer("max_workers", 8, 1, 1024, "8 is a good start")
    max_rpcs = node.integer("max_concurrent_rpcs", 32, 1, 65536, "32 is a good start")

    tls = top.sub("tls", required=True)
    tls.check_keys({"cert", "key", "ca", "crl"})
    cert, key, ca = tls.path("cert"), tls.path("key"), tls.path("ca")
    crl = tls.path("crl") if tls.has("crl") else None

    access = top.sub("access", required=True)
    access.check_keys({"coordinators"})
    coordinators = access.names(
        "coordinators", '["coordinator"]', "coordinator certificate names allowed to query"
    )

    queries = top.sub("queries")
    queries.check_keys({"max_age_seconds", "clock_skew_seconds", "max_epsilon"})
    max_age = queries.integer("max_age_seconds", 300, 1, 86_400, "300 (five minutes) is a good start")
    skew = queries.integer("clock_skew_seconds", 60, 0, 3_600, "60 is a good start; keep clocks in sync")
    max_epsilon_text = queries.get("max_epsilon", str, "1")
    try:
        max_epsilon = Epsilon.parse(max_epsilon_text)
    except InvalidQuery as err:
        raise queries.error("max_epsilon", err.message + ' (write it as a string, e.g. "1")') from None

    agreements = top.sub("agreements", required=True)
    agreements.check_keys({"dir"})
    agreements_dir = agreements.path("dir")
    consent = top.sub("consent")
    consent.check_keys({"path"})
    consent_path = consent.path("path") if consent.has("path") else file.parent / "state" / "consent.sqlite3"

    datasets_table = top.sub("datasets", required=True)
    if not datasets_table.table:
        raise datasets_table.error("", "no datasets configured; add a [datasets.NAME] table")
    datasets = tuple(_dataset(datasets_table.sub(n), n) for n in datasets_table.table)
    answer_seconds, report_node_seconds = _timing(top.sub("timing"))

    return NodeConfig(
        name=name,
        listen=listen,
        tls_cert=cert,
        tls_key=key,
        tls_ca=ca,
        coordinators=coordinators,
        datasets=datasets,
        state=_state(top.sub("state"), name),
        agreements_dir=agreements_dir,
        consent_path=consent_path,
        max_workers=max_workers,
        max_concurrent_rpcs=max_rpcs,
        query_max_age_seconds=max_age,
        clock_skew_seconds=skew,
        max_epsilon=max_epsilon,
        tls_crl=crl,
        fairness=fairness_config(top.sub("fairness")),
        answer_seconds=answer_seconds,
        report_node_seconds=report_node_seconds,
    )


def _state(t: Table, node: str) -> StateConfig:
    t.check_keys({"backend", "path"})
    backend = t.get("backend", str, "sqlite")
    if backend not in STATE_BACKENDS:
        raise t.error(
            "backend",
            f'{backend!r} is not a state backend; use "sqlite" (or "memory", which forgets every answer '
            "when the node stops: for tests only)",
        )
    if backend == "memory":
        if t.has("path"):
            raise t.error("path", 'the "memory" backend keeps no file; remove path or use "sqlite"')
        return StateConfig("memory")
    path = t.path("path") if t.has("path") else t.file.parent / "state" / f"{node}.sqlite3"
    return StateConfig("sqlite", path)


def _dataset(t: Table, name: str) -> DatasetConfig:
    if not _IDENT.match(name):
        raise t.error(
            "", "dataset names are SQL identifiers: letters, digits and '_', not starting with a digit"
        )
    t.check_keys(_DATASET_KEYS)
    path = t.path("path")
    if "format" in t.table:
        fmt = t.get("format", str)
        if fmt not in FORMATS:
            raise t.error("format", f"{fmt!r} is not supported; use one of {', '.join(map(repr, FORMATS))}")
    else:
        fmt = _SUFFIXES.get(path.suffix.lower(), "")
        if not fmt:
            raise t.error(
                "path", 'cannot tell the file format from its suffix; add format = "parquet" or "csv"'
            )
    _literal_path(t, path)
    if not path.is_file():
        raise t.error(
            "path", f"no such file {str(path)!r}; fix the path (relative paths start at the config's folder)"
        )
    description = t.get("description", str, "")
    privacy_unit = t.get("privacy_unit", str, required=True)
    k = t.get("max_rows_per_person", int, 1)
    if k < 1:
        raise t.error("max_rows_per_person", "must be at least 1")
    max_rows = t.get("max_rows", int, DEFAULT_MAX_ROWS)
    if not 1 <= max_rows <= MAX_ROWS_LIMIT:
        raise t.error(
            "max_rows", f"must be from 1 to {MAX_ROWS_LIMIT}; declare the most rows the file may hold"
        )
    on_violation = t.get("on_violation", str, "reject")
    if on_violation not in ON_VIOLATION:
        note = (
            " (extra rows per person are always dropped at query time, down to max_rows_per_person; "
            "on_violation only decides what happens when values break the declared bounds or categories)"
            if on_violation == "truncate"
            else ""
        )
        raise t.error("on_violation", f'{on_violation!r} is not allowed; use "reject" or "clamp"{note}')

    cols = t.sub("columns", required=True)
    if not cols.table:
        raise cols.error("", "no columns declared; add a [columns.NAME] table per column analysts may use")
    columns = tuple(_column(cols.sub(c), c) for c in cols.table)
    if privacy_unit not in cols.table:
        near = difflib.get_close_matches(privacy_unit, list(cols.table), n=1)
        hint = f"did you mean {near[0]!r}? " if near else ""
        raise t.error(
            "privacy_unit",
            f"{privacy_unit!r} is not a declared column; {hint}declare the person-identifier column "
            f"as [{cols.key(privacy_unit)}]",
        )
    try:
        schema = DatasetSchema(name, columns, privacy_unit, k, description, max_rows)
    except ConfigError as err:
        raise t.error("", err.message) from None
    answer, grouped = (_seconds(t, k, None, 0.001) for k in ("answer_seconds", "grouped_answer_seconds"))
    return DatasetConfig(schema, path, fmt, on_violation, answer, grouped)


# ---- answer timing and literal paths (issue 10) ---------------------------------------------------

_MAX_ANSWER_SECONDS = 600.0


def _timing(t: Table) -> tuple[float, bool]:
    """``[timing]``: the node's answer-time budget and whether it reports its handler time."""
    t.check_keys({"answer_seconds", "report_node_seconds"})
    seconds = _seconds(t, "answer_seconds", 1.0, 0.0)
    assert seconds is not None
    return seconds, bool(t.get("report_node_seconds", bool, False))


def _seconds(t: Table, key: str, default: float | None, low: float) -> float | None:
    """An answer-time budget in seconds, between ``low`` and 600."""
    value: float | None = t.get(key, float, default)
    if value is not None and not (low <= value <= _MAX_ANSWER_SECONDS):
        lowest = "0 (padding off)" if low == 0 else "more than 0"
        raise t.error(
            key,
            f"must be between {lowest} and {_MAX_ANSWER_SECONDS:g} seconds; set it above the slowest "
            "time this node takes to answer (1.0 is a good start; `make bench` measures it)",
        )
    return value


def _literal_path(t: Table, path: Path) -> None:
    """A dataset is one file: DuckDB would expand ``*``, ``?`` and ``[`` in a path as a glob and read
    files the load-time checks never saw."""
    found = sorted(set("*?[") & set(str(path)))
    if found:
        raise t.error(
            "path",
            f"holds {' '.join(repr(c) for c in found)}, which DuckDB reads as a glob over several files; "
            "a dataset is one checked file: give the path of one file (rename it, or combine the files)",
        )


def _column(t: Table, name: str) -> ColumnSpec:
    if not _IDENT.match(name):
        raise t.error(
            "", "column names are SQL identifiers: letters, digits and '_', not starting with a digit"
        )
    t.check_keys(_COLUMN_KEYS)
    raw_type = t.get("type", str, required=True)
    try:
        ctype = ColumnType(raw_type)
    except ValueError:
        allowed = [c.value for c in ColumnType]
        near = difflib.get_close_matches(raw_type, allowed, n=1)
        hint = f"did you mean {near[0]!r}?" if near else f"use one of {', '.join(allowed)}"
        raise t.error("type", f"{raw_type!r} is not a column type; {hint}") from None

    lower = upper = None
    if t.has("lower") or t.has("upper"):
        if not ctype.numeric:
            key = "lower" if t.has("lower") else "upper"
            raise t.error(key, "bounds only apply to integer or float columns; remove it or change the type")
        kind: type = int if ctype is ColumnType.INTEGER else float
        lower = t.get("lower", kind, required=True)
        upper = t.get("upper", kind, required=True)
        if ctype is ColumnType.FLOAT and not (abs(lower) < float("inf") and abs(upper) < float("inf")):
            raise t.error("lower", "bounds must be finite numbers")

    categories: tuple[Literal, ...] | None = None
    if t.has("categories"):
        raw = t.get("categories", list)
        categories = tuple(_category(t, ctype, v) for v in raw)

    description = t.get("description", str, "")
    try:
        return ColumnSpec(name, ctype, lower, upper, categories, description)
    except ConfigError as err:
        key = "categories" if "categor" in err.message else ("upper" if lower is not None else "")
        raise t.error(key, err.message) from None


def _category(t: Table, ctype: ColumnType, value: object) -> Literal:
    ok: bool
    if ctype is ColumnType.STRING:
        ok = isinstance(value, str)
    elif ctype is ColumnType.BOOLEAN:
        ok = isinstance(value, bool)
    elif ctype is ColumnType.INTEGER:
        ok = isinstance(value, int) and not isinstance(value, bool)
    else:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if ok:
            value = float(value)  # type: ignore[arg-type]
    if not ok:
        kind = "boolean" if isinstance(value, bool) else type(value).__name__
        raise t.error(
            "categories", f"{value!r} is a {kind}, but the column is {ctype.value}; list {ctype.value} values"
        )
    assert isinstance(value, (str, int, float, bool))
    return value


# ---- writing ------------------------------------------------------------------------------------
