"""A real federation end to end: node servers and a coordinator over mTLS on loopback, started
in-process from TOML files written to a temporary folder, over the shared census sample and a
small synthetic population. The truth is computed independently (``csv`` module, pyarrow).

Noise checks are deterministic in practice: a released number must lie within 10 noise scales of
the truth (a Laplace draw is that far out with probability ~e^-10), and every interval's half
width must equal the one derived here from the stated scale.
"""

from __future__ import annotations

import json
import math
import socket
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

from accord.coordinator.client import AccordClient
from accord.coordinator.config import load_coordinator_config, write_coordinator_config
from accord.coordinator.server import SERVICE_NAME as COORDINATOR_SERVICE
from accord.coordinator.server import start_coordinator
from accord.demo.datasets import NODES as DEMO_NODES
from accord.demo.layout import DemoLayout, demo_coordinator_config, write_demo_federation
from accord.errors import (
    ConfigError,
    DataError,
    InvalidQuery,
    NotFound,
    PartialFailure,
    PermissionDenied,
)
from accord.node.config import load_node_config
from accord.node.config_writer import write_node_config
from accord.node.server import SERVICE_NAME as NODE_SERVICE
from accord.node.server import start_node
from accord.policies.identity import Identity
from accord.policies.pki import issue
from accord.policies.signing import SignedQuery
from accord.protos import convert
from accord.protos.v1 import coordinator_pb2, node_pb2, node_pb2_grpc
from accord.query.epsilon import Epsilon
from accord.query.release import Estimate, Mechanism, Release
from accord.rpc.serving import RunningServer
from accord.rpc.timing import NODE_SECONDS, seconds_from_metadata
from accord.rpc.transport import TlsFiles, secure_channel
from tests.conftest import TestPki
from tests.integration.federation import (
    LISTEN,
    OPEN,
    PUMS_DUP,
    PUMS_PID,
    RACES,
    TIMEOUT,
    UNLIMITED,
    Federation,
    bounded_row_count,
    coordinator_config,
    copy_census,
    discrete_laplace_half_width,
    laplace_half_width,
    link_certs,
    node_config,
    open_demo_nodes,
    pums_dataset,
    read_census,
    start_federation,
    start_nodes,
    two_discrete_laplace_half_width,
    two_laplace_half_width,
    write_coordinator,
    write_node,
    write_open_agreement,
)
from tests.paths import CENSUS
from tests.signing import answer_request, sign, submit_request

FAR = 10  # noise scales: a released value further than this from the truth is a bug

# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pums_fed(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    """county and district-a both hold ``pums`` (the same 1,000 persons); county also holds the
    duplicated-rows file three times with max_rows_per_person 1, 2 and 4."""
    root = tmp_path_factory.mktemp("pums-federation")
    link_certs(root, pki)
    copy_census(root, PUMS_PID, PUMS_DUP)
    county = [pums_dataset(root, "pums", PUMS_PID)]
    for name, k in (("census_rows", 1), ("census_rows_k2", 2), ("census_rows_k4", 4)):
        county.append(pums_dataset(root, name, PUMS_DUP, k=k, description="one row per census answer"))
    configs = {
        "county": write_node(root, node_config(root, "county", county)),
        "district-a": write_node(
            root, node_config(root, "district-a", [pums_dataset(root, "pums", PUMS_PID)])
        ),
    }
    fed = start_federation(root, pki, configs)
    yield fed
    fed.stop()


@pytest.fixture(scope="module")
def demo_fed(
    pki: TestPki, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Federation, DemoLayout]]:
    """The synthetic county and two districts (write_demo_federation), from the TOML it writes."""
    root = tmp_path_factory.mktemp("demo-federation")
    layout = write_demo_federation(
        root,
        people_per_authority=300,
        seed=11,
        ports=dict.fromkeys((*DEMO_NODES, "coordinator"), 0),
        answer_seconds=0.0,
        secure_aggregation=False,  # these tests are of independent noise and partial answers
    )
    link_certs(root, pki)
    open_demo_nodes(layout.node_configs)
    nodes = start_nodes(layout.node_configs)
    try:
        ports = {n: r.port for n, r in nodes.items()}
        write_coordinator_config(
            demo_coordinator_config(root, ports, 0, fairness=UNLIMITED), layout.coordinator_config
        )
        running, service = start_coordinator(load_coordinator_config(layout.coordinator_config), LISTEN)
    except BaseException:
        for r in nodes.values():
            r.stop(grace=0)
        raise
    fed = Federation(root, pki, nodes, running, service)
    yield fed, layout
    fed.stop()


@pytest.fixture(scope="module")
def census() -> list[dict[str, Any]]:
    return read_census(CENSUS / PUMS_PID)


@pytest.fixture(scope="module")
def census_dup() -> list[dict[str, Any]]:
    return read_census(CENSUS / PUMS_DUP)


# ---- helpers -----------------------------------------------------------------------------------


def near(estimate: Estimate, truth: float) -> bool:
    return abs(estimate.value - truth) <= FAR * estimate.noise_scale


def half_width(estimate: Estimate) -> float:
    low, high = estimate.value - estimate.ci_low, estimate.ci_high - estimate.value
    assert low == pytest.approx(high, rel=1e-9, abs=1e-9), "the interval is not centred on the value"
    return high


def node_release(fed: Federation, node: str, signed: SignedQuery) -> tuple[bytes, Release]:
    """Ask one node directly, as the coordinator: the reply's bytes and the release."""
    channel, stub = fed.node_stub(node)
    with channel:
        reply = stub.Answer(answer_request(signed), timeout=TIMEOUT)
    return reply.SerializeToString(deterministic=True), convert.release_from_pb(reply)


