"""Running a gRPC server the way both Accord servers need it.

Both the node and the coordinator: listen only on an mTLS port that requires client
certificates; bound message sizes and concurrent RPCs; expose the standard health service and
server reflection; and on SIGTERM/SIGINT report ``NOT_SERVING`` first, then stop accepting calls
and let in-flight ones finish within a grace period.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from types import FrameType
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from protos.errors import ConfigError
from protos.transport import MAX_MESSAGE_BYTES, TlsFiles, check_certificate_files, server_credentials

log = logging.getLogger(__name__)

SHUTDOWN_GRACE_SECONDS = 10.0


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


def start_server(
    bindings: Sequence[ServiceBinding],
    listen: str,
    tls: TlsFiles,
    max_workers: int = 16,
    max_concurrent_rpcs: int = 64,
) -> RunningServer:
    """Start serving ``bindings`` on ``listen`` (``host:port``; port 0 picks a free one) over mTLS."""
    check_certificate_files(tls)
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="accord-rpc"),
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    for binding in bindings:
        binding.register(server)
    # The health service gets its own small thread pool so that it answers even when every
    # worker thread is busy with queries.
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
    running = RunningServer(server, port, health_servicer, names)
    running.set_serving(True)
    return running


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
