"""Data-sharing agreements: what an authority agreed to share, with whom, for what, and how much.

Each agreement is one TOML file in the folder the node config names (``[agreements] dir``). It
records what the ICO's data sharing code of practice expects a data-sharing agreement to say::

    id = "dsa-2026-007"
    title = "Families needing housing and children's social care support"
    lawful_basis = "UK GDPR Art. 6(1)(e) public task; Children Act 1989 s.17"
    consent = "opt-out"                 # opt-out: everyone but those who withdrew or refused;
                                        # opt-in: only those who gave consent for the purpose
    valid_from = 2026-01-01
    valid_until = 2027-12-31
    review_date = 2027-06-30
    min_group_size = 10                 # smaller groups are released as suppressed

    [purpose]
    code = "HOUSING-CSC"
    description = "Plan joint support for families in temporary accommodation"

    [parties]
    nodes = ["county", "district-a", "district-b"]     # the authorities sharing under it
    organisations = ["Northbrook District Council"]    # who the analysts work for
    analysts = ["alice", "bob"]                         # analyst certificate names it covers

    [budget]                            # exact epsilons (decimals or fractions)
    per_analyst = "5"                   # each analyst, over the agreement's life, at this node
    total = "20"                        # all its analysts together, at this node
    per_query = "1"                     # the most one query may spend

    [datasets.citizens]
    count_rows = true                   # COUNT(*) allowed (default true)

    [datasets.citizens.fields]          # every field that may be used, and how
    district = ["group_by", "filter"]
    age = ["sum", "avg", "filter"]
    claims_housing_benefit = ["filter", "count"]

Uses: ``count`` (``COUNT(field)``), ``sum``, ``avg``, ``group_by``, ``filter`` (in ``WHERE``). A
field not listed is hidden: queries under the agreement see the dataset as if it were not there.

One agreement covers every authority party to it, so it may share datasets some of them do not
hold: a node checks the datasets it holds (every field must exist and support its uses) and
ignores the others, but refuses an agreement that shares none of its datasets. Every mistake is a
:class:`~accord.errors.ConfigError` naming the file, the key and the fix; :func:`load_agreements`
refuses a folder with two files of one id for the same node.
"""

from __future__ import annotations

import enum
import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from types import MappingProxyType

from accord.config import Table, read_toml
from accord.errors import ConfigError, InvalidQuery
from accord.policies.consent import PURPOSE_PATTERN
from accord.policies.signing import AGREEMENT_ID
from accord.query.epsilon import MAX_BUDGET, Epsilon
from accord.query.schema import ColumnType, DatasetSchema

__all__ = [
    "CONSENT_MODELS",
    "Agreement",
    "Budget",
    "DatasetGrant",
    "FieldUse",
    "load_agreement",
    "load_agreements",
]

log = logging.getLogger(__name__)

CONSENT_MODELS = ("opt-in", "opt-out")
_KEYS = {
    "id",
    "title",
    "lawful_basis",
    "consent",
    "valid_from",
    "valid_until",
    "review_date",
    "min_group_size",
    "purpose",
    "parties",
    "budget",
    "datasets",
}


