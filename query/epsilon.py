"""Epsilon, the privacy loss of a differentially private release, as an exact value object.

Privacy budgets are added up over many queries, so epsilon is never a float: :class:`Epsilon` holds
a :class:`fractions.Fraction`, refuses negatives (and anything that is not exact), and adds and
subtracts exactly. An analyst writes it as a decimal (``0.5``) or a fraction (``1/3``);
:meth:`Epsilon.parse` reads either, with the limits a query's epsilon must respect, and ``str()``
gives its exact wire form (``1/2``).
"""

from __future__ import annotations

import contextlib
import functools
import re
from dataclasses import dataclass
from fractions import Fraction

from accord.errors import InvalidQuery, Violation

__all__ = ["MAX_BUDGET", "MAX_EPSILON", "MAX_EPSILON_TEXT", "Epsilon"]

MAX_EPSILON_TEXT = 64
"""Longest epsilon text accepted (also the longest exact form ``str(epsilon)`` may have, so every
accepted epsilon is accepted again after a round trip)."""
MAX_EPSILON = Fraction(100)
MAX_BUDGET = Fraction(1_000_000)
"""The largest budget cap an agreement may set (a sum of many queries' epsilons)."""
"""The largest epsilon one query may spend: beyond it no guarantee means anything."""

# What an epsilon may look like before it is handed to Fraction: plain ASCII digits, and an
# exponent of at most two digits. Fraction alone would accept "1e999999999" and spend minutes
# building a billion-digit integer, so a single request could stall a server.
_TEXT = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]{1,2})?|[+-]?[0-9]+/[0-9]+")


@dataclass(frozen=True, order=True)
class Epsilon:
    """An exact, non-negative epsilon. Budgets are sums of these; a query spends a positive one."""

    value: Fraction

    def __post_init__(self) -> None:
        if not isinstance(self.value, Fraction):
            raise TypeError(f"epsilon must be an exact fractions.Fraction, not {type(self.value).__name__}")
        if self.value < 0:
            raise ValueError(f"epsilon cannot be negative (got {self.value})")

    @staticmethod
    def zero() -> Epsilon:
        return Epsilon(Fraction(0))

    @staticmethod
    def parse(text: str, limit: Fraction = MAX_EPSILON) -> Epsilon:
        """The epsilon one query spends, from a decimal (``0.5``) or a fraction (``1/3``), exactly.

        Raises :class:`~accord.errors.InvalidQuery` saying what to write for text that is not a
        number, not positive, above ``limit`` (:data:`MAX_EPSILON`; budgets pass
        :data:`MAX_BUDGET`) or too long to be carried exactly."""
        return _parse(text, limit)

    def display(self) -> str:
        """For people: a decimal when it is one exactly (``0.5``, ``12.25``), else the fraction."""
        value = self.value
        denominator = value.denominator
        twos = fives = 0
        while denominator % 2 == 0:
            denominator //= 2
            twos += 1
        while denominator % 5 == 0:
            denominator //= 5
            fives += 1
        if denominator != 1:
            return str(value)
        places = max(twos, fives)
        if places == 0:
            return str(value.numerator)
        scaled = value.numerator * 10**places // value.denominator
        sign = "-" if scaled < 0 else ""
        digits = str(abs(scaled)).rjust(places + 1, "0")
        return f"{sign}{digits[:-places]}.{digits[-places:]}".rstrip("0").rstrip(".")

    def __str__(self) -> str:
        """The exact form (``"1/2"``, ``"3"``), as it travels in releases and is stored."""
        return str(self.value)

    def __add__(self, other: Epsilon) -> Epsilon:
        return Epsilon(self.value + other.value)

    def __sub__(self, other: Epsilon) -> Epsilon:
        """The difference; :class:`ValueError` if ``other`` is larger (a budget never goes negative)."""
        return Epsilon(self.value - other.value)

    def left_after(self, spent: Epsilon) -> Epsilon:
        """What is left of this cap after ``spent`` (zero, never negative, when it is used up)."""
        return self - spent if spent <= self else Epsilon.zero()

    def split(self, parts: int) -> Epsilon:
        """An equal share of this epsilon for each of ``parts`` measurements (exact)."""
        if parts < 1:
            raise ValueError("an epsilon is split into at least one part")
        return Epsilon(self.value / parts)

    def __float__(self) -> float:
        """For display and for APIs that need a float; budgets never add floats."""
        return float(self.value)


@functools.lru_cache(maxsize=256)
def _parse(text: str, limit: Fraction) -> Epsilon:
    # Pure and immutable: a federation uses a handful of values, each parsed once. A refusal is
    # raised, so it is never cached.
    stripped = text.strip()
    value: Fraction | None = None
    if len(stripped) <= MAX_EPSILON_TEXT and _TEXT.fullmatch(stripped):
        with contextlib.suppress(ValueError, ZeroDivisionError):
            value = Fraction(stripped)
    if value is None:
        shown = text if len(text) <= MAX_EPSILON_TEXT else text[:MAX_EPSILON_TEXT] + "..."
        raise InvalidQuery(
            f"epsilon {shown!r} is not a number; write it as a decimal such as 0.5 or a fraction such as 1/3"
            f" (at most {MAX_EPSILON_TEXT} characters, an exponent of at most two digits)",
            (Violation("epsilon", "not a number"),),
        )
    if value <= 0:
        raise InvalidQuery(
            f"epsilon must be greater than 0 (got {stripped}); try 0.5",
            (Violation("epsilon", "not positive"),),
        )
    if value > limit:
        raise InvalidQuery(
            f"epsilon {stripped} is far beyond any meaningful privacy guarantee; use a value of at most "
            f"{limit}",
            (Violation("epsilon", "too large"),),
        )
    if len(str(value)) > MAX_EPSILON_TEXT:
        raise InvalidQuery(
            f"epsilon {stripped} has too many digits to be carried exactly; round it, e.g. to 0.5 or 1/3",
            (Violation("epsilon", "too many digits"),),
        )
    return Epsilon(value)
