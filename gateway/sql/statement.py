"""Parse the analyst's SQL and accept only one read-only query.

sqlglot turns statements it does not understand into ``exp.Command`` and lets them through
untouched; a root that is a SELECT is not enough either (``WITH d AS (DELETE ... RETURNING *)``,
``SELECT ... INTO``). So the whole tree is checked against a list of node types that may never occur.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from gateway.errors import InvalidQuery

logging.getLogger("sqlglot").setLevel(logging.ERROR)

_MISSING_PART = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*\.(\w+)'>")
_TOKEN_REPR = re.compile(r"<Token token_type: [^,]+, text: ([^,]*),[^>]*>")

INPUT_DIALECTS = ("postgres", "duckdb", "mysql", "trino")
MAX_SQL_LENGTH = 100_000

#: node types that make a statement something other than a plain read
_FORBIDDEN_NODES: tuple[tuple[type[exp.Expr], str], ...] = tuple(
    (node, label)
    for node, label in (
        (exp.Command, "a command sqlglot cannot analyse"),
        (exp.Insert, "INSERT"),
        (exp.Update, "UPDATE"),
        (exp.Delete, "DELETE"),
        (getattr(exp, "Merge", exp.Command), "MERGE"),
        (exp.Create, "CREATE"),
        (exp.Drop, "DROP"),
        (getattr(exp, "Alter", exp.Command), "ALTER"),
        (exp.Into, "SELECT ... INTO"),
        (exp.Set, "SET"),
        (getattr(exp, "Pragma", exp.Command), "PRAGMA"),
        (exp.Transaction, "a transaction statement"),
        (exp.Commit, "COMMIT"),
        (exp.Rollback, "ROLLBACK"),
        (exp.Use, "USE"),
        (exp.Describe, "DESCRIBE"),
        (getattr(exp, "Show", exp.Command), "SHOW"),
        (getattr(exp, "Attach", exp.Command), "ATTACH"),
        (getattr(exp, "Detach", exp.Command), "DETACH"),
        (getattr(exp, "Copy", exp.Command), "COPY"),
        (getattr(exp, "Install", exp.Command), "INSTALL"),
        (getattr(exp, "LoadData", exp.Command), "LOAD"),
        (getattr(exp, "Cache", exp.Command), "CACHE"),
        (getattr(exp, "Analyze", exp.Command), "ANALYZE"),
        (getattr(exp, "Summarize", exp.Command), "SUMMARIZE"),
        (getattr(exp, "Pivot", exp.Command), "PIVOT/UNPIVOT"),
        (exp.TableSample, "sampling (TABLESAMPLE / USING SAMPLE)"),
        (exp.Placeholder, "a parameter placeholder"),
        (getattr(exp, "Parameter", exp.Placeholder), "a parameter"),
        (getattr(exp, "SessionParameter", exp.Placeholder), "a session variable"),
        (getattr(exp, "Lock", exp.Command), "FOR UPDATE / locking"),
    )
)


_FORBIDDEN_LABELS: dict[type[exp.Expr], str | None] = {}


def _forbidden_label(node_type: type[exp.Expr]) -> str | None:
    """The label of the first entry of ``_FORBIDDEN_NODES`` that ``node_type`` is (a subclass of), or None;
    worked out once per node class (sqlglot's classes use no custom instance checks)."""
    try:
        return _FORBIDDEN_LABELS[node_type]
    except KeyError:
        label = next((lbl for forbidden, lbl in _FORBIDDEN_NODES if issubclass(node_type, forbidden)), None)
        _FORBIDDEN_LABELS[node_type] = label
        return label


@dataclass(frozen=True)
class ParsedQuery:
    """A single read-only query, parsed, with the dialect it was written in."""

    ast: exp.Query
    dialect: str
    sql: str


def _position(sql: str, line: int | None, col: int | None) -> str:
    if not line:
        return ""
    return f" (line {line}, column {col})"


def parse_query(sql: str, dialect: str = "postgres") -> ParsedQuery:
    """Parse ``sql`` and refuse anything but exactly one read-only query."""
    if dialect not in INPUT_DIALECTS:
        raise InvalidQuery(
            f"unknown SQL dialect {dialect!r}; use one of {', '.join(INPUT_DIALECTS)}", code="unknown_dialect"
        )
    if not sql or not sql.strip():
        raise InvalidQuery("the query is empty; send one SELECT statement", code="empty_query")
    if len(sql) > MAX_SQL_LENGTH:
        raise InvalidQuery(f"the query is longer than {MAX_SQL_LENGTH} characters", code="query_too_long")
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except ParseError as exc:
        first = exc.errors[0] if exc.errors else {}
        where = _position(sql, first.get("line"), first.get("col"))
        desc = _TOKEN_REPR.sub(
            lambda m: "'" + m.group(1) + "'", str(first.get("description", "syntax error"))
        )
        desc = desc.replace("'SENTINEL'", "the end of the query")
        desc = _MISSING_PART.sub(lambda m: f"the {m.group(1).upper()} clause is incomplete", desc)
        raise InvalidQuery(
            f"syntax error{where}: {desc}; check the SQL near that position (dialect {dialect})",
            code="syntax_error",
            extra={"line": first.get("line"), "column": first.get("col")},
        ) from None
    except TokenError:
        raise InvalidQuery(
            f"the SQL could not be tokenised (an unterminated string or comment?) in dialect {dialect}",
            code="syntax_error",
        ) from None
    if len(statements) != 1:
        raise InvalidQuery(
            f"send exactly one statement; this request holds {len(statements)}", code="multiple_statements"
        )
    root = statements[0]
    for node in root.walk():
        label = _forbidden_label(type(node))
        if label is not None:
            raise InvalidQuery(
                f"{label} is not allowed: the gateway runs read-only SELECT queries only",
                code="statement_not_allowed",
                extra={"construct": label},
            )
    if not isinstance(root, exp.Query):
        first_word = sql.strip().split(None, 1)[0][:20]
        raise InvalidQuery(
            f"only SELECT queries are allowed; this statement starts with {first_word!r}",
            code="statement_not_allowed",
        )
    return ParsedQuery(ast=root, dialect=dialect, sql=sql)
