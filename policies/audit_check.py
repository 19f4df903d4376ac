"""The auditor's compliance check (``accord audit check DIR --agreements FOLDER``): every answer a
node's audit log records, replayed against the data-sharing agreements it was given under.

The check reads entries that are already fetched and verified (:mod:`accord.policies.audit_entry`)
and the agreement files the auditor holds (the public register's copies), and applies the rules a
node applies (:class:`~accord.policies.gate.PolicyGate` and :mod:`accord.policies.budget`) to each
``decision`` entry whose outcome is ``answered``: only those released something and spent epsilon.
``answered-again`` is a retry given the stored release and charged ``"0"``; ``refused``,
``failed``, ``previewed`` and ``shown`` released nothing. Each answer must be under an agreement
the auditor was given (``AGREEMENT_UNKNOWN``) that names the answering node (``NODE_NOT_PARTY``)
and the analyst (``ANALYST_NOT_PARTY``), on a UTC date from ``valid_from`` to ``valid_until``
inclusive (``NOT_IN_FORCE``), for the agreement's purpose (``PURPOSE_MISMATCH``), reading a
dataset it shares (``DATASET_NOT_GRANTED``), each field granted (``FIELD_NOT_GRANTED``) for the
use made of it (``USE_NOT_ALLOWED``; ``COUNT(*)`` needs ``count_rows``:
``COUNT_ROWS_NOT_ALLOWED``), spending a readable positive epsilon (``EPSILON_INVALID``) of at most
the per-query cap (``PER_QUERY_CAP``), with the analyst's spending at that node (``ANALYST_CAP``)
and all analysts' together (``TOTAL_CAP``) within the agreement's caps after it. An
``answered-again`` must send the first answer's release (``RETRY_RELEASE_DIFFERS``: other bytes
would be new information, never charged). Spending is summed exactly
(:class:`~accord.query.epsilon.Epsilon`), per node, as each node keeps its own ledger; an answer
that breaks a rule still spent its epsilon. One answer may break several rules: each is one
:class:`Violation`.

Which text of an agreement was in force is a :class:`Notice` (a warning), not a violation. The log
records the SHA-256 of each agreement file a node loaded (``agreement`` entries); when it differs
from the file the auditor gave, the node ran another text: an amendment the auditor does not hold,
or one nobody agreed. The check cannot tell which, and cannot apply a text it does not have, so it
says so (``AGREEMENT_TEXT_DIFFERS``, naming the entry that loaded it and how many answers were given
under it) and checks those answers against the file given: an answer the given text forbids is
still a violation by the rule it breaks. To check them against the other text, put that file in the
folder instead and check again. The same holds for answers the log gives under an agreement it says
the node removed (``AGREEMENT_REMOVED``) or before the log records any text of it
(``AGREEMENT_TEXT_UNLOGGED``). The other notices are a retry whose first answer is not in the log
(``RETRY_WITHOUT_ANSWER``), a query id answered twice (``QUERY_ID_REUSED``) and epsilon recorded
on a decision that answered nothing new (``EPSILON_WITHOUT_ANSWER``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC
from pathlib import Path
from types import MappingProxyType

from accord.errors import ConfigError, InvalidQuery, printable
from accord.policies.agreements import Agreement, load_agreement
from accord.policies.audit_entry import AuditEntry, timestamp
from accord.policies.decision import Decision
from accord.query.epsilon import MAX_BUDGET, Epsilon

__all__ = [
    "NOTICES",
    "PROGRESS_EVERY",
    "RULES",
    "CheckResult",
    "Notice",
    "Violation",
    "check_entries",
    "load_agreements_for_check",
    "recorded_epsilon",
]

RULES = MappingProxyType(
    {
        "AGREEMENT_UNKNOWN": "answered under no agreement, or one the auditor was not given",
        "NODE_NOT_PARTY": "the answering node is not among the agreement's nodes",
        "ANALYST_NOT_PARTY": "the analyst is not among the agreement's analysts",
        "NOT_IN_FORCE": "answered on a (UTC) date outside valid_from..valid_until",
        "PURPOSE_MISMATCH": "the recorded purpose is not the agreement's purpose code",
        "DATASET_NOT_GRANTED": "the dataset read is not shared by the agreement",
        "FIELD_NOT_GRANTED": "a field used is not granted by the agreement",
        "USE_NOT_ALLOWED": "a field was used in a way the agreement does not allow",
        "COUNT_ROWS_NOT_ALLOWED": "COUNT(*) under an agreement with count_rows = false",
        "EPSILON_INVALID": "the recorded epsilon is not a positive exact number",
        "PER_QUERY_CAP": "one answer spent more than the per_query cap",
        "ANALYST_CAP": "the analyst's spending at the node went past the per_analyst cap",
        "TOTAL_CAP": "all analysts' spending at the node went past the total cap",
        "RETRY_RELEASE_DIFFERS": "an answered-again sent a release other than the first answer's",
        "NODE_MISMATCH": "an entry of one node's log written in another node's name",
    }
)
"""Each violation's stable code and what it means."""

