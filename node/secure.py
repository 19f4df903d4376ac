"""The node's side of secure aggregation (:mod:`accord.policies.secagg`), free of gRPC.

Round 1, :meth:`SecureAnswers.join`: every check a query gets (caller, signature, agreement,
fields, budget), then the participant set: exactly the dataset's declared ``holders`` (so the
coordinator can neither leave honest holders out nor bring in nodes of its choosing), and the same
set every time this query id is asked (recorded
with a ``joined`` audit entry before the key leaves: a node never takes part in one query id with
two participant sets, which could be differenced to isolate one node's answer; the set that binds,
durably, is the one recorded with the node's share in round 2, checked on every retry). A fresh
X25519 key is made for this attempt and kept in memory only; its public half is signed with the
node certificate's key.

Round 2, :meth:`SecureAnswers.answer`: every check again, then every participant's key share:
one per participant, for this query and participant set, signed by that participant's node
certificate (chained to the federation's CA, not revoked), and this node's own key the one it made
for this attempt. Then the node's share: recorded, charged and logged in one transaction the
first time (:mod:`accord.node.secure_release`), the recorded noisy share on a retry (no fresh
noise, no second charge). Only the masked share leaves, signed. A second round 2 of the same
attempt with other keys is refused (``SECURE_KEYS_CHANGED``).

A node that restarts forgets its keys: the coordinator's round 2 is refused
(``SECURE_SESSION_UNKNOWN``) and the query fails cleanly; the analyst retries with the same id,
which runs both rounds again over the same recorded share.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding

from accord.errors import InternalError, PermissionDenied
from accord.node.decisions import Draft, answer_record, same_query
from accord.node.secure_release import build_share, check_range, noise_summary
from accord.node.state import Answer
from accord.node.timing import AnswerPace
from accord.policies import secagg
from accord.policies.audit_entry import decision_entry
from accord.policies.decision import Decision
from accord.policies.gate import Grant
from accord.policies.identity import Identity
from accord.policies.signing import SignedQuery
from accord.policies.verifying import VerifiedQuery, signature_valid
from accord.query.model import Query
from accord.query.schema import DatasetSchema
from accord.query.share import Share, is_share

if TYPE_CHECKING:
    from accord.node.service import NodeService

__all__ = ["NodeIdentity", "SecureAnswers"]

_SESSIONS = 1024


@dataclass(frozen=True)
class NodeIdentity:
    """The node certificate (DER) and its key: what key shares and masked shares are signed with."""

    certificate: bytes
    key: secagg.SigningKey

    @staticmethod
    def from_pem(certificate_pem: bytes, key: secagg.SigningKey) -> NodeIdentity:
        return NodeIdentity(x509.load_pem_x509_certificate(certificate_pem).public_bytes(Encoding.DER), key)


@dataclass
class _Session:
    participants: tuple[str, ...]
    key: X25519PrivateKey
    own: secagg.KeyShare
    answered: bytes = b""  # the transcript round 2 ran under


class SecureAnswers:
    """Secure aggregation at one node (see the module docstring). Thread-safe."""

    def __init__(self, service: NodeService, identity: NodeIdentity | None) -> None:
        self._service = service
        self._identity = identity
        self._sessions: OrderedDict[tuple[str, str], _Session] = OrderedDict()
        self._lock = threading.Lock()

    def _checked(
        self, draft: Draft, caller: Identity, signed: SignedQuery
    ) -> tuple[VerifiedQuery, Grant, Query, DatasetSchema]:
        service = self._service
        verified = service._verified(draft, caller, signed, "query")
        assert isinstance(verified, VerifiedQuery)
        grant, query = service._granted(draft, verified)
        schema = service._schemas[query.dataset]
        if schema.secure is None:
            raise PermissionDenied(
                f"node {service.name!r} does not answer dataset {query.dataset!r} by secure aggregation; "
                "ask it as a plain query (the coordinator does when not every holder supports it)",
                "SECURE_AGGREGATION_OFF",
                {"dataset": query.dataset},
            )
        if self._identity is None:
            raise InternalError("secure aggregation needs the node's certificate and key")
        draft.aggregation = "secure"
        return verified, grant, query, schema

    def _participants(self, names: Sequence[str], schema: DatasetSchema) -> tuple[str, ...]:
        """``names`` if they are exactly the dataset's holders: the coordinator cannot leave honest
        holders out, nor bring in nodes that hold nothing (whose masks it could remove with them)."""
        assert schema.secure is not None
        participants = secagg.check_participants(names)
        holders = schema.secure.holders
        if participants != holders:
            raise PermissionDenied(
                f"the participants named ({', '.join(participants)[:300]}) are not dataset {schema.name!r}'s "
                f"holders ({', '.join(holders)}); secure aggregation runs with every holder, exactly",
                "PARTICIPANTS_NOT_HOLDERS",
                {"dataset": schema.name},
            )
        return participants

    def join(self, caller: Identity, signed: SignedQuery, names: Sequence[str]) -> secagg.KeyShare:
        """Round 1: this node's signed key share for ``signed`` among ``names``."""
        service = self._service
        draft = Draft(service.name, "query", str(caller))
        try:
            verified, grant, query, schema = self._checked(draft, caller, signed)
            assert self._identity is not None and schema.secure is not None
            service._fair.count(verified.analyst.name)  # a join is a call of the analyst's too
            participants = self._participants(names, schema)
            draft.participants = ",".join(participants)
            analyst, query_id = verified.analyst.name, verified.request.query_id
            agreement = grant.agreement
            minimum = agreement.min_group_size
            check_range(query, schema, verified.request.epsilon, len(participants), minimum > 0)
            stored = service._state.find(analyst, query_id)
            if stored is None:
                service._charge(agreement, analyst, verified.request.epsilon)
            else:
                _check_same(stored, verified)
                _recorded_for(stored, participants, query_id)
            key = secagg.new_key()
            own = secagg.sign_key(
                self._identity.key,
                secagg.KeyShare(
                    service.name,
                    query_id,
                    signed.payload_digest(),
                    participants,
                    secagg.public_bytes(key),
                    self._identity.certificate,
                ),
            )
            joined = draft.participants
            decision = draft.decide("joined", key_digest=own.key_digest())
            recorded = service._state.take_part(analyst, query_id, joined, [decision_entry(decision)])
            if recorded != joined:
                raise PermissionDenied(
                    f"query {query_id!r} was already run with participants {recorded}; a node takes part in "
                    "one query id with one participant set only (two could be differenced): retry with the "
                    "same nodes, or ask a new query with a fresh id",
                    "PARTICIPANTS_CHANGED",
                    {"query_id": query_id},
                )
            with self._lock:
                self._sessions[(analyst, query_id)] = _Session(participants, key, own)
                self._sessions.move_to_end((analyst, query_id))
                while len(self._sessions) > _SESSIONS:
                    self._sessions.popitem(last=False)
        except Exception as err:
            service._refused(draft, err)
            raise
        service._told(decision)  # logged with the participant set, above
        return own

    def answer(
        self, caller: Identity, signed: SignedQuery, keys: Sequence[secagg.KeyShare]
    ) -> secagg.SignedShare:
        """Round 2: this node's masked share, signed."""
        service = self._service
        pace = AnswerPace(service.name)
        draft = Draft(service.name, "query", str(caller))
        try:
            verified, grant, query, schema = self._checked(draft, caller, signed)
            assert self._identity is not None
            analyst, query_id = verified.analyst.name, verified.request.query_id
            with self._lock:
                session = self._sessions.get((analyst, query_id))
            if session is None:
                raise PermissionDenied(
                    f"node {service.name!r} holds no key for query {query_id!r} (it restarted, or never "
                    "joined): retry the query with the same id",
                    "SECURE_SESSION_UNKNOWN",
                    {"query_id": query_id},
                )
            draft.participants = ",".join(session.participants)
            shares = self._check_keys(keys, session, signed, query_id)
            script = secagg.transcript(shares)
            with self._lock:
                if session.answered and session.answered != script:
                    raise PermissionDenied(
                        f"query {query_id!r} was already answered with other participants' keys; retry the "
                        "query with the same id",
                        "SECURE_KEYS_CHANGED",
                        {"query_id": query_id},
                    )
                session.answered = script
            with service._fair.admit(analyst):
                share, decision = self._share(draft, verified, signed, grant, query, schema, session, pace)
            masked = secagg.mask(share.vector, session.key, service.name, shares, query_id, script)
            body = replace(share, vector=masked, masked=True, transcript=script.hex()).encode()
            reply = secagg.sign_share(self._identity.key, self._identity.certificate, body)
            if decision is None:
                service._decided(
                    draft.decide(
                        "answered-again",
                        release_digest=hashlib.sha256(share.encode()).hexdigest(),  # the recorded share's
                        key_digest=session.own.key_digest(),
                        noise=noise_summary(share),
                    )
                )
            else:
                service._told(decision)
        except BaseException as err:
            if isinstance(err, Exception):
                try:
                    service._refused(draft, err)
                finally:
                    pace.wait()
            raise
        pace.wait()
        return reply

    def _check_keys(
        self, keys: Sequence[secagg.KeyShare], session: _Session, signed: SignedQuery, query_id: str
    ) -> list[secagg.KeyShare]:
        by_node: dict[str, secagg.KeyShare] = {}
        for share in keys:
            if share.node in by_node:
                raise _bad_keys(f"two key shares claim to be {share.node[:63]!r}")
            by_node[share.node] = share
        if tuple(sorted(by_node)) != session.participants:
            raise _bad_keys(
                f"the key shares are from {', '.join(sorted(by_node))[:300]}, not from the participants "
                f"{', '.join(session.participants)} this node joined with"
            )
        digest = signed.payload_digest()
        verifier = self._service._verifier
        for name, share in by_node.items():
            if share.query_id != query_id or share.payload_digest != digest:
                raise _bad_keys(f"the key share of {name} is for another query")
            if share.participants != session.participants:
                raise _bad_keys(f"the key share of {name} names other participants")
            certificate = verifier.node_certificate(share.certificate, name)
            if not signature_valid(certificate, share.signature, share.message()):
                raise _bad_keys(f"the key share of {name} is not signed by {name}")
        if by_node[self._service.name].public_key != session.own.public_key:
            raise PermissionDenied(
                f"this node's key for query {query_id!r} is not the one it made for this attempt; retry the "
                "query with the same id",
                "SECURE_SESSION_UNKNOWN",
                {"query_id": query_id},
            )
        return [by_node[n] for n in session.participants]

    def _share(
        self,
        draft: Draft,
        verified: VerifiedQuery,
        signed: SignedQuery,
        grant: Grant,
        query: Query,
        schema: DatasetSchema,
        session: _Session,
        pace: AnswerPace,
    ) -> tuple[Share, Decision | None]:
        """The recorded noisy share (made, charged and logged now, or recorded before)."""
        service = self._service
        agreement = grant.agreement
        analyst, query_id = verified.analyst.name, verified.request.query_id
        digest = verified.payload.request_digest()
        epsilon = verified.request.epsilon
        pace.start_budget(service.budgets.budget(query))
        with service._id_locks[hash((analyst, query_id)) % len(service._id_locks)]:
            stored = service._state.find(analyst, query_id)
            if stored is not None:
                _check_same(stored, verified)
                return _recorded_for(stored, session.participants, query_id), None
            charge = service._charge(agreement, analyst, epsilon)
            minimum = agreement.min_group_size
            exact = service._backend.execute(query, schema, service._persons(agreement), support=minimum > 0)
            share = build_share(
                query,
                schema,
                exact,
                epsilon,
                query_id,
                service.name,
                session.participants,
                min_group_size=minimum,
                agreement=agreement.id,
                request=digest.hex(),
            )
            body = share.encode()
            answer = answer_record(verified, signed, share.dataset, body, agreement.id)
            decision = draft.decide(
                "answered",
                epsilon=answer.epsilon,
                release_digest=hashlib.sha256(body).hexdigest(),
                key_digest=session.own.key_digest(),
                noise=noise_summary(share),
            )
            pace.check()
            recorded = service._state.record(answer, charge, [decision_entry(decision)])
            _check_same(recorded, verified)
        if recorded is not answer:
            return _recorded_for(recorded, session.participants, query_id), None
        return share, decision


