"""The same analyst query gives the same released result on DuckDB, PostgreSQL and MariaDB.

The reference scenario (3000 synthetic residents) is generated into a DuckDB file and copied into a
fresh PostgreSQL database and a fresh MariaDB database. Each analyst query is compared twice:

* as released: ``Gateway.run_query`` on one gateway per engine (and DuckDB with the pseudonym replica),
  with the runtime's free-text scanner, so the masking after SQL (Arrow-side masks, free-text scan,
  small-cell suppression) is compared too;
* as SQL: through the real policy engine and rewriter once per target dialect, run on every engine,
  which shows whether a difference of the released answers comes from the SQL.

The results must be identical after sorting rows and normalising Python types (int/Decimal/float/bool).
Pseudonyms and other strings are compared byte for byte: they are joined across engines, so a
pseudonym that differs by engine is a bug in ``gateway/sql/masks.py``.

Trino cannot run here; for it we check that the rewritten SQL parses back as Trino SQL and that the
masks use functions Trino has.

These tests need both servers (markers ``postgres`` and ``mariadb``) and fail, not skip, without them.
CI (.ci/check_db_tests.py) also fails if a case is xfail-marked or not every case ran.
"""

from __future__ import annotations

import datetime as dt
import math
import secrets
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import sqlglot
from sqlglot import exp

from connectors.base import Connector
from connectors.duckdb import DuckDBConnector
from connectors.mysql import MySQLConnector
from connectors.postgres import PostgresConnector
from gateway.catalog import Catalog, load_catalog
from gateway.config import Settings
from gateway.demo.data import generate_demo_database
from gateway.demo.load import load_into
from gateway.errors import AccessDenied, InvalidQuery
from gateway.identity.principal import Principal
from gateway.pipeline import Gateway, QueryOutcome, QueryRequest, RequestContext, Scanner
from gateway.policy.decision import ColumnRule, MaskOp
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import load_bundle
from gateway.policy.inputs import build_input
from gateway.runtime import default_scanner
from gateway.sql.masks import KeyRing, mask_expression
from gateway.sql.pseudonym_replica import REPLICA_ALIAS, PseudonymReplicas, build_replicas, specs_from_policy_data
from gateway.sql.rewrite import RewritePlan, rewrite
from gateway.sql.statement import parse_query
from gateway.sql.tables import referenced_datasets
from tests.test_connector_streaming import _gateway

pytestmark = [pytest.mark.postgres, pytest.mark.mariadb]

ROOT = Path(__file__).resolve().parents[1]
CATALOG_PATH = ROOT / "policies" / "catalog.yaml"
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA_HOST, MARIA_PORT, MARIA_USER = "127.0.0.1", 3306, "root"
ROWS = 3000
KEYS = KeyRing(master=bytes(range(32)), key_id="conformance")
MAX_ROWS = 100_000
TIMEOUT_S = 30.0

USERS = {
    "anna": Principal(subject="anna-sub", username="anna", office="Amt für Statistik und Stadtforschung",
                      roles=("analyst",), purposes=("statistik",), clearance="vertraulich"),
    "sven": Principal(subject="sven-sub", username="sven", office="Amt für Soziale Arbeit",
                      roles=("analyst",), purposes=("sozialplanung",), districts=("Biebrich", "Dotzheim"),
                      clearance="streng_vertraulich"),
    "paula": Principal(subject="paula-sub", username="paula", office="Stadtplanungsamt", roles=("planner",),
                       purposes=("stadtplanung",), clearance="vertraulich"),
}
PURPOSE = {"anna": "statistik", "sven": "sozialplanung", "paula": "stadtplanung"}

