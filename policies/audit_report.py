"""The auditor's summary of a node's audit log (``accord audit report DIR``): per agreement and
analyst, what was asked and what it cost.

:func:`summarise` reads entries that are already fetched and verified
(:mod:`accord.policies.audit_entry`) into a :class:`Report` with one :class:`ReportLine` per node,
agreement and analyst (a log is one node's, so the node is the same on every line of one log; it is
kept so that lines from several logs never mix ledgers): how many queries were answered, answered
again (a retry given the stored release, charged nothing) and refused or failed (by reason code),
how many previews and budgets were shown, the epsilon the answers spent (summed exactly; shown as a
decimal when it is one, as a fraction otherwise, so never rounded), when the first and last
decisions were taken, and each answer's time with the spending after it, for the chart. When the
agreements are given, each line also carries its agreement's caps
(:class:`~accord.policies.agreements.Budget`) and what all its analysts spent together at the
node. Whether the spending was allowed is :mod:`accord.policies.audit_check`'s question; the
report only counts.

It renders as a plain-text table for a terminal (:func:`render_table`; every value from the log is
escaped so it cannot drive the terminal), CSV (:func:`render_csv`, one row per line; a value that
a spreadsheet would run as a formula is prefixed with ``'``), JSON (:func:`render_json`, sorted
keys, the time series included) and a PNG chart of each line's cumulative spending over time with
its agreement's per-analyst cap as a dashed horizontal line (:func:`write_chart`; the total cap,
which bounds all analysts together, is in the table; the chart needs matplotlib:
``pip install 'accord[audit]'``).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any

from accord.errors import printable
from accord.policies.agreements import Agreement, Budget
from accord.policies.audit_chart import write_chart
from accord.policies.audit_check import PROGRESS_EVERY, recorded_epsilon
from accord.policies.audit_entry import AuditEntry, timestamp
from accord.query.epsilon import Epsilon

__all__ = [
    "CSV_HEADER",
    "Report",
    "ReportLine",
    "render_csv",
    "render_json",
    "render_table",
    "summarise",
    "write_chart",
]

CSV_HEADER = (
    "node",
    "agreement",
    "analyst",
    "answered",
    "secure_aggregated",
    "answered_again",
    "refused",
    "refused_by_reason",
    "failed",
    "failed_by_reason",
    "previewed",
    "shown",
    "epsilon_spent",
    "per_analyst_cap",
    "agreement_epsilon_spent",
    "total_cap",
    "per_query_cap",
    "first",
    "last",
)
"""The columns of :func:`render_csv` (``*_by_reason``: ``CODE=n`` pairs joined by ``;``; caps empty
when the agreement was not given)."""


@dataclass(frozen=True)
class ReportLine:
    """What one ``analyst`` asked under one ``agreement`` at one ``node`` (see the module docstring):
    ``refused`` and ``failed`` count by reason code; ``spent`` is what the answers spent,
    ``agreement_spent`` what all the agreement's analysts spent at the node; ``budget`` the
    agreement's caps (None when it was not given); ``series`` each answer's time and ``spent``
    after it."""

    node: str
    agreement: str
    analyst: str
    answered: int
    answered_again: int
    refused: Mapping[str, int]
    failed: Mapping[str, int]
    previewed: int
    shown: int
    spent: Epsilon
    agreement_spent: Epsilon
    budget: Budget | None
    first: datetime
    last: datetime
    series: tuple[tuple[datetime, Epsilon], ...]
    secure: int = 0
    """How many of the answers were secure-aggregated (distributed noise, an (epsilon, delta)
    guarantee; the node's masked share left it, never its value)."""

    @property
    def refusals(self) -> int:
        return sum(self.refused.values())

    @property
    def failures(self) -> int:
        return sum(self.failed.values())


@dataclass(frozen=True)
class Report:
    """The summary of ``entries`` entries holding ``decisions`` decisions: its ``lines`` sorted by
    node, agreement and analyst, and ``notes`` on what could not be counted (in log order)."""

    entries: int
    decisions: int
    lines: tuple[ReportLine, ...]
    notes: tuple[str, ...] = ()
    agreements_given: bool = False


@dataclass
class _Tally:
    first: datetime
    last: datetime
    answered: int = 0
    secure: int = 0
    answered_again: int = 0
    refused: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    previewed: int = 0
    shown: int = 0
    spent: Epsilon = field(default_factory=Epsilon.zero)
    series: list[tuple[datetime, Epsilon]] = field(default_factory=list)


def summarise(
    entries: Iterable[tuple[int, AuditEntry]],
    agreements: Mapping[str, Agreement] | None = None,
    progress: Callable[[int], None] | None = None,
    every: int = PROGRESS_EVERY,
) -> Report:
    """The :class:`Report` of a log's ``entries`` (each with its index, in log order), with the caps
    of ``agreements`` (by id) when given. ``progress``, when given, is called with the number of
    entries read so far after every ``every`` entries."""
    if every < 1:
        raise ValueError("progress is reported every 1 or more entries")
    tallies: dict[tuple[str, str, str], _Tally] = {}
    totals: dict[tuple[str, str], Epsilon] = {}
    notes: list[str] = []
    count = decisions = 0
    for index, entry in entries:
        count += 1
        if progress is not None and count % every == 0:
            progress(count)
        if entry.type != "decision":
            continue
        decisions += 1
        d = entry.decision()
        tally = tallies.setdefault((d.node, d.agreement, d.analyst), _Tally(d.at, d.at))
        tally.first, tally.last = min(tally.first, d.at), max(tally.last, d.at)
        if d.outcome == "answered":
            tally.answered += 1
            tally.secure += d.aggregation == "secure"
            epsilon = recorded_epsilon(d.epsilon)
            if epsilon is None:
                notes.append(
                    f"entry {index}: epsilon {printable(d.epsilon)!r} is not a number; that answer's "
                    "spending is not counted (accord audit check reports it)"
                )
                continue
            tally.spent += epsilon
            totals[(d.node, d.agreement)] = totals.get((d.node, d.agreement), Epsilon.zero()) + epsilon
            tally.series.append((d.at, tally.spent))
        elif d.outcome == "answered-again":
            tally.answered_again += 1
        elif d.outcome in ("refused", "failed"):
            reasons = tally.refused if d.outcome == "refused" else tally.failed
            reasons[d.reason] = reasons.get(d.reason, 0) + 1
        elif d.outcome == "previewed":
            tally.previewed += 1
        elif d.outcome == "shown":
            tally.shown += 1
        # "joined" (a node took part in a secure aggregation) releases and spends nothing by itself
    if agreements is not None:
        missing = sorted({a for _, a, _ in tallies if a and a not in agreements})
        notes += [f"agreement {printable(a)} was not given: its caps are not shown" for a in missing]
    lines = tuple(
        _line(key, tallies[key], totals.get(key[:2], Epsilon.zero()), agreements) for key in sorted(tallies)
    )
    return Report(count, decisions, lines, tuple(notes), agreements is not None)


def _line(
    key: tuple[str, str, str], t: _Tally, total: Epsilon, agreements: Mapping[str, Agreement] | None
) -> ReportLine:
    agreement = (agreements or {}).get(key[1])
    return ReportLine(
        node=key[0],
        agreement=key[1],
        analyst=key[2],
        answered=t.answered,
        answered_again=t.answered_again,
        refused=MappingProxyType(dict(sorted(t.refused.items()))),
        failed=MappingProxyType(dict(sorted(t.failed.items()))),
        previewed=t.previewed,
        shown=t.shown,
        spent=t.spent,
        agreement_spent=total,
        budget=agreement.budget if agreement is not None else None,
        first=t.first,
        last=t.last,
        series=tuple(t.series),
        secure=t.secure,
    )


def _time(at: datetime) -> str:
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _reasons(counts: Mapping[str, int]) -> str:
    return ";".join(f"{code}={n}" for code, n in counts.items())


def _cap(budget: Budget | None, which: str) -> str:
    return "" if budget is None else getattr(budget, which).display()


_HEAD = ("node", "agreement", "analyst", "answered", "secure", "again", "refused", "failed", "shown", "spent",
         "of", "agreement spent", "of", "first", "last", "refused/failed by reason")  # fmt: skip


def render_table(report: Report) -> str:
    """An aligned plain-text table, one row per line, with what the columns mean and the notes."""
    rows = [
        [
            printable(c)
            for c in (
                line.node,
                line.agreement or "-",
                line.analyst or "-",
                str(line.answered),
                str(line.secure),
                str(line.answered_again),
                str(line.refusals),
                str(line.failures),
                str(line.previewed + line.shown),
                line.spent.display(),
                _cap(line.budget, "per_analyst") or "-",
                line.agreement_spent.display(),
                _cap(line.budget, "total") or "-",
                _time(line.first),
                _time(line.last),
                _reasons({**line.refused, **line.failed}).replace(";", ", "),
            )
        ]
        for line in report.lines
    ]
    out = [f"{report.entries} entries, {report.decisions} decisions"]
    if rows:
        widths = [max(len(r[i]) for r in (_HEAD, *rows)) for i in range(len(_HEAD))]
        out += [
            "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in (_HEAD, *rows)
        ]
        out.append("")
        out.append("secure: answers released by secure aggregation (distributed noise; (epsilon, delta)).")
        out.append("again: retries given the stored answer (charged nothing); shown: previews and budgets.")
        out.append("spent/of: the analyst's epsilon under the agreement at that node (its per_analyst cap);")
        out.append("agreement spent/of: all its analysts together (its total cap); '-': agreement not given.")
    else:
        out.append("no decisions in the log")
    out += [printable(n) for n in report.notes]
    return "\n".join(out) + "\n"


def _formula_safe(text: str) -> str:
    """``text`` as a spreadsheet will not run it as a formula."""
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


def render_csv(report: Report) -> str:
    """One header row (:data:`CSV_HEADER`) and one row per line."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_HEADER)
    for line in report.lines:
        writer.writerow(
            [
                _formula_safe(line.node),
                _formula_safe(line.agreement),
                _formula_safe(line.analyst),
                line.answered,
                line.secure,
                line.answered_again,
                line.refusals,
                _formula_safe(_reasons(line.refused)),
                line.failures,
                _formula_safe(_reasons(line.failed)),
                line.previewed,
                line.shown,
                line.spent.display(),
                _cap(line.budget, "per_analyst"),
                line.agreement_spent.display(),
                _cap(line.budget, "total"),
                _cap(line.budget, "per_query"),
                timestamp(line.first),
                timestamp(line.last),
            ]
        )
    return buffer.getvalue()


def render_json(report: Report) -> str:
    """The report as JSON (sorted keys, two-space indents): ``entries``, ``decisions``, ``notes``,
    ``agreements_given`` and ``lines``, each with its counts, exact epsilons (decimal strings,
    fractions when not decimals), caps (null when not given), times and ``series`` of ``[time,
    spent]``."""
    doc: dict[str, Any] = {
        "entries": report.entries,
        "decisions": report.decisions,
        "agreements_given": report.agreements_given,
        "notes": list(report.notes),
        "lines": [
            {
                "node": line.node,
                "agreement": line.agreement,
                "analyst": line.analyst,
                "answered": line.answered,
                "secure_aggregated": line.secure,
                "answered_again": line.answered_again,
                "refused": dict(line.refused),
                "failed": dict(line.failed),
                "previewed": line.previewed,
                "shown": line.shown,
                "epsilon_spent": line.spent.display(),
                "agreement_epsilon_spent": line.agreement_spent.display(),
                "caps": None
                if line.budget is None
                else {k: _cap(line.budget, k) for k in ("per_analyst", "total", "per_query")},
                "first": timestamp(line.first),
                "last": timestamp(line.last),
                "series": [[timestamp(at), spent.display()] for at, spent in line.series],
            }
            for line in report.lines
        ],
    }
    return json.dumps(doc, sort_keys=True, indent=2) + "\n"
