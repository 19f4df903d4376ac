"""The auditor's compliance check: a compliant log passes; every rule a node applies is caught when
one answer that breaks it is planted in that log (at its index, under its code, and nothing else);
caps are exact and per node; only fresh answers spend or are judged; which text of an agreement
the node ran is a warning naming the entry that loaded it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from accord.errors import ConfigError
from accord.policies.agreements import Agreement
from accord.policies.audit_check import (
    NOTICES,
    RULES,
    CheckResult,
    check_entries,
    load_agreements_for_check,
    recorded_epsilon,
)
from accord.policies.audit_entry import AuditEntry, decision_entry, decode, encode, timestamp
from accord.policies.decision import Decision
from accord.query.epsilon import Epsilon

AGREEMENT = """
id = "dsa-1"
title = "Test"
lawful_basis = "public task"
consent = "opt-out"
valid_from = 2026-01-01
valid_until = 2026-12-31
review_date = 2026-06-30

[purpose]
code = "P-1"
description = "testing"

[parties]
nodes = ["county", "district-a"]
organisations = ["Westshire County Council"]
analysts = ["alice", "bob", "carol"]

[budget]
per_analyst = "0.3"
total = "0.6"
per_query = "0.2"

[datasets.citizens]
count_rows = true

[datasets.citizens.fields]
district = ["group_by", "filter"]
age = ["sum", "avg"]

[datasets.contacts]
count_rows = false

