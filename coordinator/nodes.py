"""Talking to the nodes: one mTLS channel per node, catalog caching and parallel fan-out.

Every call carries a deadline. A node that is down, slow or refuses is reported by name with a
reason; it never blocks the others.

The fan-out runs each node's call as a blocking call on a long-lived thread pool
(:class:`FanOutPool`). gRPC's ``.future()`` would start a fresh polling thread per channel for
every query (the thread exits whenever the channel has no call left): a quarter of the
coordinator's CPU per node and query went there. The pool's threads are started once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from accord.coordinator.config import NodeEndpoint
from accord.errors import AccordError, DeadlineExceeded, Failure, InternalError, Unavailable
from accord.policies.identity import Identity
from accord.policies.revocation import CrlFile
from accord.policies.secagg import KeyShare, SignedShare
from accord.policies.signing import SignedQuery
from accord.protos import convert, convert_previews, convert_secure
from accord.protos.rpcstatus import error_from_rpc
from accord.protos.v1 import node_pb2, node_pb2_grpc
from accord.query.preview import BudgetLine, NodeExplanation
from accord.query.release import Release
from accord.query.schema import DatasetSchema
from accord.rpc.probe import server_certificate
from accord.rpc.timing import NODE_SECONDS, seconds_from_metadata
from accord.rpc.tls_errors import explain_connection_failure
from accord.rpc.transport import TlsFiles, secure_channel

__all__ = [
    "CATALOG_DEADLINE_SECONDS",
    "CATALOG_TTL_SECONDS",
    "RECONNECT_BACKOFF_MS",
    "FanOutPool",
    "FanOutResult",
    "NodeClient",
    "ask_each",
    "describe",
    "fan_out",
    "holders",
]


log = logging.getLogger(__name__)
T = TypeVar("T")

CATALOG_TTL_SECONDS = 30.0
PROBE_TIMEOUT_SECONDS = 2.0
PROBE_RETRY_SECONDS = 1.0
"""How soon a node whose certificate could not be looked at is looked at again."""
"""How long the coordinator waits for a node's TLS handshake when it looks at its certificate."""
CATALOG_DEADLINE_SECONDS = 5.0
RECONNECT_BACKOFF_MS = (250, 1000)
"""First and longest wait (ms) between attempts to reconnect to a node that went away. gRPC's
defaults grow to two minutes: a node restarted after a minute down would stay out of answers for
as long again."""


def describe(err: Failure) -> str:
    """A short reason for an answer's `missing` list."""
    if isinstance(err, DeadlineExceeded):
        return "deadline exceeded"
    if isinstance(err, Unavailable):
        return "unavailable"
    return err.message


