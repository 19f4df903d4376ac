"""The coordinator's TOML configuration, validated at start-up.

```toml
[coordinator]
name = "coordinator"            # must match the coordinator certificate's name
listen = "127.0.0.1:50050"
deadline_seconds = 10           # per-node deadline for each query
max_workers = 16                # optional
max_in_flight = 32              # optional: queries answered at once; more get RESOURCE_EXHAUSTED
report_node_timings = false     # optional: send analysts the slowest node's own execution time
                                # (a data-dependent number; for benchmarking, off by default)

[tls]
cert = "certs/coordinators/coordinator.pem"
key = "certs/coordinators/coordinator.key"
ca = "certs/ca.pem"

[access]
analysts = ["alice"]            # analyst certificate names allowed to submit queries

[nodes.county]                  # one table per node; the key is the node's certificate name
address = "127.0.0.1:50051"
```
Relative paths resolve against the directory of the config file. Every error names the file,
the key and the fix.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from accord.errors import ConfigError
from accord.rpc.transport import TlsFiles

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")


@dataclass(frozen=True)
class NodeEndpoint:
    name: str
    address: str


@dataclass(frozen=True)
class CoordinatorConfig:
    name: str
    listen: str
    tls: TlsFiles
    analysts: tuple[str, ...]
    nodes: tuple[NodeEndpoint, ...]
    deadline_seconds: float = 10.0
    max_workers: int = 16
    max_in_flight: int = 32
    report_node_timings: bool = False


class _Reader:
    """Reads one TOML table, remembering where it came from for error messages."""

    def __init__(self, path: Path, prefix: str, table: Any) -> None:
        self.path, self.prefix = path, prefix
        if not isinstance(table, dict):
            raise self.error("", "must be a table (a [section])")
        self.table: dict[str, Any] = table

    def key(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.path}: {self.key(key) if key else self.prefix or 'file'}: {problem}")

    def check_keys(self, allowed: set[str]) -> None:
        for key in self.table:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = (
                    f"; did you mean {near[0]!r}?"
                    if near
                    else f"; allowed keys: {', '.join(sorted(allowed))}"
                )
                raise self.error(key, f"unknown key{hint}")

    def get(self, key: str, kind: type, default: Any = None, required: bool = False) -> Any:
        if key not in self.table:
            if required:
                raise self.error(key, f"is required; add `{key} = ...` under [{self.prefix}]")
            return default
        value = self.table[key]
        ok = isinstance(value, kind) and not (kind in (int, float) and isinstance(value, bool))
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value, ok = float(value), True
        if not ok:
            raise self.error(key, f"must be a {kind.__name__}, not {type(value).__name__}")
        return value

    def path_of(self, key: str) -> Path:
        raw = self.get(key, str, required=True)
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else (self.path.parent / p)
        if not raw or not p.is_file():
            raise self.error(
                key,
                f"no such file {str(p)!r}; fix the path (relative paths start at the config's folder) "
                "or create it with `accord pki init`",
            )
        return p

    def address(self, key: str, *, listen: bool) -> str:
        value: str = self.get(key, str, required=True)
        example = "127.0.0.1:50050" if listen else "127.0.0.1:50051"
        match = _ADDRESS.match(value)
        lowest = 0 if listen else 1
        if not match or not lowest <= int(match.group(2)) <= 65535:
            raise self.error(
                key, f"{value!r} is not host:port with a port from {lowest} to 65535; write e.g. {example!r}"
            )
        return value


def load_coordinator_config(path: str | Path) -> CoordinatorConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; pass the coordinator config with --config") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path}: cannot read the file ({err.__class__.__name__}); pass a readable UTF-8 TOML file"
        ) from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}; fix the syntax") from None
    top = _Reader(path, "", data)
    top.check_keys({"coordinator", "tls", "access", "nodes"})
    for section in ("coordinator", "tls", "nodes"):
        if section not in data:
            raise ConfigError(f"{path}: missing [{section}] section; see the README for an example")
    co = _Reader(path, "coordinator", data["coordinator"])
    co.check_keys(
        {"name", "listen", "deadline_seconds", "max_workers", "max_in_flight", "report_node_timings"}
    )
    name = co.get("name", str, required=True)
    if not _NAME.match(name):
        raise co.error("name", "use lower-case letters, digits and '-' (the certificate name)")
    listen = co.address("listen", listen=True)
    deadline = co.get("deadline_seconds", float, 10.0)
    if not 0 < deadline <= 3600:
        raise co.error("deadline_seconds", "must be between 0 and 3600 seconds")
    max_workers = co.get("max_workers", int, 16)
    max_in_flight = co.get("max_in_flight", int, 32)
    report_node_timings = co.get("report_node_timings", bool, False)
    for key, value in (("max_workers", max_workers), ("max_in_flight", max_in_flight)):
        if value < 1:
            raise co.error(key, "must be at least 1")

    tls = _Reader(path, "tls", data["tls"])
    tls.check_keys({"cert", "key", "ca"})
    tls_files = TlsFiles(tls.path_of("cert"), tls.path_of("key"), tls.path_of("ca"))

    access = _Reader(path, "access", data.get("access", {}))
    access.check_keys({"analysts"})
    analysts = access.get("analysts", list, [])
    if not analysts or not all(isinstance(a, str) and _NAME.match(a) for a in analysts):
        raise access.error("analysts", 'list the analyst certificate names allowed to query, e.g. ["alice"]')
    if len(set(analysts)) != len(analysts):
        raise access.error("analysts", "lists a name twice; remove the duplicate")

    nodes_table = _Reader(path, "nodes", data["nodes"])
    if not nodes_table.table:
        raise nodes_table.error("", "no nodes configured; add a [nodes.NAME] table with an address")
    nodes: list[NodeEndpoint] = []
    for node_name, table in sorted(nodes_table.table.items()):
        reader = _Reader(path, f"nodes.{node_name}", table)
        reader.check_keys({"address"})
        if not _NAME.match(node_name):
            raise reader.error("", "node names are certificate names: lower-case letters, digits and '-'")
        address = reader.address("address", listen=False)
        same = [n.name for n in nodes if n.address == address]
        if same:
            raise reader.error(
                "address", f"{address!r} is also the address of nodes.{same[0]}; each node has its own"
            )
        nodes.append(NodeEndpoint(node_name, address))
    return CoordinatorConfig(
        name=name,
        listen=listen,
        tls=tls_files,
        analysts=tuple(analysts),
        nodes=tuple(nodes),
        deadline_seconds=deadline,
        max_workers=max_workers,
        max_in_flight=max_in_flight,
        report_node_timings=report_node_timings,
    )
