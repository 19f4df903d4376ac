"""The ``accord`` command line: a thin dispatcher.

Subcommands live with the package they drive and are found through the ``accord.commands``
entry-point group (see pyproject.toml). Each entry point is a ``register(subparsers)`` function
that adds its parser and sets ``func`` to a callable taking the parsed arguments and returning an
exit status.

Exit statuses: 0 success; 2 a user error (:class:`~accord.errors.AccordError`: one clear line
saying what to change) or a usage error; 70 a bug in Accord (``EX_SOFTWARE``: reported as a bug,
never as the user's mistake); 130 interrupted; 141 the reader of the output went away.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from importlib.metadata import entry_points

from accord import __version__
from accord.errors import AccordError, InternalError, printable

__all__ = ["BUG", "LOG_FORMAT", "USER_ERROR", "EscapingFormatter", "build_parser", "main"]

USER_ERROR = 2
BUG = 70


LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class EscapingFormatter(logging.Formatter):
    """One log record, one line: control characters in the message (a query id, a name, SQL or an
    error text chosen by a client or a node) are escaped (:func:`~accord.errors.printable`), so
    they can neither forge log lines nor drive the terminal. A traceback keeps its lines."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = printable(record.message)
        return super().formatMessage(record)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="accord",
        description="Federated, differentially private aggregate queries for public authorities.",
        epilog="Run `accord COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"accord {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for ep in sorted(entry_points(group="accord.commands"), key=lambda e: e.name):
        ep.load()(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # gRPC's C core logs failed TLS handshakes to stderr on its own ("E1203 ... No match found for
    # server name"); our errors say the same in words that say what to change. Operators who want
    # the C core's logs set GRPC_VERBOSITY themselves. (Read when gRPC starts, so set it first.)
    os.environ.setdefault("GRPC_VERBOSITY", "NONE")
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # a bare `accord`: say what there is
        parser.print_help()
        return 0
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(LOG_FORMAT))
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, handlers=[handler])
    try:
        status: int = args.func(args)
    except AccordError as err:
        print(f"accord {args.command}: error: {printable(err.message)}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `accord catalog | head`: the reader left; say nothing more (and not on the closed pipe).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141
    except Exception as err:  # InternalError, or any other bug: not the user's doing
        what = err.message if isinstance(err, InternalError) else f"{type(err).__name__}: {err}"
        if args.verbose:
            traceback.print_exc()
        print(
            f"accord {args.command}: internal error (a bug in Accord, not in what you asked): "
            f"{printable(what)}. "
            "Please report it with the output of the same command run with -v.",
            file=sys.stderr,
        )
        return BUG
    return status


if __name__ == "__main__":
    raise SystemExit(main())
