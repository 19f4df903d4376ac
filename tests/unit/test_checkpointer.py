"""A node's checkpointer takes a witness's cosignature only for exactly the checkpoint it signed,
as exactly one line by that witness's key."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from accord.errors import InvalidQuery, NotFound, PermissionDenied
from accord.node.audit_log import Checkpointer
from accord.node.config_audit import audit_origin, witness_name
from accord.node.state import MemoryState
from accord.policies.note import ALG_COSIGNATURE, Checkpoint, NoteSigner, Signature, key_id, parse_note
from accord.policies.note_keys import generate_key


def _setup() -> tuple[Checkpointer, MemoryState, NoteSigner, str, Ed25519PrivateKey]:
    state = MemoryState("county")
    state.append([b'{"e":1}', b'{"e":2}'])
    witness_key = generate_key()
    checkpointer = Checkpointer(
        "county",
        state,
        generate_key(),
        {"district-a": NoteSigner(audit_origin("district-a"), witness_key).verifier()},
    )
    note = checkpointer.issue()
    assert note is not None
    return (
        checkpointer,
        state,
        NoteSigner(witness_name("district-a"), witness_key),
        parse_note(note).body,
        witness_key,
    )


def test_a_cosignature_is_kept_with_its_checkpoint() -> None:
    """Property: a listed witness's cosignature of the checkpoint as signed is kept with it."""
    checkpointer, state, witness, body, _ = _setup()
    checkpointer.add_cosignature("district-a", body, witness.cosign(body, 1_700_000_000).line())
    latest = state.latest_checkpoint()
    assert latest is not None and {s.name for s in parse_note(latest[1]).signatures} == {
        audit_origin("county"),
        witness_name("district-a"),
    }


def test_lines_that_are_not_one_cosignature_of_that_body_are_refused() -> None:
    """Property: extra text before the line (which would sign another body and leave a line that
    fails every auditor's verify), two lines, another body, a node not listed and a checkpoint the
    node never issued are refused, and nothing is stored."""
    checkpointer, state, witness, body, witness_key = _setup()
    before = state.latest_checkpoint()
    other = body + "\njunk\n"  # what parse_note reads as the body of body + "\n" + smuggled
    raw = witness_key.sign(b"cosignature/v1\ntime 1\n" + other.encode())  # not a checkpoint: by hand
    public = witness_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    forged = Signature(
        witness.name, key_id(witness.name, ALG_COSIGNATURE, public), (1).to_bytes(8, "big") + raw
    )
    smuggled = "junk\n\n" + forged.line()
    two = witness.cosign(body, 1).line() + witness.cosign(body, 2).line()
    for line in (smuggled, two):
        with pytest.raises(InvalidQuery):
            checkpointer.add_cosignature("district-a", body, line)
    with pytest.raises(PermissionDenied):
        checkpointer.add_cosignature("district-b", body, witness.cosign(body, 1).line())
    never = Checkpoint(audit_origin("county"), 1, bytes(32)).body()
    with pytest.raises(NotFound):
        checkpointer.add_cosignature("district-a", never, witness.cosign(never, 1).line())
    assert state.latest_checkpoint() == before
