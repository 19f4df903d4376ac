"""The node's answer path in one process (real DuckDB, real signatures, real state): the order of its
checks, retries answered byte for byte, one release per query id under concurrency, query ids
that belong to their analyst, and compiling against the view the gate grants."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from accord.errors import PermissionDenied, Unauthenticated
from accord.node.service import NodeService
from accord.node.servicer import serialize_release
from accord.node.state import SqliteState
from accord.policies.identity import Identity
from accord.policies.pki import issue
from accord.rpc.transport import TlsFiles
from tests.conftest import TestPki
from tests.signing import node_service, open_agreement, sign
from tests.unit.nodedata import pums

COORDINATOR = Identity("coordinator", "coordinator")
SQL = "SELECT sex, COUNT(*) AS n, SUM(income) AS s FROM pums GROUP BY sex"


@pytest.fixture
def service(pki: TestPki, tmp_path: Path) -> NodeService:
    return node_service(pki, (pums(),), state=SqliteState(tmp_path / "state.db", "n"))


def ask(service: NodeService, signed: object, caller: Identity = COORDINATOR) -> bytes:
    return service.answer(caller, signed, serialize_release)  # type: ignore[arg-type]


def test_retry_returns_the_recorded_bytes(service: NodeService, pki: TestPki) -> None:
    """Property: the same query id, asked again (re-signed later, epsilon written another way),
    returns the recorded release byte for byte; a new id gets fresh noise."""
    alice = pki.analyst()
    first = ask(service, sign(alice, SQL, "0.5", "q-1"))
    assert ask(service, sign(alice, SQL, "1/2", "q-1")) == first
    assert ask(service, sign(alice, SQL, "0.5", "q-2")) != first


def test_reused_id_for_another_query_is_refused(service: NodeService, pki: TestPki) -> None:
    """Property: an id the analyst already used for another SQL or epsilon is refused with
    PERMISSION_DENIED / QUERY_ID_REUSED, and the recorded answer is untouched."""
    alice = pki.analyst()
    first = ask(service, sign(alice, SQL, "1", "q-1"))
    for other_sql, eps in ((SQL.replace("SUM(income)", "SUM(age)"), "1"), (SQL, "2")):
        with pytest.raises(PermissionDenied) as info:
            ask(service, sign(alice, other_sql, eps, "q-1"))
        assert info.value.reason == "QUERY_ID_REUSED"
    assert ask(service, sign(alice, SQL, "1", "q-1")) == first


def test_query_ids_belong_to_their_analyst(service: NodeService, pki: TestPki, tmp_path: Path) -> None:
    """Property: bob using alice's query id asks his own query: he is neither refused nor given
    alice's release."""
    bob_cert = issue(pki.root, tmp_path, "analyst", "bob")
    bob = TlsFiles(bob_cert.cert, bob_cert.key, pki.ca_cert)
    alice_release = ask(service, sign(pki.analyst(), SQL, "1", "shared-id"))
    bob_release = ask(service, sign(bob, SQL.replace("SUM(income)", "SUM(age)"), "1", "shared-id"))
    assert bob_release != alice_release


def test_concurrent_requests_with_one_id_yield_one_release(service: NodeService, pki: TestPki) -> None:
    """Property: 12 threads sending the same query id at once all get the same bytes."""
    alice = pki.analyst()
    envelopes = [sign(alice, SQL, "1", "burst") for _ in range(12)]
    barrier = threading.Barrier(12)
    got: list[bytes] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        payload = ask(service, envelopes[i])
        with lock:
            got.append(payload)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 12 and len(set(got)) == 1


def test_caller_is_checked_before_the_signature(service: NodeService, pki: TestPki) -> None:
    """Property: a caller the node does not serve is refused before anything is verified or parsed
    (a garbage envelope gets the same refusal as a genuine one)."""
    from accord.policies.signing import SignedQuery

    stranger = Identity("coordinator", "rogue")
    for envelope in (sign(pki.analyst(), SQL), SignedQuery(b"x", b"y", b"z")):
        with pytest.raises(PermissionDenied) as info:
            ask(service, envelope, stranger)
        assert info.value.reason == "CALLER_NOT_ALLOWED"
    with pytest.raises(Unauthenticated):
        ask(service, SignedQuery(b"x", b"y", b"z"))


def test_a_refusal_never_names_a_column_the_view_hides(pki: TestPki) -> None:
    """Property: under an agreement that shares only ``age`` and ``sex``, a query naming ``income``
    is refused exactly like a query naming a column that does not exist: same error, and neither
    message mentions ``income`` (not in "available", not as a did-you-mean)."""
    config = pums()
    schemas = {config.schema.name: config.schema}
    narrow = open_agreement(schemas, fields={"age": (), "sex": ()})
    service = node_service(pki, (config,), agreements=(narrow,))
    alice = pki.analyst()
    with pytest.raises(PermissionDenied) as hidden:
        ask(service, sign(alice, "SELECT SUM(income) FROM pums"))
    with pytest.raises(PermissionDenied) as absent:
        ask(service, sign(alice, "SELECT SUM(incomx) FROM pums"))
    assert hidden.value.reason == absent.value.reason == "FIELD_NOT_IN_AGREEMENT"
    assert "under agreement open" in hidden.value.message
    assert "income" not in hidden.value.message.replace("'income'", "")
    assert "incom" not in absent.value.message.replace("'incomx'", "")
    assert hidden.value.message.replace("income", "X") == absent.value.message.replace("incomx", "X")
    assert "available: pid, age, sex" in hidden.value.message
    # the granted columns still work, and bounding and clamping use the whole declared schema
    assert ask(service, sign(alice, "SELECT sex, SUM(age) AS a FROM pums GROUP BY sex"))


def test_a_query_is_answered_only_from_the_coordinator_it_names(pki: TestPki) -> None:
    """Property: with two coordinators allowed, a query alice signed for one is refused when the
    other forwards it (QUERY_FOR_ANOTHER_COORDINATOR): coordinators cannot replay each other's."""
    service = node_service(pki, (pums(),), coordinators=("coordinator", "standby"))
    signed = sign(pki.analyst(), SQL)  # signed for "coordinator"
    with pytest.raises(PermissionDenied) as info:
        ask(service, signed, Identity("coordinator", "standby"))
    assert info.value.reason == "QUERY_FOR_ANOTHER_COORDINATOR"
    assert ask(service, signed)  # from the coordinator it names: answered