def rpc_failure(call: Any, request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


def details(err: grpc.RpcError) -> list[Any]:
    """The unpacked rich-status details of a failed call."""
    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    out: list[Any] = []
    for detail in status.details:
        for cls in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.QuotaFailure,
        ):
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                out.append(msg)
    return out


def alice_signs(pki: TestPki, sql: str, epsilon: str = "1", query_id: str | None = None) -> SignedQuery:
    """``sql`` signed by analyst alice of the session PKI."""
    return sign(pki.analyst("alice"), sql, epsilon, query_id)


def group_truth(
    rows: list[dict[str, Any]], column: str, values: tuple[Any, ...]
) -> dict[Any, dict[str, float]]:
    out = {v: {"n": 0.0, "income": 0.0, "age": 0.0} for v in values}
    for r in rows:
        g = out[r[column]]
        g["n"] += 1
        g["income"] += r["income"]
        g["age"] += r["age"]
    return out


# ---- 1. end to end -----------------------------------------------------------------------------

GROUPED = (
    "SELECT race, COUNT(*) AS people, SUM(income) AS total_income, AVG(age) AS mean_age "
    "FROM pums GROUP BY race"
)


def test_grouped_release_has_every_category_and_calibrated_intervals(
    pums_fed: Federation, census: list[dict[str, Any]]
) -> None:
    """A federated COUNT/SUM/AVG GROUP BY returns every declared category in declared order (the
    empty races 7 and 8 too), names both contributing nodes, and each number is near the truth
    with the noise scale and 95% interval that its calibration implies: epsilon 1 split over 4
    measurements gives each node b = k/(1/4) for counts, 500000·4 for SUM(income), 100·4 for the
    age sum; two nodes combine to scale sqrt(2)·b and the exact half width of the sum of two
    Laplace noises."""
    with pums_fed.client() as client:
        release = client.query_release(GROUPED, "1")
    assert release.contributing_nodes == ("county", "district-a")
    assert release.missing == {} and not release.partial
    assert release.dataset == "pums" and release.epsilon == Epsilon.parse("1")
    assert [row.group for row in release.rows] == [(r,) for r in RACES]
    assert [c.name for c in release.columns] == ["race", "people", "total_income", "mean_age"]

    truth = group_truth(census, "race", RACES)
    assert truth[7]["n"] == truth[8]["n"] == 0
    b_count, b_income, b_age = 4.0, 2_000_000.0, 400.0
    h_count = two_discrete_laplace_half_width(b_count)
    h_income = two_laplace_half_width(b_income)
    h_age = two_discrete_laplace_half_width(b_age)
    for row in release.rows:
        t = truth[row.group[0]]
        people, income, mean = row.cells
        assert people.estimate.mechanism is Mechanism.DISCRETE_LAPLACE
        assert people.estimate.noise_scale == pytest.approx(math.sqrt(2) * b_count)
        assert people.estimate.value == int(people.estimate.value)
        assert near(people.estimate, 2 * t["n"]), (row.group, people.estimate, 2 * t["n"])
        assert half_width(people.estimate) == h_count

        assert income.estimate.mechanism is Mechanism.LAPLACE
        assert income.estimate.noise_scale == pytest.approx(math.sqrt(2) * b_income)
        assert near(income.estimate, 2 * t["income"])
        assert half_width(income.estimate) == pytest.approx(h_income, rel=1e-6)

        assert mean.estimate.mechanism is Mechanism.RATIO and mean.estimate.noise_scale == 0
        assert mean.sum is not None and mean.count is not None
        assert mean.sum.noise_scale == pytest.approx(math.sqrt(2) * b_age)
        assert near(mean.sum, 2 * t["age"]) and near(mean.count, 2 * t["n"])
        assert mean.estimate.ci_low <= mean.estimate.value <= mean.estimate.ci_high
        # The parts carry their own 95% intervals. At this scale the coordinator uses its
        # documented conservative bound (continuous answer + 1 per term): valid, within 1%.
        assert h_age <= half_width(mean.sum) <= 1.01 * h_age


def test_single_node_intervals_match_the_stated_scale(
    pums_fed: Federation, census_dup: list[dict[str, Any]]
) -> None:
    """With one contributing node the interval is the textbook one: b·ln(20) for a Laplace sum,
    and the smallest h with P(|X| > h) <= 5% for a discrete Laplace count."""
    with pums_fed.client() as client:
        release = client.query_release("SELECT COUNT(*) AS n, SUM(income) AS s FROM census_rows", "1/2")
    assert release.contributing_nodes == ("county",)
    (row,) = release.rows
    n, s = row.cells
    # epsilon 1/2 over two measurements: 1/4 each; k = 1.
    assert n.estimate.noise_scale == 4.0 and s.estimate.noise_scale == 2_000_000.0
    assert half_width(n.estimate) == discrete_laplace_half_width(4.0)
    assert half_width(s.estimate) == pytest.approx(laplace_half_width(2_000_000.0), rel=1e-9)
    assert near(n.estimate, bounded_row_count(census_dup, 1))