NOTICES = MappingProxyType(
    {
        "AGREEMENT_TEXT_DIFFERS": "the node loaded a text of the agreement other than the file given",
        "AGREEMENT_REMOVED": "answers under an agreement the log says the node had removed",
        "AGREEMENT_TEXT_UNLOGGED": "answers before the log records which text of the agreement was loaded",
        "RETRY_WITHOUT_ANSWER": "an answered-again whose first answer is not in the log",
        "QUERY_ID_REUSED": "a second fresh answer to one analyst's query id at one node",
        "EPSILON_WITHOUT_ANSWER": "epsilon recorded on a decision that released nothing new",
    }
)
"""Each notice's stable code and what it means."""

PROGRESS_EVERY = 10_000
"""How many entries pass between two calls of a progress callback, unless told otherwise."""

_ZERO = Epsilon.zero()
_UNLOGGED = "?"  # the text of an agreement a node held before its log said (never a digest)


@dataclass(frozen=True)
class Violation:
    """An answer the agreements did not allow: the log entry's ``index``, whose query it was, under
    which agreement, the broken ``rule`` (a code of :data:`RULES`) and a sentence for the auditor."""

    index: int
    query_id: str
    analyst: str
    agreement: str
    rule: str
    message: str


@dataclass(frozen=True)
class Notice:
    """Something the auditor should look at that the agreements given cannot settle: the ``index``
    of the entry it starts at, a ``code`` of :data:`NOTICES` and a sentence saying what to do."""

    index: int
    code: str
    message: str


@dataclass(frozen=True)
class CheckResult:
    """What :func:`check_entries` found: how many ``entries``, ``decisions`` and fresh answers
    (``answered``) it read, the ``violations`` in log order and the ``warnings`` (by index)."""

    entries: int
    decisions: int
    answered: int
    violations: tuple[Violation, ...]
    warnings: tuple[Notice, ...]

    @property
    def ok(self) -> bool:
        """No answer broke an agreement (warnings aside)."""
        return not self.violations


def load_agreements_for_check(folder: Path) -> dict[str, Agreement]:
    """Every ``*.toml`` agreement in ``folder`` by id, read as the auditor holds them: without any
    node's datasets (every party's grants are kept). Raises :class:`~accord.errors.ConfigError`
    for a folder that cannot be read or holds none, a file that is not a valid agreement, and two
    files of one id (naming both)."""
    if not folder.is_dir():
        raise ConfigError(
            f"{folder}: no such folder of agreements; pass the folder holding the agreement files "
            "(*.toml) with --agreements"
        )
    try:
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".toml" and p.is_file())
    except OSError as err:
        raise ConfigError(
            f"{folder}: cannot list the folder ({err.__class__.__name__}); make it readable"
        ) from None
    if not paths:
        raise ConfigError(
            f"{folder}: holds no agreement files (*.toml); pass the folder holding the agreements the "
            "log's answers were given under"
        )
    found: dict[str, Agreement] = {}
    for path in paths:
        agreement = load_agreement(path)
        if agreement.id in found:
            raise ConfigError(
                f"{path}: id: {agreement.id!r} is also the id of {found[agreement.id].source}; keep one "
                "text of each agreement in the folder (the one to check the log against)"
            )
        found[agreement.id] = agreement
    return found


def recorded_epsilon(text: str) -> Epsilon | None:
    """The exact epsilon a decision records (``"0"``, ``"1/10"``, ``"0.1"``); None when it is not a
    non-negative number an answer could have spent (so it is never guessed at)."""
    if text == "0":
        return _ZERO
    try:
        return Epsilon.parse(text, MAX_BUDGET)
    except InvalidQuery:
        return None


