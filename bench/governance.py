"""Suite "governance": what agreements, budgets and consent add to a node's answers.

Two measurements, each against a reference measured in the same run, interleaved:

* ``checks`` (1M rows; 20k in quick mode): the node's answer path with every governance check
  (the agreement: party, dates, caps, the view and every field's use; the budget ledger read and
  charged; the consent register's version read) against the same node with those checks taken out
  (the query compiled against the whole dataset, nothing charged, no register), both with the
  in-memory state so the disk is not measured here (``answer_path`` measures it). Target: at most
  1 ms more at p50 per answer.
* ``hardening`` (1M rows; 20k in quick mode): what issue 10's per-call checks add to each answer:
  the caller gate every server runs on every call (identity from the certificate, role, lookup in
  a CRL of 1,000 revoked certificates) and the per-analyst limits (token bucket and slots), timed
  directly and reported against the node's COUNT(*) answer measured in the same run. Target: at
  most 1% of the answer.
* ``consent`` (the largest size: 10M rows; 20k in quick mode): DP answers under an agreement whose
  purpose has 10% of the people opted out in the consent register, against plain DuckDB computing
  the same aggregate over the same people (the same file, the opted-out people left out with the
  same anti-join on a table of their identifiers): the cost of honouring consent inside Accord over
  the cost of the exclusion itself. Target: within 1.5x. Rows also carry the ratio against the plain
  aggregate over everyone (``ratio_vs_plain_all``), for context.
"""

from __future__ import annotations

import shutil
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from accord.node.config import load_node_config
from accord.node.consent import ConsentRegister
from accord.node.server import build_service
from accord.node.service import NodeService
from accord.node.servicer import serialize_release
from accord.node.state import MemoryState
from accord.policies.consent import ConsentRecord, ConsentStatus
from accord.policies.gate import Grant
from accord.policies.identity import Identity
from accord.policies.pki import CA_CERT, CA_KEY, issue, leaf_paths
from accord.policies.pki_crl import revoke
from accord.policies.revocation import CRL_FILE, CrlFile
from accord.rpc.callers import CallerGate
from accord.rpc.fairness import AnalystLimits, FairnessConfig
from bench.common import BenchConfig, Row, median, p95
from bench.data import AGREEMENT, COORDINATOR, PLAIN, QUERIES, analyst_signer, ensure_dataset, node_config
from bench.local import _interleaved

__all__ = ["run"]

SUITE = "governance"
EPSILON = "1"
CHECK_TASKS = ("count", "groupby12", "filtered_count")
CHECKS_TARGET_MS = 1.0
HARDENING_TARGET = 0.01
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


class _Context:
    """What the caller gate reads from a gRPC call: the client certificate in the auth context."""

    def __init__(self, pem: bytes) -> None:
        self._auth = {"x509_pem_cert": [pem]}

    def auth_context(self) -> dict[str, list[bytes]]:
        return self._auth

    def abort_with_status(self, status: object) -> None:  # pragma: no cover - the bench caller is allowed
        raise RuntimeError(f"the bench caller was refused: {status}")


def _hardening(cfg: BenchConfig) -> list[Row]:
    rows = 20_000 if cfg.quick else 1_000_000
    reps = 40 if cfg.quick else 400
    data = ensure_dataset(cfg, rows, multi=False)
    folder = cfg.work / "governance" / uuid.uuid4().hex[:8]
    config = load_node_config(node_config(data, out=folder / "node.toml"))
    pki = config.tls_ca.parent
    ca_dir = folder / "ca"
    ca_dir.mkdir(parents=True)
    for name in (CA_CERT, CA_KEY):
        shutil.copy(pki / name, ca_dir / name)
    issued = issue(ca_dir, ca_dir / "revoked", "analyst", "gone")
    revoke(ca_dir, issued.cert)  # a real revocation, then 999 more serials in a CRL the CA signs
    ca_key = serialization.load_pem_private_key((ca_dir / CA_KEY).read_bytes(), password=None)
    crl = x509.load_pem_x509_crl((ca_dir / CRL_FILE).read_bytes())
    builder = x509.CertificateRevocationListBuilder().issuer_name(crl.issuer)
    builder = builder.last_update(crl.last_update_utc).next_update(crl.next_update_utc or crl.last_update_utc)
    now = datetime.now(UTC)
    for entry in crl:
        builder = builder.add_revoked_certificate(entry)
    for _ in range(999):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(x509.random_serial_number())
            .revocation_date(now)
            .build()
        )
    signed = builder.add_extension(x509.CRLNumber(2), critical=False).sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]
    (ca_dir / CRL_FILE).write_bytes(signed.public_bytes(serialization.Encoding.PEM))
    cas = [x509.load_pem_x509_certificate((ca_dir / CA_CERT).read_bytes())]
    gate = CallerGate(frozenset({"coordinator"}), CrlFile(ca_dir / CRL_FILE, cas))
    context = _Context(leaf_paths(pki, "coordinator", COORDINATOR)[0].read_bytes())
    limits = AnalystLimits(
        FairnessConfig(per_minute=1_000_000, burst=1_000_000)
    )  # never refuses: time the bookkeeping
    service = build_service(config, state=MemoryState(config.name))
    caller = Identity("coordinator", COORDINATOR)
    signer = analyst_signer(pki)

    def answer() -> object:
        envelope = signer.sign(str(uuid.uuid4()), QUERIES["count"], EPSILON, AGREEMENT, now=datetime.now(UTC))
        return service.answer(caller, envelope, serialize_release)

    def checks() -> None:
        for _ in range(100):  # one call's checks take microseconds: time a hundred
            gate.check(context)
            with limits.admit(f"analyst-{_ % 4}"):
                pass

    try:
        answer_s, checks_s = _interleaved([answer, checks], reps, 5)
    finally:
        service.close()
    per_call_ms = median(checks_s) * 1000 / 100
    ratio = per_call_ms / (median(answer_s) * 1000)
    print(
        f"   hardening checks: {per_call_ms * 1000:.1f} µs a call against a {median(answer_s) * 1e3:.2f} ms "
        f"COUNT(*) answer ({ratio:.2%}; target ≤ {HARDENING_TARGET:.0%})",
        flush=True,
    )
    return [
        Row(
            SUITE,
            "accord-node",
            "hardening_count",
            rows,
            epsilon=1.0,
            median_s=median(answer_s),
            p95_s=p95(answer_s),
            note="the reference: a COUNT(*) answer, in process",
        ),
        Row(
            SUITE,
            "accord-caller-gate+fairness",
            "hardening_count",
            rows,
            median_s=median(checks_s) / 100,
            note="caller gate (identity, role, CRL of 1,000) + per-analyst limits, per call",
            extra={"ratio_of_answer": round(ratio, 5), "target_ratio_of_answer": HARDENING_TARGET},
        ),
    ]


def run(cfg: BenchConfig) -> list[Row]:
    started = time.perf_counter()
    rows = _checks(cfg) + _hardening(cfg) + _consent(cfg)
    print(f"   governance suite: {time.perf_counter() - started:.1f} s", flush=True)
    return rows
