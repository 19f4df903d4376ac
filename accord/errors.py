"""The one exception tree both sides share.

Every error a user can cause (an analyst, an operator, an auditor) is an :class:`AccordError` whose
message says what to change. Messages depend only on the query, the configuration and the policy,
never on the data. :mod:`accord.protos.rpcstatus` maps this tree to rich gRPC status and back, at
one boundary per side.

A bug in Accord itself is not the user's doing: it raises :class:`InternalError`, which is kept
apart (it is *not* an :class:`AccordError`, so ``except AccordError`` never swallows a bug). Servers
report it to callers as ``INTERNAL`` without detail; the command line reports it as a bug, with its
own exit status.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

__all__ = [
    "AccordError",
    "AnswerTimeExceeded",
    "BudgetExhausted",
    "ConfigError",
    "DataError",
    "DeadlineExceeded",
    "Failure",
    "IntegrityError",
    "InternalError",
    "InvalidQuery",
    "NotFound",
    "PartialFailure",
    "PermissionDenied",
    "ResourceLimit",
    "Unauthenticated",
    "Unavailable",
    "Violation",
    "printable",
]


@dataclass(frozen=True)
class Violation:
    """One thing wrong with a request: which part (``field``) and why (``description``)."""

    field: str
    description: str


class AccordError(Exception):
    """Base of every error Accord raises on purpose."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidQuery(AccordError):
    """The query (SQL, epsilon, id) is malformed or asks for something the dataset does not allow."""

    def __init__(self, message: str, violations: tuple[Violation, ...] = ()) -> None:
        super().__init__(message)
        self.violations = violations or (Violation("query", message),)


class NotFound(InvalidQuery):
    """The query names a dataset or column that does not exist."""


class PermissionDenied(AccordError):
    """The caller may not ask this (identity, agreement, purpose...). ``reason`` is a stable code."""

    def __init__(self, message: str, reason: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.metadata = dict(metadata or {})


class Unauthenticated(PermissionDenied):
    """The caller's identity could not be established (no or unusable client certificate)."""


class BudgetExhausted(AccordError):
    """The privacy budget left is smaller than the query asks for. ``remaining`` is exact text."""

    def __init__(self, message: str, subject: str, remaining: str) -> None:
        super().__init__(message)
        self.subject = subject
        self.remaining = remaining


class ResourceLimit(AccordError):
    """The request is too large or the server too busy; retry smaller or later.

    ``retry_after_seconds``, when known, is how long to wait before retrying (sent as
    ``google.rpc.RetryInfo``)."""

    def __init__(self, message: str, retry_after_seconds: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_seconds = retry_after_seconds


class Unavailable(AccordError):
    """A server could not be reached or is shutting down; retrying later may work."""


class DeadlineExceeded(AccordError):
    """The call did not finish before its deadline."""


class AnswerTimeExceeded(DeadlineExceeded):
    """A node's work on a query ran past its answer-time budget (issue 10: answers leave no earlier
    than the budget, so one that would leave late is refused instead): nothing was released or
    charged. ``setting`` is the node config key the operator raises."""

    reason = "ANSWER_TIME_EXCEEDED"

    def __init__(self, message: str, setting: str) -> None:
        super().__init__(message)
        self.setting = setting


class PartialFailure(AccordError):
    """``--require-all`` was asked and at least one node did not answer."""

    def __init__(self, message: str, missing: dict[str, str]) -> None:
        super().__init__(message)
        self.missing = dict(missing)


class IntegrityError(AccordError):
    """Signed data from another party failed its check: a secure-aggregation share that is missing,
    tampered with, replayed or inconsistent with the others. Nothing was released; retrying with
    the same query id may work, and if it keeps failing the operators must look."""


class ConfigError(AccordError):
    """A configuration file is wrong: the message names the file, the key and the fix."""


class DataError(AccordError):
    """A dataset's files contradict its declared metadata (bounds, categories, person id)."""


class InternalError(Exception):
    """A bug in Accord: not the caller's fault. Details go to the server log only."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


Failure: TypeAlias = AccordError | InternalError
"""Whatever a call to another Accord party can fail with: their refusal or their bug."""


# ---- text that came from elsewhere, made safe to print ---------------------------------------

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str, keep: str = "") -> str:
    """``text`` with every character Python does not call printable (controls such as newline,
    carriage return and ESC, Unicode format characters such as right-to-left overrides, line and
    paragraph separators, other separators but the space) written as an escape (``\\n``,
    ``\\x1b``, ``\\u202e``), except the characters in ``keep``. Whatever a client, a node or a
    data file put in ``text``, it then cannot start a new log line or drive a terminal. Used by
    the command line's log format and by everything it prints from the network."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch in keep else _escape(ch) for ch in text)
