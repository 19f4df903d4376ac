"""Lexical guards and names for the SQL subset (private to :mod:`accord.query.sql`).

Hostile text is refused in two linear, non-recursive passes before sqlglot's (recursive) parser
runs: a cheap regular-expression scan of the raw text (length, nesting, chained unary operators,
list items, boolean operators), then the same limits counted exactly on sqlglot's own tokens, so
that any difference between the cheap scan and sqlglot's tokenizer cannot let deep nesting through.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from typing import NoReturn

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError, SqlglotError, TokenError
from sqlglot.tokenizer_core import Token, TokenType

from accord.errors import InvalidQuery, Violation

log = logging.getLogger(__name__)

MAX_SQL_LENGTH = 64 * 1024
"""Longest accepted query text, in characters."""
MAX_NESTING = 32
"""Deepest accepted nesting of brackets ``( [ {``, and longest run of unary ``NOT``/``-``/``+``.
Square brackets and braces (arrays, subscripts, structs: never accepted) may also appear at most
this many times in all: sqlglot types a chain of subscripts ``x[1][1]...`` in quadratic time."""
MAX_PREDICATES = 1000
"""Most predicate nodes (comparisons, IN, BETWEEN, IS NULL, AND, OR, NOT) in a WHERE clause."""
MAX_IN_LIST = 1000
"""Most values in one ``IN (...)`` list."""
MAX_LIST_ITEMS = 4 * MAX_IN_LIST
"""Most commas in the whole query (so several full IN lists still fit)."""
MAX_TOKENS = 10_000
"""Most SQL tokens (words, literals, operators, punctuation) in the whole query."""

SHAPE = "SELECT [group columns,] aggregates FROM dataset [WHERE condition] [GROUP BY columns]"
AGGS = "COUNT(*), COUNT(column), SUM(column) or AVG(column)"
_DIALECT = Dialect.get_or_raise("duckdb")


def refuse(message: str, field: str, description: str, cls: type[InvalidQuery] = InvalidQuery) -> NoReturn:
    raise cls(message, (Violation(field, description),))


class _Limits:
    """Counts one pass over the query's tokens and refuses as soon as a limit is crossed."""

    def __init__(self) -> None:
        self.depth = self.chain = self.commas = self.booleans = self.tokens = self.brackets = 0

    def token(self) -> None:
        self.tokens += 1
        if self.tokens > MAX_TOKENS:
            refuse(
                f"the query has more than {MAX_TOKENS} tokens; the limit is {MAX_TOKENS}. "
                "Write a shorter query",
                "sql",
                "too many tokens",
            )

    def open(self) -> None:
        self.depth += 1
        if self.depth > MAX_NESTING:
            refuse(
                f"the query nests parentheses or brackets more than {MAX_NESTING} levels deep; the limit is "
                f"{MAX_NESTING}. Remove redundant parentheses",
                "sql",
                "nested too deeply",
            )

    def bracket(self) -> None:
        self.brackets += 1
        if self.brackets > MAX_NESTING:
            refuse(
                f"the query has more than {MAX_NESTING} square brackets or braces; Accord's SQL has no "
                "arrays, subscripts or structs: compare columns with plain literals or use IN (...)",
                "sql",
                "too many brackets",
            )

    def close(self) -> None:
        self.depth = max(self.depth - 1, 0)

    def unary(self) -> None:
        self.chain += 1
        if self.chain > MAX_NESTING:
            refuse(
                f"the query chains more than {MAX_NESTING} NOT, - or + operators in a row (nesting too "
                f"deep); the limit is {MAX_NESTING}. Remove the redundant ones",
                "sql",
                "nested too deeply",
            )

    def boolean(self) -> None:
        self.booleans += 1
        if self.booleans > MAX_PREDICATES:
            refuse(
                f"the query has more than {MAX_PREDICATES} AND/OR/NOT operators; the limit is "
                f"{MAX_PREDICATES} predicates. Simplify the WHERE clause (IN lists and BETWEEN "
                "replace long OR chains)",
                "where",
                "too many predicates",
            )

    def comma(self) -> None:
        self.commas += 1
        if self.commas > MAX_LIST_ITEMS:
            refuse(
                f"the query has more than {MAX_LIST_ITEMS} list items; the limit is {MAX_LIST_ITEMS}. "
                f"Split it into smaller queries (each IN list may hold at most {MAX_IN_LIST} values)",
                "sql",
                "too many list items",
            )


# ---- pass 1: cheap scan of the raw text ------------------------------------------------------
# Approximates sqlglot's DuckDB tokenizer (strings, E-strings, quoted identifiers, heredoc strings,
# nested block comments, line comments); pass 2 makes the limits exact.

_TOKEN = re.compile(
    r"""(?P<line>--[^\n]*)
      |(?P<block>/\*)
      |(?P<estr>[eE]'(?:[^'\\]|\\.|'')*(?:'|\Z))
      |(?P<str>'[^']*(?:'|\Z))
      |(?P<ident>"[^"]*(?:"|\Z))
      |(?P<heredoc>\$(?:[^\W\d]\w*)?\$)
      |(?P<open>[(\[{])
      |(?P<close>[)\]}])
      |(?P<comma>,)
      |(?P<word>[^\W\d]\w*)
      |(?P<num>\d[\w.]*)
      |(?P<unary>[-+~!])
      |(?P<space>\s+)
      |(?P<other>.)""",
    re.VERBOSE | re.DOTALL,
)
_COMMENT_EDGE = re.compile(r"/\*|\*/")
_BOOLEAN_WORDS = frozenset({"AND", "OR"})


def _skip_block_comment(text: str, pos: int) -> int:
    depth = 1
    while depth:
        m = _COMMENT_EDGE.search(text, pos)
        if m is None:
            return len(text)
        depth += 1 if m.group() == "/*" else -1
        pos = m.end()
    return pos


def prescan(text: str) -> None:
    """Refuse oversized or over-nested text in linear time, before sqlglot sees it."""
    if len(text) > MAX_SQL_LENGTH:
        refuse(
            f"the query is {len(text)} characters; the limit is {MAX_SQL_LENGTH}. "
            "Write a shorter query (long IN lists can often be replaced by BETWEEN)",
            "sql",
            "too long",
        )
    if not text.strip():
        refuse(f"the query is empty; write {SHAPE}", "sql", "empty")
    limits = _Limits()
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        assert m is not None  # the last alternative matches any character
        kind, pos = m.lastgroup, m.end()
        if kind not in ("block", "space", "line"):
            limits.token()
        if kind == "block":
            pos = _skip_block_comment(text, pos)
        elif kind == "heredoc":
            end = text.find(m.group(), pos)
            pos = pos if end < 0 else end + len(m.group())
            limits.chain = 0
        elif kind in ("space", "line"):
            pass
        elif kind == "unary" or (kind == "word" and m.group().upper() == "NOT"):
            limits.unary()
            if kind == "word":
                limits.boolean()
        else:
            limits.chain = 0
            if kind == "open":
                limits.open()
                if m.group() != "(":
                    limits.bracket()
            elif kind == "close":
                limits.close()
            elif kind == "comma":
                limits.comma()
            elif kind == "word" and m.group().upper() in _BOOLEAN_WORDS:
                limits.boolean()


# ---- pass 2: the same limits on sqlglot's tokens, then the parser ----------------------------

_OPEN = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSE = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})
_UNARY = frozenset({TokenType.NOT, TokenType.DASH, TokenType.PLUS, TokenType.TILDE, TokenType.EXCLAMATION})


def _check_tokens(tokens: Iterable[Token]) -> None:
    limits = _Limits()
    for token in tokens:
        limits.token()
        kind = token.token_type
        if kind in _UNARY:
            limits.unary()
            if kind is TokenType.NOT:
                limits.boolean()
            continue
        limits.chain = 0
        if kind in _OPEN:
            limits.open()
            if kind is not TokenType.L_PAREN:
                limits.bracket()
        elif kind in _CLOSE:
            limits.close()
        elif kind is TokenType.COMMA:
            limits.comma()
        elif kind in (TokenType.AND, TokenType.OR):
            limits.boolean()


def _syntax_error(err: ParseError) -> NoReturn:
    first = err.errors[0] if err.errors else {}
    where = ""
    if first.get("line") is not None:
        where = f" at line {first.get('line')}, column {first.get('col')}"
    near = str(first.get("highlight") or "").strip()
    near_text = f" near {near[:40]!r}" if near else ""
    what = str(first.get("description") or "invalid syntax")
    refuse(f"SQL syntax error{where}{near_text}: {what}. Write {SHAPE}", "sql", f"syntax error{where}")


def _too_deep() -> NoReturn:
    refuse(
        f"the query is nested too deeply to parse; remove redundant parentheses or operators "
        f"(the limit is {MAX_NESTING} levels)",
        "sql",
        "nested too deeply",
    )


def run_sqlglot(text: str) -> exp.Expr:
    """The one statement in ``text``; every sqlglot failure becomes InvalidQuery.

    sqlglot is caught broadly here, and only here: no input may make anything but InvalidQuery
    escape, whatever the state of sqlglot's internals.
    """
    try:
        tokens = _DIALECT.tokenize(text)
    except TokenError as err:
        refuse(
            f"the SQL could not be read ({str(err)[:120]}); check for an unterminated string or quoted "
            f"identifier. Write {SHAPE}",
            "sql",
            "unreadable text",
        )
    except RecursionError:
        _too_deep()
    except (SqlglotError, ValueError, TypeError, KeyError, IndexError, AttributeError, AssertionError):
        log.debug("sqlglot could not tokenize a query", exc_info=True)
        refuse(f"the SQL could not be read; write {SHAPE}", "sql", "unreadable text")
    _check_tokens(tokens)
    try:
        statements = _DIALECT.parser().parse(tokens, text)
    except ParseError as err:
        _syntax_error(err)
    except RecursionError:
        _too_deep()
    except (SqlglotError, ValueError, TypeError, KeyError, IndexError, AttributeError, AssertionError):
        log.debug("sqlglot could not parse a query", exc_info=True)
        refuse(f"the SQL could not be parsed; write {SHAPE}", "sql", "unparseable")
    # A comment after the last semicolon comes back as an empty Semicolon "statement" carrying it.
    found = [s for s in statements if s is not None and not isinstance(s, exp.Semicolon)]
    if not found:
        refuse(f"the query contains no statement; write {SHAPE}", "sql", "no statement")
    if len(found) > 1:
        refuse(
            f"the query contains {len(found)} statements; send one SELECT statement per query",
            "sql",
            "multiple statements",
        )
    return found[0]
