"""The declared dependencies cover every third-party import of the shipped code."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions

from tests.rooms import ROOT, sources

GOOGLE = {"google.protobuf": "protobuf", "google.rpc": "googleapis-common-protos"}
"""``google`` is a namespace several distributions share: what provides each part Accord uses."""
DEV_ONLY = {"grpc_tools"}
"""Imported only by ``protos/codegen.py`` (``make protos``), a developer's tool: a dev dependency."""


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    extras = [d for group, deps in project["optional-dependencies"].items() if group != "dev" for d in deps]
    # an extra (e.g. accord[audit]'s matplotlib) counts: its import is lazy and says how to install it
    names = {re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in [*project["dependencies"], *extras]}
    return {n.lower().replace("_", "-") for n in names}


def _imports() -> set[str]:
    """Third-party modules imported by the shipped code: top-level names, ``google.<part>``."""
    out: set[str] = set()
    for path in sources():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            out |= {".".join(n.split(".")[:2]) if n.startswith("google.") else n.split(".")[0] for n in names}
    return (
        {n for n in out if n.split(".")[0] not in sys.stdlib_module_names}
        - {"accord", "__future__"}
        - DEV_ONLY
    )


def test_every_third_party_import_is_declared() -> None:
    """Property: each third-party package the shipped modules import is a declared dependency
    (``google.rpc`` comes from googleapis-common-protos, which grpcio-status only happens to
    pull in), so an install never works only through a dependency's own dependencies."""
    distributions = packages_distributions()
    declared = _declared()
    missing = {}
    for name in sorted(_imports()):
        dists = (
            {GOOGLE[name]}
            if name in GOOGLE
            else {d.lower().replace("_", "-") for d in distributions.get(name, [])}
        )
        if not dists & declared:
            missing[name] = sorted(dists)
    assert missing == {}
