"""Conversion of previews and budgets between the generated protobuf types and Accord's dataclasses
(:mod:`accord.query.preview`); releases, schemas and signed queries are in :mod:`accord.protos.convert`."""

from __future__ import annotations

from collections.abc import Iterable
from fractions import Fraction

from accord.errors import InternalError
from accord.protos.convert import MECHANISM_FROM_PB, MECHANISM_TO_PB, epsilon_from_pb, missing_to_pb
from accord.protos.v1 import common_pb2 as pb
from accord.protos.v1 import coordinator_pb2 as cpb
from accord.query.epsilon import Epsilon
from accord.query.preview import (
    AggregatePreview,
    BudgetLine,
    FederatedExplanation,
    NodeExplanation,
    NoisePreview,
)

__all__ = [
    "aggregate_preview_from_pb",
    "aggregate_preview_to_pb",
    "budget_line_from_pb",
    "budget_line_to_pb",
    "explanation_from_pb",
    "explanation_to_pb",
    "federated_budget_from_pb",
    "federated_explanation_from_pb",
    "federated_explanation_to_pb",
    "node_budget_from_pb",
    "node_budget_to_pb",
]


def _noise_to_pb(n: NoisePreview | None) -> pb.NoisePreview | None:
    if n is None:
        return None
    return pb.NoisePreview(
        mechanism=MECHANISM_TO_PB[n.mechanism], noise_scale=n.noise_scale, half_width=n.half_width
    )


def _noise_from_pb(msg: pb.NoisePreview) -> NoisePreview:
    mech = MECHANISM_FROM_PB.get(msg.mechanism)
    if mech is None:
        raise InternalError("a preview arrived without a known mechanism")
    return NoisePreview(mech, msg.noise_scale, msg.half_width)


def aggregate_preview_to_pb(a: AggregatePreview) -> pb.AggregatePreview:
    return pb.AggregatePreview(
        name=a.name,
        estimate=_noise_to_pb(a.estimate),
        sum=_noise_to_pb(a.sum),
        count=_noise_to_pb(a.count),
        epsilon_for_target="" if a.epsilon_for_target is None else str(a.epsilon_for_target),
    )


def aggregate_preview_from_pb(msg: pb.AggregatePreview) -> AggregatePreview:
    return AggregatePreview(
        name=msg.name,
        estimate=_noise_from_pb(msg.estimate) if msg.HasField("estimate") else None,
        sum=_noise_from_pb(msg.sum) if msg.HasField("sum") else None,
        count=_noise_from_pb(msg.count) if msg.HasField("count") else None,
        epsilon_for_target=epsilon_from_pb(msg.epsilon_for_target, "a preview")
        if msg.epsilon_for_target
        else None,
    )


def budget_line_to_pb(line: BudgetLine) -> pb.BudgetLine:
    return pb.BudgetLine(
        agreement=line.agreement,
        purpose=line.purpose,
        analyst=line.analyst,
        analyst_spent=str(line.analyst_spent),
        per_analyst=str(line.per_analyst),
        analyst_remaining=str(line.analyst_remaining),
        agreement_spent=str(line.agreement_spent),
        total=str(line.total),
        agreement_remaining=str(line.agreement_remaining),
        per_query=str(line.per_query),
        answered=line.answered,
        valid_until=line.valid_until,
    )


def _exact(text: str, what: str) -> Epsilon:
    """An exact epsilon of a budget (zero allowed, up to the largest cap)."""
    try:
        value = Fraction(text)
        return Epsilon(value)
    except (ValueError, ZeroDivisionError, TypeError):
        raise InternalError(f"{what} arrived with an invalid epsilon") from None


def budget_line_from_pb(msg: pb.BudgetLine) -> BudgetLine:
    what = f"the budget line of agreement {msg.agreement!r}"
    return BudgetLine(
        agreement=msg.agreement,
        purpose=msg.purpose,
        analyst=msg.analyst,
        analyst_spent=_exact(msg.analyst_spent, what),
        per_analyst=_exact(msg.per_analyst, what),
        agreement_spent=_exact(msg.agreement_spent, what),
        total=_exact(msg.total, what),
        per_query=_exact(msg.per_query, what),
        answered=msg.answered,
        valid_until=msg.valid_until,
    )


def explanation_to_pb(e: NodeExplanation) -> pb.NodeExplanation:
    return pb.NodeExplanation(
        node=e.node,
        dataset=e.dataset,
        agreement=e.agreement,
        epsilon=str(e.epsilon),
        budget=budget_line_to_pb(e.budget),
        fits=e.fits,
        aggregates=[aggregate_preview_to_pb(a) for a in e.aggregates],
        groups=e.groups,
        min_group_size=e.min_group_size,
    )


def explanation_from_pb(msg: pb.NodeExplanation) -> NodeExplanation:
    return NodeExplanation(
        node=msg.node,
        dataset=msg.dataset,
        agreement=msg.agreement,
        epsilon=epsilon_from_pb(msg.epsilon, f"the preview of node {msg.node!r}"),
        budget=budget_line_from_pb(msg.budget),
        fits=msg.fits,
        aggregates=tuple(aggregate_preview_from_pb(a) for a in msg.aggregates),
        groups=msg.groups,
        min_group_size=msg.min_group_size,
    )


def node_budget_to_pb(node: str, lines: Iterable[BudgetLine]) -> pb.NodeBudget:
    return pb.NodeBudget(node=node, lines=[budget_line_to_pb(line) for line in lines])


def node_budget_from_pb(msg: pb.NodeBudget) -> tuple[str, tuple[BudgetLine, ...]]:
    return msg.node, tuple(budget_line_from_pb(line) for line in msg.lines)


def federated_explanation_to_pb(e: FederatedExplanation) -> cpb.FederatedExplanation:
    return cpb.FederatedExplanation(
        query_id=e.query_id,
        dataset=e.dataset,
        nodes=[explanation_to_pb(n) for n in e.nodes],
        refused=missing_to_pb(e.refused),
        combined=[aggregate_preview_to_pb(a) for a in e.combined],
    )


def federated_explanation_from_pb(msg: cpb.FederatedExplanation) -> FederatedExplanation:
    return FederatedExplanation(
        query_id=msg.query_id,
        dataset=msg.dataset,
        nodes=tuple(explanation_from_pb(n) for n in msg.nodes),
        refused={m.node: m.reason for m in msg.refused},
        combined=tuple(aggregate_preview_from_pb(a) for a in msg.combined),
    )


def federated_budget_from_pb(
    msg: cpb.FederatedBudget,
) -> tuple[dict[str, tuple[BudgetLine, ...]], dict[str, str]]:
    lines = dict(node_budget_from_pb(n) for n in msg.nodes)
    return lines, {m.node: m.reason for m in msg.unreachable}
