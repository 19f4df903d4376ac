"""The analyst's Python client.

```python
from accord.coordinator.client import AccordClient

with AccordClient.from_profile("~/.config/accord/profile.toml") as client:
    sql = "SELECT district, COUNT(*) FROM citizens GROUP BY district"
    print(client.explain(sql, epsilon="0.5", agreement="dsa-2026-007"))   # spends nothing
    table = client.query(sql, epsilon="0.5", agreement="dsa-2026-007")
    lines, unreachable = client.budget()
```

Every query is asked under a data-sharing agreement: pass ``agreement=`` or set ``agreement`` in
the profile. ``query`` returns a ``pyarrow.Table``: the group columns, then for each aggregate its
value, 95% interval and noise scale, and a ``nodes`` column (see :mod:`coordinator.table`).
Retries of a failed call reuse the same query id, so a node never charges twice for one question.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from types import TracebackType
from typing import Any

import grpc

from accord.config import Table, read_toml
from accord.coordinator.nodes import RECONNECT_BACKOFF_MS
from accord.coordinator.secure import node_verifier
from accord.coordinator.secure_combine import check_answer
from accord.coordinator.table import to_arrow
from accord.errors import ConfigError, DeadlineExceeded, IntegrityError, Unavailable
from accord.policies.identity import Identity
from accord.policies.signing import AGREEMENT_ID, QueryPayload, QuerySigner
from accord.policies.verifying import QueryVerifier
from accord.protos import convert, convert_previews
from accord.protos.rpcstatus import error_from_rpc
from accord.protos.v1 import coordinator_pb2, coordinator_pb2_grpc
from accord.query.epsilon import Epsilon
from accord.query.model import QueryRequest
from accord.query.preview import BudgetLine, FederatedExplanation
from accord.query.release import FederatedRelease
from accord.query.schema import DatasetSchema
from accord.rpc.timing import (
    COORDINATOR_SECONDS,
    SLOWEST_NODE_SECONDS,
    ServerTiming,
    seconds_from_metadata,
)
from accord.rpc.tls_errors import explain_connection_failure
from accord.rpc.transport import TlsFiles, check_certificate_files, secure_channel

__all__ = [
    "DEFAULT_PROFILE",
    "DEFAULT_TIMEOUT",
    "AccordClient",
    "Profile",
    "load_profile",
]


DEFAULT_PROFILE = Path("~/.config/accord/profile.toml")
DEFAULT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Profile:
    """Where the coordinator is and which certificate the analyst presents.

    ```toml
    coordinator = "127.0.0.1:50050"
    coordinator_name = "coordinator"   # the name in the coordinator's certificate
    cert = "certs/analysts/alice.pem"
    key = "certs/analysts/alice.key"
    ca = "certs/ca.pem"
    agreement = "dsa-2026-007"         # optional: the agreement queries are asked under by default
    ```
    Relative paths resolve against the profile's directory.
    """

    coordinator: str
    tls: TlsFiles
    coordinator_name: str = "coordinator"
    agreement: str = ""


def load_profile(path: str | Path) -> Profile:
    """Read an analyst profile; every mistake names the file, the key and the fix."""
    path = Path(path).expanduser()
    top = Table(path, "", read_toml(path, "pass --profile FILE or --coordinator/--cert/--key/--ca"))
    top.check_keys({"coordinator", "coordinator_name", "cert", "key", "ca", "agreement"})
    address = top.address("coordinator", listen=False)
    name = top.name("coordinator_name", top.get("coordinator_name", str, "coordinator"))
    agreement = top.get("agreement", str, "")
    if agreement and not AGREEMENT_ID.fullmatch(agreement):
        raise top.error("agreement", "is not an agreement id; use the id the agreement publishes")
    return Profile(
        coordinator=address,
        tls=TlsFiles(top.path("cert"), top.path("key"), top.path("ca")),
        coordinator_name=name,
        agreement=agreement,
    )


class AccordClient:
    """A connection to one coordinator over mTLS. Thread-safe; close it (or use ``with``)."""

    def __init__(
        self,
        address: str,
        tls: TlsFiles,
        coordinator_name: str = "coordinator",
        retries: int = 2,
        agreement: str = "",
    ) -> None:
        self.address = address
        self.agreement = agreement
        """The agreement queries are asked under when a call names none."""
        first, longest = RECONNECT_BACKOFF_MS  # a restarted coordinator is found again within a second
        check_certificate_files(tls)  # our own files: expired, not from this CA, key of another cert
        self._tls = tls
        self._node_verifier: QueryVerifier | None = None
        self._server = Identity("coordinator", coordinator_name)
        self._channel = secure_channel(
            address,
            tls,
            expected=self._server,
            options=[
                ("grpc.initial_reconnect_backoff_ms", first),
                ("grpc.max_reconnect_backoff_ms", longest),
            ],
        )
        self._stub = coordinator_pb2_grpc.CoordinatorServiceStub(self._channel)
        self._retries = retries
        self._coordinator_name = coordinator_name
        files = tls.read()
        try:
            self._signer = QuerySigner.from_pem(files.key, files.cert)
        except ConfigError as err:
            self._channel.close()
            raise ConfigError(f"{tls.key} / {tls.cert}: {err.message}") from None

    @property
    def analyst(self) -> str:
        """The analyst whose certificate this client presents and signs with."""
        return self._signer.identity.name

    @classmethod
    def from_profile(cls, path: str | Path = DEFAULT_PROFILE) -> AccordClient:
        profile = load_profile(path)
        return cls(profile.coordinator, profile.tls, profile.coordinator_name, agreement=profile.agreement)

    def __enter__(self) -> AccordClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout: float, retry: bool) -> Any:
        return self._call_with_metadata(method, lambda: request, timeout, retry)[0]

    def _call_with_metadata(
        self, method: Any, request: Callable[[], Any], timeout: float, retry: bool
    ) -> tuple[Any, Any]:
        """The reply and the trailing metadata of the (last) attempt; ``request`` makes each
        attempt's request (a signed query is signed anew, so a retry is always fresh)."""
        attempts = 1 + (self._retries if retry else 0)
        for attempt in range(attempts):
            try:
                reply, call = method.with_call(request(), timeout=timeout)
                return reply, call.trailing_metadata()
            except grpc.RpcError as err:
                error = error_from_rpc(err, peer=f"coordinator {self.address}")
                if isinstance(error, Unavailable):
                    explained = explain_connection_failure(
                        error.message, self.address, self._server, self._tls
                    )
                    if explained is not None:
                        error = Unavailable(f"coordinator {self.address}: {explained}")
                # Only transport failures are retried: the same query id makes a retry safe.
                if attempt + 1 < attempts and isinstance(error, Unavailable | DeadlineExceeded):
                    continue
                raise error from None
        raise AssertionError("unreachable")  # pragma: no cover

    def query_release(
        self,
        sql: str,
        epsilon: str | Fraction | Epsilon,
        *,
        require_all: bool = False,
        query_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        agreement: str | None = None,
        require_secure: bool = False,
    ) -> FederatedRelease:
        """Run ``sql`` under ``agreement`` (default: the client's), spending ``epsilon`` at each
        node; the combined release. A secure-aggregated answer is checked here against the nodes'
        signed shares; with ``require_secure`` any other answer is refused (``IntegrityError``).

        ``epsilon`` is best given as text (``"0.5"``, ``"1/3"``): it is signed exactly as written."""
        return self.query_release_timed(
            sql,
            epsilon,
            require_all=require_all,
            query_id=query_id,
            timeout=timeout,
            agreement=agreement,
            require_secure=require_secure,
        )[0]

    def query_release_timed(
        self,
        sql: str,
        epsilon: str | Fraction | Epsilon,
        *,
        require_all: bool = False,
        query_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        agreement: str | None = None,
        require_secure: bool = False,
    ) -> tuple[FederatedRelease, ServerTiming]:
        """Like :meth:`query_release`, with the coordinator's own time and the slowest node's time
        for this query (see :mod:`accord.rpc.timing`): what benchmarks need to tell the federation's
        overhead from the nodes' work."""
        text = epsilon if isinstance(epsilon, str) else str(epsilon)
        request = self._request(sql, text, query_id, agreement)
        payloads: list[bytes] = []

        def signed() -> coordinator_pb2.SubmitRequest:
            envelope = self._signer.sign(
                request.query_id, sql, text, request.agreement, coordinator=self._coordinator_name
            )
            payloads.append(envelope.payload)
            return coordinator_pb2.SubmitRequest(
                query=convert.signed_query_to_pb(envelope), require_all=require_all
            )

        reply, trailing = self._call_with_metadata(self._stub.Submit, signed, timeout, retry=True)
        timing = ServerTiming(
            coordinator_seconds=seconds_from_metadata(trailing, COORDINATOR_SECONDS),
            slowest_node_seconds=seconds_from_metadata(trailing, SLOWEST_NODE_SECONDS),
        )
        release = convert.federated_from_pb(reply)
        if release.aggregation == "secure":
            digest = QueryPayload.decode(payloads[-1]).request_digest().hex()
            release = self._checked_secure(release, request, digest)
        elif require_secure:
            raise IntegrityError(
                f"the answer to query {request.query_id} did not come by secure aggregation, and "
                "require_secure was asked: refusing it"
            )
        return release, timing

    def _checked_secure(
        self, release: FederatedRelease, request: QueryRequest, digest: str
    ) -> FederatedRelease:
        """The combination of the nodes' signed shares, done again here, for ``request`` (whose
        signed request digest is ``digest``): a coordinator that dropped, altered, replayed or
        invented a share, answered another query, or reports another sum, is caught."""
        if self._node_verifier is None:
            self._node_verifier = node_verifier(self._tls)
        return check_answer(release, request, digest, self._node_verifier)

    def query(
        self,
        sql: str,
        epsilon: str | Fraction | Epsilon,
        *,
        require_all: bool = False,
        query_id: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        agreement: str | None = None,
    ) -> Any:
        """Like :meth:`query_release`, as a ``pyarrow.Table``."""
        return to_arrow(
            self.query_release(
                sql, epsilon, require_all=require_all, query_id=query_id, timeout=timeout, agreement=agreement
            )
        )

    def _request(self, sql: str, epsilon: str, query_id: str | None, agreement: str | None) -> QueryRequest:
        """The request, refused here for what every node would refuse, before anything is signed."""
        parsed = Epsilon.parse(epsilon)
        chosen = self.agreement if agreement is None else agreement
        if not chosen:
            raise ConfigError(
                "name the data-sharing agreement the query is asked under: --agreement ID (or agreement = "
                '"ID" in your profile, or agreement= in Python); `accord budget` lists yours'
            )
        if not AGREEMENT_ID.fullmatch(chosen):
            raise ConfigError(f"{chosen[:40]!r} is not an agreement id; use the id the agreement publishes")
        return QueryRequest(query_id or str(uuid.uuid4()), sql, parsed, chosen)

    def explain(
        self,
        sql: str,
        epsilon: str | Fraction | Epsilon,
        *,
        target_half_width: float | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        agreement: str | None = None,
    ) -> FederatedExplanation:
        """Preview ``sql`` at ``epsilon`` without spending anything: what it would cost at each node,
        what the analyst would have left, and each number's expected 95% half-width (and, with
        ``target_half_width``, the epsilon that reaches it)."""
        text = epsilon if isinstance(epsilon, str) else str(epsilon)
        request = self._request(sql, text, None, agreement)
        if target_half_width is not None and not target_half_width > 0:
            raise ConfigError("the target half-width must be a positive number, e.g. 50")

        def signed() -> coordinator_pb2.FederatedExplainRequest:
            envelope = self._signer.sign(
                request.query_id,
                sql,
                text,
                request.agreement,
                coordinator=self._coordinator_name,
                kind="explain",
            )
            return coordinator_pb2.FederatedExplainRequest(
                query=convert.signed_query_to_pb(envelope), target_half_width=target_half_width or 0.0
            )

        reply, _ = self._call_with_metadata(self._stub.Explain, signed, timeout, retry=True)
        return convert_previews.federated_explanation_from_pb(reply)

    def budget(
        self, agreement: str = "", timeout: float = 30.0
    ) -> tuple[dict[str, tuple[BudgetLine, ...]], dict[str, str]]:
        """This analyst's budget at every node (under ``agreement``, or every agreement covering
        them): lines by node, and the nodes that could not be asked."""
        if agreement and not AGREEMENT_ID.fullmatch(agreement):
            raise ConfigError(
                f"{agreement[:40]!r} is not an agreement id; use the id the agreement publishes"
            )

        def signed() -> coordinator_pb2.FederatedBudgetRequest:
            envelope = self._signer.sign(
                str(uuid.uuid4()), "", "", agreement, coordinator=self._coordinator_name, kind="budget"
            )
            return coordinator_pb2.FederatedBudgetRequest(request=convert.signed_query_to_pb(envelope))

        reply, _ = self._call_with_metadata(self._stub.GetBudget, signed, timeout, retry=True)
        return convert_previews.federated_budget_from_pb(reply)

    def catalog(
        self, timeout: float = 30.0, agreement: str = ""
    ) -> dict[str, tuple[DatasetSchema, tuple[str, ...]]]:
        """Every dataset in the federation: its public metadata and the nodes holding it; with
        ``agreement``, only what that agreement grants (and the nodes holding it)."""
        reply = self._call(
            self._stub.GetCatalog,
            coordinator_pb2.FederatedCatalogRequest(agreement=agreement),
            timeout,
            retry=True,
        )
        return {d.schema.name: (convert.schema_from_pb(d.schema), tuple(d.nodes)) for d in reply.datasets}

    def nodes(self, timeout: float = 30.0) -> list[dict[str, Any]]:
        reply = self._call(self._stub.ListNodes, coordinator_pb2.ListNodesRequest(), timeout, retry=True)
        return [
            {
                "name": n.name,
                "reachable": n.reachable,
                "error": n.error,
                "datasets": list(n.datasets),
            }
            for n in reply.nodes
        ]