class FieldUse(enum.Enum):
    """How a field may be used in a query."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    GROUP_BY = "group_by"
    FILTER = "filter"


@dataclass(frozen=True)
class DatasetGrant:
    """One dataset an agreement shares: each field and its allowed uses, and whether rows may be
    counted (``COUNT(*)``)."""

    dataset: str
    fields: Mapping[str, frozenset[FieldUse]]
    count_rows: bool = True

    def allows(self, column: str, use: FieldUse) -> bool:
        return use in self.fields.get(column, frozenset())


@dataclass(frozen=True)
class Budget:
    """Exact epsilon caps: per analyst over the agreement's life, for all analysts together, and
    per query (each at one node: every node keeps its own ledger)."""

    per_analyst: Epsilon
    total: Epsilon
    per_query: Epsilon


@dataclass(frozen=True)
class Agreement:
    """One data-sharing agreement (see the module docstring)."""

    id: str
    title: str
    purpose_code: str
    purpose: str
    lawful_basis: str
    consent: str
    valid_from: date
    valid_until: date
    review_date: date
    nodes: tuple[str, ...]
    organisations: tuple[str, ...]
    analysts: tuple[str, ...]
    budget: Budget
    datasets: Mapping[str, DatasetGrant]
    min_group_size: int = 0
    digest: str = ""
    """SHA-256 of the file it was read from (hex): which text of the agreement was in force."""
    source: Path | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if not AGREEMENT_ID.fullmatch(self.id):
            raise ConfigError(f"agreement id {self.id!r}: use 1-128 letters, digits, '.', '_', ':' or '-'")
        if self.consent not in CONSENT_MODELS:
            raise ConfigError(f"agreement {self.id}: consent must be one of {', '.join(CONSENT_MODELS)}")
        if self.valid_until < self.valid_from:
            raise ConfigError(f"agreement {self.id}: valid_until is before valid_from")

    def in_force(self, today: date) -> str | None:
        """Why the agreement is not in force ``today`` (None when it is)."""
        if today < self.valid_from:
            return f"agreement {self.id} is not valid until {self.valid_from.isoformat()}"
        if today > self.valid_until:
            return f"agreement {self.id} expired on {self.valid_until.isoformat()}"
        return None

    def view(self, schema: DatasetSchema) -> DatasetSchema:
        """``schema`` as a query under this agreement sees it: the granted fields only."""
        return schema.view(self.datasets[schema.name].fields)


def load_agreements(folder: Path, node: str, schemas: Mapping[str, DatasetSchema]) -> Mapping[str, Agreement]:
    """Every ``*.toml`` agreement in ``folder`` that names ``node`` among its parties, checked
    against the node's datasets (every field must exist and support its uses)."""
    if not folder.is_dir():
        raise ConfigError(f"{folder}: no such folder of agreements; create it or fix [agreements] dir")
    found: dict[str, Agreement] = {}
    for path in sorted(p for p in folder.iterdir() if p.suffix.lower() == ".toml" and p.is_file()):
        agreement = load_agreement(path, schemas, node)
        if node not in agreement.nodes:
            continue
        if agreement.id in found:
            other = found[agreement.id].source
            raise ConfigError(
                f"{path}: id: {agreement.id!r} is also the id of {other}; give each agreement its own id"
            )
        found[agreement.id] = agreement
    return MappingProxyType(found)


