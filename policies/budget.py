"""Privacy budgets: what a query costs under its agreement and whether it still fits, exactly.

A node keeps, per agreement, the epsilon each analyst has spent and the epsilon all of them have
spent (its ledger lives in the node's state, :mod:`accord.node.state`). A query's :class:`Charge`
fits when, after it, the analyst's spending stays within the agreement's ``per_analyst`` cap and
the agreement's within its ``total`` cap. Arithmetic is exact (:class:`~accord.query.epsilon.Epsilon`);
nothing is ever rounded, so no sequence of queries can creep past a cap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from accord.errors import BudgetExhausted
from accord.query.epsilon import Epsilon
from accord.query.preview import BudgetLine

if TYPE_CHECKING:
    from accord.policies.agreements import Agreement

__all__ = ["Charge", "Spent", "budget_line", "check_fits"]


@dataclass(frozen=True)
class Charge:
    """What one answer costs under ``agreement``, and the caps it must stay within."""

    agreement: str
    epsilon: Epsilon
    per_analyst: Epsilon
    total: Epsilon


@dataclass(frozen=True)
class Spent:
    """What has been spent under one agreement at one node: by one analyst, and by all of them;
    and how many of the analyst's queries were answered."""

    analyst: Epsilon
    total: Epsilon
    answered: int = 0

    def left(self, charge: Charge) -> tuple[Epsilon, Epsilon]:
        """What the analyst and the agreement have left under ``charge``'s caps (never negative)."""
        return charge.per_analyst.left_after(self.analyst), charge.total.left_after(self.total)


def check_fits(charge: Charge, spent: Spent, analyst: str, node: str) -> None:
    """Raise :class:`BudgetExhausted` (saying what is left for the analyst and for the agreement)
    unless ``charge`` fits beside what ``spent`` records."""
    analyst_left, total_left = spent.left(charge)
    if charge.epsilon <= analyst_left and charge.epsilon <= total_left:
        return
    mine = charge.epsilon > analyst_left
    subject = f"agreement {charge.agreement}, analyst {analyst}" if mine else f"agreement {charge.agreement}"
    left = analyst_left if mine else total_left
    raise BudgetExhausted(
        f"this query asks epsilon {charge.epsilon.display()} at node {node}, but under agreement "
        f"{charge.agreement} analyst {analyst} has {analyst_left.display()} left (of "
        f"{charge.per_analyst.display()}) and the agreement has {total_left.display()} left (of "
        f"{charge.total.display()}); ask for at most {min(analyst_left, total_left).display()}, or ask the "
        "agreement's owners to review its budget",
        subject,
        str(left),
    )


def budget_line(agreement: Agreement, analyst: str, spent: Spent) -> BudgetLine:
    """``analyst``'s budget under ``agreement`` given what the ledger says was ``spent``."""
    b = agreement.budget
    return BudgetLine(
        agreement=agreement.id,
        purpose=agreement.purpose_code,
        analyst=analyst,
        analyst_spent=spent.analyst,
        per_analyst=b.per_analyst,
        agreement_spent=spent.total,
        total=b.total,
        per_query=b.per_query,
        answered=spent.answered,
        valid_until=agreement.valid_until.isoformat(),
    )
