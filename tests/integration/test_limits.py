"""Resource limits of the real servers: message and SQL sizes, bursts beyond the allowed
concurrency, deadlines on every outgoing call, and graceful shutdown.

Servers are started in-process from TOML (``tests.integration.federation``) on ``127.0.0.1:0``;
one test runs ``accord node serve`` as a child process. Slow queries are made deterministic with
an :class:`EngineGate`: the node engine's ``execute`` is patched to report that it started and
then wait until the test opens the gate, so "in flight" means exactly that, without sleeps.
Every server, channel, thread and process started here is stopped in a ``finally`` block.
"""

from __future__ import annotations

import ast
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status

from accord.coordinator import client as coordinator_client
from accord.coordinator import nodes as coordinator_nodes
from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import SERVICE_NAME as COORDINATOR_SERVICE
from accord.coordinator.server import start_coordinator
from accord.errors import ResourceLimit
from accord.node.duckdb.engine import Engine
from accord.node.server import SERVICE_NAME as NODE_SERVICE
from accord.policies.identity import Identity
from accord.protos import convert
from accord.protos.v1 import coordinator_pb2_grpc, node_pb2, node_pb2_grpc
from accord.query.sql import MAX_SQL_LENGTH
from accord.rpc.serving import RunningServer
from accord.rpc.transport import MAX_MESSAGE_BYTES, TlsFiles, secure_channel
from tests.conftest import TestPki
from tests.integration.federation import (
    LISTEN,
    PUMS_PID,
    TIMEOUT,
    Federation,
    coordinator_config,
    copy_census,
    link_certs,
    node_config,
    pums_dataset,
    start_nodes,
    write,
    write_coordinator,
    write_node,
)
from tests.signing import answer_request, sign, submit_request

ROOT = Path(__file__).resolve().parents[2]
SQL = "SELECT COUNT(*) FROM pums"
BURST = 50
HEALTH_DEADLINE = 2.0  # a health check slower than this counts as not answering
CALL_DEADLINE = 2 * TIMEOUT  # burst calls outlive the test's own wait for their refusals
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
# A separate connection per channel: the health prober must not share the burst's connection.
OWN_CONNECTION = [("grpc.use_local_subchannel_pool", 1)]
# Lets a test client send more than the servers accept, to test the servers' own bound.
UNBOUNDED_SEND = [("grpc.max_send_message_length", 4 * MAX_MESSAGE_BYTES)]


# ---- helpers -----------------------------------------------------------------------------------


@dataclass
class EngineGate:
    """Holds every query at the node engine until :meth:`open` (see the module docstring)."""

    released: threading.Event = field(default_factory=threading.Event)
    _entered: int = 0
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def enter(self) -> None:
        with self._cond:
            self._entered += 1
            self._cond.notify_all()
        if not self.released.wait(3 * TIMEOUT):  # longer than any wait of the test itself
            raise AssertionError("the test never opened the engine gate")

    def wait_entered(self, n: int) -> None:
        """Block until ``n`` queries are being executed (held at the gate)."""
        with self._cond:
            assert self._cond.wait_for(lambda: self._entered >= n, TIMEOUT), f"{self._entered} < {n}"

    @property
    def entered(self) -> int:
        with self._cond:
            return self._entered

    def open(self) -> None:
        self.released.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[EngineGate]:
    """Patch :meth:`node.duckdb.engine.Engine.execute` (for every in-process node) to wait at a gate."""
    held = EngineGate()
    execute = Engine.execute

    def gated(self: Engine, *args: Any, **kwargs: Any) -> Any:
        held.enter()
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(Engine, "execute", gated)
    try:
        yield held
    finally:
        held.open()  # never leave a server thread waiting


def census_root(root: Path, pki: TestPki) -> Path:
    link_certs(root, pki)
    copy_census(root, PUMS_PID)
    return root


def county_config(root: Path, **node_keys: int) -> Path:
    """``county.toml`` over the census sample, with other ``[node]`` settings (e.g. ``max_workers``)."""
    return write_node(root, node_config(root, "county", [pums_dataset(root, "pums", PUMS_PID)], **node_keys))


