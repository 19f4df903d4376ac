"""Regenerate the committed protobuf/gRPC Python code from ``protos/v1/*.proto``.

    python -m accord.protos.codegen          # rewrite protos/v1/*_pb2*.py and *.pyi
    python -m accord.protos.codegen --check  # exit 1 if the committed files differ from a fresh build

The generator is pinned (``grpcio-tools`` in the ``dev`` extra of pyproject.toml) so that the
output is byte-for-byte reproducible; the check is run by the test suite.
"""

from __future__ import annotations

import argparse
import filecmp
import shutil
import sys
import tempfile
from importlib import resources
from pathlib import Path

__all__ = [
    "committed_files",
    "generate",
    "main",
    "proto_files",
]


ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "protos" / "v1"
IMPORT_PATH = Path("accord", "protos", "v1")
"""Where protoc sees the files: the path mirrors the Python import path (``accord.protos.v1``), so
the generated modules import each other as ``from accord.protos.v1 import common_pb2``. protoc
reaches them through the ``accord/protos`` symbolic link."""
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.glob("*.proto"))


def generate(out_root: Path) -> list[Path]:
    """Compile every .proto into ``out_root`` (mirroring ``protos/v1``); return the files made."""
    from grpc_tools import protoc  # dev-only dependency: imported lazily

    include = str(resources.files("grpc_tools") / "_proto")
    rels = [str(IMPORT_PATH / p.name) for p in proto_files()]
    args = [
        "grpc_tools.protoc",
        f"-I{ROOT}",
        f"-I{include}",
        f"--python_out={out_root}",
        f"--pyi_out={out_root}",
        f"--grpc_python_out={out_root}",
        *rels,
    ]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed; see the messages above")
    return sorted(p for p in (out_root / IMPORT_PATH).iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def committed_files() -> list[Path]:
    return sorted(p for p in PROTO_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if committed code is stale")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        fresh = generate(Path(tmp))
        if args.check:
            want = {p.name for p in fresh}
            have = {p.name for p in committed_files()}
            problems = [f"missing: {n}" for n in sorted(want - have)]
            problems += [f"not generated from any .proto: {n}" for n in sorted(have - want)]
            problems += [
                f"differs: {p.name}"
                for p in fresh
                if p.name in have and not filecmp.cmp(p, PROTO_DIR / p.name, shallow=False)
            ]
            if problems:
                print("generated protobuf code is out of date; run `make protos`:", file=sys.stderr)
                for line in problems:
                    print(f"  {line}", file=sys.stderr)
                return 1
            print(f"generated code up to date ({len(fresh)} files)")
            return 0
        for stale in committed_files():
            stale.unlink()
        for p in fresh:
            shutil.copyfile(p, PROTO_DIR / p.name)
            print(f"wrote {p.relative_to(Path(tmp))}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
