"""Combine secure-aggregation shares: check every signed masked share, sum them, decode the sum.

Used twice: by the coordinator, and again by the analyst's client over the same signed shares, so
that a coordinator that drops, alters, replays or invents a share, or reports another sum than
the shares give, is caught by the analyst (:func:`combine_shares` raises; nothing is returned).

What is checked, for the participants ``P`` of the query:

* every share is signed by the node certificate of the node it names (the federation's CA, role
  ``node``, not revoked), is masked, is for this query id and this very request (the digest of
  what the analyst signed: SQL, epsilon, agreement, analyst, query id), and names the participants
  ``P``;
* there is exactly one share per participant;
* all were masked under one key-exchange transcript (the coordinator, which handed out the keys,
  also checks it is the transcript of those keys);
* they agree on every public member (columns, groups, measures and their noise, epsilon, delta,
  agreement, suppression threshold).

The masks cancel only in the sum of all of ``P``'s shares, so the sum (mod 2**64, read as signed
64-bit) is the sum of the nodes' noisy fixed-point values. Each entry's noise is the sum of
``n = |P|`` independent discrete Gaussians of the shares' scale ``sigma``; its 95% interval comes
from that distribution (:func:`accord.query.gaussian_sum.half_width`), and ``noise_scale`` is the
noise's standard deviation ``sigma sqrt(n)`` (in the value's units). Means are the combined sum
over the combined count (:func:`accord.query.release.ratio_estimate`, parts at 97.5%, clamped to
the column's public bounds, which the shares carry); small-cell
suppression judges the combined noisy ``COUNT(*)``.
"""

from __future__ import annotations

import hmac
import math
from collections.abc import Sequence

from accord.errors import IntegrityError, InternalError, PermissionDenied
from accord.policies.secagg import SignedShare, sum_masked
from accord.policies.verifying import QueryVerifier, signature_valid
from accord.query import gaussian_sum
from accord.query.model import AggregateFunction, QueryRequest
from accord.query.release import (
    ALPHA,
    RATIO_PART_ALPHA,
    Cell,
    Estimate,
    FederatedRelease,
    Mechanism,
    ReleaseRow,
    ratio_estimate,
    suppressed_row,
)
from accord.query.share import Share

__all__ = ["check_answer", "combine_shares", "open_shares"]

SecureCombineError = IntegrityError


def open_shares(
    signed: Sequence[SignedShare],
    verifier: QueryVerifier,
    query_id: str,
    participants: Sequence[str],
    request: str | None = None,
) -> list[Share]:
    """The shares of ``signed``, each checked as the module docstring says, in participant order;
    with ``request`` (the hex SHA-256 of the analyst's request), each must answer that request."""
    expected = tuple(participants)
    if len(expected) < 2 or len(signed) < 2:
        raise IntegrityError("a secure-aggregated answer needs the shares of at least two participants")
    by_node: dict[str, Share] = {}
    for item in signed:
        try:
            share = Share.decode(item.body)
        except InternalError as err:
            raise IntegrityError(f"a secure-aggregation share is unreadable: {err.message}") from None
        if share.node in by_node:
            raise SecureCombineError(f"two shares claim to come from node {share.node[:63]!r}")
        certificate = verifier.node_certificate(item.certificate, share.node)
        if not signature_valid(certificate, item.signature, item.message()):
            raise SecureCombineError(f"the share of node {share.node!r} is not signed by it")
        if not share.masked or share.query_id != query_id or share.participants != expected:
            raise SecureCombineError(f"the share of node {share.node!r} is not a masked share of this query")
        if request is not None and not hmac.compare_digest(share.request, request):
            raise SecureCombineError(f"the share of node {share.node!r} answers another request than this")
        by_node[share.node] = share
    if tuple(sorted(by_node)) != expected:
        missing = ", ".join(sorted(set(expected) - set(by_node))) or "none"
        extra = ", ".join(sorted(set(by_node) - set(expected))) or "none"
        raise SecureCombineError(
            f"secure aggregation needs the share of every participant; missing: {missing}, "
            f"unexpected: {extra}"
        )
    shares = [by_node[n] for n in expected]
    first = shares[0]
    for share in shares[1:]:
        if not hmac.compare_digest(share.transcript, first.transcript):
            raise SecureCombineError(
                f"nodes {first.node} and {share.node} masked their shares under different keys"
            )
        if share.public() != first.public():
            raise SecureCombineError(f"nodes {first.node} and {share.node} answered different queries")
    return shares


