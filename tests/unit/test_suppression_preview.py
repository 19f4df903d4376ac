"""Small-cell suppression and previews.

Suppression: under a minimum group size every node measures each group's noisy COUNT(*) (charged
within the query's epsilon), and the combined answer suppresses the groups whose combined noisy
count is below the minimum: marked, no values, in every output form; never dropped.

Previews: what ``--explain`` says a query will cost and how noisy each number will be is exactly
what the query then gets, reads no data and spends nothing; the epsilon it names for a target
half-width reaches the target and the next smaller one does not."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction

import pytest

from accord.coordinator import intervals
from accord.coordinator.combine import combine
from accord.coordinator.preview import combine_previews
from accord.coordinator.table import SUPPRESSED_COLUMN, format_release, to_arrow
from accord.errors import BudgetExhausted, InternalError, PermissionDenied
from accord.node.plan import SUPPORT, distinct_measurements
from accord.node.servicer import serialize_release
from accord.node.state import MemoryState
from accord.policies.decision import Decision
from accord.policies.identity import Identity
from accord.protos import convert
from accord.protos.v1 import node_pb2
from accord.query.epsilon import Epsilon
from accord.query.model import AggregateFunction
from accord.query.preview import least_epsilon
from accord.query.release import Cell, Estimate, Mechanism, Release, ReleaseColumn, ReleaseRow
from accord.query.sql import parse
from tests.conftest import TestPki
from tests.signing import node_service, open_agreement, sign
from tests.unit.nodedata import pums

D = Mechanism.DISCRETE_LAPLACE
CALLER = Identity("coordinator", "coordinator")
COLUMNS = (ReleaseColumn("ward", None, "ward"), ReleaseColumn("n", AggregateFunction.COUNT, None))


def est(value: float, scale: float = 2.0) -> Estimate:
    a = intervals.half_width([scale], [D])
    return Estimate(value, scale, value - a, value + a, D)


def node_release(node: str, counts: dict[str, float], minimum: int = 10) -> Release:
    rows = tuple(ReleaseRow((w,), (Cell(est(n)),), support=est(n)) for w, n in counts.items())
    return Release(
        "q", node, "citizens", COLUMNS, rows, Epsilon(Fraction(1)), agreement="dsa", min_group_size=minimum
    )


# ---- the combined answer -------------------------------------------------------------------------


def test_groups_are_judged_by_the_combined_noisy_count() -> None:
    """Property: a group that is small at every node but large together is released (district
    nodes each hold a part of a ward); one small everywhere is suppressed, in place, with no values."""
    a = node_release("a", {"Abbey": 6, "Brookside": 0, "Castle": 40})
    b = node_release("b", {"Abbey": 7, "Brookside": 3, "Castle": 0})
    release = combine("q", {"a": a, "b": b}, {})
    rows = {row.group[0]: row for row in release.rows}
    assert [row.group[0] for row in release.rows] == ["Abbey", "Brookside", "Castle"]  # never dropped
    assert not rows["Abbey"].suppressed and rows["Abbey"].cells[0].estimate.value == 13
    assert rows["Abbey"].support is not None and rows["Abbey"].support.value == 13
    assert (
        rows["Brookside"].suppressed and rows["Brookside"].cells == () and rows["Brookside"].support is None
    )
    assert not rows["Castle"].suppressed
    assert release.min_group_size == 10 and release.agreement == "dsa"


def test_the_largest_minimum_of_the_nodes_applies_and_a_node_suppression_is_kept() -> None:
    a = node_release("a", {"Abbey": 12}, minimum=10)
    b = node_release("b", {"Abbey": 2}, minimum=20)
    assert combine("q", {"a": a, "b": b}, {}).rows[0].suppressed  # 14 < 20
    hidden = Release(
        "q", "c", "citizens", COLUMNS, (ReleaseRow(("Abbey",), (), suppressed=True),), Epsilon(Fraction(1)),
        agreement="dsa", min_group_size=10,
    )  # fmt: skip
    assert combine("q", {"a": a, "c": hidden}, {}).rows[0].suppressed


def test_nodes_that_disagree_on_the_agreement_cannot_be_combined() -> None:
    a = node_release("a", {"Abbey": 12})
    b = Release("q", "b", "citizens", COLUMNS, a.rows, a.epsilon, agreement="other", min_group_size=10)
    with pytest.raises(InternalError, match="agreement"):
        combine("q", {"a": a, "b": b}, {})


def test_a_suppressed_group_is_marked_in_every_output_form() -> None:
    release = combine("q", {"a": node_release("a", {"Abbey": 3, "Castle": 40})}, {})
    table = format_release(release, "table")
    assert "Abbey" in table and "suppressed" in table.splitlines()[2]
    assert "suppressed: 1 group(s) of fewer than 10 people (agreement dsa)" in table
    rows = list(csv.DictReader(io.StringIO(format_release(release, "csv"))))
    assert rows[0]["ward"] == "Abbey" and rows[0]["n"] == "" and rows[0][SUPPRESSED_COLUMN] == "True"
    assert rows[1][SUPPRESSED_COLUMN] == "False" and rows[1]["n"] == "40"
    doc = json.loads(format_release(release, "json"))
    assert (
        doc["rows"][0]["n"] is None and doc["rows"][0]["suppressed"] is True and doc["min_group_size"] == 10
    )
    arrow = to_arrow(release)
    assert arrow.column("n").to_pylist() == [None, 40] and arrow.column(SUPPRESSED_COLUMN).to_pylist() == [
        True,
        False,
    ]
    assert arrow.schema.metadata[b"accord.agreement"] == b"dsa"


def test_a_suppressed_row_round_trips_the_wire_and_cannot_carry_values() -> None:
    release = combine("q", {"a": node_release("a", {"Abbey": 3})}, {})
    assert convert.federated_from_pb(convert.federated_to_pb(release)) == release
    with pytest.raises(ValueError):
        ReleaseRow(("Abbey",), (Cell(est(3)),), suppressed=True)
    message = convert.federated_to_pb(release)
    message.rows[0].cells.add().CopyFrom(
        convert.federated_to_pb(combine("q", {"a": node_release("a", {"X": 40})}, {})).rows[0].cells[0]
    )
    with pytest.raises(InternalError):
        convert.federated_from_pb(message)


# ---- at the node ---------------------------------------------------------------------------------


def _release(payload: bytes) -> Release:
    return convert.release_from_pb(node_pb2.NodeRelease.FromString(payload))


def test_the_group_sizes_are_measured_within_the_querys_epsilon(pki: TestPki) -> None:
    """Property: under a minimum group size a query without COUNT(*) measures it too, and its
    epsilon is split over one more measurement (the query still costs exactly its epsilon); a
    query that counts rows itself shares that count."""
    config = pums()
    minimum = open_agreement({"pums": config.schema}, ident="small-cells", min_group_size=10)
    service = node_service(pki, (config,), agreements=(minimum,))
    sql = "SELECT sex, SUM(age) AS s FROM pums GROUP BY sex"
    assert len(distinct_measurements(parse(sql), support=True)) == 2
    assert SUPPORT in distinct_measurements(parse(sql), support=True)
    assert len(distinct_measurements(parse("SELECT COUNT(*) FROM pums"), support=True)) == 1
    release = _release(
        service.answer(CALLER, sign(pki.analyst(), sql, "1", agreement="small-cells"), serialize_release)
    )
    assert release.min_group_size == 10 and release.agreement == "small-cells"
    sum_scale = release.rows[0].cells[0].estimate.noise_scale
    assert sum_scale == pytest.approx(2 * 100 * 1)  # sensitivity 100 at epsilon 1/2
    assert all(row.support is not None and not row.suppressed for row in release.rows)
    assert service._state.spent("small-cells", "alice").analyst == Epsilon(Fraction(1))


# ---- previews ------------------------------------------------------------------------------------


def test_a_preview_is_what_the_query_gets_and_spends_nothing(pki: TestPki) -> None:
    config = pums(k=2)
    decisions: list[Decision] = []
    service = node_service(pki, (config,), state=MemoryState("n"), on_decision=decisions.append)
    sql = "SELECT sex, COUNT(*) AS n, SUM(income) AS s, AVG(age) AS a FROM pums GROUP BY sex"
    preview = service.explain(CALLER, sign(pki.analyst(), sql, "0.7", kind="explain"), target=25.0)
    assert service._state.spent("open", "alice").answered == 0 and preview.fits
    assert preview.epsilon == Epsilon.parse("0.7") and preview.groups == 2
    assert preview.budget.analyst_remaining == Epsilon(Fraction(1_000_000))
    assert decisions[-1].outcome == "previewed" and decisions[-1].epsilon == "0"
    release = _release(service.answer(CALLER, sign(pki.analyst(), sql, "0.7"), serialize_release))
    cells = release.rows[0].cells
    n, s, a = preview.aggregates
    assert n.estimate is not None and n.estimate.noise_scale == cells[0].estimate.noise_scale
    assert n.estimate.half_width == pytest.approx(cells[0].estimate.ci_high - cells[0].estimate.value)
    assert s.estimate is not None and s.estimate.noise_scale == cells[1].estimate.noise_scale
    assert a.estimate is None and a.sum is not None and a.count is not None
    assert cells[2].sum is not None and a.sum.noise_scale == cells[2].sum.noise_scale
    # the epsilon named for the target reaches it, and a slightly smaller one does not
    assert n.epsilon_for_target is not None
    at = service.explain(CALLER, sign(pki.analyst(), sql, str(n.epsilon_for_target), kind="explain"), None)
    assert at.aggregates[0].estimate is not None and at.aggregates[0].estimate.half_width <= 25
    below = str(n.epsilon_for_target.value * Fraction(99, 100))
    under = service.explain(CALLER, sign(pki.analyst(), sql, below, kind="explain"), None)
    assert under.aggregates[0].estimate is not None and under.aggregates[0].estimate.half_width > 25


def test_a_preview_is_refused_like_the_query_and_says_when_it_would_not_fit(pki: TestPki) -> None:
    config = pums()
    tight = open_agreement({"pums": config.schema}, ident="tight", budget=("1", "1", "1"))
    service = node_service(pki, (config,), agreements=(tight,))
    sql = "SELECT COUNT(*) FROM pums"
    service.answer(CALLER, sign(pki.analyst(), sql, "0.75", agreement="tight"), serialize_release)
    preview = service.explain(CALLER, sign(pki.analyst(), sql, "0.5", agreement="tight", kind="explain"))
    assert not preview.fits and preview.budget.remaining == Epsilon.parse("0.25")
    with pytest.raises(BudgetExhausted):
        service.answer(CALLER, sign(pki.analyst(), sql, "0.5", agreement="tight"), serialize_release)
    with pytest.raises(PermissionDenied) as info:
        service.explain(
            CALLER,
            sign(pki.analyst(), "SELECT SUM(nope) FROM pums", "0.5", agreement="tight", kind="explain"),
        )
    assert info.value.reason == "FIELD_NOT_IN_AGREEMENT"
    with pytest.raises(PermissionDenied) as wrong_kind:  # a preview can never be spent as a query
        service.answer(
            CALLER, sign(pki.analyst(), sql, "0.1", agreement="tight", kind="explain"), serialize_release
        )
    assert wrong_kind.value.reason == "WRONG_REQUEST_KIND"


def test_the_combined_preview_adds_the_nodes_noise(pki: TestPki) -> None:
    config = pums()
    service = node_service(pki, (config,))
    sql = "SELECT COUNT(*) AS n FROM pums"
    one = service.explain(CALLER, sign(pki.analyst(), sql, "1", kind="explain"))
    three = combine_previews([one, one, one], Epsilon.parse("1"), target=2.0)
    assert three[0].estimate is not None and one.aggregates[0].estimate is not None
    assert three[0].estimate.half_width == intervals.half_width([1.0] * 3, [D] * 3)
    assert three[0].estimate.half_width > one.aggregates[0].estimate.half_width
    needed = three[0].epsilon_for_target
    assert needed is not None
    width = intervals.half_width([float(1 / needed.value)] * 3, [D] * 3)
    assert width <= 2.0


def test_least_epsilon_is_least_at_two_significant_digits() -> None:
    def width(e: Fraction) -> float:
        return 3.0 / float(e)

    assert least_epsilon(width, Fraction(1), 3.0, 10.0) == Epsilon.parse("0.3")
    assert least_epsilon(width, Fraction(1), 3.0, 0.5) == Epsilon.parse("6")
    assert least_epsilon(width, Fraction(1), 3.0, 0.001) is None  # beyond any allowed epsilon
    assert least_epsilon(width, Fraction(1), 0.0, 1.0) is None  # no noise at all


# ---- decisions -----------------------------------------------------------------------------------


def test_every_request_ends_in_one_decision_without_data(pki: TestPki) -> None:
    config = pums()
    decisions: list[Decision] = []
    service = node_service(pki, (config,), on_decision=decisions.append)
    sql = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"
    signed = sign(pki.analyst(), sql, "1/2", query_id="q-1")
    service.answer(CALLER, signed, serialize_release)
    service.answer(CALLER, sign(pki.analyst(), sql, "0.5", query_id="q-1"), serialize_release)
    with pytest.raises(PermissionDenied):
        service.answer(CALLER, sign(pki.analyst(), "SELECT SUM(nope) FROM pums", "1"), serialize_release)
    service.budget(CALLER, sign(pki.analyst(), "", "", kind="budget"))
    outcomes = [(d.kind, d.outcome, d.reason, d.epsilon) for d in decisions]
    assert outcomes == [
        ("query", "answered", "", "1/2"),
        ("query", "answered-again", "", "0"),
        ("query", "refused", "FIELD_NOT_IN_AGREEMENT", "0"),
        ("budget", "shown", "", "0"),
    ]
    first = decisions[0]
    assert (first.analyst, first.agreement, first.purpose, first.dataset) == (
        "alice",
        "open",
        "TESTING",
        "pums",
    )
    assert first.uses == (("*", "count"), ("sex", "group_by"))
    assert first.payload_digest == signed.payload_digest().hex() and len(first.release_digest) == 64
    text = first.to_json()
    assert json.loads(text)["outcome"] == "answered" and "SELECT" not in text
    assert service._state.usage()["open"].refused == {"FIELD_NOT_IN_AGREEMENT": 1}


def test_a_group_needs_enough_rows_for_enough_people(pki: TestPki) -> None:
    """Property: with up to k rows a person, a group is released only when its noisy row count
    reaches min_group_size times k: two people with five rows each are not ten people."""
    config = pums(k=4)
    agreement = open_agreement({"pums": config.schema}, ident="small-cells", min_group_size=10)
    service = node_service(pki, (config,), agreements=(agreement,))
    payload = service.answer(
        CALLER,
        sign(pki.analyst(), "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex", "1", agreement="small-cells"),
        serialize_release,
    )  # fmt: skip
    release = _release(payload)
    assert (release.min_group_size, release.suppress_below) == (10, 40)
    two_people = node_release("a", {"Abbey": 10})
    two_people = Release(
        "q", "a", "citizens", COLUMNS, two_people.rows, two_people.epsilon, agreement="dsa",
        min_group_size=10, suppress_below=50,
    )  # fmt: skip
    combined = combine("q", {"a": two_people}, {})
    assert combined.rows[0].suppressed and combined.suppress_below == 50
    assert "of fewer than 10 people; a noisy count below 50 rows" in format_release(combined, "table")


def test_refusals_are_counted_only_for_the_agreements_parties_and_only_for_queries(pki: TestPki) -> None:
    """Property: the register's refusal counts cannot be inflated by analysts the agreement does not
    cover, nor by previews; a party's refused query is counted once."""
    service = node_service(pki, (pums(),))
    bad = "SELECT SUM(nope) FROM pums"
    for _ in range(3):
        with pytest.raises(PermissionDenied):
            service.answer(CALLER, sign(pki.analyst("mallory"), bad, "1"), serialize_release)
        with pytest.raises(PermissionDenied):
            service.explain(CALLER, sign(pki.analyst(), bad, "1", kind="explain"))
    assert service._state.usage() == {}
    with pytest.raises(PermissionDenied):
        service.answer(CALLER, sign(pki.analyst(), bad, "1"), serialize_release)
    assert service._state.usage()["open"].refused == {"FIELD_NOT_IN_AGREEMENT": 1}


def test_a_decision_never_carries_what_the_analyst_wrote(pki: TestPki) -> None:
    decisions: list[Decision] = []
    service = node_service(pki, (pums(),), on_decision=decisions.append)
    with pytest.raises(Exception, match="compared with"):
        service.answer(
            CALLER, sign(pki.analyst(), "SELECT COUNT(*) FROM pums WHERE sex = 'Jane Citizen 943 476'", "1"),
            serialize_release,
        )  # fmt: skip
    assert "Jane" not in decisions[-1].to_json() and decisions[-1].reason == "INVALID_QUERY"
