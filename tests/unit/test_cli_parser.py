"""The ``accord`` command line as a newcomer meets it: help, version, descriptions, exit statuses."""

from __future__ import annotations

import argparse

import pytest

from accord import __version__
from accord.cli import BUG, USER_ERROR, build_parser, main
from accord.errors import ConfigError, InternalError


def _subparsers(
    parser: argparse.ArgumentParser, path: str = "accord"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.append((f"{path} {name}", sub))
                out += _subparsers(sub, f"{path} {name}")
    return out


def test_every_command_and_subcommand_has_a_description() -> None:
    """Property: `accord X --help` (and `accord X Y --help`) explains what X does, for every X."""
    found = _subparsers(build_parser())
    names = {n for n, _ in found}
    for expected in ("accord query", "accord catalog", "accord node serve", "accord pki init", "accord demo"):
        assert expected in names
    assert [n for n, p in found if not (p.description or "").strip()] == []


def test_bare_accord_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: accord") and "query" in out and "--version" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"accord {__version__}"


def _run_with(monkeypatch: pytest.MonkeyPatch, error: BaseException) -> int:
    def fail(args: argparse.Namespace) -> int:
        raise error

    monkeypatch.setattr("accord.policies.pki_cli._show", fail)  # bound when main builds the parser
    return main(["pki", "show", "x.pem"])


def test_user_errors_and_bugs_have_their_own_exit_status(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Property: a user error exits 2 with one line saying what to change; a bug (InternalError, or
    any other exception) exits 70 and says it is a bug in Accord, not in what the user asked."""
    assert _run_with(monkeypatch, ConfigError("fix the thing")) == USER_ERROR == 2
    assert capsys.readouterr().err.strip() == "accord pki: error: fix the thing"
    for bug in (InternalError("a release had NaN"), KeyError("boom")):
        assert _run_with(monkeypatch, bug) == BUG == 70
        err = capsys.readouterr().err
        assert "internal error (a bug in Accord, not in what you asked)" in err and "Traceback" not in err