# (user, analyst SQL in the gateway's input dialect, postgres)
QUERIES: list[tuple[str, str]] = [
    # -- anna / statistik on einwohner: pseudonyms, generalised birth dates, redactions -------------
    ("anna", "SELECT * FROM einwohner"),
    ("anna", "SELECT id, vorname, nachname FROM einwohner WHERE stadtteil = 'Heßloch'"),
    ("anna", "SELECT geburtsdatum AS jahr, count(*) AS n FROM einwohner GROUP BY geburtsdatum"),
    ("anna", "SELECT stadtteil, geschlecht, count(*) AS n FROM einwohner GROUP BY stadtteil, geschlecht"),
    ("anna", "SELECT e.vorname, x.n FROM einwohner e JOIN (SELECT stadtteil, count(*) AS n FROM einwohner "
             "GROUP BY stadtteil) x ON x.stadtteil = e.stadtteil"),
    ("anna", "WITH neu AS (SELECT stadtteil, zuzug_am FROM einwohner WHERE zuzug_am >= DATE '2020-01-01') "
             "SELECT stadtteil, count(*) AS n, min(zuzug_am) AS erster FROM neu GROUP BY stadtteil"),
    ("anna", "SELECT s.ortsbezirk_nr, s.stadtteil, count(*) AS n FROM einwohner e "
             "JOIN stadtteile s ON s.stadtteil = e.stadtteil GROUP BY s.ortsbezirk_nr, s.stadtteil"),
    ("anna", "SELECT nachname, count(*) AS n FROM einwohner GROUP BY nachname HAVING count(*) > 3"),
    ("anna", "SELECT staatsangehoerigkeit, count(DISTINCT id) AS personen FROM einwohner GROUP BY 1"),
    ("anna", "SELECT plz, min(zuzug_am) AS von, max(zuzug_am) AS bis FROM einwohner GROUP BY plz"),
    ("anna", "SELECT count(*) AS n FROM einwohner WHERE stadtteil IN ('Mitte', 'Amöneburg') AND geschlecht = 'w'"),
    ("anna", "SELECT strasse, hausnummer, telefon, email, plz FROM einwohner WHERE stadtteil = 'Kastel'"),
    ("anna", "SELECT stadtteil FROM einwohner WHERE geschlecht = 'd' UNION "
             "SELECT stadtteil FROM stadtteile WHERE ortsbezirk_nr < 5"),
    ("anna", "SELECT stadtteil, n, rank() OVER (ORDER BY n DESC) AS platz FROM "
             "(SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil) t"),
    ("anna", "SELECT e1.id, e2.vorname FROM einwohner e1 JOIN einwohner e2 ON e1.id = e2.id "
             "WHERE e1.stadtteil = 'Rambach'"),
    ("anna", "SELECT lower(staatsangehoerigkeit) AS sa, length(stadtteil) AS len, count(*) AS n "
             "FROM einwohner GROUP BY 1, 2"),
    # -- sven / sozialplanung on sozialleistungen: row filter on his districts ------------------
    ("sven", "SELECT * FROM sozialleistungen"),
    ("sven", "SELECT stadtteil, leistungsart, count(*) AS n, sum(betrag_monat) AS summe "
             "FROM sozialleistungen GROUP BY stadtteil, leistungsart"),
    ("sven", "SELECT einwohner_id, count(*) AS faelle FROM sozialleistungen GROUP BY einwohner_id "
             "HAVING count(*) > 1"),
    ("sven", "SELECT leistungsart, round(avg(betrag_monat), 2) AS mittel, min(beginn) AS erster, "
             "max(ende) AS letzter FROM sozialleistungen GROUP BY leistungsart"),
    ("sven", "SELECT fall_id, beginn, ende FROM sozialleistungen WHERE ende IS NULL"),
    ("sven", "SELECT stadtteil, count(*) AS n FROM sozialleistungen WHERE stadtteil = 'Mitte' GROUP BY 1"),
    ("sven", "WITH hoch AS (SELECT einwohner_id, betrag_monat FROM sozialleistungen WHERE betrag_monat > 500) "
             "SELECT count(DISTINCT einwohner_id) AS personen, sum(betrag_monat) AS summe FROM hoch"),
    ("sven", "SELECT bemerkung, einwohner_id FROM sozialleistungen"),
    ("sven", "SELECT CASE WHEN betrag_monat > 1000 THEN 'hoch' ELSE 'niedrig' END AS stufe, count(*) AS n "
             "FROM sozialleistungen GROUP BY 1"),
    ("sven", "SELECT fall_id, coalesce(ende, DATE '2025-12-31') AS bis FROM sozialleistungen"),
    ("sven", "SELECT leistungsart, fall_id, sum(betrag_monat) OVER (PARTITION BY leistungsart) AS summe "
             "FROM sozialleistungen"),
    ("sven", "SELECT s.stadtteil, st.ortsbezirk_nr, count(*) AS n FROM sozialleistungen s "
             "JOIN stadtteile st ON st.stadtteil = s.stadtteil GROUP BY s.stadtteil, st.ortsbezirk_nr"),
    ("sven", "SELECT a.einwohner_id, a.fall_id, b.fall_id AS anderer FROM sozialleistungen a "
             "JOIN sozialleistungen b ON a.einwohner_id = b.einwohner_id AND a.fall_id < b.fall_id"),
    ("sven", "SELECT leistungsart, count(*) AS n FROM sozialleistungen "
             "WHERE beginn BETWEEN DATE '2023-01-01' AND DATE '2024-12-31' GROUP BY leistungsart"),
    # -- paula / stadtplanung: aggregate-only on einwohner ---------------------------------------
    ("paula", "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil"),
    ("paula", "SELECT stadtteil, staatsangehoerigkeit, count(*) AS n FROM einwohner "
              "GROUP BY stadtteil, staatsangehoerigkeit"),
    ("paula", "SELECT geschlecht, count(*) AS n FROM einwohner GROUP BY geschlecht"),
    ("paula", "SELECT geburtsdatum AS jahr, count(*) AS n FROM einwohner GROUP BY geburtsdatum"),
    ("paula", "SELECT plz, count(*) AS n FROM einwohner GROUP BY plz"),
    ("paula", "SELECT count(*) AS n FROM einwohner"),
    ("paula", "SELECT stadtteil, count(*) AS n FROM einwohner WHERE zuzug_am >= DATE '2020-01-01' "
              "GROUP BY stadtteil"),
    ("paula", "SELECT stadtteil, sum(CASE WHEN geschlecht = 'w' THEN 1 ELSE 0 END) AS frauen, "
              "count(*) AS n FROM einwohner GROUP BY stadtteil"),
    ("paula", "SELECT e.stadtteil, s.flaeche_km2, count(*) AS n FROM einwohner e "
              "JOIN stadtteile s ON s.stadtteil = e.stadtteil GROUP BY e.stadtteil, s.flaeche_km2"),
    ("paula", "SELECT stadtteil, geschlecht, count(*) AS n FROM einwohner "
              "WHERE staatsangehoerigkeit <> 'deutsch' GROUP BY stadtteil, geschlecht"),
    ("paula", "SELECT plz, geschlecht, count(*) AS n FROM einwohner WHERE stadtteil IN ('Biebrich', 'Heßloch') "
              "GROUP BY plz, geschlecht"),
]