def start_county(root: Path, **node_keys: int) -> RunningServer:
    return start_nodes({"county": county_config(root, **node_keys)})["county"]


def start_small_federation(
    root: Path, pki: TestPki, node_keys: dict[str, int], coordinator_keys: dict[str, int]
) -> Federation:
    """county (with ``node_keys``) and a coordinator (with ``coordinator_keys`` in [coordinator])."""
    nodes = start_nodes({"county": county_config(root, **node_keys)})
    try:
        wanted = coordinator_config(root, {"county": f"127.0.0.1:{nodes['county'].port}"}, **coordinator_keys)
        config = load_coordinator_config(write_coordinator(root, wanted))
        for key, value in coordinator_keys.items():
            assert getattr(config, key) == value
        running, service = start_coordinator(config, listen=LISTEN)
    except BaseException:
        nodes["county"].stop(grace=0)
        raise
    return Federation(root, pki, nodes, running, service)


def request_pb(pki: TestPki, kind: str = "node", sql: str = SQL) -> Any:
    """A query signed by analyst alice, as the ``kind`` server ("node" or "coordinator") takes it."""
    signed = sign(pki.analyst(), sql)
    return answer_request(signed) if kind == "node" else submit_request(signed)


def rich_details(err: grpc.RpcError) -> list[Any]:
    status = rpc_status.from_call(err)
    assert status is not None, f"no rich status on {err.code()}: {err.details()}"
    out: list[Any] = []
    for detail in status.details:
        for cls in (error_details_pb2.BadRequest, error_details_pb2.ErrorInfo):
            if detail.Is(cls.DESCRIPTOR):
                msg = cls()
                detail.Unpack(msg)
                out.append(msg)
    return out


def failure(call: Callable[..., Any], request: Any) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as info:
        call(request, timeout=TIMEOUT)
    return info.value


class HealthProber:
    """Calls health ``Check`` over its own connection in a loop until stopped; records outcomes."""

    def __init__(self, address: str, tls: TlsFiles, server: Identity, service: str) -> None:
        self._channel = secure_channel(address, tls, server, options=OWN_CONNECTION)
        self._stub = health_pb2_grpc.HealthStub(self._channel)
        self._request = health_pb2.HealthCheckRequest(service=service)
        self._stop = threading.Event()
        self.outcomes: list[Any] = []
        self._stub.Check(self._request, timeout=TIMEOUT)  # connected before the burst starts
        self._thread = threading.Thread(target=self._run, name="health-prober")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.outcomes.append(self._stub.Check(self._request, timeout=HEALTH_DEADLINE).status)
            except grpc.RpcError as err:
                self.outcomes.append(f"{err.code().name}: {err.details()}")

    def stop(self) -> list[Any]:
        self._stop.set()
        self._thread.join(TIMEOUT)
        self._channel.close()
        return self.outcomes


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)


def run_burst(
    start_call: Callable[[], grpc.Future], gate: EngineGate, admitted: int, prober: HealthProber
) -> Counter[str]:
    """Fire :data:`BURST` calls at once while the gate is closed. Exactly ``admitted`` of them may
    reach the engine; every other one must be refused *while the gate is still closed* (so
    promptly, not after the admitted ones finish). Then open the gate; every call must end.
    Returns the outcomes: "OK" or "CODE: details"."""
    futures = [start_call() for _ in range(BURST)]
    gate.wait_entered(admitted)
    wait_for(lambda: sum(f.done() for f in futures) >= BURST - admitted, "the refusals")
    assert gate.entered == admitted
    assert sum(f.done() for f in futures) == BURST - admitted
    health = prober.stop()  # it probed during the whole burst
    gate.open()
    outcomes: Counter[str] = Counter()
    for f in futures:
        try:
            f.result(timeout=TIMEOUT)
            outcomes["OK"] += 1
        except grpc.RpcError as err:
            outcomes[f"{err.code().name}: {err.details()}"] += 1
    assert health and set(health) == {SERVING}, Counter(map(str, health))
    return outcomes


