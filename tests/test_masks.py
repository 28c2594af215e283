"""Mask operators: values, parameters, keys, tokens, noise, and identity across DuckDB, PostgreSQL, MariaDB.

Unit tests run the SQL of each operator on an in-memory DuckDB. The cross-engine matrix (markers
``postgres`` and ``mariadb``) loads one small table with awkward values (umlauts, case, NULLs, negative
numbers, leap days, timestamps with microseconds) into a fresh PostgreSQL database, a fresh MariaDB
database and a DuckDB file, applies every operator with every parameter set to every column type it
accepts and requires the same output everywhere. Combinations an operator refuses are filtered out
when the tests are collected (never skipped); that each refusal is the same on every dialect is a
test of its own.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pyarrow as pa
import pymysql
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlglot import exp

from connectors.base import Connector, QueryResult
from connectors.mysql import MySQLConnector
from connectors.postgres import PostgresConnector
from gateway.errors import AccessDenied, InvalidQuery
from gateway.masking.operators import ArrowSideContext, apply_arrow_side, arrow_side_positions, tokenise_array
from gateway.masking.tokens import REIDENTIFY_ROLE, DetokeniseRecord, Tokeniser, detokenise
from gateway.policy.decision import DEFAULT_USES, ColumnRule, DatasetDecision, Decision, MaskOp
from gateway.sql.masks import KeyRing, mask_expression, redact_keys
from gateway.sql.rewrite import OutputColumn, RewritePlan

KEYS = KeyRing(master=bytes(range(32)), key_id="k2024")
PURPOSE = "statistik"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA_HOST, MARIA_PORT, MARIA_USER = "127.0.0.1", 3306, "root"
TIMEOUT_S = 30.0


def _rule(op: MaskOp, **params: Any) -> ColumnRule:
    return ColumnRule(op=op, rule=f"test.{op}", params=params)


# --------------------------------------------------------------------------------------------------
# Evaluate a mask on DuckDB (in memory)
# --------------------------------------------------------------------------------------------------

_DUCK = duckdb.connect()


def _duck_type(column_type: str) -> str:
    return column_type


def masked(rule: ColumnRule, column_type: str, values: list[Any], *, keys: KeyRing = KEYS,
           purpose: str = PURPOSE) -> list[Any]:
    expr = mask_expression(exp.column("c"), rule, column_type=column_type, dialect="duckdb", keys=keys,
                           purpose=purpose)
    rows = ", ".join(f"(CAST(? AS {_duck_type(column_type)}), {i})" for i in range(len(values)))
    sql = f"SELECT {expr.sql(dialect='duckdb')} AS m FROM (VALUES {rows}) AS t(c, i) ORDER BY i"
    params: list[Any] = [v for v in values]
    return [r[0] for r in _DUCK.execute(sql, params).fetchall()]


def one(rule: ColumnRule, column_type: str, value: Any, **kw: Any) -> Any:
    return masked(rule, column_type, [value], **kw)[0]


# --------------------------------------------------------------------------------------------------
# Operators, one by one
# --------------------------------------------------------------------------------------------------


def test_redact_default_token_and_typed_null() -> None:
    assert masked(_rule("redact"), "VARCHAR", ["Müller", None]) == ["***", "***"]
    assert masked(_rule("redact"), "BIGINT", [42, None]) == [None, None]


def test_redact_token_param() -> None:
    assert one(_rule("redact", token="[entfernt]"), "VARCHAR", "Anna") == "[entfernt]"
    assert one(_rule("redact", token=None), "VARCHAR", "Anna") is None


def test_pseudonymise_shape_stable_null_and_domain_separation() -> None:
    a, b, c, n = masked(_rule("pseudonymise", domain="person"), "VARCHAR", ["Anna", "Anna", "anna", None])
    assert a == b and a != c and n is None
    assert a.startswith("p_") and len(a) == 18
    other = one(_rule("pseudonymise", domain="vorname"), "VARCHAR", "Anna")
    assert other != a
    assert one(_rule("pseudonymise", domain="person"), "VARCHAR", "Anna", purpose="sozialplanung") != a


def test_pseudonymise_matches_reference_formula() -> None:
    import hashlib

    key = KEYS.pseudonym_key(PURPOSE, "person")
    assert len(key) == 32
    expected = "p_" + hashlib.sha256(f"{key}|4711".encode()).hexdigest()[:16]
    assert one(_rule("pseudonymise", domain="person"), "BIGINT", 4711) == expected


def test_pseudonymise_refuses_double() -> None:
    with pytest.raises(InvalidQuery, match="cannot"):
        masked(_rule("pseudonymise"), "DOUBLE", [1.5])


def test_generalise_year_month() -> None:
    d = dt.date(1984, 2, 29)
    assert one(_rule("generalise", to="year"), "DATE", d) == 1984
    assert one(_rule("generalise", to="month"), "DATE", d) == dt.date(1984, 2, 1)


@pytest.mark.parametrize(("born", "band"), [
    (dt.date(1990, 1, 1), "30-39"),    # 35 on the reference date
    (dt.date(1995, 6, 16), "20-29"),   # 29: birthday the day after the reference date
    (dt.date(1995, 6, 15), "30-39"),   # 30 on the reference date itself
    (dt.date(1930, 1, 1), "90+"),
    (dt.date(2030, 1, 1), None),       # born after the reference date
    (None, None),
])
def test_generalise_age_band(born: dt.date | None, band: str | None) -> None:
    rule = _rule("generalise", to="age_band", reference="2025-06-15", width=10, top=90)
    assert one(rule, "DATE", born) == band


def test_generalise_age_band_lower_bound() -> None:
    rule = _rule("generalise", to="age_band", reference="2025-06-15", width=5, **{"as": "lower"})
    assert one(rule, "DATE", dt.date(1990, 1, 1)) == 35


def test_generalise_range_text_lower_and_top() -> None:
    assert masked(_rule("generalise", to="range", width=10), "INTEGER", [23, 20, 0, -1, None]) == [
        "20-29", "20-29", "0-9", "-10--1", None]
    assert one(_rule("generalise", to="range", width=10, **{"as": "lower"}), "INTEGER", 29) == 20
    assert one(_rule("generalise", to="range", width=100, top=1000), "BIGINT", 5000) == "1000+"
    assert one(_rule("generalise", to="range", width=100), "DECIMAL(10,2)", Decimal("1234.56")) == "[1200,1300)"


def test_generalise_round() -> None:
    assert float(one(_rule("generalise", to="round", step=10), "INTEGER", 27)) == 20
    assert float(one(_rule("generalise", to="round", step=0.5), "DECIMAL(10,2)", Decimal("3.74"))) == 3.5


def test_generalise_postcode_prefix() -> None:
    rule = _rule("generalise", to="prefix", length=3, fill="x")
    assert masked(rule, "VARCHAR", ["65183", "65", None]) == ["651xx", "***", None]
    assert one(_rule("generalise", to="prefix", length=2), "VARCHAR", "65183") == "65"


def test_generalise_category_mapping() -> None:
    rule = _rule("generalise", to="category", mapping={"Biebrich": "Süd", "Dotzheim": "West"}, other="andere")
    assert masked(rule, "VARCHAR", ["Biebrich", "biebrich", "Dotzheim", "Mitte", None]) == [
        "Süd", "andere", "West", "andere", None]
    assert masked(_rule("generalise", to="category", mapping={1: "eins"}), "INTEGER", [1, 2]) == [
        "eins", "sonstige"]


def test_partial_first_last_and_short_values() -> None:
    assert one(_rule("partial", first=2), "VARCHAR", "Wiesbaden") == "Wi***"
    assert one(_rule("partial", last=4), "VARCHAR", "DE89370400440532013000") == "***3000"
    assert one(_rule("partial", first=1, last=1, token="…"), "VARCHAR", "Müller") == "M…r"
    assert one(_rule("partial", first=2, last=2), "VARCHAR", "Anna") == "***"  # would show all of it
    assert one(_rule("partial"), "VARCHAR", None) is None


def test_noise_integer_deterministic_bounded_never_zero() -> None:
    rule = _rule("noise", scale=5)
    values = list(range(0, 400))
    first = masked(rule, "BIGINT", values)
    assert first == masked(rule, "BIGINT", values)  # the same offsets every time: nothing to average
    offsets = [m - v for m, v in zip(first, values, strict=True)]
    assert all(1 <= abs(o) <= 5 for o in offsets)
    assert len(set(offsets)) == 10  # every offset in [-5,-1] u [1,5] occurs
    assert one(rule, "BIGINT", None) is None
    other = masked(rule, "BIGINT", values, keys=KeyRing(master=bytes(32), key_id="other"))
    assert other != first


def test_noise_decimal_and_double() -> None:
    dec = masked(_rule("noise", scale=2.5), "DECIMAL(10,2)", [Decimal("100.00"), Decimal("100.00")])
    assert dec[0] == dec[1] and Decimal("97.50") <= dec[0] <= Decimal("102.50") and dec[0] != Decimal("100.00")
    dbl = one(_rule("noise", scale=0.5), "DOUBLE", 10.25)
    assert 9.75 <= dbl <= 10.75 and dbl != 10.25


# --------------------------------------------------------------------------------------------------
# Invalid parameters: rule, value seen, fix
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("rule", "column_type", "needle"), [
    (_rule("generalise", to="decade"), "DATE", "unknown generalisation 'decade'"),
    (_rule("generalise", to="age_band"), "DATE", "'reference' is None; set the date"),
    (_rule("generalise", to="age_band", reference="15.06.2025"), "DATE", "'reference' is '15.06.2025'"),
    (_rule("generalise", to="age_band", reference="2025-01-01", width=0), "DATE", "'width' is 0"),
    (_rule("generalise", to="range"), "INTEGER", "'width' is None"),
    (_rule("generalise", to="range", width=10, **{"as": "bucket"}), "INTEGER", "'as' is 'bucket'"),
    (_rule("generalise", to="year"), "VARCHAR", "cannot apply to a VARCHAR column"),
    (_rule("generalise", to="round", step=-1), "INTEGER", "'step' is -1"),
    (_rule("generalise", to="prefix", length=3, fill="xx"), "VARCHAR", "'fill' is 'xx'"),
    (_rule("generalise", to="prefix", length="3"), "VARCHAR", "'length' is '3'"),
    (_rule("generalise", to="category"), "VARCHAR", "'mapping' is None"),
    (_rule("generalise", to="category", mapping={"a": 1}), "VARCHAR", "mapping['a']"),
    (_rule("generalise", to="year", width=3), "DATE", "'width' is 3; unknown parameter"),
    (_rule("partial", first=0), "VARCHAR", "keep at least one character"),
    (_rule("partial", first=-1), "VARCHAR", "'first' is -1"),
    (_rule("partial", head=2), "VARCHAR", "'head' is 2; unknown parameter"),
    (_rule("pseudonymise", domain="a b"), "VARCHAR", "'domain' is 'a b'"),
    (_rule("redact", token=3), "VARCHAR", "'token' is 3"),
    (_rule("noise"), "BIGINT", "'scale' is None"),
    (_rule("noise", scale=0.5), "BIGINT", "use a whole scale"),
    (_rule("noise", scale=0.005), "DECIMAL(10,2)", "at most 2"),
    (_rule("noise", scale=1), "VARCHAR", "cannot apply to a VARCHAR column"),
    (_rule("plain", x=1), "VARCHAR", "this mask takes no parameters"),
])
def test_invalid_parameters_are_refused_clearly(rule: ColumnRule, column_type: str, needle: str) -> None:
    with pytest.raises(InvalidQuery) as caught:
        mask_expression(exp.column("c"), rule, column_type=column_type, dialect="duckdb", keys=KEYS,
                        purpose=PURPOSE)
    message = str(caught.value)
    assert needle in message
    assert rule.rule in message  # names the policy rule


def test_deny_and_unknown_have_no_expression() -> None:
    with pytest.raises(InvalidQuery, match="left out"):
        masked(_rule("deny"), "VARCHAR", ["x"])
    with pytest.raises(InvalidQuery, match="unknown mask"):
        mask_expression(exp.column("c"), ColumnRule.model_construct(op="shuffle", rule="r", params={}, uses=None),
                        column_type="VARCHAR", dialect="duckdb", keys=KEYS, purpose=PURPOSE)


def test_tokenise_needs_the_arrow_stage() -> None:
    with pytest.raises(InvalidQuery, match="result stage"):
        masked(_rule("tokenise"), "VARCHAR", ["x"])
    column = exp.column("c")
    assert mask_expression(column, _rule("tokenise"), column_type="VARCHAR", dialect="duckdb", keys=KEYS,
                           purpose=PURPOSE, arrow_side=True) is column


def test_default_uses() -> None:
    assert DEFAULT_USES["tokenise"] == ("select",)
    assert "join" not in DEFAULT_USES["noise"] and "group" not in DEFAULT_USES["noise"]
    assert "aggregate" in DEFAULT_USES["noise"]


# --------------------------------------------------------------------------------------------------
# Keys: rotation, ids, redaction from the audited SQL
# --------------------------------------------------------------------------------------------------


def test_key_rotation() -> None:
    rotated = KEYS.rotate(bytes(range(1, 33)), "k2025")
    assert rotated.key_id == "k2025" and rotated.key_ids == ("k2025", "k2024")
    rule = _rule("pseudonymise", domain="person")
    old, new = one(rule, "BIGINT", 7), one(rule, "BIGINT", 7, keys=rotated)
    assert old != new  # new pseudonyms with the new key
    assert rotated.pseudonym_key(PURPOSE, "person", "k2024") == KEYS.pseudonym_key(PURPOSE, "person")
    with pytest.raises(KeyError, match="unknown key id 'k1999'"):
        rotated.master_for("k1999")
    assert KeyRing.from_keys({"a": bytes(32), "b": bytes(range(32))}, active="b").retired == (("a", bytes(32)),)
    with pytest.raises(ValueError, match="unique"):
        KeyRing(master=bytes(32), key_id="a", retired=(("a", bytes(32)),))


def test_redact_keys_removes_every_key() -> None:
    pseud = mask_expression(exp.column("c"), _rule("pseudonymise", domain="person"), column_type="BIGINT",
                            dialect="postgres", keys=KEYS, purpose=PURPOSE).sql("postgres")
    noisy = mask_expression(exp.column("c"), _rule("noise", scale=3, domain="betrag"), column_type="BIGINT",
                            dialect="postgres", keys=KEYS, purpose=PURPOSE).sql("postgres")
    sql = f"SELECT {pseud}, {noisy}"
    named = redact_keys(sql, KEYS, [(PURPOSE, "person"), (PURPOSE, "betrag")])
    assert "<key:k2024:person>" in named and "<noise-key:k2024:betrag>" in named
    unnamed = redact_keys(sql, KEYS, [(PURPOSE, "person")])  # noise domain not listed: still removed
    assert KEYS.noise_key(PURPOSE, "betrag") not in unnamed and "<key:k2024>|" in unnamed


# --------------------------------------------------------------------------------------------------
# Tokens
# --------------------------------------------------------------------------------------------------


def _reason() -> str:
    return "Az. 51-2025-0042: Rückforderung, Person muss angeschrieben werden"


def test_tokenise_round_trip_deterministic_and_rotation() -> None:
    tokeniser = Tokeniser(KEYS, PURPOSE)
    tokens = tokeniser.tokenise(["DE89370400440532013000", "DE89370400440532013000", None, "Müller"], "iban")
    assert tokens[0] == tokens[1] and tokens[2] is None and tokens[0] != tokens[3]
    assert tokens[0] is not None and tokens[0].startswith("t_k2024.")
    seen: list[DetokeniseRecord] = []
    values = detokenise(KEYS, tokens, subject="rita", roles=("analyst", REIDENTIFY_ROLE), purpose=PURPOSE,
                        domain="iban", reason=_reason(), record=seen.append)
    assert values == ["DE89370400440532013000", "DE89370400440532013000", None, "Müller"]
    assert seen[0].tokens == 3 and seen[0].key_ids == ("k2024",) and "Az. 51" in seen[0].reason
    rotated = KEYS.rotate(bytes(range(1, 33)), "k2025")
    new = Tokeniser(rotated, PURPOSE).tokenise(["Müller"], "iban")[0]
    assert new is not None and new.startswith("t_k2025.") and new != tokens[3]
    both = detokenise(rotated, [tokens[3], new], subject="rita", roles=(REIDENTIFY_ROLE,), purpose=PURPOSE,
                      domain="iban", reason=_reason(), record=lambda r: None)
    assert both == ["Müller", "Müller"]  # the retired key still opens old tokens


@pytest.mark.parametrize("reason", [None, "", "weil", "aaaaaaaaaaaaaaaaaaaaaaaaaa"])
def test_detokenise_requires_a_reason(reason: str | None) -> None:
    token = Tokeniser(KEYS, PURPOSE).tokenise(["x"], "d")
    with pytest.raises(AccessDenied, match="reason"):
        detokenise(KEYS, token, subject="rita", roles=(REIDENTIFY_ROLE,), purpose=PURPOSE, domain="d",
                   reason=reason, record=lambda r: None)


def test_detokenise_requires_the_role_and_the_right_purpose() -> None:
    token = Tokeniser(KEYS, PURPOSE).tokenise(["x"], "d")
    with pytest.raises(AccessDenied, match=REIDENTIFY_ROLE):
        detokenise(KEYS, token, subject="anna", roles=("analyst",), purpose=PURPOSE, domain="d",
                   reason=_reason(), record=lambda r: None)
    for purpose, domain in (("sozialplanung", "d"), (PURPOSE, "other")):
        with pytest.raises(InvalidQuery, match="does not decrypt"):
            detokenise(KEYS, token, subject="rita", roles=(REIDENTIFY_ROLE,), purpose=purpose, domain=domain,
                       reason=_reason(), record=lambda r: None)


def test_detokenise_fails_closed_when_the_audit_fails() -> None:
    token = Tokeniser(KEYS, PURPOSE).tokenise(["x"], "d")

    def broken(_: DetokeniseRecord) -> None:
        raise RuntimeError("audit down")

    with pytest.raises(RuntimeError):
        detokenise(KEYS, token, subject="rita", roles=(REIDENTIFY_ROLE,), purpose=PURPOSE, domain="d",
                   reason=_reason(), record=broken)


def test_tokenise_array_is_engine_independent() -> None:
    tokeniser = Tokeniser(KEYS, PURPOSE)
    as_int32 = tokenise_array(pa.array([1, 2, 1, None], pa.int32()), tokeniser, "d")
    as_int64 = tokenise_array(pa.chunked_array([[1, 2], [1, None]], pa.int64()), tokeniser, "d")
    assert as_int32.to_pylist() == as_int64.to_pylist()
    dec = [Decimal("12.50")]
    assert (tokenise_array(pa.array(dec, pa.decimal128(10, 2)), tokeniser, "d").to_pylist()
            == tokenise_array(pa.array(dec, pa.decimal128(38, 2)), tokeniser, "d").to_pylist())
    ts = [dt.datetime(2024, 2, 29, 10, 0, 5)]
    assert (tokenise_array(pa.array(ts, pa.timestamp("us")), tokeniser, "d").to_pylist()
            == tokenise_array(pa.array(ts, pa.timestamp("ns")), tokeniser, "d").to_pylist())


def _plan(columns: tuple[OutputColumn, ...]) -> RewritePlan:
    return RewritePlan(sql="", sql_for_audit="", dialect="duckdb", columns=columns, datasets=("sozialleistungen",),
                       columns_touched=(), masks={}, max_rows=10)


def test_apply_arrow_side_tokenises_marked_columns_only() -> None:
    plan = _plan((OutputColumn(name="fall_id", masking="plain", dataset="sozialleistungen", source_column="fall_id"),
                  OutputColumn(name="konto", masking="tokenise", dataset="sozialleistungen", source_column="iban")))
    decision = Decision(allow=True, datasets={"sozialleistungen": DatasetDecision(allow=True, columns={
        "iban": _rule("tokenise", domain="iban"), "fall_id": _rule("plain")})})
    table = pa.table({"fall_id": [1, 2], "konto": ["DE02120300000000202051", None]})
    assert arrow_side_positions(plan) == [1]
    out = apply_arrow_side(table, plan, ArrowSideContext(KEYS, PURPOSE, decision))
    assert out.column("fall_id").to_pylist() == [1, 2]
    token = out.column("konto").to_pylist()[0]
    assert token == Tokeniser(KEYS, PURPOSE).tokenise(["DE02120300000000202051"], "iban")[0]
    assert out.column("konto").to_pylist()[1] is None
    with pytest.raises(ValueError, match="no key context"):
        apply_arrow_side(table, plan, None)  # fail closed
    untouched = _plan((OutputColumn(name="fall_id", masking="plain"),))
    assert apply_arrow_side(table.select([0]), untouched, None).equals(table.select([0]))


# --------------------------------------------------------------------------------------------------
# Property: no operator but plain releases the raw value
# --------------------------------------------------------------------------------------------------

_TEXT_RULES = [
    _rule("redact"), _rule("pseudonymise", domain="p"), _rule("partial", first=1, last=1),
    _rule("generalise", to="prefix", length=3, fill="x"), _rule("generalise", to="category", mapping={"ä": "A"}),
]
_INT_RULES = [
    _rule("redact"), _rule("pseudonymise"), _rule("noise", scale=3), _rule("generalise", to="range", width=10),
    _rule("partial", first=1),
]
_DATE_RULES = [
    _rule("redact"), _rule("pseudonymise"), _rule("generalise", to="year"),
    _rule("generalise", to="age_band", reference="2025-01-01"),
]
_PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_PROPERTY
@given(value=st.text(min_size=1, max_size=40).filter(lambda s: "\x00" not in s))
def test_no_text_operator_returns_the_raw_value(value: str) -> None:
    assume(value not in ("***", "sonstige", "A"))  # the value is already what the mask releases
    assume(not (len(value) == 5 and value.endswith("xx")))
    for rule in _TEXT_RULES:
        assert one(rule, "VARCHAR", value) != value, rule
    token = Tokeniser(KEYS, PURPOSE).tokenise([value], "d")[0]
    assert token != value


@_PROPERTY
@given(value=st.integers(min_value=-(2**40), max_value=2**40))
def test_no_integer_operator_returns_the_raw_value(value: int) -> None:
    for rule in _INT_RULES:
        assert one(rule, "BIGINT", value) not in (value, str(value)), rule
    if value % 10:  # rounding is idempotent on its own grid: 20 is already the released form of 20
        assert float(one(_rule("generalise", to="round", step=10), "BIGINT", value)) != value


@_PROPERTY
@given(value=st.dates(min_value=dt.date(1900, 1, 1), max_value=dt.date(2100, 12, 31)))
def test_no_date_operator_returns_the_raw_value(value: dt.date) -> None:
    for rule in _DATE_RULES:
        assert one(rule, "DATE", value) not in (value, value.isoformat()), rule
    if value.day != 1:  # the first of a month is its own month
        assert one(_rule("generalise", to="month"), "DATE", value) != value


# --------------------------------------------------------------------------------------------------
# Three engines: the same value, the same operator, the same output
# --------------------------------------------------------------------------------------------------

#: (name, DuckDB type, PostgreSQL type, MariaDB type)
_COLUMNS = [
    ("s", "VARCHAR", "VARCHAR(200)", "VARCHAR(200)"),
    ("plz", "VARCHAR", "VARCHAR(10)", "VARCHAR(10)"),
    ("i", "BIGINT", "BIGINT", "BIGINT"),
    ("n", "INTEGER", "INTEGER", "INT"),
    ("d", "DATE", "DATE", "DATE"),
    ("ts", "TIMESTAMP", "TIMESTAMP(6)", "DATETIME(6)"),
    ("amt", "DECIMAL(10,2)", "NUMERIC(10,2)", "DECIMAL(10,2)"),
    ("f", "DOUBLE", "DOUBLE PRECISION", "DOUBLE"),
]
_ROWS: list[tuple[Any, ...]] = [
    ("Müller", "65183", 1, 17, dt.date(1984, 2, 29), dt.datetime(2024, 2, 29, 10, 0, 5, 120000),
     Decimal("1234.56"), 12.5),
    ("müller", "65189", -42, 0, dt.date(1900, 1, 1), dt.datetime(1999, 12, 31, 23, 59, 59),
     Decimal("-0.01"), -3.25),
    ("Straße 1", "55252", 9_007_199_254_740_993, -7, dt.date(2025, 6, 15), dt.datetime(2025, 1, 1),
     Decimal("0.00"), 0.1),
    ("ÄÖÜ äöü ß €", "651", 0, 29, dt.date(2010, 12, 31), dt.datetime(2010, 6, 1, 0, 0, 0, 1),
     Decimal("99999999.99"), 1e10),
    ("Biebrich", "6", 1_000_000, 99, dt.date(1995, 6, 16), dt.datetime(2020, 2, 1, 12, 30), Decimal("15.50"), 2.0),
    ("", "", 2, 100, dt.date(1960, 6, 15), dt.datetime(1970, 1, 1), Decimal("-500.00"), -0.0),
    ("x", None, None, None, None, None, None, None),
    (None, "65191", 3, 5, dt.date(2000, 3, 1), dt.datetime(2000, 3, 1, 8, 0), Decimal("7.07"), 1234.5678),
]
_MATRIX_RULES: list[ColumnRule] = [
    _rule("redact"), _rule("redact", token="[x]"), _rule("redact", token=None),
    _rule("pseudonymise", domain="matrix"),
    _rule("generalise", to="year"), _rule("generalise", to="month"),
    _rule("generalise", to="age_band", reference="2025-06-15", width=10, top=90),
    _rule("generalise", to="age_band", reference="2025-06-15", width=5, **{"as": "lower"}),
    _rule("generalise", to="range", width=10), _rule("generalise", to="range", width=100, top=1000),
    _rule("generalise", to="range", width=10, **{"as": "lower"}),
    _rule("generalise", to="round", step=10),
    _rule("generalise", to="prefix", length=3, fill="x"), _rule("generalise", to="prefix", length=2),
    _rule("generalise", to="category", mapping={"Müller": "M", "Biebrich": "Süd", "ÄÖÜ äöü ß €": "U"}),
    _rule("generalise", to="category", mapping={"17": "siebzehn", "-7": "minus"}, other="andere"),
    _rule("partial", first=2), _rule("partial", first=1, last=2, token="…"), _rule("partial", last=3),
    _rule("noise", scale=5, domain="matrix"), _rule("noise", scale=2.5, domain="matrix"),
    _rule("noise", scale=0.05, domain="matrix"),
]


def _builds(rule: ColumnRule, column_type: str) -> bool:
    try:
        mask_expression(exp.column("c"), rule, column_type=column_type, dialect="duckdb", keys=KEYS,
                        purpose=PURPOSE)
    except InvalidQuery:
        return False
    return True


def _label(rule: ColumnRule) -> str:
    return f"{rule.op}:" + ",".join(f"{k}={v}" for k, v in rule.params.items() if k != "mapping")


def _cases(applicable: bool) -> list[Any]:
    return [pytest.param(rule, name, duck, id=f"{_label(rule)}-{name}")
            for rule in _MATRIX_RULES for name, duck, _, _ in _COLUMNS if _builds(rule, duck) is applicable]


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


class _DuckEngine:
    """DuckDB, read-only, directly (the same SQL the connector would run)."""

    dialect = "duckdb"

    def __init__(self, path: Path) -> None:
        self._conn = duckdb.connect(str(path), read_only=True)

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        return QueryResult(self._conn.sql(sql).to_arrow_table(), False)

    def close(self) -> None:
        self._conn.close()


def _insert_sql(table: str, placeholder: str) -> str:
    names = ", ".join(name for name, *_ in _COLUMNS)
    return f"INSERT INTO {table} (k, {names}) VALUES ({', '.join([placeholder] * (len(_COLUMNS) + 1))})"


@pytest.fixture(scope="module")
def engines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Connector]]:
    rows = [(k, *row) for k, row in enumerate(_ROWS)]
    path = tmp_path_factory.mktemp("masks") / "m.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE m (k INTEGER, " + ", ".join(f"{n} {t}" for n, t, _, _ in _COLUMNS) + ")")
        con.executemany(_insert_sql("m", "?"), rows)
    pg_name, maria_name = _unique("gw_masks"), _unique("gw_masks")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{pg_name}" ENCODING UTF8 TEMPLATE template0')
    maria = pymysql.connect(host=MARIA_HOST, port=MARIA_PORT, user=MARIA_USER, autocommit=True, charset="utf8mb4")
    connectors: dict[str, Connector] = {}
    try:
        with maria.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{maria_name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_general_ci")
            cur.execute(f"CREATE TABLE `{maria_name}`.m (k INT, "
                        + ", ".join(f"{n} {t}" for n, _, _, t in _COLUMNS) + ")")
            cur.executemany(_insert_sql(f"`{maria_name}`.m", "%s"), rows)
        pg_dsn = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
        with psycopg.connect(pg_dsn, autocommit=True) as pg:
            pg.execute("CREATE TABLE m (k INTEGER, " + ", ".join(f"{n} {t}" for n, _, t, _ in _COLUMNS) + ")")
            with pg.cursor() as cur:
                cur.executemany(_insert_sql("m", "%s"), rows)
        connectors = {
            "duckdb": _DuckEngine(path),
            "postgres": PostgresConnector(pg_dsn),
            "mysql": MySQLConnector(f"mysql://{MARIA_USER}@{MARIA_HOST}:{MARIA_PORT}/{maria_name}"),
        }
        yield connectors
    finally:
        for connector in connectors.values():
            connector.close()
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        with maria.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{maria_name}`")
        maria.close()


def _normalise(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else value.normalize()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _run(engine: Connector, rule: ColumnRule, column: str, column_type: str) -> list[tuple[Any, Any]]:
    raw = exp.column(column, table="t", quoted=True)
    masked_expr = mask_expression(raw, rule, column_type=column_type, dialect=engine.dialect, keys=KEYS,
                                  purpose=PURPOSE)
    query = exp.select(exp.column("k", table="t", quoted=True), exp.alias_(masked_expr, "m", quoted=True)).from_(
        exp.Table(this=exp.to_identifier("m", quoted=True),
                  alias=exp.TableAlias(this=exp.to_identifier("t", quoted=True))))
    table = engine.execute(query.sql(dialect=engine.dialect), max_rows=1000, timeout_s=TIMEOUT_S).table
    pairs = zip(table.column(0).to_pylist(), table.column(1).to_pylist(), strict=True)
    return sorted((int(k), _normalise(v)) for k, v in pairs)


@pytest.mark.postgres
@pytest.mark.mariadb
@pytest.mark.parametrize(("rule", "column", "column_type"), _cases(applicable=True))
def test_same_output_on_every_engine(rule: ColumnRule, column: str, column_type: str,
                                     engines: dict[str, Connector]) -> None:
    results = {name: _run(engine, rule, column, column_type) for name, engine in engines.items()}
    assert len(results["duckdb"]) == len(_ROWS)
    for dialect in ("postgres", "mysql"):
        assert results[dialect] == results["duckdb"], f"{dialect} differs from duckdb"


@pytest.mark.parametrize(("rule", "column", "column_type"), _cases(applicable=False))
def test_refused_alike_by_every_dialect(rule: ColumnRule, column: str, column_type: str) -> None:
    messages = []
    for dialect in ("duckdb", "postgres", "mysql", "trino"):
        with pytest.raises(InvalidQuery) as caught:
            mask_expression(exp.column("c"), rule, column_type=column_type, dialect=dialect, keys=KEYS,
                            purpose=PURPOSE)
        messages.append(str(caught.value))
    assert len(set(messages)) == 1
    assert rule.rule in messages[0] or "cannot" in messages[0]


@pytest.mark.postgres
@pytest.mark.mariadb
def test_tokens_identical_from_every_engine(engines: dict[str, Connector]) -> None:
    tokeniser = Tokeniser(KEYS, PURPOSE)
    seen: dict[str, dict[str, list[Any]]] = {}
    for name, engine in engines.items():
        table = engine.execute("SELECT k, s, i, d, ts, amt FROM m ORDER BY k", max_rows=100,
                               timeout_s=TIMEOUT_S).table
        seen[name] = {col: tokenise_array(table.column(col), tokeniser, "d").to_pylist()
                      for col in ("s", "i", "d", "ts", "amt")}
    assert seen["postgres"] == seen["duckdb"]
    assert seen["mysql"] == seen["duckdb"]
