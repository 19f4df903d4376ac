"""A node as a witness of the other nodes' audit logs.

Every ``[audit] witness_seconds``, for each node listed under ``[[audit.witness]]``, the witness
asks that node (over mTLS, as a node certificate, checking the server is that very node) for a
fresh checkpoint, and:

1. checks its signature with the node's checkpoint key from the config, and its origin;
2. compares it with the last checkpoint it cosigned of that node: a smaller tree is a **rollback**,
   the same size with another root a **fork**, a larger tree must come with a consistency proof
   that verifies (asked of the node, checked here), otherwise it is a **fork** too;
3. if all is well, remembers it (durably, first) and hands back its ``cosignature/v1``;
4. if not, refuses to cosign, appends a ``witness`` entry to its *own* audit log naming the node,
   the problem and both tree heads (once per offered head), and logs an error.

The first checkpoint a witness sees of a node is trusted on first use: the witness can only
hold the node to what it has seen. A witness that cannot reach a node logs a warning and tries
again next round; it never cosigns what it could not check.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

import grpc

from accord.node.config_audit import WitnessPeer, audit_origin
from accord.node.state import NodeState
from accord.policies.audit_entry import encode, timestamp
from accord.policies.identity import Identity
from accord.policies.merkle import MerkleError, verify_consistency
from accord.policies.note import Checkpoint, NoteError, NoteSigner, parse_note
from accord.protos.v1 import audit_pb2, audit_pb2_grpc
from accord.rpc.transport import TlsFiles, secure_channel

__all__ = ["WITNESS_TIMEOUT_SECONDS", "Witness"]

log = logging.getLogger(__name__)

WITNESS_TIMEOUT_SECONDS = 10.0


class Witness:
    """Node ``node`` witnessing ``peers`` with the cosigning key ``signer``."""

    def __init__(
        self,
        node: str,
        state: NodeState,
        signer: NoteSigner,
        peers: tuple[WitnessPeer, ...],
        tls: TlsFiles,
        channel: Callable[[WitnessPeer], grpc.Channel] | None = None,
    ) -> None:
        self.node = node
        self._state = state
        self._signer = signer
        self._peers = peers
        self._verifiers = {p.name: p.verifier() for p in peers}
        self._tls = tls
        self._channel = channel or (lambda p: secure_channel(p.address, tls, Identity("node", p.name)))
        self._lock = threading.Lock()

    def round(self) -> dict[str, str]:
        """Witness every peer once; what happened to each (for logs and tests)."""
        out: dict[str, str] = {}
        for peer in self._peers:
            try:
                out[peer.name] = self.witness(peer)
            except grpc.RpcError as err:
                log.warning("witness %s: node %s did not answer (%s)", self.node, peer.name, err.code().name)
                out[peer.name] = f"unreachable: {err.code().name}"
            except Exception:
                log.exception("witness %s: witnessing node %s failed", self.node, peer.name)
                out[peer.name] = "error"
        return out

    def witness(self, peer: WitnessPeer) -> str:
        """Fetch, check and (if consistent) cosign ``peer``'s latest checkpoint."""
        with self._lock, self._channel(peer) as channel:
            stub = audit_pb2_grpc.AuditServiceStub(channel)
            reply = stub.GetCheckpoint(
                audit_pb2.GetCheckpointRequest(fresh=True), timeout=WITNESS_TIMEOUT_SECONDS
            )
            try:
                note = parse_note(reply.note)
                if self._verifiers[peer.name].verify(note) is None:
                    raise NoteError("it is not signed by the node's checkpoint key")
                checkpoint = Checkpoint.parse(note.body)
                if checkpoint.origin != audit_origin(peer.name):
                    raise NoteError(f"its origin is {checkpoint.origin!r}, not {audit_origin(peer.name)!r}")
            except NoteError as err:
                log.error("witness %s: node %s served a bad checkpoint: %s", self.node, peer.name, err)
                return f"bad checkpoint: {err}"
            before = self._state.witnessed(peer.name)
            problem = None if before is None else self._problem(stub, before[0], before[1], checkpoint)
            if problem is not None:
                assert before is not None
                self._report(peer.name, problem, before[0], before[1], checkpoint)
                return problem
            if before is not None and before[0] == checkpoint.size and self._cosigned(note.text()):
                return "unchanged"
            self._state.set_witnessed(peer.name, checkpoint.size, checkpoint.root, note.text())
            line = self._signer.cosign(note.body, int(time.time())).line()
            stub.AddCosignature(
                audit_pb2.AddCosignatureRequest(checkpoint=note.body, signature_line=line),
                timeout=WITNESS_TIMEOUT_SECONDS,
            )
            return "cosigned"

    def _cosigned(self, text: str) -> bool:
        return any(s.name == self._signer.name for s in parse_note(text).signatures)

    def _problem(
        self, stub: audit_pb2_grpc.AuditServiceStub, size: int, root: bytes, offered: Checkpoint
    ) -> str | None:
        if offered.size < size:
            return f"rolled back: it offers {offered.size} entries after {size} were cosigned"
        if offered.size == size:
            return None if offered.root == root else f"forked: another root for the same {size} entries"
        proof = stub.GetConsistencyProof(
            audit_pb2.ConsistencyProofRequest(size1=size, size2=offered.size), timeout=WITNESS_TIMEOUT_SECONDS
        )
        try:
            verify_consistency(size, offered.size, root, offered.root, list(proof.hashes))
        except MerkleError as err:
            return f"forked: its {offered.size} entries do not extend the {size} cosigned ({err})"
        return None

    def _report(self, peer: str, problem: str, size: int, root: bytes, offered: Checkpoint) -> None:
        key = f"{peer}:{offered.size}:{offered.root.hex()}"
        log.error("witness %s: node %s %s; not cosigning", self.node, peer, problem)
        if key in self._state.seen("witness"):
            return
        entry = encode(
            {
                "type": "witness",
                "node": self.node,
                "at": timestamp(datetime.now(UTC)),
                "log": peer,
                "problem": problem,
                "cosigned": {"size": size, "root": root.hex()},
                "offered": {"size": offered.size, "root": offered.root.hex()},
            }
        )
        self._state.append([entry], seen={("witness", key): problem})

    def run(self, stop: threading.Event, every: float) -> None:
        """A round every ``every`` seconds until ``stop`` is set."""
        while not stop.wait(every):
            self.round()
