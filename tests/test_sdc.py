"""Statistical disclosure control on the reference scenario (docs/sdc.md).

Each attack is refused or neutralised - small cells, a dominated sum, a margin that would give away a
suppressed cell (ROLLUP), a pair of differencing queries, an exhausted privacy budget - and legitimate
statistics still come back useful, compared with the raw demo data.

paula (city planning, aggregate-only on einwohner) is exercised through the HTTP API. Magnitude data
(sozialleistungen.betrag_monat) is not released to her, so the dominance rule and differential privacy
run on a gateway built on a copy of the policy whose sozialleistungen grant is aggregate-only.
"""

from __future__ import annotations

import shutil
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.identity.principal import Principal
from gateway.identity.settings import IdentitySettings
from gateway.pipeline import QueryRequest, RequestContext
from gateway.runtime import Runtime, build_runtime
from gateway.sdc.rollup import secondary_suppression
from gateway.sql.rewrite import rewrite
from gateway.sql.statement import parse_query
from tests.conftest import Api

#: a client address inside the city's network (the policy's residency rule checks it)
INTERNAL = "127.0.0.1"


def inside() -> RequestContext:
    """A fresh request context (own request id) from inside the network."""
    return RequestContext(client_address=INTERNAL)

REPO = Path(__file__).resolve().parent.parent
MIN_CELL = 3
PAULA_RULE = "einwohner.aggregate_only_min_cell"


# -- helpers ---------------------------------------------------------------------------------------


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == code, body
    return body


def _rows(body: dict[str, Any]) -> list[dict[str, Any]]:
    names = [c["name"] for c in body["columns"]]
    return [dict(zip(names, row, strict=True)) for row in body["rows"]]


def _social_filter() -> str:
    """The policy's retention row filter on sozialleistungen (if the catalog declares one), for raw SQL."""
    catalog = yaml.safe_load((REPO / "policies" / "catalog.yaml").read_text(encoding="utf-8"))
    retention = catalog["datasets"]["sozialleistungen"].get("retention")
    if not retention:
        return "TRUE"
    in_period = f"CAST({retention['column']} AS DATE) >= current_date - INTERVAL {int(retention['days'])} DAY"
    if retention.get("keep_null"):
        return f"({retention['column']} IS NULL OR {in_period})"
    return in_period


@pytest.fixture(autouse=True)
def _fresh_guard(runtime: Runtime) -> Iterator[None]:
    """The differencing guard remembers populations per user: keep the session's gateway clean."""
    runtime.gateway.sdc.guard.clear()
    yield
    runtime.gateway.sdc.guard.clear()


SocialGateway = Callable[..., Runtime]


@pytest.fixture
def social_gateway(tmp_path: Path, demo_dir: Path) -> Iterator[SocialGateway]:
    """Build a gateway whose sozialleistungen grant is aggregate-only with the given SDC settings."""
    built: list[Runtime] = []

    def build(aggregate_only: dict[str, Any], *, data_dir: Path | None = None) -> Runtime:
        data = data_dir or tmp_path / "data"
        policies = data / "policies"
        if not policies.exists():
            shutil.copytree(REPO / "policies", policies)
            shutil.copyfile(demo_dir / "demo.duckdb", data / "demo.duckdb")
        grants_file = policies / "data" / "grants.yaml"
        grants = yaml.safe_load(grants_file.read_text(encoding="utf-8"))
        for grant in grants["grants"]:
            if grant["id"] == "sozialleistungen.sozialplanung":
                grant["aggregate_only"] = aggregate_only
                grant["columns"]["bemerkung"] = {"op": "deny", "rule": "sozialleistungen.sdc_test_no_free_text"}
        grants_file.write_text(yaml.safe_dump(grants, allow_unicode=True, sort_keys=False), encoding="utf-8")
        settings = Settings(
            data_dir=data,
            catalog_path=policies / "catalog.yaml",
            policy_dir=policies,
            identity=IdentitySettings(issuer="http://127.0.0.1:9/sdc-test", audience="gateway"),
        )
        runtime = build_runtime(settings, create_keys=True, scanner=lambda values: list(values))
        built.append(runtime)
        return runtime

    yield build
    for runtime in built:
        runtime.close()


def _social_analyst(raw_db: duckdb.DuckDBPyConnection) -> Principal:
    districts = tuple(r[0] for r in raw_db.execute("SELECT DISTINCT stadtteil FROM stadtteile").fetchall())
    return Principal(
        subject="sdc-sven-sub", username="sven", office="Amt für Soziale Arbeit", roles=("analyst",),
        purposes=("sozialplanung",), districts=districts, clearance="streng_vertraulich",
    )