class NodeClient:
    """A client for one node; thread-safe. The channel verifies the node's certificate name."""

    def __init__(self, endpoint: NodeEndpoint, tls: TlsFiles, crl: CrlFile | None = None) -> None:
        self.endpoint = endpoint
        self.name = endpoint.name
        self._crl = crl
        self._probe_lock = threading.Lock()
        self._probed: tuple[int, float] | None = None  # (CRL number, monotonic time) of the last look
        self._probe_failed_at: float | None = None
        self._revoked = ""
        first, longest = RECONNECT_BACKOFF_MS
        self._tls = tls
        self._channel = secure_channel(
            endpoint.address,
            tls,
            expected=Identity("node", endpoint.name),
            options=[
                ("grpc.initial_reconnect_backoff_ms", first),
                ("grpc.max_reconnect_backoff_ms", longest),
            ],
        )
        self._stub = node_pb2_grpc.NodeServiceStub(self._channel)
        self._lock = threading.Lock()
        self._catalog: tuple[DatasetSchema, ...] | None = None
        self._catalog_at = 0.0
        self._refreshing = False
        self.last_error: str = ""

    def close(self) -> None:
        self._channel.close()

    def catalog(
        self, max_age: float = CATALOG_TTL_SECONDS, wait: bool = True
    ) -> tuple[DatasetSchema, ...] | None:
        """The node's datasets (cached for ``max_age`` s); the last known ones if it is down now,
        or None if it has never answered.

        With ``wait=False`` (the query path) a stale catalog is returned at once and refreshed in
        the background: a node that hangs must not hold a query up for the catalog deadline on top
        of the query's own. Only a node never heard from is asked while the caller waits.
        """
        with self._lock:
            known = self._catalog
            if known is not None and time.monotonic() - self._catalog_at < max_age:
                return known
            if known is not None and not wait:
                if not self._refreshing:
                    self._refreshing = True
                    threading.Thread(target=self._refresh, daemon=True, name=f"catalog-{self.name}").start()
                return known
        return self._fetch()

    def _refresh(self) -> None:
        try:
            self._fetch()
        except (AccordError, InternalError) as err:  # a malformed catalog: keep the last known one
            self.last_error = err.message
            log.warning("node %s: unusable catalog: %s", self.name, err.message)
        except ValueError:  # the channel was closed: the coordinator is shutting down
            log.debug("node %s: catalog refresh after close", self.name)
        finally:
            with self._lock:
                self._refreshing = False

    def _fetch(self) -> tuple[DatasetSchema, ...] | None:
        try:
            self.refuse_if_revoked(refresh=True)
        except Unavailable as err:
            self.last_error = err.message
            with self._lock:
                self._catalog_at = 0.0
                return self._catalog
        try:
            reply = self._stub.GetCatalog(node_pb2.GetCatalogRequest(), timeout=CATALOG_DEADLINE_SECONDS)
        except grpc.RpcError as err:
            error = error_from_rpc(err, peer=f"node {self.name}")
            self.last_error = describe(error)
            explained = explain_connection_failure(
                error.message, self.endpoint.address, Identity("node", self.name), self._tls
            )
            log.warning("node %s: catalog unavailable: %s", self.name, explained or self.last_error)
            with self._lock:
                return self._catalog
        _, schemas = convert.catalog_from_pb(reply)
        with self._lock:
            self._catalog, self._catalog_at = schemas, time.monotonic()
            self.last_error = ""
            return schemas

    def refuse_if_revoked(self, refresh: bool = False) -> None:
        """Raise :class:`Unavailable` unless this node's certificate has been checked against the
        federation's CRL as it is now and is not on it.

        The node's certificate is looked at (:func:`accord.rpc.probe.server_certificate`) before
        its first use and whenever the CRL changes (on the query path: a revocation counts from
        the next query), and with ``refresh`` when it is older than :data:`CATALOG_TTL_SECONDS`
        (the background catalog refresh). A look that fails leaves the node unused (fail
        closed: a revoked node must not escape by refusing new handshakes while an old
        connection stays open), and is tried again after :data:`PROBE_RETRY_SECONDS`. Without a
        CRL in the config this does nothing."""
        if self._crl is None:
            return
        revocations = self._crl.current()
        with self._probe_lock:
            now = time.monotonic()
            last = self._probed
            due = last is None or last[0] != revocations.number
            stale = refresh and last is not None and now - last[1] > CATALOG_TTL_SECONDS
            retry = self._probe_failed_at is None or now - self._probe_failed_at >= PROBE_RETRY_SECONDS
            if (due or stale) and retry:
                try:
                    cert = server_certificate(
                        self.endpoint.address, self._tls, Identity("node", self.name), PROBE_TIMEOUT_SECONDS
                    )
                except Unavailable as err:
                    self._probe_failed_at = now
                    self._revoked = (
                        f"node {self.name}'s certificate could not be checked against the revocation "
                        f"list ({err.message}); it is not used until it can be"
                    )
                else:
                    self._probe_failed_at = None
                    self._probed = (revocations.number, now)
                    self._revoked = (
                        f"node {self.name} presents a revoked certificate (serial {cert.serial_number:x}); "
                        "its operator must install the certificate issued to replace it"
                        if revocations.revokes(cert)
                        else ""
                    )
                if self._revoked:
                    log.error("%s", self._revoked)
            reason = self._revoked
        if reason:
            raise Unavailable(reason)

    def mark_unreachable(self, reason: str) -> None:
        """A query just failed to reach this node: report it as down until it answers again, and
        refresh its catalog on the next use (the last known one still says what it holds)."""
        with self._lock:
            self.last_error = reason
            self._catalog_at = 0.0

    def catalog_under(self, agreement: str, timeout: float) -> tuple[DatasetSchema, ...]:
        """What ``agreement`` grants at this node (asked now, not cached). Raises ``grpc.RpcError``."""
        reply = self._stub.GetCatalog(node_pb2.GetCatalogRequest(agreement=agreement), timeout=timeout)
        return convert.catalog_from_pb(reply)[1]

    def explain(self, signed: SignedQuery, target: float | None, deadline_at: float) -> NodeExplanation:
        """This node's preview of ``signed`` (blocking). Raises ``grpc.RpcError``."""
        self.refuse_if_revoked()
        request = node_pb2.ExplainRequest(
            query=convert.signed_query_to_pb(signed), target_half_width=target or 0.0
        )
        reply = self._stub.Explain(request, timeout=_left(deadline_at, self.name))
        explanation = convert_previews.explanation_from_pb(reply)
        if explanation.node != self.name:
            raise InternalError(f"node {self.name} previewed as node {explanation.node!r}")
        return explanation

    def budget(self, signed: SignedQuery, deadline_at: float) -> tuple[BudgetLine, ...]:
        """The signing analyst's budget lines at this node (blocking). Raises ``grpc.RpcError``."""
        self.refuse_if_revoked()
        request = node_pb2.BudgetRequest(request=convert.signed_query_to_pb(signed))
        node, lines = convert_previews.node_budget_from_pb(
            self._stub.GetBudget(request, timeout=_left(deadline_at, self.name))
        )
        if node != self.name:
            raise InternalError(f"node {self.name} answered for node {node!r}")
        return lines

    def answer(self, request: node_pb2.AnswerRequest, deadline_at: float) -> tuple[Release, float | None]:
        """Ask this node (blocking) until the monotonic time ``deadline_at``: its release and the
        handler time it reported (see :mod:`accord.rpc.timing`). Raises ``grpc.RpcError`` for a failed
        call and :class:`AccordError` for a malformed reply."""
        self.refuse_if_revoked()
        timeout = deadline_at - time.monotonic()
        if timeout <= 0:  # the call waited for a pool thread past its deadline
            raise DeadlineExceeded(f"node {self.name}: deadline exceeded before the call could start")
        reply, call = self._stub.Answer.with_call(request, timeout=timeout)
        return convert.release_from_pb(reply), seconds_from_metadata(call.trailing_metadata(), NODE_SECONDS)

    def secure_join(self, signed: SignedQuery, participants: tuple[str, ...], deadline_at: float) -> KeyShare:
        """Secure aggregation round 1 at this node: its signed key share. Raises ``grpc.RpcError``."""
        self.refuse_if_revoked()
        request = node_pb2.SecureJoinRequest(
            query=convert.signed_query_to_pb(signed), participants=list(participants)
        )
        share = convert_secure.key_share_from_pb(
            self._stub.JoinSecureAggregation(request, timeout=_left(deadline_at, self.name))
        )
        if share.node != self.name:
            raise InternalError(f"node {self.name} sent a key share as node {share.node[:63]!r}")
        return share

    def secure_answer(self, signed: SignedQuery, keys: list[KeyShare], deadline_at: float) -> SignedShare:
        """Secure aggregation round 2 at this node: its signed masked share. Raises ``grpc.RpcError``."""
        self.refuse_if_revoked()
        request = node_pb2.SecureAnswerRequest(
            query=convert.signed_query_to_pb(signed), keys=[convert_secure.key_share_to_pb(k) for k in keys]
        )
        return convert_secure.secure_share_from_pb(
            self._stub.AnswerSecure(request, timeout=_left(deadline_at, self.name))
        )


