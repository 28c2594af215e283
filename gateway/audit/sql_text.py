"""Literal-free SQL text for the audit log.

The audit log must not hold personal data, and SQL text is where personal data hides: a
``WHERE nachname = 'Müller'`` names a person.  :func:`normalise_sql` parses the SQL with sqlglot and
replaces every literal (strings, numbers, typed literals, IN lists, intervals, hex/bit/byte/raw/national
strings, JSON paths) by ``?``, and drops comments.  SQL that cannot be parsed into a tree we fully
understand is never stored: it is replaced by a fixed marker holding only its length and a hash.
"""

from __future__ import annotations

import hashlib
import re

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

_MARKER_RE = re.compile(r"<unparseable SQL: \d+ chars, sha256 [0-9a-f]{64}>")


def unparseable_marker(sql: str) -> str:
    """The fixed text stored instead of SQL we cannot normalise (length and SHA-256, never the text)."""
    digest = hashlib.sha256(sql.encode("utf-8", "surrogatepass")).hexdigest()
    return f"<unparseable SQL: {len(sql)} chars, sha256 {digest}>"


def is_marker(text: str) -> bool:
    return _MARKER_RE.fullmatch(text) is not None


def _is_parameter_index(node: exp.Expression) -> bool:
    # ``$1`` parses as Parameter(this=Literal(1)): the index is not a value, keep it.
    return isinstance(node, exp.Literal) and isinstance(node.parent, exp.Parameter)


def _replace(node: exp.Expression) -> exp.Expression:
    if isinstance(node, _LITERAL_TYPES) and not _is_parameter_index(node):
        return exp.var(PLACEHOLDER)
    return node


def _still_has_values(tree: exp.Expression) -> bool:
    for node in tree.walk():
        if isinstance(node, _RAW_TEXT_TYPES):
            return True
        if isinstance(node, _LITERAL_TYPES) and not _is_parameter_index(node):
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