def load_agreement(
    path: Path, schemas: Mapping[str, DatasetSchema] | None = None, node: str | None = None
) -> Agreement:
    """One agreement file; with ``schemas`` (a node's datasets), its grants are checked against them
    (only if the agreement names ``node``, when a node is given: another node's agreement is read
    for its parties, not checked against this node's datasets)."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the agreement ({err.__class__.__name__})") from None
    top = Table(path, "", read_toml(path, "fix the path"))
    top.check_keys(_KEYS)
    ident = top.get("id", str, required=True)
    if not AGREEMENT_ID.fullmatch(ident):
        raise top.error(
            "id", f"{ident!r} is not an agreement id; use 1-128 letters, digits, '.', '_', ':' or '-'"
        )
    consent = top.get("consent", str, required=True)
    if consent not in CONSENT_MODELS:
        raise top.error("consent", f'{consent!r} is not a consent model; use "opt-in" or "opt-out"')
    valid_from, valid_until, review = (_date(top, k) for k in ("valid_from", "valid_until", "review_date"))
    if valid_until < valid_from:
        raise top.error("valid_until", f"{valid_until} is before valid_from {valid_from}; fix the dates")
    if review < valid_from:
        raise top.error("review_date", f"{review} is before valid_from {valid_from}; fix the dates")
    purpose = top.sub("purpose", required=True)
    purpose.check_keys({"code", "description"})
    code = _text(purpose, "code")
    if not PURPOSE_PATTERN.fullmatch(code):
        raise purpose.error(
            "code",
            f"{code!r} is not a purpose code: use 1-64 letters, digits, '.', '_', ':' or '-' (no spaces), "
            "exactly as consent records name the purpose",
        )
    parties = top.sub("parties", required=True)
    parties.check_keys({"nodes", "organisations", "analysts"})
    organisations = parties.get("organisations", list, [])
    if not all(isinstance(o, str) and o for o in organisations):
        raise parties.error(
            "organisations", 'list the organisations by name, e.g. ["Northbrook District Council"]'
        )
    nodes = parties.names("nodes", '["county"]', "node (authority) names party to the agreement")
    if node is not None and node not in nodes:
        schemas = None
    min_group = top.integer("min_group_size", 0, 0, 1_000_000, "10 is a common threshold")
    for name in top.sub("datasets", required=True).table:
        shared = top.sub("datasets").sub(name)
        if min_group and shared.table.get("count_rows") is False:
            raise shared.error(
                "count_rows",
                "is false, but min_group_size needs each group's count of rows to decide what to "
                "suppress; allow counting rows or set min_group_size = 0",
            )
    datasets = top.sub("datasets", required=True)
    if not datasets.table:
        raise datasets.error("", "no datasets shared; add a [datasets.NAME.fields] table")
    grants = {name: _grant(datasets.sub(name), name, schemas) for name in datasets.table}
    if schemas is not None:
        elsewhere = sorted(set(grants) - set(schemas))
        if elsewhere:
            log.info(
                "%s: dataset(s) %s are not held by this node (another party's; check the spelling)",
                path,
                ", ".join(elsewhere),
            )
        grants = {name: g for name, g in grants.items() if name in schemas}
        if not grants:
            raise datasets.error(
                "",
                f"shares none of this node's datasets ({', '.join(sorted(schemas)) or 'none'}); share one, "
                "or remove this node from [parties] nodes",
            )
    return Agreement(
        id=ident,
        title=_text(top, "title"),
        purpose_code=code,
        purpose=_text(purpose, "description"),
        lawful_basis=_text(top, "lawful_basis"),
        consent=consent,
        valid_from=valid_from,
        valid_until=valid_until,
        review_date=review,
        nodes=nodes,
        organisations=tuple(organisations),
        analysts=parties.names("analysts", '["alice"]', "analyst certificate names the agreement covers"),
        budget=_budget(top.sub("budget", required=True)),
        datasets=MappingProxyType(grants),
        min_group_size=min_group,
        digest=hashlib.sha256(raw).hexdigest(),
        source=path,
    )


def _text(t: Table, key: str) -> str:
    value: str = t.get(key, str, required=True)
    if not value.strip():
        raise t.error(key, "is empty; say it in words")
    if not value.isprintable():
        raise t.error(key, "holds control characters (a tab, a NUL, ...); write plain text")
    return value


def _date(t: Table, key: str) -> date:
    if isinstance(t.table.get(key), str):
        raise t.error(key, f"write the date without quotes, e.g. {key} = 2027-12-31")
    value = t.get(key, date, required=True)
    if not isinstance(value, date) or hasattr(value, "hour"):
        raise t.error(key, "must be a date such as 2027-12-31 (no time, no quotes)")
    return value


def _budget(t: Table) -> Budget:
    t.check_keys({"per_analyst", "total", "per_query"})
    caps = {}
    for key in ("per_analyst", "total", "per_query"):
        text = t.get(key, str, required=True)
        try:
            caps[key] = Epsilon.parse(text, MAX_BUDGET)
        except InvalidQuery as err:
            raise t.error(key, err.message.replace("epsilon", "the cap", 1)) from None
    budget = Budget(**caps)
    if budget.per_query > budget.per_analyst or budget.per_analyst > budget.total:
        raise t.error("", "the caps must satisfy per_query <= per_analyst <= total; fix the budget")
    return budget


_NEEDS = {
    FieldUse.SUM: "a numeric column with declared bounds",
    FieldUse.AVG: "a numeric column with declared bounds",
    FieldUse.GROUP_BY: "a column with declared categories",
}


def _grant(t: Table, name: str, schemas: Mapping[str, DatasetSchema] | None) -> DatasetGrant:
    t.check_keys({"count_rows", "fields"})
    schema = schemas.get(name) if schemas is not None else None  # another party's dataset: not checked here
    fields_table = t.sub("fields", required=True)
    fields: dict[str, frozenset[FieldUse]] = {}
    for column, uses in fields_table.table.items():
        if not isinstance(uses, list) or not uses or not all(isinstance(u, str) for u in uses):
            raise fields_table.error(column, 'list how it may be used, e.g. ["group_by", "filter"]')
        try:
            parsed = frozenset(FieldUse(u) for u in uses)
        except ValueError:
            allowed = ", ".join(u.value for u in FieldUse)
            raise fields_table.error(
                column, f"{uses!r} names an unknown use; the uses are {allowed}"
            ) from None
        if schema is not None:
            spec = schema.column(column)
            if spec is None or column == schema.privacy_unit:
                what = "is the person identifier" if spec is not None else "is not a column of the dataset"
                raise fields_table.error(column, f"{what}; share declared columns only")
            for use in parsed:
                numeric_ok = spec.type in (ColumnType.INTEGER, ColumnType.FLOAT) and spec.lower is not None
                ok = {
                    FieldUse.SUM: numeric_ok,
                    FieldUse.AVG: numeric_ok,
                    FieldUse.GROUP_BY: spec.categories is not None,
                }.get(use, True)
                if not ok:
                    raise fields_table.error(
                        column, f"{use.value} needs {_NEEDS[use]}; remove the use or declare it"
                    )
        fields[column] = parsed
    return DatasetGrant(name, MappingProxyType(fields), bool(t.get("count_rows", bool, True)))
