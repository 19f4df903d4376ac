"""When a node's answer may leave: an answer-time budget set from public information (issue 10).

How long a node takes to answer must not tell an analyst anything the released numbers do not:
at epsilon 1e-6 the numbers say nothing, yet an answer that took 57 ms instead of 8 ms told
whether one person had an extra row. So every fresh answer leaves **no earlier than** the moment
its request arrived plus a budget that depends only on the node's config, the dataset and the
query's shape (grouped or not), never on the data: :class:`AnswerBudgets` picks it, and
:class:`AnswerPace` waits out the remainder with a monotonic clock. Work that runs past the budget
is refused with :class:`~accord.errors.AnswerTimeExceeded` (nothing released, nothing charged)
instead of leaving late, and the error names the setting to raise.

What is padded (see :meth:`accord.node.service.NodeService.answer`): every request that passed
the policy checks, from the moment its budget is known to its reply, whatever that reply is (a
release, a retry answered from the stored release, the ledger's budget refusal, a refusal found
after the engine ran, a failure). A retry is padded too because it may have waited for the first
request of its id to finish its data-dependent work: answered at once, it would leave when that
work ended. Not padded: refusals decided by policy alone (identity, signature, agreement, SQL
against the schema); they read no data. Previews, budgets and the catalog read no data.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from accord.errors import AnswerTimeExceeded
from accord.node.config import NodeConfig
from accord.query.model import Query

__all__ = ["AnswerBudget", "AnswerBudgets", "AnswerPace", "answer_budgets"]

log = logging.getLogger(__name__)

_WARN_FRACTION = 0.75
"""Work that used more than this share of its budget is logged for the operator (before it fails)."""


@dataclass(frozen=True)
class AnswerBudget:
    """How long an answer takes, at least, and the config key that sets it."""

    seconds: float
    setting: str


@dataclass(frozen=True)
class AnswerBudgets:
    """The budgets of one node: ``default`` (``[timing] answer_seconds``; 0 turns padding off),
    per-dataset overrides (``datasets.NAME.answer_seconds``) and per-dataset overrides for GROUP BY
    queries (``datasets.NAME.grouped_answer_seconds``)."""

    default: float = 0.0
    datasets: Mapping[str, float] = field(default_factory=dict)
    grouped: Mapping[str, float] = field(default_factory=dict)

    @property
    def padding(self) -> bool:
        """Whether answers are padded at all (``[timing] answer_seconds`` above 0)."""
        return self.default > 0

    def budget(self, query: Query) -> AnswerBudget | None:
        """The budget of ``query``: from its dataset and whether it groups, never from the data.
        None when padding is off."""
        if not self.padding:
            return None
        name = query.dataset
        if query.group_by and name in self.grouped:
            return AnswerBudget(self.grouped[name], f"datasets.{name}.grouped_answer_seconds")
        if name in self.datasets:
            return AnswerBudget(self.datasets[name], f"datasets.{name}.answer_seconds")
        return AnswerBudget(self.default, "timing.answer_seconds")


class AnswerPace:
    """The clock of one request: started when it arrived; :meth:`start_budget` sets its deadline
    once the request is known to reach the data; :meth:`check` refuses work that ran past it;
    :meth:`wait` sleeps until it (a no-op before :meth:`start_budget`, or when past it)."""

    def __init__(
        self,
        node: str,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._node = node
        self._clock = clock
        self._sleep = sleep
        self.started = clock()
        self.budget: AnswerBudget | None = None

    @property
    def deadline(self) -> float | None:
        return None if self.budget is None else self.started + self.budget.seconds

    def start_budget(self, budget: AnswerBudget | None) -> None:
        self.budget = budget

    def check(self) -> None:
        """Raise :class:`AnswerTimeExceeded` when the work so far ran past the budget (called
        before anything is charged or recorded)."""
        if self.budget is None:
            return
        used = self._clock() - self.started
        if used > self.budget.seconds:
            raise AnswerTimeExceeded(
                f"node {self._node!r} needed more than its answer-time budget of {self.budget.seconds:g} s "
                "for this query, so it released nothing and charged nothing (answers never leave after "
                f"their budget: that would tell how long the data took); the node operator can raise "
                f"{self.budget.setting} in the node config; retrying later may also work",
                self.budget.setting,
            )
        if used > _WARN_FRACTION * self.budget.seconds:
            log.warning(
                "an answer used %.0f%% of its %g s budget; raise %s in the node config before "
                "queries start failing with ANSWER_TIME_EXCEEDED",
                100 * used / self.budget.seconds,
                self.budget.seconds,
                self.budget.setting,
            )

    def wait(self) -> None:
        """Sleep until the deadline (monotonic clock; sleeps again if woken early)."""
        deadline = self.deadline
        if deadline is None:
            return
        while (left := deadline - self._clock()) > 0:
            self._sleep(left)


def answer_budgets(config: NodeConfig) -> AnswerBudgets:
    """The budgets a node config sets (``[timing] answer_seconds`` and each dataset's overrides)."""
    return AnswerBudgets(
        config.answer_seconds,
        {d.schema.name: d.answer_seconds for d in config.datasets if d.answer_seconds is not None},
        {
            d.schema.name: d.grouped_answer_seconds
            for d in config.datasets
            if d.grouped_answer_seconds is not None
        },
    )
