"""The node's gRPC edge: identity from the TLS context, pb2 in and out, errors as rich status.

``Answer`` replies with the release bytes the node recorded (:mod:`accord.node.service`), sent as
they are: :func:`register` installs the service with a response serializer that passes bytes
through, so each release is serialized exactly once, and a retry gets the very same bytes.
"""

from __future__ import annotations

import threading
import time

import grpc

from accord.errors import ResourceLimit
from accord.node.service import NodeService
from accord.protos import convert, convert_previews, convert_secure
from accord.protos.rpcstatus import rpc_boundary
from accord.protos.v1 import common_pb2, node_pb2, node_pb2_grpc
from accord.query.release import Release
from accord.rpc.fairness import BUSY_RETRY_SECONDS
from accord.rpc.identity import peer_identity
from accord.rpc.timing import NODE_SECONDS, format_seconds

__all__ = ["SERVICE_NAME", "NodeServicer", "register"]

SERVICE_NAME = node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name


def serialize_release(release: Release) -> bytes:
    """The release's wire bytes (deterministic serialization of ``NodeRelease``)."""
    payload: bytes = convert.release_to_pb(release).SerializeToString(deterministic=True)
    return payload


class NodeServicer(node_pb2_grpc.NodeServiceServicer):
    """Thin: authenticate, convert, delegate to :class:`NodeService`, convert back.

    ``max_in_flight`` bounds how many queries run at once; more are refused at once with
    RESOURCE_EXHAUSTED (the health service is not counted, so it keeps answering under load).

    With ``report_seconds`` (``[timing] report_node_seconds``, off by default) a successful
    ``Answer`` carries the node's own handler time as trailing metadata
    (:data:`accord.rpc.timing.NODE_SECONDS`), so that a benchmark can tell the coordinator's
    overhead from the node's work. It is a disclosure: without padding that time depends on the
    data, and even with it, it says how close to its budget the node ran.
    """

    def __init__(self, service: NodeService, max_in_flight: int = 8, report_seconds: bool = False) -> None:
        self._service = service
        self._report_seconds = report_seconds
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._max_in_flight = max_in_flight

    @rpc_boundary
    def GetCatalog(
        self, request: node_pb2.GetCatalogRequest, context: grpc.ServicerContext
    ) -> node_pb2.GetCatalogResponse:
        caller = peer_identity(context)
        return convert.catalog_to_pb(self._service.name, self._service.catalog(caller, request.agreement))

    @rpc_boundary
    def Explain(
        self, request: node_pb2.ExplainRequest, context: grpc.ServicerContext
    ) -> common_pb2.NodeExplanation:
        caller = peer_identity(context)
        self._service.gate.admit(caller)
        signed = convert.signed_query_from_pb(request.query)
        target = request.target_half_width if request.target_half_width > 0 else None
        return convert_previews.explanation_to_pb(self._service.explain(caller, signed, target))

    @rpc_boundary
    def GetBudget(
        self, request: node_pb2.BudgetRequest, context: grpc.ServicerContext
    ) -> common_pb2.NodeBudget:
        caller = peer_identity(context)
        self._service.gate.admit(caller)
        signed = convert.signed_query_from_pb(request.request)
        return convert_previews.node_budget_to_pb(self._service.name, self._service.budget(caller, signed))

    @rpc_boundary
    def Answer(self, request: node_pb2.AnswerRequest, context: grpc.ServicerContext) -> bytes:
        started = time.perf_counter()
        caller = peer_identity(context)
        self._service.gate.admit(caller)  # before anything is parsed: a stranger learns nothing
        signed = convert.signed_query_from_pb(request.query)
        if not self._slots.acquire(blocking=False):
            busy = f"node {self._service.name!r} is already answering {self._max_in_flight} queries"
            raise ResourceLimit(f"{busy}; retry shortly", retry_after_seconds=BUSY_RETRY_SECONDS)
        try:
            payload = self._service.answer(caller, signed, serialize_release)
        finally:
            self._slots.release()
        if self._report_seconds:
            context.set_trailing_metadata(((NODE_SECONDS, format_seconds(time.perf_counter() - started)),))
        return payload

    @rpc_boundary
    def JoinSecureAggregation(
        self, request: node_pb2.SecureJoinRequest, context: grpc.ServicerContext
    ) -> node_pb2.SecureKeyShare:
        caller = peer_identity(context)
        self._service.gate.admit(caller)
        signed = convert.signed_query_from_pb(request.query)
        share = self._service.secure.join(caller, signed, tuple(request.participants))
        return convert_secure.key_share_to_pb(share)

    @rpc_boundary
    def AnswerSecure(
        self, request: node_pb2.SecureAnswerRequest, context: grpc.ServicerContext
    ) -> common_pb2.SecureShare:
        caller = peer_identity(context)
        self._service.gate.admit(caller)
        signed = convert.signed_query_from_pb(request.query)
        keys = [convert_secure.key_share_from_pb(k) for k in request.keys]
        if not self._slots.acquire(blocking=False):
            busy = f"node {self._service.name!r} is already answering {self._max_in_flight} queries"
            raise ResourceLimit(f"{busy}; retry shortly", retry_after_seconds=BUSY_RETRY_SECONDS)
        try:
            share = self._service.secure.answer(caller, signed, keys)
        finally:
            self._slots.release()
        return convert_secure.secure_share_to_pb(share)


def _as_is(payload: bytes) -> bytes:
    return payload


def register(servicer: NodeServicer, server: grpc.Server) -> None:
    """Serve ``servicer`` on ``server`` as ``accord.v1.NodeService`` (``Answer`` replies with its
    recorded bytes as they are)."""
    handlers = {
        "GetCatalog": grpc.unary_unary_rpc_method_handler(
            servicer.GetCatalog,
            request_deserializer=node_pb2.GetCatalogRequest.FromString,
            response_serializer=node_pb2.GetCatalogResponse.SerializeToString,
        ),
        "Answer": grpc.unary_unary_rpc_method_handler(
            servicer.Answer,
            request_deserializer=node_pb2.AnswerRequest.FromString,
            response_serializer=_as_is,
        ),
        "Explain": grpc.unary_unary_rpc_method_handler(
            servicer.Explain,
            request_deserializer=node_pb2.ExplainRequest.FromString,
            response_serializer=common_pb2.NodeExplanation.SerializeToString,
        ),
        "GetBudget": grpc.unary_unary_rpc_method_handler(
            servicer.GetBudget,
            request_deserializer=node_pb2.BudgetRequest.FromString,
            response_serializer=common_pb2.NodeBudget.SerializeToString,
        ),
        "JoinSecureAggregation": grpc.unary_unary_rpc_method_handler(
            servicer.JoinSecureAggregation,
            request_deserializer=node_pb2.SecureJoinRequest.FromString,
            response_serializer=node_pb2.SecureKeyShare.SerializeToString,
        ),
        "AnswerSecure": grpc.unary_unary_rpc_method_handler(
            servicer.AnswerSecure,
            request_deserializer=node_pb2.SecureAnswerRequest.FromString,
            response_serializer=common_pb2.SecureShare.SerializeToString,
        ),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),))
