"""The node's gRPC edge: identity from the TLS context, pb2 in and out, errors as rich status."""

from __future__ import annotations

import threading
import time

import grpc

from accord.errors import ResourceLimit
from accord.node.service import NodeService
from accord.protos import convert
from accord.protos.rpcstatus import rpc_boundary
from accord.protos.v1 import common_pb2, node_pb2, node_pb2_grpc
from accord.query.release import Release
from accord.rpc.identity import peer_identity
from accord.rpc.timing import NODE_SECONDS, format_seconds


def _serialize(release: Release) -> bytes:
    payload: bytes = convert.release_to_pb(release).SerializeToString(deterministic=True)
    return payload


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """Thin: authenticate, convert, delegate to :class:`NodeService`, convert back.

    ``max_in_flight`` bounds how many queries run at once; more are refused at once with
    RESOURCE_EXHAUSTED (the health service is not counted, so it keeps answering under load).

    A successful ``Answer`` carries the node's own handler time as trailing metadata
    (:data:`accord.rpc.timing.NODE_SECONDS`), so the coordinator can report its overhead honestly.
    """

    def __init__(self, service: NodeService, max_in_flight: int = 8) -> None:
        self._service = service
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._max_in_flight = max_in_flight

    @rpc_boundary
    def GetCatalog(
        self, request: node_pb2.GetCatalogRequest, context: grpc.ServicerContext
    ) -> node_pb2.GetCatalogResponse:
        self._service.admit(peer_identity(context))
        return convert.catalog_to_pb(self._service.name, self._service.schemas)

    @rpc_boundary
    def Answer(self, request: common_pb2.QueryRequest, context: grpc.ServicerContext) -> node_pb2.NodeRelease:
        started = time.perf_counter()
        caller = peer_identity(context)
        self._service.admit(caller)
        query = convert.request_from_pb(request)
        if not self._slots.acquire(blocking=False):
            raise ResourceLimit(
                f"node {self._service.name!r} is already answering {self._max_in_flight} queries; "
                "retry shortly"
            )
        try:
            payload = self._service.answer_once(caller, query, _serialize)
        finally:
            self._slots.release()
        reply = node_pb2.NodeRelease.FromString(payload)
        context.set_trailing_metadata(((NODE_SECONDS, format_seconds(time.perf_counter() - started)),))
        return reply