QUERY_IDS = [f"{u}-{i:02d}" for i, (u, _) in enumerate(QUERIES)]
#: the client address every request comes from (inside the city's network, for the residency rule)
CLIENT = "127.0.0.1"


# --------------------------------------------------------------------------------------------------
# The scenario: one DuckDB file, copied into fresh PostgreSQL and MariaDB databases
# --------------------------------------------------------------------------------------------------


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def demo_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("conformance") / "demo.duckdb"
    counts = generate_demo_database(path, rows=ROWS)
    assert counts["einwohner"] == ROWS
    return path


@pytest.fixture(scope="module")
def pg_dsn(demo_file: Path) -> Iterator[str]:
    name = _unique("gw_conf")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" ENCODING UTF8 TEMPLATE template0')
    dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
    try:
        load_into(dsn, demo_file)
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module")
def maria_dsn(demo_file: Path) -> Iterator[str]:
    name = _unique("gw_conf")
    dsn = f"mysql://{MARIA_USER}@{MARIA_HOST}:{MARIA_PORT}/{name}"
    try:
        load_into(dsn, demo_file, schema=name)
        yield dsn
    finally:
        conn = pymysql.connect(host=MARIA_HOST, port=MARIA_PORT, user=MARIA_USER, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


@pytest.fixture(scope="module")
def engines(demo_file: Path, pg_dsn: str, maria_dsn: str) -> Iterator[dict[str, Connector]]:
    connectors: dict[str, Connector] = {
        "duckdb": DuckDBConnector(demo_file),
        "postgres": PostgresConnector(pg_dsn),
        "mysql": MySQLConnector(maria_dsn),
    }
    yield connectors
    for connector in connectors.values():
        connector.close()


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "policies" / "catalog.yaml")


