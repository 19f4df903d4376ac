"""Start a node from its config: load and check the datasets, open its state, then serve over mTLS."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from accord.errors import ConfigError
from accord.node.audit_log import Checkpointer, record_startup
from accord.node.audit_servicer import AUDIT_CALLERS, AUDIT_SERVICE_NAME, AuditServicer, register_audit
from accord.node.config import NodeConfig
from accord.node.config_audit import witness_name
from accord.node.consent import ConsentRegister
from accord.node.duckdb import open_duckdb
from accord.node.secure import NodeIdentity
from accord.node.service import NodeService
from accord.node.servicer import SERVICE_NAME, NodeServicer, register
from accord.node.state import NodeState, open_state
from accord.node.timing import answer_budgets
from accord.node.witness import Witness
from accord.policies.agreements import load_agreements
from accord.policies.gate import PolicyGate
from accord.policies.identity import Identity
from accord.policies.verifying import QueryVerifier
from accord.rpc.serving import RunningServer, ServiceBinding, open_crl, start_server

__all__ = ["NODE_CALLERS", "build_gate", "build_service", "start_node"]

NODE_CALLERS = frozenset({"coordinator"})
"""The roles the node service serves (which coordinators may query is the [access] list, checked
per call). The audit service serves auditors and (for witnessing) nodes; health checks and
reflection serve all three."""

log = logging.getLogger(__name__)


def _verifier(config: NodeConfig) -> QueryVerifier:
    """Checks signed queries against the federation CA of the node's own [tls] ca, and the
    signer's certificate against its [tls] crl: a revoked analyst's signature is refused however
    the query reaches the node."""
    try:
        cas = x509.load_pem_x509_certificates(config.tls.read().ca)
    except ValueError:
        raise ConfigError(
            f"{config.tls_ca}: not a PEM certificate; point [tls] ca at the federation CA"
        ) from None
    return QueryVerifier(
        cas,
        timedelta(seconds=config.query_max_age_seconds),
        timedelta(seconds=config.clock_skew_seconds),
        open_crl(config.tls),
    )


def build_gate(config: NodeConfig) -> PolicyGate:
    """The node's policy gate: its coordinators, and the agreements of ``[agreements] dir`` that
    name it, each checked against its datasets (a mistake stops the node, naming file and key)."""
    schemas = {d.schema.name: d.schema for d in config.datasets}
    agreements = load_agreements(config.agreements_dir, config.name, schemas)
    if not agreements:
        log.warning(
            "node %s holds no agreement naming it in %s: it will refuse every query",
            config.name,
            config.agreements_dir,
        )
    for agreement in agreements.values():
        log.info("agreement %s loaded from %s (sha256 %s)", agreement.id, agreement.source, agreement.digest)
    return PolicyGate(config.name, config.coordinators, schemas, agreements, config.max_epsilon)


def _identity(config: NodeConfig) -> NodeIdentity | None:
    """The node certificate and key that sign its secure-aggregation messages (None when no dataset
    is answered by secure aggregation)."""
    if not any(d.secure_aggregation for d in config.datasets):
        return None
    files = config.tls.read()
    try:
        key = load_pem_private_key(files.key, password=None)
        x509.load_pem_x509_certificate(files.cert)
    except (ValueError, TypeError):
        raise ConfigError(f"{config.tls_key}: not an unencrypted PEM private key for [tls] cert") from None
    if not isinstance(key, (ec.EllipticCurvePrivateKey, ed25519.Ed25519PrivateKey, rsa.RSAPrivateKey)):
        raise ConfigError(
            f"{config.tls_key}: a {type(key).__name__} cannot sign; use an EC, Ed25519 or RSA key"
        )
    return NodeIdentity.from_pem(files.cert, key)


def build_service(config: NodeConfig, state: NodeState | None = None) -> NodeService:
    """The node's answer path over its datasets (loaded and checked), its agreements, its consent
    register and its state (opened, and locked against a second node on the same file; ``state``
    overrides the config's)."""
    verifier = _verifier(config)
    gate = build_gate(config)
    with contextlib.ExitStack() as opened:
        state = state if state is not None else open_state(config.state, config.name)
        opened.callback(state.close)
        consent = ConsentRegister(config.consent_path)
        opened.callback(consent.close)
        backend = open_duckdb(config.datasets)
        opened.pop_all()
    schemas = tuple(d.schema for d in config.datasets)
    if config.answer_seconds == 0:
        log.warning(
            "node %s: [timing] answer_seconds = 0: answers are not padded, so how long one takes "
            "depends on the data (for tests and benchmarks only; see the README, Timing)",
            config.name,
        )
    budgets = answer_budgets(config)
    return NodeService(
        config.name,
        backend,
        schemas,
        gate,
        verifier,
        state,
        consent,
        budgets=budgets,
        fairness=config.fairness,
        identity=_identity(config),
    )


def start_node(config: NodeConfig, listen: str | None = None) -> RunningServer:
    """Start the node server; ``listen`` overrides the config (tests pass ``127.0.0.1:0``). Stopping
    the returned server also closes the node's state and engine."""
    service = build_service(config)
    servicer = NodeServicer(
        service, max_in_flight=config.max_workers, report_seconds=config.report_node_seconds
    )
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def stopped() -> None:
        stop.set()
        for t in threads:
            t.join()
        service.close()

    try:
        checkpointer = Checkpointer.from_config(config, service.state)
        consent = service.consent
        record_startup(
            service.state,
            config,
            service.gate.agreements,
            None if consent is None else (consent.version(), consent.counts()),
        )
        audit = AuditServicer(service.state, checkpointer)
        running = start_server(
            [
                ServiceBinding(SERVICE_NAME, lambda s: register(servicer, s)),
                ServiceBinding(AUDIT_SERVICE_NAME, lambda s: register_audit(audit, s)),
            ],
            listen or config.listen,
            config.tls,
            serves_as=Identity("node", config.name),
            callers=NODE_CALLERS | AUDIT_CALLERS,
            service_callers={SERVICE_NAME: NODE_CALLERS, AUDIT_SERVICE_NAME: AUDIT_CALLERS},
            max_workers=config.max_workers + 4,
            max_concurrent_rpcs=config.max_concurrent_rpcs,
            on_stop=stopped,
        )
    except BaseException:
        service.close()
        raise
    if checkpointer.signs:
        checkpointer.issue()
        threads.append(
            _background(f"{config.name}-checkpoints", checkpointer.run, stop, config.audit.checkpoint_seconds)
        )
        if config.audit.witness:
            signer = checkpointer.signer_as(witness_name(config.name))
            witness = Witness(config.name, service.state, signer, config.audit.witness, config.tls)
            threads.append(
                _background(f"{config.name}-witness", witness.run, stop, config.audit.witness_seconds)
            )
    elif config.audit.witness:
        log.warning("node %s: [[audit.witness]] is ignored without [audit] key", config.name)
    log.info("node %s serving %d dataset(s) on port %d", config.name, len(config.datasets), running.port)
    return running


def _background(
    name: str, run: Callable[[threading.Event, float], None], stop: threading.Event, every: float
) -> threading.Thread:
    thread = threading.Thread(target=run, args=(stop, every), name=name, daemon=True)
    thread.start()
    return thread
