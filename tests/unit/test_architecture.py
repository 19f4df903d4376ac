"""Architecture rules that keep the design honest, checked on the source itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("protos", "policies", "node", "coordinator")
# package -> top-level modules it must never import
FORBIDDEN = {
    "protos": {"node", "coordinator", "policies", "opendp"},
    "policies": {"node", "coordinator", "opendp"},
    "coordinator": {"node", "opendp", "numpy", "scipy"},
    "node": {"coordinator"},
}


def _top(module: str) -> str:
    """The room an import lands in: ``accord.node.x`` -> ``node``; ``opendp.prelude`` -> ``opendp``."""
    parts = module.split(".")
    return parts[1] if parts[0] == "accord" and len(parts) > 1 else parts[0]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {_top(a.name) for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(_top(node.module))
    return names


def _sources(package: str) -> list[Path]:
    return [p for p in (ROOT / package).rglob("*.py") if "_pb2" not in p.name]


def test_imports_are_one_way() -> None:
    """Property: coordinator never imports node or opendp; protos and policies never import node or
    coordinator (protos does not import policies either), so auditors' tools stand alone."""
    bad = []
    for package, forbidden in FORBIDDEN.items():
        for path in _sources(package):
            hit = _imports(path) & forbidden
            if hit:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert bad == []


def test_only_node_dp_imports_opendp() -> None:
    """Property: noise has exactly one source, node/dp.py."""
    users = sorted(
        str(p.relative_to(ROOT)) for pkg in PACKAGES for p in _sources(pkg) if "opendp" in _imports(p)
    )
    assert users == ["node/dp.py"]


def test_generated_types_stay_at_the_edges() -> None:
    """Property: generated *_pb2 modules are imported only by the conversion/servicer/client edge."""
    edge = {
        "protos/convert.py",
        "protos/rpcstatus.py",
        "protos/serving.py",
        "node/servicer.py",
        "node/server.py",
        "coordinator/servicer.py",
        "coordinator/server.py",
        "coordinator/client.py",
        "coordinator/nodes.py",
    }
    offenders = []
    for pkg in PACKAGES:
        for path in _sources(pkg):
            rel = str(path.relative_to(ROOT))
            text = path.read_text(encoding="utf-8")
            if ("_pb2" in text and "import" in text) and rel not in edge and rel != "protos/codegen.py":
                tree = ast.parse(text)
                for node in ast.walk(tree):
                    if isinstance(node, ast.ImportFrom) and node.module and "protos.v1" in node.module:
                        offenders.append(rel)
    assert sorted(set(offenders)) == []


def test_no_randomness_outside_opendp_in_node() -> None:
    """Property: nothing in node/, protos/ or policies/ draws random numbers itself (noise is OpenDP's)."""
    banned = {"random", "secrets", "numpy"}
    bad = []
    for pkg in ("node", "protos", "policies"):
        for path in _sources(pkg):
            hit = _imports(path) & banned
            if hit:
                bad.append(f"{path.relative_to(ROOT)} imports {sorted(hit)}")
    assert bad == []
