"""Running ``accord`` commands the way a user does: the installed console script, in a clean
environment (no analyst profile from the real home or ``$ACCORD_PROFILE``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

RUN_TIMEOUT = 60.0
_SCRIPT = Path(sys.executable).with_name("accord")
# The installed console script when there is one (what users run), else the same entry point.
ACCORD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "accord.cli"]


def _env(home: Path) -> dict[str, str]:
    """The environment of every command: no analyst profile from the real home or $ACCORD_PROFILE."""
    env = {k: v for k, v in os.environ.items() if k != "ACCORD_PROFILE"}
    env.update(HOME=str(home), PYTHONUNBUFFERED="1")
    return env


def accord(*args: str, cwd: Path, home: Path) -> subprocess.CompletedProcess[str]:
    """Run one ``accord`` command to completion; its exit status, stdout and stderr."""
    return subprocess.run(
        [*ACCORD, *args],
        cwd=cwd,
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )
