"""What installing Accord puts into an analyst's environment: one import namespace, ``accord``, and
the ``accord`` command, built from the repository as pip builds it."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.rooms import FOLDERS, ROOT

_NOT_SHIPPED = shutil.ignore_patterns(
    ".git", ".venv", "bench", "tests", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", ".hypothesis"
)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel pip builds from a copy of the working tree (links kept as links), so the build
    writes nothing into the repository."""
    source = tmp_path_factory.mktemp("source") / "accord"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_NOT_SHIPPED)
    out = tmp_path_factory.mktemp("wheel")
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    built = subprocess.run(
        [*command, "-w", str(out), str(source)], capture_output=True, text=True, timeout=300
    )
    assert built.returncode == 0, built.stderr
    (path,) = out.glob("accord-*.whl")
    return path


def test_the_wheel_holds_one_top_level_package(wheel: Path) -> None:
    """Property: every file in the wheel lies under ``accord/`` (or the wheel's own metadata): no
    generic top-level ``node``, ``protos``, ``coordinator``, ``policies``, ``tests`` or ``bench``."""
    with zipfile.ZipFile(wheel) as z:
        names = z.namelist()
        top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
        assert top == {"accord"}
        info = next(n for n in names if n.endswith(".dist-info/top_level.txt"))
        assert z.read(info).decode().split() == ["accord"]


def test_the_wheel_holds_every_room_as_real_files(wheel: Path) -> None:
    """Property: each room reached through the links in accord/ is in the wheel as real modules,
    with the wire contract's .proto files and type stubs and the py.typed marker; entry points name
    the one command and its subcommands."""
    with zipfile.ZipFile(wheel) as z:
        names = set(z.namelist())
        for room in FOLDERS:
            assert f"accord/{room}/__init__.py" in names, room
        for required in (
            "accord/cli.py",
            "accord/errors.py",
            "accord/py.typed",
            "accord/node/service.py",
            "accord/node/duckdb/engine.py",
            "accord/protos/v1/node.proto",
            "accord/protos/v1/node_pb2.pyi",
        ):
            assert required in names, required
        assert not [n for n in names if "/tests/" in n or n.startswith(("tests/", "bench/"))]
        entry = z.read(next(n for n in names if n.endswith("entry_points.txt"))).decode()
    assert "accord = accord.cli:main" in entry
    for sub in ("catalog", "coordinator", "demo", "node", "pki", "query"):
        assert f"{sub} = accord." in entry, sub


def test_the_installed_wheel_imports_and_runs(wheel: Path, tmp_path: Path) -> None:
    """Property: installed on its own (away from the repository), ``accord`` imports from the
    install and its command line answers ``--version``."""
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(target), str(wheel)],
        check=True,
        timeout=300,
    )
    env = dict(os.environ, PYTHONPATH=str(target))
    probe = subprocess.run(
        [sys.executable, "-c", "import accord, accord.node.service, accord.cli; print(accord.__file__)"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert probe.returncode == 0, probe.stderr
    assert probe.stdout.strip().startswith(str(target))
    version = subprocess.run(
        [sys.executable, "-m", "accord", "--version"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert version.returncode == 0 and version.stdout.startswith("accord ")
