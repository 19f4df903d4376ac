"""Citizens' consent choices, modelled on ISO/IEC TS 27560 consent records, and what they mean.

A :class:`ConsentRecord` says that a person (``person``: the value of a dataset's privacy unit),
for one purpose (the purpose code of data-sharing agreements), gave, withdrew or refused consent,
when, and where that choice came from (``source``: a web form, a letter, the NHS National Data
Opt-out, the operator). A node keeps every record ever made (the full history); a person's current
choice for a purpose is their latest record.

What a choice means depends on the agreement's consent model (:func:`may_use`):

* **opt-in** purposes use only the records of people whose current choice is ``given``;
* **opt-out** purposes use everyone's records except people whose current choice is ``withdrawn``
  or ``refused`` (a national opt-out list is imported as ``refused`` for a purpose).

Files operators import (:func:`parse_consent_csv`, :func:`parse_opt_out_list`) are read whole
first: a file with any bad line changes nothing, and every bad line is reported with its number.
A choice dated in the future is refused (it would silently outrank every later change until
then). Messages never quote a person identifier. Person identifiers are compared with the
datasets' person column exactly as text (``"AB12"`` and ``"ab12"`` are two people; an integer
column matches the identifier written in plain decimal digits, ``42``, not ``+42`` or ``042``).
"""

from __future__ import annotations

import csv
import enum
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from accord.errors import ConfigError

__all__ = [
    "CONSENT_COLUMNS",
    "ConsentFileError",
    "ConsentRecord",
    "ConsentStatus",
    "may_use",
    "parse_consent_csv",
    "parse_opt_out_list",
    "parse_time",
    "refuse_future",
]

CONSENT_COLUMNS = ("person", "purpose", "status", "timestamp", "source")
FUTURE_ALLOWANCE = timedelta(minutes=5)
"""How far in the future a choice may be dated (clocks that disagree), and no further."""
PURPOSE_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,63}$")
MAX_PERSON = 256
_MAX_REPORTED = 50


class ConsentStatus(enum.Enum):
    GIVEN = "given"
    WITHDRAWN = "withdrawn"
    REFUSED = "refused"


@dataclass(frozen=True)
class ConsentRecord:
    """One consent choice (see the module docstring). ``timestamp`` is when the person made it."""

    person: str
    purpose: str
    status: ConsentStatus
    timestamp: datetime
    source: str

    def __post_init__(self) -> None:
        problem = _problem(self.person, self.purpose, self.source)
        if problem is not None:
            raise ConfigError(problem)
        if self.timestamp.tzinfo is None:
            raise ConfigError("a consent record's timestamp needs a time zone (write it in UTC, ending in Z)")


class ConsentFileError(ConfigError):
    """A consent file with bad lines: nothing was imported; ``lines`` lists each with its number."""

    def __init__(self, path: Path, lines: list[tuple[int, str]]) -> None:
        shown = "; ".join(f"line {n}: {why}" for n, why in lines[:_MAX_REPORTED])
        more = f"; and {len(lines) - _MAX_REPORTED} more" if len(lines) > _MAX_REPORTED else ""
        super().__init__(
            f"{path}: {len(lines)} bad line(s), nothing was imported ({shown}{more}); fix them and "
            "import again"
        )
        self.lines = lines


def may_use(model: str, current: ConsentStatus | None) -> bool:
    """Whether a person whose current choice for a purpose is ``current`` (None: no record) may be
    counted under an agreement whose consent model is ``model`` (``opt-in`` or ``opt-out``)."""
    if model == "opt-in":
        return current is ConsentStatus.GIVEN
    return current not in (ConsentStatus.WITHDRAWN, ConsentStatus.REFUSED)