# ---- (a) sizes ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_fed(pki: TestPki, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Federation]:
    root = census_root(tmp_path_factory.mktemp("limits-federation"), pki)
    fed = start_small_federation(root, pki, {}, {})
    try:
        yield fed
    finally:
        fed.stop()


def _query_stub(fed: Federation, kind: str, options: Sequence[tuple[str, Any]] = ()) -> tuple[Any, Any]:
    """(channel, Answer or Submit) of ``kind`` ("node" or "coordinator"), called as its valid caller."""
    if kind == "node":
        channel = secure_channel(
            fed.node_address("county"), fed.pki.coordinator, Identity("node", "county"), options
        )
        return channel, node_pb2_grpc.NodeServiceStub(channel).Answer
    channel = secure_channel(fed.address, fed.pki.analyst(), Identity("coordinator", "coordinator"), options)
    return channel, coordinator_pb2_grpc.CoordinatorServiceStub(channel).Submit


@pytest.mark.parametrize("kind", ["node", "coordinator"])
def test_request_over_the_message_limit_is_resource_exhausted(small_fed: Federation, kind: str) -> None:
    """Property: a request larger than MAX_MESSAGE_BYTES (4 MiB) is refused by gRPC itself with
    RESOURCE_EXHAUSTED before any handler runs, on the node and on the coordinator, and the
    server keeps answering normal requests afterwards."""
    huge = request_pb(
        small_fed.pki, kind, "SELECT COUNT(*) FROM pums WHERE age > 1" + " " * MAX_MESSAGE_BYTES
    )
    assert huge.ByteSize() > MAX_MESSAGE_BYTES
    channel, call = _query_stub(small_fed, kind, UNBOUNDED_SEND)
    with channel:
        err = failure(call, huge)
        assert err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.details()
        assert "larger than max" in err.details()
        assert call(request_pb(small_fed.pki, kind), timeout=TIMEOUT).ByteSize() > 0


def test_analyst_client_does_not_send_an_oversized_request(small_fed: Federation) -> None:
    """Property: the analyst client bounds what it sends too: an SQL text over 4 MiB fails locally
    as ResourceLimit (RESOURCE_EXHAUSTED), it is not pushed to the coordinator."""
    with small_fed.client() as client, pytest.raises(ResourceLimit, match="Sent message larger than max"):
        client.query_release(SQL + " " * MAX_MESSAGE_BYTES, "1")


@pytest.mark.parametrize("kind", ["node", "coordinator"])
def test_sql_over_the_length_limit_is_invalid_argument(small_fed: Federation, kind: str) -> None:
    """Property: SQL longer than MAX_SQL_LENGTH but within the message limit is refused with
    INVALID_ARGUMENT whose message names the limit and whose BadRequest names the field ``sql``."""
    sql = SQL + " WHERE age > 1" + " " * MAX_SQL_LENGTH
    assert MAX_SQL_LENGTH < len(sql) < MAX_MESSAGE_BYTES
    channel, call = _query_stub(small_fed, kind)
    with channel:
        err = failure(call, request_pb(small_fed.pki, kind, sql))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert f"the limit is {MAX_SQL_LENGTH}" in err.details()
    [bad] = [d for d in rich_details(err) if isinstance(d, error_details_pb2.BadRequest)]
    assert [v.field for v in bad.field_violations] == ["sql"]


# ---- (b) bursts --------------------------------------------------------------------------------


def _is_clean_refusal(outcome: str) -> bool:
    return outcome.startswith("RESOURCE_EXHAUSTED: ") and "retry shortly" in outcome


def test_node_burst_is_refused_cleanly_while_health_answers(
    pki: TestPki, tmp_path: Path, gate: EngineGate
) -> None:
    """Property: a node allowing 1 query and 4 RPCs at once, hit by 50 simultaneous queries,
    runs exactly one and refuses the other 49 at once with RESOURCE_EXHAUSTED saying to retry
    (no hang, no other status); meanwhile health checks on another connection keep answering
    SERVING within their deadline."""
    running = start_county(census_root(tmp_path, pki), max_workers=1, max_concurrent_rpcs=4)
    address = f"127.0.0.1:{running.port}"
    try:
        prober = HealthProber(address, pki.coordinator, Identity("node", "county"), NODE_SERVICE)
        with secure_channel(address, pki.coordinator, Identity("node", "county")) as channel:
            stub = node_pb2_grpc.NodeServiceStub(channel)
            outcomes = run_burst(
                lambda: stub.Answer.future(request_pb(pki), timeout=CALL_DEADLINE), gate, 1, prober
            )
    finally:
        running.stop(grace=0)
    assert outcomes["OK"] == 1
    refused = {o: n for o, n in outcomes.items() if o != "OK"}
    assert sum(refused.values()) == BURST - 1
    assert all(_is_clean_refusal(o) for o in refused), refused


