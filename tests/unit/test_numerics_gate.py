"""Numerics gate: noise comes from OpenDP alone, and OpenDP runs without its test-only features.

An AST scan of every production package (``protos``, ``policies``, ``node``, ``coordinator``)
flags, with file and line:

* any use of a random-number source other than OpenDP: the modules ``random``, ``secrets``,
  ``uuid``, ``numpy.random`` (however imported or reached: ``import numpy as np; np.random``),
  ``os.urandom``/``os.getrandom``, SciPy's samplers (``scipy.stats``), and the same names loaded
  through ``__import__``/``importlib.import_module``;
* any call of ``enable_features`` other than exactly ``enable_features("contrib")`` in
  ``node/dp.py``, and the names of OpenDP's test-only features (``"honest-but-curious"``,
  ``"idealized-numerics"`` and its deprecated alias ``"floating-point"``) appearing as a string
  anywhere (so they cannot be smuggled in through a variable).

A run-time check complements the scan: a fresh interpreter imports every production module and
OpenDP must then report ``contrib`` as its only enabled feature.

Two uses outside the noise path are allowed, by file and module, each with its reason; an entry
that is no longer used fails the test, so the list cannot go stale. Nothing under ``node/``,
``protos/`` or ``policies/`` may use any of these sources at all.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from dataclasses import dataclass

import pytest

from tests.rooms import ROOT, module_name, sources

RANDOM_MODULES = frozenset({"random", "secrets", "uuid", "numpy.random", "scipy.stats", "_random"})
RANDOM_OS = frozenset({"urandom", "getrandom"})
TEST_ONLY_FEATURES = frozenset({"honest-but-curious", "floating-point", "idealized-numerics"})
FEATURES_MODULE = "node/dp.py"

ALLOWED: dict[tuple[str, str], str] = {
    ("demo/population.py", "random"): (
        "generates the *demo* population from a seeded random.Random so `accord demo` is reproducible; "
        "it is synthetic input data, never privacy noise, and no node module imports it"
    ),
    ("coordinator/client.py", "uuid"): (
        "uuid4() names a query (the client-chosen id that makes retries idempotent); ids are not noise"
    ),
}


@dataclass(frozen=True)
class Finding:
    path: str
    line: int
    source: str  # the random module / feature concerned
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _random_module(name: str) -> str | None:
    """The banned module ``name`` is (or lies under), if any."""
    for banned in RANDOM_MODULES:
        if name == banned or name.startswith(banned + "."):
            return banned
    return None


def _dotted(node: ast.expr) -> str | None:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return ".".join(reversed(parts))
    return None


def scan(source: str, path: str) -> list[Finding]:
    """Every use of a non-OpenDP random source and every feature switch in ``source`` (see the
    module docstring). ``path`` is the file's path relative to the repository root."""
    tree = ast.parse(source)
    out: list[Finding] = []
    aliases: dict[str, str] = {}  # local name -> the module (or module.attr) it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if (mod := _random_module(a.name)) is not None:
                    out.append(Finding(path, node.lineno, mod, f"imports {a.name}"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                full = f"{node.module}.{a.name}"
                aliases[a.asname or a.name] = full
                mod = _random_module(node.module) or _random_module(full)
                if mod is None and node.module == "os" and a.name in RANDOM_OS:
                    mod = f"os.{a.name}"
                if mod is not None:
                    out.append(Finding(path, node.lineno, mod, f"imports {a.name} from {node.module}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            dotted = _dotted(node)
            if dotted is None:
                continue
            head, _, rest = dotted.partition(".")
            full = f"{aliases.get(head, head)}.{rest}" if rest else aliases.get(head, head)
            mod = _random_module(full)
            if mod == "numpy.random" or mod == "scipy.stats":
                out.append(Finding(path, node.lineno, mod, f"uses {dotted} ({full})"))
            elif full in {f"os.{n}" for n in RANDOM_OS}:
                out.append(Finding(path, node.lineno, full, f"uses {dotted}"))
        elif isinstance(node, ast.Call):
            out.extend(_call(node, path))
        elif isinstance(node, ast.Constant) and node.value in TEST_ONLY_FEATURES:
            out.append(
                Finding(path, node.lineno, str(node.value), f"names OpenDP test-only feature {node.value!r}")
            )
    # An Attribute chain like np.random.laplace is visited once per prefix: report each line once.
    unique = {(f.path, f.line, f.source): f for f in out}
    return sorted(unique.values(), key=lambda f: (f.line, f.source))


def _call(node: ast.Call, path: str) -> list[Finding]:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else None
    out = []
    if name in {"__import__", "import_module"} and node.args:
        arg = node.args[0]
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            mod = _random_module(arg.value)
            if mod is not None:
                out.append(Finding(path, node.lineno, mod, f"loads {arg.value} dynamically"))
        else:
            out.append(Finding(path, node.lineno, "import", "loads a module whose name is not a literal"))
    if name == "enable_features":
        args_ok = (
            len(node.args) == 1
            and not node.keywords
            and isinstance(node.args[0], ast.Constant)
            and node.args[0].value == "contrib"
        )
        if not args_ok:
            out.append(
                Finding(path, node.lineno, "enable_features", "enables OpenDP features other than 'contrib'")
            )
        if path != FEATURES_MODULE:
            out.append(
                Finding(
                    path, node.lineno, "enable_features", f"enables OpenDP features outside {FEATURES_MODULE}"
                )
            )
    return out


def production_findings() -> list[Finding]:
    findings = []
    for file in sources():
        rel = file.relative_to(ROOT).as_posix()
        findings.extend(scan(file.read_text(encoding="utf-8"), rel))
    return findings


# ---- the gate --------------------------------------------------------------------------------


def test_no_noise_outside_opendp() -> None:
    """Property: no production module draws random numbers from anything but OpenDP, except the two
    allow-listed, reasoned uses (demo data generation, query ids), and every allow-list entry is
    still in use."""
    findings = production_findings()
    unexpected = [str(f) for f in findings if (f.path, f.source) not in ALLOWED]
    assert unexpected == []
    used = {(f.path, f.source) for f in findings}
    assert sorted(set(ALLOWED) - used) == [], "stale allow-list entries: remove them"


def test_node_and_release_path_use_no_random_source() -> None:
    """Property: the node (engine, DP, release, service), the wire contract and the policies use no
    random source at all, allow-listed or not: every random number in a release is OpenDP's."""
    findings = [
        str(f)
        for f in production_findings()
        if f.path.split("/")[0] in {"node", "query", "protos", "rpc", "policies"}
    ]
    assert findings == []
    assert all(path.split("/")[0] in {"coordinator", "demo"} for path, _ in ALLOWED)


def test_demo_generator_stays_off_the_query_path() -> None:
    """Property: the seeded demo generator (the one allow-listed ``random`` user) is imported only by
    the demo command, so its generator can never reach an answer."""
    importers = []
    for file in sources():
        tree = ast.parse(file.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = (
                [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else []
            )
            if any(n == "accord.demo.population" for n in names):
                importers.append(file.relative_to(ROOT).as_posix())
    assert sorted(set(importers)) == ["demo/layout.py"]


def test_opendp_runs_with_contrib_only() -> None:
    """Property: the only OpenDP feature switch in production code is ``enable_features("contrib")``
    in node/dp.py, and after importing *every* production module (in a fresh interpreter, so no
    test can have switched anything on) OpenDP's enabled features are exactly ``{"contrib"}``."""
    assert [str(f) for f in production_findings() if f.source == "enable_features"] == []
    calls = []
    for file in (ROOT / "node").rglob("*.py"):
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _dotted(node.func) in {"dp.enable_features", "enable_features"}:
                calls.append(file.relative_to(ROOT).as_posix())
    assert calls == [FEATURES_MODULE]
    modules = sorted(module_name(p) for p in sources() if not p.name.startswith("__main__"))
    probe = (
        "import importlib\n"
        f"for name in {modules!r}:\n"
        "    importlib.import_module(name)\n"
        "import opendp.mod\n"
        "print(','.join(sorted(opendp.mod.GLOBAL_FEATURES)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "contrib"


# ---- the gate has teeth ----------------------------------------------------------------------


VIOLATIONS = {
    "import random\nnoise = random.gauss(0, 1)": "random",
    "from random import SystemRandom\n": "random",
    "import secrets\nu = secrets.randbits(53) / 2**53\n": "secrets",
    "import numpy as np\nx = np.random.laplace(0, 1)\n": "numpy.random",
    "import numpy\nx = numpy.random.default_rng().laplace()\n": "numpy.random",
    "from numpy import random as r\n": "numpy.random",
    "from numpy.random import laplace\n": "numpy.random",
    "import numpy.random\n": "numpy.random",
    "import os\nb = os.urandom(8)\n": "os.urandom",
    "from os import urandom\n": "os.urandom",
    "from scipy import stats\nx = stats.laplace.rvs()\n": "scipy.stats",
    "import uuid\nu = uuid.uuid4().int / 2**128\n": "uuid",
    "m = __import__('random')\n": "random",
    "import importlib\nm = importlib.import_module('secrets')\n": "secrets",
    "import opendp.prelude as dp\ndp.enable_features('contrib', 'honest-but-curious')\n": "enable_features",
    "import opendp.prelude as dp\nf = ['floating-point']\ndp.enable_features(*f)\n": "enable_features",
}


@pytest.mark.parametrize("source", list(VIOLATIONS), ids=range(len(VIOLATIONS)))
def test_gate_catches_violations(source: str) -> None:
    """Property: the scanner is not vacuous: each of these ways of drawing noise outside OpenDP or
    of enabling a test-only feature is flagged, even in node/dp.py itself."""
    found = {f.source for f in scan(source, FEATURES_MODULE)}
    assert VIOLATIONS[source] in found, found


def test_gate_catches_feature_switch_elsewhere_and_passes_clean_code() -> None:
    """Property: ``enable_features("contrib")`` is accepted only in node/dp.py, and ordinary code
    (OpenDP noise, arithmetic, the word "random" in text) is not flagged."""
    switch = "import opendp.prelude as dp\ndp.enable_features('contrib')\n"
    assert scan(switch, FEATURES_MODULE) == []
    assert [f.source for f in scan(switch, "node/release.py")] == ["enable_features"]
    clean = (
        "import math\nimport opendp.prelude as dp\n"
        "space = dp.vector_domain(dp.atom_domain(T=float)), dp.l1_distance(T=float)\n"
        "m = dp.m.make_laplace(*space, scale=1.0)\n"
        "x = m([1.0])\ns = 'random noise'\nrandom_ok = math.floor(2.5)\n"
    )
    assert scan(clean, "node/release.py") == []