def _run(runtime: Runtime, principal: Principal, sql: str) -> list[dict[str, Any]]:
    outcome = runtime.gateway.run_query(principal, QueryRequest(sql, "sozialplanung"), inside())
    rows: list[dict[str, Any]] = outcome.table.to_pylist()
    return rows


def _refused(runtime: Runtime, principal: Principal, sql: str) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        runtime.gateway.run_query(principal, QueryRequest(sql, "sozialplanung"), inside())
    return info.value


# -- minimum frequency rule (k) ---------------------------------------------------------------------


def test_small_cells_are_suppressed(api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
    body = _ok(api.query("paula", "SELECT stadtteil, staatsangehoerigkeit, count(*) AS n FROM einwohner "
                         "GROUP BY stadtteil, staatsangehoerigkeit", "stadtplanung"))
    raw = {(s, n): c for s, n, c in raw_db.execute(
        "SELECT stadtteil, staatsangehoerigkeit, count(*) FROM einwohner GROUP BY 1, 2").fetchall()}
    for row in _rows(body):
        truth = raw[(row["stadtteil"], row["staatsangehoerigkeit"])]
        assert row["_suppressed"] == (truth < MIN_CELL)
        assert row["n"] == (None if truth < MIN_CELL else truth)


# -- dominance rule --------------------------------------------------------------------------------


DOMINANCE_N, DOMINANCE_P = 1, 50.0
DOMINANCE: dict[str, Any] = {"n": DOMINANCE_N, "p": DOMINANCE_P, "columns": ["betrag_monat"]}


def _raw_cells(raw_db: duckdb.DuckDBPyConnection) -> dict[tuple[str, str], dict[str, Any]]:
    per_person = raw_db.execute(
        "SELECT leistungsart, stadtteil, einwohner_id, sum(betrag_monat) FROM sozialleistungen "
        f"WHERE {_social_filter()} GROUP BY 1, 2, 3"
    ).fetchall()
    cells: dict[tuple[str, str], list[float]] = defaultdict(list)
    for art, district, _, amount in per_person:
        cells[(art, district)].append(float(amount))
    return {key: {"sum": sum(v), "persons": len(v), "shares": sorted(v, reverse=True)} for key, v in cells.items()}


def _dominated(cell: dict[str, Any], n: int, p: float) -> bool:
    return bool(sum(cell["shares"][:n]) > p / 100 * cell["sum"])


def test_dominated_sums_are_suppressed(social_gateway: SocialGateway, raw_db: duckdb.DuckDBPyConnection) -> None:
    runtime = social_gateway({"min_cell": MIN_CELL, "rule": "sozialleistungen.sdc", "dominance": DOMINANCE,
                              "differencing": {"enabled": False}})
    rows = _run(runtime, _social_analyst(raw_db), "SELECT leistungsart, stadtteil, sum(betrag_monat) AS summe, "
                "count(*) AS faelle FROM sozialleistungen GROUP BY leistungsart, stadtteil")
    raw = _raw_cells(raw_db)
    assert len(rows) == len(raw)
    dominated_only = 0
    for row in rows:
        cell = raw[(row["leistungsart"], row["stadtteil"])]
        small = cell["persons"] < MIN_CELL
        dominated = _dominated(cell, DOMINANCE_N, DOMINANCE_P)
        assert row["_suppressed"] == (small or dominated), (row, cell)
        if row["_suppressed"]:
            assert row["summe"] is None and row["faelle"] is None
            dominated_only += not small
        else:
            assert float(row["summe"]) == pytest.approx(cell["sum"])
    assert dominated_only > 0, "the scenario should contain a cell suppressed only by the dominance rule"


def test_dominance_sql_transpiles(social_gateway: SocialGateway, raw_db: duckdb.DuckDBPyConnection) -> None:
    runtime = social_gateway({"min_cell": MIN_CELL, "rule": "sozialleistungen.sdc", "dominance": DOMINANCE})
    gateway = runtime.gateway
    principal = _social_analyst(raw_db)
    sql = "SELECT stadtteil, sum(betrag_monat) AS s FROM sozialleistungen WHERE leistungsart = 'Wohngeld' GROUP BY 1"
    decision = gateway.decide(principal, "sozialplanung", ["sozialleistungen"], inside())
    for dialect in ("duckdb", "postgres", "mysql"):
        plan = rewrite(parse_query(sql, "postgres"), decision, gateway.catalog, target_dialect=dialect,
                       keys=gateway.key_ring, purpose="sozialplanung", max_rows_cap=1000)
        assert "__dominated_0" in plan.sql and "DENSE_RANK" in plan.sql.upper()


# -- secondary suppression (ROLLUP) ---------------------------------------------------------------


def test_rollup_margins_do_not_give_away_suppressed_cells(api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
    body = _ok(api.query("paula", "SELECT stadtteil, staatsangehoerigkeit, count(*) AS n FROM einwohner "
                         "GROUP BY ROLLUP (stadtteil, staatsangehoerigkeit)", "stadtplanung"))
    rows = _rows(body)
    assert [c["name"] for c in body["columns"]] == ["stadtteil", "staatsangehoerigkeit", "n", "_suppressed"]
    raw = {(s, n): c for s, n, c in raw_db.execute(
        "SELECT stadtteil, staatsangehoerigkeit, count(*) FROM einwohner GROUP BY 1, 2").fetchall()}
    by_district: dict[str, list[dict[str, Any]]] = defaultdict(list)
    subtotal: dict[str, dict[str, Any]] = {}
    for row in rows:
        if row["stadtteil"] is None:
            continue
        if row["staatsangehoerigkeit"] is None:
            subtotal[row["stadtteil"]] = row
        else:
            by_district[row["stadtteil"]].append(row)
            if not row["_suppressed"]:
                assert row["n"] == raw[(row["stadtteil"], row["staatsangehoerigkeit"])]
    assert sum(1 for r in rows if r["stadtteil"] is None) == 1  # the grand total
    assert any(r["_suppressed"] for r in rows) and any(not r["_suppressed"] for r in rows)
    for district, children in by_district.items():
        hidden = [c for c in children if c["_suppressed"]]
        parent = subtotal[district]
        if parent["_suppressed"] or not hidden:
            continue
        # the parent is released: subtraction yields only the total of the hidden cells, which must be
        # shared by at least two cells and rest on at least min_cell persons
        assert len(hidden) >= 2, district
        recovered = parent["n"] - sum(c["n"] for c in children if not c["_suppressed"])
        assert recovered >= MIN_CELL
        assert all(raw[(district, c["staatsangehoerigkeit"])] < recovered for c in hidden)
    # the same holds one level up (district subtotals against the grand total)
    hidden_districts = [d for d, r in subtotal.items() if r["_suppressed"]]
    assert len(hidden_districts) != 1


def test_secondary_suppression_unit() -> None:
    # ROLLUP(a, b): x has children 10 and 1; 1 is suppressed (primary), so its sibling must go too,
    # otherwise x's subtotal minus 10 gives it away
    keys = [("x", "p"), ("x", "q"), ("x", None), ("y", "p"), ("y", None), ("z", "p"), ("z", None), (None, None)]
    rolled = [[False, False], [False, False], [False, True], [False, False], [False, True], [False, False],
              [False, True], [True, True]]
    persons = [10, 1, 11, 5, 5, 50, 50, 66]
    primary = [p < 3 for p in persons]
    result = secondary_suppression(keys, rolled, persons, primary, min_cell=3)
    assert result == [True, True, False, False, False, False, False, False]
    # a released subtotal over hidden children that add up to fewer than min_cell persons is not enough
    result = secondary_suppression([("x", "p"), ("x", "q"), ("x", "r"), ("x", None)],
                                   [[False, False]] * 3 + [[False, True]], [1, 1, 9, 11],
                                   [True, True, False, False], min_cell=3)
    assert result == [True, True, True, False]


def test_cube_is_refused(api: Api) -> None:
    _problem(api.query("paula", "SELECT stadtteil, geschlecht, count(*) AS n FROM einwohner "
                       "GROUP BY CUBE (stadtteil, geschlecht)", "stadtplanung"), 403, "aggregate_only")


# -- differencing guard ----------------------------------------------------------------------------


def test_differencing_pair_is_refused(api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
    total = raw_db.execute("SELECT count(*) FROM einwohner WHERE stadtteil = 'Heßloch'").fetchone()
    rare = raw_db.execute(
        "SELECT staatsangehoerigkeit, count(*) FROM einwohner WHERE stadtteil = 'Heßloch' GROUP BY 1 "
        "HAVING count(*) < 3 ORDER BY 2, 1 LIMIT 1"
    ).fetchone()
    assert total is not None and rare is not None
    first = _rows(_ok(api.query("paula", "SELECT count(*) AS n FROM einwohner WHERE stadtteil = 'Heßloch'",
                                "stadtplanung")))
    assert first[0]["n"] == total[0]
    attack = (f"SELECT count(*) AS n FROM einwohner WHERE stadtteil = 'Heßloch' "
              f"AND staatsangehoerigkeit <> '{rare[0]}'")
    body = _problem(api.query("paula", attack, "stadtplanung"), 403, "differencing_refused")
    assert body["rule"] == PAULA_RULE
    # the same difference through a grouped query is caught as well
    grouped = (f"SELECT stadtteil, count(*) AS n FROM einwohner WHERE staatsangehoerigkeit <> '{rare[0]}' "
               "GROUP BY stadtteil")
    _problem(api.query("paula", grouped, "stadtplanung"), 403, "differencing_refused")
    # populations far apart are fine
    _ok(api.query("paula", "SELECT count(*) AS n FROM einwohner WHERE stadtteil = 'Biebrich'", "stadtplanung"))
    _ok(api.query("paula", "SELECT count(*) AS n FROM einwohner WHERE geschlecht = 'w'", "stadtplanung"))


def test_differencing_through_a_join_is_refused(api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
    rare = raw_db.execute(
        "SELECT staatsangehoerigkeit FROM einwohner WHERE stadtteil = 'Heßloch' GROUP BY 1 "
        "HAVING count(*) < 3 ORDER BY count(*), 1 LIMIT 1"
    ).fetchone()
    assert rare is not None
    _ok(api.query("paula", "SELECT s.stadtteil, count(*) AS n FROM einwohner e JOIN stadtteile s "
                  "ON s.stadtteil = e.stadtteil WHERE s.stadtteil = 'Heßloch' GROUP BY s.stadtteil", "stadtplanung"))
    attack = (f"SELECT count(*) AS n FROM einwohner WHERE stadtteil = 'Heßloch' "
              f"AND staatsangehoerigkeit <> '{rare[0]}'")
    _problem(api.query("paula", attack, "stadtplanung"), 403, "differencing_refused")


def test_differencing_on_social_data(social_gateway: SocialGateway, raw_db: duckdb.DuckDBPyConnection) -> None:
    runtime = social_gateway({"min_cell": MIN_CELL, "rule": "sozialleistungen.sdc"})
    sven = _social_analyst(raw_db)
    rare = raw_db.execute(
        "WITH s AS (SELECT * FROM sozialleistungen WHERE " + _social_filter() + "), "
        "d AS (SELECT stadtteil FROM s GROUP BY 1 HAVING count(DISTINCT einwohner_id) >= 6) "
        "SELECT s.stadtteil, s.leistungsart FROM s JOIN d USING (stadtteil) WHERE s.leistungsart IS NOT NULL "
        "GROUP BY 1, 2 HAVING count(DISTINCT einwohner_id) < 3 ORDER BY 1, 2 LIMIT 1"
    ).fetchone()
    assert rare is not None, "the scenario has rare benefits in some district"
    district, benefit = rare
    _run(runtime, sven, f"SELECT count(*) AS n FROM sozialleistungen WHERE stadtteil = '{district}'")
    error = _refused(runtime, sven, f"SELECT count(*) AS n FROM sozialleistungen WHERE stadtteil = '{district}' "
                     f"AND leistungsart <> '{benefit}'")
    assert error.code == "differencing_refused" and error.rule == "sozialleistungen.sdc"


# -- differential privacy and the privacy budget --------------------------------------------------


EPSILON = 1.0
DP: dict[str, Any] = {"epsilon_per_query": EPSILON, "budget": 2.5, "bounds": {"betrag_monat": [0, 2500]}}


def test_dp_noise_and_budget(social_gateway: SocialGateway, raw_db: duckdb.DuckDBPyConnection,
                             tmp_path: Path) -> None:
    rule = {"min_cell": MIN_CELL, "rule": "sozialleistungen.dp", "dp": DP}
    runtime = social_gateway(rule)
    sven = _social_analyst(raw_db)
    sql = "SELECT leistungsart, count(*) AS faelle, sum(betrag_monat) AS summe FROM sozialleistungen GROUP BY 1"
    rows = _run(runtime, sven, sql)
    raw = {a: (n, float(s)) for a, n, s in raw_db.execute(
        "SELECT leistungsart, count(*), sum(least(greatest(betrag_monat, 0), 2500)) FROM "
        f"(SELECT *, row_number() OVER (PARTITION BY einwohner_id ORDER BY einwohner_id) AS r "
        f"FROM sozialleistungen WHERE {_social_filter()}) WHERE r <= 1 GROUP BY 1").fetchall()}
    quantities = 3  # count, sum and the person count used for suppression
    assert {r["_noise_scale_faelle"] for r in rows} == {1 * quantities / EPSILON}
    assert {r["_noise_scale_summe"] for r in rows} == {2500 * quantities / EPSILON}
    for row in rows:
        if row["_suppressed"]:
            continue
        count, total = raw[row["leistungsart"]]
        assert abs(row["faelle"] - count) <= 20 * row["_noise_scale_faelle"]
        assert abs(row["summe"] - total) <= 20 * row["_noise_scale_summe"]
    _run(runtime, sven, "SELECT count(*) AS n FROM sozialleistungen")
    error = _refused(runtime, sven, "SELECT count(*) AS n FROM sozialleistungen")
    assert error.status == 403 and error.code == "privacy_budget_exhausted"
    assert error.rule == "sozialleistungen.dp"
    # the ledger is persisted: a restarted gateway on the same data dir still refuses
    runtime.close()
    again = social_gateway(rule, data_dir=tmp_path / "data")
    assert _refused(again, sven, "SELECT count(*) AS n FROM sozialleistungen").code == "privacy_budget_exhausted"


def test_dp_refuses_unbounded_and_single_value_aggregates(social_gateway: SocialGateway,
                                                           raw_db: duckdb.DuckDBPyConnection) -> None:
    runtime = social_gateway({"min_cell": MIN_CELL, "rule": "sozialleistungen.dp",
                              "dp": {"epsilon_per_query": 0.5, "budget": 5.0}})
    sven = _social_analyst(raw_db)
    error = _refused(runtime, sven, "SELECT leistungsart, sum(betrag_monat) AS s FROM sozialleistungen GROUP BY 1")
    assert error.code == "aggregate_only"
    error = _refused(runtime, sven, "SELECT leistungsart, count(*) AS n FROM sozialleistungen GROUP BY 1 "
                     "HAVING count(*) > 5")
    assert error.code == "aggregate_only"


# -- legitimate statistics stay useful -------------------------------------------------------------


AGE_GROUP = ("CASE WHEN geburtsdatum >= 2006 THEN 'unter 20' WHEN geburtsdatum >= 1966 THEN '20 bis 59' "
             "ELSE '60 und älter' END")


def test_population_by_district_and_age_group(api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
    body = _ok(api.query("paula", f"SELECT stadtteil, {AGE_GROUP} AS altersgruppe, count(*) AS n FROM einwohner "
                         "GROUP BY 1, 2", "stadtplanung"))
    raw_age = AGE_GROUP.replace("geburtsdatum", "extract(year FROM geburtsdatum)")
    raw = {(s, a): n for s, a, n in raw_db.execute(
        f"SELECT stadtteil, {raw_age}, count(*) FROM einwohner GROUP BY 1, 2").fetchall()}
    rows = _rows(body)
    released = [r for r in rows if not r["_suppressed"]]
    for row in released:
        assert row["n"] == raw[(row["stadtteil"], row["altersgruppe"])]
    assert sum(r["n"] for r in released) >= 0.95 * sum(raw.values())


def test_benefits_by_type_and_district(social_gateway: SocialGateway, raw_db: duckdb.DuckDBPyConnection) -> None:
    runtime = social_gateway({"min_cell": MIN_CELL, "rule": "sozialleistungen.sdc",
                              "dominance": {"n": 2, "p": 85, "columns": ["betrag_monat"]}})
    rows = _run(runtime, _social_analyst(raw_db), "SELECT leistungsart, stadtteil, count(*) AS faelle, "
                "sum(betrag_monat) AS summe FROM sozialleistungen GROUP BY leistungsart, stadtteil")
    raw = _raw_cells(raw_db)
    released = [r for r in rows if not r["_suppressed"]]
    for row in released:
        assert float(row["summe"]) == pytest.approx(raw[(row["leistungsart"], row["stadtteil"])]["sum"])
    share = sum(float(r["summe"]) for r in released) / sum(c["sum"] for c in raw.values())
    assert share >= 0.5, share