def test_client_table_has_the_documented_columns(pums_fed: Federation) -> None:
    """The analyst's pyarrow.Table: group columns typed from their values, then per aggregate its
    value and 95% interval (int64 for counts, float64 otherwise) and noise scale (float64), then
    ``nodes``; the schema metadata carries the query id, dataset, epsilon and the partial flag."""
    query_id = f"table-{uuid.uuid4()}"
    with pums_fed.client() as client:
        table = client.query(GROUPED, "1", query_id=query_id)
        booleans = client.query("SELECT married, COUNT(*) FROM pums GROUP BY married", "1")
    aggregates = ["people", "total_income", "mean_age"]
    expected = ["race"]
    for a in aggregates:
        expected += [a, f"{a}_ci_low", f"{a}_ci_high", f"{a}_noise_scale"]
    assert table.column_names == [*expected, "nodes"]
    assert table.num_rows == len(RACES)
    assert table.schema.field("race").type == pa.int64()
    assert table.column("race").to_pylist() == list(RACES)
    for name in expected[1:]:
        integral = name.startswith("people") and not name.endswith("_noise_scale")
        assert table.schema.field(name).type == (pa.int64() if integral else pa.float64()), name
    assert table.schema.field("nodes").type == pa.string()
    assert set(table.column("nodes").to_pylist()) == {"county,district-a"}
    meta = table.schema.metadata
    assert meta[b"accord.query_id"] == query_id.encode()
    assert meta[b"accord.dataset"] == b"pums"
    assert meta[b"accord.partial"] == b"false"
    assert meta[b"accord.epsilon"] == b"1"
    low, value, high = (table.column(f"people{s}").to_pylist() for s in ("_ci_low", "", "_ci_high"))
    assert all(lo <= v <= hi for lo, v, hi in zip(low, value, high, strict=True))

    assert booleans.column_names == [
        "married",
        "count",
        "count_ci_low",
        "count_ci_high",
        "count_noise_scale",
        "nodes",
    ]
    assert booleans.schema.field("married").type == pa.bool_()
    assert booleans.column("married").to_pylist() == [True, False]


# ---- 2. combination ----------------------------------------------------------------------------


def test_federated_values_are_exact_combinations_of_node_releases(
    pums_fed: Federation, census: list[dict[str, Any]]
) -> None:
    """The coordinator adds counts and sums across nodes and computes AVG as combined sum /
    combined count (not a mean of means). Each node's own release for the same query id (asked
    afterwards, so it is the stored one) is combined here by hand and must match exactly; two
    nodes over the same file give about twice the truth."""
    query_id, sql = str(uuid.uuid4()), GROUPED.replace("race", "sex")
    with pums_fed.client() as client:
        fed = client.query_release(sql, "1", query_id=query_id)
    parts = {
        n: node_release(pums_fed, n, alice_signs(pums_fed.pki, sql, "1", query_id))[1]
        for n in ("county", "district-a")
    }
    truth = group_truth(census, "sex", (0, 1))
    assert [r.group for r in fed.rows] == [(0,), (1,)]
    for i, row in enumerate(fed.rows):
        node_rows = [parts[n].rows[i] for n in sorted(parts)]
        assert all(r.group == row.group for r in node_rows)
        people, income, mean = row.cells
        assert people.estimate.value == sum(r.cells[0].estimate.value for r in node_rows)
        assert income.estimate.value == pytest.approx(math.fsum(r.cells[1].estimate.value for r in node_rows))
        assert income.estimate.noise_scale == pytest.approx(
            math.sqrt(math.fsum(r.cells[1].estimate.noise_scale ** 2 for r in node_rows))
        )
        sums = [r.cells[2].sum for r in node_rows]
        counts = [r.cells[2].count for r in node_rows]
        assert all(s is not None for s in sums) and all(c is not None for c in counts)
        total = math.fsum(s.value for s in sums if s is not None)
        count = math.fsum(c.value for c in counts if c is not None)
        assert mean.sum is not None and mean.count is not None
        assert mean.sum.value == total and mean.count.value == count
        assert mean.estimate.value == pytest.approx(total / max(count, 1.0))
        t = truth[row.group[0]]
        assert near(people.estimate, 2 * t["n"]) and near(income.estimate, 2 * t["income"])
        assert near(mean.sum, 2 * t["age"]) and near(mean.count, 2 * t["n"])


def _demo_truth(layout: DemoLayout, dataset: str, nodes: tuple[str, ...]) -> dict[str, int]:
    out: dict[str, int] = {}
    for node in nodes:
        table = pq.read_table(layout.data[node][dataset], columns=["district"])
        for entry in pc.value_counts(table.column("district")).to_pylist():
            out[entry["values"]] = out.get(entry["values"], 0) + entry["counts"]
    return out


