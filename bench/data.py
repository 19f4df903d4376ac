"""The benchmark data: a synthetic citizens table, its node config, and the standard queries.

Public names other suites rely on (keep them stable):

* :data:`QUERIES` — task name → Accord SQL on dataset ``citizens`` (``count``, ``sum``, ``mean``,
  ``groupby12``, ``filtered_count``). :data:`PLAIN` holds the same aggregates as plain DuckDB SQL
  with ``{source}`` where the file goes (:func:`plain_sql` fills it in): the limit Accord is
  compared with.
* :func:`ensure_dataset` ``(cfg, rows, multi) -> Path`` — the Parquet file with ``rows`` rows,
  generated once into ``cfg.work`` and reused (deterministic: same seed, same bytes).
  ``multi=False``: one row per person. ``multi=True``: "contacts", several rows per person
  (1-5, mean ~2.5), so a node with ``max_rows_per_person`` < 5 must bound contributions.
* :func:`node_config` ``(data, *, ...) -> Path`` — writes a node TOML declaring ``citizens`` over
  ``data`` (public bounds and categories below, :func:`citizens_schema`) with the node's own config
  writer and returns its path.
* :data:`DATASET`, :data:`REGIONS`, :data:`COORDINATOR` — the dataset name, the 12 public regions,
  the coordinator name the written configs allow.

Columns (all non-NULL): ``person_id`` int64, ``region`` string (12 categories, uneven sizes),
``age`` int 0-100, ``income`` int 0-500000 (log-normal, ~8% zeros, heavy right tail),
``household_size`` int 1-10, ``benefit`` bool. Every value lies inside its declared bounds and
categories, so the node's load-time checks pass with ``on_violation = "reject"``.

Files are written with row groups of 122,880 rows (DuckDB's own default), so both DuckDB and the
node can scan them on every core.
"""

from __future__ import annotations

import os
from datetime import UTC, date, datetime, timedelta
from fractions import Fraction
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from cryptography import x509

from accord.node.config import DatasetConfig, NodeConfig, StateConfig
from accord.node.config_writer import write_node_config
from accord.policies.agreement_draft import draft_agreement
from accord.policies.identity import Identity
from accord.policies.pki import CA_CERT, init_federation, leaf_paths
from accord.policies.signing import QuerySigner
from accord.query.epsilon import Epsilon
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.rpc.fairness import FairnessConfig
from accord.rpc.transport import dns_names
from bench.common import BenchConfig

__all__ = [
    "AGREEMENT",
    "ANALYST",
    "COORDINATOR",
    "DATASET",
    "PLAIN",
    "QUERIES",
    "REGIONS",
    "analyst_signer",
    "citizens_schema",
    "ensure_dataset",
    "ensure_pki",
    "generate",
    "node_config",
    "plain_sql",
]

DATASET = "citizens"
COORDINATOR = "coordinator"
SEED = 20240601
ROW_GROUP = 122_880
MAX_ROWS_PER_PERSON = 5  # in the multi-row variant
INCOME_MAX = 500_000

REGIONS = (
    "north-east",
    "north-west",
    "yorkshire",
    "east-midlands",
    "west-midlands",
    "east",
    "london",
    "south-east",
    "south-west",
    "wales",
    "scotland",
    "northern-ireland",
)
_REGION_WEIGHTS = np.array([4.0, 11.0, 8.0, 7.0, 9.0, 9.5, 13.5, 14.0, 8.5, 4.7, 8.3, 2.8])

QUERIES: dict[str, str] = {
    "count": f"SELECT COUNT(*) FROM {DATASET}",
    "sum": f"SELECT SUM(income) FROM {DATASET}",
    "mean": f"SELECT AVG(income) FROM {DATASET}",
    "groupby12": f"SELECT region, COUNT(*) FROM {DATASET} GROUP BY region",
    "filtered_count": f"SELECT COUNT(*) FROM {DATASET} WHERE age >= 65 AND benefit = TRUE",
}
"""Task name → Accord SQL. Every suite runs these, so their numbers line up."""

PLAIN: dict[str, str] = {
    "count": "SELECT count(*) FROM {source}",
    "sum": "SELECT sum(income) FROM {source}",
    "mean": "SELECT avg(income) FROM {source}",
    "groupby12": "SELECT region, count(*) FROM {source} GROUP BY region",
    "filtered_count": "SELECT count(*) FROM {source} WHERE age >= 65 AND benefit = TRUE",
}
"""Task name → the same aggregate in plain DuckDB SQL (no bounding, no clamping, no noise)."""


