"""The policy corpus: hundreds of queries over several agreements, each through the node's real answer
path (signed, verified, compiled against the agreement's view, run in DuckDB, recorded): every
must-accept query is answered and charged exactly its epsilon; every must-reject query is refused
with its reason code, a message naming the agreement, nothing charged, and no field the agreement
hides named in the message."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date
from fractions import Fraction

import pytest

from accord.errors import AccordError, BudgetExhausted, PermissionDenied
from accord.node.service import NodeService, reason_of
from accord.node.servicer import serialize_release
from accord.node.state import MemoryState
from accord.policies.agreements import Agreement
from accord.policies.identity import Identity
from accord.query.epsilon import Epsilon
from accord.rpc.transport import TlsFiles
from tests.conftest import TestPki
from tests.paths import CENSUS
from tests.signing import node_service, open_agreement, sign
from tests.unit.nodedata import PUMS_COLUMNS, dataset, pums

CALLER = Identity("coordinator", "coordinator")
PAST = (date(2000, 1, 1), date(2001, 12, 31))
FUTURE = (date(2990, 1, 1), date(2999, 12, 31))
BIG = ("1000000", "1000000", "2")


def _agreements(schemas: dict) -> tuple[Agreement, ...]:
    pums_only = {"pums": schemas["pums"]}
    census = open_agreement(
        schemas,
        ident="census-2026",
        fields={"age": (), "sex": (), "educ": (), "race": (), "income": (), "married": ()},
        analysts=("alice",),
        budget=BIG,
    )
    # narrow each field's uses by hand: age sum/avg/filter, sex group/filter, educ group, race filter,
    # income avg, married count
    from accord.policies.agreements import DatasetGrant, FieldUse

    U = FieldUse
    census_fields = {
        "age": frozenset({U.SUM, U.AVG, U.FILTER}),
        "sex": frozenset({U.GROUP_BY, U.FILTER}),
        "educ": frozenset({U.GROUP_BY}),
        "race": frozenset({U.FILTER}),
        "income": frozenset({U.AVG}),
        "married": frozenset({U.COUNT}),
    }
    census = _with_grants(census, {"pums": DatasetGrant("pums", census_fields)})
    counts = _with_grants(
        open_agreement(
            pums_only, ident="counts-only", analysts=("alice", "bob"), budget=("1000", "1000", "1")
        ),
        {
            "pums": DatasetGrant(
                "pums", {"sex": frozenset({U.GROUP_BY}), "race": frozenset({U.GROUP_BY, U.FILTER})}
            )
        },
    )
    no_rows = _with_grants(
        open_agreement(pums_only, ident="no-rows", analysts=("alice",), budget=BIG),
        {"pums": DatasetGrant("pums", {"age": frozenset({U.SUM})}, count_rows=False)},
    )
    return (
        census,
        counts,
        no_rows,
        open_agreement(pums_only, ident="expired", analysts=("alice",), valid=PAST, budget=BIG),
        open_agreement(pums_only, ident="future", analysts=("alice",), valid=FUTURE, budget=BIG),
        open_agreement(pums_only, ident="bobs", analysts=("bob",), budget=BIG),
        open_agreement(pums_only, ident="generous", analysts=("alice",), budget=("1000", "1000", "50")),
        open_agreement(pums_only, ident="tiny", analysts=("alice",), budget=("1", "1", "1")),
    )


def _with_grants(agreement: Agreement, grants: dict) -> Agreement:
    from dataclasses import replace

    return replace(agreement, datasets=grants)


@dataclass(frozen=True)
class Case:
    who: str
    agreement: str
    sql: str
    epsilon: str = "1"
    reason: str = ""  # empty: must be answered


GROUPS = ("", "sex", "educ", "sex, educ")
WHERES = ("", "age > 30", "sex = 1", "race IN (1, 2)", "age BETWEEN 20 AND 60 AND sex = 0")
AGGREGATES = ("COUNT(*)", "SUM(age)", "AVG(age)", "AVG(income)", "COUNT(married)")


def _sql(aggregates: tuple[str, ...], group: str = "", where: str = "", dataset: str = "pums") -> str:
    outputs = ", ".join([*([group] if group else []), *(f"{a} AS a{i}" for i, a in enumerate(aggregates))])
    text = f"SELECT {outputs} FROM {dataset}"
    if where:
        text += f" WHERE {where}"
    if group:
        text += f" GROUP BY {group}"
    return text


def accepted() -> list[Case]:
    cases = []
    epsilons = itertools.cycle(("0.5", "1", "2", "1/3"))
    for agg, group, where in itertools.product(AGGREGATES, GROUPS, WHERES):
        cases.append(Case("alice", "census-2026", _sql((agg,), group, where), next(epsilons)))
    for pair in itertools.combinations(AGGREGATES, 2):
        for group, where in itertools.product(("", "sex", "educ"), ("", "age > 30")):
            cases.append(Case("alice", "census-2026", _sql(pair, group, where), next(epsilons)))
    for triple, group in itertools.product(itertools.combinations(AGGREGATES, 3), ("", "educ")):
        cases.append(Case("alice", "census-2026", _sql(triple, group, "sex = 1"), next(epsilons)))
    for who, group, where in itertools.product(
        ("alice", "bob"), ("", "sex", "race", "sex, race"), ("", "race = 1", "race <> 2", "race IN (3, 4)")
    ):
        cases.append(Case(who, "counts-only", _sql(("COUNT(*)",), group, where), "1"))
    cases.append(Case("alice", "no-rows", _sql(("SUM(age)",)), "1"))
    cases.append(Case("bob", "bobs", _sql(("COUNT(*)",), "race"), "1"))
    cases.append(Case("alice", "generous", _sql(("SUM(income)",), "married"), "5"))
    cases.append(
        Case("alice", "census-2026", _sql(("COUNT(*)", "AVG(age)", "AVG(income)"), "sex, educ"), "2")
    )
    return cases


def rejected() -> list[Case]:
    cases = []
    not_allowed = [  # (query part, how) under census-2026: a field used in a way it may not be
        (("SUM(income)",), "", ""),
        (("COUNT(age)",), "", ""),
        (("COUNT(sex)",), "", ""),
        (("SUM(educ)",), "", ""),
        (("AVG(educ)",), "", ""),
        (("COUNT(*)",), "race", ""),
        (("COUNT(*)",), "married", ""),
        (("COUNT(*)",), "", "educ = 3"),
        (("COUNT(*)",), "", "income > 1000"),
        (("COUNT(*)",), "", "married = TRUE"),
        (("SUM(age)",), "", "educ IN (1, 2)"),
        (("AVG(age)",), "race", "age > 20"),
    ]
    for (aggs, group, where), extra_where, eps in itertools.product(
        not_allowed, ("", "age > 40", "sex = 0", "race = 2"), ("0.5", "1", "2")
    ):
        combined = " AND ".join(w for w in (where, extra_where) if w)
        cases.append(Case("alice", "census-2026", _sql(aggs, group, combined), eps, "FIELD_USE_NOT_ALLOWED"))
    for sql in (
        _sql(("COUNT(*)",), "", "sex = 1"),
        _sql(("COUNT(sex)",)),
        _sql(("COUNT(race)",), "sex"),
    ):
        for who in ("alice", "bob"):
            cases.append(Case(who, "counts-only", sql, "1", "FIELD_USE_NOT_ALLOWED"))
    for group, where in itertools.product(("", "sex"), ("", "age > 3")):
        reason = "FIELD_NOT_IN_AGREEMENT" if group else "FIELD_USE_NOT_ALLOWED"  # sex is not shared
        cases.append(Case("alice", "no-rows", _sql(("COUNT(*)",), group, where), "1", reason))
    hidden = [  # fields counts-only hides, and fields nobody has
        _sql(("SUM(age)",)),
        _sql(("AVG(income)",), "sex"),
        _sql(("COUNT(*)",), "educ"),
        _sql(("COUNT(*)",), "", "age > 3"),
        _sql(("COUNT(married)",)),
        _sql(("SUM(agee)",)),
        _sql(("COUNT(*)",), "", "incomx > 3"),
    ]
    for sql, who in itertools.product(hidden, ("alice", "bob")):
        cases.append(Case(who, "counts-only", sql, "1", "FIELD_NOT_IN_AGREEMENT"))
    for sql in (_sql(("COUNT(*)",), dataset="other"), _sql(("COUNT(*)",), dataset="nowhere")):
        for who in ("alice", "bob"):
            cases.append(Case(who, "counts-only", sql, "1", "DATASET_NOT_IN_AGREEMENT"))
    simple = _sql(("COUNT(*)",), "sex")
    for eps in ("0.5", "1", "2"):
        cases += [
            Case("alice", "no-such-agreement", simple, eps, "AGREEMENT_UNKNOWN"),
            Case("alice", "", simple, eps, "AGREEMENT_REQUIRED"),
            Case("bob", "census-2026", simple, eps, "ANALYST_NOT_A_PARTY"),
            Case("mallory", "counts-only", simple, eps, "ANALYST_NOT_A_PARTY"),
            Case("alice", "bobs", simple, eps, "ANALYST_NOT_A_PARTY"),
            Case("alice", "expired", simple, eps, "AGREEMENT_EXPIRED"),
            Case("alice", "future", simple, eps, "AGREEMENT_NOT_YET_VALID"),
        ]
    for eps in ("1.5", "2", "1.0001", "3/2"):
        cases.append(Case("alice", "counts-only", simple, eps, "EPSILON_ABOVE_QUERY_CAP"))
        cases.append(Case("bob", "counts-only", simple, eps, "EPSILON_ABOVE_QUERY_CAP"))
    for eps in ("2.5", "3", "4", "5"):
        cases.append(Case("alice", "census-2026", simple, eps, "EPSILON_ABOVE_QUERY_CAP"))
    for eps in ("6", "10", "49", "50"):
        cases.append(Case("alice", "generous", simple, eps, "EPSILON_ABOVE_NODE_LIMIT"))
    return cases


@pytest.fixture(scope="module")
def corpus_service(pki: TestPki) -> NodeService:
    main = pums()
    other = dataset(CENSUS / "PUMS_pid.csv", PUMS_COLUMNS, name="other")
    schemas = {"pums": main.schema, "other": other.schema}
    return node_service(
        pki, (main, other), agreements=_agreements(schemas), state=MemoryState("n"), max_epsilon="5"
    )


def _tls(pki: TestPki, who: str) -> TlsFiles:
    return pki.analyst(who)


def test_the_corpus_is_large_enough() -> None:
    assert len(accepted()) >= 200 and len(rejected()) >= 200
    assert len({c.sql + c.agreement + c.who + c.epsilon for c in rejected()}) >= 200


def test_every_must_accept_query_is_answered_and_charged_exactly(
    corpus_service: NodeService, pki: TestPki
) -> None:
    state = corpus_service._state
    before = {a: state.spent(a, "alice").analyst for a in ("census-2026", "counts-only")}
    charged: dict[tuple[str, str], Fraction] = {}
    for case in accepted():
        payload = corpus_service.answer(
            CALLER,
            sign(_tls(pki, case.who), case.sql, case.epsilon, agreement=case.agreement),
            serialize_release,
        )
        assert payload, case
        key = (case.agreement, case.who)
        charged[key] = charged.get(key, Fraction(0)) + Epsilon.parse(case.epsilon).value
    for (agreement, who), total in charged.items():
        spent = state.spent(agreement, who).analyst.value
        assert spent - before.get(agreement, Epsilon.zero()).value * (who == "alice") == total, (
            agreement,
            who,
        )


def test_every_must_reject_query_is_refused_with_its_reason(
    corpus_service: NodeService, pki: TestPki
) -> None:
    state = corpus_service._state
    hidden_by_counts_only = {"age", "educ", "income", "married"}
    wrong: list[str] = []
    for case in rejected():
        spent_before = state.spent(case.agreement, case.who) if case.agreement else None
        try:
            corpus_service.answer(
                CALLER,
                sign(_tls(pki, case.who), case.sql, case.epsilon, agreement=case.agreement),
                serialize_release,
            )
        except AccordError as err:
            got = reason_of(err)
            if got != case.reason:
                wrong.append(f"{case}: got {got}: {err.message}")
                continue
            assert isinstance(err, PermissionDenied)
            if case.agreement and case.reason not in ("AGREEMENT_UNKNOWN",):
                assert case.agreement in err.message, err.message
            if case.agreement == "counts-only":
                named = {f for f in hidden_by_counts_only if f in err.message and f not in case.sql}
                assert not named, f"{case}: the refusal names hidden field(s) {named}: {err.message}"
            if spent_before is not None:
                assert state.spent(case.agreement, case.who) == spent_before, case
        else:
            wrong.append(f"{case}: answered")
    assert wrong == []


def test_a_full_budget_is_refused_saying_what_remains(corpus_service: NodeService, pki: TestPki) -> None:
    alice = _tls(pki, "alice")
    sql = _sql(("COUNT(*)",))
    corpus_service.answer(CALLER, sign(alice, sql, "2/3", agreement="tiny"), serialize_release)
    with pytest.raises(BudgetExhausted) as info:
        corpus_service.answer(CALLER, sign(alice, sql, "1/2", agreement="tiny"), serialize_release)
    message = info.value.message
    assert "1/3 left (of 1)" in message and "agreement has 1/3 left" in message and "tiny" in message
    corpus_service.answer(
        CALLER, sign(alice, sql, "1/3", agreement="tiny"), serialize_release
    )  # exactly fits
    assert corpus_service._state.spent("tiny", "alice").analyst == Epsilon(Fraction(1))
    with pytest.raises(BudgetExhausted):
        corpus_service.answer(CALLER, sign(alice, sql, "1/1000", agreement="tiny"), serialize_release)
    assert corpus_service._state.usage()["tiny"].refused["BUDGET_EXHAUSTED"] == 2