def test_counts_add_across_different_populations(demo_fed: tuple[Federation, DemoLayout]) -> None:
    """Three authorities with different people: the federated count per district is the sum of
    what each holds (district-a has nobody in Southdale: its empty group still contributes a
    noisy zero), with the combined scale sqrt(3)·b."""
    fed, layout = demo_fed
    with fed.client() as client:
        release = client.query_release("SELECT district, COUNT(*) AS n FROM citizens GROUP BY district", "1")
    assert release.contributing_nodes == DEMO_NODES and not release.partial
    truth = _demo_truth(layout, "citizens", DEMO_NODES)
    assert [r.group for r in release.rows] == [("Northbrook",), ("Southdale",)]
    for row in release.rows:
        (cell,) = row.cells
        assert cell.estimate.noise_scale == pytest.approx(math.sqrt(3))
        assert near(cell.estimate, truth[row.group[0]]), (row.group, cell.estimate, truth)


# ---- 3. contribution bounding ------------------------------------------------------------------


@pytest.mark.parametrize(("dataset", "k"), [("census_rows", 1), ("census_rows_k2", 2), ("census_rows_k4", 4)])
def test_rows_per_person_are_bounded(
    pums_fed: Federation, census_dup: list[dict[str, Any]], dataset: str, k: int
) -> None:
    """On PUMS_dup.csv (1,948 rows of 1,000 persons, 1-4 rows each) a count keeps at most
    max_rows_per_person rows per person: with k = 1 it is near the number of distinct persons,
    not the number of rows, and the noise scale is k/epsilon (the sensitivity is k)."""
    assert len(census_dup) == 1948 and len({r["pid"] for r in census_dup}) == 1000
    with pums_fed.client() as client:
        total = client.query_release(f"SELECT COUNT(*) AS n FROM {dataset}", "1")
        by_sex = client.query_release(f"SELECT sex, COUNT(*) AS n FROM {dataset} GROUP BY sex", "1")
    (row,) = total.rows
    estimate = row.cells[0].estimate
    assert estimate.noise_scale == k
    assert near(estimate, bounded_row_count(census_dup, k)), (estimate, bounded_row_count(census_dup, k))
    if k == 1:
        assert abs(estimate.value - len(census_dup)) > 500
    for group in by_sex.rows:
        rows = [r for r in census_dup if r["sex"] == group.group[0]]
        assert near(group.cells[0].estimate, bounded_row_count(rows, k))


def test_county_only_dataset_is_bounded_and_not_partial(demo_fed: tuple[Federation, DemoLayout]) -> None:
    """service_contacts is held by the county alone (max 3 rows per person): the districts are not
    reported missing, and each service's count is near the bounded truth."""
    fed, layout = demo_fed
    with fed.client() as client:
        release = client.query_release(
            "SELECT service, COUNT(*) AS n FROM service_contacts GROUP BY service", "1"
        )
    assert release.contributing_nodes == ("county",) and not release.partial
    table = pq.read_table(layout.data["county"]["service_contacts"], columns=["person_id", "service"])
    per_person: dict[str, list[str]] = {}
    for pid, service in zip(*(table.column(c).to_pylist() for c in ("person_id", "service")), strict=True):
        per_person.setdefault(pid, []).append(service)
    assert max(len(s) for s in per_person.values()) > 3  # bounding has work to do
    # Which 3 of a person's rows are kept is the engine's choice, so per service the truth lies
    # between: the rows of that service that must survive (n_s - (n - 3)) and those that may (min(n_s, 3)).
    for row in release.rows:
        (cell,) = row.cells
        assert cell.estimate.noise_scale == 3
        counts = [(services.count(row.group[0]), len(services)) for services in per_person.values()]
        lower = sum(max(0, n_s - max(0, n - 3)) for n_s, n in counts)
        upper = sum(min(n_s, 3) for n_s, n in counts)
        assert lower - FAR * 3 <= cell.estimate.value <= upper + FAR * 3, (row.group, lower, upper)
    total = sum(r.cells[0].estimate.value for r in release.rows)
    bounded = sum(min(len(s), 3) for s in per_person.values())
    # The total carries the noise of all groups: scale 3·sqrt(groups) as one Laplace would.
    tolerance = FAR * 3 * math.sqrt(len(release.rows))
    assert abs(total - bounded) <= tolerance
    assert table.num_rows - bounded > 2 * tolerance  # the unbounded count would be far off


# ---- 4. partial answers ------------------------------------------------------------------------


def _free_address() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def small_fed(pki: TestPki, tmp_path: Path) -> Iterator[Federation]:
    """county and district-a hold ``pums``: a federation a test may break."""
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    configs = {
        n: write_node(tmp_path, node_config(tmp_path, n, [pums_dataset(tmp_path, "pums", PUMS_PID)]))
        for n in ("county", "district-a")
    }
    fed = start_federation(tmp_path, pki, configs, deadline=5)
    yield fed
    fed.stop()