def plain_sql(task: str, path: Path) -> str:
    """The plain DuckDB query of ``task`` reading the Parquet file ``path`` directly."""
    return PLAIN[task].format(source="read_parquet(" + _sql_string(str(path)) + ")")


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def generate(rows: int, multi: bool, seed: int = SEED) -> pa.Table:
    """The citizens table with exactly ``rows`` rows (deterministic for a given seed)."""
    rng = np.random.default_rng([seed, rows, int(multi)])
    if multi:
        # Rows per person 1..5 (mean 2.5); persons are drawn until there are enough rows and the
        # last person is cut short. Rows are then shuffled so a person's rows are scattered.
        per_person = rng.choice(
            np.arange(1, MAX_ROWS_PER_PERSON + 1), size=rows, p=[0.3, 0.25, 0.2, 0.15, 0.1]
        )
        ends = np.cumsum(per_person)
        persons = int(np.searchsorted(ends, rows)) + 1
        counts = per_person[:persons].copy()
        counts[-1] -= int(ends[persons - 1]) - rows
        person_of_row = rng.permutation(np.repeat(np.arange(persons), counts))
    else:
        persons = rows
        person_of_row = np.arange(rows)
    ids = rng.permutation(persons).astype(np.int64) + 1_000_000  # opaque, unordered ids
    # Person attributes (the same on each of a person's rows) ...
    region = rng.choice(len(REGIONS), size=persons, p=_REGION_WEIGHTS / _REGION_WEIGHTS.sum())
    age = np.minimum(rng.gamma(4.0, 10.0, size=persons), 100).astype(np.int64)
    household = np.minimum(rng.geometric(0.4, size=persons), 10).astype(np.int64)
    # ... and row attributes (per contact in the multi-row variant).
    income = np.minimum(rng.lognormal(10.1, 0.9, size=rows), INCOME_MAX).astype(np.int64)
    income[rng.random(rows) < 0.08] = 0
    p_benefit = np.where(age[person_of_row] >= 65, 0.6, 0.15)
    benefit = rng.random(rows) < p_benefit
    return pa.table(
        {
            "person_id": pa.array(ids[person_of_row], type=pa.int64()),
            "region": pc.take(pa.array(REGIONS, type=pa.string()), pa.array(region[person_of_row])),
            "age": pa.array(age[person_of_row], type=pa.int64()),
            "income": pa.array(income, type=pa.int64()),
            "household_size": pa.array(household[person_of_row], type=pa.int64()),
            "benefit": pa.array(benefit, type=pa.bool_()),
        }
    )


def ensure_dataset(cfg: BenchConfig, rows: int, multi: bool) -> Path:
    """The Parquet file of :func:`generate` ``(rows, multi)`` in ``cfg.work``, written once.

    The file is written to a temporary name and renamed, so a reader (or a run interrupted half
    way) never sees a partial file under the final name."""
    path = cfg.work / f"citizens_{rows}{'_multi' if multi else ''}.parquet"
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    table = generate(rows, multi)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        pq.write_table(table, tmp, row_group_size=ROW_GROUP, compression="snappy")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


ANALYST = "bench-analyst"
NODE = "bench"
AGREEMENT = "bench"
"""The agreement every benchmark node holds: every field, every use, a budget no run exhausts."""


BENCH_FAIRNESS = FairnessConfig(max_in_flight=10_000, per_minute=1_000_000, burst=1_000_000)
"""Benchmarks measure the federation's speed, not one analyst's share of it: no per-analyst limit."""


def ensure_pki(folder: Path) -> Path:
    """A development PKI in ``folder`` (a coordinator, node ``bench`` and analyst ``bench-analyst``),
    made once and reused while its CA is valid for another week; returns ``folder``. In-process
    suites need it: a node checks every signed query against its CA."""
    ca = folder / CA_CERT
    node_cert, _ = leaf_paths(folder, "node", NODE)
    if ca.is_file() and node_cert.is_file():
        cert = x509.load_pem_x509_certificate(ca.read_bytes())
        named = Identity("node", NODE).server_name in dns_names(
            x509.load_pem_x509_certificate(node_cert.read_bytes())
        )  # certificates from before servers were verified by name and role are made again
        if named and cert.not_valid_after_utc > datetime.now(UTC) + timedelta(days=7):
            return folder
    init_federation(folder, COORDINATOR, (NODE,), (ANALYST,), force=True)
    return folder