def _estimate(total: int, share: Share, measure: int, n: int, alpha: float = ALPHA) -> Estimate:
    m = share.measures[measure]
    unit = 2.0**-m.scale_bits
    value = total * unit
    h = gaussian_sum.half_width(m.sigma, n, alpha) * unit
    return Estimate(value, m.sigma * math.sqrt(n) * unit, value - h, value + h, Mechanism.DISCRETE_GAUSSIAN)


def combine_shares(
    signed: Sequence[SignedShare],
    verifier: QueryVerifier,
    query_id: str,
    participants: Sequence[str],
    transcript: bytes | None = None,
    request: str | None = None,
) -> FederatedRelease:
    """The combined release of ``signed`` (see the module docstring); with ``transcript`` (the
    coordinator's, of the keys it handed out) the shares must have been masked under it, and with
    ``request`` they must answer it (:func:`open_shares`)."""
    shares = open_shares(signed, verifier, query_id, participants, request)
    first, n = shares[0], len(shares)
    if transcript is not None and not hmac.compare_digest(first.transcript, transcript.hex()):
        raise SecureCombineError("the shares were masked under other keys than the ones handed out")
    totals = sum_masked([s.vector for s in shares])
    groups = len(first.groups)

    def total(measure: int, i: int) -> int:
        return totals[measure * groups + i]

    aggregates = [c for c in first.columns if not c.is_group]
    if len(aggregates) != len(first.cells):
        raise SecureCombineError("a share does not say which measures each aggregate reads")
    rows: list[ReleaseRow] = []
    for i, key in enumerate(first.groups):
        support = None
        if first.support is not None:
            support = _estimate(total(first.support, i), first, first.support, n)
            if support.value < first.suppress_below:
                rows.append(suppressed_row(tuple(key)))
                continue
        cells: list[Cell] = []
        for column, parts in zip(aggregates, first.cells, strict=True):
            if column.function is AggregateFunction.AVG:
                s_idx, c_idx = parts
                part_sum = _estimate(total(s_idx, i), first, s_idx, n)
                part_count = _estimate(total(c_idx, i), first, c_idx, n)
                s_in = _estimate(total(s_idx, i), first, s_idx, n, RATIO_PART_ALPHA)
                c_in = _estimate(total(c_idx, i), first, c_idx, n, RATIO_PART_ALPHA)
                mean = ratio_estimate(
                    part_sum.value,
                    part_count.value,
                    (s_in.ci_low, s_in.ci_high),
                    (c_in.ci_low, c_in.ci_high),
                    first.bounds_of(column.column or ""),
                )
                cells.append(Cell(mean, sum=part_sum, count=part_count))
            else:
                cells.append(Cell(_estimate(total(parts[0], i), first, parts[0], n)))
        rows.append(ReleaseRow(tuple(key), tuple(cells), support=support))
    return FederatedRelease(
        query_id=query_id,
        dataset=first.dataset,
        columns=first.columns,
        rows=tuple(rows),
        epsilon=first.epsilon,
        contributing_nodes=tuple(participants),
        agreement=first.agreement,
        min_group_size=first.min_group_size,
        suppress_below=first.suppress_below,
        aggregation="secure",
        delta=first.delta,
        shares=tuple((s.body, s.certificate, s.signature) for s in signed),
    )


def check_answer(
    release: FederatedRelease, request: QueryRequest, digest: str, verifier: QueryVerifier
) -> FederatedRelease:
    """The analyst's check of a secure-aggregated ``release`` for ``request`` (whose signed request
    digest is ``digest``): the combination of the nodes' signed shares done again. A coordinator
    that dropped, altered, replayed or invented a share, answered another query, or reports another
    sum, gives an :class:`~accord.errors.IntegrityError`; otherwise the release, as combined here."""
    asked = (request.query_id, request.epsilon, request.agreement)
    if (release.query_id, release.epsilon, release.agreement) != asked:
        raise IntegrityError(
            f"the coordinator answered query {release.query_id[:64]!r} (epsilon {release.epsilon}, "
            f"agreement {release.agreement[:64]!r}), not the query asked; tell the coordinator's operator"
        )
    try:
        own = combine_shares(
            [SignedShare(*s) for s in release.shares],
            verifier,
            request.query_id,
            release.contributing_nodes,
            request=digest,
        )
    except (IntegrityError, PermissionDenied) as err:
        raise IntegrityError(
            f"the coordinator's answer to query {request.query_id} fails the check of the nodes' "
            f"signed shares: {err.message}; tell the coordinator's operator"
        ) from None
    if own != release:
        raise IntegrityError(
            f"the coordinator's answer to query {request.query_id} differs from the sum of the nodes' "
            "signed shares; tell the coordinator's operator"
        )
    return own
