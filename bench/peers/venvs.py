"""One virtual environment per peer, made from its pinned requirements file and reused.

The peers pin conflicting versions (SmartNoise SQL wants OpenDP 0.14 and Accord 0.16; pyqrlew
wants numpy < 2), so each lives in ``bench/.venvs/<name>`` (git-ignored), built from
``bench/peers/<name>.txt`` with ``python -m venv`` and ``pip install -r``. A stamp file in the venv
holds the SHA-256 of the requirements file and the interpreter version; while both match, the venv
is reused as it is. A venv that cannot be built is not an error for the benchmark: the caller gets
a note (with pip's last lines) to put in the rows of that peer, so the peer is skipped visibly.

    python -m bench.peers.venvs              # build (or check) every peer's venv
    python -m bench.peers.venvs pyqrlew
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from bench.common import VENVS

PEERS = Path(__file__).resolve().parent
NAMES = ("opendp-polars", "smartnoise-sql", "pyqrlew")
STAMP = ".accord-bench-requirements"
INSTALL_TIMEOUT_S = 1800
_TAIL_LINES = 8


def requirements(name: str) -> Path:
    return PEERS / f"{name}.txt"


def _digest(req: Path) -> str:
    h = hashlib.sha256(req.read_bytes())
    h.update(sys.version.encode())
    return h.hexdigest()


def _python(venv: Path) -> Path:
    return venv / "bin" / "python"


def _tail(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(lines[-_TAIL_LINES:])


def _run(cmd: list[str], timeout: float) -> tuple[int, str]:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return -1, f"timed out after {timeout:.0f} s"
    except OSError as err:
        return -1, f"{type(err).__name__}: {err}"
    return proc.returncode, proc.stdout + "\n" + proc.stderr


def ensure_venv(name: str) -> Path | str:
    """The python of peer ``name``'s venv, built first when missing or stale; or, when it cannot
    be built, a note saying why (pip's last lines included)."""
    req = requirements(name)
    if not req.is_file():
        return f"{name}: no requirements file {req}"
    venv = VENVS / name
    stamp = venv / STAMP
    digest = _digest(req)
    VENVS.mkdir(parents=True, exist_ok=True)
    with open(VENVS / f".{name}.lock", "w") as lock:  # two runs never build one venv at once
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _python(venv).is_file() and stamp.is_file() and stamp.read_text().strip() == digest:
            return _python(venv)
        print(f"   building the {name} venv in {venv} (pip install -r {req.name}) ...", flush=True)
        shutil.rmtree(venv, ignore_errors=True)
        code, out = _run([sys.executable, "-m", "venv", str(venv)], 300)
        if code != 0:
            return f"{name} could not be installed: python -m venv failed ({code}): {_tail(out)}"
        pip = [str(_python(venv)), "-m", "pip", "install", "--disable-pip-version-check", "--quiet"]
        code, out = _run([*pip, "-r", str(req)], INSTALL_TIMEOUT_S)
        if code != 0:
            shutil.rmtree(venv, ignore_errors=True)  # never reuse a half-installed venv
            return f"{name} could not be installed: pip install -r {req.name} failed ({code}): {_tail(out)}"
        stamp.write_text(digest + "\n")
        return _python(venv)


def main(argv: list[str] | None = None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or list(NAMES)
    failed = 0
    for name in names:
        got = ensure_venv(name)
        print(f"{name}: {got}")
        failed += isinstance(got, str)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
