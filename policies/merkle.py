"""Merkle trees as RFC 6962 / RFC 9162 define them: hashes, roots, inclusion and consistency proofs.

The building block of the nodes' tamper-evident audit log: an auditor who holds a tree head
(size and root) can check that an entry is in the log (an inclusion proof) and that a later head
extends an earlier one without changing, removing or reordering anything (a consistency proof).

- leaf hash: SHA-256(0x00 || entry); interior node: SHA-256(0x01 || left || right);
- the tree over n leaves splits at the largest power of two below n (RFC 6962 section 2.1);
- proofs are generated as RFC 6962 section 2.1.1 (PATH) and 2.1.2 (PROOF / SUBPROOF) define
  them, and verified with the algorithms of RFC 9162 sections 2.1.3.2 and 2.1.4.2, extended
  with the cases those leave to the caller (equal sizes: an empty proof and equal roots; an
  empty first tree: refused, since it proves nothing, as the test vectors require).

Every verification failure is a :class:`MerkleError` saying what did not match. Pure functions
over ``bytes``; no grpc (auditors' tools run without a network stack). Generation here is
recursive over the leaf hashes (fine for proofs over thousands of leaves; the log keeps
subtree hashes when it needs more).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

__all__ = [
    "HASH_SIZE",
    "MerkleError",
    "consistency_proof",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32


class MerkleError(ValueError):
    """A proof does not show what it was checked for (the message says what did not match)."""


def leaf_hash(entry: bytes) -> bytes:
    """SHA-256(0x00 || entry)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n: int) -> int:
    """The largest power of two smaller than ``n`` (n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


def root(leaves: Sequence[bytes]) -> bytes:
    """The Merkle tree hash of the leaf hashes ``leaves`` (SHA-256 of nothing for no leaves)."""
    n = len(leaves)
    if n == 0:
        return hashlib.sha256(b"").digest()
    if n == 1:
        return leaves[0]
    k = _split(n)
    return node_hash(root(leaves[:k]), root(leaves[k:]))


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path of leaf ``index`` (0-based) in the tree over the leaf hashes ``leaves``."""
    n = len(leaves)
    if not 0 <= index < n:
        raise MerkleError(f"leaf {index} is not in a tree of {n} leaves")
    if n == 1:
        return []
    k = _split(n)
    if index < k:
        return [*inclusion_proof(index, leaves[:k]), root(leaves[k:])]
    return [*inclusion_proof(index - k, leaves[k:]), root(leaves[:k])]


def consistency_proof(size1: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The proof that the tree of the first ``size1`` leaf hashes is a prefix of the tree over
    ``leaves`` (empty when ``size1`` is all of them; from 0 leaves there is nothing to prove)."""
    n = len(leaves)
    if not 0 <= size1 <= n:
        raise MerkleError(f"a tree of {size1} leaves cannot precede one of {n}")
    if size1 == 0:
        raise MerkleError("every tree extends the empty tree: there is no consistency proof from it")
    if size1 == n:
        return []
    return _subproof(size1, leaves, True)


def _subproof(m: int, leaves: Sequence[bytes], complete: bool) -> list[bytes]:
    n = len(leaves)
    if m == n:
        return [] if complete else [root(leaves)]
    k = _split(n)
    if m <= k:
        return [*_subproof(m, leaves[:k], complete), root(leaves[k:])]
    return [*_subproof(m - k, leaves[k:], False), root(leaves[:k])]


def _check_hashes(what: str, *hashes: bytes) -> None:
    for h in hashes:
        if len(h) != HASH_SIZE:
            raise MerkleError(f"{what}: a hash of {len(h)} bytes, not {HASH_SIZE}")


def verify_inclusion(index: int, size: int, leaf: bytes, proof: Sequence[bytes], tree_root: bytes) -> None:
    """Check that ``leaf`` (a leaf hash) is leaf ``index`` of the tree of ``size`` leaves whose
    root is ``tree_root``; :class:`MerkleError` if the proof does not show it."""
    if not 0 <= index < size:
        raise MerkleError(f"leaf {index} is not in a tree of {size} leaves")
    _check_hashes("inclusion proof", leaf, tree_root, *proof)
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            raise MerkleError(f"the inclusion proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = node_hash(r, p)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MerkleError(f"the inclusion proof is too short ({len(proof)} hashes)")
    if r != tree_root:
        raise MerkleError(f"leaf {index} does not lead to the root of the tree of {size} leaves")


def verify_consistency(size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]) -> None:
    """Check that the tree of ``size1`` leaves with root ``root1`` is a prefix of the tree of
    ``size2`` leaves with root ``root2``; :class:`MerkleError` if the proof does not show it."""
    if not 0 <= size1 <= size2:
        raise MerkleError(f"a tree of {size1} leaves cannot precede one of {size2}")
    if size1 == 0:
        raise MerkleError("every tree extends the empty tree: a consistency proof from it proves nothing")
    if size1 == size2:
        if proof:
            raise MerkleError("trees of the same size need an empty consistency proof")
        if root1 != root2:
            raise MerkleError(f"two different roots for the same tree size {size1}")
        return
    _check_hashes("consistency proof", root1, root2, *proof)
    if not proof:
        raise MerkleError(f"an empty consistency proof cannot link {size1} leaves to {size2}")
    path = [root1, *proof] if size1 & (size1 - 1) == 0 else list(proof)
    fn, sn = size1 - 1, size2 - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            raise MerkleError(f"the consistency proof is too long ({len(proof)} hashes)")
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            if not fn & 1:
                while fn and not fn & 1:
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    if sn != 0:
        raise MerkleError(f"the consistency proof is too short ({len(proof)} hashes)")
    if fr != root1:
        raise MerkleError(f"the consistency proof does not lead to the root of the first {size1} leaves")
    if sr != root2:
        raise MerkleError(f"the consistency proof does not lead to the root of the {size2} leaves")
