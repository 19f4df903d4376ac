"""Running a gRPC server the way both Accord servers need it.

Both the node and the coordinator: listen only on an mTLS port that requires client
certificates; bound message sizes and concurrent RPCs; expose the standard health service and
server reflection; and on SIGTERM/SIGINT report ``NOT_SERVING`` first, then stop accepting calls
and let in-flight ones finish within a grace period.

Concurrent RPCs are bounded by :class:`_CallLimit`, not by grpc's ``maximum_concurrent_rpcs``:
grpc counts health checks too, so a burst of queries would make the load balancer's probes fail
(``RESOURCE_EXHAUSTED "Concurrent RPC limit exceeded!"``) exactly when the server is merely busy.
Health checks are never counted, and the worker pool keeps threads beyond the limit, so they are
answered however busy the server is; every other call beyond the limit is refused at once with
``RESOURCE_EXHAUSTED`` and a message saying to retry.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent import futures
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc
from cryptography import x509
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from accord.errors import ConfigError, ResourceLimit
from accord.policies.identity import Identity
from accord.policies.revocation import CrlFile
from accord.protos.rpcstatus import to_status
from accord.rpc.around import around_each_call
from accord.rpc.callers import CallerGate
from accord.rpc.fairness import BUSY_RETRY_SECONDS
from accord.rpc.transport import MAX_MESSAGE_BYTES, TlsFiles, check_certificate_files, server_credentials

__all__ = [
    "SHUTDOWN_GRACE_SECONDS",
    "SPARE_WORKERS",
    "RunningServer",
    "ServiceBinding",
    "open_crl",
    "serve_until_signal",
    "start_server",
]


log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0
SPARE_WORKERS = 4
"""Worker threads kept beyond ``max_concurrent_rpcs``, so that extra calls are refused at once."""
_HEALTH_PREFIX = f"/{health.SERVICE_NAME}/"


@dataclass(frozen=True)
class ServiceBinding:
    """One service to serve: its full name and a function that registers it on a server."""

    name: str
    register: Callable[[grpc.Server], None]


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    service_names: tuple[str, ...]
    on_stop: Callable[[], None] | None = None
    """Run once the server has stopped (closes what the service holds: files, locks)."""

    def set_serving(self, serving: bool) -> None:
        status = (
            health_pb2.HealthCheckResponse.SERVING if serving else health_pb2.HealthCheckResponse.NOT_SERVING
        )
        for name in ("", *self.service_names):
            self.health.set(name, status)

    def stop(self, grace: float = SHUTDOWN_GRACE_SECONDS) -> None:
        """Report NOT_SERVING, refuse new calls and wait up to ``grace`` s for in-flight ones."""
        self.set_serving(False)
        self.server.stop(grace).wait()
        closing, self.on_stop = self.on_stop, None
        if closing is not None:
            closing()


class _CallLimit(grpc.ServerInterceptor):  # type: ignore[misc]
    """At most ``limit`` calls (health checks not counted) run at once; more are refused at once.

    A call is counted from the moment a worker thread starts it until it returns (a streaming
    call: until its last message). Calls waiting for a worker are not counted: a slot taken
    before the worker starts would leak whenever gRPC drops the call first (client cancelled,
    undecodable request). :func:`start_server` keeps :data:`SPARE_WORKERS` threads beyond the
    limit, so waiting is brief and extra calls are refused rather than queued.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._slots = threading.BoundedSemaphore(limit)

    def intercept_service(self, continuation: Callable[[Any], Any], details: Any) -> Any:
        handler = continuation(details)
        if handler is None or str(details.method).startswith(_HEALTH_PREFIX):
            return handler
        return around_each_call(handler, self._enter, self._slots.release)

    def _enter(self, context: grpc.ServicerContext) -> None:
        if not self._slots.acquire(blocking=False):
            busy = ResourceLimit(
                f"the server is already handling {self._limit} calls; retry shortly",
                retry_after_seconds=BUSY_RETRY_SECONDS,
            )
            context.abort_with_status(to_status(busy))


def start_server(
    bindings: Sequence[ServiceBinding],
    listen: str,
    tls: TlsFiles,
    *,
    serves_as: Identity,
    callers: frozenset[str],
    service_callers: Mapping[str, frozenset[str]] | None = None,
    max_workers: int = 16,
    max_concurrent_rpcs: int = 64,
    on_stop: Callable[[], None] | None = None,
) -> RunningServer:
    """Start serving ``bindings`` on ``listen`` (``host:port``; port 0 picks a free one) over mTLS.

    The certificate in ``tls`` must be ``serves_as``'s, with the DNS name clients verify (checked
    before serving). Every call, health and reflection included, must come from one of the roles
    in ``callers`` (or, for a service named in ``service_callers``, one of its roles) with a
    certificate not on the CRL of ``tls.crl`` (see :class:`CallerGate`).
    At most ``max_concurrent_rpcs`` calls other than health checks run at once (see
    :class:`_CallLimit`); the worker pool has ``max_workers`` threads, raised if needed to
    ``max_concurrent_rpcs`` + :data:`SPARE_WORKERS` so that extra calls are refused, not queued.
    """
    check_certificate_files(tls, expected=serves_as)
    crl = open_crl(tls)
    workers = max(max_workers, max_concurrent_rpcs + SPARE_WORKERS)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="accord-rpc"),
        interceptors=[CallerGate(callers, crl, service_callers), _CallLimit(max_concurrent_rpcs)],
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    for binding in bindings:
        binding.register(server)
    # Watch streams run on a small pool of their own; Check is answered by the spare workers,
    # which _CallLimit never lets other calls occupy.
    health_servicer = health.HealthServicer(
        experimental_non_blocking=True,
        experimental_thread_pool=futures.ThreadPoolExecutor(
            max_workers=2, thread_name_prefix="accord-health"
        ),
    )
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = tuple(b.name for b in bindings)
    reflection.enable_server_reflection((*names, health.SERVICE_NAME, reflection.SERVICE_NAME), server)
    try:
        port = server.add_secure_port(listen, server_credentials(tls))
    except RuntimeError as err:
        raise ConfigError(f"cannot listen on {listen}: {err}; choose a free host:port") from None
    if port == 0:
        raise ConfigError(f"cannot listen on {listen}; is the port in use or the address wrong?")
    server.start()
    running = RunningServer(server, port, health_servicer, names, on_stop)
    running.set_serving(True)
    return running


def open_crl(tls: TlsFiles) -> CrlFile | None:
    """The CRL ``tls`` names, checked against its CA and kept current; None when it names none."""
    if tls.crl is None:
        return None
    try:
        cas = x509.load_pem_x509_certificates(tls.read().ca)
    except ValueError:
        raise ConfigError(f"{tls.ca} is not a PEM certificate; point [tls] ca at the federation CA") from None
    crl = CrlFile(tls.crl, cas)
    own = x509.load_pem_x509_certificate(tls.read().cert)
    if crl.revokes(own):
        raise ConfigError(
            f"certificate {tls.cert} is on the revocation list {tls.crl}; install the certificate issued "
            "to replace it (`accord pki issue`)"
        )
    return crl


def serve_until_signal(running: RunningServer, on_stop: Callable[[], None] | None = None) -> None:
    """Block until SIGTERM or SIGINT, then shut down gracefully."""
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        log.info("signal %s received: shutting down", signal.Signals(signum).name)
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous[sig] = signal.signal(sig, handle)
    try:
        stop.wait()
    finally:
        running.stop()
        if on_stop is not None:
            on_stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
