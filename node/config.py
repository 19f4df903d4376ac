"""The node's TOML configuration, loaded into frozen dataclasses and validated at start-up.

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

[access]
coordinators = ["coordinator"]  # certificate names allowed to send queries

[datasets.residents]              # the key is the dataset name analysts write after FROM
path = "data/residents.parquet"   # .parquet or .csv (inferred from the suffix, or `format = "csv"`)
format = "parquet"                # optional: "parquet" or "csv"
description = "..."               # optional
privacy_unit = "person_id"        # the person-identifier column (must be declared below)
max_rows_per_person = 1           # optional (default 1): rows one person may contribute
on_violation = "reject"           # optional (default "reject") or "clamp": what to do when the
                                  # data breaks the declared bounds/categories

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
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.errors import ConfigError
from accord.query.model import Literal
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema

__all__ = ["DatasetConfig", "NodeConfig", "load_node_config"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
FORMATS = ("parquet", "csv")
ON_VIOLATION = ("reject", "clamp")
_SUFFIXES = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}

_NODE_KEYS = {"name", "listen", "max_workers", "max_concurrent_rpcs"}
_DATASET_KEYS = {
    "path",
    "format",
    "description",
    "privacy_unit",
    "max_rows_per_person",
    "on_violation",
    "columns",
}
_COLUMN_KEYS = {"type", "lower", "upper", "categories", "description"}


@dataclass(frozen=True)
class DatasetConfig:
    """One dataset: its public schema, where its file is, the file format and the violation policy."""

    schema: DatasetSchema
    path: Path
    format: str  # "parquet" | "csv"
    on_violation: str  # "reject" | "clamp"


@dataclass(frozen=True)
class NodeConfig:
    name: str
    listen: str
    tls_cert: Path
    tls_key: Path
    tls_ca: Path
    coordinators: tuple[str, ...]
    datasets: tuple[DatasetConfig, ...]
    max_workers: int = 8
    max_concurrent_rpcs: int = 32

    def dataset(self, name: str) -> DatasetConfig | None:
        for d in self.datasets:
            if d.schema.name == name:
                return d
        return None


class _Table:
    """One TOML table plus where it came from, so every error names the file and the full key."""

    def __init__(self, file: Path, prefix: str, table: Any) -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(table, dict):
            raise self.error("", f"must be a table; write it as [{prefix}]")
        self.table: dict[str, Any] = table

    def key(self, key: str) -> str:
        if not key:
            return self.prefix or "(top level)"
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(key)}: {problem}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"allowed keys: {', '.join(sorted(allowed))}"
                raise self.error(key, f"unknown key; {hint}")

    def has(self, key: str) -> bool:
        return key in self.table

    def get(self, key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                where = f" under [{self.prefix}]" if self.prefix else ""
                raise self.error(key, f"is required; add `{key} = ...`{where}")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise self.error(
                key, f"must be {_a(_KIND_NAMES.get(kind, kind.__name__))}, not {_a(_toml_type(value))}"
            )
        return value

    def sub(self, key: str, *, required: bool = False) -> _Table:
        if key not in self.table:
            if required:
                raise self.error(key, f"missing; add a [{self.key(key)}] table")
            return _Table(self.file, self.key(key), {})
        return _Table(self.file, self.key(key), self.table[key])

    def path(self, key: str) -> Path:
        raw = self.get(key, str, required=True)
        if not raw:
            raise self.error(key, "is empty; give a file path")
        p = Path(raw).expanduser()
        return p if p.is_absolute() else self.file.parent / p


_KIND_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "table"}
_ARTICLE = {"integer": "an integer"}


def _a(noun: str) -> str:
    return _ARTICLE.get(noun, f"a {noun}")


def _toml_type(value: object) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def load_node_config(path: str | Path) -> NodeConfig:
    """Read and validate a node config file. Raises :class:`ConfigError` naming the file and key."""
    file = Path(path)
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{file}: no such file; pass the node config with --config") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{file}: cannot read the file ({err.__class__.__name__}); check its permissions"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{file}: not valid TOML: {err}; fix the syntax") from None

    top = _Table(file, "", data)
    top.check_keys({"node", "tls", "access", "datasets"})

    node = top.sub("node", required=True)
    node.check_keys(_NODE_KEYS)
    name = node.get("name", str, required=True)
    if not _NAME.match(name):
        raise node.error(
            "name", f"{name!r} is not a certificate name; use lower-case letters, digits and '-'"
        )
    listen = node.get("listen", str, required=True)
    if not _ADDRESS.match(listen):
        raise node.error("listen", f'{listen!r} is not host:port; write for example "127.0.0.1:50051"')
    max_workers = node.get("max_workers", int, 8)
    if not 1 <= max_workers <= 1024:
        raise node.error("max_workers", "must be between 1 and 1024; 8 is a good start")
    max_rpcs = node.get("max_concurrent_rpcs", int, 32)
    if not 1 <= max_rpcs <= 65536:
        raise node.error("max_concurrent_rpcs", "must be between 1 and 65536; 32 is a good start")

    tls = top.sub("tls", required=True)
    tls.check_keys({"cert", "key", "ca"})
    cert, key, ca = tls.path("cert"), tls.path("key"), tls.path("ca")

    access = top.sub("access", required=True)
    access.check_keys({"coordinators"})
    coordinators = access.get("coordinators", list, required=True)
    if not coordinators or not all(isinstance(c, str) and _NAME.match(c) for c in coordinators):
        raise access.error(
            "coordinators", 'list the coordinator certificate names allowed to query, e.g. ["coordinator"]'
        )
    if len(set(coordinators)) != len(coordinators):
        raise access.error("coordinators", "lists a name twice; remove the duplicate")

    datasets_table = top.sub("datasets", required=True)
    if not datasets_table.table:
        raise datasets_table.error("", "no datasets configured; add a [datasets.NAME] table")
    datasets = tuple(_dataset(datasets_table.sub(n), n) for n in datasets_table.table)

    return NodeConfig(
        name=name,
        listen=listen,
        tls_cert=cert,
        tls_key=key,
        tls_ca=ca,
        coordinators=tuple(coordinators),
        datasets=datasets,
        max_workers=max_workers,
        max_concurrent_rpcs=max_rpcs,
    )


def _dataset(t: _Table, name: str) -> DatasetConfig:
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
    if not path.is_file():
        raise t.error(
            "path", f"no such file {str(path)!r}; fix the path (relative paths start at the config's folder)"
        )
    description = t.get("description", str, "")
    privacy_unit = t.get("privacy_unit", str, required=True)
    k = t.get("max_rows_per_person", int, 1)
    if k < 1:
        raise t.error("max_rows_per_person", "must be at least 1")
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
        schema = DatasetSchema(name, columns, privacy_unit, k, description)
    except ConfigError as err:
        raise t.error("", err.message) from None
    return DatasetConfig(schema, path, fmt, on_violation)


def _column(t: _Table, name: str) -> ColumnSpec:
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


def _category(t: _Table, ctype: ColumnType, value: object) -> Literal:
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
        raise t.error(
            "categories",
            f"{value!r} is a {_toml_type(value)}, but the column is {ctype.value}; list {ctype.value} values",
        )
    assert isinstance(value, (str, int, float, bool))
    return value
