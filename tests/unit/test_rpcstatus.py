"""accord.protos.rpcstatus: the one boundary between Accord's exception tree and gRPC rich status.

Most tests go through a real in-process gRPC server over mTLS (the session PKI): a servicer method
wrapped in ``rpc_boundary`` raises an error, the client sees the status gRPC really delivers, and
``error_from_rpc`` rebuilds the error from it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from concurrent import futures
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st

from accord.errors import (
    AccordError,
    BudgetExhausted,
    ConfigError,
    DataError,
    DeadlineExceeded,
    InternalError,
    InvalidQuery,
    NotFound,
    PartialFailure,
    PermissionDenied,
    ResourceLimit,
    Unauthenticated,
    Unavailable,
    Violation,
)
from accord.policies.identity import Identity
from accord.protos.rpcstatus import DOMAIN, INTERNAL_MESSAGE, error_from_rpc, rpc_boundary, to_status
from accord.rpc.transport import secure_channel
from tests.conftest import TestPki

TIMEOUT = 10.0
SERVICE = "accord.test.Errors"
SECRET = "row 17: Jane Doe, income 41250"  # what an internal exception must never leak


class _Servicer:
    """Raises the exception registered under the request's text, through ``rpc_boundary``."""

    def __init__(self) -> None:
        self.raises: dict[str, Callable[[], BaseException]] = {}
        self.statuses: dict[str, grpc.Status] = {}

    @rpc_boundary
    def Raise(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        key = request.decode()
        if key == "ok":
            return b"fine"
        if key == "slow":
            time.sleep(2)
            return b"late"
        raise self.raises[key]()

    def AbortWith(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        """Not wrapped: sends a hand-made status, as a foreign or broken server might."""
        context.abort_with_status(self.statuses[request.decode()])
        raise AssertionError("unreachable")


@dataclass
class Server:
    address: str
    servicer: _Servicer
    channel: grpc.Channel

    def call(self, method: str, key: str, timeout: float = TIMEOUT) -> bytes:
        result: bytes = self.channel.unary_unary(f"/{SERVICE}/{method}")(key.encode(), timeout=timeout)
        return result

    def fail(self, exc: BaseException | Callable[[], BaseException]) -> grpc.RpcError:
        """Make the server raise ``exc`` (or what the factory makes); the client's RpcError."""
        key = f"case-{len(self.servicer.raises)}"
        self.servicer.raises[key] = (lambda: exc) if isinstance(exc, BaseException) else exc
        with pytest.raises(grpc.RpcError) as info:
            self.call("Raise", key)
        return info.value


@pytest.fixture(scope="module")
def server(pki: TestPki) -> Iterator[Server]:
    """A real gRPC server with node ``county``'s certificate and a client channel (coordinator)."""
    from accord.rpc.transport import server_credentials

    servicer = _Servicer()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Raise": grpc.unary_unary_rpc_method_handler(servicer.Raise),
        "AbortWith": grpc.unary_unary_rpc_method_handler(servicer.AbortWith),
    }
    srv.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE, handlers),))
    port = srv.add_secure_port("127.0.0.1:0", server_credentials(pki.node("county")))
    assert port > 0
    srv.start()
    address = f"127.0.0.1:{port}"
    channel = secure_channel(address, pki.coordinator, Identity("node", "county"))
    try:
        yield Server(address, servicer, channel)
    finally:
        channel.close()
        srv.stop(0).wait()


def _details(err: grpc.RpcError) -> list[Any]:
    """The rich detail messages of a failed call, unpacked."""
    status = rpc_status.from_call(err)
    assert status is not None, "no rich status on the call"
    out: list[Any] = []
    for detail in status.details:
        for cls in (
            error_details_pb2.BadRequest,
            error_details_pb2.ErrorInfo,
            error_details_pb2.QuotaFailure,
        ):
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                out.append(msg)
    assert len(out) == len(status.details), "a detail of an unexpected type"
    return out


def test_the_server_works(server: Server) -> None:
    """Control: a call that does not raise succeeds through the boundary."""
    assert server.call("Raise", "ok") == b"fine"


# ---- each error class: code, rich details, and the way back ------------------------------


def test_invalid_query_is_invalid_argument_with_bad_request(server: Server) -> None:
    """Property: InvalidQuery leaves as INVALID_ARGUMENT with a BadRequest listing every field
    violation, and comes back as InvalidQuery with the same message and violations."""
    violations = (Violation("sql", "no aggregate"), Violation("epsilon", "not positive"))
    original = InvalidQuery("the query has no aggregate; add COUNT(*) — and épsilon ≤ 1", violations)
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == original.message
    [bad_request] = _details(err)
    assert isinstance(bad_request, error_details_pb2.BadRequest)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("sql", "no aggregate"),
        ("epsilon", "not positive"),
    ]
    back = error_from_rpc(err, peer="node county")
    assert type(back) is InvalidQuery
    assert back.message == original.message
    assert back.violations == violations


