"""Accord's own servers as child processes, started the way an operator starts them.

``accord demo``, the benchmarks and the fault tests start nodes and coordinators with
:func:`spawn` (``python -m accord.cli ...``), read their output on a thread and wait for the
``listening on port N`` line.
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from accord.errors import Unavailable

__all__ = ["Process", "accord_command", "free_ports", "spawn"]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[str]
    lines: queue.Queue[str] = field(default_factory=queue.Queue)
    log: list[str] = field(default_factory=list)

    def start_reader(self, stream: IO[str]) -> None:
        def pump() -> None:
            for line in stream:
                self.lines.put(line)
                self.log.append(line)

        threading.Thread(target=pump, daemon=True, name=f"read-{self.name}").start()

    def wait_for_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.popen.poll() is not None:
                time.sleep(0.2)
                tail = "".join(self.log[-15:])
                raise Unavailable(f"{self.name} exited with status {self.popen.returncode}:\n{tail}")
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                continue
            if "listening on port" in line:
                return int(line.rsplit(" ", 1)[1])
        raise Unavailable(f"{self.name} did not start within {timeout:.0f} s")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(5)


def accord_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "accord.cli", *args]


def spawn(name: str, args: list[str], cwd: Path) -> Process:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    popen = subprocess.Popen(
        args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )
    proc = Process(name, popen)
    assert popen.stdout is not None
    proc.start_reader(popen.stdout)
    return proc


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """``count`` distinct TCP ports that are free on ``host`` right now (all held open until every
    one is chosen), so the configs can name real ports and be served again as they are."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
        return ports