def _left(deadline_at: float, name: str) -> float:
    timeout = deadline_at - time.monotonic()
    if timeout <= 0:
        raise DeadlineExceeded(f"node {name}: deadline exceeded before the call could start")
    return timeout


def ask_each(
    clients: Iterable[NodeClient], call: Callable[[NodeClient], T], pool: FanOutPool
) -> tuple[dict[str, T], dict[str, Failure]]:
    """``call(client)`` for every client at once (on ``pool``); what each returned, and each
    failure (a refusal, a failed call, a malformed reply) by node name."""
    pending = {c.name: pool.run(call, c) for c in clients}
    results: dict[str, T] = {}
    errors: dict[str, Failure] = {}
    for name, future in pending.items():
        try:
            results[name] = future.result()
        except grpc.RpcError as err:
            errors[name] = error_from_rpc(err, peer=f"node {name}")
        except futures.CancelledError:
            errors[name] = Unavailable(f"node {name}: the coordinator is shutting down")
        except (AccordError, InternalError) as err:
            errors[name] = err
    return results, errors


class FanOutPool:
    """The threads that make the coordinator's calls to its nodes, started once and reused.

    ``size`` bounds the calls in flight at once; a call beyond it waits for a thread, and its
    deadline still counts from the start of its query."""

    def __init__(self, size: int) -> None:
        self._pool = futures.ThreadPoolExecutor(max_workers=max(1, size), thread_name_prefix="accord-fanout")

    def submit(
        self, client: NodeClient, request: node_pb2.AnswerRequest, deadline_at: float
    ) -> futures.Future[tuple[Release, float | None]]:
        return self._pool.submit(client.answer, request, deadline_at)

    def run(self, call: Callable[[NodeClient], T], client: NodeClient) -> futures.Future[T]:
        return self._pool.submit(call, client)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