def _p(text: object) -> str:
    """A value from the log, safe to print (it cannot start a line or drive a terminal)."""
    return printable(str(text))


def _q(text: str) -> str:
    """A value from the log, quoted and safe to print."""
    return f"'{_p(text)}'"


def _names(values: Iterable[str]) -> str:
    return ", ".join(_p(v) for v in sorted(values)) or "none"


class _Replay:
    """The state of one pass over a log: what each node held, spent and answered so far."""

    def __init__(self, agreements: Mapping[str, Agreement]) -> None:
        self.agreements = agreements
        self.violations: list[Violation] = []
        self.warnings: list[Notice] = []
        self.decisions = 0
        self.answered = 0
        # (node, agreement) -> the digest of the text the log last said it loaded ("" once removed)
        self.held: dict[tuple[str, str], str] = {}
        # texts other than the file given: (node, agreement, digest, "" when removed, _UNLOGGED
        # before any) -> [the index of the first entry loading it (of the first answer when
        # unlogged), how many answers were given under it]
        self.spans: dict[tuple[str, str, str], list[int]] = {}
        self.analyst_spent: dict[tuple[str, str, str], Epsilon] = {}
        self.total_spent: dict[tuple[str, str], Epsilon] = {}
        self.answers: dict[tuple[str, str, str], str] = {}  # (node, analyst, query id) -> release digest
        self.found: list[tuple[str, str]] = []  # the rules the answer being checked broke

    def entry(self, index: int, entry: AuditEntry) -> None:
        if entry.type == "agreement":
            self.loaded(index, entry)
        elif entry.type == "decision":
            self.decision(index, entry.decision())

    def loaded(self, index: int, entry: AuditEntry) -> None:
        f = entry.fields
        node, ident, change = str(f["node"]), str(f["agreement"]), str(f["change"])
        digest = "" if change == "removed" else str(f["digest"])
        self.held[(node, ident)] = digest
        given = self.agreements.get(ident)
        if given is not None and (not digest or (given.digest and digest != given.digest)):
            self.spans.setdefault((node, ident, digest), [index, 0])  # each text once, however often loaded

    def decision(self, index: int, d: Decision) -> None:
        self.decisions += 1
        key = (d.node, d.analyst, d.query_id)
        if d.outcome != "answered":
            if d.epsilon != "0":
                self.warn(
                    index,
                    "EPSILON_WITHOUT_ANSWER",
                    f"node {_p(d.node)} recorded epsilon {_p(d.epsilon)} on a decision that was "
                    f"{d.outcome}, which spends nothing; ask its operator whether its ledger charged it",
                )
            if d.outcome == "answered-again" and key not in self.answers:
                self.warn(
                    index,
                    "RETRY_WITHOUT_ANSWER",
                    f"node {_p(d.node)} answered query {_p(d.query_id)} of analyst {_p(d.analyst)} again, "
                    "but the log records no first answer to it; ask its operator where that answer is "
                    "recorded",
                )
                # It still released something: hold it to every rule but the spending ones (it
                # records no epsilon, having none of its own to record).
                self.found = []
                self.answer_problems(index, d)
                self.violations += (
                    Violation(index, d.query_id, d.analyst, d.agreement, *v)
                    for v in self.found
                    if v[0] != "EPSILON_INVALID"
                )
            elif d.outcome == "answered-again" and d.release_digest != self.answers[key]:
                self.violations.append(
                    Violation(
                        index,
                        d.query_id,
                        d.analyst,
                        d.agreement,
                        "RETRY_RELEASE_DIFFERS",
                        f"node {_p(d.node)} answered query {_p(d.query_id)} of analyst {_p(d.analyst)} "
                        "again with a release other than its first answer's, so it released new "
                        "information without charging it",
                    )
                )
            return
        self.answered += 1
        if key in self.answers:
            self.warn(
                index,
                "QUERY_ID_REUSED",
                f"node {_p(d.node)} answered query {_p(d.query_id)} of analyst {_p(d.analyst)} afresh a "
                "second time (and charged it again) instead of returning the stored answer",
            )
        self.answers[key] = d.release_digest
        self.found = []
        self.answer_problems(index, d)
        self.violations += (Violation(index, d.query_id, d.analyst, d.agreement, *v) for v in self.found)

    def warn(self, index: int, code: str, message: str) -> None:
        self.warnings.append(Notice(index, code, message))

    def bad(self, rule: str, message: str) -> None:
        """The answer being checked broke ``rule``."""
        self.found.append((rule, message))

    def answer_problems(self, index: int, d: Decision) -> None:
        """Every rule the answer ``d`` breaks (and its spending, added to the ledgers)."""
        q, who, node = _p(d.query_id), _p(d.analyst), _p(d.node)
        agreement = self.agreements.get(d.agreement)
        epsilon = recorded_epsilon(d.epsilon)
        if epsilon is None or epsilon == _ZERO:
            self.bad(
                "EPSILON_INVALID",
                f"node {node} answered query {q} of analyst {who} recording epsilon {_q(d.epsilon)}, "
                "which is not the positive exact number every answer spends; its spending cannot "
                "be checked",
            )
        if agreement is None:
            what = f"agreement {_p(d.agreement)}, which is not among the agreements given; add its file"
            if not d.agreement:
                what = "no agreement, though a node answers only under one; ask its operator why"
            self.bad("AGREEMENT_UNKNOWN", f"node {node} answered query {q} of analyst {who} under {what}")
            return
        a = agreement.id
        self.count_span(index, d.node, a)
        if d.node not in agreement.nodes:
            self.bad(
                "NODE_NOT_PARTY",
                f"node {node} answered query {q} under agreement {a}, to which it is not a party "
                f"(its nodes: {_names(agreement.nodes)})",
            )
        if d.analyst not in agreement.analysts:
            self.bad(
                "ANALYST_NOT_PARTY",
                f"node {node} answered query {q} of analyst {_q(d.analyst)}, who is not a party to agreement "
                f"{a} (its analysts: {_names(agreement.analysts)})",
            )
        day = d.at.astimezone(UTC).date()
        if agreement.in_force(day) is not None:
            self.bad(
                "NOT_IN_FORCE",
                f"node {node} answered query {q} at {timestamp(d.at)}, when agreement {a} was not in "
                f"force (it runs from {agreement.valid_from} to {agreement.valid_until})",
            )
        if d.purpose != agreement.purpose_code:
            self.bad(
                "PURPOSE_MISMATCH",
                f"node {node} answered query {q} for purpose {_q(d.purpose)}, but agreement {a} is "
                f"for purpose {agreement.purpose_code}",
            )
        self.use_problems(d, agreement)
        if epsilon is not None and epsilon != _ZERO:
            self.spend(d, agreement, epsilon)

    def count_span(self, index: int, node: str, ident: str) -> None:
        """Count answer ``index`` under the text of ``ident`` the log says ``node`` held, when that
        is not the file given (none yet, none since it was removed, or another text)."""
        given = self.agreements[ident]
        held = self.held.get((node, ident), _UNLOGGED)
        if held and held != _UNLOGGED and (not given.digest or held == given.digest):
            return
        self.spans.setdefault((node, ident, held), [index, 0])[1] += 1

    def use_problems(self, d: Decision, agreement: Agreement) -> None:
        q, a, dataset = _p(d.query_id), agreement.id, _p(d.dataset)
        grant = agreement.datasets.get(d.dataset)
        if grant is None:
            self.bad(
                "DATASET_NOT_GRANTED",
                f"query {q} read dataset {_q(d.dataset)}, which agreement {a} does not share (it shares: "
                f"{_names(agreement.datasets)})",
            )
            return
        for name, use in d.uses:
            if name == "*" and use == "count":
                if not grant.count_rows:
                    self.bad(
                        "COUNT_ROWS_NOT_ALLOWED",
                        f"query {q} counted the rows of {dataset} (COUNT(*)), which agreement {a} does not "
                        "allow (count_rows = false)",
                    )
            elif name not in grant.fields:
                self.bad(
                    "FIELD_NOT_GRANTED",
                    f"query {q} used field {_q(name)} of dataset {dataset}, which agreement {a} does "
                    "not grant",
                )
            elif use not in (allowed := {u.value for u in grant.fields[name]}):
                self.bad(
                    "USE_NOT_ALLOWED",
                    f"query {q} used field {_p(name)} of dataset {dataset} for {_p(use)}, but agreement {a} "
                    f"allows it for {_names(allowed)} only",
                )

    def spend(self, d: Decision, agreement: Agreement, epsilon: Epsilon) -> None:
        """Add the answer's ``epsilon`` to the node's ledgers and say which caps it went past."""
        q, who, node, a, caps = _p(d.query_id), _p(d.analyst), _p(d.node), agreement.id, agreement.budget
        mine = self.analyst_spent.get((d.node, a, d.analyst), _ZERO) + epsilon
        all_ = self.total_spent.get((d.node, a), _ZERO) + epsilon
        self.analyst_spent[(d.node, a, d.analyst)] = mine
        self.total_spent[(d.node, a)] = all_
        if epsilon > caps.per_query:
            self.bad(
                "PER_QUERY_CAP",
                f"query {q} spent epsilon {epsilon.display()}, above agreement {a}'s per-query cap of "
                f"{caps.per_query.display()}",
            )
        if mine > caps.per_analyst:
            self.bad(
                "ANALYST_CAP",
                f"with query {q} analyst {who} had spent epsilon {mine.display()} under agreement {a} "
                f"at node {node}, past its per-analyst cap of {caps.per_analyst.display()}",
            )
        if all_ > caps.total:
            self.bad(
                "TOTAL_CAP",
                f"with query {q} the analysts of agreement {a} had spent epsilon {all_.display()} at "
                f"node {node}, past its total cap of {caps.total.display()}",
            )

    def span_notices(self) -> list[Notice]:
        """The notices of texts of an agreement other than the file given (see the module docstring)."""
        out = []
        for (node, ident, digest), (index, answers) in self.spans.items():
            given = self.agreements[ident]
            n, counted = _p(node), f"{answers} answer{'' if answers == 1 else 's'}"
            if digest == _UNLOGGED:
                out.append(
                    Notice(
                        index,
                        "AGREEMENT_TEXT_UNLOGGED",
                        f"node {n} gave {counted} under agreement {ident} from this entry on, before its log "
                        "recorded which text of it was loaded; they were checked against the file given",
                    )
                )
            elif not digest and answers:
                out.append(
                    Notice(
                        index,
                        "AGREEMENT_REMOVED",
                        f"this entry records that node {n} removed agreement {ident}, yet it gave {counted} "
                        "under it afterwards (checked against the file given); ask its operator why",
                    )
                )
            elif digest:
                out.append(
                    Notice(
                        index,
                        "AGREEMENT_TEXT_DIFFERS",
                        f"node {n} loaded a text of agreement {ident} (SHA-256 {_p(digest[:16])}...) that is "
                        f"not the file given ({given.digest[:16]}...) and gave {counted} under it, checked "
                        "against the file given; to check them against that text, put its file in the "
                        "folder instead",
                    )
                )
        return out


