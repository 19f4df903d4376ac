"""Suite "answer_path": what verifying the analyst's signature and recording every answer durably
add to a node's answer, measured in one process against the node without them.

One node over the same file, three ways, on the same queries with fresh query ids, interleaved
(``reference``, ``verified``, ``durable``, then the reverse order, ...) so all three see the same
machine:

* ``reference``: the node's answer path with the signature checks skipped (the envelope is only
  decoded) and the in-memory state: what a node did before signed queries and durable state;
* ``verified``: the real checks (certificate chain, role, validity, signature, freshness) and the
  in-memory state;
* ``unlogged``: the real checks and the SQLite state (write-ahead log, ``synchronous = FULL``: one
  fsync per answer, before the release is returned), on the benchmark's own disk, but without
  the audit-log entry (the same state file, through a wrapper that drops the entry): the
  reference for what the audit log adds;
* ``durable``: all of it, the decision's audit-log entry (and the Merkle blocks it completes)
  written in the same transaction as the answer.

The analyst signs ahead of time, untimed (signing is the analyst's work, measured on its own as
``extra["sign_s"]``). Reported per task: the p50 of each variant and the overhead of ``durable``
over ``reference`` (target: at most 2 ms at p50), and of ``durable`` over ``unlogged``: the audit
log's cost (target: at most 0.5 ms at p50).
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from cryptography import x509

from accord.node.config import NodeConfig, load_node_config
from accord.node.server import build_service
from accord.node.servicer import serialize_release
from accord.node.state import Answer, MemoryState, NodeState, SqliteState
from accord.policies.budget import Charge
from accord.policies.identity import Identity, identity_from_certificate
from accord.policies.signing import QueryPayload, QuerySigner, SignedQuery
from accord.policies.verifying import QueryVerifier, VerifiedQuery
from bench.common import BenchConfig, Row, median, p95
from bench.data import AGREEMENT, COORDINATOR, QUERIES, analyst_signer, ensure_dataset, node_config

__all__ = ["run"]

SUITE = "answer_path"
TASKS = ("count", "groupby12")
TARGET_MS = 2.0
AUDIT_TARGET_MS = 0.5
EPSILON = "1"


class _TrustingVerifier(QueryVerifier):
    """The reference: decodes the envelope and believes it (no chain, no signature, no clock)."""

    def __init__(self) -> None:  # no CA needed: nothing is checked
        pass

    def verify(self, signed: SignedQuery, now: datetime | None = None, kind: str = "query") -> VerifiedQuery:
        payload = QueryPayload.decode(signed.payload)
        identity: Identity = identity_from_certificate(x509.load_der_x509_certificate(signed.certificate))
        return VerifiedQuery(identity, payload, payload.request())


def _rows(cfg: BenchConfig) -> int:
    return 20_000 if cfg.quick else 1_000_000


def _reps(cfg: BenchConfig) -> int:
    return 40 if cfg.quick else 400


class _Unlogged:
    """The same SQLite state, writing no audit-log entry: the reference for what the log adds (both
    variants share one file and one connection, so they pay the same fsyncs)."""

    def __init__(self, inner: SqliteState) -> None:
        self._inner = inner

    def record(self, answer: Answer, charge: Charge | None = None, entries: Sequence[bytes] = ()) -> Answer:
        return self._inner.record(answer, charge)

    def append(
        self,
        entries: Sequence[bytes],
        refusal: tuple[str, str] | None = None,
        seen: Mapping[tuple[str, str], str] | None = None,
    ) -> int:
        return 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def _answerers(config: NodeConfig, state_file: Path) -> dict[str, Callable[[SignedQuery], bytes]]:
    caller = Identity("coordinator", COORDINATOR)
    reference = build_service(config, state=MemoryState())
    reference._verifier = _TrustingVerifier()
    verified = build_service(config, state=MemoryState())
    state = SqliteState(state_file, config.name)
    unlogged = build_service(config, state=cast(NodeState, _Unlogged(state)))
    durable = build_service(config, state=state)
    return {
        name: (lambda s, service=service: service.answer(caller, s, serialize_release))
        for name, service in (
            ("reference", reference),
            ("verified", verified),
            ("unlogged", unlogged),
            ("durable", durable),
        )
    }


def measure(cfg: BenchConfig) -> list[Row]:
    rows = _rows(cfg)
    data = ensure_dataset(cfg, rows, multi=False)
    config = load_node_config(node_config(data))
    signer: QuerySigner = analyst_signer(config.tls_ca.parent)
    state_file = cfg.work / "answer-path" / f"state-{uuid.uuid4().hex[:8]}.sqlite3"
    answerers = _answerers(config, state_file)
    reps = _reps(cfg)
    out: list[Row] = []
    try:
        for task in TASKS:
            sql = QUERIES[task]
            order = list(answerers)
            times: dict[str, list[float]] = {name: [] for name in order}
            sign_times: list[float] = []
            for i in range(reps + 5):  # 5 warm-up rounds, not recorded
                for name in order if i % 2 == 0 else reversed(order):
                    t0 = time.perf_counter()
                    envelope = signer.sign(str(uuid.uuid4()), sql, EPSILON, AGREEMENT, now=datetime.now(UTC))
                    signed_at = time.perf_counter()
                    answerers[name](envelope)
                    done = time.perf_counter()
                    if i >= 5:
                        times[name].append(done - signed_at)
                        sign_times.append(signed_at - t0)
            ref = median(times["reference"])
            for name in order:
                overhead_ms = (median(times[name]) - ref) * 1000
                extra: dict[str, object] = {"overhead_ms": overhead_ms, "reps": reps}
                if name == "durable":
                    extra["target_ms"] = TARGET_MS
                    extra["verify_ms"] = (median(times["verified"]) - ref) * 1000
                    extra["state_ms"] = (median(times["unlogged"]) - median(times["verified"])) * 1000
                    extra["audit_ms"] = (median(times["durable"]) - median(times["unlogged"])) * 1000
                    extra["audit_target_ms"] = AUDIT_TARGET_MS
                    extra["sign_s"] = statistics.median(sign_times)
                out.append(
                    Row(
                        SUITE,
                        f"accord-{name}",
                        task,
                        rows,
                        epsilon=float(EPSILON),
                        median_s=median(times[name]),
                        p95_s=p95(times[name]),
                        extra=extra,
                    )
                )
    finally:
        for suffix in ("", "-wal", "-shm", ".lock"):
            Path(str(state_file) + suffix).unlink(missing_ok=True)
    return out


def run(cfg: BenchConfig) -> list[Row]:
    rows = measure(cfg)
    for r in rows:
        print(
            f"{r.system:>16} {r.task:>10}: p50 {r.median_s * 1000:.2f} ms (+{r.extra['overhead_ms']:.2f} ms)",  # type: ignore[operator]
            flush=True,
        )
    return rows