def test_stopped_node_is_named_in_a_partial_answer(
    small_fed: Federation, census: list[dict[str, Any]]
) -> None:
    """After district-a stops (RunningServer.stop), the answer combines county alone, is marked
    partial and names district-a as missing, and the node list shows it unreachable at once; with
    require_all the query fails with PartialFailure naming it, on the wire UNAVAILABLE with
    ErrorInfo(NODES_MISSING) listing it."""
    sql = "SELECT COUNT(*) AS n FROM pums"
    with small_fed.client() as client:
        whole = client.query_release(sql, "1")
        assert whole.contributing_nodes == ("county", "district-a") and not whole.partial
        assert near(whole.rows[0].cells[0].estimate, 2 * len(census))

        small_fed.stop_node("district-a")
        partial = client.query_release(sql, "1")
        assert partial.contributing_nodes == ("county",)
        assert set(partial.missing) == {"district-a"} and partial.partial
        assert near(partial.rows[0].cells[0].estimate, len(census))  # one node's people, not two
        table = client.query(sql, "1")
        assert table.schema.metadata[b"accord.partial"] == b"true"
        assert json.loads(table.schema.metadata[b"accord.missing"]).keys() == {"district-a"}
        # the failed call marks the node down at once, not after the catalog cache expires
        listed = {n["name"]: n for n in client.nodes()}
        assert not listed["district-a"]["reachable"] and listed["county"]["reachable"]

        with pytest.raises(PartialFailure) as info:
            client.query_release(sql, "1", require_all=True)
    assert set(info.value.missing) == {"district-a"}
    assert "district-a" in info.value.message

    channel, stub = small_fed.coordinator_stub()
    with channel:
        err = rpc_failure(stub.Submit, submit_request(alice_signs(small_fed.pki, sql), require_all=True))
    assert err.code() == grpc.StatusCode.UNAVAILABLE
    (info_detail,) = [d for d in details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert info_detail.reason == "NODES_MISSING"
    assert set(info_detail.metadata) == {"district-a"}


def test_node_never_reached_is_missing_and_require_all_asks_nobody(
    pums_fed: Federation, pki: TestPki, tmp_path: Path
) -> None:
    """A coordinator listing a node that has never answered (nothing listens at its address)
    reports it missing as unreachable, since it might hold the dataset. With require_all the query
    fails before any node is asked: the same query id then still works for a different query,
    which a node that had answered it would refuse."""
    link_certs(tmp_path, pki)
    addresses = {n: pums_fed.node_address(n) for n in pums_fed.nodes} | {"district-b": _free_address()}
    path = write_coordinator(tmp_path, coordinator_config(tmp_path, addresses))
    running, service = start_coordinator(load_coordinator_config(path), listen=LISTEN)
    try:
        with AccordClient(f"127.0.0.1:{running.port}", pki.analyst(), agreement=OPEN) as client:
            release = client.query_release("SELECT COUNT(*) AS n FROM pums", "1")
            assert release.contributing_nodes == ("county", "district-a")
            assert set(release.missing) == {"district-b"} and "unreachable" in release.missing["district-b"]

            query_id = f"require-all-{uuid.uuid4()}"
            with pytest.raises(PartialFailure) as info:
                client.query_release(
                    "SELECT COUNT(*) AS n FROM pums", "1", require_all=True, query_id=query_id
                )
            assert set(info.value.missing) == {"district-b"}
            other = client.query_release("SELECT SUM(age) AS years FROM pums", "1", query_id=query_id)
            assert other.contributing_nodes == ("county", "district-a")
    finally:
        running.stop(grace=0)
        service.close()


# ---- 5. retries --------------------------------------------------------------------------------


def test_retry_with_the_same_id_returns_the_same_release(pums_fed: Federation) -> None:
    """The same query id answers with the same release (no fresh noise): through the coordinator
    the combined release is equal, and each node returns byte-identical replies, also to the same
    query signed again later with the epsilon written another way (0.5 is 1/2). A new id gets new
    noise."""
    sql = "SELECT educ, COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY educ"
    query_id = f"retry-{uuid.uuid4()}"
    with pums_fed.client() as client:
        first = client.query_release(sql, "0.5", query_id=query_id)
        again = client.query_release(sql, "0.5", query_id=query_id)
        fresh = client.query_release(sql, "0.5")
    assert again == first
    assert [r.cells[1].estimate.value for r in fresh.rows] != [r.cells[1].estimate.value for r in first.rows]
    for node in ("county", "district-a"):
        payload_1, release_1 = node_release(pums_fed, node, alice_signs(pums_fed.pki, sql, "1/2", query_id))
        payload_2, _ = node_release(pums_fed, node, alice_signs(pums_fed.pki, sql, "0.50", query_id))
        assert payload_1 == payload_2
        assert release_1.query_id == query_id and release_1.node == node


def test_server_timings_are_not_sent_unless_the_operators_opt_in(pums_fed: Federation) -> None:
    """Timings are disclosures (issue 10): by default the coordinator sends analysts neither its own
    handler time nor the slowest node's, and a node sends the coordinator no handler time. The
    operators opt in with ``report_coordinator_seconds``/``report_node_timings`` and
    ``[timing] report_node_seconds`` (the benchmark does; tests/bench covers it)."""
    sql = "SELECT COUNT(*) AS n FROM pums"
    with pums_fed.client() as client:
        release, timing = client.query_release_timed(sql, "0.5")
    assert release.contributing_nodes == ("county", "district-a")
    assert timing.coordinator_seconds is None and timing.slowest_node_seconds is None
    channel, stub = pums_fed.node_stub("county")
    with channel:
        _, call = stub.Answer.with_call(answer_request(alice_signs(pums_fed.pki, sql)), timeout=TIMEOUT)
    assert seconds_from_metadata(call.trailing_metadata(), NODE_SECONDS) is None


def test_reusing_an_id_for_another_query_is_refused_end_to_end(pums_fed: Federation) -> None:
    """An id an analyst reused for different SQL or another epsilon is refused by every node
    (PERMISSION_DENIED, reason QUERY_ID_REUSED); the coordinator passes the nodes' common refusal
    on with its type."""
    query_id = f"reuse-{uuid.uuid4()}"
    with pums_fed.client() as client:
        client.query_release("SELECT COUNT(*) FROM pums", "1", query_id=query_id)
        with pytest.raises(PermissionDenied) as info:
            client.query_release("SELECT SUM(age) FROM pums", "1", query_id=query_id)
        with pytest.raises(PermissionDenied) as again:
            client.query_release("SELECT COUNT(*) FROM pums", "2", query_id=query_id)
    assert info.value.reason == again.value.reason == "QUERY_ID_REUSED"
    assert "already used" in info.value.message and "fresh id" in info.value.message


# ---- 6. rejections cross the wire as rich status -----------------------------------------------

INVALID, UNKNOWN = grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND
Invalid = InvalidQuery
REJECTED = [
    # (federation, sql, error class, gRPC code, BadRequest field, message fragment)
    ("pums", "SELEC COUNT(*) FROM pums", Invalid, INVALID, "sql", "syntax error"),
    ("pums", "SELECT COUNT(*) FROM nosuch", NotFound, UNKNOWN, "from", "nosuch"),
    ("demo", "SELECT SUM(district) FROM citizens", Invalid, INVALID, "select", "district"),
    ("pums", "SELECT pid, COUNT(*) FROM pums GROUP BY pid", Invalid, INVALID, "group_by", "pid"),
    ("demo", "SELECT COUNT(*) FROM citizens GROUP BY person_id", Invalid, INVALID, "group_by", "person_id"),
    ("pums", "SELECT race, COUNT(*) FROM pums GROUP BY race ORDER BY 2", Invalid, INVALID, None, "ORDER BY"),
    ("pums", "SELECT COUNT(*) FROM pums LIMIT 5", Invalid, INVALID, None, "LIMIT"),
    ("pums", "SELECT age, income FROM pums", Invalid, INVALID, "select", "GROUP BY"),  # row-level
]  # fmt: skip


def test_an_unknown_column_is_refused_as_outside_the_agreement(pums_fed: Federation) -> None:
    """Every query is asked under an agreement, and a column the agreement does not grant is refused
    alike whether it is hidden or does not exist (PERMISSION_DENIED, FIELD_NOT_IN_AGREEMENT, naming
    the agreement and suggesting only granted columns)."""
    channel, stub = pums_fed.coordinator_stub()
    with channel:
        err = rpc_failure(
            stub.Submit, submit_request(alice_signs(pums_fed.pki, "SELECT SUM(heigth) FROM pums"))
        )
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "under agreement open" in err.details() and "heigth" in err.details()
    with pums_fed.client() as client, pytest.raises(PermissionDenied) as info:
        client.query_release("SELECT SUM(heigth) FROM pums", "1")
    assert info.value.reason == "FIELD_NOT_IN_AGREEMENT" and info.value.message == err.details()


@pytest.mark.parametrize(("fixture", "sql", "error", "code", "field", "fragment"), REJECTED)
def test_rejections_arrive_as_typed_errors_and_rich_status(
    request: pytest.FixtureRequest,
    fixture: str,
    sql: str,
    error: type[InvalidQuery],
    code: grpc.StatusCode,
    field: str | None,
    fragment: str,
) -> None:
    """A query the federation cannot answer is refused with a status code and a BadRequest
    detail naming the offending part, and the analyst's client raises the matching typed error
    (NotFound for unknown names, InvalidQuery otherwise) carrying the same message."""
    value = request.getfixturevalue(f"{fixture}_fed")
    fed: Federation = value[0] if isinstance(value, tuple) else value
    channel, stub = fed.coordinator_stub()
    with channel:
        err = rpc_failure(stub.Submit, submit_request(alice_signs(fed.pki, sql)))
    assert err.code() == code, err.details()
    bad = [d for d in details(err) if isinstance(d, error_details_pb2.BadRequest)]
    assert len(bad) == 1 and bad[0].field_violations
    if field is not None:
        assert field in [v.field for v in bad[0].field_violations]
    assert fragment.lower() in err.details().lower()

    with fed.client() as client, pytest.raises(InvalidQuery) as info:
        client.query_release(sql, "1")
    assert type(info.value) is error
    assert info.value.message == err.details()
    assert info.value.violations


def _issue(pki: TestPki, tmp_path: Path, role: str, name: str) -> TlsFiles:
    cert = issue(pki.root, tmp_path, role, name)
    return TlsFiles(cert.cert, cert.key, pki.ca_cert)


def _assert_denied(err: grpc.RpcError, reason: str = "CALLER_NOT_ALLOWED") -> None:
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED, err.details()
    infos = [d for d in details(err) if isinstance(d, error_details_pb2.ErrorInfo)]
    assert [i.reason for i in infos] == [reason]


def test_analyst_not_listed_is_denied(pums_fed: Federation, pki: TestPki, tmp_path: Path) -> None:
    """A valid analyst certificate whose name is not in [access] analysts gets PERMISSION_DENIED
    (ErrorInfo CALLER_NOT_ALLOWED) for queries and the catalog; the client raises PermissionDenied."""
    bob = _issue(pki, tmp_path, "analyst", "bob")
    channel, stub = pums_fed.coordinator_stub(bob)
    with channel:
        _assert_denied(rpc_failure(stub.Submit, submit_request(sign(bob, "SELECT COUNT(*) FROM pums"))))
    with pums_fed.client(bob) as client:
        with pytest.raises(PermissionDenied) as info:
            client.query_release("SELECT COUNT(*) FROM pums", "1")
        with pytest.raises(PermissionDenied):
            client.catalog()
    assert info.value.reason == "CALLER_NOT_ALLOWED"
    assert "bob" in info.value.message and "[access] analysts" in info.value.message


def test_wrong_roles_are_refused(pums_fed: Federation, pki: TestPki, tmp_path: Path) -> None:
    """Identity comes from the client certificate: an analyst calling a node directly, a node
    calling another node, a coordinator the node does not list, and a node calling the
    coordinator are all refused with PERMISSION_DENIED, whatever they send (a node refuses an
    unknown caller before it parses the request, so its checks give such a caller no feedback)."""
    sql = "SELECT COUNT(*) FROM pums"
    attempts = [sql, "SELECT COUNT(*) FROM nosuch", "SELECT SUM(x) FROM pums", "SELEC nonsense"]
    callers = (
        (pki.analyst("alice"), "WRONG_ROLE"),  # a role the node does not serve at all
        (pki.node("district-a"), "WRONG_ROLE"),
        (_issue(pki, tmp_path, "coordinator", "rogue"), "CALLER_NOT_ALLOWED"),  # serves, not this one
    )
    for tls, reason in callers:
        channel, node = pums_fed.node_stub("county", tls)
        with channel:
            for attempt in attempts:
                _assert_denied(
                    rpc_failure(node.Answer, answer_request(alice_signs(pums_fed.pki, attempt))), reason
                )
            # the catalog too: a node shares its metadata only with coordinators it has agreed to serve
            _assert_denied(rpc_failure(node.GetCatalog, node_pb2.GetCatalogRequest()), reason)
    channel, coordinator = pums_fed.coordinator_stub(pki.node("county"))
    with channel:
        for attempt in attempts:
            _assert_denied(
                rpc_failure(coordinator.Submit, submit_request(alice_signs(pums_fed.pki, attempt))),
                "WRONG_ROLE",
            )
        for call, request in (
            (coordinator.GetCatalog, coordinator_pb2.FederatedCatalogRequest()),
            (coordinator.ListNodes, coordinator_pb2.ListNodesRequest()),
        ):
            _assert_denied(rpc_failure(call, request), "WRONG_ROLE")
    # The listed coordinator is answered (control).
    _, release = node_release(pums_fed, "county", alice_signs(pums_fed.pki, sql))
    assert release.node == "county"


# ---- 7. health and reflection ------------------------------------------------------------------


COUNTY = Identity("node", "county")
COORDINATOR = Identity("coordinator", "coordinator")


def _check(address: str, server: Identity, tls: TlsFiles, service: str) -> Any:
    with secure_channel(address, tls, server) as channel:
        return (
            health_pb2_grpc.HealthStub(channel)
            .Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            .status
        )


def _reflected_services(address: str, server: Identity, tls: TlsFiles) -> set[str]:
    with secure_channel(address, tls, server) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        replies = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=TIMEOUT
        )
        return {s.name for reply in replies for s in reply.list_services_response.service}


