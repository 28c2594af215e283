"""Literal-free SQL text for the audit log.

The audit log must not hold personal data, and SQL text is where personal data hides: a
``WHERE nachname = 'Müller'`` names a person.  :func:`normalise_sql` parses the SQL with sqlglot and
replaces every literal (strings, numbers, typed literals, IN lists, intervals, hex/bit/byte/raw/national
strings, JSON paths) by ``?``, and drops comments.  SQL that cannot be parsed into a tree we fully
understand is never stored: it is replaced by a fixed marker holding only its length and a hash.
"""

from __future__ import annotations

import hashlib
import logging
import re
from contextvars import ContextVar

import sqlglot
from sqlglot import exp

PLACEHOLDER = "?"

#: node types whose content is a value the analyst typed
_LITERAL_TYPES: tuple[type[exp.Expression], ...] = (
    exp.Literal,
    exp.HexString,
    exp.BitString,
    exp.ByteString,
    exp.RawString,
    exp.National,
    exp.UnicodeString,
    exp.JSONPath,
)

#: node types that carry raw, unparsed SQL text: never trusted
_RAW_TEXT_TYPES: tuple[type[exp.Expression], ...] = (exp.Command, exp.JSONPathKey)

_normalising: ContextVar[bool] = ContextVar("audit_normalising_sql", default=False)


class _DropWhileNormalising(logging.Filter):
    """sqlglot logs the raw SQL when it falls back to a ``Command``; while this module parses the
    analyst's SQL that text (with its literals) must not reach the application log either."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not _normalising.get()


_sqlglot_logger = logging.getLogger("sqlglot")
if not any(isinstance(f, _DropWhileNormalising) for f in _sqlglot_logger.filters):
    _sqlglot_logger.addFilter(_DropWhileNormalising())

_MARKER_RE = re.compile(r"<unparseable SQL: \d+ chars, sha256 [0-9a-f]{64}>")


def unparseable_marker(sql: str) -> str:
    """The fixed text stored instead of SQL we cannot normalise (length and SHA-256, never the text)."""
    digest = hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<unparseable SQL: {len(sql)} chars, sha256 {digest}>"


def is_marker(text: str) -> bool:
    return _MARKER_RE.fullmatch(text) is not None


#: an interval literal that is already normalised, e.g. ``INTERVAL '? DAYS'``: only ``?`` and a unit
_NORMALISED_INTERVAL = re.compile(
    r"\?(\s+(YEAR|MONTH|WEEK|DAY|HOUR|MINUTE|SECOND|MILLISECOND|MICROSECOND|QUARTER|DECADE|CENTURY)S?)?",
    re.IGNORECASE)


def _is_kept(node: exp.Expression) -> bool:
    # ``$1`` parses as Parameter(this=Literal(1)): the index is not a value, keep it.
    if isinstance(node, exp.Literal) and isinstance(node.parent, exp.Parameter):
        return True
    return (isinstance(node, exp.Literal) and node.is_string and isinstance(node.parent, exp.Interval)
            and _NORMALISED_INTERVAL.fullmatch(node.name) is not None)


def _replace(node: exp.Expression) -> exp.Expression:
    if isinstance(node, _LITERAL_TYPES) and not _is_kept(node):
        return exp.var(PLACEHOLDER)
    return node


def _still_has_values(tree: exp.Expression) -> bool:
    for node in tree.walk():
        if isinstance(node, _RAW_TEXT_TYPES):
            return True
        if isinstance(node, _LITERAL_TYPES) and not _is_kept(node):
            return True
    return False


def normalise_sql(sql: str, dialect: str = "postgres") -> str:
    """Return ``sql`` with every literal replaced by ``?`` and comments removed.

    Several statements are kept, joined by ``"; "``.  If the text cannot be parsed (or parses into a
    node that keeps raw text, such as sqlglot's ``Command`` fallback) the result is
    :func:`unparseable_marker` - the raw text is never returned.  Already normalised text (including a
    marker) is returned unchanged in meaning, so the function is safe to apply twice.
    """
    if is_marker(sql):
        return sql
    if not sql.strip():
        return ""
    token = _normalising.set(True)
    try:
        return _normalise(sql, dialect)
    finally:
        _normalising.reset(token)


def _normalise(sql: str, dialect: str) -> str:
    try:
        trees = sqlglot.parse(sql, read=dialect or None)
        parts: list[str] = []
        for tree in trees:
            if tree is None:
                continue
            cleaned = tree.transform(_replace)
            if _still_has_values(cleaned):
                return unparseable_marker(sql)
            parts.append(cleaned.sql(dialect=dialect or None, comments=False))
    except Exception:  # any parser/generator failure: store the marker, never the text
        return unparseable_marker(sql)
    if not parts:
        return unparseable_marker(sql)
    return "; ".join(parts)