def test_not_found_is_not_found_with_bad_request(server: Server) -> None:
    """Property: NotFound (an unknown dataset/column) leaves as NOT_FOUND with BadRequest and
    comes back as NotFound (still an InvalidQuery) with its message and violations."""
    original = NotFound("no dataset 'citizen'; did you mean 'citizens'?", (Violation("from", "unknown"),))
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.NOT_FOUND
    [bad_request] = _details(err)
    assert [(v.field, v.description) for v in bad_request.field_violations] == [("from", "unknown")]
    back = error_from_rpc(err)
    assert type(back) is NotFound and isinstance(back, InvalidQuery)
    assert (back.message, back.violations) == (original.message, original.violations)


def test_permission_denied_carries_error_info_reason(server: Server) -> None:
    """Property: PermissionDenied leaves as PERMISSION_DENIED with ErrorInfo(reason, domain,
    metadata) and comes back with the same message, reason and metadata."""
    original = PermissionDenied(
        "income is not in the agreement with county; ask for age or district",
        "FIELD_NOT_AGREED",
        {"field": "income", "agreement": "county-2026"},
    )
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.PERMISSION_DENIED
    [info] = _details(err)
    assert isinstance(info, error_details_pb2.ErrorInfo)
    assert (info.reason, info.domain) == ("FIELD_NOT_AGREED", DOMAIN)
    assert dict(info.metadata) == {"field": "income", "agreement": "county-2026"}
    back = error_from_rpc(err)
    assert type(back) is PermissionDenied
    assert (back.message, back.reason, back.metadata) == (
        original.message,
        original.reason,
        original.metadata,
    )


def test_unauthenticated_is_unauthenticated_with_reason(server: Server) -> None:
    """Property: Unauthenticated leaves as UNAUTHENTICATED (not PERMISSION_DENIED) and comes back
    as Unauthenticated with its reason."""
    original = Unauthenticated("the client certificate expired; issue a new one", "CERTIFICATE_NOT_VALID")
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.UNAUTHENTICATED
    [info] = _details(err)
    assert info.reason == "CERTIFICATE_NOT_VALID"
    back = error_from_rpc(err)
    assert type(back) is Unauthenticated
    assert (back.message, back.reason, back.metadata) == (original.message, "CERTIFICATE_NOT_VALID", {})


def test_budget_exhausted_is_resource_exhausted_with_quota_failure(server: Server) -> None:
    """Property: BudgetExhausted leaves as RESOURCE_EXHAUSTED with a QuotaFailure naming the
    subject and the exact remaining epsilon (plus ErrorInfo BUDGET_EXHAUSTED), and comes back
    as BudgetExhausted with the same subject and remaining text."""
    original = BudgetExhausted(
        "analyst alice has 1/4 epsilon left at county; ask for at most 1/4", "analyst/alice@county", "1/4"
    )
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    details = _details(err)
    quota = [d for d in details if isinstance(d, error_details_pb2.QuotaFailure)]
    infos = [d for d in details if isinstance(d, error_details_pb2.ErrorInfo)]
    assert [(v.subject, v.description) for v in quota[0].violations] == [
        ("analyst/alice@county", "remaining epsilon 1/4")
    ]
    assert infos[0].reason == "BUDGET_EXHAUSTED" and dict(infos[0].metadata) == {"remaining": "1/4"}
    back = error_from_rpc(err)
    assert type(back) is BudgetExhausted
    assert (back.message, back.subject, back.remaining) == (original.message, original.subject, "1/4")


def test_resource_limit_is_resource_exhausted_without_quota(server: Server) -> None:
    """Property: ResourceLimit (too big / too busy) is RESOURCE_EXHAUSTED too, but comes back as
    ResourceLimit, not as a budget problem."""
    original = ResourceLimit("too many queries at once; retry in a few seconds")
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    [info] = _details(err)
    assert info.reason == "RESOURCE_LIMIT"
    back = error_from_rpc(err)
    assert type(back) is ResourceLimit and back.message == original.message