def parse_time(text: str) -> datetime:
    """An ISO 8601 time with a zone (``2026-11-30T10:00:00Z``), or a date (midnight UTC);
    :class:`ValueError` for anything else (no zone, out of range)."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        if value.tzinfo is None:
            if "T" in text or " " in text.strip():
                raise ValueError("no time zone")
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    except OverflowError:
        raise ValueError("out of range") from None


def refuse_future(when: datetime, now: datetime) -> str | None:
    """Why a choice dated ``when`` cannot be recorded ``now`` (None when it can)."""
    if when > now + FUTURE_ALLOWANCE:
        return "the time is in the future; date a choice when the person made it"
    return None


def _problem(person: str, purpose: str, source: str) -> str | None:
    if not person or len(person) > MAX_PERSON or not person.isprintable() or person != person.strip():
        return f"the person identifier must be 1-{MAX_PERSON} printable characters without surrounding spaces"
    if not PURPOSE_PATTERN.fullmatch(purpose):
        return "the purpose must be a purpose code: 1-64 letters, digits, '.', '_', ':' or '-'"
    if not source.strip() or not source.isprintable():
        return "the source must say where the choice came from (printable text)"
    return None


def parse_consent_csv(path: Path, now: datetime | None = None) -> list[ConsentRecord]:
    """Every record of a consent CSV file (header ``person,purpose,status,timestamp,source``), or
    :class:`ConsentFileError` listing every bad line (nothing is returned then)."""
    now = now or datetime.now(UTC)
    text = _read(path)
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as err:
        raise ConsentFileError(path, [(0, f"not a CSV file the import can read ({err})")]) from None
    header = rows[0] if rows else None
    if header is None or tuple(h.strip() for h in header) != CONSENT_COLUMNS:
        raise ConsentFileError(path, [(1, f"the header must be {','.join(CONSENT_COLUMNS)}")])
    records: list[ConsentRecord] = []
    bad: list[tuple[int, str]] = []
    for number, row in enumerate(rows[1:], start=2):
        if not row or all(not cell.strip() for cell in row):
            continue
        if len(row) != len(CONSENT_COLUMNS):
            bad.append((number, f"{len(row)} fields, expected {len(CONSENT_COLUMNS)}"))
            continue
        person, purpose, status, timestamp, source = (cell.strip() for cell in row)
        try:
            parsed_status = ConsentStatus(status)
        except ValueError:
            bad.append((number, f"status {status[:20]!r} is not given, withdrawn or refused"))
            continue
        try:
            when = parse_time(timestamp)
        except ValueError:
            bad.append((number, "timestamp is not a time such as 2026-11-30T10:00:00Z"))
            continue
        problem = _problem(person, purpose, source) or refuse_future(when, now)
        if problem is not None:
            bad.append((number, problem))
            continue
        records.append(ConsentRecord(person, purpose, parsed_status, when, source))
    if bad:
        raise ConsentFileError(path, bad)
    return records


def parse_opt_out_list(
    path: Path, purpose: str, source: str, timestamp: datetime, now: datetime | None = None
) -> list[ConsentRecord]:
    """A national opt-out list (one person identifier a line, ``#`` comments and blank lines
    ignored) as ``refused`` records for ``purpose``; every bad line reported, nothing returned."""
    if not PURPOSE_PATTERN.fullmatch(purpose):
        raise ConfigError("the purpose must be a purpose code: 1-64 letters, digits, '.', '_', ':' or '-'")
    future = refuse_future(timestamp, now or datetime.now(UTC))
    if future is not None:
        raise ConfigError(f"--at: {future}")
    records: list[ConsentRecord] = []
    bad: list[tuple[int, str]] = []
    for number, line in enumerate(_read(path).splitlines(), start=1):
        person = line.strip()
        if not person or person.startswith("#"):
            continue
        problem = _problem(person, purpose, source)
        if problem is not None:
            bad.append((number, problem))
            continue
        records.append(ConsentRecord(person, purpose, ConsentStatus.REFUSED, timestamp, source))
    if bad:
        raise ConsentFileError(path, bad)
    return records


def latest(records: Iterable[ConsentRecord]) -> dict[tuple[str, str], ConsentRecord]:
    """Each (person, purpose)'s current choice: the latest record (later timestamps win; for equal
    timestamps the one recorded later)."""
    out: dict[tuple[str, str], ConsentRecord] = {}
    for record in records:
        key = (record.person, record.purpose)
        if key not in out or record.timestamp >= out[key].timestamp:
            out[key] = record
    return out


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; give the path of the file to import") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path}: cannot read it as UTF-8 text ({err.__class__.__name__})") from None
