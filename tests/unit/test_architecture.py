"""Architecture rules that keep the design honest, checked on the source itself."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

from tests.rooms import ROOT, room_of, sources

ROOMS_BELOW: dict[str, set[str]] = {
    "errors": set(),
    "config": {"errors"},
    "query": {"errors"},
    "policies": {"errors", "config", "query"},
    "protos": {"errors", "query", "policies"},
    "rpc": {"errors", "config", "query", "policies", "protos"},
    "node": {"errors", "config", "query", "policies", "protos", "rpc"},
    "coordinator": {"errors", "config", "query", "policies", "protos", "rpc"},
    "auditor": {"errors", "config", "query", "policies", "protos", "rpc"},
    "demo": {"errors", "config", "query", "policies", "protos", "rpc", "coordinator", "node"},
    "cli": {"errors", "accord"},
    "__init__": set(),
    "__main__": {"cli"},
}
"""Each room and the rooms it may import. Imports go one way, from the top of this list down."""

FORBIDDEN_LIBRARIES: dict[str, set[str]] = {
    "query": {"grpc", "google", "duckdb", "opendp", "cryptography"},
    "policies": {"grpc", "google", "duckdb", "opendp"},
    "protos": {"duckdb", "opendp"},
    "rpc": {"duckdb", "opendp"},
    "coordinator": {"opendp", "duckdb", "numpy", "scipy"},
    "demo": {"opendp"},
    "errors": {"grpc", "google"},
    "config": {"grpc", "google", "duckdb", "opendp"},
}
"""Third-party libraries a room must never import: the query language and the policies run without
a network stack (auditors' tools), and only the node computes on data or draws noise."""


def _room_of_import(module: str) -> str:
    """The room an import lands in: ``accord.node.x`` -> ``node``; ``accord.errors`` -> ``errors``;
    ``accord`` -> ``accord``; ``opendp.prelude`` -> ``opendp``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "accord" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {_room_of_import(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_room_of_import(node.module))
        elif isinstance(node, ast.ImportFrom):
            names.add("<relative import>")
    return names


def _accord_rooms() -> set[str]:
    return set(ROOMS_BELOW) | {"accord"}


def test_every_room_is_known() -> None:
    """Property: every source file belongs to a room the rules below know about (a new room must
    be placed in the import order)."""
    assert sorted({room_of(p) for p in sources()} - set(ROOMS_BELOW)) == []


def test_imports_are_one_way() -> None:
    """Property: each room imports only the rooms below it: the query language imports nothing of
    Accord's but the error tree; policies neither protos nor rpc nor any server; coordinator never
    node; nothing imports the demo or the command line. No relative imports."""
    bad = []
    for path in sources():
        room = room_of(path)
        ours = _imports(path) & (_accord_rooms() | {"<relative import>"})
        hit = ours - ROOMS_BELOW[room] - {room}
        if hit:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert bad == []


def test_query_package_imports_only_the_error_tree() -> None:
    """Property: the query language (model, schema, SQL, release values) depends on nothing of
    Accord's but the error tree, so both sides and the auditors' tools can use it alone."""
    used = set().union(*(_imports(p) for p in sources("query"))) & _accord_rooms()
    assert used <= {"errors", "query"}


def test_forbidden_libraries() -> None:
    """Property: policies and the query language import no grpc (auditors' tools run without a
    network stack); the coordinator never imports opendp or duckdb; see FORBIDDEN_LIBRARIES."""
    bad = []
    for path in sources():
        hit = _imports(path) & FORBIDDEN_LIBRARIES.get(room_of(path), set())
        if hit:
            bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert bad == []


def test_only_node_dp_imports_opendp() -> None:
    """Property: noise has exactly one source, node/dp.py."""
    users = sorted(str(p.relative_to(ROOT)) for p in sources() if "opendp" in _imports(p))
    assert users == ["node/dp.py"]


def test_only_the_duckdb_backend_imports_duckdb() -> None:
    """Property: every DuckDB-specific construct lives in the DuckDB backend (node/duckdb/), behind
    the execution-backend interface, so another engine can be added without touching the rest."""
    users = sorted(str(p.relative_to(ROOT)) for p in sources() if "duckdb" in _imports(p))
    assert users and all(u.startswith("node/duckdb/") for u in users), users


def test_generated_types_stay_at_the_edges() -> None:
    """Property: generated *_pb2 modules are imported only by the conversion/servicer/client edge."""
    edge = {
        "protos/convert.py",
        "protos/convert_previews.py",
        "protos/convert_secure.py",
        "protos/rpcstatus.py",
        "rpc/serving.py",
        "node/servicer.py",
        "node/server.py",
        "node/audit_servicer.py",
        "node/witness.py",
        "coordinator/servicer.py",
        "coordinator/server.py",
        "coordinator/client.py",
        "coordinator/nodes.py",
        "auditor/fetch.py",
    }
    offenders = []
    for path in sources():
        rel = str(path.relative_to(ROOT))
        if rel in edge:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and "protos.v1" in node.module:
                offenders.append(rel)
    assert sorted(set(offenders)) == []


def test_no_randomness_outside_opendp_in_node() -> None:
    """Property: nothing in node/, query/, protos/, rpc/ or policies/ draws random numbers itself
    (noise is OpenDP's)."""
    banned = {"random", "secrets", "numpy"}
    bad = []
    for room in ("node", "query", "protos", "rpc", "policies"):
        for path in sources(room):
            hit = _imports(path) & banned
            if hit:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert bad == []


def test_nothing_reads_outside_the_repository() -> None:
    """Property: no tracked code, test, script or build file names a path outside the repository
    (the folder beside it, or the checkout's parent): a fresh clone has nothing beside it."""
    outside = (".." + "/shared", str(ROOT.parent).rstrip("/") + "/")
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True)
    bad = []
    for rel in listed.stdout.split():
        path = ROOT / rel
        if path.suffix not in {".py", ".toml", ".sh", ".cfg", ""} or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        bad += [f"{rel}: {o}" for o in outside if o in text]
    assert bad == []
