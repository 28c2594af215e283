"""The rewriter's caches: derived-table templates and normalised schemas.

A template is the SQL text of one dataset's derived table under one decision. These tests pin down
that a template is exactly what building the derived table gives, that it is never shared between
decisions (principals, purposes, key rings, dialects) that differ in anything, and that no later
rewrite can change a cached template.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from gateway.catalog import Catalog, load_catalog
from gateway.config import DEFAULT_POLICY_DIR
from gateway.errors import AccessDenied, InvalidQuery
from gateway.policy.decision import ColumnRule, DatasetDecision, Decision, RowFilter
from gateway.sql import rewrite as rw
from gateway.sql.masks import KeyRing
from gateway.sql.statement import parse_query

KEYS = KeyRing(master=b"t" * 32, key_id="cache-test")
DIALECTS = ("duckdb", "postgres", "mysql", "trino")


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml")


@pytest.fixture(autouse=True)
def empty_caches() -> None:
    rw.clear_template_cache()


def _decision(catalog: Catalog, dataset: str = "einwohner", *, overrides: dict[str, ColumnRule] | None = None,
              filters: tuple[RowFilter, ...] = ()) -> Decision:
    columns = {c: ColumnRule(op="plain", rule="t.plain") for c in catalog.datasets[dataset].columns}
    columns.update(overrides or {})
    return Decision(allow=True, datasets={dataset: DatasetDecision(allow=True, columns=columns, row_filters=filters)})


def _template(catalog: Catalog, decision: Decision, *, dataset: str = "einwohner", dialect: str = "duckdb",
              keys: KeyRing = KEYS, purpose: str = "statistik") -> str:
    return rw.derived_table_sql(dataset, decision, catalog, dialect=dialect, keys=keys, purpose=purpose)


def _rewrite(catalog: Catalog, sql: str, decision: Decision, *, dialect: str = "duckdb",
             keys: KeyRing = KEYS, purpose: str = "statistik") -> str:
    plan = rw.rewrite(parse_query(sql), decision, catalog, target_dialect=dialect, keys=keys, purpose=purpose,
                      max_rows_cap=1000)
    return plan.sql


PSEUDO = ColumnRule(op="pseudonymise", rule="t.pseudo", params={"domain": "person"})
MASKED = {
    "vorname": PSEUDO,
    "nachname": ColumnRule(op="partial", rule="t.partial", params={"first": 1}),
    "geburtsdatum": ColumnRule(op="generalise", rule="t.year", params={"to": "year"}),
    "telefon": ColumnRule(op="redact", rule="t.redact"),
    "steuer_id": ColumnRule(op="deny", rule="t.deny"),
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_template_is_the_generated_derived_table(catalog: Catalog, dialect: str) -> None:
    decision = _decision(catalog, overrides=MASKED,
                         filters=(RowFilter(column="stadtteil", values=("Mitte", "Biebrich"), rule="t.district"),))
    built = rw._derived_select("einwohner", decision, catalog, dialect=dialect, keys=KEYS, purpose="statistik")
    expected = built.sql(dialect=dialect)
    assert _template(catalog, decision, dialect=dialect) == expected
    assert _template(catalog, decision, dialect=dialect) == expected  # from the cache
    assert "steuer_id" not in expected


def test_rewrite_with_cold_and_warm_templates_is_identical(catalog: Catalog) -> None:
    decision = _decision(catalog, overrides=MASKED)
    sql = "SELECT e.vorname, s.plz FROM einwohner e JOIN einwohner s ON s.id = e.id WHERE e.plz LIKE '6%'"
    cold = _rewrite(catalog, sql, decision)
    assert len(rw._TEMPLATES) == 1
    warm = _rewrite(catalog, sql, decision)
    assert cold == warm
    assert cold.count('FROM "einwohner" AS "__src"') == 2


def test_a_cached_template_is_never_changed_by_later_rewrites(catalog: Catalog) -> None:
    decision = _decision(catalog, overrides=MASKED)
    first = _template(catalog, decision)
    fresh = rw._derived_select("einwohner", decision, catalog, dialect="duckdb", keys=KEYS,
                               purpose="statistik").sql(dialect="duckdb")
    for sql in (
        "SELECT * FROM einwohner",
        "SELECT stadtteil, count(*) FROM einwohner GROUP BY 1",
        "WITH t AS (SELECT vorname FROM einwohner) SELECT vorname FROM t UNION ALL SELECT nachname FROM einwohner",
        "SELECT a.vorname FROM einwohner a FULL OUTER JOIN einwohner b ON a.id = b.id",
    ):
        for dialect in DIALECTS:
            _rewrite(catalog, sql, decision, dialect=dialect)
    assert _template(catalog, decision) == first == fresh


def _key(catalog: Catalog, decision: Decision, **kw: object) -> object:
    args: dict[str, object] = {"dialect": "duckdb", "keys": KEYS, "purpose": "statistik", **kw}
    return rw._template_key("einwohner", decision, catalog, **args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "change",
    [
        {"vorname": ColumnRule(op="plain", rule="t.pseudo")},  # another mask
        {"vorname": ColumnRule(op="pseudonymise", rule="t.pseudo", params={"domain": "other"})},  # another domain
        {"vorname": ColumnRule(op="deny", rule="t.pseudo")},  # denied
        {"nachname": ColumnRule(op="partial", rule="t.partial", params={"first": 2})},
        {"nachname": ColumnRule(op="partial", rule="t.partial", params={"first": 1.0})},  # 1 == 1.0
        {"nachname": ColumnRule(op="partial", rule="t.partial", params={"first": True})},  # 1 == True
        {"nachname": ColumnRule(op="partial", rule="t.partial", params={"first": 1, "last": 1})},
        {"nachname": ColumnRule(op="partial", rule="t.partial", params={"first": 1}, uses=("select",))},
        {"geburtsdatum": ColumnRule(op="generalise", rule="t.year", params={"to": "month"})},
        {"telefon": ColumnRule(op="redact", rule="t.other_rule")},
    ],
)
def test_decisions_that_differ_never_share_a_template(catalog: Catalog, change: dict[str, ColumnRule]) -> None:
    base = _decision(catalog, overrides=MASKED)
    other = _decision(catalog, overrides={**MASKED, **change})
    assert _key(catalog, base) != _key(catalog, other)
    first = _template(catalog, base)
    try:
        second = _template(catalog, other)
    except InvalidQuery:  # e.g. partial with first=True is refused: then nothing is cached for it
        return
    assert len(rw._TEMPLATES) == 2
    assert _template(catalog, base) == first
    assert _template(catalog, other) == second


@pytest.mark.parametrize(
    "filters",
    [
        (RowFilter(column="stadtteil", values=("Mitte",), rule="t.d"),),
        (RowFilter(column="stadtteil", values=("Mitte", "Biebrich"), rule="t.d"),),
        (RowFilter(column="stadtteil", op="eq", values=("Mitte",), rule="t.d"),),
        (RowFilter(column="plz", values=("Mitte",), rule="t.d"),),
        (RowFilter(column="zuzug_am", op="not_before_days", values=(30,), rule="t.r"),),
        (RowFilter(column="zuzug_am", op="not_before_days", values=(30.0,), rule="t.r"),),
        (RowFilter(column="zuzug_am", op="not_before_days", values=(31,), rule="t.r"),),
    ],
)
def test_row_filters_are_part_of_the_key(catalog: Catalog, filters: tuple[RowFilter, ...]) -> None:
    unfiltered = _decision(catalog)
    filtered = _decision(catalog, filters=filters)
    assert _key(catalog, unfiltered) != _key(catalog, filtered)
    assert "WHERE" not in _template(catalog, unfiltered)
    assert "WHERE" in _template(catalog, filtered)
    assert "WHERE" not in _template(catalog, unfiltered)


def test_every_field_of_a_row_filter_is_part_of_the_key(catalog: Catalog) -> None:
    """A field added to RowFilter later (e.g. keep_null) changes the key without touching the rewriter."""
    plain = RowFilter(column="zuzug_am", op="not_before_days", values=(30,), rule="t.r")
    for name, field in RowFilter.model_fields.items():
        if field.annotation is bool:
            changed = plain.model_copy(update={name: not getattr(plain, name)})
            assert _key(catalog, _decision(catalog, filters=(plain,))) != _key(
                catalog, _decision(catalog, filters=(changed,)))


def test_principals_with_different_decisions_never_share_a_template(catalog: Catalog) -> None:
    """anna (statistik: pseudonyms) and sven (sozialplanung: two districts only) read the same dataset."""
    anna = _decision(catalog, overrides=MASKED)
    sven = _decision(catalog, overrides=MASKED,
                     filters=(RowFilter(column="stadtteil", values=("Biebrich", "Dotzheim"), rule="t.districts"),))
    sql = "SELECT vorname, stadtteil FROM einwohner"
    for _ in range(2):  # cold, then warm
        for_anna = _rewrite(catalog, sql, anna, purpose="statistik")
        for_sven = _rewrite(catalog, sql, sven, purpose="sozialplanung")
        assert "Dotzheim" not in for_anna
        assert "'Biebrich', 'Dotzheim'" in for_sven
    assert len(rw._TEMPLATES) == 2


@pytest.mark.parametrize("dialect", DIALECTS)
def test_purpose_key_ring_and_dialect_are_part_of_the_key(catalog: Catalog, dialect: str) -> None:
    decision = _decision(catalog, overrides=MASKED)
    base = _template(catalog, decision, dialect=dialect)
    other_purpose = _template(catalog, decision, dialect=dialect, purpose="sozialplanung")
    other_keys = _template(catalog, decision, dialect=dialect,
                           keys=KeyRing(master=b"u" * 32, key_id="cache-test"))
    rotated = _template(catalog, decision, dialect=dialect, keys=KEYS.rotate(b"v" * 32, "next"))
    assert len({base, other_purpose, other_keys, rotated}) == 4  # pseudonym keys differ in each
    assert _key(catalog, decision, dialect=dialect) != _key(catalog, decision, dialect="other")


def test_catalog_changes_are_part_of_the_key(catalog: Catalog) -> None:
    decision = _decision(catalog)
    meta = catalog.datasets["einwohner"]
    moved = catalog.model_copy(update={"datasets": {**catalog.datasets,
                                                    "einwohner": meta.model_copy(update={"table": "einwohner_v2"})}})
    assert 'FROM "einwohner_v2" AS "__src"' in _template(moved, decision)
    assert 'FROM "einwohner" AS "__src"' in _template(catalog, decision)
    retyped = meta.model_copy(update={"columns": {**meta.columns, "plz": meta.columns["plz"].model_copy(
        update={"type": "INTEGER"})}})
    assert _key(catalog, decision) != rw._template_key(
        "einwohner", decision, catalog.model_copy(update={"datasets": {**catalog.datasets, "einwohner": retyped}}),
        dialect="duckdb", keys=KEYS, purpose="statistik")


def test_freeze_is_exact() -> None:
    values = [1, 1.0, True, "1", Decimal("1"), Decimal("1.0"), 0.0, -0.0, None, [1], (1,), {"a": 1}, {"a": 1.0},
              dt.date(2025, 1, 1), dt.datetime(2025, 1, 1), "2025-01-01",
              dt.datetime(2025, 1, 1, tzinfo=dt.UTC),
              dt.datetime(2025, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))]
    frozen = [rw._freeze(v) for v in values]
    assert len(set(frozen)) == len(values)
    with pytest.raises(rw._Uncacheable):
        rw._freeze(object())


def test_an_uncacheable_decision_is_rewritten_without_the_cache(catalog: Catalog) -> None:
    odd = ColumnRule(op="redact", rule="t.odd", params={"token": "x"})
    object.__setattr__(odd, "params", {"token": "x", "unused": object()})  # not a JSON value: no exact key
    decision = _decision(catalog, overrides={"telefon": odd})
    with pytest.raises(InvalidQuery):  # the unknown parameter is still refused, on every call
        _rewrite(catalog, "SELECT telefon FROM einwohner", decision)
    assert len(rw._TEMPLATES) == 0


def test_the_cache_is_bounded(catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rw._TEMPLATES, "size", 3)
    for days in range(1, 10):
        _template(catalog, _decision(catalog, filters=(
            RowFilter(column="zuzug_am", op="not_before_days", values=(days,), rule="t.r"),)))
    assert len(rw._TEMPLATES) == 3


def test_policy_errors_are_raised_every_time_and_not_cached(catalog: Catalog) -> None:
    decision = _decision(catalog, filters=(RowFilter(column="nope", values=("x",), rule="t.bad"),))
    for _ in range(2):
        with pytest.raises(AccessDenied):
            _template(catalog, decision)
    assert len(rw._TEMPLATES) == 0


def test_analyst_text_that_looks_like_a_marker_stays_text(catalog: Catalog) -> None:
    decision = _decision(catalog)
    sql = _rewrite(catalog, "SELECT '(SELECT __gw_derived_0_0)' AS a, '__gw_derived_' AS b, stadtteil FROM einwohner",
                   decision)
    assert "'(SELECT __gw_derived_0_0)' AS \"a\"" in sql
    assert sql.count('FROM "einwohner" AS "__src"') == 1


def test_splice_fails_closed() -> None:
    marker = "__gw_derived_abc_"
    assert rw._splice(f"SELECT x FROM (SELECT {marker}0) AS t", marker, ["SELECT 1 AS x"]) == \
        "SELECT x FROM (SELECT 1 AS x) AS t"
    for broken in (
        "SELECT x FROM t",  # marker missing
        f"SELECT x FROM ({marker}0) AS t",  # not in the generated form
        f"SELECT x FROM (SELECT {marker}0 AS y) AS t",
        f"SELECT x FROM (SELECT {marker}1) AS t",  # unknown index, and index 0 missing
        f"SELECT x FROM (SELECT {marker}0) AS t WHERE 'SELECT' = '{marker}0'",  # a stray copy
    ):
        with pytest.raises(InvalidQuery):
            rw._splice(broken, marker, ["SELECT 1 AS x"])


def test_normalised_schemas_still_refuse_denied_and_unknown_columns(catalog: Catalog) -> None:
    allowed = _decision(catalog)
    denied = _decision(catalog, overrides={"vorname": ColumnRule(op="deny", rule="t.deny")})
    assert "vorname" in _rewrite(catalog, "SELECT vorname FROM einwohner", allowed)
    with pytest.raises(AccessDenied) as refused:
        _rewrite(catalog, "SELECT vorname FROM einwohner", denied)
    assert refused.value.code == "column_denied"
    assert "vorname" in _rewrite(catalog, "SELECT vorname FROM einwohner", allowed)
    with pytest.raises(InvalidQuery):
        _rewrite(catalog, "SELECT no_such_column FROM einwohner", allowed)


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT stadtteil FROM einwohner",
        "SELECT nope FROM einwohner",  # unknown
        "SELECT e.nope FROM einwohner e",
        "SELECT stadtteil FROM einwohner a JOIN einwohner b ON a.id = b.id",  # ambiguous
        "SELECT stadtteil FROM einwohner e WHERE EXISTS (SELECT 1 FROM stadtteile s WHERE s.stadtteil = e.stadtteil)",
        "SELECT x.stadtteil FROM (SELECT e.stadtteil FROM einwohner e WHERE e.plz = x.plz) x",  # not correlated
        "SELECT (SELECT max(s.flaeche_km2) FROM stadtteile s WHERE s.stadtteil = e.stadtteil) FROM einwohner e",
        "WITH t AS (SELECT plz FROM einwohner) SELECT t.plz, t.nope FROM t",
        "SELECT stadtteil FROM einwohner UNION SELECT nope FROM stadtteile",
    ],
)
def test_the_shared_scope_validation_agrees_with_sqlglot(catalog: Catalog, sql: str) -> None:
    """rewrite validates qualified columns on the scopes the lineage analysis reuses; it must refuse
    exactly what sqlglot's validate_qualify_columns refuses, with sqlglot's message."""
    from sqlglot.errors import OptimizeError
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.optimizer.qualify_columns import validate_qualify_columns
    from sqlglot.optimizer.scope import traverse_scope

    schema = {name: {c: m.type for c, m in catalog.datasets[name].columns.items()}
              for name in ("einwohner", "stadtteile")}
    try:
        tree = qualify(parse_query(sql).ast.copy(), schema=schema, dialect="postgres",
                       validate_qualify_columns=False, identify=True)
    except OptimizeError:
        return  # refused before validation, on both paths
    try:
        validate_qualify_columns(tree.copy())
        refused = False
    except OptimizeError:
        refused = True
    assert rw._unresolved_columns(traverse_scope(tree)) is refused