def test_health_and_reflection(pums_fed: Federation, pki: TestPki) -> None:
    """Both servers report SERVING for the server as a whole and for their service over the
    standard grpc.health.v1 service, and server reflection lists their services."""
    serving = health_pb2.HealthCheckResponse.SERVING
    node = pums_fed.node_address("county")
    for service in ("", NODE_SERVICE):
        assert _check(node, COUNTY, pki.coordinator, service) == serving
    for service in ("", COORDINATOR_SERVICE):
        assert _check(pums_fed.address, COORDINATOR, pki.analyst(), service) == serving
    extras = {"grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}
    assert _reflected_services(node, COUNTY, pki.coordinator) == {
        NODE_SERVICE,
        "accord.v1.AuditService",
        *extras,
    }
    assert _reflected_services(pums_fed.address, COORDINATOR, pki.analyst()) == {
        COORDINATOR_SERVICE,
        *extras,
    }


def test_health_turns_not_serving_when_stop_begins(pki: TestPki, tmp_path: Path) -> None:
    """A health watcher connected before shutdown sees NOT_SERVING as soon as stop begins (load
    balancers drain the server before in-flight calls end)."""
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    config = load_node_config(
        write_node(tmp_path, node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID)]))
    )
    running: RunningServer = start_node(config, listen=LISTEN)
    stopper: threading.Thread | None = None
    try:
        with secure_channel(
            f"127.0.0.1:{running.port}", pki.coordinator, Identity("node", "county")
        ) as channel:
            watch = health_pb2_grpc.HealthStub(channel).Watch(
                health_pb2.HealthCheckRequest(service=NODE_SERVICE), timeout=TIMEOUT
            )
            assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
            stopper = threading.Thread(target=running.stop, kwargs={"grace": 2.0})
            stopper.start()
            assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING
            watch.cancel()
    finally:
        if stopper is not None:
            stopper.join()
        running.stop(grace=0)


