"""Real federations for integration tests: node and coordinator servers started in-process over
mTLS on ``127.0.0.1:0``, from TOML files written the way an operator writes them.

A federation lives in one folder::

    root/
      certs -> the session's development PKI (tests.conftest.pki)
      data/PUMS_pid.csv, data/PUMS_dup.csv       copies of the census sample (tests/data/census)
      county.toml, district-a.toml, ...          node configs (relative paths)
      agreements/open-<node>.toml                each node's test agreement "open" (every field,
                                                 every use, analysts alice and bob, a large budget)
      coordinator.toml                           written once the nodes' real ports are known

:func:`node_config` and :func:`pums_dataset` describe a node over the census sample and
:func:`write_node` writes its config file with the node's own config writer; :func:`start_federation`
starts the nodes from their config files, writes ``coordinator.toml`` with their ports and starts
the coordinator. :class:`Federation` stops everything (``stop``) and opens analyst clients and raw
stubs. The true answers are computed with the ``csv`` module (:func:`read_census`), independently
of the engine under test.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from fractions import Fraction
from pathlib import Path
from typing import Any

import grpc

from accord.coordinator.client import AccordClient
from accord.coordinator.config import (
    CoordinatorConfig,
    NodeEndpoint,
    load_coordinator_config,
    write_coordinator_config,
)
from accord.coordinator.server import start_coordinator
from accord.coordinator.service import CoordinatorService
from accord.node.config import DatasetConfig, NodeConfig, StateConfig, load_node_config
from accord.node.config_writer import write_node_config
from accord.node.server import start_node
from accord.policies.agreement_draft import draft_agreement
from accord.policies.identity import Identity
from accord.protos.v1 import coordinator_pb2_grpc, node_pb2_grpc
from accord.query.epsilon import Epsilon
from accord.query.schema import ColumnSpec, ColumnType, DatasetSchema
from accord.rpc.fairness import FairnessConfig
from accord.rpc.serving import RunningServer
from accord.rpc.transport import TlsFiles, secure_channel
from tests.conftest import TestPki
from tests.paths import CENSUS

PUMS_PID = "PUMS_pid.csv"  # 1,000 persons, one row each
PUMS_DUP = "PUMS_dup.csv"  # the same 1,000 persons, 1-4 rows each
LISTEN = "127.0.0.1:0"
TIMEOUT = 20.0

# Public categories as an operator would declare them. Race 7 and 8 are declared but nobody in
# the sample has them: their groups must still be released (empty groups are not hidden).
RACES = (1, 2, 3, 4, 5, 6, 7, 8)
EDUC = tuple(range(1, 17))


def link_certs(root: Path, pki: TestPki) -> None:
    """Make ``root/certs`` the session PKI, so configs can say ``certs/nodes/county.pem``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "certs").symlink_to(pki.root, target_is_directory=True)


def copy_census(root: Path, *names: str) -> None:
    (root / "data").mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copyfile(CENSUS / name, root / "data" / name)


PUMS_COLUMNS = (
    ColumnSpec("pid", ColumnType.INTEGER, description="person identifier"),
    ColumnSpec("age", ColumnType.INTEGER, 0, 100, description="age in years"),
    ColumnSpec("sex", ColumnType.INTEGER, categories=(0, 1)),
    ColumnSpec("educ", ColumnType.INTEGER, 1, 16, categories=EDUC),
    ColumnSpec("race", ColumnType.INTEGER, categories=RACES),
    ColumnSpec("income", ColumnType.FLOAT, 0.0, 500000.0, description="yearly income in dollars"),
    ColumnSpec("married", ColumnType.BOOLEAN, categories=(True, False)),
)
"""The census sample's columns as an operator declares them."""


def pums_dataset(
    root: Path,
    name: str,
    file: str,
    *,
    k: int = 1,
    on_violation: str = "reject",
    age_upper: int = 100,
    description: str = "US census microdata sample (PUMS)",
) -> DatasetConfig:
    """Dataset ``name`` over the census file ``root/data/<file>``."""
    columns = tuple(dataclasses.replace(c, upper=age_upper) if c.name == "age" else c for c in PUMS_COLUMNS)
    schema = DatasetSchema(name, columns, "pid", k, description)
    return DatasetConfig(schema, root / "data" / file, "csv", on_violation)


def node_config(
    root: Path,
    name: str,
    datasets: Sequence[DatasetConfig],
    *,
    coordinators: Sequence[str] = ("coordinator",),
    **settings: Any,
) -> NodeConfig:
    """Node ``name`` serving ``datasets``, with the session PKI under ``root/certs``, its state in
    ``root/state/<name>.sqlite3``, its agreements in ``root/agreements`` (:func:`write_node`
    writes the test agreement ``open`` there), a ceiling of epsilon 100 per query and no answer-time
    padding (``answer_seconds = 0``: tests that time answers set a budget); ``settings`` override
    any other NodeConfig field."""
    config = NodeConfig(
        name=name,
        listen="127.0.0.1:50051",  # tests override it with 127.0.0.1:0
        tls_cert=root / "certs" / "nodes" / f"{name}.pem",
        tls_key=root / "certs" / "nodes" / f"{name}.key",
        tls_ca=root / "certs" / "ca.pem",
        coordinators=tuple(coordinators),
        datasets=tuple(datasets),
        state=StateConfig("sqlite", root / "state" / f"{name}.sqlite3"),
        agreements_dir=root / "agreements",
        consent_path=root / "state" / f"{name}-consent.sqlite3",
        max_workers=4,
        max_epsilon=Epsilon(Fraction(100)),
        fairness=UNLIMITED,
        answer_seconds=0.0,
    )
    return dataclasses.replace(config, **settings)


