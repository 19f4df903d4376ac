"""The auditor's summary of a log: its numbers are the entries' (exact epsilons, refusals by reason,
retries apart); it renders as a table, CSV and JSON that parse back, and as a PNG chart."""

from __future__ import annotations

import csv
import io
import json
import struct
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from accord.errors import ConfigError
from accord.policies.audit_report import (
    CSV_HEADER,
    Report,
    render_csv,
    render_json,
    render_table,
    summarise,
    write_chart,
)
from accord.query.epsilon import Epsilon
from tests.unit.test_audit_check import START, agreements, answer, compliant, entries

# The compliant log of test_audit_check (alice: three answers of 0.1, a refusal, a retry, a
# preview, a budget shown; bob: one answer of 0.1), with more to count: alice is refused twice
# more, bob's query fails, and carol asks under an agreement the auditor does not hold.
EXTRA = [
    answer(20, outcome="refused", reason="BUDGET_EXHAUSTED", epsilon="0", release_digest=""),
    answer(21, outcome="refused", reason="FIELD_USE_NOT_ALLOWED", epsilon="0", release_digest=""),
    answer(22, "bob", outcome="failed", reason="UNAVAILABLE", epsilon="0", release_digest=""),
    answer(23, "carol", "1/3", agreement="dsa-9"),
    answer(24, "carol", "1/3", agreement="dsa-9"),
]


def report(tmp_path: Path, with_agreements: bool = True) -> Report:
    given = agreements(tmp_path)
    log = [*compliant(given["dsa-1"].digest), *EXTRA]
    return summarise(entries(*log), given if with_agreements else None)


def test_the_numbers_are_the_entries(tmp_path: Path) -> None:
    """Property: per node, agreement and analyst, the report counts fresh answers, retries,
    refusals and failures by reason, previews and budgets shown as the log records them, sums the
    epsilon of fresh answers only, exactly, and keeps the first and last times."""
    r = report(tmp_path)
    assert (r.entries, r.decisions) == (14, 13)
    assert [(x.node, x.agreement, x.analyst) for x in r.lines] == [
        ("county", "dsa-1", "alice"),
        ("county", "dsa-1", "bob"),
        ("county", "dsa-9", "carol"),
    ]
    alice, bob, carol = r.lines
    assert (alice.answered, alice.answered_again, alice.previewed, alice.shown) == (3, 1, 1, 1)
    assert dict(alice.refused) == {"BUDGET_EXHAUSTED": 2, "FIELD_USE_NOT_ALLOWED": 1}
    assert alice.refusals == 3 and alice.failures == 0
    assert (
        alice.spent == Epsilon.parse("0.3") and alice.spent.display() == "0.3"
    )  # exactly, not 0.30000000000000004
    assert alice.agreement_spent == bob.agreement_spent == Epsilon.parse("0.4")
    assert (alice.first, alice.last) == (START + timedelta(minutes=1), START + timedelta(minutes=21))
    assert (bob.answered, dict(bob.failed), bob.spent) == (1, {"UNAVAILABLE": 1}, Epsilon.parse("0.1"))
    assert carol.spent == Epsilon.parse("2/3") and carol.spent.display() == "2/3"
    assert [(at.minute, e.display()) for at, e in alice.series] == [(1, "0.1"), (3, "0.2"), (8, "0.3")]


def test_caps_come_from_the_agreements_when_given(tmp_path: Path) -> None:
    """Property: with the agreements, each line carries its agreement's caps, and an agreement
    the auditor does not hold is noted; without them, no caps and no note."""
    alice, _, carol = report(tmp_path).lines
    assert alice.budget is not None and alice.budget.per_analyst == Epsilon.parse("0.3")
    assert carol.budget is None
    assert report(tmp_path).notes == ("agreement dsa-9 was not given: its caps are not shown",)
    bare = report(tmp_path, with_agreements=False)
    assert all(line.budget is None for line in bare.lines) and bare.notes == () and not bare.agreements_given


def test_an_unreadable_epsilon_is_noted_not_guessed(tmp_path: Path) -> None:
    """Property: an answer whose epsilon is not a number is counted as an answer, its spending is
    not counted, and the report says so, naming the entry."""
    r = summarise(entries(answer(1), answer(2, epsilon="lots")))
    (line,) = r.lines
    assert line.answered == 2 and line.spent == Epsilon.parse("0.1")
    assert r.notes == ("entry 1: epsilon 'lots' is not a number; that answer's spending is not counted "
                       "(accord audit check reports it)",)  # fmt: skip


def test_the_csv_parses_back_to_the_report(tmp_path: Path) -> None:
    """Property: the CSV has the documented header and one row per line, holding the report's
    numbers (exact epsilons, caps empty when unknown, reasons as CODE=n pairs)."""
    r = report(tmp_path)
    rows = list(csv.reader(io.StringIO(render_csv(r))))
    assert tuple(rows[0]) == CSV_HEADER and len(rows) == 1 + len(r.lines)
    parsed = [dict(zip(CSV_HEADER, row, strict=True)) for row in rows[1:]]
    alice, bob, carol = parsed
    assert alice["analyst"] == "alice" and alice["answered"] == "3" and alice["answered_again"] == "1"
    assert (
        alice["refused"] == "3" and alice["refused_by_reason"] == "BUDGET_EXHAUSTED=2;FIELD_USE_NOT_ALLOWED=1"
    )
    assert (alice["epsilon_spent"], alice["per_analyst_cap"], alice["total_cap"]) == ("0.3", "0.3", "0.6")
    assert alice["agreement_epsilon_spent"] == "0.4" and alice["first"] == "2026-03-01T09:01:00Z"
    assert bob["failed_by_reason"] == "UNAVAILABLE=1"
    assert carol["epsilon_spent"] == "2/3" and carol["per_analyst_cap"] == carol["per_query_cap"] == ""
    for row, line in zip(parsed, r.lines, strict=True):
        assert Epsilon.parse(row["epsilon_spent"]) == line.spent  # read back exactly