# ---- 8. catalog --------------------------------------------------------------------------------


def test_catalog_lists_every_dataset_with_its_public_metadata(
    pums_fed: Federation, demo_fed: tuple[Federation, DemoLayout]
) -> None:
    """The analyst's catalog lists each dataset of the federation with the nodes holding it and
    exactly the public metadata the node operator declared (columns, types, bounds, categories,
    descriptions, privacy unit, rows per person)."""
    declared = {d.schema.name: d.schema for d in load_node_config(pums_fed.root / "county.toml").datasets}
    with pums_fed.client() as client:
        catalog = client.catalog()
        nodes = client.nodes()
    assert sorted(catalog) == ["census_rows", "census_rows_k2", "census_rows_k4", "pums"]
    assert catalog["pums"][1] == ("county", "district-a")
    assert catalog["census_rows_k4"][1] == ("county",)
    for name, (schema, _) in catalog.items():
        assert schema == declared[name], name
    assert catalog["census_rows_k4"][0].max_rows_per_person == 4
    race = catalog["pums"][0].column("race")
    assert race is not None and race.categories == RACES
    assert [(n["name"], n["reachable"], n["datasets"]) for n in nodes] == [
        ("county", True, ["census_rows", "census_rows_k2", "census_rows_k4", "pums"]),
        ("district-a", True, ["pums"]),
    ]

    fed, layout = demo_fed
    with fed.client() as client:
        demo = client.catalog()
    assert demo["citizens"][1] == DEMO_NODES
    assert demo["service_contacts"][1] == ("county",)
    county = {d.schema.name: d.schema for d in load_node_config(layout.node_configs["county"]).datasets}
    assert demo["service_contacts"][0] == county["service_contacts"]