UNLIMITED = FairnessConfig(max_in_flight=10_000, per_minute=1_000_000, burst=1_000_000)
"""Per-analyst limits no test reaches unless it means to (tests of fairness set their own)."""
OPEN = "open"
"""The test agreement every node of a test federation holds (see :func:`write_open_agreement`)."""
OPEN_ANALYSTS = ("alice", "bob")


def write_open_agreement(config: NodeConfig, **settings: Any) -> Path:
    """``<agreements_dir>/open-<node>.toml``: agreement ``open`` naming only this node, sharing
    every declared field in every way it supports with alice and bob, valid 2000-2999, with a
    budget no test exhausts unless it means to (``settings`` override :func:`draft_agreement`'s)."""
    schemas = {d.schema.name: d.schema for d in config.datasets}
    options: dict[str, Any] = {
        "per_query": "100",
        "per_analyst": "1000000",
        "total": "1000000",
        "min_group_size": 0,
        "valid_from": date(2000, 1, 1),
        "valid_until": date(2999, 12, 31),
    } | settings
    text = draft_agreement(OPEN, config.name, schemas, OPEN_ANALYSTS, **options)
    path = config.agreements_dir / f"open-{config.name}.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    return write(path, text)


def open_demo_nodes(node_configs: Mapping[str, Path]) -> None:
    """Give each node of a demo federation the test agreement ``open`` too (beside the demo's own)
    and no per-analyst limits, for tests of the federation itself rather than of the demo's
    agreements and limits."""
    for path in node_configs.values():
        config = dataclasses.replace(load_node_config(path), fairness=UNLIMITED)
        write_node_config(config, path)
        write_open_agreement(config)


def write_node(root: Path, config: NodeConfig, agreement: bool = True) -> Path:
    """``root/<name>.toml``, written as an operator would (:func:`write_node_config`), with the
    test agreement ``open`` beside it (unless ``agreement`` is false)."""
    if agreement:
        write_open_agreement(config)
    return write_node_config(config, root / f"{config.name}.toml")


def coordinator_config(
    root: Path,
    node_addresses: Mapping[str, str],
    *,
    analysts: Sequence[str] = ("alice",),
    deadline: float = 10,
    **settings: Any,
) -> CoordinatorConfig:
    """The coordinator of a federation in ``root`` (session PKI under ``root/certs``)."""
    certs = root / "certs"
    config = CoordinatorConfig(
        name="coordinator",
        listen="127.0.0.1:50050",
        tls=TlsFiles(
            certs / "coordinators" / "coordinator.pem",
            certs / "coordinators" / "coordinator.key",
            certs / "ca.pem",
        ),
        analysts=tuple(analysts),
        nodes=tuple(NodeEndpoint(n, a) for n, a in sorted(node_addresses.items())),
        deadline_seconds=deadline,
        fairness=UNLIMITED,
    )
    return dataclasses.replace(config, **settings)


def write_coordinator(root: Path, config: CoordinatorConfig) -> Path:
    """``root/coordinator.toml`` (:func:`write_coordinator_config`)."""
    return write_coordinator_config(config, root / "coordinator.toml")


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@dataclass
class Federation:
    """Running servers of one federation; :meth:`stop` stops whatever is still running."""

    root: Path
    pki: TestPki
    nodes: dict[str, RunningServer]
    coordinator: RunningServer
    service: CoordinatorService
    _stopped: set[str] = field(default_factory=set)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.coordinator.port}"

    def node_address(self, name: str) -> str:
        return f"127.0.0.1:{self.nodes[name].port}"

    def client(self, tls: TlsFiles | None = None, retries: int = 2, agreement: str = OPEN) -> AccordClient:
        return AccordClient(
            self.address, tls or self.pki.analyst("alice"), retries=retries, agreement=agreement
        )

    def coordinator_stub(
        self, tls: TlsFiles | None = None
    ) -> tuple[grpc.Channel, coordinator_pb2_grpc.CoordinatorServiceStub]:
        channel = secure_channel(
            self.address, tls or self.pki.analyst("alice"), Identity("coordinator", "coordinator")
        )
        return channel, coordinator_pb2_grpc.CoordinatorServiceStub(channel)

    def node_stub(
        self, name: str, tls: TlsFiles | None = None
    ) -> tuple[grpc.Channel, node_pb2_grpc.NodeServiceStub]:
        channel = secure_channel(self.node_address(name), tls or self.pki.coordinator, Identity("node", name))
        return channel, node_pb2_grpc.NodeServiceStub(channel)

    def stop_node(self, name: str) -> None:
        if name not in self._stopped:
            self._stopped.add(name)
            self.nodes[name].stop(grace=0)

    def stop(self) -> None:
        if "coordinator" not in self._stopped:
            self._stopped.add("coordinator")
            self.coordinator.stop(grace=0)
            self.service.close()
        for name in self.nodes:
            self.stop_node(name)


