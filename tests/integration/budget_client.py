"""A client process for the budget fault test: it stands where a coordinator stands (it holds the
coordinator's certificate, since a node answers only its coordinator) and sends one analyst's
signed queries straight to a node from several threads, each query with its own id, retrying an id
(the same query, signed again) whenever the node cannot be reached, until it is answered or
refused. One JSON line per id: ``{"id", "ok", "sha256" | "reason"}``.

    python -m tests.integration.budget_client --address 127.0.0.1:PORT --node county \\
        --certs CERTS --analyst alice --prefix p1 --count 20 --threads 4 --out FILE
"""

from __future__ import annotations

import argparse
import hashlib
import json
import threading
import time
from pathlib import Path

import grpc

from accord.errors import BudgetExhausted, DeadlineExceeded, ResourceLimit, Unavailable
from accord.policies.identity import Identity
from accord.policies.pki import CA_CERT, leaf_paths
from accord.policies.signing import QuerySigner
from accord.protos import convert
from accord.protos.rpcstatus import error_from_rpc
from accord.protos.v1 import node_pb2, node_pb2_grpc
from accord.rpc.transport import TlsFiles, secure_channel

SQL = "SELECT sex, COUNT(*) AS n FROM pums GROUP BY sex"
EPSILON = "1/2"
GIVE_UP_AFTER = 60.0


def main() -> None:
    parser = argparse.ArgumentParser()
    for option in ("--address", "--node", "--certs", "--analyst", "--prefix", "--out"):
        parser.add_argument(option, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--agreement", default="open")
    args = parser.parse_args()
    certs = Path(args.certs)
    cert, key = leaf_paths(certs, "analyst", args.analyst)
    signer = QuerySigner.from_pem(key.read_bytes(), cert.read_bytes())
    ccert, ckey = leaf_paths(certs, "coordinator", "coordinator")
    tls = TlsFiles(ccert, ckey, certs / CA_CERT)
    options = [("grpc.initial_reconnect_backoff_ms", 100), ("grpc.max_reconnect_backoff_ms", 300)]
    channel = secure_channel(args.address, tls, Identity("node", args.node), options=options)
    stub = node_pb2_grpc.NodeServiceStub(channel)
    ids = [f"{args.prefix}-{i}" for i in range(args.count)]
    lines: list[str] = []
    lock = threading.Lock()

    def ask(query_id: str) -> dict[str, object]:
        started = time.monotonic()
        while time.monotonic() - started < GIVE_UP_AFTER:
            envelope = signer.sign(query_id, SQL, EPSILON, args.agreement)
            request = node_pb2.AnswerRequest(query=convert.signed_query_to_pb(envelope))
            try:
                reply = stub.Answer(request, timeout=10)
            except grpc.RpcError as err:
                error = error_from_rpc(err, peer=args.node)
                if isinstance(error, Unavailable | DeadlineExceeded | ResourceLimit):
                    time.sleep(0.05)
                    continue  # the node is down, restarting or busy: the same id, again
                reason = (
                    "BUDGET_EXHAUSTED" if isinstance(error, BudgetExhausted) else getattr(error, "reason", "")
                )
                return {"id": query_id, "ok": False, "reason": reason}
            payload = reply.SerializeToString(deterministic=True)
            return {"id": query_id, "ok": True, "sha256": hashlib.sha256(payload).hexdigest()}
        return {"id": query_id, "ok": False, "reason": "GAVE_UP"}

    def worker(mine: list[str]) -> None:
        for query_id in mine:
            outcome = ask(query_id)
            if outcome["ok"] and int(query_id.rsplit("-", 1)[1]) % 3 == 0:
                again = ask(query_id)  # a retry of an answered id: must be the same bytes, uncharged
                outcome["again"] = again.get("sha256")
            with lock:
                lines.append(json.dumps(outcome))

    threads = [threading.Thread(target=worker, args=(ids[t :: args.threads],)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    Path(args.out).write_text("\n".join(lines) + "\n", encoding="utf-8")
    channel.close()


if __name__ == "__main__":
    main()