def check_entries(
    entries: Iterable[tuple[int, AuditEntry]],
    agreements: Mapping[str, Agreement],
    progress: Callable[[int], None] | None = None,
    every: int = PROGRESS_EVERY,
    node: str | None = None,
) -> CheckResult:
    """Replay every answer of the log's ``entries`` (each with its index in the log, in log order)
    against ``agreements`` (by id; see the module docstring). ``progress``, when given, is called
    with the number of entries read so far after every ``every`` entries. With ``node`` (the node
    whose log it is), an entry written in another node's name is a violation (``NODE_MISMATCH``:
    a node splitting its spending across names to stay under the caps)."""
    if every < 1:
        raise ValueError("progress is reported every 1 or more entries")
    replay = _Replay(agreements)
    count = 0
    for index, entry in entries:
        written_as = str(entry.fields.get("node", ""))
        if node is not None and written_as != node:
            f = entry.fields
            replay.violations.append(
                Violation(
                    index,
                    str(f.get("query_id", "")),
                    str(f.get("analyst", "")),
                    str(f.get("agreement", "")),
                    "NODE_MISMATCH",
                    f"an entry of node {_p(node)}'s log is written in the name of node {_p(written_as)}",
                )
            )
        replay.entry(index, entry)
        count += 1
        if progress is not None and count % every == 0:
            progress(count)
    warnings = sorted([*replay.warnings, *replay.span_notices()], key=lambda n: n.index)
    return CheckResult(count, replay.decisions, replay.answered, tuple(replay.violations), tuple(warnings))
