"""Finding processes a test started, by a marker in their command line (a temporary directory)."""

from __future__ import annotations

import psutil


def survivors(marker: str) -> list[psutil.Process]:
    """Live (not zombie) processes whose command line contains ``marker``."""
    found = []
    for proc in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            cmdline = " ".join(proc.info["cmdline"] or ())
            if marker in cmdline and proc.info["status"] != psutil.STATUS_ZOMBIE:
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found