@pytest.fixture(scope="module")
def replica_engine(demo_file: Path, catalog: Catalog,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Connector, PseudonymReplicas]]:
    """DuckDB as the gateway runs it by default: pseudonyms read from the replica (on a copy of the
    file: DuckDB refuses a second in-process handle with another configuration)."""
    data_dir = tmp_path_factory.mktemp("conformance-replica")
    source = data_dir / "demo.duckdb"
    shutil.copyfile(demo_file, source)
    connector_name = catalog.datasets["einwohner"].connector
    replicas = build_replicas(catalog, data_dir, KEYS,
                              specs_from_policy_data(load_bundle(ROOT / "policies", catalog).data, catalog),
                              source_files={connector_name: source})
    assert replicas.files, "the replica was not built"
    connector = DuckDBConnector(source, attach={REPLICA_ALIAS: replicas.files[connector_name]})
    yield connector, replicas
    connector.close()


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> EmbeddedPolicyEngine:
    return EmbeddedPolicyEngine(load_bundle(ROOT / "policies", catalog))


def _plan(user: str, sql: str, dialect: str, catalog: Catalog, policy: EmbeddedPolicyEngine,
          replicas: PseudonymReplicas | None = None) -> RewritePlan:
    purpose = PURPOSE[user]
    parsed = parse_query(sql)
    datasets = referenced_datasets(parsed.ast, catalog)
    decision = policy.decide(build_input(USERS[user], purpose, datasets, client_address=CLIENT))
    assert decision.allow, [d.message for d in decision.denials]
    return rewrite(parsed, decision, catalog, target_dialect=dialect, keys=KEYS, purpose=purpose,
                   max_rows_cap=MAX_ROWS, replicas=replicas)


@pytest.fixture(scope="module")
def scanner() -> Scanner:
    """The free-text scanner exactly as ``build_runtime`` makes it (Presidio with the German recognizers, for
    the default ``pii_language``); built once, it takes a few seconds."""
    return default_scanner(Settings.model_fields["pii_language"].default)


@pytest.fixture(scope="module")
def gateways(engines: dict[str, Connector], replica_engine: tuple[Connector, PseudonymReplicas], scanner: Scanner,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Gateway]]:
    """One whole gateway per engine, over the same connectors as the SQL-level tests: the real catalog, policy,
    audit store (``_gateway`` of tests/test_connector_streaming.py), the runtime's free-text scanner and the
    suite's key ring (the one the pseudonym replica was built with); ``duckdb+replica`` reads pseudonyms
    from the replica as the runtime's DuckDB does."""
    connectors = {**engines, "duckdb+replica": replica_engine[0]}
    built: dict[str, Gateway] = {}
    try:
        for name, connector in connectors.items():
            gateway: Gateway = _gateway(connector, tmp_path_factory.mktemp(f"gateway-{name.replace('+', '-')}"))
            gateway.scanner = scanner
            gateway.key_ring = KEYS
            if name == "duckdb+replica":
                gateway.replicas = replica_engine[1]
            built[name] = gateway
        yield built
    finally:
        for gateway in built.values():
            gateway.sdc.close()
            gateway.audit.close()


def _release(gateway: Gateway, user: str, sql: str) -> QueryOutcome:
    """The answer the gateway releases to ``user``: policy, rewrite, SQL, then the masking after SQL
    (Arrow-side masks, free-text scan, small-cell suppression) and the audit record."""
    request = QueryRequest(sql=sql, purpose=PURPOSE[user])
    return gateway.run_query(USERS[user], request, RequestContext(client_address=CLIENT))


@pytest.fixture(autouse=True)
def _report_for_ci(request: pytest.FixtureRequest) -> None:
    """What .ci/check_db_tests.py reads from the JUnit report (as properties, like the ``db`` ones of
    tests/conftest.py): how many cases this suite defines (so that a partly deselected run fails CI) and
    any xfail marker (JUnit shows a non-strict XPASS as a plain pass)."""
    request.node.user_properties.append(("conformance_cases", _case_count()))
    marker = request.node.get_closest_marker("xfail")
    if marker is not None:
        request.node.user_properties.append(("xfail", marker.kwargs.get("reason", "xfail")))


def _case_count() -> int:
    """The cases of this module as pytest generates them: one per parameter set of each test function."""
    functions = [f for name, f in globals().items() if name.startswith("test_") and callable(f)]
    return sum(math.prod(len(m.args[1]) for m in getattr(f, "pytestmark", []) if m.name == "parametrize")
               for f in functions)


# --------------------------------------------------------------------------------------------------
# Normalisation and comparison
# --------------------------------------------------------------------------------------------------