def start_nodes(configs: Mapping[str, Path]) -> dict[str, RunningServer]:
    started: dict[str, RunningServer] = {}
    try:
        for name, path in configs.items():
            started[name] = start_node(load_node_config(path), listen=LISTEN)
    except BaseException:
        for running in started.values():
            running.stop(grace=0)
        raise
    return started


def start_federation(
    root: Path,
    pki: TestPki,
    node_configs: Mapping[str, Path],
    *,
    extra_nodes: Mapping[str, str] | None = None,
    analysts: Sequence[str] = ("alice",),
    deadline: float = 10,
) -> Federation:
    """Start every node from its config file, then write ``coordinator.toml`` naming their real
    ports (plus ``extra_nodes``: name → address, e.g. a node that is down) and start it."""
    nodes = start_nodes(node_configs)
    try:
        addresses = {n: f"127.0.0.1:{r.port}" for n, r in nodes.items()}
        addresses.update(extra_nodes or {})
        path = write_coordinator(
            root, coordinator_config(root, addresses, analysts=analysts, deadline=deadline)
        )
        running, service = start_coordinator(load_coordinator_config(path), listen=LISTEN)
    except BaseException:
        for r in nodes.values():
            r.stop(grace=0)
        raise
    return Federation(root, pki, nodes, running, service)


# ---- the truth, computed without the engine ----------------------------------------------------


def read_census(path: Path) -> list[dict[str, Any]]:
    """The census rows with typed values, read with the csv module."""
    with path.open(newline="") as f:
        return [
            {
                "pid": int(r["pid"]),
                "age": int(r["age"]),
                "sex": int(r["sex"]),
                "educ": int(r["educ"]),
                "race": int(r["race"]),
                "income": float(r["income"]),
                "married": r["married"] == "1",
            }
            for r in csv.DictReader(f)
        ]


def bounded_row_count(rows: Iterable[dict[str, Any]], k: int) -> int:
    """Rows left once every person keeps at most ``k`` of theirs."""
    per_person: dict[int, int] = {}
    for r in rows:
        per_person[r["pid"]] = per_person.get(r["pid"], 0) + 1
    return sum(min(n, k) for n in per_person.values())


# ---- 95% half widths, derived here from the noise distributions --------------------------------


def laplace_half_width(b: float, alpha: float = 0.05) -> float:
    """Continuous Laplace(b): P(|X| > h) = exp(-h/b)."""
    return b * math.log(1 / alpha)


def discrete_laplace_half_width(b: float, alpha: float = 0.05) -> int:
    """Discrete Laplace(b), P(X = x) ∝ exp(-|x|/b): the smallest integer h with P(|X| > h) <= alpha,
    found by summing the probability mass directly."""
    t = math.exp(-1 / b)
    p0 = (1 - t) / (1 + t)
    inside, h = p0, 0
    while 1 - inside > alpha:
        h += 1
        inside += 2 * p0 * t**h
    return h


def two_laplace_half_width(b: float, alpha: float = 0.05) -> float:
    """Sum of two independent continuous Laplace(b): density (1 + |x|/b) e^{-|x|/b} / 4b, so
    P(|S| > h) = (1 + h/2b) e^{-h/b}; solved for alpha by bisection."""
    lo, hi = 0.0, 50 * b
    for _ in range(200):
        mid = (lo + hi) / 2
        if (1 + mid / (2 * b)) * math.exp(-mid / b) > alpha:
            lo = mid
        else:
            hi = mid
    return hi


def two_discrete_laplace_half_width(b: float, alpha: float = 0.05) -> int:
    """Sum S = X + Y of two independent discrete Laplace(b): the smallest integer h with
    P(|S| > h) <= alpha, where P(|S| <= h) = Σ_x P(X = x) (F(h - x) - F(-h - x - 1)) with the
    closed-form CDF F of Y; h is found by bisection."""
    t = math.exp(-1 / b)
    p0 = (1 - t) / (1 + t)
    reach = int(45 * b) + 10  # P(|X| > reach) < e^-45

    def cdf(y: int) -> float:
        return 1 - t ** (y + 1) / (1 + t) if y >= 0 else t ** (-y) / (1 + t)

    def outside(h: int) -> float:
        inside = math.fsum(
            p0 * t ** abs(x) * (cdf(h - x) - cdf(-h - x - 1)) for x in range(-reach, reach + 1)
        )
        return 1 - inside

    lo, hi = -1, 2 * reach  # outside(lo) > alpha >= outside(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if outside(mid) <= alpha:
            hi = mid
        else:
            lo = mid
    return hi
