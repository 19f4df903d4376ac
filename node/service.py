"""The node's answer path, free of gRPC: the one place where a request is checked, answered and recorded.

:meth:`NodeService.answer` is the life of a query at a node, in this order:

1. **caller**: the TLS identity must be a coordinator this node serves (:meth:`PolicyGate.admit`);
2. **verify**: the analyst's signature, certificate chain, role and validity, the query's freshness
   (:class:`~accord.policies.verifying.QueryVerifier`), and that the analyst sent it through this
   very coordinator (another coordinator of the federation cannot replay it);
3. **agreement**: the data-sharing agreement the query names covers this analyst today, and the
   epsilon is within the agreement's per-query cap and the node's own ceiling
   (:meth:`PolicyGate.authorise`);
4. **compile**: the SQL against the *views* the agreement grants (a field it hides is refused in
   the same words as a field that does not exist), then every field's use against the agreement
   (:meth:`PolicyGate.check_uses`); a node trusts nobody upstream, so it re-checks everything;
5. **state**: a query id this analyst used before returns the recorded release byte for byte (or is
   refused if it named another query): no fresh noise, no second charge;
6. **budget**: the charge must fit what the analyst and the agreement have left (checked early
   here, and again, authoritatively, when it is recorded);
7. **consent**: the people the agreement's purpose may not count (from the consent register, as it
   stands when the query starts) are left out before anything is computed;
8. **backend**: the exact aggregates on the local engine (consent, filter, bounding, clamping);
9. **release**: OpenDP noise, intervals, small-cell suppression;
10. **state**: the answer and its charge recorded in one durable transaction
    (:meth:`NodeState.record`, which refuses a charge that no longer fits); only then does the
    release leave the node, and **no earlier than its answer-time budget** after the request
    arrived (:mod:`accord.node.timing`): from step 7 on, whatever the reply is, it waits out the
    budget, and work that ran past it is refused before step 10 (``ANSWER_TIME_EXCEEDED``: nothing
    recorded or charged). Steps 1-6 decide from the request, the policy and the ledger alone and
    a retry's stored release reads no data, so they are not padded.

Every request ends in one :class:`~accord.policies.decision.Decision` (answered, answered again,
refused with its reason code, failed, previewed, shown), appended to the node's audit log
durably before any reply leaves the node: an answer's entry in the very transaction that records
it and its charge (step 10), any other decision's on its own (with the refusal's count for the
public register, under a known agreement). A decision that cannot be logged is not replied to:
the caller gets an internal error instead. Each decision is also handed to ``on_decision``
(logged as one JSON line by default). A change of the consent register is logged before the
first query that uses it.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Callable

from accord.errors import NotFound, PermissionDenied
from accord.node.audit_log import consent_entry
from accord.node.backend import ExecutionBackend, PersonFilter
from accord.node.consent import ConsentRegister
from accord.node.decisions import FAILURES, Draft, answer_record, log_decision, reason_of, same_query
from accord.node.plan import group_keys
from accord.node.preview import preview_aggregates
from accord.node.release import build_release
from accord.node.secure import NodeIdentity, SecureAnswers
from accord.node.state import Answer, NodeState
from accord.node.timing import AnswerBudgets, AnswerPace
from accord.policies.agreements import Agreement
from accord.policies.audit_entry import decision_entry
from accord.policies.budget import Charge, budget_line, check_fits
from accord.policies.decision import Decision
from accord.policies.gate import Grant, PolicyGate, query_uses
from accord.policies.identity import Identity
from accord.policies.signing import SignedQuery
from accord.policies.verifying import QueryVerifier, VerifiedQuery, VerifiedRequest
from accord.query.epsilon import Epsilon
from accord.query.model import Query
from accord.query.preview import BudgetLine, NodeExplanation
from accord.query.release import Release
from accord.query.schema import DatasetSchema
from accord.query.share import is_share
from accord.query.sql import compile_query
from accord.rpc.fairness import AnalystLimits, FairnessConfig

__all__ = ["NodeService", "reason_of"]

log = logging.getLogger(__name__)

_COMPILED_QUERIES = 512
"""How many distinct (SQL text, views) pairs keep their parsed, validated query (a few KB each)."""
_ID_LOCKS = 64


class NodeService:
    """Answers queries for one node. Thread-safe; one instance per server."""

    def __init__(
        self,
        name: str,
        backend: ExecutionBackend,
        schemas: tuple[DatasetSchema, ...],
        gate: PolicyGate,
        verifier: QueryVerifier,
        state: NodeState,
        consent: ConsentRegister | None = None,
        on_decision: Callable[[Decision], None] = log_decision,
        fairness: FairnessConfig | None = None,
        budgets: AnswerBudgets | None = None,
        identity: NodeIdentity | None = None,
    ) -> None:
        """``budgets``: the answer-time budgets (:func:`accord.node.timing.answer_budgets` of the
        node config; None, for tests that do not time answers, pads nothing)."""
        self.name = name
        self._fair = AnalystLimits(fairness or FairnessConfig())
        self.budgets = budgets if budgets is not None else AnswerBudgets()
        self.gate = gate
        self._backend = backend
        self._schemas = {s.name: s for s in schemas}
        self._verifier = verifier
        self._state = state
        self._consent = consent
        self._on_decision = on_decision
        self._id_locks = [threading.Lock() for _ in range(_ID_LOCKS)]
        self._filters: dict[tuple[str, str], PersonFilter] = {}
        self._filters_lock = threading.Lock()
        logged = state.seen("consent").get("version")
        self._consent_logged = int(logged) if logged is not None else None
        # Compiling is a pure function of the SQL text and the views it is checked against, and the
        # Query is immutable: repeated texts (dashboards, retries) skip sqlglot. Only successes are
        # cached; a refusal is recomputed (and raised again).
        self._compile = functools.lru_cache(maxsize=_COMPILED_QUERIES)(self._compile_uncached)
        self.secure = SecureAnswers(self, identity)
        """Secure aggregation's two rounds (:mod:`accord.node.secure`)."""

    @staticmethod
    def _compile_uncached(sql: str, views: tuple[DatasetSchema, ...]) -> Query:
        return compile_query(sql, {v.name: v for v in views})

    @property
    def consent(self) -> ConsentRegister | None:
        return self._consent

    @property
    def state(self) -> NodeState:
        """The node's state (its ledger and its audit log)."""
        return self._state

    @property
    def schemas(self) -> tuple[DatasetSchema, ...]:
        return tuple(self._schemas[k] for k in sorted(self._schemas))

    def catalog(self, caller: Identity, agreement: str = "") -> tuple[DatasetSchema, ...]:
        """The datasets ``caller`` (a coordinator this node serves) may see: under ``agreement``,
        what it grants; without one, the fields some agreement of this node shares."""
        views = self.gate.catalog(caller, agreement)
        return tuple(views[k] for k in sorted(views))

    def close(self) -> None:
        """Release the state file, the consent register and the engine (no calls are running)."""
        self._state.close()
        if self._consent is not None:
            self._consent.close()
        self._backend.close()

    # ---- the life of a request ------------------------------------------------------------------

    def _told(self, decision: Decision) -> None:
        try:
            self._on_decision(decision)
        except Exception:  # a broken log line must not change the answer; it is the operator's alarm
            log.exception("could not log a decision")

    def _decided(self, decision: Decision, refusal: tuple[str, str] | None = None) -> None:
        """Append ``decision`` to the audit log (durably: raises InternalError, and no reply may
        leave, if it cannot be), counting ``refusal`` for the register in the same transaction."""
        self._state.append([decision_entry(decision)], refusal=refusal)
        self._told(decision)

    def _refused(self, draft: Draft, err: BaseException) -> None:
        reason = reason_of(err)
        outcome = "failed" if reason in FAILURES else "refused"
        counted = outcome == "refused" and draft.known_agreement and draft.kind == "query"
        self._decided(draft.decide(outcome, reason=reason), (draft.agreement, reason) if counted else None)

    def _verified(self, draft: Draft, caller: Identity, signed: SignedQuery, kind: str) -> VerifiedRequest:
        """Steps 1-2 for a request of ``kind``, filling ``draft`` as identities become known."""
        self.gate.admit(caller)
        verified = (
            self._verifier.verify(signed, kind=kind)
            if kind != "budget"
            else self._verifier.verify_request(signed, kind)
        )
        draft.analyst, draft.query_id = verified.analyst.name, verified.payload.query_id
        draft.payload_digest = signed.payload_digest().hex()
        draft.envelope_digest = hashlib.sha256(signed.to_bytes()).hexdigest()
        draft.agreement = verified.payload.agreement
        held = self.gate.agreements.get(draft.agreement)
        # Refusals are counted (for the public register) only under an agreement that covers the
        # analyst: anyone else's refusals would let strangers inflate an agreement's numbers.
        draft.known_agreement = held is not None and verified.analyst.name in held.analysts
        if held is not None:
            draft.purpose = held.purpose_code
        if verified.payload.coordinator != caller.name:
            raise PermissionDenied(
                f"analyst {verified.analyst.name!r} sent this request through coordinator "
                f"{verified.payload.coordinator[:63]!r}, not {caller.name!r}; nodes act on a signed request "
                "only from the coordinator it names",
                "QUERY_FOR_ANOTHER_COORDINATOR",
                {"analyst": verified.analyst.name, "caller": str(caller)},
            )
        return verified

    def _granted(self, draft: Draft, verified: VerifiedQuery) -> tuple[Grant, Query]:
        """Steps 3-4: the agreement's grant and the query compiled against its views."""
        grant = self.gate.authorise(verified)
        views = grant.views
        try:
            query = self._compile(verified.request.sql, tuple(views[k] for k in sorted(views)))
        except NotFound as err:  # a dataset or field outside the views: hidden and absent alike
            raise self.gate.not_granted(grant, err) from None
        draft.dataset = query.dataset
        draft.uses = query_uses(query)
        self.gate.check_uses(query, grant)
        return grant, query

    def answer(self, caller: Identity, signed: SignedQuery, serialize: Callable[[Release], bytes]) -> bytes:
        """The release bytes for ``signed``, asked by ``caller`` (see the module docstring).

        ``serialize`` turns a release into its wire bytes (the servicer owns the wire format): the
        bytes are recorded, and a retry is answered with exactly them."""
        pace = AnswerPace(self.name)
        draft = Draft(self.name, "query", str(caller))
        try:
            verified = self._verified(draft, caller, signed, "query")
            assert isinstance(verified, VerifiedQuery)
            grant, query = self._granted(draft, verified)
            if self._schemas[query.dataset].secure is not None:
                raise PermissionDenied(
                    f"node {self.name!r} answers dataset {query.dataset!r} only by secure aggregation, so "
                    "that no one sees its own answer; send it through a coordinator that runs secure "
                    "aggregation (Accord's does so for every dataset whose holders all declare it)",
                    "SECURE_AGGREGATION_REQUIRED",
                    {"dataset": query.dataset},
                )
            with self._fair.admit(verified.analyst.name):  # the analyst the signature proves
                recorded, decision = self._answer(draft, verified, signed, grant, query, serialize, pace)
            if decision is None:  # the stored release, sent again: nothing charged
                self._decided(
                    draft.decide(
                        "answered-again", release_digest=hashlib.sha256(recorded.release).hexdigest()
                    )
                )
            else:  # logged with the answer itself
                self._told(decision)
        except BaseException as err:
            if isinstance(err, Exception):
                try:
                    self._refused(draft, err)
                finally:
                    pace.wait()  # a refusal found after the data was read leaves at the budget too
            raise
        pace.wait()  # outside the id lock: a waiting answer holds nobody else up
        return recorded.release

    def _answer(
        self,
        draft: Draft,
        verified: VerifiedQuery,
        signed: SignedQuery,
        grant: Grant,
        query: Query,
        serialize: Callable[[Release], bytes],
        pace: AnswerPace,
    ) -> tuple[Answer, Decision | None]:
        """Steps 5-10: the recorded answer, and its decision if it was answered (and charged, and
        logged) now; None if it was answered before."""
        agreement = grant.agreement
        analyst, query_id = verified.analyst.name, verified.request.query_id
        digest = verified.payload.request_digest()
        epsilon = verified.request.epsilon
        # From here on the reply, whatever it is, waits out the budget: the data may be read, and
        # a retry of the same id may wait below for the first request's work to end (answered at
        # once, its reply would leave when that data-dependent work finished).
        pace.start_budget(self.budgets.budget(query))
        with self._id_locks[hash((analyst, query_id)) % _ID_LOCKS]:
            stored = self._state.find(analyst, query_id)
            if stored is not None:
                same_query(stored, digest, verified)
                if is_share(stored.release):  # never the unmasked share, even with the setting off now
                    raise PermissionDenied(
                        f"query id {query_id!r} was answered by secure aggregation; ask again with a fresh "
                        "id",
                        "QUERY_ID_REUSED",
                        {"analyst": analyst, "query_id": query_id},
                    )
                return stored, None
            charge = self._charge(agreement, analyst, epsilon)
            schema = self._schemas[query.dataset]
            minimum = agreement.min_group_size
            exact = self._backend.execute(query, schema, self._persons(agreement), support=minimum > 0)
            release = build_release(
                query,
                schema,
                exact,
                epsilon,
                query_id,
                self.name,
                # The release says the budget, a public number, never how long the data took.
                pace.budget.seconds if pace.budget is not None else 0.0,
                min_group_size=minimum,
                agreement=agreement.id,
            )
            answer = answer_record(verified, signed, query.dataset, serialize(release), agreement.id)
            decision = draft.decide(
                "answered", epsilon=answer.epsilon, release_digest=hashlib.sha256(answer.release).hexdigest()
            )
            pace.check()  # ran past the budget: refuse before anything is charged or recorded
            recorded = self._state.record(answer, charge, [decision_entry(decision)])
            same_query(recorded, digest, verified)
        return recorded, decision if recorded is answer else None

    def _charge(self, agreement: Agreement, analyst: str, epsilon: Epsilon) -> Charge | None:
        """What the answer will be charged, refused early (:class:`BudgetExhausted`) when it does
        not fit what the ledger says now; the state checks again when it records the answer."""
        charge = Charge(agreement.id, epsilon, agreement.budget.per_analyst, agreement.budget.total)
        check_fits(charge, self._state.spent(agreement.id, analyst), analyst, self.name)
        return charge

    def _persons(self, agreement: Agreement) -> PersonFilter | None:
        """Who the agreement's purpose may not count (or only may), as the register stands now."""
        if self._consent is None:
            return None
        key = (agreement.purpose_code, agreement.consent)
        version = self._consent.version()
        if version != self._consent_logged:
            self._log_consent(version)
        with self._filters_lock:
            known = self._filters.get(key)
        if known is None or known.version < version:
            known = self._consent.filter(*key)
            with self._filters_lock:
                self._filters[key] = known
        if known.mode == "exclude" and not known.persons:
            return None  # nobody to leave out: the engine's shortcuts stay open
        return known

    def _log_consent(self, version: int) -> None:
        """Log that the consent register changed (counts only) before a query uses it."""
        assert self._consent is not None
        with self._filters_lock:
            if version == self._consent_logged:
                return
            entry = consent_entry(self.name, version, self._consent.counts())
            self._state.append([entry], seen={("consent", "version"): str(version)})
            self._consent_logged = version

    # ---- previews and budgets -------------------------------------------------------------------

    def budget_line(self, agreement: Agreement, analyst: str) -> BudgetLine:
        """``analyst``'s budget under ``agreement`` at this node, from the ledger."""
        return budget_line(agreement, analyst, self._state.spent(agreement.id, analyst))

    def explain(self, caller: Identity, signed: SignedQuery, target: float | None = None) -> NodeExplanation:
        """Preview ``signed`` (signed for preview): every check a query gets, then its cost, the
        analyst's budget and each aggregate's noise; reads no data, spends nothing."""
        draft = Draft(self.name, "explain", str(caller))
        try:
            verified = self._verified(draft, caller, signed, "explain")
            assert isinstance(verified, VerifiedQuery)
            self._fair.count(verified.analyst.name)  # a preview is a call of the analyst's too
            grant, query = self._granted(draft, verified)
            agreement = grant.agreement
            schema = self._schemas[query.dataset]
            line = self.budget_line(agreement, verified.analyst.name)
            epsilon = verified.request.epsilon
            explanation = NodeExplanation(
                node=self.name,
                dataset=query.dataset,
                agreement=agreement.id,
                epsilon=epsilon,
                budget=line,
                fits=epsilon <= line.remaining,
                aggregates=preview_aggregates(query, schema, epsilon, agreement.min_group_size > 0, target),
                groups=len(group_keys(query, schema)),
                min_group_size=agreement.min_group_size,
            )
        except Exception as err:
            self._refused(draft, err)
            raise
        self._decided(draft.decide("previewed"))
        return explanation

    def budget(self, caller: Identity, signed: SignedQuery) -> tuple[BudgetLine, ...]:
        """The signing analyst's budget under every agreement of this node that names them (or
        only the one the request names)."""
        draft = Draft(self.name, "budget", str(caller))
        try:
            verified = self._verified(draft, caller, signed, "budget")
            analyst = verified.analyst.name
            self._fair.count(analyst)  # counted against the analyst's rate like a query
            wanted = verified.payload.agreement
            if wanted:
                self.gate.agreement(wanted, analyst, check_dates=False)
            lines = tuple(
                self.budget_line(a, analyst)
                for a in sorted(self.gate.agreements.values(), key=lambda a: a.id)
                if analyst in a.analysts and (not wanted or a.id == wanted)
            )
        except Exception as err:
            self._refused(draft, err)
            raise
        self._decided(draft.decide("shown"))
        return lines