def _normalise(value: Any) -> Any:
    """One Python value per logical value, whatever type the engine chose for it."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    return value


def _sort_key(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple((v is None, type(v).__name__, round(v, 2) if isinstance(v, float) else v) for v in row)


def _rows(table: Any) -> list[tuple[Any, ...]]:
    columns = [table.column(i).to_pylist() for i in range(table.num_columns)]
    rows = [tuple(_normalise(col[r]) for col in columns) for r in range(table.num_rows)]
    return sorted(rows, key=_sort_key)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            return False
        return math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-4)
    return type(a) is type(b) and a == b


def _diff(reference: list[tuple[Any, ...]], other: list[tuple[Any, ...]]) -> str | None:
    if len(reference) != len(other):
        return f"{len(reference)} rows vs {len(other)} rows"
    for index, (ra, rb) in enumerate(zip(reference, other, strict=True)):
        if len(ra) != len(rb) or not all(_same(a, b) for a, b in zip(ra, rb, strict=True)):
            return f"row {index}: {ra!r} vs {rb!r}"
    return None


# --------------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------------


def test_scenario_loaded_identically(engines: dict[str, Connector]) -> None:
    for table in ("stadtteile", "einwohner", "sozialleistungen", "anliegen"):
        counts = {name: engine.execute(f"SELECT count(*) AS n FROM {table}", max_rows=1,
                                       timeout_s=TIMEOUT_S).table.column(0)[0].as_py()
                  for name, engine in engines.items()}
        assert len(set(counts.values())) == 1, (table, counts)


@pytest.mark.parametrize(("user", "sql"), QUERIES, ids=QUERY_IDS)
def test_same_result_on_every_engine(user: str, sql: str, engines: dict[str, Connector], catalog: Catalog,
                                     policy: EmbeddedPolicyEngine,
                                     replica_engine: tuple[Connector, PseudonymReplicas]) -> None:
    results: dict[str, list[tuple[Any, ...]]] = {}
    names: dict[str, list[str]] = {}
    runs: list[tuple[str, str, Connector, PseudonymReplicas | None]] = [
        (dialect, dialect, engine, None) for dialect, engine in engines.items()]
    runs.append(("duckdb+replica", "duckdb", replica_engine[0], replica_engine[1]))
    for name, dialect, engine, replicas in runs:
        plan = _plan(user, sql, dialect, catalog, policy, replicas)
        result = engine.execute(plan.sql, max_rows=plan.max_rows, timeout_s=TIMEOUT_S)
        assert not result.truncated
        results[name] = _rows(result.table)
        names[name] = [n.lower() for n in result.table.column_names]
    reference = results["duckdb"]
    if "'Mitte'" not in sql:  # the one query that sven's row filter empties on purpose
        assert reference, "the query should return rows (pick a query that does)"
    for dialect in ("postgres", "mysql", "duckdb+replica"):
        assert names[dialect] == names["duckdb"], (dialect, names)
        problem = _diff(reference, results[dialect])
        assert problem is None, f"{dialect} differs from duckdb: {problem}"


def _released_types(outcome: QueryOutcome) -> list[tuple[str, str]]:
    """Name and Arrow type of each released column except analyst-computed expressions, which keep their
    engine's result type (``length()``, ``avg()``, ``sum()``; see docs/connectors.md): catalog columns
    (plain or masked) and the columns the gateway adds (``_suppressed``)."""
    computed = {column.name for column in outcome.columns if column.masking == "computed"}
    return [(f.name, str(f.type)) for f in outcome.table.schema if f.name not in computed]


@pytest.mark.parametrize(("user", "sql"), QUERIES, ids=QUERY_IDS)
def test_released_answer_same_on_every_engine(user: str, sql: str, gateways: dict[str, Gateway]) -> None:
    """The answer as released (``Gateway.run_query``), not only the SQL's result: the masking after SQL
    (Arrow-side masks, free-text scan, small-cell suppression) runs too, so masked free text, pseudonyms and
    suppressed cells must agree as well. Each case starts with an empty differencing-guard memory, so
    that its answer does not depend on which other cases ran before (the guard has its own test below)."""
    released: dict[str, QueryOutcome] = {}
    for name, gateway in gateways.items():
        gateway.sdc.guard.clear()
        released[name] = _release(gateway, user, sql)
    reference = released["duckdb"]
    reference_rows = _rows(reference.table)
    if "'Mitte'" not in sql:  # the one query that sven's row filter empties on purpose
        assert reference_rows, "the query should return rows (pick a query that does)"
    for name, outcome in released.items():
        assert not outcome.truncated, name
        assert outcome.columns == reference.columns, name
        assert outcome.table.column_names == reference.table.column_names, name
        assert _released_types(outcome) == _released_types(reference), name
        problem = _diff(reference_rows, _rows(outcome.table))
        assert problem is None, f"{name} releases another answer than duckdb: {problem}"


def _guard_outcomes(gateway: Gateway, queries: list[str]) -> list[tuple[Any, ...]]:
    """paula's queries in order on one gateway: each answer's rows, or the refusal's code and message."""
    gateway.sdc.guard.clear()
    outcomes: list[tuple[Any, ...]] = []
    for sql in queries:
        try:
            outcomes.append(("released", _rows(_release(gateway, "paula", sql).table)))
        except AccessDenied as exc:
            outcomes.append(("refused", exc.code, exc.rule, str(exc)))
    return outcomes


