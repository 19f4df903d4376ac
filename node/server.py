"""Start a node from its config: load and check the datasets, then serve over mTLS."""

from __future__ import annotations

import logging

from accord.node.config import NodeConfig
from accord.node.duckdb import open_duckdb
from accord.node.service import NodeService
from accord.node.servicer import NodeServicer
from accord.protos.v1 import node_pb2, node_pb2_grpc
from accord.rpc.serving import RunningServer, ServiceBinding, start_server
from accord.rpc.transport import TlsFiles

log = logging.getLogger(__name__)

SERVICE_NAME = node_pb2.DESCRIPTOR.services_by_name["NodeService"].full_name


def build_service(config: NodeConfig) -> NodeService:
    engine = open_duckdb(config.datasets)
    schemas = {d.schema.name: d.schema for d in config.datasets}
    return NodeService(config.name, engine, schemas, config.coordinators)


def start_node(config: NodeConfig, listen: str | None = None) -> RunningServer:
    """Start the node server; ``listen`` overrides the config (tests pass ``127.0.0.1:0``)."""
    service = build_service(config)
    servicer = NodeServicer(service, max_in_flight=config.max_workers)
    running = start_server(
        [
            ServiceBinding(
                SERVICE_NAME, lambda s: node_pb2_grpc.add_NodeServiceServicer_to_server(servicer, s)
            )
        ],
        listen or config.listen,
        TlsFiles(config.tls_cert, config.tls_key, config.tls_ca),
        max_workers=config.max_workers + 4,
        max_concurrent_rpcs=config.max_concurrent_rpcs,
    )
    log.info("node %s serving %d dataset(s) on port %d", config.name, len(config.datasets), running.port)
    return running