[datasets.contacts.fields]
service = ["group_by"]
"""
"""The agreement the logs below are checked against: caps 0.2 a query, 0.3 an analyst, 0.6 in all."""

START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)
RELEASE = "ab" * 32


def write_agreement(folder: Path, text: str = AGREEMENT, name: str = "dsa-1.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def agreements(tmp_path: Path, text: str = AGREEMENT) -> dict[str, Agreement]:
    write_agreement(tmp_path / "agreements", text)
    return load_agreements_for_check(tmp_path / "agreements")


def answer(n: int, analyst: str = "alice", epsilon: str = "1/10", **more: object) -> Decision:
    """A compliant answer, the ``n``-th minute after :data:`START`, query id ``q<n>``."""
    fields: dict[str, object] = {
        "node": "county",
        "kind": "query",
        "outcome": "answered",
        "at": START + timedelta(minutes=n),
        "caller": "coordinator:hub",
        "analyst": analyst,
        "query_id": f"q{n}",
        "agreement": "dsa-1",
        "purpose": "P-1",
        "dataset": "citizens",
        "uses": (("*", "count"), ("age", "sum"), ("district", "group_by"), ("district", "filter")),
        "epsilon": epsilon,
        "payload_digest": "cd" * 32,
        "envelope_digest": "ef" * 32,
        "release_digest": RELEASE,
    }
    fields.update(more)
    return Decision(**fields)  # type: ignore[arg-type]


def loaded(digest: str, n: int = -1, change: str = "loaded", node: str = "county") -> bytes:
    """An ``agreement`` entry: ``node`` loaded (changed, removed) a text of dsa-1 with ``digest``."""
    return encode(
        {
            "type": "agreement",
            "node": node,
            "at": timestamp(START + timedelta(minutes=n)),
            "agreement": "dsa-1",
            "change": change,
            "digest": digest,
        }
    )


def entries(*items: Decision | bytes) -> list[tuple[int, AuditEntry]]:
    """The log holding ``items`` (decisions, or entries' bytes), as the reader hands it over: each
    entry decoded from its canonical bytes with its index."""
    return [
        (i, decode(item if isinstance(item, bytes) else decision_entry(item))) for i, item in enumerate(items)
    ]


def compliant(digest: str) -> list[Decision | bytes]:
    """A compliant log of dsa-1 at the county: alice spends exactly her 0.3 in three answers, bob
    0.1; a refusal, a retry, a preview and a budget shown spend nothing."""
    return [
        loaded(digest),  # 0
        answer(1),  # 1
        answer(2, "bob"),  # 2
        answer(3, uses=(("*", "count"),)),  # 3
        answer(4, outcome="refused", reason="BUDGET_EXHAUSTED", epsilon="0", release_digest=""),  # 4
        answer(5, epsilon="0", outcome="answered-again", query_id="q3"),  # 5
        answer(6, kind="explain", outcome="previewed", epsilon="0", release_digest=""),  # 6
        answer(7, kind="budget", outcome="shown", epsilon="0", release_digest="", dataset="", uses=()),  # 7
        answer(8, epsilon="0.1"),  # 8: alice's third 0.1
    ]


def check(tmp_path: Path, items: Sequence[Decision | bytes], text: str = AGREEMENT) -> CheckResult:
    return check_entries(entries(*items), agreements(tmp_path, text))


def found(result: CheckResult) -> list[tuple[int, str]]:
    return [(v.index, v.rule) for v in result.violations]


def warned(result: CheckResult) -> list[tuple[int, str]]:
    return [(w.index, w.code) for w in result.warnings]


@pytest.fixture
def digest(tmp_path: Path) -> str:
    return agreements(tmp_path)["dsa-1"].digest


def test_a_compliant_log_has_no_violations(tmp_path: Path, digest: str) -> None:
    """Property: a log whose answers all keep to the agreement (the text the log says the node
    loaded is the file given) has no violation and no warning; the counts say what was read."""
    result = check(tmp_path, compliant(digest))
    assert result.ok and found(result) == [] and warned(result) == []
    assert (result.entries, result.decisions, result.answered) == (9, 8, 4)


def test_an_agreement_is_in_force_on_its_first_and_last_days_in_utc(tmp_path: Path) -> None:
    """Property: answers from the first second of valid_from to the last of valid_until (UTC) are
    in force, and so is a time whose local date is past valid_until but whose UTC date is not."""
    west, east = timezone(timedelta(hours=-2)), timezone(timedelta(hours=2))
    log = [
        answer(1, at=datetime(2026, 1, 1, 0, 0, tzinfo=UTC)),
        answer(2, at=datetime(2026, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
        answer(3, "bob", at=datetime(2027, 1, 1, 1, 0, tzinfo=east)),  # 23:00 on 31 December in UTC
    ]
    assert check(tmp_path, log).ok
    assert found(check(tmp_path / "b", [answer(1, at=datetime(2026, 12, 31, 23, 0, tzinfo=west))])) == [
        (0, "NOT_IN_FORCE")
    ]


def _at(index: int, **changes: object) -> Callable[[list[Decision | bytes]], None]:
    def plant(log: list[Decision | bytes]) -> None:
        original = log[index]
        assert isinstance(original, Decision)
        log[index] = replace(original, **changes)  # type: ignore[arg-type]

    return plant


def _append(*decisions: Decision) -> Callable[[list[Decision | bytes]], None]:
    return lambda log: log.extend(decisions)


PLANTED: list[tuple[str, int, Callable[[list[Decision | bytes]], None]]] = [
    ("AGREEMENT_UNKNOWN", 2, _at(2, agreement="dsa-9")),
    ("AGREEMENT_UNKNOWN", 2, _at(2, agreement="")),
    ("NODE_NOT_PARTY", 2, _at(2, node="district-b")),
    ("ANALYST_NOT_PARTY", 2, _at(2, analyst="mallory")),
    ("NOT_IN_FORCE", 2, _at(2, at=datetime(2027, 1, 1, 0, 0, tzinfo=UTC))),
    ("NOT_IN_FORCE", 2, _at(2, at=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC))),
    # 23:30 on 31 December two hours west of UTC is 1 January in UTC: the date is the UTC one
    ("NOT_IN_FORCE", 2, _at(2, at=datetime(2026, 12, 31, 23, 30, tzinfo=timezone(timedelta(hours=-2))))),
    ("PURPOSE_MISMATCH", 2, _at(2, purpose="OTHER-PURPOSE")),
    ("DATASET_NOT_GRANTED", 2, _at(2, dataset="adult_social_care")),
    ("FIELD_NOT_GRANTED", 2, _at(2, uses=(("district", "group_by"), ("income", "avg")))),
    ("USE_NOT_ALLOWED", 2, _at(2, uses=(("age", "group_by"),))),
    ("USE_NOT_ALLOWED", 2, _at(2, uses=(("district", "sum"),))),
    ("COUNT_ROWS_NOT_ALLOWED", 2, _at(2, dataset="contacts", uses=(("*", "count"), ("service", "group_by")))),
    ("EPSILON_INVALID", 2, _at(2, epsilon="a lot")),
    ("EPSILON_INVALID", 2, _at(2, epsilon="0")),
    ("EPSILON_INVALID", 2, _at(2, epsilon="-1/10")),
    ("PER_QUERY_CAP", 2, _at(2, epsilon="0.25")),  # bob 0.25 of 0.3; all 0.55 of 0.6
    ("ANALYST_CAP", 9, _append(answer(10, epsilon="1/1000"))),  # alice past 0.3 by 1/1000
    ("TOTAL_CAP", 10, _append(answer(10, "bob", "0.2"), answer(11, "carol", "0.1"))),  # 0.6 exactly, then 0.7
    ("RETRY_RELEASE_DIFFERS", 5, _at(5, release_digest="00" * 32)),
]


@pytest.mark.parametrize(
    ("rule", "index", "plant"), PLANTED, ids=[f"{r}-{i}" for i, (r, _, _) in enumerate(PLANTED)]
)
def test_each_rule_is_caught_where_it_is_planted(
    tmp_path: Path, digest: str, rule: str, index: int, plant: Callable[[list[Decision | bytes]], None]
) -> None:
    """Property: one answer breaking one rule, planted in the compliant log, is the one violation
    found: at its index, under its code, naming its query, analyst and agreement."""
    log = compliant(digest)
    plant(log)
    result = check(tmp_path, log)
    assert found(result) == [(index, rule)]
    (violation,) = result.violations
    planted = log[index]
    assert isinstance(planted, Decision)
    assert (violation.query_id, violation.analyst, violation.agreement) == (
        planted.query_id,
        planted.analyst,
        planted.agreement,
    )
    assert violation.message and "\n" not in violation.message and rule in RULES


def test_every_rule_code_is_planted_above() -> None:
    """Property: the table of planted answers covers every rule the check documents (NODE_MISMATCH,
    which needs the log's own node, has its test below)."""
    assert {rule for rule, _, _ in PLANTED} == set(RULES) - {"NODE_MISMATCH"}


def test_an_entry_in_another_nodes_name_is_a_violation(tmp_path: Path, digest: str) -> None:
    """Property: checked as county's log, an answer written in district-a's name (a node splitting
    its spending across names to stay under the caps) is NODE_MISMATCH; the same entries checked
    without naming the node raise nothing of the kind."""
    log = [*compliant(digest), answer(30, node="district-a")]
    named = check_entries(entries(*log), agreements(tmp_path), node="county")
    assert [(i, r) for i, r in found(named) if r == "NODE_MISMATCH"] == [(len(log) - 1, "NODE_MISMATCH")]
    assert "NODE_MISMATCH" not in {v.rule for v in check(tmp_path, log).violations}


def test_a_retry_without_its_first_answer_is_still_held_to_the_agreement(tmp_path: Path, digest: str) -> None:
    """Property: an answered-again whose first answer is not in the log released something: given to
    an analyst the agreement does not name, it is ANALYST_NOT_PARTY (and still warned about)."""
    log = [loaded(digest), answer(1, "mallory", epsilon="0", outcome="answered-again", query_id="q-lost")]
    result = check(tmp_path, log)
    assert found(result) == [(1, "ANALYST_NOT_PARTY")]
    assert (1, "RETRY_WITHOUT_ANSWER") in warned(result)


def test_one_answer_breaking_several_rules_is_one_violation_per_rule(tmp_path: Path, digest: str) -> None:
    """Property: every rule an answer breaks is reported (not only the first), in a fixed order,
    and a field used two ways it may not be is reported for each use."""
    log = compliant(digest)
    log[2] = answer(2, "mallory", "0.25", purpose="X", uses=(("age", "group_by"), ("age", "filter")))
    result = check(tmp_path, log)
    assert [r for _, r in found(result)] == ["ANALYST_NOT_PARTY", "PURPOSE_MISMATCH", "USE_NOT_ALLOWED",
                                             "USE_NOT_ALLOWED", "PER_QUERY_CAP"]  # fmt: skip
    assert {i for i, _ in found(result)} == {2}


def test_caps_are_exact_sums_never_floats(tmp_path: Path) -> None:
    """Property: three answers of 0.1 fill a per-analyst cap of 0.3 exactly (as floats they would
    sum to 0.30000000000000004 and break it), however the epsilon is written; a fourth, however
    small, goes past it; thirds fill a cap of 1 exactly."""
    text = AGREEMENT.replace('"0.3"', '"1"').replace('"0.6"', '"2"').replace('"0.2"', '"1/2"')
    thirds = check(
        tmp_path, [answer(1, epsilon="1/3"), answer(2, epsilon="1/3"), answer(3, epsilon="1/3")], text
    )
    assert thirds.ok
    tenths = [answer(1, epsilon="0.1"), answer(2, epsilon="1/10"), answer(3, epsilon="0.10")]
    assert 0.1 + 0.1 + 0.1 > 0.3  # what a float ledger would get wrong
    assert check(tmp_path / "b", tenths).ok
    over = check(tmp_path / "c", [*tenths, answer(4, epsilon="1/1000000")])
    assert found(over) == [(3, "ANALYST_CAP")]
    assert "0.300001" in over.violations[0].message and "0.3" in over.violations[0].message


def test_every_answer_past_a_cap_is_a_violation(tmp_path: Path) -> None:
    """Property: once past a cap, each further answer is another violation (the analyst kept
    spending), and an answer that breaks another rule still spent its epsilon."""
    log = [answer(1), answer(2, purpose="X"), answer(3), answer(4), answer(5)]
    assert found(check(tmp_path, log)) == [(1, "PURPOSE_MISMATCH"), (3, "ANALYST_CAP"), (4, "ANALYST_CAP")]


def test_caps_are_kept_per_node(tmp_path: Path) -> None:
    """Property: each node keeps its own ledger: alice may spend her 0.3 at the county and again at
    district-a, but not 0.4 at one of them."""
    log = [answer(1), answer(2), answer(3), *(answer(n, node="district-a") for n in (4, 5, 6))]
    assert check(tmp_path, log).ok
    assert found(check(tmp_path / "b", [*log, answer(7, node="district-a")])) == [(6, "ANALYST_CAP")]


def test_refusals_retries_and_previews_spend_nothing_and_are_not_judged(tmp_path: Path) -> None:
    """Property: only fresh answers spend: refusals, failures, retries, previews and budgets shown
    neither count against a cap nor are judged against the agreement, whatever they name."""
    idle = [
        answer(n, "mallory", "0", agreement="dsa-9", outcome=outcome, reason=reason, release_digest="")
        for n, (outcome, reason) in enumerate(
            [("refused", "AGREEMENT_UNKNOWN"), ("failed", "UNAVAILABLE"), ("previewed", ""), ("shown", "")]
        )
    ]
    again = [answer(10 + n, epsilon="0", outcome="answered-again", query_id="q1") for n in range(5)]
    refused = [answer(20 + n, epsilon="0", outcome="refused", reason="BUDGET_EXHAUSTED") for n in range(5)]
    result = check(tmp_path, [*idle, answer(1), answer(2), answer(3), *again, *refused])
    assert result.ok and result.answered == 3 and result.decisions == 17


def test_the_log_running_another_text_of_the_agreement_is_a_warning(tmp_path: Path, digest: str) -> None:
    """Property: when the log says the node loaded a text of the agreement other than the file
    given (another SHA-256), the check warns at that entry, counting the answers given under it,
    and still checks them against the file given; once the node loads the given text again, its
    answers are not counted."""
    other = hashlib.sha256(b"another text").hexdigest()
    log: list[Decision | bytes] = [
        loaded(other),
        answer(1),
        answer(2),
        loaded(digest, 3, "changed"),
        answer(4),
    ]
    result = check(tmp_path, log)
    assert result.ok
    assert warned(result) == [(0, "AGREEMENT_TEXT_DIFFERS")]
    message = result.warnings[0].message
    assert "2 answers" in message and other[:16] in message and digest[:16] in message
    broken = check(tmp_path / "b", [loaded(other), answer(1, purpose="X")])
    assert found(broken) == [(1, "PURPOSE_MISMATCH")]  # still judged by the file given


def test_one_other_text_is_one_warning_however_often_the_node_restarts(tmp_path: Path, digest: str) -> None:
    """Property: a node logs the text of each agreement it holds at every start; one other text
    loaded at three start-ups is one warning, at the first, counting the answers after each."""
    other = hashlib.sha256(b"another text").hexdigest()
    log: list[Decision | bytes] = [loaded(digest), answer(1), loaded(other, 2, "changed"), answer(3)]
    log += [loaded(other, 4), answer(5), loaded(other, 6), answer(7, "bob")]
    result = check(tmp_path, log)
    assert result.ok and warned(result) == [(2, "AGREEMENT_TEXT_DIFFERS")]
    assert "3 answers" in result.warnings[0].message


def test_another_text_loaded_without_answers_is_still_a_warning(tmp_path: Path, digest: str) -> None:
    """Property: a node that loaded another text is worth a warning even if it answered nothing
    under it (0 answers), and a text the log records but the auditor was not given is not."""
    other = hashlib.sha256(b"another text").hexdigest()
    result = check(tmp_path, [loaded(digest), loaded(other, 1, "changed"), loaded(digest, 2, "changed")])
    assert warned(result) == [(1, "AGREEMENT_TEXT_DIFFERS")] and "0 answers" in result.warnings[0].message
    unknown = encode({"type": "agreement", "node": "county", "at": timestamp(START), "agreement": "dsa-9",
                      "change": "loaded", "digest": other})  # fmt: skip
    assert warned(check(tmp_path / "b", [unknown])) == []


def test_answers_under_a_removed_or_unlogged_agreement_are_warnings(tmp_path: Path, digest: str) -> None:
    """Property: answers the log gives under an agreement it says the node removed, or before it
    records any text of it, are a warning (at the removal, at the first such answer), one per
    node, checked against the file given."""
    removed = check(tmp_path, [loaded(digest), answer(1), loaded("", 2, "removed"), answer(3), answer(4)])
    assert removed.ok and warned(removed) == [(2, "AGREEMENT_REMOVED")]
    assert "2 answers" in removed.warnings[0].message
    unlogged = check(tmp_path / "b", [answer(1), answer(2), loaded(digest, 3), answer(4)])
    assert unlogged.ok and warned(unlogged) == [(0, "AGREEMENT_TEXT_UNLOGGED")]
    elsewhere = check(tmp_path / "c", [loaded(digest), answer(1), answer(2, node="district-a")])
    assert warned(elsewhere) == [(2, "AGREEMENT_TEXT_UNLOGGED")]  # the county's entry is not district-a's


def test_retries_and_reused_ids_are_warnings(tmp_path: Path, digest: str) -> None:
    """Property: a retry whose first answer is not in the log, a query id answered afresh twice at
    one node, and epsilon logged on a decision that released nothing new are each a warning; the
    same id at another node, or of another analyst, is not."""
    log: list[Decision | bytes] = [
        loaded(digest),
        answer(1, epsilon="0", outcome="answered-again", query_id="q-lost"),
        answer(2, query_id="q-same"),
        answer(3, query_id="q-same"),
        answer(4, "bob", query_id="q-same"),
        answer(5, outcome="refused", reason="INVALID_QUERY", epsilon="1/10", release_digest=""),
        answer(6, node="district-a", query_id="q-same"),
    ]
    result = check(tmp_path, log)
    assert result.ok
    assert warned(result) == [
        (1, "RETRY_WITHOUT_ANSWER"),
        (3, "QUERY_ID_REUSED"),
        (5, "EPSILON_WITHOUT_ANSWER"),
        (6, "AGREEMENT_TEXT_UNLOGGED"),  # district-a's log (here merged) never said what it loaded
    ]
    assert {w.code for w in result.warnings} <= set(NOTICES)


def test_progress_is_reported_every_n_entries(tmp_path: Path, digest: str) -> None:
    """Property: a progress callback hears the number of entries read after every ``every``
    entries (a long log shows it is moving), and nothing else changes."""
    heard: list[int] = []
    log = compliant(digest)
    result = check_entries(entries(*log), agreements(tmp_path), progress=heard.append, every=3)
    assert heard == [3, 6, 9] and result.ok
    with pytest.raises(ValueError):
        check_entries(entries(*log), {}, every=0)


def test_messages_escape_what_the_log_says(tmp_path: Path, digest: str) -> None:
    """Property: a value from the log cannot start a new line or drive the auditor's terminal."""
    result = check(tmp_path, [loaded(digest), answer(1, purpose="X\n\x1b[31mok")])
    (violation,) = result.violations
    assert "\n" not in violation.message and "\x1b" not in violation.message and "\\x1b" in violation.message


def test_recorded_epsilons_are_read_exactly() -> None:
    """Property: what a decision records is read exactly in either form, and never guessed at."""
    assert recorded_epsilon("1/10") == recorded_epsilon("0.1") == Epsilon.parse("0.1")
    assert recorded_epsilon("0") == Epsilon.zero()
    assert (
        recorded_epsilon("abc") is None
        and recorded_epsilon("-1") is None
        and recorded_epsilon("1e999") is None
    )


def test_the_agreements_folder_is_read_with_every_partys_grants(tmp_path: Path) -> None:
    """Property: every agreement file in the folder is read by id, whatever node holds its
    datasets (the auditor has no node's schemas), with the SHA-256 of its bytes."""
    path = write_agreement(tmp_path)
    write_agreement(tmp_path, AGREEMENT.replace('"dsa-1"', '"dsa-2"'), "second.TOML")
    (tmp_path / "notes.txt").write_text("not an agreement", encoding="utf-8")
    found_ = load_agreements_for_check(tmp_path)
    assert sorted(found_) == ["dsa-1", "dsa-2"]
    assert set(found_["dsa-1"].datasets) == {"citizens", "contacts"}
    assert found_["dsa-1"].digest == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bad_agreements_folder_is_refused_saying_what_to_fix(tmp_path: Path) -> None:
    """Property: a missing or empty folder, a file that is not a valid agreement, and two files of
    one id are each a ConfigError naming the folder or the files and what to do."""
    with pytest.raises(ConfigError, match=r"no such folder.*--agreements"):
        load_agreements_for_check(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match=r"holds no agreement files \(\*\.toml\)"):
        load_agreements_for_check(tmp_path / "empty")
    write_agreement(tmp_path / "bad", AGREEMENT.replace('per_query = "0.2"', 'per_query = "zero"'))
    with pytest.raises(ConfigError, match=r"dsa-1\.toml.*per_query"):
        load_agreements_for_check(tmp_path / "bad")
    first = write_agreement(tmp_path / "twice")
    second = write_agreement(tmp_path / "twice", AGREEMENT.replace("Test", "Amended"), "z-amended.toml")
    with pytest.raises(ConfigError) as caught:
        load_agreements_for_check(tmp_path / "twice")
    assert str(first) in caught.value.message and str(second) in caught.value.message
    assert "keep one text of each agreement" in caught.value.message
