"""Real federations for integration tests: node and coordinator servers started in-process over
mTLS on ``127.0.0.1:0``, from TOML files written the way an operator writes them.

A federation lives in one folder::

    root/
      certs -> the session's development PKI (tests.conftest.pki)
      data/PUMS_pid.csv, data/PUMS_dup.csv       copies of the census sample (tests/data/census)
      county.toml, district-a.toml, ...          node configs (relative paths)
      coordinator.toml                           written once the nodes' real ports are known

:func:`pums_node_toml` writes a node config over the census sample; :func:`start_federation`
starts the nodes from their config files, writes ``coordinator.toml`` with their ports and starts
the coordinator. :class:`Federation` stops everything (``stop``) and opens analyst clients and raw
stubs. The true answers are computed with the ``csv`` module (:func:`read_census`), independently
of the engine under test.
"""

from __future__ import annotations

import csv
import math
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from accord.coordinator.client import AccordClient
from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import start_coordinator
from accord.coordinator.service import CoordinatorService
from accord.node.config import load_node_config
from accord.node.server import start_node
from accord.protos.v1 import coordinator_pb2_grpc, node_pb2_grpc
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


def pums_dataset_toml(
    name: str,
    file: str,
    *,
    k: int = 1,
    on_violation: str = "reject",
    age_upper: int = 100,
    description: str = "US census microdata sample (PUMS)",
) -> str:
    """One ``[datasets.NAME]`` table over a census file under ``data/``."""
    return f"""
[datasets.{name}]
path = "data/{file}"
description = "{description}"
privacy_unit = "pid"
max_rows_per_person = {k}
on_violation = "{on_violation}"

[datasets.{name}.columns.pid]
type = "integer"
description = "person identifier"

[datasets.{name}.columns.age]
type = "integer"
lower = 0
upper = {age_upper}
description = "age in years"

[datasets.{name}.columns.sex]
type = "integer"
categories = [0, 1]

[datasets.{name}.columns.educ]
type = "integer"
lower = 1
upper = 16
categories = [{", ".join(map(str, EDUC))}]

[datasets.{name}.columns.race]
type = "integer"
categories = [{", ".join(map(str, RACES))}]

[datasets.{name}.columns.income]
type = "float"
lower = 0
upper = 500000
description = "yearly income in dollars"

[datasets.{name}.columns.married]
type = "boolean"
categories = [true, false]
"""


def node_toml(name: str, datasets: str, *, coordinators: Sequence[str] = ("coordinator",)) -> str:
    listed = ", ".join(f'"{c}"' for c in coordinators)
    return f"""# node config of {name}
[node]
name = "{name}"
listen = "127.0.0.1:50051"  # tests override it with 127.0.0.1:0
max_workers = 4

[tls]
cert = "certs/nodes/{name}.pem"
key = "certs/nodes/{name}.key"
ca = "certs/ca.pem"

[access]
coordinators = [{listed}]
{datasets}"""


def coordinator_toml(
    node_addresses: Mapping[str, str], *, analysts: Sequence[str] = ("alice",), deadline: float = 10
) -> str:
    listed = ", ".join(f'"{a}"' for a in analysts)
    nodes = "".join(f'\n[nodes.{n}]\naddress = "{a}"\n' for n, a in sorted(node_addresses.items()))
    return f"""[coordinator]
name = "coordinator"
listen = "127.0.0.1:50050"
deadline_seconds = {deadline}

[tls]
cert = "certs/coordinators/coordinator.pem"
key = "certs/coordinators/coordinator.key"
ca = "certs/ca.pem"

[access]
analysts = [{listed}]
{nodes}"""


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

    def client(self, tls: TlsFiles | None = None, retries: int = 2) -> AccordClient:
        return AccordClient(self.address, tls or self.pki.analyst("alice"), retries=retries)

    def coordinator_stub(
        self, tls: TlsFiles | None = None
    ) -> tuple[grpc.Channel, coordinator_pb2_grpc.CoordinatorServiceStub]:
        channel = secure_channel(self.address, tls or self.pki.analyst("alice"), "coordinator")
        return channel, coordinator_pb2_grpc.CoordinatorServiceStub(channel)

    def node_stub(
        self, name: str, tls: TlsFiles | None = None
    ) -> tuple[grpc.Channel, node_pb2_grpc.NodeServiceStub]:
        channel = secure_channel(self.node_address(name), tls or self.pki.coordinator, name)
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
        path = write(
            root / "coordinator.toml", coordinator_toml(addresses, analysts=analysts, deadline=deadline)
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
