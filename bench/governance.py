"""Suite "governance": what agreements, budgets and consent add to a node's answers.

Two measurements, each against a reference measured in the same run, interleaved:

* ``checks`` (1M rows; 20k in quick mode): the node's answer path with every governance check
  (the agreement: party, dates, caps, the view and every field's use; the budget ledger read and
  charged; the consent register's version read) against the same node with those checks taken out
  (the query compiled against the whole dataset, nothing charged, no register), both with the
  in-memory state so the disk is not measured here (``answer_path`` measures it). Target: at most
  1 ms more at p50 per answer.
* ``consent`` (the largest size: 10M rows; 20k in quick mode): DP answers under an agreement whose
  purpose has 10% of the people opted out in the consent register, against plain DuckDB computing
  the same aggregate over the same people (the same file, the opted-out people left out with the
  same anti-join on a table of their identifiers): the cost of honouring consent inside Accord over
  the cost of the exclusion itself. Target: within 1.5x. Rows also carry the ratio against the plain
  aggregate over everyone (``ratio_vs_plain_all``), for context.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from accord.node.config import load_node_config
from accord.node.consent import ConsentRegister
from accord.node.server import build_service
from accord.node.service import NodeService
from accord.node.servicer import serialize_release
from accord.node.state import MemoryState
from accord.policies.consent import ConsentRecord, ConsentStatus
from accord.policies.gate import Grant
from accord.policies.identity import Identity
from bench.common import BenchConfig, Row, median, p95
from bench.data import AGREEMENT, COORDINATOR, PLAIN, QUERIES, analyst_signer, ensure_dataset, node_config
from bench.local import _interleaved

__all__ = ["run"]

SUITE = "governance"
EPSILON = "1"
CHECK_TASKS = ("count", "groupby12", "filtered_count")
CHECKS_TARGET_MS = 1.0
CONSENT_TARGET = 1.5
OPTED_OUT = 10  # percent
PURPOSE = "TO-BE-COMPLETED"  # the bench agreement is a draft: its purpose code is the draft's


class _Ungoverned(NodeService):
    """The reference: the same answer path without agreement checks, budget or consent."""

    def _granted(self, draft, verified):  # type: ignore[no-untyped-def]
        grant = self.gate.authorise(verified)  # only to find the Agreement object; its checks are
        schemas = {s.name: s for s in self.schemas}  # cheap dict lookups, measured in both variants
        query = self._compile(verified.request.sql, tuple(schemas[k] for k in sorted(schemas)))
        return Grant(grant.agreement, schemas), query

    def _charge(self, agreement, analyst, epsilon):  # type: ignore[no-untyped-def]
        return None

    def _persons(self, agreement):  # type: ignore[no-untyped-def]
        return None


def _checks(cfg: BenchConfig) -> list[Row]:
    rows = 20_000 if cfg.quick else 1_000_000
    reps = 40 if cfg.quick else 400
    data = ensure_dataset(cfg, rows, multi=False)
    folder = cfg.work / "governance" / uuid.uuid4().hex[:8]
    config = load_node_config(node_config(data, out=folder / "node.toml"))
    governed = build_service(config, state=MemoryState(config.name))
    ungoverned = build_service(config, state=MemoryState(config.name))
    ungoverned.__class__ = _Ungoverned
    caller = Identity("coordinator", COORDINATOR)
    signer = analyst_signer(config.tls_ca.parent)
    out: list[Row] = []
    try:
        for task in CHECK_TASKS:
            sql = QUERIES[task]

            def ask(service: NodeService, sql: str = sql) -> object:
                envelope = signer.sign(str(uuid.uuid4()), sql, EPSILON, AGREEMENT, now=datetime.now(UTC))
                return service.answer(caller, envelope, serialize_release)

            gov_s, ref_s = _interleaved([lambda: ask(governed), lambda: ask(ungoverned)], reps, 5)
            overhead_ms = (median(gov_s) - median(ref_s)) * 1000
            out.append(Row(SUITE, "accord-ungoverned", f"checks_{task}", rows, epsilon=1.0,
                           median_s=median(ref_s), p95_s=p95(ref_s)))  # fmt: skip
            out.append(
                Row(
                    SUITE,
                    "accord-governed",
                    f"checks_{task}",
                    rows,
                    epsilon=1.0,
                    median_s=median(gov_s),
                    p95_s=p95(gov_s),
                    note="signing is outside both (the analyst's work)",
                    extra={
                        "overhead_ms": round(overhead_ms, 3),
                        "target_ms": CHECKS_TARGET_MS,
                        "met": overhead_ms <= CHECKS_TARGET_MS,
                        "reps": reps,
                    },
                )
            )
            print(
                f"   governance checks {task:<16} governed {median(gov_s) * 1e3:7.2f} ms  ungoverned "
                f"{median(ref_s) * 1e3:7.2f} ms  overhead {overhead_ms:+.2f} ms "
                f"(target ≤ {CHECKS_TARGET_MS})",
                flush=True,
            )
    finally:
        governed.close()
        ungoverned.close()
    return out


def _opted_out(data: Path, folder: Path) -> tuple[Path, Path]:
    """A consent register withdrawing every tenth person of ``data`` for the bench purpose, and
    the same identifiers as a Parquet file for plain DuckDB (both written once per data file)."""
    register_path = folder / f"{data.stem}.consent.sqlite3"
    ids_path = folder / f"{data.stem}.opted-out.parquet"
    if register_path.is_file() and ids_path.is_file():
        return register_path, ids_path
    folder.mkdir(parents=True, exist_ok=True)
    people = pq.read_table(data, columns=["person_id"]).column("person_id").unique().to_pylist()
    out = sorted(p for p in people if p % (100 // OPTED_OUT) == 3)
    when = datetime(2026, 11, 1, tzinfo=UTC)
    tmp = register_path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    register = ConsentRegister(tmp)
    try:
        batch = [ConsentRecord(str(p), PURPOSE, ConsentStatus.WITHDRAWN, when, "bench") for p in out]
        register.add(batch, when)
    finally:
        register.close()
    for suffix in ("-wal", "-shm"):
        Path(str(tmp) + suffix).unlink(missing_ok=True)
    tmp.rename(register_path)
    pq.write_table(pa.table({"person_id": pa.array(out, pa.int64())}), ids_path)
    return register_path, ids_path


def _consent(cfg: BenchConfig) -> list[Row]:
    rows = max(cfg.sizes)
    data = ensure_dataset(cfg, rows, multi=False)
    folder = cfg.work / "governance"
    register, ids = _opted_out(data, folder)
    config = load_node_config(
        node_config(data, out=folder / f"consent-{uuid.uuid4().hex[:8]}.toml", consent=register)
    )
    service = build_service(config, state=MemoryState(config.name))
    caller = Identity("coordinator", COORDINATOR)
    signer = analyst_signer(config.tls_ca.parent)
    con = duckdb.connect()
    con.execute(f"CREATE TABLE opted_out AS SELECT person_id FROM read_parquet('{ids}')")
    source = f"read_parquet('{data}')"
    consented = f"(SELECT * FROM {source} WHERE person_id NOT IN (SELECT person_id FROM opted_out))"
    out: list[Row] = []
    try:
        for task, sql in QUERIES.items():
            excluded_sql = PLAIN[task].format(source=consented)
            all_sql = PLAIN[task].format(source=source)

            def ours(sql: str = sql) -> object:
                envelope = signer.sign(str(uuid.uuid4()), sql, EPSILON, AGREEMENT, now=datetime.now(UTC))
                return service.answer(caller, envelope, serialize_release)

            def duck(q: str = excluded_sql) -> object:
                return con.execute(q).fetchall()

            def duck_all(q: str = all_sql) -> object:
                return con.execute(q).fetchall()

            ours_s, duck_s, all_s = _interleaved([ours, duck, duck_all], cfg.reps, cfg.warmup)
            ratio = median(ours_s) / median(duck_s)
            out.append(Row(SUITE, "duckdb-same-people", f"consent_{task}", rows,
                           median_s=median(duck_s), p95_s=p95(duck_s),
                           note=f"{OPTED_OUT}% of people left out by an anti-join"))  # fmt: skip
            out.append(
                Row(
                    SUITE,
                    "accord",
                    f"consent_{task}",
                    rows,
                    epsilon=1.0,
                    median_s=median(ours_s),
                    p95_s=p95(ours_s),
                    note=f"{OPTED_OUT}% of people opted out in the consent register",
                    extra={
                        "ratio_vs_duckdb": round(ratio, 3),
                        "ratio_vs_plain_all": round(median(ours_s) / median(all_s), 3),
                        "target_ratio": CONSENT_TARGET,
                        "met": ratio <= CONSENT_TARGET,
                    },
                )
            )
            print(
                f"   governance consent {task:<16} {rows:>11,} rows  accord {median(ours_s) * 1e3:8.2f} ms  "
                f"duckdb (same people) {median(duck_s) * 1e3:8.2f} ms  ratio {ratio:5.2f} "
                f"(target ≤ {CONSENT_TARGET}); plain over everyone {median(all_s) * 1e3:8.2f} ms",
                flush=True,
            )
    finally:
        con.close()
        service.close()
    return out


def run(cfg: BenchConfig) -> list[Row]:
    started = time.perf_counter()
    rows = _checks(cfg) + _consent(cfg)
    print(f"   governance suite: {time.perf_counter() - started:.1f} s", flush=True)
    return rows
