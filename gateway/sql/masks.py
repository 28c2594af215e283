"""Column masks as SQL expressions, per target dialect, so the database does the masking.

Every expression here must give the same output for the same input on DuckDB, PostgreSQL and
MariaDB/MySQL (pseudonyms are joined across engines). Keys are embedded as literals: the rewritten
SQL is therefore a secret and is never shown to analysts or stored verbatim (see ``redact_keys``).

The operators (documented for the DPO in docs/masking.md):

``deny``          the column is left out of the derived table (never built here)
``redact``        a fixed token (``'***'`` for text, NULL otherwise; ``token`` param)
``pseudonymise``  ``'p_' || left(sha256(key || '|' || canonical text), 16)`` with a per-purpose, per-domain key
``generalise``    ``year``, ``month``, ``age_band``, ``range``, ``round``, ``prefix``, ``category``
``partial``       the first/last n characters, the rest replaced by a token
``noise``         value + a deterministic keyed offset in [-scale, scale]
``tokenise``      passes raw through SQL; encrypted after the query (gateway/masking/operators.py)
``free_text``     passes raw through SQL; scanned after the query (gateway/masking/free_text.py)

Every parameter is checked; a bad one is refused with the rule, the value seen and how to fix it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sqlglot import exp

from gateway.errors import InvalidQuery
from gateway.policy.decision import ColumnRule


@functools.lru_cache(maxsize=256)
def _parsed_datatype(name: str) -> exp.DataType:
    return exp.DataType.build(name)


def datatype(name: str) -> exp.DataType:
    """``exp.DataType.build`` parses its argument every time; build each type once and copy it."""
    return _parsed_datatype(name).copy()


REDACTED_TOKEN = "***"  # noqa: S105 - the visible redaction marker, not a secret
PSEUDONYM_PREFIX = "p_"
PSEUDONYM_HEX_CHARS = 16
#: hex characters of a derived SQL key literal: 128 bits, so ``key || '|' || value`` fits one SHA-256
#: block (55 bytes) for values up to 22 bytes (see docs/masking.md, "speed")
SQL_KEY_HEX_CHARS = 32
#: hex characters of the keyed hash a noise offset is drawn from (48 bits: exact in BIGINT and DOUBLE)
NOISE_HEX_CHARS = 12
NOISE_MAX = 16**NOISE_HEX_CHARS - 1

_TEMPORAL = ("DATE", "TIMESTAMP", "DATETIME", "TIMESTAMPTZ")
_INTEGER = ("TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "UBIGINT", "UINTEGER")
_FLOATING = ("DOUBLE", "FLOAT", "REAL")
_DECIMAL = ("DECIMAL", "NUMERIC")
_TEXT = ("VARCHAR", "TEXT", "CHAR", "STRING")


def _base_type(column_type: str) -> str:
    return column_type.split("(")[0].strip().upper()


def _decimal_scale(column_type: str) -> tuple[int, int]:
    match = re.search(r"\((\d+)\s*,\s*(\d+)\)", column_type)
    return (int(match.group(1)), int(match.group(2))) if match else (18, 3)


# --------------------------------------------------------------------------------------------------
# Keys
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRing:
    """Per-purpose, per-domain keys derived from master keys, with rotation.

    ``master``/``key_id`` is the active key: every new pseudonym, noise offset and token uses it.
    ``retired`` holds earlier ``(key_id, master)`` pairs: they are never used for new output, but
    tokens made with them can still be detokenised and their pseudonyms recomputed for a migration.
    The key id is chosen by the gateway's configuration alone; nothing in a query can select a key.
    """

    master: bytes
    key_id: str
    retired: tuple[tuple[str, bytes], ...] = ()

    def __post_init__(self) -> None:
        if len(self.master) < 16:
            raise ValueError("a master key must have at least 16 bytes")
        ids = [self.key_id, *(kid for kid, _ in self.retired)]
        if len(set(ids)) != len(ids):
            raise ValueError(f"key ids must be unique in a key ring, got {ids}")

    @classmethod
    def from_keys(cls, keys: Mapping[str, bytes], *, active: str) -> KeyRing:
        if active not in keys:
            raise ValueError(f"the active key id {active!r} is not one of {sorted(keys)}")
        retired = tuple((kid, key) for kid, key in keys.items() if kid != active)
        return cls(master=keys[active], key_id=active, retired=retired)

    def rotate(self, master: bytes, key_id: str) -> KeyRing:
        """A ring whose active key is ``master``; the current active key becomes retired."""
        return KeyRing(master=master, key_id=key_id, retired=((self.key_id, self.master), *self.retired))

    @property
    def key_ids(self) -> tuple[str, ...]:
        return (self.key_id, *(kid for kid, _ in self.retired))

    def master_for(self, key_id: str | None = None) -> bytes:
        if key_id is None or key_id == self.key_id:
            return self.master
        for kid, key in self.retired:
            if kid == key_id:
                return key
        raise KeyError(f"unknown key id {key_id!r}; this gateway knows {', '.join(self.key_ids)}")

    def _derive(self, label: str, purpose: str, domain: str, key_id: str | None) -> bytes:
        message = f"{label}\0{purpose}\0{domain}".encode()
        return hmac.new(self.master_for(key_id), message, hashlib.sha256).digest()

    def pseudonym_key(self, purpose: str, domain: str, key_id: str | None = None) -> str:
        """The SQL literal keying ``pseudonymise`` (128 bits as hex)."""
        return self._derive("pseudonym", purpose, domain, key_id).hex()[:SQL_KEY_HEX_CHARS]

    def noise_key(self, purpose: str, domain: str, key_id: str | None = None) -> str:
        """The SQL literal keying ``noise`` (independent of the pseudonym key of the same domain)."""
        return self._derive("noise", purpose, domain, key_id).hex()[:SQL_KEY_HEX_CHARS]

    def token_key(self, purpose: str, domain: str, key_id: str | None = None) -> bytes:
        """64 bytes for AES-256-SIV (``tokenise``); never leaves the gateway process."""
        first = self._derive("token-siv-1", purpose, domain, key_id)
        second = self._derive("token-siv-2", purpose, domain, key_id)
        return first + second


# --------------------------------------------------------------------------------------------------
# Parameter checking (presidio style: the rule, the value seen, the fix)
# --------------------------------------------------------------------------------------------------


def _invalid(rule: ColumnRule, param: str, seen: object, fix: str) -> InvalidQuery:
    return InvalidQuery(
        f"mask {rule.op!r} of policy rule {rule.rule}: parameter {param!r} is {seen!r}; {fix}",
        code="policy_mask_invalid",
        rule=rule.rule,
        extra={"op": rule.op, "param": param},
    )


_KNOWN_PARAMS: dict[str, set[str]] = {
    "plain": set(),
    "free_text": set(),
    "tokenise": {"domain"},
    "redact": {"token"},
    "pseudonymise": {"domain"},
    "partial": {"first", "last", "token"},
    "noise": {"scale", "domain"},
}
_GENERALISE_PARAMS: dict[str, set[str]] = {
    "year": set(),
    "month": set(),
    "age_band": {"reference", "width", "top", "as"},
    "range": {"width", "top", "as"},
    "round": {"step"},
    "prefix": {"length", "fill", "width"},
    "category": {"mapping", "other"},
}


def _check_known(rule: ColumnRule, allowed: set[str]) -> None:
    for name in rule.params:
        if name not in allowed:
            fix = f"use one of {sorted(allowed)}" if allowed else "this mask takes no parameters"
            raise _invalid(rule, name, rule.params[name], f"unknown parameter; {fix}")


def _int_param(rule: ColumnRule, name: str, default: int | None, *, minimum: int) -> int:
    value = rule.params.get(name, default)
    if value is None:
        raise _invalid(rule, name, None, f"set it to a whole number >= {minimum}")
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise _invalid(rule, name, value, f"set it to a whole number >= {minimum}")
    return value


def _number_param(rule: ColumnRule, name: str, default: float | None) -> Decimal:
    value = rule.params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float | str) or value is None:
        raise _invalid(rule, name, value, "set it to a positive number, e.g. 10 or 0.5")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise _invalid(rule, name, value, "set it to a positive number, e.g. 10 or 0.5") from None
    if not number.is_finite() or number <= 0:
        raise _invalid(rule, name, value, "set it to a positive number, e.g. 10 or 0.5")
    return number


def _text_param(rule: ColumnRule, name: str, default: str | None) -> str | None:
    value = rule.params.get(name, default)
    if value is not None and not isinstance(value, str):
        raise _invalid(rule, name, value, "set it to a text (quoted in YAML)")
    return value


def _domain(rule: ColumnRule) -> str:
    domain = _text_param(rule, "domain", "default") or ""
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", domain):
        raise _invalid(rule, "domain", domain, "use 1-64 letters, digits, '_', '.' or '-'")
    return domain


def _require_type(rule: ColumnRule, column_type: str, allowed: tuple[str, ...], what: str) -> None:
    if _base_type(column_type) not in allowed:
        raise InvalidQuery(
            f"mask {rule.op!r} {rule.params.get('to', '')!s} of policy rule {rule.rule} cannot apply to a "
            f"{column_type} column: it needs {what}; choose another mask for this column",
            code="policy_mask_invalid",
            rule=rule.rule,
        )


# --------------------------------------------------------------------------------------------------
# SQL building blocks
# --------------------------------------------------------------------------------------------------


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


def _hex_to_int(hex_text: exp.Expr, dialect: str) -> exp.Expr:
    """Up to 15 hex digits as a non-negative BIGINT, the same number on every engine."""
    if dialect == "postgres":
        padded = exp.Anonymous(
            this="lpad", expressions=[hex_text, exp.Literal.number(16), exp.Literal.string("0")]
        )
        bits = exp.Cast(this=_concat(exp.Literal.string("x"), padded), to=datatype("BIT(64)"))
        return exp.Cast(this=bits, to=datatype("BIGINT"))
    if dialect == "mysql":
        conv = exp.Anonymous(
            this="CONV", expressions=[hex_text, exp.Literal.number(16), exp.Literal.number(10)]
        )
        return exp.Cast(this=conv, to=datatype("BIGINT"))
    if dialect == "trino":
        return exp.Anonymous(this="from_base", expressions=[hex_text, exp.Literal.number(16)])
    return exp.Cast(this=_concat(exp.Literal.string("0x"), hex_text), to=datatype("BIGINT"))


def _concat(*parts: exp.Expr) -> exp.Expr:
    return exp.Concat(expressions=list(parts), safe=True, coalesce=False)


def _as_text(column: exp.Expr) -> exp.Expr:
    return exp.Cast(this=column, to=datatype("VARCHAR"))


def _char_length(text: exp.Expr) -> exp.Expr:
    return exp.Length(this=text)  # sqlglot writes CHAR_LENGTH for MySQL (characters, not bytes)


def _substring(text: exp.Expr, start: int, length: int) -> exp.Expr:
    return exp.Substring(this=text, start=exp.Literal.number(start), length=exp.Literal.number(length))


def _null_if_null(column: exp.Expr, value: exp.Expr) -> exp.Expr:
    return exp.Case(
        ifs=[exp.If(this=exp.Is(this=column.copy(), expression=exp.Null()), true=exp.Null())], default=value
    )


def _literal(value: object) -> exp.Expr:
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return exp.Literal.string(str(value))
    return exp.Literal.number(str(value))


def _canonical_text(column: exp.Expr, column_type: str, dialect: str) -> exp.Expr:
    """The value as text, spelled the same on every engine (the input of the keyed hashes).

    CAST(... AS VARCHAR) agrees for integers, strings, dates and decimals, but not for timestamps
    (MariaDB prints DATETIME(6) with six fractional digits, DuckDB and PostgreSQL trim them) and not
    for floating point (DuckDB '3.0', PostgreSQL/MariaDB '3'; '1e+20' vs '1e20').
    """
    base = _base_type(column_type)
    if base in ("TIMESTAMP", "DATETIME"):
        formats = {
            "postgres": ("to_char", "YYYY-MM-DD HH24:MI:SS.US"),
            "mysql": ("DATE_FORMAT", "%Y-%m-%d %H:%i:%s.%f"),
            "trino": ("date_format", "%Y-%m-%d %H:%i:%s.%f"),
        }
        func, fmt = formats.get(dialect, ("strftime", "%Y-%m-%d %H:%M:%S.%f"))
        return exp.Anonymous(this=func, expressions=[column, exp.Literal.string(fmt)])
    if base in _FLOATING:
        raise InvalidQuery(
            "floating-point columns cannot be pseudonymised consistently across engines; generalise them",
            code="policy_mask_unknown",
        )
    return _as_text(column)


def _text_of(column: exp.Expr, column_type: str, dialect: str) -> exp.Expr:
    """The value as text for partial/prefix: canonical for timestamps (MariaDB pads microseconds)."""
    if _base_type(column_type) in ("TIMESTAMP", "DATETIME"):
        return _canonical_text(column, column_type, dialect)
    return _as_text(column)


def _keyed_hex(column: exp.Expr, key: str, dialect: str, text: exp.Expr) -> exp.Expr:
    return _sha256_hex(_concat(exp.Literal.string(key + "|"), text), dialect)


# --------------------------------------------------------------------------------------------------
# The operators
# --------------------------------------------------------------------------------------------------


def pseudonymise(column: exp.Expr, key: str, dialect: str, column_type: str = "VARCHAR") -> exp.Expr:
    """``'p_' || left(sha256(key || '|' || value), 16)``: keyed, stable, NULL stays NULL.

    A secret-prefix SHA-256 is open to length extension only when the whole digest is known; the
    pseudonym releases 64 of its 256 bits, so the internal state cannot be recovered. One hash per value
    (not HMAC's two) keeps masked scans close to unmasked ones; the same text on every engine.
    """
    digest = _keyed_hex(column, key, dialect, _canonical_text(column, column_type, dialect))
    hashed = _concat(exp.Literal.string(PSEUDONYM_PREFIX), _substring(digest, 1, PSEUDONYM_HEX_CHARS))
    return _null_if_null(column, hashed)


def redact(column_type: str, params: Mapping[str, object] | None = None) -> exp.Expr:
    """A fixed token: ``token`` if the policy names one (NULL for ``token: null``), else '***' for
    text columns and a typed NULL for others."""
    params = params or {}
    if "token" in params:
        token = params["token"]
        if token is None:
            return exp.Cast(this=exp.Null(), to=datatype(column_type))
        return exp.Literal.string(str(token))
    if _base_type(column_type) in _TEXT:
        return exp.Literal.string(REDACTED_TOKEN)
    return exp.Cast(this=exp.Null(), to=datatype(column_type))


def _floor_to_int(value: exp.Expr, width: int) -> exp.Expr:
    """``floor(value / width) * width`` as BIGINT, computed in DOUBLE (the same on every engine)."""
    as_double = exp.Cast(this=value, to=datatype("DOUBLE"))
    quotient = exp.Div(this=as_double, expression=exp.Literal.number(width))
    floored = exp.Cast(this=exp.Floor(this=quotient), to=datatype("BIGINT"))
    return exp.Mul(this=floored, expression=exp.Literal.number(width))


def _band(rule: ColumnRule, value: exp.Expr, *, integral: bool, width: int, top: int | None) -> exp.Expr:
    """A band of ``value``: text '20-29' (integers) / '[20,30)' (others), or its lower bound."""
    shape = _text_param(rule, "as", "text")
    if shape not in ("text", "lower"):
        raise _invalid(rule, "as", shape, "use 'text' ('20-29') or 'lower' (20)")
    lower = _floor_to_int(value, width)
    if shape == "lower":
        banded: exp.Expr = lower
        top_value: exp.Expr = exp.Literal.number(top) if top is not None else exp.Null()
    else:
        lower_text = _as_text(lower)
        if integral:
            upper = exp.Add(this=lower.copy(), expression=exp.Literal.number(width - 1))
            banded = _concat(lower_text, exp.Literal.string("-"), _as_text(upper))
        else:
            upper = exp.Add(this=lower.copy(), expression=exp.Literal.number(width))
            banded = _concat(exp.Literal.string("["), lower_text, exp.Literal.string(","), _as_text(upper),
                             exp.Literal.string(")"))
        top_value = exp.Literal.string(f"{top}+") if top is not None else exp.Null()
    ifs = [exp.If(this=exp.Is(this=value.copy(), expression=exp.Null()), true=exp.Null())]
    if top is not None:
        ifs.append(exp.If(this=exp.GTE(this=value.copy(), expression=exp.Literal.number(top)), true=top_value))
    return exp.Case(ifs=ifs, default=banded)


def _age(column: exp.Expr, reference: dt.date) -> exp.Expr:
    """Whole years between ``column`` (a date) and ``reference``, from EXTRACT only (portable)."""

    def part(unit: str) -> exp.Expr:
        extracted = exp.Extract(this=exp.var(unit), expression=column.copy())
        return exp.Cast(this=extracted, to=datatype("INTEGER"))

    years = exp.Sub(this=exp.Literal.number(reference.year), expression=part("YEAR"))
    month_day = exp.Add(
        this=exp.Mul(this=part("MONTH"), expression=exp.Literal.number(100)), expression=part("DAY")
    )
    not_yet = exp.Case(
        ifs=[exp.If(this=exp.GT(this=month_day, expression=exp.Literal.number(reference.month * 100 + reference.day)),
                    true=exp.Literal.number(1))],
        default=exp.Literal.number(0),
    )
    return exp.Paren(this=exp.Sub(this=years, expression=not_yet))


def _reference_date(rule: ColumnRule) -> dt.date:
    value = rule.params.get("reference")
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise _invalid(rule, "reference", value,
                   "set the date ages are computed at, e.g. reference: '2025-01-01' (a fixed date keeps "
                   "releases reproducible)")


def generalise(
    column: exp.Expr,
    params: Mapping[str, object],
    column_type: str,
    *,
    dialect: str = "duckdb",
    rule: ColumnRule | None = None,
) -> exp.Expr:
    rule = rule or ColumnRule(op="generalise", rule="(unnamed)", params=dict(params))
    to = params.get("to", "year")
    if not isinstance(to, str) or to not in _GENERALISE_PARAMS:
        raise InvalidQuery(
            f"unknown generalisation {to!r} in the policy (rule {rule.rule}); use one of "
            f"{sorted(_GENERALISE_PARAMS)}",
            code="policy_mask_unknown",
            rule=rule.rule,
        )
    _check_known(rule, _GENERALISE_PARAMS[to] | {"to"})
    base = _base_type(column_type)
    if to == "year":
        _require_type(rule, column_type, _TEMPORAL, "a date or timestamp")
        # EXTRACT is BIGINT in DuckDB, NUMERIC in PostgreSQL, INT in MariaDB; INTEGER is reported alike
        # by all three (MariaDB reports CAST(... AS SIGNED) of a year as INT, so BIGINT would not be)
        return exp.Cast(this=exp.Extract(this=exp.var("YEAR"), expression=column), to=datatype("INTEGER"))
    if to == "month":
        _require_type(rule, column_type, _TEMPORAL, "a date or timestamp")
        # DATE_TRUNC gives TIMESTAMP (DuckDB), TIMESTAMPTZ (PostgreSQL, for a DATE), DATE (MariaDB)
        target = "DATE" if base == "DATE" else "TIMESTAMP"
        truncated = exp.DateTrunc(unit=exp.Literal.string("MONTH"), this=column)  # type: ignore[no-untyped-call]
        return exp.Cast(this=truncated, to=datatype(target))
    if to == "age_band":
        _require_type(rule, column_type, _TEMPORAL, "a date of birth")
        reference = _reference_date(rule)
        width = _int_param(rule, "width", 10, minimum=1)
        top = _optional_int(rule, "top")
        age = _age(column, reference)
        banded = _band(rule, age, integral=True, width=width, top=top)
        # born after the reference date: no age to release
        return exp.Case(ifs=[exp.If(this=exp.LT(this=age.copy(), expression=exp.Literal.number(0)),
                                    true=exp.Null())], default=banded)
    if to == "range":
        _require_type(rule, column_type, _INTEGER + _DECIMAL + _FLOATING, "a number")
        width = _int_param(rule, "width", None, minimum=1)
        top = _optional_int(rule, "top")
        return _band(rule, column, integral=base in _INTEGER, width=width, top=top)
    if to == "round":
        _require_type(rule, column_type, _INTEGER + _DECIMAL + _FLOATING, "a number")
        step = _number_param(rule, "step", 10)
        return exp.Mul(
            this=exp.Floor(this=exp.Div(this=column, expression=exp.Literal.number(float(step)))),
            expression=exp.Literal.number(float(step)),
        )
    if to == "prefix":
        if base in _FLOATING:
            raise InvalidQuery(
                f"generalise prefix (rule {rule.rule}) cannot apply to floating-point columns: their text "
                "differs by engine; use generalise range or round",
                code="policy_mask_invalid",
                rule=rule.rule,
            )
        length = _int_param(rule, "length", 2, minimum=1)
        fill = _text_param(rule, "fill", None)
        if fill is not None and len(fill) != 1:
            raise _invalid(rule, "fill", fill, "use one character, e.g. fill: x (65183 -> 651xx)")
        width = _int_param(rule, "width", 5 if fill else length, minimum=length)
        text = _text_of(column, column_type, dialect)
        head = _substring(text, 1, length)
        shown = _concat(head, exp.Literal.string(fill * (width - length))) if fill else head
        # a value no longer than the prefix would be released whole
        return exp.Case(
            ifs=[
                exp.If(this=exp.Is(this=column.copy(), expression=exp.Null()), true=exp.Null()),
                exp.If(this=exp.LTE(this=_char_length(text.copy()), expression=exp.Literal.number(length)),
                       true=exp.Literal.string(REDACTED_TOKEN)),
            ],
            default=shown,
        )
    # category
    return _category(column, rule, column_type, dialect)


def _optional_int(rule: ColumnRule, name: str) -> int | None:
    if rule.params.get(name) is None:
        return None
    return _int_param(rule, name, None, minimum=0)


def _category(column: exp.Expr, rule: ColumnRule, column_type: str, dialect: str) -> exp.Expr:
    mapping = rule.params.get("mapping")
    if not isinstance(mapping, dict) or not mapping:
        raise _invalid(rule, "mapping", mapping,
                       "give a mapping {value: group}, e.g. {Biebrich: Süd, Dotzheim: West}")
    other = _text_param(rule, "other", "sonstige")
    base = _base_type(column_type)
    _require_type(rule, column_type, _TEXT + _INTEGER + _DECIMAL, "text or exact numbers (dates: use year)")
    subject: exp.Expr = column
    if base in _TEXT and dialect == "mysql":
        # MariaDB's default collations compare case- and accent-insensitively ('Müller' = 'muller');
        # a binary comparison matches exactly, like DuckDB and PostgreSQL
        subject = exp.Cast(this=column, to=datatype("BINARY"))
    ifs: list[exp.Expr] = [exp.If(this=exp.Is(this=column.copy(), expression=exp.Null()), true=exp.Null())]
    for value, group in mapping.items():
        if not isinstance(group, str):
            raise _invalid(rule, f"mapping[{value!r}]", group, "map each value to a group name (text)")
        if base in _INTEGER:
            if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).lstrip("-").isdigit():
                raise _invalid(rule, "mapping", value, "the column holds whole numbers: use them as keys")
            key: exp.Expr = exp.Literal.number(int(value))
        elif base in _DECIMAL:
            try:
                key = exp.Literal.number(str(Decimal(str(value))))
            except InvalidOperation:
                raise _invalid(rule, "mapping", value, "the column holds numbers: use them as keys") from None
        else:
            key = exp.Literal.string(str(value))
        ifs.append(exp.If(this=exp.EQ(this=subject.copy(), expression=key), true=exp.Literal.string(group)))
    return exp.Case(ifs=ifs, default=exp.Literal.string(other) if other is not None else exp.Null())


def partial(column: exp.Expr, params: Mapping[str, object], *, rule: ColumnRule | None = None,
            column_type: str = "VARCHAR", dialect: str = "duckdb") -> exp.Expr:
    """The first ``first`` and last ``last`` characters around ``token``; values too short to hide
    anything become the token alone; NULL stays NULL."""
    rule = rule or ColumnRule(op="partial", rule="(unnamed)", params=dict(params))
    _check_known(rule, _KNOWN_PARAMS["partial"])
    if _base_type(column_type) in _FLOATING:
        raise InvalidQuery(
            f"partial (rule {rule.rule}) cannot apply to floating-point columns: their text differs by "
            "engine; use generalise range or round",
            code="policy_mask_invalid",
            rule=rule.rule,
        )
    given = "first" in params or "last" in params
    first = _int_param(rule, "first", 2 if not given else 0, minimum=0)
    last = _int_param(rule, "last", 0, minimum=0)
    if first + last == 0:
        raise _invalid(rule, "first", first, "keep at least one character (first or last), or use redact")
    token = _text_param(rule, "token", REDACTED_TOKEN) or ""
    text = _text_of(column, column_type, dialect)
    parts: list[exp.Expr] = []
    if first:
        parts.append(_substring(text, 1, first))
    parts.append(exp.Literal.string(token))
    if last:
        parts.append(exp.Right(this=text.copy(), expression=exp.Literal.number(last)))
    return exp.Case(
        ifs=[
            exp.If(this=exp.Is(this=column.copy(), expression=exp.Null()), true=exp.Null()),
            exp.If(this=exp.LTE(this=_char_length(text.copy()), expression=exp.Literal.number(first + last)),
                   true=exp.Literal.string(token or REDACTED_TOKEN)),
        ],
        default=_concat(*parts),
    )


def noise(column: exp.Expr, key: str, dialect: str, column_type: str, scale: Decimal) -> exp.Expr:
    """``value + offset`` with the offset in [-scale, scale] drawn from ``sha256(key | value)``.

    Deterministic per value and key: repeating a query gives the same offset, so averaging repeated
    answers does not remove it. Integers and decimals get an exact, never-zero offset in units of the
    column's last digit (from ``u mod 2s``, integer arithmetic, identical on every engine); floating-point
    columns get ``scale * (2u/(2^48-1) - 1)`` in DOUBLE (IEEE arithmetic, identical as well).
    """
    base = _base_type(column_type)
    if base in _FLOATING:
        as_double = exp.Cast(this=column, to=datatype("DOUBLE"))
        micro = exp.Cast(
            this=exp.Floor(this=exp.Mul(this=as_double, expression=exp.Literal.number(1_000_000))),
            to=datatype("BIGINT"),
        )
        text = _as_text(micro)
    else:
        text = _canonical_text(column, column_type, dialect)
    u = _hex_to_int(_substring(_keyed_hex(column, key, dialect, text), 1, NOISE_HEX_CHARS), dialect)
    if base in _FLOATING:
        unit = exp.Div(this=exp.Cast(this=u, to=datatype("DOUBLE")),
                       expression=exp.Cast(this=exp.Literal.number(NOISE_MAX), to=datatype("DOUBLE")))
        signed = exp.Sub(this=exp.Mul(this=exp.Literal.number(2), expression=unit), expression=exp.Literal.number(1))
        offset = exp.Mul(this=exp.Cast(this=exp.Literal.number(str(scale)), to=datatype("DOUBLE")),
                         expression=exp.Paren(this=signed))
        return exp.Add(this=exp.Cast(this=column.copy(), to=datatype("DOUBLE")), expression=offset)
    digits = _decimal_scale(column_type)[1] if base in _DECIMAL else 0
    units = int(scale * (Decimal(10) ** digits))
    # m in [0, 2s): offset m - s for m < s, m - s + 1 otherwise: in [-s, -1] or [1, s], never 0
    m = exp.Mod(this=u, expression=exp.Literal.number(2 * units))
    bump = exp.Case(ifs=[exp.If(this=exp.GTE(this=m.copy(), expression=exp.Literal.number(units)),
                                true=exp.Literal.number(1))], default=exp.Literal.number(0))
    offset_units = exp.Paren(this=exp.Add(
        this=exp.Sub(this=m, expression=exp.Literal.number(units)), expression=bump))
    if base in _INTEGER:
        return exp.Cast(this=exp.Add(this=column.copy(), expression=offset_units), to=datatype("BIGINT"))
    precision, _ = _decimal_scale(column_type)
    target = datatype(f"DECIMAL({min(38, max(precision + 2, 18))}, {digits})")
    step = exp.Cast(this=exp.Literal.number(str(Decimal(1).scaleb(-digits))), to=target)
    scaled = exp.Mul(this=exp.Cast(this=offset_units, to=datatype("DECIMAL(18, 0)")), expression=step)
    return exp.Cast(this=exp.Add(this=exp.Cast(this=column.copy(), to=target.copy()), expression=scaled), to=target)


def _noise_scale(rule: ColumnRule, column_type: str) -> Decimal:
    _require_type(rule, column_type, _INTEGER + _DECIMAL + _FLOATING, "a number")
    scale = _number_param(rule, "scale", None)
    base = _base_type(column_type)
    if base in _INTEGER and scale != scale.to_integral_value():
        raise _invalid(rule, "scale", rule.params.get("scale"), "the column holds whole numbers: use a whole scale")
    if base in _DECIMAL:
        digits = _decimal_scale(column_type)[1]
        if scale.scaleb(digits) != scale.scaleb(digits).to_integral_value():
            raise _invalid(rule, "scale", rule.params.get("scale"),
                           f"the column has {digits} decimal places: use a scale with at most {digits}")
    if not math.isfinite(float(scale)) or scale > Decimal(10) ** 12:
        raise _invalid(rule, "scale", rule.params.get("scale"), "use a scale below 10^12")
    return scale


def mask_expression(
    column: exp.Expr,
    rule: ColumnRule,
    *,
    column_type: str,
    dialect: str,
    keys: KeyRing,
    purpose: str,
    arrow_side: bool = False,
) -> exp.Expr:
    """The SQL that releases ``column`` under ``rule`` (``deny`` is handled by omission).

    ``tokenise`` passes the raw column through and is refused unless the caller confirms with
    ``arrow_side=True`` that the result stage encrypts it (gateway.masking.operators.apply_arrow_side)
    and that only bare projections of it are allowed (as for free_text).
    """
    op = rule.op
    if op in _KNOWN_PARAMS:
        _check_known(rule, _KNOWN_PARAMS[op])
    if op in ("plain", "free_text"):
        return column
    if op == "tokenise":
        _domain(rule)
        if not arrow_side:
            raise InvalidQuery(
                f"mask 'tokenise' of policy rule {rule.rule} needs the result stage that encrypts the "
                "column after the query, which this gateway does not run; use pseudonymise",
                code="policy_mask_unknown",
                rule=rule.rule,
            )
        return column
    if op == "pseudonymise":
        return pseudonymise(column, keys.pseudonym_key(purpose, _domain(rule)), dialect, column_type)
    if op == "redact":
        token = rule.params.get("token", REDACTED_TOKEN)
        if token is not None and not isinstance(token, str):
            raise _invalid(rule, "token", token, "use a text, or null for NULL")
        return redact(column_type, rule.params)
    if op == "generalise":
        return generalise(column, rule.params, column_type, dialect=dialect, rule=rule)
    if op == "partial":
        return partial(column, rule.params, rule=rule, column_type=column_type, dialect=dialect)
    if op == "noise":
        scale = _noise_scale(rule, column_type)
        return noise(column, keys.noise_key(purpose, _domain(rule)), dialect, column_type, scale)
    if op == "deny":
        raise InvalidQuery(
            f"column under 'deny' (rule {rule.rule}) is left out of the query; it has no mask expression",
            code="policy_mask_unknown",
            rule=rule.rule,
        )
    raise InvalidQuery(f"the policy names an unknown mask {op!r}", code="policy_mask_unknown")


_KEY_LITERAL = re.compile("'[0-9a-f]{" + str(SQL_KEY_HEX_CHARS) + r"}\|")


def redact_keys(sql: str, keys: KeyRing, purposes_domains: list[tuple[str, str]]) -> str:
    """Replace every key literal in ``sql`` by a placeholder naming the key id (and the domain).

    Pseudonym and noise keys of the listed (purpose, domain) pairs are named; any other key-shaped
    literal (32 hex digits and '|') is replaced as well, so no key reaches the audit log.
    """
    for purpose, domain in purposes_domains:
        sql = sql.replace(keys.pseudonym_key(purpose, domain), f"<key:{keys.key_id}:{domain}>")
        sql = sql.replace(keys.noise_key(purpose, domain), f"<noise-key:{keys.key_id}:{domain}>")
    return _KEY_LITERAL.sub(f"'<key:{keys.key_id}>|", sql)