def test_partial_failure_is_unavailable_with_missing_nodes(server: Server) -> None:
    """Property: PartialFailure leaves as UNAVAILABLE with ErrorInfo NODES_MISSING whose metadata
    maps each missing node to its reason, and comes back as PartialFailure with that map."""
    missing = {"district-b": "unavailable", "county": "deadline exceeded"}
    original = PartialFailure("--require-all: district-b and county did not answer", missing)
    err = server.fail(original)
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    [info] = _details(err)
    assert info.reason == "NODES_MISSING" and dict(info.metadata) == missing
    back = error_from_rpc(err)
    assert type(back) is PartialFailure
    assert (back.message, back.missing) == (original.message, missing)


@pytest.mark.parametrize(
    ("cls", "code"),
    [(Unavailable, grpc.StatusCode.UNAVAILABLE), (DeadlineExceeded, grpc.StatusCode.DEADLINE_EXCEEDED)],
)
def test_transport_like_errors_keep_class_and_gain_the_peer(
    server: Server, cls: type[AccordError], code: grpc.StatusCode
) -> None:
    """Property: Unavailable and DeadlineExceeded leave with their own codes and come back as the
    same class; since these codes also come from the transport, the message is prefixed with the
    peer so the analyst knows which server it was (``"node county: <message>"``)."""
    original = cls("shutting down; retry in a minute")
    err = server.fail(original)
    assert err.code() is code
    assert err.details() == original.message
    back = error_from_rpc(err, peer="node county")
    assert type(back) is cls
    assert back.message == f"node county: {original.message}"


# ---- bugs leave as INTERNAL, saying nothing -------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda: RuntimeError(SECRET),
        lambda: KeyError(SECRET),
        lambda: ZeroDivisionError(SECRET),
        lambda: InternalError(SECRET),
        lambda: DataError(SECRET),
        lambda: ConfigError(SECRET),
        lambda: AccordError(SECRET),
    ],
    ids=[
        "RuntimeError",
        "KeyError",
        "ZeroDivisionError",
        "InternalError",
        "DataError",
        "ConfigError",
        "AccordError",
    ],
)
def test_internal_errors_leave_as_internal_with_a_constant_message(
    server: Server, make: Callable[[], BaseException], caplog: pytest.LogCaptureFixture
) -> None:
    """Property: an unexpected exception (or an Accord error that is not the caller's fault) leaves
    as INTERNAL with a constant message: its text, which may quote data, appears nowhere in the
    status, its details or the trailing metadata. The server log keeps the traceback."""
    with caplog.at_level(logging.ERROR, logger="accord.protos.rpcstatus"):
        err = server.fail(make)
    assert err.code() is grpc.StatusCode.INTERNAL
    assert err.details() == INTERNAL_MESSAGE
    status = rpc_status.from_call(err)
    assert status is not None and list(status.details) == []
    leaked = [
        k
        for k, v in err.trailing_metadata() or ()
        if SECRET.encode() in (v if isinstance(v, bytes) else v.encode())
    ]
    assert leaked == []
    back = error_from_rpc(err, peer="node county")
    assert type(back) is InternalError
    assert SECRET not in back.message and INTERNAL_MESSAGE in back.message
    # ... but the operator can find out what happened.
    assert any(
        SECRET in (r.exc_text or "") or SECRET in str(r.exc_info[1] if r.exc_info else "")
        for r in caplog.records
    )


# ---- statuses that did not come from rpc_boundary ------------------------------------------


class _Status(grpc.Status):
    def __init__(self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[Any, ...] = ()) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        (grpc.StatusCode.INVALID_ARGUMENT, InvalidQuery),
        (grpc.StatusCode.NOT_FOUND, NotFound),
        (grpc.StatusCode.PERMISSION_DENIED, PermissionDenied),
        (grpc.StatusCode.UNAUTHENTICATED, Unauthenticated),
        (grpc.StatusCode.RESOURCE_EXHAUSTED, ResourceLimit),
        (grpc.StatusCode.UNAVAILABLE, Unavailable),
        (grpc.StatusCode.DEADLINE_EXCEEDED, DeadlineExceeded),
        (grpc.StatusCode.CANCELLED, Unavailable),
        (grpc.StatusCode.UNKNOWN, InternalError),
        (grpc.StatusCode.UNIMPLEMENTED, InternalError),
        (grpc.StatusCode.FAILED_PRECONDITION, InternalError),
    ],
)
def test_plain_status_without_details_maps_by_code(
    server: Server, code: grpc.StatusCode, cls: type[AccordError]
) -> None:
    """Property: a plain status (no rich details, e.g. from gRPC itself or another server) still
    maps to the right class by its code, keeps the message, and names the code as the reason."""
    key = f"plain-{code.name}"
    server.servicer.statuses[key] = _Status(code, f"plain {code.name}")
    with pytest.raises(grpc.RpcError) as info:
        server.call("AbortWith", key)
    back = error_from_rpc(info.value, peer="node x")
    assert type(back) is cls
    assert f"plain {code.name}" in back.message
    if isinstance(back, InvalidQuery):
        assert back.violations == (Violation("query", back.message),)
    if isinstance(back, PermissionDenied):
        assert back.reason == code.name


