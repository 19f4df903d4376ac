"""Issue 10: an analyst learns nothing from how long an answer takes that the released numbers do not
already tell. Answer times on neighbouring inputs cannot be told apart by a two-sample test, and
the same test does tell them apart when padding is off.

Setting: real node servers, started in-process over mTLS from their TOML as in the integration
tests, asked directly with the coordinator's certificate (the coordinator adds a constant, and
its own trailer is off by default). ``county`` pads answers to its budget; ``district-a`` serves
the same files with ``answer_seconds = 0`` (padding off). Each serves three datasets over the
same rows:

* ``base``: ``ROWS`` persons, one row each (``max_rows_per_person = 1``);
* ``added``: ``base`` plus one person;
* ``extra``: ``base`` where one person has ``EXTRA`` more rows than the limit (before issue 10 this
  alone switched the bounding window on: 8 ms became 57 ms).

Pairs compared, each with the same query shape:

1. one person added: the same query on ``base`` and ``added``;
2. one person with rows beyond the limit: on ``base`` and ``extra``;
3. WHERE keeping few or many rows: ``v < 10`` and ``v < 990`` on ``base`` (1% or 99% of the rows).

Samples of a pair are taken interleaved (ABBA), so the load other processes put on the shared
machine falls on both sides alike. The test is Kolmogorov-Smirnov (scipy ``ks_2samp``) at
``ALPHA``: with padding, each pair must *not* be rejected (a correct node fails this with
probability ALPHA per pair). Its power is stated from the samples themselves: resampling the
pooled padded times, shifting one side by ``delta`` and testing again gives the probability the
test detects a shift of ``delta``; the test reports the smallest shift it detects with
probability >= 0.9 (``detectable_shift``), and checks that it is smaller than the difference
padding hides (the medians of pair 3 without padding), so a pass is not a blind test's pass.
The variant without padding must be rejected (pair 3: it is what the test catches).

The slow test (``make test-slow``) takes ``SLOW_SAMPLES`` answers per side; the quick one (in the
default suite) takes a few per side on a small dataset and checks pair 2 only.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from scipy import stats

from accord.node.config import DatasetConfig
from accord.policies.identity import Identity
from accord.protos.rpcstatus import error_from_rpc
from accord.protos.v1 import node_pb2_grpc
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.rpc.serving import RunningServer
from accord.rpc.transport import secure_channel
from tests.conftest import TestPki
from tests.integration.federation import link_certs, node_config, start_nodes, write_node
from tests.signing import answer_request, sign

ALPHA = 0.001
"""Significance of every KS test: a correctly padded pair is rejected with this probability."""
POWER = 0.9
SHIFTS_MS = (0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0)
"""The shifts whose detection probability is estimated (the smallest with >= POWER is reported)."""
RESAMPLES = 300
EXTRA = 3  # rows beyond max_rows_per_person = 1 for one person in ``extra``
PADDED, UNPADDED = "county", "district-a"
COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER),
    ColumnSpec("v", ColumnType.INTEGER, 0, 999),
    ColumnSpec("g", ColumnType.STRING, categories=("a", "b")),
)
PERSON_SQL = "SELECT g, COUNT(*) AS n, SUM(v) AS s FROM {ds} WHERE v < 900 GROUP BY g"
WHERE_SQL = "SELECT g, COUNT(*) AS n, SUM(v) AS s FROM base WHERE v < {cut} GROUP BY g"


def _write(path: Path, pids: np.ndarray) -> Path:
    v = (pids * 7919) % 1000  # spread evenly over 0..999, unrelated to the row order
    g = np.where(pids % 2 == 0, "a", "b")
    pq.write_table(pa.table({"pid": pids, "v": v, "g": g}), path, row_group_size=50_000)
    return path


def _datasets(folder: Path, rows: int) -> tuple[DatasetConfig, ...]:
    folder.mkdir(parents=True, exist_ok=True)
    base = np.arange(rows, dtype=np.int64)
    files = {
        "base": _write(folder / "base.parquet", base),
        "added": _write(folder / "added.parquet", np.append(base, rows)),
        "extra": _write(folder / "extra.parquet", np.append(base, np.full(EXTRA, 7, dtype=np.int64))),
    }
    return tuple(
        DatasetConfig(DatasetSchema(name, COLUMNS, "pid", 1), path.resolve(), "parquet")
        for name, path in files.items()
    )


@dataclass
class Nodes:
    pki: TestPki
    servers: dict[str, RunningServer]
    budget: float

    def asker(self, node: str) -> Iterator[Callable[[str], float]]:
        """A function answering ``sql`` on ``node`` and returning the seconds the client waited
        (a fresh signed query each time; signing is not timed)."""
        channel = secure_channel(
            f"127.0.0.1:{self.servers[node].port}", self.pki.coordinator, Identity("node", node)
        )
        stub = node_pb2_grpc.NodeServiceStub(channel)
        alice = self.pki.analyst("alice")

        def ask(sql: str) -> float:
            request = answer_request(sign(alice, sql, "0.01", f"timing-{uuid.uuid4()}"))
            started = time.perf_counter()
            try:
                stub.Answer(request, timeout=60)
            except grpc.RpcError as err:
                raise AssertionError(f"{node} failed: {error_from_rpc(err, node)}") from None
            return time.perf_counter() - started

        try:
            yield ask
        finally:
            channel.close()


def _start(root: Path, pki: TestPki, rows: int, budget: float) -> Iterator[Nodes]:
    link_certs(root, pki)
    datasets = _datasets(root / "data", rows)
    configs = {
        PADDED: write_node(root, node_config(root, PADDED, datasets, answer_seconds=budget)),
        UNPADDED: write_node(root, node_config(root, UNPADDED, datasets, answer_seconds=0.0)),
    }
    servers = start_nodes(configs)
    try:
        yield Nodes(pki, servers, budget)
    finally:
        for server in servers.values():
            server.stop(grace=0)


def sample_pair(
    ask: Callable[[str], float], a: str, b: str, n: int, warmup: int = 3
) -> tuple[list[float], list[float]]:
    """``n`` answer times (seconds) of ``a`` and of ``b``, interleaved ABBA after a warm-up."""
    for _ in range(warmup):
        ask(a)
        ask(b)
    xs: list[float] = []
    ys: list[float] = []
    for i in range(n):
        if i % 2 == 0:
            xs.append(ask(a))
            ys.append(ask(b))
        else:
            ys.append(ask(b))
            xs.append(ask(a))
    return xs, ys


def ks_p(xs: list[float] | np.ndarray, ys: list[float] | np.ndarray) -> float:
    return float(stats.ks_2samp(xs, ys).pvalue)


def detectable_shift(xs: list[float], ys: list[float], n: int) -> float:
    """The smallest shift (ms) of :data:`SHIFTS_MS` that the KS test at :data:`ALPHA` detects with
    probability >= :data:`POWER` between two samples of ``n`` drawn from the pooled times (the
    jitter a padded node really shows), by resampling; ``inf`` if none is."""
    pooled = np.asarray(xs + ys)
    draw = np.random.default_rng(20261203)  # test resampling only; never noise
    for shift_ms in SHIFTS_MS:
        hits = sum(
            ks_p(draw.choice(pooled, n), draw.choice(pooled, n) + shift_ms / 1000) < ALPHA
            for _ in range(RESAMPLES)
        )
        if hits / RESAMPLES >= POWER:
            return shift_ms
    return float("inf")


def _ms(seconds: list[float]) -> str:
    return f"p50 {1000 * statistics.median(seconds):.1f} ms"


# ---- slow: every pair, with the power stated ----------------------------------------------------

SLOW_ROWS = 300_000
SLOW_SAMPLES = 60
SLOW_BUDGET = 0.4


@pytest.fixture(scope="module")
def slow_nodes(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    yield from _start(tmp_path_factory.mktemp("timing-slow"), pki, SLOW_ROWS, SLOW_BUDGET)


@pytest.mark.slow
def test_neighbouring_answer_times_cannot_be_told_apart(slow_nodes: Nodes) -> None:
    """With padding no pair is told apart at ALPHA, by a test that detects a shift smaller than
    the difference padding hides with probability >= POWER; without padding the WHERE pair is."""
    pairs = {
        "one person added": (PERSON_SQL.format(ds="base"), PERSON_SQL.format(ds="added")),
        "one person with extra rows": (PERSON_SQL.format(ds="base"), PERSON_SQL.format(ds="extra")),
        "WHERE keeps 1% or 99%": (WHERE_SQL.format(cut=10), WHERE_SQL.format(cut=990)),
    }
    n = SLOW_SAMPLES
    report = []
    for ask in slow_nodes.asker(UNPADDED):
        few, many = sample_pair(ask, *pairs["WHERE keeps 1% or 99%"], n)
    hidden_ms = 1000 * (statistics.median(many) - statistics.median(few))
    p_unpadded = ks_p(few, many)
    report.append(f"unpadded WHERE pair: {_ms(few)} vs {_ms(many)}, KS p = {p_unpadded:.2g}")
    shifts = []
    for ask in slow_nodes.asker(PADDED):
        for name, (a, b) in pairs.items():
            xs, ys = sample_pair(ask, a, b, n)
            assert min(xs + ys) >= slow_nodes.budget  # never earlier than the budget
            p = ks_p(xs, ys)
            shift = detectable_shift(xs, ys, n)
            shifts.append(shift)
            report.append(
                f"padded {name}: {_ms(xs)} vs {_ms(ys)}, KS p = {p:.3g}, "
                f"detects a {shift:g} ms shift with probability >= {POWER} at n = {n}"
            )
            assert p > ALPHA, "\n".join(report)
    print("\n".join(report))
    assert p_unpadded < ALPHA, "\n".join(report)  # the test catches the variant without padding
    assert max(shifts) < hidden_ms, "\n".join(report)  # and is sharp enough to see what padding hides


# ---- quick: one pair, a few samples ---------------------------------------------------------------

QUICK_ROWS = 20_000
QUICK_SAMPLES = 12
QUICK_BUDGET = 0.15


@pytest.fixture(scope="module")
def quick_nodes(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nodes]:
    yield from _start(tmp_path_factory.mktemp("timing-quick"), pki, QUICK_ROWS, QUICK_BUDGET)


def test_padded_answers_leave_at_the_budget_whoever_has_extra_rows(quick_nodes: Nodes) -> None:
    """Quick check (the full audit is the slow test above): a person with rows beyond the limit
    does not move padded answer times (KS at ALPHA), none leaves before its budget."""
    for ask in quick_nodes.asker(PADDED):
        xs, ys = sample_pair(
            ask, PERSON_SQL.format(ds="base"), PERSON_SQL.format(ds="extra"), QUICK_SAMPLES, warmup=1
        )
    assert min(xs + ys) >= quick_nodes.budget
    assert ks_p(xs, ys) > ALPHA, (_ms(xs), _ms(ys))
