"""Reading Accord's TOML files: one reader for the node, coordinator and analyst-profile configs.

Every file is read with :func:`read_toml` and walked with :class:`Table`, so every mistake is a
:class:`~accord.errors.ConfigError` that names the file, the full key (``datasets.residents.
columns.age.upper``) and the fix, in the same words whichever file it is. The rules for the values
every file shares live here once: a federation name (:data:`NAME_PATTERN`, the name in a
certificate) and a network address (``host:port`` with a port in range, :meth:`Table.address`).
"""

from __future__ import annotations

import difflib
import os
import re
import tomllib
from collections.abc import Collection
from pathlib import Path
from typing import Any

from accord.errors import ConfigError

__all__ = [
    "ADDRESS_PATTERN",
    "NAME_PATTERN",
    "NAME_RULE",
    "Table",
    "check_address",
    "read_toml",
    "relative_path",
    "write_text_atomic",
]

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
"""A federation name: the name of a node, coordinator, analyst or auditor in its certificate."""
NAME_RULE = "1-63 lower-case letters, digits or '-', starting with a letter or digit"
ADDRESS_PATTERN = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$")
"""``host:port``, ``[ipv6]:port``; the port's range is checked by :func:`check_address`."""

_KIND_NAMES = {str: "string", int: "integer", float: "number", bool: "boolean", list: "list", dict: "table"}


def _a(noun: str) -> str:
    return f"an {noun}" if noun[:1] in "aeiou" else f"a {noun}"


def _toml_type(value: object) -> str:
    return _KIND_NAMES.get(type(value), type(value).__name__)


def read_toml(path: Path, missing_hint: str) -> dict[str, Any]:
    """The parsed TOML file at ``path``; ``missing_hint`` says how to name the right file when it
    does not exist (``pass the node config with --config``)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file; {missing_hint}") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(
            f"{path}: cannot read the file ({err.__class__.__name__}); pass a readable UTF-8 TOML file"
        ) from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{path}: not valid TOML: {err}; fix the syntax") from None


def check_address(value: str, *, listen: bool) -> str | None:
    """Why ``value`` is not a usable address (None when it is). A server may listen on port 0
    (the system picks one); a client must dial a real port."""
    match = ADDRESS_PATTERN.match(value)
    lowest = 0 if listen else 1
    if match is None or not lowest <= int(match.group(2)) <= 65535:
        example = "127.0.0.1:50051"
        return f"{value!r} is not host:port with a port from {lowest} to 65535; write e.g. {example!r}"
    return None


class Table:
    """One TOML table and where it came from, so that every error names the file and the full key."""

    def __init__(self, file: Path, prefix: str, table: Any) -> None:
        self.file, self.prefix = file, prefix
        if not isinstance(table, dict):
            raise self.error("", f"must be a table; write it as [{prefix}]")
        self.table: dict[str, Any] = table

    def key(self, key: str) -> str:
        """The full dotted name of ``key`` in this table."""
        if not key:
            return self.prefix or "(top level)"
        return f"{self.prefix}.{key}" if self.prefix else key

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"{self.file}: {self.key(key)}: {problem}")

    def check_keys(self, allowed: Collection[str]) -> None:
        """Refuse any key not in ``allowed``, with a did-you-mean hint."""
        for key in self.table:
            if key not in allowed:
                near = difflib.get_close_matches(key, sorted(allowed), n=1)
                hint = f"did you mean {near[0]!r}?" if near else f"allowed keys: {', '.join(sorted(allowed))}"
                raise self.error(key, f"unknown key; {hint}")

    def has(self, key: str) -> bool:
        return key in self.table

    def get(self, key: str, kind: type, default: Any = None, *, required: bool = False) -> Any:
        """The value of ``key``, which must be of ``kind`` (an integer is accepted as a float)."""
        if key not in self.table:
            if required:
                where = f" under [{self.prefix}]" if self.prefix else ""
                raise self.error(key, f"is required; add `{key} = ...`{where}")
            return default
        value = self.table[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if not isinstance(value, kind) or (kind in (int, float) and isinstance(value, bool)):
            raise self.error(
                key, f"must be {_a(_KIND_NAMES.get(kind, kind.__name__))}, not {_a(_toml_type(value))}"
            )
        return value

    def integer(self, key: str, default: int, low: int, high: int, advice: str) -> int:
        """An integer between ``low`` and ``high`` (``advice``: a sensible value to suggest)."""
        value: int = self.get(key, int, default)
        if not low <= value <= high:
            raise self.error(key, f"must be between {low} and {high}; {advice}")
        return value

    def sub(self, key: str, *, required: bool = False) -> Table:
        """The sub-table ``key`` (empty when it is missing and not ``required``)."""
        if key not in self.table:
            if required:
                raise self.error(key, f"missing; add a [{self.key(key)}] table")
            return Table(self.file, self.key(key), {})
        return Table(self.file, self.key(key), self.table[key])

    def path(self, key: str, *, must_exist: bool = False, hint: str = "") -> Path:
        """A file path, relative to the folder of the config file unless absolute."""
        raw = self.get(key, str, required=True)
        if not raw:
            raise self.error(key, "is empty; give a file path")
        p = Path(raw).expanduser()
        p = p if p.is_absolute() else self.file.parent / p
        if must_exist and not p.is_file():
            more = f" or {hint}" if hint else ""
            raise self.error(
                key,
                f"no such file {str(p)!r}; fix the path (relative paths start at the config's folder){more}",
            )
        return p

    def address(self, key: str, *, listen: bool) -> str:
        """A ``host:port`` to listen on (port 0 allowed) or to dial."""
        value: str = self.get(key, str, required=True)
        problem = check_address(value, listen=listen)
        if problem is not None:
            raise self.error(key, problem)
        return value

    def name(self, key: str, value: str | None = None) -> str:
        """A federation name (``value``, or the value of ``key``)."""
        name: str = self.get(key, str, required=True) if value is None else value
        if not NAME_PATTERN.fullmatch(name):
            raise self.error(key, f"{name!r} is not a certificate name; use {NAME_RULE}")
        return name

    def names(self, key: str, example: str, what: str, *, required: bool = True) -> tuple[str, ...]:
        """A non-empty list of distinct federation names (``what`` they are, for the message)."""
        values = self.get(key, list, [] if not required else None, required=required)
        if (required and not values) or not all(
            isinstance(v, str) and NAME_PATTERN.fullmatch(v) for v in values
        ):
            raise self.error(key, f"list the {what}, e.g. {example}")
        if len(set(values)) != len(values):
            raise self.error(key, "lists a name twice; remove the duplicate")
        return tuple(values)


def write_text_atomic(path: Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file in the same folder, flushed to disk, then
    renamed over ``path``: a reader (or a crash) never sees half a file. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with tmp.open("w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def relative_path(path: Path, folder: Path) -> str:
    """How a config file in ``folder`` names ``path``: relative to ``folder`` when it lies inside it
    (so the folder can be moved as a whole), absolute otherwise."""
    absolute, base = Path(os.path.abspath(path)), Path(os.path.abspath(folder))
    return absolute.relative_to(base).as_posix() if absolute.is_relative_to(base) else str(absolute)