def test_differencing_guard_decides_alike_on_every_engine(gateways: dict[str, Gateway]) -> None:
    """The guard's comparison query runs on the engine: paula's aggregate-only queries, asked one after the
    other, are released or refused alike on every engine (and some are refused: the guard did compare)."""
    queries = [sql for user, sql in QUERIES if user == "paula"]
    seen = {name: _guard_outcomes(gateway, queries) for name, gateway in gateways.items()}
    assert any(outcome[0] == "refused" for outcome in seen["duckdb"]), "no query was refused: pick queries that are"
    for name, outcomes in seen.items():
        for index, (reference, other) in enumerate(zip(seen["duckdb"], outcomes, strict=True)):
            assert other[0] == reference[0], f"{name}, query {index}: {other[0]} where duckdb {reference[0]}"
            if reference[0] == "refused":
                assert other == reference, name
            else:
                assert _diff(reference[1], other[1]) is None, f"{name}, query {index}"


def test_released_answers_include_the_masking_after_sql(gateways: dict[str, Gateway], engines: dict[str, Connector],
                                                        catalog: Catalog, policy: EmbeddedPolicyEngine) -> None:
    """The cross-engine comparison above covers the steps after SQL: sven's free text is released scanned
    (not as the database returns it), and paula's small cells are suppressed and flagged; and
    ``duckdb+replica`` really reads pseudonyms from the replica."""
    anna = QueryRequest(sql="SELECT id FROM einwohner", purpose=PURPOSE["anna"])
    for name, gateway in gateways.items():
        _, plan, _ = gateway.plan(USERS["anna"], anna, RequestContext(client_address=CLIENT))
        assert (REPLICA_ALIAS in plan.sql) == (name == "duckdb+replica"), name
    gateway = gateways["duckdb"]
    gateway.sdc.guard.clear()
    sql = "SELECT bemerkung, einwohner_id FROM sozialleistungen"
    raw = engines["duckdb"].execute(_plan("sven", sql, "duckdb", catalog, policy).sql, max_rows=MAX_ROWS,
                                    timeout_s=TIMEOUT_S).table
    released = _release(gateway, "sven", sql).table
    assert sorted(released.column("einwohner_id").to_pylist()) == sorted(raw.column("einwohner_id").to_pylist())
    unscanned = set(raw.column("bemerkung").to_pylist()) - set(released.column("bemerkung").to_pylist())
    assert unscanned, "the free-text scanner changed no remark"
    counts = _release(gateway, "paula", "SELECT stadtteil, staatsangehoerigkeit, count(*) AS n FROM einwohner "
                                        "GROUP BY stadtteil, staatsangehoerigkeit").table
    suppressed = [row for row in counts.to_pylist() if row["_suppressed"]]
    assert suppressed, "no cell was suppressed: pick a query with small cells"
    assert all(row["n"] is None for row in suppressed)