def test_node_catalog_over_the_wire(pums_fed: Federation) -> None:
    """A node's own GetCatalog names the node and carries its schemas."""
    channel, stub = pums_fed.node_stub("district-a")
    with channel:
        name, schemas = convert.catalog_from_pb(
            stub.GetCatalog(node_pb2.GetCatalogRequest(), timeout=TIMEOUT)
        )
    assert name == "district-a" and [s.name for s in schemas] == ["pums"]


# ---- 9. configuration errors -------------------------------------------------------------------


def test_missing_data_file_is_a_config_error(pki: TestPki, tmp_path: Path) -> None:
    """A dataset path that does not exist fails at load with a ConfigError naming the config
    file, the key and the missing file."""
    link_certs(tmp_path, pki)
    path = write_node(
        tmp_path, node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", "absent.csv")])
    )
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    message = info.value.message
    assert str(path) in message and "datasets.pums.path" in message
    assert str(tmp_path / "data" / "absent.csv") in message


def test_bounds_violation_rejects_or_clamps(
    pki: TestPki, tmp_path: Path, census: list[dict[str, Any]]
) -> None:
    """Declaring age <= 50 over data with older people: with on_violation "reject" the node
    refuses to start with a DataError naming the dataset, file and column; with "clamp" it starts
    and SUM(age) is the sum of ages clamped to 50."""
    link_certs(tmp_path, pki)
    copy_census(tmp_path, PUMS_PID)
    strict_config = node_config(tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID, age_upper=50)])
    write_open_agreement(strict_config)
    strict = write_node_config(strict_config, tmp_path / "strict.toml")
    with pytest.raises(DataError) as info:
        start_node(load_node_config(strict), listen=LISTEN)
    message = info.value.message
    assert "'pums'" in message and "'age'" in message and PUMS_PID in message
    assert "on_violation" in message
    assert "'income'" not in message  # only the broken column is named

    lenient = write_node_config(
        node_config(
            tmp_path, "county", [pums_dataset(tmp_path, "pums", PUMS_PID, age_upper=50, on_violation="clamp")]
        ),
        tmp_path / "lenient.toml",
    )
    running = start_node(load_node_config(lenient), listen=LISTEN)
    try:
        with secure_channel(
            f"127.0.0.1:{running.port}", pki.coordinator, Identity("node", "county")
        ) as channel:
            reply = node_pb2_grpc.NodeServiceStub(channel).Answer(
                answer_request(alice_signs(pki, "SELECT SUM(age) AS years FROM pums")), timeout=TIMEOUT
            )
    finally:
        running.stop(grace=0)
    estimate = convert.release_from_pb(reply).rows[0].cells[0].estimate
    assert estimate.noise_scale == 50  # sensitivity k·max(|0|, |50|) at epsilon 1
    clamped = sum(min(r["age"], 50) for r in census)
    assert near(estimate, clamped)
    assert not near(estimate, sum(r["age"] for r in census))
