"""A real coordinator process that tampers with what it forwards to the nodes (tests only).

    python -m tests.integration.tamper_coordinator --config coordinator.toml --control mode.txt

It is Accord's own coordinator (``start_coordinator``) with one change: before each call to a node,
it reads the tampering mode from the ``--control`` file (so one process serves every scenario) and
changes the analyst's envelope accordingly. It holds what a compromised coordinator holds: its own
certificate and key, every envelope that passed through it, and whatever it can make itself (a
certificate authority of its own). It never has an analyst's private key.

Modes: ``pass`` (forward honestly), ``alter-sql``, ``alter-epsilon``, ``alter-analyst``,
``alter-time`` (change that member of the payload, keep the signature), ``swap-certificate``
(carry another analyst's certificate), ``invent`` (a query the coordinator signs with its own
key), ``invent-own-ca`` (a query signed by an "analyst alice" of a CA the coordinator made),
``replay-first`` (forward the first envelope it ever saw, instead of the one it was given).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, load_pem_private_key

from accord.coordinator import nodes
from accord.coordinator.config import load_coordinator_config
from accord.coordinator.server import start_coordinator
from accord.policies.pki import init_federation
from accord.policies.signing import QueryPayload, SignedQuery, sign_query
from accord.protos import convert
from accord.protos.v1 import node_pb2
from accord.rpc.serving import serve_until_signal

_first: list[SignedQuery] = []
_lock = threading.Lock()


def _mode(control: Path) -> str:
    return control.read_text(encoding="utf-8").strip() or "pass"


def _payload_changed(signed: SignedQuery, **changes: Any) -> SignedQuery:
    payload = dataclasses.replace(QueryPayload.decode(signed.payload), **changes)
    return dataclasses.replace(signed, payload=payload.encode())


def _tampered(mode: str, signed: SignedQuery, extra: dict[str, Any]) -> SignedQuery:
    with _lock:
        if not _first:
            _first.append(signed)
    if mode == "pass":
        return signed
    if mode == "alter-sql":
        return _payload_changed(signed, sql="SELECT SUM(income) AS s FROM pums")
    if mode == "alter-epsilon":
        return _payload_changed(signed, epsilon="50")
    if mode == "alter-analyst":
        return _payload_changed(signed, analyst="bob")
    if mode == "alter-time":
        return _payload_changed(signed, issued_at=datetime.now(UTC) + timedelta(seconds=1))
    if mode == "swap-certificate":
        return dataclasses.replace(signed, certificate=extra["bob_der"])
    if mode in ("invent", "invent-own-ca"):
        payload = QueryPayload(
            f"invented-{uuid.uuid4()}", "alice", "SELECT SUM(income) AS s FROM pums", "50", datetime.now(UTC)
        )
        key, cert = extra["own"] if mode == "invent" else extra["evil"]
        return sign_query(payload, key, cert)
    if mode == "replay-first":
        return _first[0]
    raise SystemExit(f"unknown tampering mode {mode!r}")


def _load(cert_path: Path, key_path: Path) -> tuple[Any, x509.Certificate]:
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return load_pem_private_key(key_path.read_bytes(), None), cert


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--control", type=Path, required=True)
    parser.add_argument("--bob", type=Path, required=True, help="another analyst's certificate (PEM)")
    args = parser.parse_args(argv)
    config = load_coordinator_config(args.config)
    evil_dir = Path(tempfile.mkdtemp(prefix="evil-ca-"))
    evil = init_federation(evil_dir, analysts=("alice",))
    evil_alice = next(c for c in evil.issued if c.identity.role == "analyst")
    extra = {
        "own": _load(config.tls.cert, config.tls.key),
        "evil": _load(evil_alice.cert, evil_alice.key),
        "bob_der": x509.load_pem_x509_certificate(args.bob.read_bytes()).public_bytes(Encoding.DER),
    }
    honest_answer = nodes.NodeClient.answer

    def answer(self: nodes.NodeClient, request: node_pb2.AnswerRequest, deadline_at: float) -> Any:
        signed = convert.signed_query_from_pb(request.query)
        forged = _tampered(_mode(args.control), signed, extra)
        return honest_answer(
            self, node_pb2.AnswerRequest(query=convert.signed_query_to_pb(forged)), deadline_at
        )

    nodes.NodeClient.answer = answer  # type: ignore[method-assign]
    running, service = start_coordinator(config)
    print(f"coordinator {config.name} listening on port {running.port}", flush=True)
    serve_until_signal(running, on_stop=service.close)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
