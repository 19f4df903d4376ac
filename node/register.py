"""The authority's public register of data-sharing agreements, and what a citizen may ask of it.

:func:`build_register` puts together, for one node, every agreement it holds (parties, purpose,
lawful basis, consent model, the fields shared and how, validity and review dates, caps) and its
use to date from the node's state (queries answered and refused, epsilon spent against the caps).
:func:`write_register` publishes it as a static HTML page (readable on a phone, no JavaScript)
and as JSON. No results and no person data are in it: analysts are counted, not named.

:func:`transparency` answers a citizen: which agreements and purposes their records may be used
for under their current consent choices, and how many queries ran under each, never any results.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from accord.config import write_text_atomic
from accord.errors import ConfigError
from accord.node.config import NodeConfig
from accord.node.state import StateReader, Usage
from accord.policies.agreements import Agreement
from accord.policies.consent import ConsentStatus, may_use

__all__ = [
    "RegisterEntry",
    "TransparencyLine",
    "build_register",
    "read_usage",
    "register_html",
    "register_json",
    "transparency",
    "write_register",
]


def read_usage(config: NodeConfig) -> dict[str, Usage] | None:
    """Each agreement's use at the node, from its state file (None for in-memory state, which
    keeps no record; empty when the node has never run). Read while the node runs, too."""
    if config.state.backend != "sqlite" or config.state.path is None:
        return None
    if not config.state.path.exists():
        return {}
    with StateReader(config.state.path, config.name) as reader:
        return reader.usage()


def _status(agreement: Agreement, today: date) -> str:
    if today < agreement.valid_from:
        return "not yet in force"
    if today > agreement.valid_until:
        return "expired"
    if today > agreement.review_date:
        return "in force (review overdue)"
    return "in force"


@dataclass(frozen=True)
class RegisterEntry:
    """One agreement as the public register shows it."""

    agreement: Agreement
    status: str
    usage: Usage | None

    def to_json(self) -> dict[str, Any]:
        a, b = self.agreement, self.agreement.budget
        use: dict[str, Any] | None = None
        if self.usage is not None:
            use = {
                "queries_answered": self.usage.answered,
                "queries_refused": self.usage.refused_total,
                "refused_by_reason": dict(sorted(self.usage.refused.items())),
                "epsilon_spent": self.usage.spent.display(),
                "epsilon_remaining": b.total.left_after(self.usage.spent).display(),
            }
        return {
            "id": a.id,
            "title": a.title,
            "status": self.status,
            "purpose": {"code": a.purpose_code, "description": a.purpose},
            "lawful_basis": a.lawful_basis,
            "consent": a.consent,
            "valid_from": a.valid_from.isoformat(),
            "valid_until": a.valid_until.isoformat(),
            "review_date": a.review_date.isoformat(),
            "parties": {
                "authorities": list(a.nodes),
                "organisations": list(a.organisations),
                "analysts_covered": len(a.analysts),
            },
            "datasets": {
                name: {
                    "count_rows": grant.count_rows,
                    "fields": {f: sorted(u.value for u in uses) for f, uses in sorted(grant.fields.items())},
                }
                for name, grant in sorted(a.datasets.items())
            },
            "min_group_size": a.min_group_size,
            "budget": {
                "per_analyst": b.per_analyst.display(),
                "total": b.total.display(),
                "per_query": b.per_query.display(),
            },
            "use": use,
            "sha256": a.digest,
        }


def build_register(
    agreements: Mapping[str, Agreement], usage: Mapping[str, Usage] | None, today: date
) -> tuple[RegisterEntry, ...]:
    """Every agreement with its status ``today`` and its use (None: not recorded at this node)."""
    return tuple(
        RegisterEntry(
            agreements[k],
            _status(agreements[k], today),
            None if usage is None else usage.get(k, Usage()),
        )
        for k in sorted(agreements)
    )


def register_json(node: str, entries: tuple[RegisterEntry, ...], generated: datetime) -> str:
    return (
        json.dumps(
            {
                "authority_node": node,
                "generated_at": generated.astimezone(UTC)
                .isoformat(timespec="seconds")
                .replace("+00:00", "Z"),
                "agreements": [e.to_json() for e in entries],
            },
            indent=2,
            ensure_ascii=False,
        )
        + "\n"
    )


_USE_WORDS = {
    "count": "counted",
    "sum": "totalled",
    "avg": "averaged",
    "group_by": "grouped by",
    "filter": "filtered on",
}
_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;line-height:1.5;margin:0 auto;
max-width:52rem;padding:1rem;color:#1b1b1b;background:#fff}
h1{font-size:1.6rem}h2{font-size:1.25rem;margin-top:2rem;border-top:1px solid #ccc;padding-top:1rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{text-align:left;padding:.3rem .4rem;
border-bottom:1px solid #ddd;vertical-align:top}th{width:40%}
.status{display:inline-block;padding:.1rem .5rem;border-radius:.3rem;background:#e8f0fe}
@media (max-width:32rem){th,td{display:block;width:auto}th{border-bottom:none;padding-bottom:0}}
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f'<tr><th scope="row">{_e(k)}</th><td>{v}</td></tr>' for k, v in pairs)


def _entry_html(entry: RegisterEntry) -> str:
    a, b = entry.agreement, entry.agreement.budget
    fields = []
    for name, grant in sorted(a.datasets.items()):
        items = []
        if grant.count_rows:
            items.append("<li>records may be counted</li>")
        for f, uses in sorted(grant.fields.items()):
            how = ", ".join(_USE_WORDS[u.value] for u in sorted(uses, key=lambda u: u.value))
            items.append(f"<li><code>{_e(f)}</code>: {_e(how)}</li>")
        fields.append(f"<p>Dataset <code>{_e(name)}</code>:</p><ul>{''.join(items)}</ul>")
    consent = (
        "opt-in: only people who gave consent for this purpose are counted"
        if a.consent == "opt-in"
        else "opt-out: everyone is counted except people who withdrew or refused consent for this purpose"
    )
    pairs = [
        ("Status", f'<span class="status">{_e(entry.status)}</span>'),
        ("Purpose", f"{_e(a.purpose)} (<code>{_e(a.purpose_code)}</code>)"),
        ("Lawful basis", _e(a.lawful_basis)),
        ("Consent", _e(consent)),
        ("Authorities sharing", _e(", ".join(a.nodes))),
        ("Organisations", _e(", ".join(a.organisations) or "none named")),
        ("Analysts covered", _e(len(a.analysts))),
        ("Valid", f"{_e(a.valid_from.isoformat())} to {_e(a.valid_until.isoformat())}"),
        ("Review date", _e(a.review_date.isoformat())),
        ("Smallest group reported", _e(f"{a.min_group_size} people" if a.min_group_size else "no minimum")),
        (
            "Privacy budget (epsilon)",
            _e(
                f"at most {b.per_query.display()} per query, {b.per_analyst.display()} per analyst, "
                f"{b.total.display()} in total"
            ),
        ),
    ]
    if entry.usage is None:
        pairs.append(("Use to date", "not recorded at this node"))
    else:
        u = entry.usage
        spent = f"{u.spent.display()} of {b.total.display()}"
        refused = ", ".join(f"{_e(r)}: {n}" for r, n in sorted(u.refused.items()))
        pairs += [
            ("Queries answered", _e(u.answered)),
            ("Queries refused", _e(u.refused_total) + (f" ({refused})" if refused else "")),
            ("Privacy budget spent", _e(spent)),
        ]
    pairs.append(("Fields shared, and how", "".join(fields)))
    pairs.append(("Agreement file SHA-256", f"<code>{_e(a.digest)}</code>"))
    return (
        f'<section id="{_e(a.id)}"><h2>{_e(a.title)} <small>({_e(a.id)})</small></h2>'
        f"<table>{_rows(pairs)}</table></section>"
    )


def register_html(node: str, entries: tuple[RegisterEntry, ...], generated: datetime) -> str:
    when = generated.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    body = (
        "".join(_entry_html(e) for e in entries) or "<p>This authority holds no data-sharing agreement.</p>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>Data-sharing register: {_e(node)}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>Data-sharing register</h1><p>The data-sharing agreements under which node "
        f"<code>{_e(node)}</code> answers statistical questions, and how much each has been used. "
        "Only counts, totals and averages with added statistical noise are ever released under "
        "them; no one's records leave the authority. Generated "
        f'{_e(when)}; also as <a href="register.json">JSON</a>.</p></header>'
        f"<main>{body}</main></body></html>\n"
    )


def write_register(
    folder: Path, node: str, entries: tuple[RegisterEntry, ...], generated: datetime
) -> list[Path]:
    """Write ``index.html`` and ``register.json`` into ``folder`` (created if missing), each
    atomically (a reader never sees half a page)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(
            f"{folder}: cannot create the folder ({err.strerror}); choose another --out"
        ) from None
    page, data = folder / "index.html", folder / "register.json"
    write_text_atomic(page, register_html(node, entries, generated))
    write_text_atomic(data, register_json(node, entries, generated))
    return [page, data]


@dataclass(frozen=True)
class TransparencyLine:
    """Whether one agreement may use a person's records, why, and how many queries ran under it."""

    agreement: Agreement
    used: bool
    choice: ConsentStatus | None
    queries: int | None


def transparency(
    agreements: Mapping[str, Agreement],
    current: Mapping[str, ConsentStatus],
    usage: Mapping[str, Usage] | None,
) -> tuple[TransparencyLine, ...]:
    """For a person whose current choices are ``current`` (purpose → status): each agreement."""
    return tuple(
        TransparencyLine(
            a,
            may_use(a.consent, current.get(a.purpose_code)),
            current.get(a.purpose_code),
            None if usage is None else usage.get(a.id, Usage()).answered,
        )
        for a in (agreements[k] for k in sorted(agreements))
    )