def test_coordinator_burst_is_refused_cleanly_while_health_answers(
    pki: TestPki, tmp_path: Path, gate: EngineGate
) -> None:
    """Property: a coordinator configured with max_in_flight 2 and max_workers 2, hit by 50
    simultaneous queries while its node is slow, runs exactly two and refuses the other 48 at
    once with RESOURCE_EXHAUSTED saying to retry (the server keeps worker threads beyond its call
    limit, so extra calls are refused, not queued behind the slow ones); its health checks keep
    answering SERVING."""
    fed = start_small_federation(
        census_root(tmp_path, pki), pki, {"max_workers": 4}, {"max_workers": 2, "max_in_flight": 2}
    )
    try:
        with fed.client() as client:
            assert "pums" in client.catalog()  # the node's catalog is cached before the burst
        prober = HealthProber(
            fed.address, pki.analyst(), Identity("coordinator", "coordinator"), COORDINATOR_SERVICE
        )
        channel, stub = fed.coordinator_stub()
        with channel:
            outcomes = run_burst(
                lambda: stub.Submit.future(request_pb(pki, "coordinator"), timeout=CALL_DEADLINE),
                gate,
                2,
                prober,
            )
    finally:
        fed.stop()
    assert outcomes["OK"] == 2
    refused = {o: n for o, n in outcomes.items() if o != "OK"}
    assert sum(refused.values()) == BURST - 2
    assert all(_is_clean_refusal(o) for o in refused), refused


# ---- (c) deadlines -----------------------------------------------------------------------------