def test_the_csv_does_not_hand_a_spreadsheet_a_formula() -> None:
    """Property: a value from the log that a spreadsheet would run as a formula is written as text."""
    (row,) = list(csv.DictReader(io.StringIO(render_csv(summarise(entries(answer(1, "=HYPERLINK(1)")))))))
    assert row["analyst"] == "'=HYPERLINK(1)"


def test_the_json_parses_back_and_is_stable(tmp_path: Path) -> None:
    """Property: the JSON holds the report (exact epsilons as strings, caps or null, the series),
    has sorted keys, and is the same text every time for the same log."""
    r = report(tmp_path)
    text = render_json(r)
    doc = json.loads(text)
    assert text == json.dumps(doc, sort_keys=True, indent=2) + "\n" == render_json(report(tmp_path / "again"))
    assert (doc["entries"], doc["decisions"], doc["agreements_given"]) == (14, 13, True)
    alice = doc["lines"][0]
    assert alice["refused"] == {"BUDGET_EXHAUSTED": 2, "FIELD_USE_NOT_ALLOWED": 1}
    assert alice["caps"] == {"per_analyst": "0.3", "total": "0.6", "per_query": "0.2"}
    assert alice["series"] == [["2026-03-01T09:01:00Z", "0.1"], ["2026-03-01T09:03:00Z", "0.2"],
                               ["2026-03-01T09:08:00Z", "0.3"]]  # fmt: skip
    assert doc["lines"][2]["caps"] is None and doc["lines"][2]["epsilon_spent"] == "2/3"


def test_the_table_is_aligned_and_escapes_the_log(tmp_path: Path) -> None:
    """Property: the table has a header and one row per line, its columns aligned (each header
    starts where its values do), and a value from the log cannot drive the terminal."""
    text = render_table(report(tmp_path))
    lines = text.splitlines()
    header, alice, bob, carol = lines[1:5]
    for name, value in (("spent", "0.3"), ("first", "2026-03-01T09:01:00Z"), ("agreement", "dsa-1")):
        assert alice.index(value) == header.index(name)
    assert bob.split()[:4] == ["county", "dsa-1", "bob", "1"] and "UNAVAILABLE=1" in bob
    assert carol.split()[9:11] == ["2/3", "-"]  # spent, and no cap: dsa-9 was not given
    assert "agreement dsa-9 was not given" in text
    hostile = render_table(summarise(entries(answer(1, "eve\x1b[2J"))))
    assert "\x1b" not in hostile and "eve\\x1b[2J" in hostile
    assert "no decisions in the log" in render_table(summarise([]))


def test_progress_is_reported_every_n_entries(tmp_path: Path) -> None:
    """Property: a progress callback hears the number of entries read after every ``every``."""
    heard: list[int] = []
    summarise(entries(*(answer(n) for n in range(7))), progress=heard.append, every=3)
    assert heard == [3, 6]


def _png_size(path: Path) -> tuple[int, int]:
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    width, height = struct.unpack(">II", data[16:24])
    return width, height


def test_the_chart_is_a_png_of_the_spending(tmp_path: Path) -> None:
    """Property: the chart is a PNG of the figure's size (1000 x 550) holding a real drawing: more
    than a kilobyte, and more than the same chart of a log without answers."""
    path, empty = tmp_path / "spent.png", tmp_path / "empty.png"
    write_chart(report(tmp_path), path)
    write_chart(summarise(entries(answer(1, outcome="refused", reason="X", epsilon="0"))), empty)
    assert _png_size(path) == _png_size(empty) == (1000, 550)
    drawn, blank = path.stat().st_size, empty.stat().st_size
    assert blank > 1_000 and drawn > blank + 1_000


def test_the_chart_without_matplotlib_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property: without matplotlib the chart is a ConfigError naming the extra to install, and
    nothing is written."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(ConfigError, match=r"pip install 'accord\[audit\]'"):
        write_chart(summarise([]), tmp_path / "chart.png")
    assert not (tmp_path / "chart.png").exists()


def test_a_chart_that_cannot_be_written_says_so(tmp_path: Path) -> None:
    """Property: a chart path in a folder that does not exist is a ConfigError naming it."""
    with pytest.raises(ConfigError, match="cannot write the chart"):
        write_chart(summarise([]), tmp_path / "missing" / "chart.png")


def test_lines_are_per_node(tmp_path: Path) -> None:
    """Property: answers at two nodes are two lines with their own spending (each node keeps its own
    ledger), and times are UTC whatever the decision's zone."""
    r = summarise(entries(answer(1), answer(2, node="district-a"), answer(3, node="district-a")))
    assert [(x.node, x.spent.display(), x.agreement_spent.display()) for x in r.lines] == [
        ("county", "0.1", "0.1"),
        ("district-a", "0.2", "0.2"),
    ]
    assert all(x.first.utcoffset() == timedelta(0) for x in r.lines)
    assert r.lines[0].first == datetime(2026, 3, 1, 9, 1, tzinfo=UTC)
