"""pb2 <-> model conversion for secure aggregation's messages: key shares and signed shares."""

from __future__ import annotations

from accord.errors import InternalError, InvalidQuery, Violation
from accord.policies.secagg import KeyShare, SignedShare
from accord.protos.v1 import common_pb2 as pb
from accord.protos.v1 import node_pb2 as npb

__all__ = ["key_share_from_pb", "key_share_to_pb", "secure_share_from_pb", "secure_share_to_pb"]


def secure_share_to_pb(share: SignedShare) -> pb.SecureShare:
    return pb.SecureShare(
        body=share.body.decode("ascii"), certificate=share.certificate, signature=share.signature
    )


def secure_share_from_pb(msg: pb.SecureShare) -> SignedShare:
    try:
        body = msg.body.encode("ascii")
    except UnicodeEncodeError:
        raise InternalError("a secure-aggregation share arrived with a body that is not ASCII JSON") from None
    return SignedShare(body, msg.certificate, msg.signature)


def key_share_to_pb(share: KeyShare) -> npb.SecureKeyShare:
    return npb.SecureKeyShare(
        node=share.node,
        query_id=share.query_id,
        payload_digest=share.payload_digest,
        participants=list(share.participants),
        public_key=share.public_key,
        certificate=share.certificate,
        signature=share.signature,
    )


def key_share_from_pb(msg: npb.SecureKeyShare) -> KeyShare:
    if len(msg.public_key) != 32 or len(msg.payload_digest) != 32:
        raise InvalidQuery(
            f"the key share of {msg.node[:63]!r} is malformed (a key and a digest are 32 bytes each)",
            (Violation("keys", "malformed"),),
        )
    return KeyShare(
        node=msg.node,
        query_id=msg.query_id,
        payload_digest=msg.payload_digest,
        participants=tuple(msg.participants),
        public_key=msg.public_key,
        certificate=msg.certificate,
        signature=msg.signature,
    )