def test_pseudonyms_byte_identical(engines: dict[str, Connector], catalog: Catalog,
                                   policy: EmbeddedPolicyEngine,
                                   replica_engine: tuple[Connector, PseudonymReplicas]) -> None:
    """The join key across engines: the same person gets the same pseudonym everywhere, also when
    DuckDB reads it from the pseudonym replica instead of hashing."""
    sql = "SELECT id, vorname, nachname, stadtteil FROM einwohner"
    seen: dict[str, list[tuple[Any, ...]]] = {}
    runs: list[tuple[str, str, Connector, PseudonymReplicas | None]] = [
        (dialect, dialect, engine, None) for dialect, engine in engines.items()]
    runs.append(("duckdb+replica", "duckdb", replica_engine[0], replica_engine[1]))
    for name, dialect, engine, replicas in runs:
        plan = _plan("anna", sql, dialect, catalog, policy, replicas)
        assert (REPLICA_ALIAS in plan.sql) == (replicas is not None)
        table = engine.execute(plan.sql, max_rows=plan.max_rows, timeout_s=TIMEOUT_S).table
        seen[name] = sorted(zip(*(table.column(i).to_pylist() for i in range(4)), strict=True))
    assert len(seen["duckdb"]) == ROWS
    for dialect in ("postgres", "mysql", "duckdb+replica"):
        assert seen[dialect] == seen["duckdb"], dialect
    for row in seen["duckdb"][:50]:
        for value in row[:3]:
            assert isinstance(value, str) and value.startswith("p_") and len(value) == 18
            value.encode("ascii")


# Masks applied directly to every column type in the demo tables, including ops no grant uses yet.
_MASK_RULES: list[tuple[MaskOp, dict[str, object]]] = [
    ("pseudonymise", {"domain": "matrix"}),
    ("redact", {}),
    ("generalise", {"to": "year"}),
    ("generalise", {"to": "month"}),
    ("generalise", {"to": "prefix", "length": 3}),
    ("generalise", {"to": "round", "step": 10}),
    ("partial", {"first": 2}),
]
_MASK_COLUMNS: list[tuple[str, str]] = [
    ("einwohner", "id"), ("einwohner", "nachname"), ("einwohner", "geburtsdatum"), ("einwohner", "plz"),
    ("sozialleistungen", "betrag_monat"), ("sozialleistungen", "ende"),
    ("stadtteile", "flaeche_km2"), ("stadtteile", "einwohner_gesamt"),
    ("anliegen", "eingegangen_am"),
]
_TEMPORAL = {"DATE", "TIMESTAMP"}

def _applies(op: str, params: dict[str, object], column_type: str) -> bool:
    """Date generalisation only on DATE/TIMESTAMP columns, rounding only on numeric ones."""
    base = column_type.split("(")[0].upper()
    to = params.get("to")
    if op == "generalise" and to in ("year", "month"):
        return base in _TEMPORAL
    if op == "generalise" and to == "round":
        return base not in _TEMPORAL | {"VARCHAR"}
    return True


def _mask_cases() -> list[Any]:
    types = load_catalog(CATALOG_PATH).datasets
    cases = []
    for op, params in _MASK_RULES:
        label = f"{op}:{params['to']}" if op == "generalise" else op
        for table, column in _MASK_COLUMNS:
            if _applies(op, params, types[table].columns[column].type):
                cases.append(pytest.param(op, params, table, column, id=f"{label}-{table}.{column}"))
    return cases


def _refused_everywhere(rule: ColumnRule, column_type: str) -> str | None:
    """None if every dialect builds the mask; the message if every dialect refuses it."""
    messages = []
    for dialect in ("duckdb", "postgres", "mysql"):
        try:
            mask_expression(exp.column("c"), rule, column_type=column_type, dialect=dialect, keys=KEYS,
                            purpose="matrix")
        except InvalidQuery as exc:
            messages.append(str(exc))
    assert len(messages) in (0, 3), f"the mask is refused for some dialects only: {messages}"
    return messages[0] if messages else None


@pytest.mark.parametrize(("op", "params", "table", "column"), _mask_cases())
def test_mask_expression_same_on_every_engine(op: MaskOp, params: dict[str, object], table: str, column: str,
                                              engines: dict[str, Connector], catalog: Catalog) -> None:
    column_type = catalog.datasets[table].columns[column].type
    rule = ColumnRule(op=op, params=params, rule=f"matrix.{op}")
    results: dict[str, list[tuple[Any, ...]]] = {}
    refused = _refused_everywhere(rule, column_type)
    if refused:  # refused alike by every dialect (e.g. pseudonymising a DOUBLE): consistent, nothing to run
        assert "cannot" in refused or "unknown" in refused
        return
    for dialect, engine in engines.items():
        raw = exp.column(column, table="t", quoted=True)
        masked = mask_expression(raw, rule, column_type=column_type, dialect=dialect, keys=KEYS, purpose="matrix")
        query = exp.select(exp.alias_(raw.copy(), "raw", quoted=True), exp.alias_(masked, "m", quoted=True)).from_(
            exp.Table(this=exp.to_identifier(table, quoted=True),
                      alias=exp.TableAlias(this=exp.to_identifier("t", quoted=True))))
        result = engine.execute(query.sql(dialect=dialect), max_rows=MAX_ROWS, timeout_s=TIMEOUT_S)
        results[dialect] = _rows(result.table)
    for dialect in ("postgres", "mysql"):
        problem = _diff(results["duckdb"], results[dialect])
        assert problem is None, f"{op} {params} on {table}.{column}: {dialect} differs from duckdb: {problem}"


