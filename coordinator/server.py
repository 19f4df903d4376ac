"""Start the coordinator from its config and serve over mTLS."""

from __future__ import annotations

import logging

from accord.coordinator.config import CoordinatorConfig
from accord.coordinator.service import CoordinatorService
from accord.coordinator.servicer import CoordinatorServicer
from accord.policies.identity import Identity
from accord.protos.v1 import coordinator_pb2, coordinator_pb2_grpc
from accord.rpc.serving import RunningServer, ServiceBinding, start_server

__all__ = [
    "COORDINATOR_CALLERS",
    "SERVICE_NAME",
    "start_coordinator",
]


log = logging.getLogger(__name__)

COORDINATOR_CALLERS = frozenset({"analyst"})
"""The roles the coordinator serves at all, health checks and reflection included."""
SERVICE_NAME = coordinator_pb2.DESCRIPTOR.services_by_name["CoordinatorService"].full_name


def start_coordinator(
    config: CoordinatorConfig, listen: str | None = None
) -> tuple[RunningServer, CoordinatorService]:
    """Start the coordinator; ``listen`` overrides the config (tests pass ``127.0.0.1:0``)."""
    service = CoordinatorService.from_config(config)
    servicer = CoordinatorServicer(
        service,
        max_in_flight=config.max_in_flight,
        report_node_timings=config.report_node_timings,
        report_coordinator_seconds=config.report_coordinator_seconds,
    )
    running = start_server(
        [
            ServiceBinding(
                SERVICE_NAME,
                lambda s: coordinator_pb2_grpc.add_CoordinatorServiceServicer_to_server(servicer, s),
            )
        ],
        listen or config.listen,
        config.tls,
        serves_as=Identity("coordinator", config.name),
        callers=COORDINATOR_CALLERS,
        max_workers=config.max_workers,
        max_concurrent_rpcs=config.max_in_flight * 2 + 8,
    )
    log.info("coordinator %s serving %d node(s) on port %d", config.name, len(config.nodes), running.port)
    return running, service
