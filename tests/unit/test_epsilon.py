"""Epsilon as an exact value object: parsed exactly from what analysts type, refused with a message
when it cannot be carried, never negative, added and split exactly."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from accord.errors import InvalidQuery
from accord.query.epsilon import MAX_EPSILON_TEXT, Epsilon

EPSILON = st.fractions(min_value=Fraction(1, 10**6), max_value=100, max_denominator=10**6)


@pytest.mark.parametrize(
    ("text", "exact"),
    [
        ("0.1", Fraction(1, 10)),
        ("1/3", Fraction(1, 3)),
        ("0.3", Fraction(3, 10)),
        ("0.50", Fraction(1, 2)),
        ("2.5e-1", Fraction(1, 4)),
        ("100", Fraction(100)),
        (" 0.5 ", Fraction(1, 2)),
    ],
)
def test_decimal_epsilon_is_not_rounded_through_float(text: str, exact: Fraction) -> None:
    """Property: a decimal epsilon is read exactly (0.1 is 1/10, not the float 0.1000000000000000055...),
    and its exact form is the fraction."""
    eps = Epsilon.parse(text)
    assert eps.value == exact and str(eps) == str(exact)


@given(EPSILON)
def test_every_accepted_epsilon_is_accepted_again_after_a_round_trip(value: Fraction) -> None:
    """Property: the exact form of any epsilon a client may send parses back to itself."""
    assert Epsilon.parse(str(value)) == Epsilon(value)


@given(st.text(max_size=80))
def test_parse_accepts_only_what_it_can_carry(text: str) -> None:
    """Property: whatever the text, parse returns a positive epsilon at most 100 whose exact form it
    accepts again, or raises InvalidQuery pointing at the epsilon field."""
    try:
        value = Epsilon.parse(text)
    except InvalidQuery as err:
        assert [v.field for v in err.violations] == ["epsilon"]
        assert "epsilon" in err.message
        return
    assert 0 < value.value <= 100
    assert Epsilon.parse(str(value)) == value


MALFORMED_EPSILONS = [
    ("abc", "not a number"),
    ("-1", "greater than 0"),
    ("0", "greater than 0"),
    ("-0.0", "greater than 0"),
    ("nan", "not a number"),
    ("NaN", "not a number"),
    ("inf", "not a number"),
    ("-inf", "not a number"),
    ("1/0", "not a number"),
    ("0x10", "not a number"),
    ("1_000", "not a number"),
    ("½", "not a number"),
    ("\u0661", "not a number"),  # ARABIC-INDIC DIGIT ONE: Fraction would take it, the wire form not
    ("   ", "not a number"),
    ("", "not a number"),
    ("101", "at most 100"),
    ("1e100", "not a number"),
    ("1e999999999", "not a number"),  # Fraction alone would build a billion-digit integer
    ("1e-99", "too many digits"),
    ("0." + "1" * 60, "too many digits"),
    ("1" * 10_000, "not a number"),
]


@pytest.mark.parametrize(
    ("text", "says"), MALFORMED_EPSILONS, ids=[t[:12] or "empty" for t, _ in MALFORMED_EPSILONS]
)
def test_malformed_epsilon_is_an_invalid_query(text: str, says: str) -> None:
    """Property: a malformed epsilon becomes InvalidQuery naming the epsilon field, with a message
    that says what is wrong and how to write it; never a raw ValueError."""
    with pytest.raises(InvalidQuery) as info:
        Epsilon.parse(text)
    err = info.value
    assert type(err) is InvalidQuery
    assert [v.field for v in err.violations] == ["epsilon"]
    assert says in err.message and "epsilon" in err.message
    assert len(err.message) < 400  # a huge input is not echoed back in full


@pytest.mark.timeout(30)
def test_huge_exponent_is_refused_without_computing_it() -> None:
    """Property: an epsilon like 9e999999999 is refused without computing 10**999999999 (which
    takes minutes and gigabytes: one request would stall a server). A regression hangs here."""
    with pytest.raises(InvalidQuery, match="exponent of at most two digits"):
        Epsilon.parse("9e999999999")
    assert MAX_EPSILON_TEXT >= 16 and Epsilon.parse("99/100").value == Fraction(99, 100)


def test_value_object_is_exact_and_never_negative() -> None:
    """Property: epsilons add and split exactly (a third plus a third plus a third is one), a
    difference below zero and any inexact or negative value are refused."""
    third = Epsilon.parse("1/3")
    assert third + third + third == Epsilon(Fraction(1))
    assert Epsilon.parse("1").split(3) == third
    assert Epsilon(Fraction(1)) - third == Epsilon(Fraction(2, 3))
    assert Epsilon.zero() < third
    with pytest.raises(ValueError, match="negative"):
        _ = third - Epsilon(Fraction(1))
    with pytest.raises(ValueError, match="negative"):
        Epsilon(Fraction(-1, 2))
    with pytest.raises(TypeError, match="exact"):
        Epsilon(0.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        third.split(0)
    assert float(Epsilon.parse("0.25")) == 0.25
