"""The coordinator's side of secure aggregation: when to use it, and its two rounds.

A dataset is answered by secure aggregation when its holders declare it in their catalogs
(``secure_honest_nodes``); they must all declare the same setting, and every one must answer:
there is no partial answer (a missing share leaves the others' masks in the sum). The
coordinator names the participants (every holder, in name order), asks each for its signed key
share (round 1), hands every participant all the key shares (round 2) and sums the signed masked
shares it gets back (:mod:`accord.coordinator.secure_combine`). It never sees a node's value.

If any participant fails or refuses in either round the query fails with the node and the reason,
and the analyst can retry it with the same id: the nodes answer the retry from the share they
recorded (no second charge, no fresh noise), under fresh keys.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import timedelta

from cryptography import x509

from accord.coordinator.nodes import FanOutPool, NodeClient, ask_each, describe
from accord.coordinator.secure_combine import combine_shares
from accord.errors import (
    BudgetExhausted,
    ConfigError,
    Failure,
    InvalidQuery,
    PartialFailure,
    PermissionDenied,
    ResourceLimit,
    Unavailable,
)
from accord.policies.secagg import KeyShare, SignedShare, transcript
from accord.policies.signing import QueryPayload, SignedQuery
from accord.policies.verifying import QueryVerifier
from accord.query.release import FederatedRelease
from accord.query.schema import DatasetSchema, SecureAggregation
from accord.rpc.serving import open_crl
from accord.rpc.transport import TlsFiles

__all__ = ["node_verifier", "run_secure", "secure_setting"]

log = logging.getLogger(__name__)

_USER_ERRORS = (InvalidQuery, PermissionDenied, BudgetExhausted, ResourceLimit)


def node_verifier(tls: TlsFiles) -> QueryVerifier:
    """A verifier of node certificates against the federation's CA of ``tls`` (and its CRL)."""
    try:
        cas = x509.load_pem_x509_certificates(tls.read().ca)
    except ValueError:
        raise ConfigError(f"{tls.ca}: not a PEM certificate; point [tls] ca at the federation CA") from None
    return QueryVerifier(cas, timedelta(minutes=5), timedelta(minutes=1), open_crl(tls))


def secure_setting(holders: Mapping[str, DatasetSchema]) -> SecureAggregation | None:
    """The holders' common secure-aggregation setting; None when none declares it. Holders that
    disagree (some do, some do not, or with other settings) cannot answer together."""
    settings = {name: schema.secure for name, schema in holders.items()}
    distinct = set(settings.values())
    if distinct == {None}:
        return None
    if len(distinct) > 1:
        described = "; ".join(
            f"{n}: {'off' if s is None else f'honest_nodes={s.honest_nodes}, delta={s.delta}'}"
            for n, s in sorted(settings.items())
        )
        raise Unavailable(
            f"the holders of dataset {next(iter(holders.values())).name!r} declare different secure "
            f"aggregation settings ({described}); their operators must set the same [secure_aggregation] "
            "and secure_aggregation = true at every holder"
        )
    setting = distinct.pop()
    assert setting is not None
    return setting


def _fail(round_name: str, errors: Mapping[str, Failure], query_id: str) -> None:
    user = [e for e in errors.values() if isinstance(e, _USER_ERRORS)]
    if user and len(user) == len(errors) and len({type(e) for e in user}) == 1:
        raise user[0]
    listed = "; ".join(f"{n}: {describe(e)}" for n, e in sorted(errors.items()))
    raise PartialFailure(
        f"secure aggregation needs every holder, and {round_name} failed at {listed}; nothing was "
        f"released: retry query {query_id} with the same id",
        {n: describe(e) for n, e in errors.items()},
    )


def run_secure(
    clients: Mapping[str, NodeClient],
    signed: SignedQuery,
    query_id: str,
    deadline_seconds: float,
    pool: FanOutPool,
    verifier: QueryVerifier,
) -> FederatedRelease:
    """Both rounds with every client in ``clients`` (the holders) and the combined release."""
    participants = tuple(sorted(clients))
    deadline_at = time.monotonic() + deadline_seconds
    ordered = [clients[n] for n in participants]
    keys, errors = ask_each(ordered, lambda c: c.secure_join(signed, participants, deadline_at), pool)
    if errors:
        _fail("joining", errors, query_id)
    key_list: list[KeyShare] = [keys[n] for n in participants]
    shares, errors = ask_each(ordered, lambda c: c.secure_answer(signed, key_list, deadline_at), pool)
    if errors:
        _fail("answering", errors, query_id)
    signed_shares: list[SignedShare] = [shares[n] for n in participants]
    request = QueryPayload.decode(signed.payload).request_digest().hex()
    release = combine_shares(signed_shares, verifier, query_id, participants, transcript(key_list), request)
    log.info("query %s: secure aggregation over %d node(s)", query_id, len(participants))
    return release
