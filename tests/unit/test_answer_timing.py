"""Issue 10: answers leave no earlier than a budget set from public information; work that runs past
it is refused (ANSWER_TIME_EXCEEDED: nothing released, nothing charged); timing trailers are opt-in.
(The statistical check that answer times cannot be told apart is tests/statistical/test_answer_timing.py.)"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import grpc
import pytest

from accord.coordinator.config import (
    CoordinatorConfig,
    NodeEndpoint,
    load_coordinator_config,
    write_coordinator_config,
)
from accord.errors import AnswerTimeExceeded, ConfigError
from accord.node.config import load_node_config
from accord.node.config_writer import write_node_config
from accord.node.decisions import FAILURES, reason_of
from accord.node.service import NodeService
from accord.node.servicer import serialize_release
from accord.node.state import SqliteState
from accord.node.timing import AnswerBudget, AnswerBudgets, AnswerPace, answer_budgets
from accord.policies.decision import Decision
from accord.policies.identity import Identity
from accord.protos import convert
from accord.protos.rpcstatus import error_from_rpc, to_status
from accord.protos.v1 import node_pb2
from accord.query.model import Aggregate, AggregateFunction, GroupColumn, Query
from tests.conftest import TestPki
from tests.signing import node_service, sign
from tests.unit.nodedata import pums
from tests.unit.test_config import VALID, write

COORDINATOR = Identity("coordinator", "coordinator")
PLAIN = Query("pums", (Aggregate(AggregateFunction.COUNT, None, "n"),), (), None)
GROUPED = Query(
    "pums", (GroupColumn("sex", "sex"), Aggregate(AggregateFunction.COUNT, None, "n")), ("sex",), None
)


# ---- budgets from public information ----------------------------------------------------------


def test_budget_depends_on_dataset_and_shape_only() -> None:
    budgets = AnswerBudgets(0.5, {"pums": 0.8}, {"pums": 1.2})
    assert budgets.budget(PLAIN) == AnswerBudget(0.8, "datasets.pums.answer_seconds")
    assert budgets.budget(GROUPED) == AnswerBudget(1.2, "datasets.pums.grouped_answer_seconds")
    other = Query("other", PLAIN.outputs, (), None)
    assert budgets.budget(other) == AnswerBudget(0.5, "timing.answer_seconds")
    assert AnswerBudgets(0.0, {"pums": 0.8}).budget(PLAIN) is None  # [timing] answer_seconds = 0: off


def test_config_keys_defaults_and_round_trip(tmp_path: Path) -> None:
    config = load_node_config(write(tmp_path, VALID))
    assert config.answer_seconds == 1.0 and config.report_node_seconds is False
    text = VALID.replace(
        'on_violation = "clamp"', 'on_violation = "clamp"\nanswer_seconds = 2.5\ngrouped_answer_seconds = 4'
    ).replace(
        "[datasets.residents]",
        "[timing]\nanswer_seconds = 0.25\nreport_node_seconds = true\n[datasets.residents]",
    )
    config = load_node_config(write(tmp_path, text))
    assert (config.answer_seconds, config.report_node_seconds) == (0.25, True)
    residents = config.dataset("residents")
    assert residents is not None and (residents.answer_seconds, residents.grouped_answer_seconds) == (
        2.5,
        4.0,
    )
    budgets = answer_budgets(config)
    assert budgets.budget(Query("residents", PLAIN.outputs, (), None)) == AnswerBudget(
        2.5, "datasets.residents.answer_seconds"
    )
    again = load_node_config(write_node_config(config, tmp_path / "again.toml"))
    assert again == config


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        (
            "[datasets.residents]",
            "[timing]\nanswer_seconds = -1\n[datasets.residents]",
            "timing.answer_seconds",
        ),
        (
            "[datasets.residents]",
            "[timing]\nanswer_seconds = 9000\n[datasets.residents]",
            "timing.answer_seconds",
        ),
        ("[datasets.residents]", "[timing]\nanswer_second = 1\n[datasets.residents]", "timing.answer_second"),
        ('on_violation = "clamp"', 'on_violation = "clamp"\nanswer_seconds = 0', "residents.answer_seconds"),
        (
            'on_violation = "clamp"',
            'on_violation = "clamp"\ngrouped_answer_seconds = "2"',
            "residents.grouped_answer_seconds",
        ),
    ],
)
def test_bad_timing_keys_name_file_key_and_fix(tmp_path: Path, old: str, new: str, key: str) -> None:
    path = write(tmp_path, VALID.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_node_config(path)
    assert info.value.message.startswith(f"{path}: ") and key in info.value.message


# ---- the pace of one request ------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_pace_waits_out_the_budget_and_refuses_an_overrun() -> None:
    clock = FakeClock()
    pace = AnswerPace("n", clock, clock.sleep)
    pace.wait()
    assert clock.slept == []  # no budget yet: a policy refusal is not padded
    pace.start_budget(AnswerBudget(0.5, "timing.answer_seconds"))
    clock.now += 0.1
    pace.check()
    pace.wait()
    assert clock.now == pytest.approx(100.5)
    clock.now += 1.0
    pace.wait()  # past the deadline: no sleep
    with pytest.raises(AnswerTimeExceeded) as info:
        pace.check()
    assert info.value.setting == "timing.answer_seconds" and "timing.answer_seconds" in info.value.message
    assert reason_of(info.value) == "ANSWER_TIME_EXCEEDED" and "ANSWER_TIME_EXCEEDED" in FAILURES


def test_overrun_crosses_the_wire_with_its_reason_and_setting() -> None:
    err = AnswerTimeExceeded("too slow; raise datasets.pums.answer_seconds", "datasets.pums.answer_seconds")
    status = to_status(err)
    assert status.code == grpc.StatusCode.DEADLINE_EXCEEDED

    class Failed(grpc.RpcError):
        def code(self) -> grpc.StatusCode:
            return status.code

        def details(self) -> str:
            return status.details

        def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
            return tuple(status.trailing_metadata)

    back = error_from_rpc(Failed(), "node n")
    assert isinstance(back, AnswerTimeExceeded) and back.setting == "datasets.pums.answer_seconds"


# ---- the node's answer path -------------------------------------------------------------------

SQL = "SELECT COUNT(*) AS n FROM pums"


@pytest.fixture
def service(pki: TestPki, tmp_path: Path) -> NodeService:
    return node_service(pki, (pums(),), state=SqliteState(tmp_path / "state.db", "n"))


def test_answers_leave_no_earlier_than_the_budget_and_say_only_the_budget(
    service: NodeService, pki: TestPki
) -> None:
    service.budgets = AnswerBudgets(0.3)
    alice = pki.analyst()
    started = time.monotonic()
    payload = service.answer(COORDINATOR, sign(alice, SQL, "1", "t-1"), serialize_release)
    assert time.monotonic() - started >= 0.3
    release = convert.release_from_pb(node_pb2.NodeRelease.FromString(payload))
    assert release.execution_seconds == 0.3  # the public budget, not how long the data took
    # A retry is answered from the stored release (reads no data): not padded, the same bytes.
    again = service.answer(COORDINATOR, sign(alice, SQL, "1", "t-1"), serialize_release)
    assert again == payload


def test_an_overrun_releases_and_charges_nothing(pki: TestPki, tmp_path: Path) -> None:
    decisions: list[Decision] = []
    service = node_service(
        pki, (pums(),), state=SqliteState(tmp_path / "state.db", "n"), on_decision=decisions.append
    )
    service.budgets = AnswerBudgets(1e-9)
    alice = pki.analyst()
    with pytest.raises(AnswerTimeExceeded) as info:
        service.answer(COORDINATOR, sign(alice, SQL, "1", "t-2"), serialize_release)
    assert "timing.answer_seconds" in info.value.message and "charged nothing" in info.value.message
    assert decisions[-1].outcome == "failed" and decisions[-1].reason == "ANSWER_TIME_EXCEEDED"
    line = service.budget_line(service.gate.agreements["open"], "alice")
    assert line.analyst_spent.value == 0 and line.answered == 0
    # With a budget that fits, the same id is answered (nothing was recorded under it).
    service.budgets = AnswerBudgets(0.05)
    assert service.answer(COORDINATOR, sign(alice, SQL, "1", "t-2"), serialize_release)


def test_coordinator_timing_trailers_are_opt_in_keys(pki: TestPki, tmp_path: Path) -> None:
    """``report_coordinator_seconds`` and ``report_node_timings`` default to off and round-trip."""
    base = CoordinatorConfig(
        "coordinator", "127.0.0.1:0", pki.coordinator, ("alice",), (NodeEndpoint("n", "127.0.0.1:1"),)
    )
    assert base.report_coordinator_seconds is False and base.report_node_timings is False
    wanted = dataclasses.replace(base, report_coordinator_seconds=True, report_node_timings=True)
    assert load_coordinator_config(write_coordinator_config(wanted, tmp_path / "c.toml")) == wanted
