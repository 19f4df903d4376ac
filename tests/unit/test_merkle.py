"""RFC 6962 / 9162 Merkle trees (:mod:`accord.policies.merkle`) against the repository's copy of
the transparency-dev test vectors (``tests/data/merkle``), and proofs generated here against the
verifiers, for every tree of up to 40 leaves."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from accord.policies.merkle import (
    MerkleError,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    node_hash,
    root,
    verify_consistency,
    verify_inclusion,
)
from tests.paths import MERKLE_VECTORS

# The leaves of RFC 6962's test tree, which the vectors' happy paths are proofs in.
RFC_LEAVES = [
    bytes.fromhex(h)
    for h in (
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    )
]
RFC_ROOT_8 = "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328"


def _vectors(kind: str) -> list[Path]:
    return sorted((MERKLE_VECTORS / kind).rglob("*.json"))


def _b64(value: str) -> bytes:
    return base64.b64decode(value)


def test_every_vector_file_is_found() -> None:
    """Property (of the suite): the copied vectors are all read (a lost folder cannot pass quietly)."""
    assert len(_vectors("inclusion")) > 60 and len(_vectors("consistency")) > 60


@pytest.mark.parametrize("path", _vectors("inclusion"), ids=lambda p: str(p.relative_to(MERKLE_VECTORS)))
def test_inclusion_vectors(path: Path) -> None:
    """Property: every inclusion vector verifies exactly when it should (``wantErr``)."""
    v = json.loads(path.read_text(encoding="utf-8"))
    proof = [_b64(p) for p in v["proof"] or []]
    args = (v["leafIdx"], v["treeSize"], _b64(v["leafHash"]), proof, _b64(v["root"]))
    if v["wantErr"]:
        with pytest.raises(MerkleError):
            verify_inclusion(*args)
    else:
        verify_inclusion(*args)


@pytest.mark.parametrize("path", _vectors("consistency"), ids=lambda p: str(p.relative_to(MERKLE_VECTORS)))
def test_consistency_vectors(path: Path) -> None:
    """Property: every consistency vector verifies exactly when it should (``wantErr``)."""
    v = json.loads(path.read_text(encoding="utf-8"))
    proof = [_b64(p) for p in v["proof"] or []]
    args = (v["size1"], v["size2"], _b64(v["root1"]), _b64(v["root2"]), proof)
    if v["wantErr"]:
        with pytest.raises(MerkleError):
            verify_consistency(*args)
    else:
        verify_consistency(*args)


def test_the_rfc_tree_and_the_happy_paths_are_what_we_generate() -> None:
    """Property: the root of RFC 6962's eight test leaves is the published one, and every
    happy-path vector over them is exactly the proof generated here."""
    hashes = [leaf_hash(x) for x in RFC_LEAVES]
    assert root(hashes).hex() == RFC_ROOT_8
    assert leaf_hash(b"").hex() == "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"
    assert node_hash(b"a" * 32, b"b" * 32) != node_hash(b"b" * 32, b"a" * 32)
    checked = 0
    for path in _vectors("inclusion"):
        v = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "happy-path.json" and v["treeSize"] <= 8:
            assert [
                base64.b64encode(p).decode() for p in inclusion_proof(v["leafIdx"], hashes[: v["treeSize"]])
            ] == (v["proof"] or [])
            checked += 1
    for path in _vectors("consistency"):
        v = json.loads(path.read_text(encoding="utf-8"))
        if path.name == "happy-path.json" and v["size2"] <= 8:
            assert [
                base64.b64encode(p).decode() for p in consistency_proof(v["size1"], hashes[: v["size2"]])
            ] == (v["proof"] or [])
            checked += 1
    assert checked >= 8


def test_generated_proofs_verify_and_any_flipped_bit_is_caught() -> None:
    """Property: for every tree of 1 to 40 leaves, every leaf's inclusion proof and every prefix's
    consistency proof verify; flipping one bit of any proof hash, or asking for another leaf or
    size, is refused."""
    leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(40)]
    for n in range(1, 41):
        tree = leaves[:n]
        head = root(tree)
        for i in range(n):
            proof = inclusion_proof(i, tree)
            verify_inclusion(i, n, tree[i], proof, head)
            for j, h in enumerate(proof):
                bad = [*proof[:j], bytes([h[0] ^ 1]) + h[1:], *proof[j + 1 :]]
                with pytest.raises(MerkleError):
                    verify_inclusion(i, n, tree[i], bad, head)
            if n > 1:
                with pytest.raises(MerkleError):
                    verify_inclusion((i + 1) % n, n, tree[i], proof, head)
        for m in range(1, n + 1):
            proof = consistency_proof(m, tree)
            verify_consistency(m, n, root(tree[:m]), head, proof)
            for j, h in enumerate(proof):
                bad = [*proof[:j], bytes([h[0] ^ 1]) + h[1:], *proof[j + 1 :]]
                with pytest.raises(MerkleError):
                    verify_consistency(m, n, root(tree[:m]), head, bad)
            if m < n:
                changed = [*tree[: m - 1], leaf_hash(b"changed")]
                with pytest.raises(MerkleError):  # a prefix with a changed entry is not this tree's
                    verify_consistency(m, n, root(changed), head, proof)


def test_out_of_range_requests_are_refused() -> None:
    """Property: a leaf or a prefix outside the tree is refused when asked for, not answered."""
    tree = [leaf_hash(b"x")] * 3
    with pytest.raises(MerkleError):
        inclusion_proof(3, tree)
    with pytest.raises(MerkleError):
        consistency_proof(4, tree)
    with pytest.raises(MerkleError):
        consistency_proof(0, tree)
