"""A growing Merkle tree kept as its perfect subtrees: what a node's audit log stores, and the
compact range an auditor folds a long log into.

A log of n leaves stores, for every level k, the hash of each complete, aligned block of 2^k
leaves (level 0: the leaf hashes). Appending a leaf adds the blocks it completes (on average
one more hash), so the store holds fewer than 2n hashes. Every hash that RFC 6962's recursive
definitions need (a root, an audit path, a consistency proof) is either such a block or a fold
of O(log n) of them: the tree over [lo, hi) splits at the largest power of two k below hi - lo,
and [lo, lo + k) is then always aligned. So proofs cost O(log² n) lookups at most, never a walk
over the leaves.

The functions take ``perfect(level, index)``: the hash of leaves [index·2^level, (index+1)·2^level).
They produce exactly what :mod:`accord.policies.merkle`'s list-based functions produce (tested).

:class:`Frontier` is the other side: the roots of the perfect subtrees of a prefix (at most one
per level), which is enough to append and to know the root at every size, in O(log n) memory.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

from accord.policies.merkle import MerkleError, node_hash

__all__ = ["Frontier", "Perfect", "appended", "consistency_path", "inclusion_path", "range_hash", "tree_root"]

Perfect = Callable[[int, int], bytes]
"""``perfect(level, index)``: the stored hash of leaves [index·2^level, (index+1)·2^level)."""

_EMPTY = hashlib.sha256(b"").digest()


def appended(size: int, leaf: bytes, perfect: Perfect) -> list[tuple[int, int, bytes]]:
    """The (level, index, hash) blocks to store when leaf ``leaf`` is appended to a tree of
    ``size`` leaves: the leaf itself, then each block it completes."""
    out = [(0, size, leaf)]
    level, index, h = 0, size, leaf
    while index & 1:
        h = node_hash(perfect(level, index - 1), h)
        level, index = level + 1, index >> 1
        out.append((level, index, h))
    return out


def _split(n: int) -> int:
    return 1 << ((n - 1).bit_length() - 1)


def range_hash(lo: int, hi: int, perfect: Perfect) -> bytes:
    """The Merkle tree hash of leaves [lo, hi), where ``lo`` is aligned as RFC 6962's recursion
    leaves it (a multiple of the largest power of two not above hi - lo)."""
    n = hi - lo
    if n <= 0:
        raise MerkleError(f"no leaves in [{lo}, {hi})")
    if n & (n - 1) == 0:
        level = n.bit_length() - 1
        if lo % n:
            raise MerkleError(f"[{lo}, {hi}) is not an aligned block")
        return perfect(level, lo >> level)
    k = _split(n)
    return node_hash(range_hash(lo, lo + k, perfect), range_hash(lo + k, hi, perfect))


def tree_root(size: int, perfect: Perfect) -> bytes:
    """The root of the tree of the first ``size`` leaves."""
    return _EMPTY if size == 0 else range_hash(0, size, perfect)


def inclusion_path(index: int, size: int, perfect: Perfect) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves (RFC 6962 PATH)."""
    if not 0 <= index < size:
        raise MerkleError(f"leaf {index} is not in a tree of {size} leaves")
    path: list[bytes] = []
    lo, hi = 0, size
    while hi - lo > 1:
        k = _split(hi - lo)
        if index < lo + k:
            path.append(range_hash(lo + k, hi, perfect))
            hi = lo + k
        else:
            path.append(range_hash(lo, lo + k, perfect))
            lo += k
    path.reverse()
    return path


def consistency_path(size1: int, size2: int, perfect: Perfect) -> list[bytes]:
    """The proof that the tree of ``size1`` leaves is a prefix of the tree of ``size2`` leaves
    (RFC 6962 PROOF; empty when the sizes are equal; none from an empty tree)."""
    if not 0 <= size1 <= size2:
        raise MerkleError(f"a tree of {size1} leaves cannot precede one of {size2}")
    if size1 == 0:
        raise MerkleError("every tree extends the empty tree: there is no consistency proof from it")
    proof: list[bytes] = []
    lo, hi, m, complete = 0, size2, size1, True
    while True:
        n = hi - lo
        if m == n:
            if not complete:
                proof.append(range_hash(lo, hi, perfect))
            break
        k = _split(n)
        if m <= k:
            proof.append(range_hash(lo + k, hi, perfect))
            hi = lo + k
        else:
            proof.append(range_hash(lo, lo + k, perfect))
            lo, m, complete = lo + k, m - k, False
    proof.reverse()
    return proof


class Frontier:
    """The compact range [0, size): one perfect-subtree root per set bit of ``size``."""

    __slots__ = ("_hashes", "size")

    def __init__(self) -> None:
        self.size = 0
        self._hashes: list[bytes] = []  # left to right: largest subtree first

    def append(self, leaf: bytes) -> None:
        h, index = leaf, self.size
        hashes = self._hashes
        while index & 1:
            h = node_hash(hashes.pop(), h)
            index >>= 1
        hashes.append(h)
        self.size += 1

    def root(self) -> bytes:
        """The root of the tree of the leaves appended so far."""
        if not self._hashes:
            return _EMPTY
        r = self._hashes[-1]
        for h in reversed(self._hashes[:-1]):
            r = node_hash(h, r)
        return r
