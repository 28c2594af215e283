"""Column masks as SQL expressions, per target dialect, so the database does the masking.

Every expression here must give the same output for the same input on DuckDB, PostgreSQL and
MariaDB/MySQL (pseudonyms are joined across engines). Keys are embedded as literals: the rewritten
SQL is therefore a secret and is never shown to analysts or stored verbatim (see ``redact_keys``).
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from sqlglot import exp

from gateway.errors import InvalidQuery
from gateway.policy.decision import ColumnRule

REDACTED_TOKEN = "***"  # noqa: S105 - the visible redaction marker, not a secret
PSEUDONYM_PREFIX = "p_"
PSEUDONYM_HEX_CHARS = 16


@dataclass(frozen=True)
class KeyRing:
    """Derives per-purpose, per-domain pseudonym keys from one master key."""

    master: bytes
    key_id: str

    def pseudonym_key(self, purpose: str, domain: str) -> str:
        message = f"pseudonym\0{purpose}\0{domain}".encode()
        return hmac.new(self.master, message, hashlib.sha256).hexdigest()


def _sha256_hex(value: exp.Expr, dialect: str) -> exp.Expr:
    if dialect == "postgres":
        converted = exp.Anonymous(this="convert_to", expressions=[value, exp.Literal.string("UTF8")])
        digest = exp.Anonymous(this="sha256", expressions=[converted])
        return exp.Anonymous(this="encode", expressions=[digest, exp.Literal.string("hex")])
    if dialect == "mysql":
        return exp.Anonymous(this="SHA2", expressions=[value, exp.Literal.number(256)])
    if dialect == "trino":  # Trino's sha256 takes varbinary and returns varbinary
        digest = exp.Anonymous(
            this="sha256", expressions=[exp.Anonymous(this="to_utf8", expressions=[value])]
        )
        return exp.Lower(this=exp.Anonymous(this="to_hex", expressions=[digest]))
    return exp.Anonymous(this="sha256", expressions=[value])


def _concat(*parts: exp.Expr) -> exp.Expr:
    return exp.Concat(expressions=list(parts), safe=True, coalesce=False)


def _as_text(column: exp.Expr) -> exp.Expr:
    return exp.Cast(this=column, to=exp.DataType.build("VARCHAR"))


def _canonical_text(column: exp.Expr, column_type: str, dialect: str) -> exp.Expr:
    """The value as text, spelled the same on every engine (the input of the pseudonym hash).

    CAST(... AS VARCHAR) agrees for integers, strings, dates and decimals, but not for timestamps
    (MariaDB prints DATETIME(6) with six fractional digits, DuckDB and PostgreSQL trim them) and not
    for floating point (DuckDB '3.0', PostgreSQL/MariaDB '3'; '1e+20' vs '1e20').
    """
    base = column_type.split("(")[0].strip().upper()
    if base in ("TIMESTAMP", "DATETIME"):
        formats = {
            "postgres": ("to_char", "YYYY-MM-DD HH24:MI:SS.US"),
            "mysql": ("DATE_FORMAT", "%Y-%m-%d %H:%i:%s.%f"),
            "trino": ("date_format", "%Y-%m-%d %H:%i:%s.%f"),
        }
        func, fmt = formats.get(dialect, ("strftime", "%Y-%m-%d %H:%M:%S.%f"))
        return exp.Anonymous(this=func, expressions=[column, exp.Literal.string(fmt)])
    if base in ("DOUBLE", "FLOAT", "REAL"):
        raise InvalidQuery(
            "floating-point columns cannot be pseudonymised consistently across engines; generalise them",
            code="policy_mask_unknown",
        )
    return _as_text(column)


def pseudonymise(column: exp.Expr, key: str, dialect: str, column_type: str = "VARCHAR") -> exp.Expr:
    """``'p_' || left(sha256(key || '|' || value), 16)``: keyed, stable, NULL stays NULL.

    A secret-prefix SHA-256 is open to length extension only when the whole digest is known; the
    pseudonym releases 64 of its 256 bits, so the internal state cannot be recovered. One hash per value
    (not HMAC's two) keeps masked scans close to unmasked ones; the same text on every engine.
    """
    key_lit = exp.Literal.string(key + "|")
    outer = _sha256_hex(_concat(key_lit, _canonical_text(column, column_type, dialect)), dialect)
    short = exp.Substring(
        this=outer, start=exp.Literal.number(1), length=exp.Literal.number(PSEUDONYM_HEX_CHARS)
    )
    hashed = _concat(exp.Literal.string(PSEUDONYM_PREFIX), short)
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=column.copy(), expression=exp.Null()), true=exp.Null())], default=hashed
    )


def redact(column_type: str) -> exp.Expr:
    if column_type.upper().startswith(("VARCHAR", "TEXT", "CHAR")):
        return exp.Literal.string(REDACTED_TOKEN)
    return exp.Cast(this=exp.Null(), to=exp.DataType.build(column_type))


def generalise(column: exp.Expr, params: dict[str, object], column_type: str) -> exp.Expr:
    to = str(params.get("to", "year"))
    if to == "year":
        # EXTRACT is BIGINT in DuckDB, NUMERIC in PostgreSQL, INT in MariaDB; INTEGER is reported alike
        # by all three (MariaDB reports CAST(... AS SIGNED) of a year as INT, so BIGINT would not be)
        return exp.Cast(this=exp.Extract(this=exp.var("YEAR"), expression=column), to=exp.DataType.build("INTEGER"))
    if to == "month":
        # DATE_TRUNC gives TIMESTAMP (DuckDB), TIMESTAMPTZ (PostgreSQL, for a DATE), DATE (MariaDB)
        target = "DATE" if column_type.split("(")[0].strip().upper() == "DATE" else "TIMESTAMP"
        truncated = exp.DateTrunc(unit=exp.Literal.string("MONTH"), this=column)  # type: ignore[no-untyped-call]
        return exp.Cast(this=truncated, to=exp.DataType.build(target))
    if to == "prefix":
        length = int(str(params.get("length", 2)))
        return exp.Substring(
            this=_as_text(column), start=exp.Literal.number(1), length=exp.Literal.number(length)
        )
    if to == "round":
        step = float(str(params.get("step", 10)))
        return exp.Mul(
            this=exp.Floor(this=exp.Div(this=column, expression=exp.Literal.number(step))),
            expression=exp.Literal.number(step),
        )
    raise InvalidQuery(f"unknown generalisation {to!r} in the policy", code="policy_mask_unknown")


def partial(column: exp.Expr, params: dict[str, object]) -> exp.Expr:
    keep = int(str(params.get("first", 2)))
    head = exp.Substring(this=_as_text(column), start=exp.Literal.number(1), length=exp.Literal.number(keep))
    return _concat(head, exp.Literal.string(REDACTED_TOKEN))


def mask_expression(
    column: exp.Expr, rule: ColumnRule, *, column_type: str, dialect: str, keys: KeyRing, purpose: str
) -> exp.Expr:
    """The SQL that releases ``column`` under ``rule`` (``deny`` is handled by omission)."""
    if rule.op in ("plain", "free_text"):
        return column
    if rule.op == "pseudonymise":
        domain = str(rule.params.get("domain", "default"))
        return pseudonymise(column, keys.pseudonym_key(purpose, domain), dialect, column_type)
    if rule.op == "redact":
        return redact(column_type)
    if rule.op == "generalise":
        return generalise(column, rule.params, column_type)
    if rule.op == "partial":
        return partial(column, rule.params)
    raise InvalidQuery(f"the policy names an unknown mask {rule.op!r}", code="policy_mask_unknown")


def redact_keys(sql: str, keys: KeyRing, purposes_domains: list[tuple[str, str]]) -> str:
    """Replace every key literal in ``sql`` by a placeholder naming the key id."""
    for purpose, domain in purposes_domains:
        sql = sql.replace(keys.pseudonym_key(purpose, domain), f"<key:{keys.key_id}:{domain}>")
    return sql