class _Recorder(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
    """Records (method, timeout) of every call made through an intercepted channel."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, float | None]] = []
        self._lock = threading.Lock()

    def _record(self, details: Any) -> None:
        with self._lock:
            self.calls.append((str(details.method), details.timeout))

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        self._record(details)
        return continuation(details, request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        self._record(details)
        return continuation(details, request)


def test_every_outgoing_call_carries_a_deadline(
    pki: TestPki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Property: every RPC the coordinator makes to its nodes (GetCatalog, Answer) and every RPC
    the analyst client makes (Submit, GetCatalog, ListNodes) carries a deadline, and no deadline
    is longer than the configured one (the coordinator's deadline_seconds for node queries, the
    catalog deadline for catalogs, the caller's timeout for analyst calls)."""
    recorder = _Recorder()

    def recorded(*args: Any, **kwargs: Any) -> grpc.Channel:
        return grpc.intercept_channel(secure_channel(*args, **kwargs), recorder)

    monkeypatch.setattr(coordinator_nodes, "secure_channel", recorded)
    monkeypatch.setattr(coordinator_client, "secure_channel", recorded)
    fed = start_small_federation(census_root(tmp_path, pki), pki, {}, {})
    try:
        with fed.client() as client:
            client.catalog(timeout=7)
            client.nodes(timeout=7)
            client.query_release(SQL, "1", timeout=9)
    finally:
        fed.stop()
    limits = {
        "/accord.v1.NodeService/GetCatalog": coordinator_nodes.CATALOG_DEADLINE_SECONDS,
        "/accord.v1.NodeService/Answer": fed.service.config.deadline_seconds,
        "/accord.v1.CoordinatorService/GetCatalog": 7,
        "/accord.v1.CoordinatorService/ListNodes": 7,
        "/accord.v1.CoordinatorService/Submit": 9,
    }
    assert {m for m, _ in recorder.calls} == set(limits)
    for method, timeout in recorder.calls:
        assert timeout is not None, f"{method} was called without a deadline"
        assert 0 < timeout <= limits[method], (method, timeout)


_RAW_MULTI_CALLABLES = {"unary_unary", "unary_stream", "stream_unary", "stream_stream"}


def _last_name(node: ast.AST) -> str:
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""


def _is_stub_method(node: ast.AST) -> bool:
    """``<stub>.Method``: the multi-callable of one RPC on a generated stub (``stub``, ``self._stub``)."""
    return (
        isinstance(node, ast.Attribute)
        and "stub" in _last_name(node.value).lower()
        and "stub" not in node.attr.lower()
    )


class _DeadlineCheck:
    """Follows every use of a generated stub method in one module and reports any RPC that could
    be made without ``timeout=``.

    An RPC reference may be called (``M(req, timeout=...)``, ``M.future(...)``,
    ``M.with_call(...)``) or passed as an argument to a function of the same module; then every
    use of that parameter inside the function is followed the same way. Any other use (storing
    it, passing it elsewhere, raw ``channel.unary_unary``) is reported, since this check could not
    follow it.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.tree = ast.parse(path.read_text(encoding="utf-8"))
        self.parents = {child: node for node in ast.walk(self.tree) for child in ast.iter_child_nodes(node)}
        self.functions = {
            f.name: f for f in ast.walk(self.tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
        }
        self.problems: list[str] = []
        self.rpcs: set[str] = set()
        self._followed: set[tuple[str, str]] = set()
        for node in ast.walk(self.tree):
            if _is_stub_method(node):
                assert isinstance(node, ast.Attribute)
                self.rpcs.add(node.attr)
                self._use(node, ast.unparse(node))
            call = self.parents.get(node)
            raw = isinstance(node, ast.Attribute) and node.attr in _RAW_MULTI_CALLABLES
            if raw and isinstance(call, ast.Call) and call.func is node:
                self._problem(node, f"raw multi-callable {ast.unparse(node)}(); use the generated stub")

    def _problem(self, node: ast.AST, what: str) -> None:
        shown = self.path.relative_to(ROOT) if self.path.is_relative_to(ROOT) else self.path.name
        self.problems.append(f"{shown}:{getattr(node, 'lineno', '?')}: {what}")

    def _use(self, ref: ast.expr, what: str) -> None:
        parent = self.parents.get(ref)
        if isinstance(parent, ast.Attribute) and parent.attr in {"future", "with_call"}:
            ref, parent = parent, self.parents.get(parent)
        if isinstance(parent, ast.Call) and parent.func is ref:
            if not any(k.arg == "timeout" for k in parent.keywords):
                self._problem(parent, f"{ast.unparse(parent.func)}(...) calls {what} without timeout=")
            return
        if isinstance(parent, ast.Call) and ref in parent.args:
            self._follow(parent, parent.args.index(ref), what)
            return
        self._problem(ref, f"{what} is used in a way this check cannot follow")

    def _follow(self, call: ast.Call, index: int, what: str) -> None:
        callee = self.functions.get(_last_name(call.func))
        if callee is None:
            self._problem(call, f"{what} is passed to {ast.unparse(call.func)}, which is not in this module")
            return
        params = [a.arg for a in callee.args.args]
        bound = isinstance(call.func, ast.Attribute) and params[:1] in (["self"], ["cls"])
        param = params[index + bound]
        if (callee.name, param) in self._followed:
            return
        self._followed.add((callee.name, param))
        uses = [
            n
            for n in ast.walk(callee)
            if isinstance(n, ast.Name) and n.id == param and isinstance(n.ctx, ast.Load)
        ]
        if not uses:
            self._problem(callee, f"{callee.name} never uses its parameter {param}")
        for use in uses:
            self._use(use, f"{what} (as {callee.name}'s {param})")


def test_every_stub_call_in_the_source_passes_a_timeout() -> None:
    """Property: statically, every call of a generated stub method in the production packages
    passes ``timeout=`` (directly, or through a helper that does), so no RPC can wait forever;
    the check sees all the RPCs the coordinator and the analyst client make."""
    problems: list[str] = []
    seen: set[str] = set()
    for package in ("protos", "policies", "node", "coordinator"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if "_pb2" not in path.name:
                check = _DeadlineCheck(path)
                problems += check.problems
                seen |= check.rpcs
    assert problems == []
    assert seen >= {"Answer", "GetCatalog", "Submit", "ListNodes"}, seen


_UNSAFE_CLIENT = """
class Client:
    def __init__(self, channel):
        self._stub = Stub(channel)
        self._kept = self._stub.Kept  # stored: cannot be followed

    def plain(self):
        return self._stub.Plain(request)

    def future(self):
        return self._stub.Later.future(request)

    def helper_ok(self):
        return self._call(self._stub.Fine, request, 5)

    def helper_bad(self):
        return self._relay(self._stub.Relayed, request)

    def _call(self, method, request, timeout):
        return method.with_call(request, timeout=timeout)

    def _relay(self, method, request):
        return self._call(method, request, 1) or method(request)

    def raw(self, channel):
        return channel.unary_unary("/x.Y/Z")(b"", timeout=1)
"""


def test_the_deadline_check_finds_calls_without_timeout(tmp_path: Path) -> None:
    """Property: the static deadline check is not vacuous: it reports a direct call, a future, a
    call through a helper without timeout=, a stored stub method and a raw multi-callable, and
    accepts a call through a helper that passes timeout=."""
    check = _DeadlineCheck(write(tmp_path / "client.py", _UNSAFE_CLIENT))
    reported = "\n".join(check.problems)
    assert len(check.problems) == 5, reported
    for fragment in ("self._stub.Kept is used", "self._stub.Plain(...)", "self._stub.Later.future(...)"):
        assert fragment in reported
    assert "method(...) calls self._stub.Relayed (as _relay's method) without timeout=" in reported
    assert "raw multi-callable channel.unary_unary()" in reported
    assert "Fine" not in reported
    assert check.rpcs == {"Kept", "Plain", "Later", "Fine", "Relayed"}


# ---- (d) graceful shutdown ---------------------------------------------------------------------


class _StopSpy:
    """Stands in for a grpc.Server: before the real ``stop`` it asks the server's health (over the
    wire, while the server still accepts calls) and records the answer; then sets ``stopping``."""

    def __init__(self, server: Any, check: Callable[[], Any]) -> None:
        self._server = server
        self._check = check
        self.status_when_stop_began: Any = None
        self.stopping = threading.Event()

    def stop(self, grace: float | None) -> Any:
        self.status_when_stop_began = self._check()
        event = self._server.stop(grace)
        self.stopping.set()
        return event

    def __getattr__(self, name: str) -> Any:
        return getattr(self._server, name)


def test_node_shutdown_reports_not_serving_first_and_finishes_in_flight_queries(
    pki: TestPki, tmp_path: Path, gate: EngineGate
) -> None:
    """Property: RunningServer.stop on a node with a query in flight (1) reports NOT_SERVING before
    it stops accepting calls (a Check made as stop begins says NOT_SERVING; a Watch opened earlier
    sees NOT_SERVING while the query is still running), (2) refuses new calls with UNAVAILABLE, and
    (3) lets the in-flight query finish with its release, then returns."""
    running = start_county(census_root(tmp_path, pki), max_workers=2)
    real_server = running.server
    address = f"127.0.0.1:{running.port}"
    stopper: threading.Thread | None = None
    try:
        with (
            secure_channel(address, pki.coordinator, Identity("node", "county")) as channel,
            secure_channel(
                address, pki.coordinator, Identity("node", "county"), OWN_CONNECTION
            ) as probe_channel,
        ):
            stub = node_pb2_grpc.NodeServiceStub(channel)
            health_stub = health_pb2_grpc.HealthStub(channel)
            probe = health_pb2_grpc.HealthStub(probe_channel)
            request = health_pb2.HealthCheckRequest(service=NODE_SERVICE)
            assert probe.Check(request, timeout=TIMEOUT).status == SERVING
            spy = _StopSpy(running.server, lambda: probe.Check(request, timeout=TIMEOUT).status)
            running.server = spy
            watch = health_stub.Watch(request, timeout=TIMEOUT)
            assert next(watch).status == SERVING
            in_flight = stub.Answer.future(request_pb(pki), timeout=TIMEOUT)
            gate.wait_entered(1)

            stopper = threading.Thread(target=running.stop, kwargs={"grace": TIMEOUT}, name="stopper")
            stopper.start()
            assert next(watch).status == NOT_SERVING
            watch.cancel()  # an open Watch is an in-flight call too: it would hold stop for the grace
            assert not in_flight.done()
            assert spy.stopping.wait(TIMEOUT)
            assert spy.status_when_stop_began == NOT_SERVING
            with secure_channel(address, pki.coordinator, Identity("node", "county"), OWN_CONNECTION) as late:
                err = failure(node_pb2_grpc.NodeServiceStub(late).GetCatalog, node_pb2.GetCatalogRequest())
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
            err = failure(stub.Answer, request_pb(pki))
            assert err.code() == grpc.StatusCode.UNAVAILABLE, err.details()
            assert not in_flight.done() and stopper.is_alive()

            gate.open()
            release = convert.release_from_pb(in_flight.result(timeout=TIMEOUT))
            assert release.node == "county"
            stopper.join(TIMEOUT)
            assert not stopper.is_alive()
    finally:
        gate.open()
        if stopper is not None:
            stopper.join(TIMEOUT)
        running.server = real_server
        running.stop(grace=0)


_LAUNCHER = '''
"""`accord node serve` with the engine held at a FIFO: prints ENGINE ENTERED, then waits."""
import sys

from accord.node.duckdb.engine import Engine
from accord.cli import main

fifo = sys.argv[1]
execute = Engine.execute


def gated(self, *args, **kwargs):
    print("ENGINE ENTERED", flush=True)
    with open(fifo, encoding="utf-8") as gate:  # blocks until the test opens it for writing
        gate.read()
    return execute(self, *args, **kwargs)


Engine.execute = gated
sys.exit(main(["node", "serve", "--config", sys.argv[2]]))
'''


def _expect_line(lines: queue.Queue[str], text: str, log: list[str]) -> str:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=deadline - time.monotonic())
        except queue.Empty:
            break
        log.append(line)
        if text in line:
            return line
    raise AssertionError(f"no {text!r} line; output so far:\n{''.join(log)}")


def test_sigterm_to_node_process_finishes_the_in_flight_query_and_exits_zero(
    pki: TestPki, tmp_path: Path
) -> None:
    """Property: SIGTERM to a node process (the `accord node serve` code path, in a child
    process) while a query is in flight makes it report NOT_SERVING, answer that query with its
    release, and exit with status 0."""
    root = census_root(tmp_path, pki)
    config = county_config(root)
    config.write_text(config.read_text().replace('"127.0.0.1:50051"', '"127.0.0.1:0"'), encoding="utf-8")
    launcher = write(root / "launcher.py", _LAUNCHER)
    fifo = root / "gate.fifo"
    os.mkfifo(fifo)
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, str(launcher), str(fifo), str(config)],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    log: list[str] = []
    assert proc.stdout is not None
    stream = proc.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    try:
        port = int(_expect_line(lines, "listening on port", log).rsplit(" ", 1)[1])
        address = f"127.0.0.1:{port}"
        with secure_channel(address, pki.coordinator, Identity("node", "county")) as channel:
            request = health_pb2.HealthCheckRequest(service=NODE_SERVICE)
            watch = health_pb2_grpc.HealthStub(channel).Watch(request, timeout=60)
            assert next(watch).status == SERVING
            in_flight = node_pb2_grpc.NodeServiceStub(channel).Answer.future(request_pb(pki), timeout=60)
            _expect_line(lines, "ENGINE ENTERED", log)
            proc.send_signal(signal.SIGTERM)
            assert next(watch).status == NOT_SERVING
            assert not in_flight.done() and proc.poll() is None
            with open(fifo, "w", encoding="utf-8") as gate:
                gate.write("go")
            release = convert.release_from_pb(in_flight.result(timeout=60))
            assert release.node == "county"
            watch.cancel()
        assert proc.wait(60) == 0, "".join(log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