def test_inconsistent_or_garbled_rich_details_do_not_raise(server: Server) -> None:
    """Property: a broken or hostile server whose rich details contradict its status (another
    code, another message) or are not a Status at all cannot make error_from_rpc raise: the
    client falls back to the code and message of the call."""
    other_code = status_pb2.Status(code=code_pb2.PERMISSION_DENIED, message="plain").SerializeToString()
    other_text = status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="different").SerializeToString()
    cases = {
        "other-code": other_code,
        "other-text": other_text,
        "garbage": b"\xff\xfe not a protobuf",
    }
    for key, blob in cases.items():
        server.servicer.statuses[key] = _Status(
            grpc.StatusCode.INVALID_ARGUMENT, "plain", (("grpc-status-details-bin", blob),)
        )
        with pytest.raises(grpc.RpcError) as info:
            server.call("AbortWith", key)
        back = error_from_rpc(info.value)
        assert type(back) is InvalidQuery, key
        assert back.message == "plain"


def test_client_deadline_becomes_deadline_exceeded(server: Server) -> None:
    """Property: a call that outlives its deadline comes back as DeadlineExceeded naming the peer."""
    with pytest.raises(grpc.RpcError) as info:
        server.call("Raise", "slow", timeout=0.2)
    back = error_from_rpc(info.value, peer="node county")
    assert type(back) is DeadlineExceeded
    assert back.message.startswith("node county: ")


def test_nobody_listening_becomes_unavailable(pki: TestPki) -> None:
    """Property: a server that is not there comes back as Unavailable naming the peer."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connections are refused
        channel = secure_channel(f"127.0.0.1:{port}", pki.coordinator, Identity("node", "county"))
        with channel, pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(f"/{SERVICE}/Raise")(b"ok", timeout=5)
    back = error_from_rpc(info.value, peer="node county")
    assert type(back) is Unavailable
    assert back.message.startswith("node county: ")


# ---- the mapping itself, over many messages (no server) -----------------------------------


class _FakeCall(grpc.RpcError, grpc.Call):  # type: ignore[misc]
    """What a client sees for a status, without the network (enough for error_from_rpc)."""

    def __init__(self, status: grpc.Status) -> None:
        self._status = status

    def code(self) -> grpc.StatusCode:
        return self._status.code

    def details(self) -> str:
        return str(self._status.details)

    def trailing_metadata(self) -> Any:
        return self._status.trailing_metadata

    def initial_metadata(self) -> Any:  # pragma: no cover
        return ()

    def is_active(self) -> bool:  # pragma: no cover
        return False

    def time_remaining(self) -> float | None:  # pragma: no cover
        return None

    def cancel(self) -> bool:  # pragma: no cover
        return False

    def add_callback(self, callback: Any) -> bool:  # pragma: no cover
        return False


TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=60)
METADATA = st.dictionaries(TEXT, TEXT, max_size=3)
VIOLATIONS = st.lists(st.builds(Violation, TEXT, TEXT), min_size=1, max_size=3).map(tuple)
ERRORS = st.one_of(
    st.builds(InvalidQuery, TEXT, VIOLATIONS),
    st.builds(NotFound, TEXT, VIOLATIONS),
    st.builds(PermissionDenied, TEXT, TEXT, METADATA),
    st.builds(Unauthenticated, TEXT, TEXT, METADATA),
    st.builds(BudgetExhausted, TEXT, TEXT, TEXT),
    st.builds(ResourceLimit, TEXT),
    st.builds(PartialFailure, TEXT, METADATA),
)


def _fields(err: AccordError) -> dict[str, Any]:
    return {k: v for k, v in vars(err).items() if not k.startswith("_")}


@settings(max_examples=200)
@given(ERRORS)
def test_rich_errors_round_trip_exactly(err: AccordError) -> None:
    """Property: for every user-facing error class, to_status then error_from_rpc gives back the
    same class with the same message and the same structured fields (violations, reason,
    metadata, subject, remaining, missing)."""
    back = error_from_rpc(_FakeCall(to_status(err)))
    assert type(back) is type(err)
    assert _fields(back) == _fields(err)
