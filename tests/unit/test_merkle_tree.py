"""The stored tree (perfect subtrees) gives exactly the roots and proofs of RFC 6962's list-based
definitions, for every size, index and pair of sizes up to 70 leaves; the frontier gives every
prefix's root."""

from __future__ import annotations

import hashlib

import pytest

from accord.policies import merkle
from accord.policies.merkle_tree import (
    Frontier,
    appended,
    consistency_path,
    inclusion_path,
    range_hash,
    tree_root,
)

N = 70
LEAVES = [merkle.leaf_hash(str(i).encode()) for i in range(N)]


def _stored(n: int) -> dict[tuple[int, int], bytes]:
    store: dict[tuple[int, int], bytes] = {}
    for size, leaf in enumerate(LEAVES[:n]):
        for level, index, h in appended(size, leaf, lambda lv, ix: store[(lv, ix)]):
            store[(level, index)] = h
    return store


STORE = _stored(N)


def perfect(level: int, index: int) -> bytes:
    return STORE[(level, index)]


def test_the_store_holds_fewer_than_two_hashes_a_leaf() -> None:
    """Property: appending n leaves stores n leaf hashes and n - popcount(n) interior blocks."""
    assert len(STORE) == 2 * N - bin(N).count("1")


@pytest.mark.parametrize("size", range(N + 1))
def test_roots_and_frontier_match_the_rfc(size: int) -> None:
    """Property: the stored root of every prefix equals MTH of its leaves, and so does a frontier
    fed the same leaves."""
    frontier = Frontier()
    for leaf in LEAVES[:size]:
        frontier.append(leaf)
    assert tree_root(size, perfect) == merkle.root(LEAVES[:size]) == frontier.root()
    assert frontier.size == size


@pytest.mark.parametrize("size", range(1, N + 1))
def test_proofs_match_the_rfc(size: int) -> None:
    """Property: every audit path and every consistency proof into a tree of ``size`` leaves equals
    the list-based one, and verifies."""
    r = merkle.root(LEAVES[:size])
    for index in range(size):
        path = inclusion_path(index, size, perfect)
        assert path == merkle.inclusion_proof(index, LEAVES[:size])
        merkle.verify_inclusion(index, size, LEAVES[index], path, r)
    for size1 in range(1, size + 1):
        proof = consistency_path(size1, size, perfect)
        assert proof == merkle.consistency_proof(size1, LEAVES[:size])
        merkle.verify_consistency(size1, size, merkle.root(LEAVES[:size1]), r, proof)


def test_bad_ranges_are_refused() -> None:
    """Property: out-of-range leaves, an empty first tree and misaligned blocks are errors."""
    for call in (
        lambda: inclusion_path(5, 5, perfect),
        lambda: consistency_path(0, 5, perfect),
        lambda: consistency_path(6, 5, perfect),
        lambda: range_hash(1, 3, perfect),
        lambda: range_hash(3, 3, perfect),
    ):
        with pytest.raises(merkle.MerkleError):
            call()
    assert tree_root(0, perfect) == hashlib.sha256(b"").digest()
