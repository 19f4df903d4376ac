"""The coordinator's gRPC edge: identity from TLS, pb2 in and out, errors as rich status."""

from __future__ import annotations

import threading
import time

import grpc

from accord.coordinator.service import CoordinatorService
from accord.errors import ResourceLimit
from accord.protos import convert, convert_previews
from accord.protos.rpcstatus import rpc_boundary
from accord.protos.v1 import coordinator_pb2, coordinator_pb2_grpc
from accord.rpc.fairness import BUSY_RETRY_SECONDS
from accord.rpc.identity import peer_identity
from accord.rpc.timing import COORDINATOR_SECONDS, SLOWEST_NODE_SECONDS, format_seconds

__all__ = [
    "CoordinatorServicer",
]


class CoordinatorServicer(coordinator_pb2_grpc.CoordinatorServiceServicer):
    """Thin: authenticate, convert, delegate to :class:`CoordinatorService`, convert back.

    A successful ``Submit`` carries timings as trailing metadata (see :mod:`accord.rpc.timing`) only
    when the operator opts in: the coordinator's own handler time with
    ``report_coordinator_seconds``, the slowest node's reported handler time with
    ``report_node_timings``. Both are disclosures released without noise (the coordinator's time is
    about the slowest node's plus a few milliseconds, and a node's time depends on its data unless
    it pads its answers), so analysts get neither by default; benchmarks turn them on.
    """

    def __init__(
        self,
        service: CoordinatorService,
        max_in_flight: int = 32,
        report_node_timings: bool = False,
        report_coordinator_seconds: bool = False,
    ) -> None:
        self._report_node_timings = report_node_timings
        self._report_coordinator_seconds = report_coordinator_seconds
        self._service = service
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._max_in_flight = max_in_flight

    @rpc_boundary
    def Submit(
        self, request: coordinator_pb2.SubmitRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.FederatedRelease:
        started = time.perf_counter()
        caller = peer_identity(context)
        signed = convert.signed_query_from_pb(request.query)
        with self._service.admitted(caller):  # the analyst's own share first, then the server's
            if not self._slots.acquire(blocking=False):
                raise ResourceLimit(
                    f"the coordinator is already running {self._max_in_flight} queries; retry shortly",
                    retry_after_seconds=BUSY_RETRY_SECONDS,
                )
            try:
                release, slowest = self._service.submit_timed(caller, signed, request.require_all)
            finally:
                self._slots.release()
        reply = convert.federated_to_pb(release)
        trailing = []
        if self._report_coordinator_seconds:
            trailing.append((COORDINATOR_SECONDS, format_seconds(time.perf_counter() - started)))
        if slowest is not None and self._report_node_timings:
            trailing.append((SLOWEST_NODE_SECONDS, format_seconds(slowest)))
        if trailing:
            context.set_trailing_metadata(tuple(trailing))
        return reply

    @rpc_boundary
    def ListNodes(
        self, request: coordinator_pb2.ListNodesRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.ListNodesResponse:
        nodes = []
        with self._service.admitted(peer_identity(context)):
            for name, client in sorted(self._service.clients.items()):
                schemas = client.catalog()
                nodes.append(
                    coordinator_pb2.NodeInfo(
                        name=name,
                        reachable=not client.last_error and schemas is not None,
                        error=client.last_error,
                        datasets=[s.name for s in schemas or ()],
                    )
                )
        return coordinator_pb2.ListNodesResponse(nodes=nodes)

    @rpc_boundary
    def GetCatalog(
        self, request: coordinator_pb2.FederatedCatalogRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.FederatedCatalogResponse:
        with self._service.admitted(peer_identity(context)):
            if request.agreement:
                datasets, unreachable = self._service.catalog_under(request.agreement)
            else:
                datasets, unreachable = self._service.federated_catalog()
        return coordinator_pb2.FederatedCatalogResponse(
            datasets=[
                coordinator_pb2.FederatedDataset(schema=convert.schema_to_pb(schema), nodes=list(holders))
                for schema, holders in datasets.values()
            ],
            unreachable=convert.missing_to_pb(unreachable),
        )

    @rpc_boundary
    def Explain(
        self, request: coordinator_pb2.FederatedExplainRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.FederatedExplanation:
        caller = peer_identity(context)
        signed = convert.signed_query_from_pb(request.query)
        target = request.target_half_width if request.target_half_width > 0 else None
        with self._service.admitted(caller):
            explanation = self._service.explain(caller, signed, target)
        return convert_previews.federated_explanation_to_pb(explanation)

    @rpc_boundary
    def GetBudget(
        self, request: coordinator_pb2.FederatedBudgetRequest, context: grpc.ServicerContext
    ) -> coordinator_pb2.FederatedBudget:
        caller = peer_identity(context)
        with self._service.admitted(caller):
            lines, unreachable = self._service.budget(caller, convert.signed_query_from_pb(request.request))
        return coordinator_pb2.FederatedBudget(
            nodes=[convert_previews.node_budget_to_pb(n, lines[n]) for n in sorted(lines)],
            unreachable=convert.missing_to_pb(unreachable),
        )