def _recorded_for(stored: Answer, participants: tuple[str, ...], query_id: str) -> Share:
    """The share recorded for the query, if it was recorded for ``participants`` (the durable lock:
    a node never sends a share of one query id masked for two participant sets)."""
    share = Share.decode(stored.release)
    if share.masked:
        raise InternalError("the recorded share is masked")
    if share.participants != participants:
        raise PermissionDenied(
            f"query {query_id!r} was answered with participants {','.join(share.participants)}; a node "
            "takes part in one query id with one participant set only: retry with the same nodes, or ask "
            "a new query with a fresh id",
            "PARTICIPANTS_CHANGED",
            {"query_id": query_id},
        )
    return share


def _check_same(stored: Answer, verified: VerifiedQuery) -> None:
    same_query(stored, verified.payload.request_digest(), verified)
    if not is_share(stored.release):
        raise PermissionDenied(
            f"query id {verified.request.query_id!r} was answered before without secure aggregation; use a "
            "fresh id",
            "QUERY_ID_REUSED",
            {"analyst": verified.analyst.name, "query_id": verified.request.query_id},
        )


def _bad_keys(message: str) -> PermissionDenied:
    return PermissionDenied(
        f"secure aggregation refused: {message}; the coordinator must pass every participant's key share "
        "unchanged (retry the query with the same id)",
        "SECURE_KEYS_INVALID",
    )
