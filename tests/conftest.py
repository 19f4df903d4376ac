"""Shared fixtures.

``pki`` (session-scoped): one development federation created with :func:`policies.pki.init_federation`
in a temporary folder. Coordinator ``coordinator``; nodes ``county``, ``district-a``,
``district-b``; analysts ``alice``, ``bob`` (both covered by the test agreement ``open``) and
``mallory`` (covered by none). Use it as::

    def test_something(pki: TestPki) -> None:
        server_tls = pki.node("county")          # accord.rpc.transport.TlsFiles
        client_tls = pki.coordinator             # TlsFiles of the coordinator
        analyst_tls = pki.analyst("alice")
        pki.root, pki.ca_cert, pki.ca_key        # paths; pki.tls("node", "county") also works

Do not write into ``pki.root``: it is shared by the whole session. To make extra certificates
(expired, another CA...) use :func:`policies.pki.issue` with your own ``tmp_path`` as ``out_dir``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from accord.policies.pki import CA_CERT, CA_KEY, init_federation, leaf_paths
from accord.rpc.transport import TlsFiles

PKI_COORDINATOR = "coordinator"
PKI_NODES = ("county", "district-a", "district-b")
PKI_ANALYSTS = ("alice", "bob", "mallory")


@dataclass(frozen=True)
class TestPki:
    """Paths of the session's development federation (see the module docstring)."""

    __test__ = False  # not a test class, despite the name

    root: Path

    @property
    def ca_cert(self) -> Path:
        return self.root / CA_CERT

    @property
    def ca_key(self) -> Path:
        return self.root / CA_KEY

    def tls(self, role: str, name: str) -> TlsFiles:
        cert, key = leaf_paths(self.root, role, name)
        return TlsFiles(cert, key, self.ca_cert)

    @property
    def coordinator(self) -> TlsFiles:
        return self.tls("coordinator", PKI_COORDINATOR)

    def node(self, name: str) -> TlsFiles:
        return self.tls("node", name)

    def analyst(self, name: str = "alice") -> TlsFiles:
        return self.tls("analyst", name)

    @property
    def nodes(self) -> dict[str, TlsFiles]:
        return {n: self.node(n) for n in PKI_NODES}


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPki]:
    root = tmp_path_factory.mktemp("pki")
    init_federation(root, coordinator=PKI_COORDINATOR, nodes=PKI_NODES, analysts=PKI_ANALYSTS, days=2)
    yield TestPki(root)
