"""Property tests: generated query shapes over the reference schema never break the invariants.

Queries run through the whole pipeline (policy, rewrite, DuckDB, masking, audit) as anna and sven;
results are compared with the raw data read straight from the demo database:
- no raw value of a protected column ever appears in a masked or computed column,
- denied columns never appear, pseudonyms have their shape,
- no row outside sven's districts is ever returned, whatever the predicates.
(The identity stage is covered with real tokens elsewhere; here the principal is built directly.)
"""

from __future__ import annotations

import re

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.pipeline import QueryRequest, RequestContext
from gateway.runtime import Runtime

#: a client address inside the city's network (the policy's residency rule checks it)
INTERNAL = "127.0.0.1"

ANNA = Principal(subject="anna", username="anna", office="Amt für Statistik und Stadtforschung", roles=("analyst",),
                 purposes=("statistik",), clearance="vertraulich")
SVEN = Principal(subject="sven", username="sven", office="Amt für Soziale Arbeit", roles=("analyst",),
                 purposes=("sozialplanung",), districts=("Biebrich", "Dotzheim"), clearance="streng_vertraulich")

EINWOHNER = ["id", "vorname", "nachname", "geburtsdatum", "geschlecht", "strasse", "hausnummer", "plz",
             "stadtteil", "staatsangehoerigkeit", "telefon", "email", "zuzug_am"]
PLAIN_PREDICATES = ["stadtteil = 'Mitte'", "plz LIKE '651%'", "zuzug_am > DATE '2010-01-01'", "geschlecht = 'w'",
                    "1 = 1", "stadtteil IS NULL", "NOT (stadtteil = 'Biebrich')", "geburtsdatum > 1970"]
PSEUDONYM = re.compile(r"^p_[0-9a-f]{16}$")


@pytest.fixture(scope="module")
def protected(raw_db: duckdb.DuckDBPyConnection) -> set[str]:
    values: set[str] = set()
    for column in ("vorname", "nachname", "strasse", "telefon", "email", "steuer_id"):
        values.update(v for (v,) in raw_db.execute(f"SELECT DISTINCT {column} FROM einwohner").fetchall() if v)
    values.update(str(v) for (v,) in raw_db.execute("SELECT DISTINCT geburtsdatum FROM einwohner").fetchall())
    return values


@st.composite
def anna_queries(draw: st.DrawFn) -> str:
    columns = draw(st.lists(st.sampled_from(EINWOHNER), min_size=1, max_size=5, unique=True))
    where = draw(st.lists(st.sampled_from(PLAIN_PREDICATES), max_size=2))
    joiner = draw(st.sampled_from([" AND ", " OR "]))
    condition = f" WHERE {joiner.join(where)}" if where else ""
    select = ", ".join(columns)
    base = f"SELECT {select} FROM einwohner{condition}"
    shape = draw(st.sampled_from(["plain", "subquery", "cte", "union", "join", "group", "expr", "window"]))
    if shape == "subquery":
        return f"SELECT * FROM ({base}) AS q LIMIT 40"
    if shape == "cte":
        return f"WITH q AS ({base}) SELECT * FROM q LIMIT 40"
    if shape == "union":
        return f"{base} UNION ALL {base} LIMIT 40"
    if shape == "join":
        other = draw(st.sampled_from(EINWOHNER))
        return (f"SELECT a.{columns[0]}, b.{other} FROM (SELECT * FROM einwohner{condition}) a "
                f"JOIN einwohner b ON a.id = b.id LIMIT 40")
    if shape == "group":
        return f"SELECT {columns[0]}, count(*) AS n FROM einwohner{condition} GROUP BY {columns[0]} LIMIT 40"
    if shape == "expr":
        return f"SELECT upper(CAST({columns[0]} AS VARCHAR)) || '-' || CAST({columns[-1]} AS VARCHAR) AS x " \
               f"FROM einwohner{condition} LIMIT 40"
    if shape == "window":
        return f"SELECT {select}, row_number() OVER (PARTITION BY stadtteil) AS rn FROM einwohner{condition} LIMIT 40"
    return f"{base} LIMIT 40"


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=anna_queries())
def test_no_raw_protected_value_leaves(runtime: Runtime, protected: set[str], sql: str) -> None:
    try:
        outcome = runtime.gateway.run_query(ANNA, QueryRequest(sql=sql, purpose="statistik"),
                                            RequestContext(client_address=INTERNAL))
    except GatewayError as error:
        assert error.status in (403, 422), (sql, error.code)
        return
    names = outcome.table.column_names
    assert "steuer_id" not in names
    for index, column in enumerate(outcome.columns):
        values = outcome.table.column(index).to_pylist()
        if column.masking == "pseudonymise":
            assert all(v is None or PSEUDONYM.match(v) for v in values), sql
        if column.masking == "plain":
            continue
        for value in values:
            if isinstance(value, str):
                assert value not in protected, (sql, column.name)
                assert not any(p in value for p in protected if len(p) >= 9 and "@" in p), sql


SOZIAL_PREDICATES = ["stadtteil = 'Mitte'", "stadtteil <> 'Biebrich'", "1 = 1", "stadtteil IS NULL",
                     "NOT (stadtteil IN ('Dotzheim'))", "betrag_monat > 100", "ende IS NULL",
                     "leistungsart = 'Wohngeld'", "stadtteil = 'Biebrich' OR TRUE"]


@st.composite
def sven_queries(draw: st.DrawFn) -> str:
    where = draw(st.lists(st.sampled_from(SOZIAL_PREDICATES), max_size=3))
    joiner = draw(st.sampled_from([" AND ", " OR "]))
    condition = f" WHERE {joiner.join(where)}" if where else ""
    shape = draw(st.sampled_from(["plain", "union", "outer", "subquery", "exists", "cte"]))
    base = f"SELECT fall_id FROM sozialleistungen{condition}"
    if shape == "union":
        return f"{base} UNION SELECT fall_id FROM sozialleistungen WHERE stadtteil = 'Mitte' OR stadtteil IS NOT NULL"
    if shape == "outer":
        return f"SELECT s.fall_id FROM stadtteile t LEFT JOIN (SELECT * FROM sozialleistungen{condition}) s " \
               f"ON s.stadtteil = t.stadtteil OR {draw(st.sampled_from(['TRUE', 'FALSE', 's.stadtteil IS NULL']))}"
    if shape == "subquery":
        return f"SELECT fall_id FROM ({base}) q WHERE fall_id IN (SELECT fall_id FROM sozialleistungen)"
    if shape == "exists":
        return "SELECT t.stadtteil FROM stadtteile t WHERE EXISTS (SELECT 1 FROM sozialleistungen s " \
               "WHERE s.stadtteil = t.stadtteil)"
    if shape == "cte":
        return f"WITH q AS ({base}) SELECT * FROM q"
    return base


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=sven_queries())
def test_no_row_outside_the_filter(runtime: Runtime, raw_db: duckdb.DuckDBPyConnection, sql: str) -> None:
    allowed = {f for (f,) in raw_db.execute(
        "SELECT fall_id FROM sozialleistungen WHERE stadtteil IN ('Biebrich', 'Dotzheim')").fetchall()}
    districts_with_cases = {"Biebrich", "Dotzheim"}
    outcome = runtime.gateway.run_query(SVEN, QueryRequest(sql=sql, purpose="sozialplanung"),
                                        RequestContext(client_address=INTERNAL))
    values = [v for v in outcome.table.column(0).to_pylist() if v is not None]
    if outcome.table.column_names[0] == "stadtteil":
        assert set(values) <= districts_with_cases, sql
    else:
        assert set(values) <= allowed, sql