@dataclass(frozen=True)
class FanOutResult:
    releases: dict[str, Release]
    errors: dict[str, Failure]
    # Each answering node's own handler time, as it reported it (see accord.rpc.timing).
    node_seconds: dict[str, float] = field(default_factory=dict)

    @property
    def slowest_node_seconds(self) -> float | None:
        return max(self.node_seconds.values(), default=None)


def fan_out(
    clients: Iterable[NodeClient], signed: SignedQuery, query_id: str, deadline: float, pool: FanOutPool
) -> FanOutResult:
    """Send the analyst's ``signed`` query (id ``query_id``) to every client at once (on ``pool``)
    and wait for all, within ``deadline`` seconds from now. The envelope's bytes reach every node
    exactly as the analyst's client sent them."""
    deadline_at = time.monotonic() + deadline
    by_name = {c.name: c for c in clients}
    message = node_pb2.AnswerRequest(query=convert.signed_query_to_pb(signed))  # built once, for all
    pending = {name: pool.submit(c, message, deadline_at) for name, c in by_name.items()}
    releases: dict[str, Release] = {}
    errors: dict[str, Failure] = {}
    node_seconds: dict[str, float] = {}
    for name, future in pending.items():
        try:
            release, seconds = future.result()
            if release.node != name or release.query_id != query_id:
                raise InternalError(
                    f"node {name} answered as node {release.node!r} for query {release.query_id!r}"
                )
        except grpc.RpcError as err:
            errors[name] = error_from_rpc(err, peer=f"node {name}")
            if isinstance(errors[name], Unavailable | DeadlineExceeded):
                by_name[name].mark_unreachable(describe(errors[name]))
        except (DeadlineExceeded, Unavailable) as err:  # never started: too late, or a revoked node
            errors[name] = err
            by_name[name].mark_unreachable(
                describe(err) if isinstance(err, DeadlineExceeded) else err.message
            )
        except futures.CancelledError:  # the coordinator is shutting down
            errors[name] = Unavailable(f"node {name}: the coordinator is shutting down")
        except (AccordError, InternalError) as err:
            # A malformed or mismatched reply costs this node's contribution, not the whole answer.
            errors[name] = InternalError(f"node {name} sent a malformed release ({err.message})")
        else:
            releases[name] = release
            if seconds is not None:
                node_seconds[name] = seconds
            continue
        log.warning("node %s did not answer query %s: %s", name, query_id, errors[name].message)
    return FanOutResult(releases, errors, node_seconds)


def holders(
    clients: Mapping[str, NodeClient], dataset: str
) -> tuple[dict[str, DatasetSchema], dict[str, str]]:
    """Which nodes hold ``dataset`` (with their schema), and which could not be asked.

    A node that has never answered a catalog call might hold the dataset, so it is reported as
    missing rather than silently left out.
    """
    found: dict[str, DatasetSchema] = {}
    unknown: dict[str, str] = {}
    for name, client in clients.items():
        schemas = client.catalog(wait=False)
        if schemas is None:
            unknown[name] = f"unreachable ({client.last_error or 'no catalog yet'})"
            continue
        for schema in schemas:
            if schema.name == dataset:
                found[name] = schema
    return found, unknown