def test_double_pseudonym_same_or_refused(engines: dict[str, Connector]) -> None:
    rule = ColumnRule(op="pseudonymise", params={"domain": "matrix"}, rule="matrix.pseudonymise")
    if _refused_everywhere(rule, "DOUBLE"):
        return
    seen = {}
    for dialect, engine in engines.items():
        value = exp.Cast(this=exp.Literal.number("3.0"), to=exp.DataType.build("DOUBLE"))
        masked = mask_expression(value, rule, column_type="DOUBLE", dialect=dialect, keys=KEYS, purpose="matrix")
        sql = exp.select(exp.alias_(masked, "m")).sql(dialect=dialect)
        seen[dialect] = engine.execute(sql, max_rows=1, timeout_s=TIMEOUT_S).table.column(0)[0].as_py()
    assert len(set(seen.values())) == 1, seen


@pytest.mark.parametrize(("user", "sql", "known"), [
    pytest.param("anna", "SELECT * FROM einwohner", True, id="einwohner-statistik"),
    pytest.param("sven", "SELECT * FROM sozialleistungen", False, id="sozialleistungen-sozialplanung"),
])
def test_released_columns_have_the_same_arrow_type(user: str, sql: str, known: bool,
                                                   engines: dict[str, Connector], catalog: Catalog,
                                                   policy: EmbeddedPolicyEngine) -> None:
    """Masked and plain columns of the catalog tables: not only equal values, the same Arrow types."""
    types: dict[str, list[tuple[str, str]]] = {}
    for dialect, engine in engines.items():
        plan = _plan(user, sql, dialect, catalog, policy)
        table = engine.execute(plan.sql, max_rows=plan.max_rows, timeout_s=TIMEOUT_S).table
        types[dialect] = [(f.name, str(f.type)) for f in table.schema]
    assert types["postgres"] == types["duckdb"]
    assert types["mysql"] == types["duckdb"]


# --------------------------------------------------------------------------------------------------
# Trino: no server here; the SQL must at least be Trino SQL with functions Trino has
# --------------------------------------------------------------------------------------------------

#: functions Trino has (https://trino.io/docs/current/functions/list.html), lower case; a subset
TRINO_FUNCTIONS = {
    "abs", "avg", "cast", "ceil", "coalesce", "concat", "count", "date_trunc", "extract", "floor", "length",
    "lower", "max", "min", "rank", "round", "row_number", "sha256", "substr", "substring", "sum", "to_hex",
    "to_utf8", "upper", "year", "if", "nullif", "greatest", "least", "dense_rank", "lag", "lead", "date_format",
}


@pytest.mark.parametrize(("user", "sql"), QUERIES, ids=QUERY_IDS)
def test_rewrite_is_valid_trino_sql(user: str, sql: str, catalog: Catalog, policy: EmbeddedPolicyEngine) -> None:
    plan = _plan(user, sql, "trino", catalog, policy)
    parsed = sqlglot.parse_one(plan.sql, read="trino")
    assert parsed is not None
    for func in parsed.find_all(exp.Anonymous):
        assert func.name.lower() in TRINO_FUNCTIONS, f"{func.name} is not a Trino function"
    assert parsed.sql(dialect="trino") == plan.sql


def test_trino_pseudonym_uses_varbinary_sha256(catalog: Catalog, policy: EmbeddedPolicyEngine) -> None:
    """Trino's sha256() takes and returns varbinary, and to_hex() is upper case."""
    plan = _plan("anna", "SELECT id FROM einwohner", "trino", catalog, policy)
    lowered = plan.sql.lower()
    assert "sha256(to_utf8(" in lowered
    assert "lower(to_hex(sha256(" in lowered
    parsed = sqlglot.parse_one(plan.sql, read="trino")
    for node in parsed.find_all(exp.Anonymous):
        if node.name.lower() == "sha256":
            argument = node.expressions[0]
            assert isinstance(argument, exp.Anonymous) and argument.name.lower() == "to_utf8"