def analyst_signer(pki: Path, name: str = ANALYST) -> QuerySigner:
    """What the analyst ``name`` of ``pki`` signs queries with."""
    cert, key = leaf_paths(pki, "analyst", name)
    return QuerySigner.from_pem(key.read_bytes(), cert.read_bytes())


def citizens_schema(max_rows_per_person: int = 1) -> DatasetSchema:
    """The public metadata of ``citizens``: the generator's bounds and categories."""
    integer = ColumnType.INTEGER
    return DatasetSchema(
        DATASET,
        (
            ColumnSpec("person_id", integer),
            ColumnSpec("region", ColumnType.STRING, categories=REGIONS),
            ColumnSpec("age", integer, 0, 100),
            ColumnSpec("income", integer, 0, INCOME_MAX),
            ColumnSpec("household_size", integer, 1, 10),
            ColumnSpec("benefit", ColumnType.BOOLEAN, categories=(True, False)),
        ),
        "person_id",
        max_rows_per_person,
    )


def node_config(
    data: Path,
    *,
    out: Path | None = None,
    name: str = NODE,
    listen: str = "127.0.0.1:0",
    max_rows_per_person: int = 1,
    on_violation: str = "reject",
    pki: Path | None = None,
    coordinators: tuple[str, ...] = (COORDINATOR,),
    max_workers: int = 8,
    state: StateConfig | None = None,
    analysts: tuple[str, ...] = (ANALYST,),
    min_group_size: int = 0,
    consent: Path | None = None,
    answer_seconds: float = 0.0,
    report_node_seconds: bool = False,
) -> Path:
    """Write a node config serving ``data`` as dataset ``citizens`` (with the node's own config
    writer); return the TOML's path.

    ``out`` defaults to ``<data>.<name>.k<max_rows_per_person>.toml`` beside the data. The
    ``[tls]`` paths point into ``pki`` (a folder made by :func:`accord.policies.pki.init_federation`,
    certificates as ``nodes/<name>.pem``; by default :func:`ensure_pki` beside the data: the node
    checks signed queries against its CA). ``state`` defaults to the memory backend (the in-process suites
    measure answers, not restarts; the state row measures SQLite against it). Bounds and categories
    are the generator's (see the module docstring). Beside it, ``<out>.agreements/`` holds the
    agreement :data:`AGREEMENT` covering ``analysts`` (with ``min_group_size``); ``consent`` is
    the consent register's path (default beside the config). Answers are not padded unless
    ``answer_seconds`` says so (the suites measure the engine; ``timing`` measures padding)."""
    if out is None:
        out = data.with_name(f"{data.stem}.{name}.k{max_rows_per_person}.toml")
    tls = (pki if pki is not None else ensure_pki(data.parent / "pki")).resolve()
    config = NodeConfig(
        name=name,
        listen=listen,
        tls_cert=tls / "nodes" / f"{name}.pem",
        tls_key=tls / "nodes" / f"{name}.key",
        tls_ca=tls / "ca.pem",
        coordinators=coordinators,
        datasets=(
            DatasetConfig(citizens_schema(max_rows_per_person), data.resolve(), "parquet", on_violation),
        ),
        state=state or StateConfig("memory"),
        agreements_dir=out.with_name(out.stem + ".agreements"),
        consent_path=consent or out.with_name(out.stem + ".consent.sqlite3"),
        max_workers=max_workers,
        max_epsilon=Epsilon(Fraction(100)),
        fairness=BENCH_FAIRNESS,
        answer_seconds=answer_seconds,
        report_node_seconds=report_node_seconds,
    )
    config.agreements_dir.mkdir(parents=True, exist_ok=True)
    schemas = {d.schema.name: d.schema for d in config.datasets}
    text = draft_agreement(
        AGREEMENT,
        name,
        schemas,
        analysts,
        per_query="100",
        per_analyst="1000000",
        total="1000000",
        min_group_size=min_group_size,
        valid_from=date(2000, 1, 1),
        valid_until=date(2999, 12, 31),
    )
    (config.agreements_dir / f"{AGREEMENT}.toml").write_text(text, encoding="utf-8")
    return write_node_config(config, out)
