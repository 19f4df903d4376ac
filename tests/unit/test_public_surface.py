"""The public surface: every public module says what it exports (``__all__``), every exported name
exists, and a change to what Accord exports is a deliberate one (httpx holds its surface the same
way). The held surface is ``public_surface.txt`` beside this file; after an intended change run

    .venv/bin/python -m tests.unit.test_public_surface

to write it anew, and review the difference like any other change.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from tests.rooms import module_name, sources

HELD = Path(__file__).with_name("public_surface.txt")


def public_modules() -> list[str]:
    """Modules with no private part in their name (``accord.query._sql_lex`` is private)."""
    names = [module_name(p) for p in sources() if p.name != "__main__.py"]
    return sorted(n for n in names if not any(part.startswith("_") for part in n.split(".")))


def surface() -> dict[str, list[str]]:
    return {
        name: sorted(getattr(importlib.import_module(name), "__all__", ["<no __all__>"]))
        for name in public_modules()
    }


def render(s: dict[str, list[str]]) -> str:
    return "".join(f"{module}: {', '.join(names)}\n" for module, names in s.items())


def test_every_public_module_declares_what_it_exports() -> None:
    """Property: each public module has ``__all__``, and every name in it is defined there."""
    missing, undefined = [], []
    for name in public_modules():
        module = importlib.import_module(name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            missing.append(name)
            continue
        undefined += [f"{name}.{n}" for n in exported if not hasattr(module, n)]
    assert missing == [] and undefined == []


def test_the_public_surface_is_held() -> None:
    """Property: what Accord exports is exactly the held surface (update it deliberately)."""
    assert render(surface()) == HELD.read_text(encoding="utf-8"), (
        "the public surface changed; if that is intended, run "
        "`.venv/bin/python -m tests.unit.test_public_surface` and review the difference"
    )


if __name__ == "__main__":
    HELD.write_text(render(surface()), encoding="utf-8")
    print(f"wrote {HELD}", file=sys.stderr)
