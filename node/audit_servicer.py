"""The node's audit service (``accord.v1.AuditService``): its log, checkpoints and proofs for
auditors, and, for witnessing, checkpoints and consistency proofs for the other nodes and a place
to hand back their cosignatures.

Who may call what is checked twice: the server's caller gate lets only auditor and node
certificates reach this service at all (coordinators and analysts are refused, as are auditors
and nodes on the node service), and each method here refuses the role it does not serve.
"""

from __future__ import annotations

import grpc

from accord.errors import InvalidQuery, PermissionDenied
from accord.node.audit_log import Checkpointer
from accord.node.state import NodeState
from accord.protos.rpcstatus import rpc_boundary
from accord.protos.v1 import audit_pb2, audit_pb2_grpc
from accord.rpc.identity import peer_identity

__all__ = [
    "AUDIT_CALLERS",
    "AUDIT_SERVICE_NAME",
    "MAX_BATCH_BYTES",
    "MAX_ENTRIES_PER_CALL",
    "AuditServicer",
    "register_audit",
]

AUDIT_SERVICE_NAME = audit_pb2.DESCRIPTOR.services_by_name["AuditService"].full_name
AUDIT_CALLERS = frozenset({"auditor", "node"})
MAX_ENTRIES_PER_CALL = 1000
MAX_BATCH_BYTES = 2 << 20
"""Entries a GetEntries reply holds at most, in bytes (well inside the 4 MiB message limit)."""
_MAX_CHECKPOINTS_PER_CALL = 1000


def _only(context: grpc.ServicerContext, *roles: str) -> str:
    """The caller's name, if its role is one of ``roles``."""
    caller = peer_identity(context)
    if caller.role not in roles:
        raise PermissionDenied(
            f"{caller} may not call this method of the audit service; it serves {' or '.join(roles)} "
            "certificates only",
            "WRONG_ROLE",
            {"caller": str(caller), "required_role": " or ".join(roles)},
        )
    return caller.name


def _size(state: NodeState, value: int, what: str) -> int:
    size = state.log_size()
    if value > size:
        raise InvalidQuery(f"{what} {value} is beyond the log's {size} entries; ask for {size} or fewer")
    return value


class AuditServicer(audit_pb2_grpc.AuditServiceServicer):
    """Thin: check the role, delegate to the state and the checkpointer, convert."""

    def __init__(self, state: NodeState, checkpointer: Checkpointer) -> None:
        self._state = state
        self._checkpointer = checkpointer

    @rpc_boundary
    def GetCheckpoint(
        self, request: audit_pb2.GetCheckpointRequest, context: grpc.ServicerContext
    ) -> audit_pb2.Checkpoint:
        _only(context, "auditor", "node")
        return audit_pb2.Checkpoint(note=self._checkpointer.latest(request.fresh))

    @rpc_boundary
    def ListCheckpoints(
        self, request: audit_pb2.ListCheckpointsRequest, context: grpc.ServicerContext
    ) -> audit_pb2.CheckpointList:
        _only(context, "auditor")
        kept = self._state.checkpoints(request.since, _MAX_CHECKPOINTS_PER_CALL)
        return audit_pb2.CheckpointList(checkpoints=[audit_pb2.Checkpoint(note=n) for _, n in kept])

    @rpc_boundary
    def GetEntries(
        self, request: audit_pb2.GetEntriesRequest, context: grpc.ServicerContext
    ) -> audit_pb2.EntryBatch:
        _only(context, "auditor")
        end = _size(self._state, request.end, "end")
        if request.start > end:
            raise InvalidQuery(f"start {request.start} is after end {end}")
        end = min(end, request.start + MAX_ENTRIES_PER_CALL)
        entries: list[bytes] = []
        size = 0
        for entry in self._state.log_entries(request.start, end):
            if entries and size + len(entry) > MAX_BATCH_BYTES:
                break  # the caller asks again from where this batch ends
            entries.append(entry)
            size += len(entry)
        return audit_pb2.EntryBatch(entries=entries)

    @rpc_boundary
    def GetInclusionProof(
        self, request: audit_pb2.InclusionProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.Proof:
        _only(context, "auditor")
        size = _size(self._state, request.size, "size")
        if request.index >= size:
            raise InvalidQuery(f"entry {request.index} is not in a tree of {size} entries")
        return audit_pb2.Proof(hashes=self._state.inclusion_proof(request.index, size))

    @rpc_boundary
    def GetConsistencyProof(
        self, request: audit_pb2.ConsistencyProofRequest, context: grpc.ServicerContext
    ) -> audit_pb2.Proof:
        _only(context, "auditor", "node")
        size2 = _size(self._state, request.size2, "size2")
        if not 0 < request.size1 <= size2:
            raise InvalidQuery(f"size1 must be between 1 and size2 ({size2}), not {request.size1}")
        return audit_pb2.Proof(hashes=self._state.consistency_proof(request.size1, size2))

    @rpc_boundary
    def AddCosignature(
        self, request: audit_pb2.AddCosignatureRequest, context: grpc.ServicerContext
    ) -> audit_pb2.AddCosignatureResponse:
        witness = _only(context, "node")
        self._checkpointer.add_cosignature(witness, request.checkpoint, request.signature_line)
        return audit_pb2.AddCosignatureResponse()


def register_audit(servicer: AuditServicer, server: grpc.Server) -> None:
    audit_pb2_grpc.add_AuditServiceServicer_to_server(servicer, server)
