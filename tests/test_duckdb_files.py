"""DuckDB serves Parquet and CSV files declared in the catalog: by name only, read-only, types kept.

The files are written in tmp_path (DuckDB's own writer, and a hand-written Latin-1 CSV as exported by
German office software). Queries go through the connector and through the HTTP API with tokens from the
real demo OIDC provider, on a gateway whose catalog and grants (a copy of policies/) add two file-backed
datasets for anna.
"""

from __future__ import annotations

import datetime as dt
import re
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import yaml
from fastapi.testclient import TestClient

from connectors.base import QueryRejected
from connectors.duckdb import DeclaredFile, DeclaredFileError, DuckDBConnector
from gateway.api.app import create_app
from gateway.catalog import Catalog, DuckDBFile, load_catalog
from gateway.config import DEFAULT_POLICY_DIR, Settings
from gateway.demo.oidc_provider import ProviderHandle
from gateway.identity.settings import IdentitySettings
from gateway.pipeline import QueryRequest
from gateway.policy.engine import load_bundle
from gateway.runtime import Runtime, build_connectors, build_runtime
from gateway.sql.pseudonym_replica import REPLICA_ALIAS, specs_from_policy_data
from tests.test_connectors import EXPECTED_SCHEMA, ROWS
from tests.test_pseudonym_replica import ANNA, INTERNAL

DATEN_TABLE = ("CREATE TABLE daten (id BIGINT, tag DATE, zeit TIMESTAMP, betrag DECIMAL(10,2), name VARCHAR, "
               "ort VARCHAR)")
#: the CSV options that give the CSV copy of ``daten`` the database's types
DATEN_CSV = {"delim": ";", "header": True, "types": {"betrag": "DECIMAL(10,2)"}}

KITAS = [
    (1, "Kita Sonnenschein", "Eva Müller", "Große Straße 5", dt.date(2019, 8, 1), Decimal("245.50"),
     "Öffnungszeiten: Mo–Fr 7–17 Uhr"),
    (2, "Kita Löwenzahn", "Jörg Weiß", "Mühlgasse 3", dt.date(1998, 3, 15), Decimal("0.00"), None),
    (3, "Kita Spatzennest", None, None, None, None, None),
]
KITAS_TABLE = ("CREATE TABLE kitas (kita_id BIGINT, name VARCHAR, leitung VARCHAR, strasse VARCHAR, "
               "eroeffnet_am DATE, monatsbeitrag DECIMAL(12,2), oeffnungszeiten VARCHAR)")
#: a timetable export as German office software writes it: Latin-1, semicolons, dd.mm.yyyy, decimal comma
HALTESTELLEN_CSV = (
    "halt_id;name;in_betrieb_seit;fahrgaeste_tag;bemerkung\n"
    "1;Große Straße;01.08.2019;1234,50;Öffnungszeiten des Kiosks: 6-20 Uhr\n"
    "2;Schloßplatz;15.03.1998;0,00;\n"
    "3;Dürerplatz;;;\n"
)
HALTESTELLEN_OPTIONS = {"delimiter": ";", "header": True, "encoding": "latin-1", "date_format": "%d.%m.%Y",
                        "decimal_separator": ",", "types": {"fahrgaeste_tag": "DECIMAL(12,2)"}}
HALTESTELLEN = [
    {"halt_id": 1, "name": "Große Straße", "in_betrieb_seit": dt.date(2019, 8, 1),
     "fahrgaeste_tag": Decimal("1234.50"), "bemerkung": "Öffnungszeiten des Kiosks: 6-20 Uhr"},
    {"halt_id": 2, "name": "Schloßplatz", "in_betrieb_seit": dt.date(1998, 3, 15),
     "fahrgaeste_tag": Decimal("0.00"), "bemerkung": None},
    {"halt_id": 3, "name": "Dürerplatz", "in_betrieb_seit": None, "fahrgaeste_tag": None, "bemerkung": None},
]
HALTESTELLEN_SCHEMA = pa.schema([
    ("halt_id", pa.int64()), ("name", pa.string()), ("in_betrieb_seit", pa.date32()),
    ("fahrgaeste_tag", pa.decimal128(12, 2)), ("bemerkung", pa.string()),
])
ARROW = "application/vnd.apache.arrow.stream"


def _write_daten(base: Path) -> dict[str, Path]:
    """The type-mapping rows of tests/test_connectors.py as a DuckDB table, a Parquet and a CSV file."""
    sources = {"database": base / "daten.duckdb", "parquet": base / "daten.parquet", "csv": base / "daten.csv"}
    with duckdb.connect(str(sources["database"])) as con:
        con.execute(DATEN_TABLE)
        con.executemany("INSERT INTO daten VALUES (?, ?, ?, ?, ?, ?)", ROWS)
        con.execute(f"COPY daten TO '{sources['parquet']}' (FORMAT parquet)")
        con.execute(f"COPY daten TO '{sources['csv']}' (FORMAT csv, HEADER, DELIMITER ';')")
    return sources


def _write_kitas(path: Path) -> None:
    with duckdb.connect() as con:
        con.execute(KITAS_TABLE)
        con.executemany("INSERT INTO kitas VALUES (?, ?, ?, ?, ?, ?, ?)", KITAS)
        con.execute(f"COPY kitas TO '{path}' (FORMAT parquet)")


@pytest.fixture(scope="module")
def daten(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _write_daten(tmp_path_factory.mktemp("daten"))


def _daten_connector(source: str, daten: dict[str, Path], work_dir: Path) -> DuckDBConnector:
    if source == "database":
        return DuckDBConnector(daten["database"])
    options = DATEN_CSV if source == "csv" else {}
    file = DeclaredFile("daten", daten[source], "csv" if source == "csv" else "parquet", options)
    return DuckDBConnector(None, files=[file], work_dir=work_dir)


@pytest.mark.parametrize("source", ["database", "parquet", "csv"])
def test_types_map_faithfully(source: str, daten: dict[str, Path], tmp_path: Path) -> None:
    """The same rows as TestPostgres/TestMariaDB::test_types_map_faithfully: a DuckDB table, and the
    same table declared as a Parquet and as a CSV file, give the same Arrow types and values."""
    connector = _daten_connector(source, daten, tmp_path)
    try:
        result = connector.execute("SELECT * FROM daten ORDER BY id", max_rows=10, timeout_s=10)
        assert result.table.schema == EXPECTED_SCHEMA
        assert [tuple(r.values()) for r in result.table.to_pylist()] == ROWS
        assert not result.truncated
        stream = connector.stream("SELECT * FROM daten ORDER BY id", max_rows=10, timeout_s=10)
        assert pa.Table.from_batches(list(stream.batches), schema=stream.schema).equals(result.table)
    finally:
        connector.close()


def test_a_german_csv_export_reads_with_its_declared_options(tmp_path: Path) -> None:
    path = tmp_path / "haltestellen.csv"
    path.write_bytes(HALTESTELLEN_CSV.encode("latin-1"))
    declared = DuckDBFile.model_validate({"path": str(path), **HALTESTELLEN_OPTIONS})
    file = DeclaredFile("haltestellen", path, declared.file_format, declared.reader_options())
    connector = DuckDBConnector(None, files=[file], work_dir=tmp_path)
    try:
        table = connector.execute("SELECT * FROM haltestellen ORDER BY halt_id", max_rows=10, timeout_s=10).table
    finally:
        connector.close()
    assert table.schema == HALTESTELLEN_SCHEMA
    assert table.to_pylist() == HALTESTELLEN


@pytest.fixture()
def files_only(daten: dict[str, Path], tmp_path: Path) -> Iterator[tuple[DuckDBConnector, Path]]:
    """A connector serving a private copy of the Parquet file, and that copy."""
    source = tmp_path / "daten.parquet"
    shutil.copyfile(daten["parquet"], source)
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    connector = DuckDBConnector(None, files=[DeclaredFile("daten", source, "parquet")], work_dir=work_dir)
    yield connector, source
    connector.close()


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_parquet('{declared}')",
    "SELECT * FROM '{declared}'",
    "SELECT * FROM read_csv('/etc/passwd')",
    "COPY daten TO '{declared}' (FORMAT parquet, USE_TMP_FILE false)",
    "DROP TABLE daten",
    "INSERT INTO daten (id) VALUES (99)",
    "CREATE TABLE x AS SELECT 1",
    "ATTACH '{declared}.duckdb' AS other",
    "SET enable_external_access = true",
])
def test_the_engine_refuses_paths_and_writes(files_only: tuple[DuckDBConnector, Path], sql: str) -> None:
    """Defence in depth under the rewriter: not even the declared file itself can be read or written by
    path, and the loaded table cannot be changed."""
    connector, source = files_only
    before = source.read_bytes()
    with pytest.raises(QueryRejected):
        connector.execute(sql.format(declared=source), max_rows=10, timeout_s=5)
    assert source.read_bytes() == before
    assert connector.execute("SELECT count(*) FROM daten", max_rows=1, timeout_s=5).table.column(0)[0].as_py() == 3


def test_the_loaded_copy_leaves_nothing_on_disk(files_only: tuple[DuckDBConnector, Path]) -> None:
    connector, source = files_only
    assert list((source.parent / "work").iterdir()) == []
    assert connector.execute("SELECT count(*) FROM daten", max_rows=1, timeout_s=5).table.column(0)[0].as_py() == 3


def test_a_file_changed_on_disk_is_served_as_loaded_until_a_restart(files_only: tuple[DuckDBConnector, Path],
                                                                    tmp_path: Path) -> None:
    """Documented in docs/connectors.md: the file is read once, at start."""
    connector, source = files_only
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT 42::BIGINT AS id) TO '{source}' (FORMAT parquet)")
    assert connector.execute("SELECT count(*) FROM daten", max_rows=1, timeout_s=5).table.column(0)[0].as_py() == 3
    restarted = DuckDBConnector(None, files=[DeclaredFile("daten", source, "parquet")], work_dir=tmp_path)
    try:
        assert restarted.execute("SELECT id FROM daten", max_rows=5, timeout_s=5).table.to_pylist() == [{"id": 42}]
    finally:
        restarted.close()


def test_a_database_and_files_in_one_connector(daten: dict[str, Path], tmp_path: Path) -> None:
    """Database tables and declared files resolve by name, unqualified and schema-qualified, in every
    cursor (execute and stream); a declared table the database also has is refused."""
    database = tmp_path / "stadt.duckdb"  # not named like its schema: DuckDB finds "amt"."x" ambiguous
    with duckdb.connect(str(database)) as con:
        con.execute("CREATE SCHEMA amt")
        con.execute("CREATE TABLE amt.personal AS SELECT 7::BIGINT AS n")
        con.execute("CREATE TABLE main.daten AS SELECT 1 AS x")
    kitas = tmp_path / "kitas.parquet"
    _write_kitas(kitas)
    connector = DuckDBConnector(database, files=[DeclaredFile("kitas", kitas, "parquet")], schema="amt",
                                work_dir=tmp_path)
    try:
        for sql in ('SELECT count(*) FROM "amt"."kitas"', "SELECT count(*) FROM kitas",
                    'SELECT count(*) + (SELECT n FROM "amt"."personal") - 7 FROM kitas'):
            assert connector.execute(sql, max_rows=1, timeout_s=5).table.column(0)[0].as_py() == len(KITAS)
            stream = connector.stream(sql, max_rows=1, timeout_s=5)
            assert [b.column(0)[0].as_py() for b in stream.batches] == [len(KITAS)]
    finally:
        connector.close()
    with pytest.raises(DeclaredFileError, match="already has: daten"):
        DuckDBConnector(database, files=[DeclaredFile("daten", daten["parquet"], "parquet")], work_dir=tmp_path)


# --------------------------------------------------------------------------------------------------
# the catalog and the gateway
# --------------------------------------------------------------------------------------------------


def _dataset(like: dict[str, Any], table: str, title: str, columns: dict[str, tuple[str, str]]) -> dict[str, Any]:
    """A catalog entry on the ``dateien`` connector, with every other field taken from ``like``."""
    entry = {key: value for key, value in like.items() if key not in ("residency", "retention")}
    entry.update(title=title, connector="dateien", table=table, owner="Amt für Statistik und Stadtforschung",
                 classification="intern", legal_regime="administrative", purposes=["statistik"],
                 person_key=None, columns={c: {"type": t, "class": k} for c, (t, k) in columns.items()})
    return entry


def _grant(like: dict[str, Any], dataset: str, columns: dict[str, dict[str, Any]]) -> dict[str, Any]:
    grant = {key: value for key, value in like.items() if key not in ("row_filters", "aggregate_only")}
    grant.update(id=f"{dataset}.statistik", dataset=dataset, columns=columns)
    return grant


def _add_file_datasets(policies: Path, haltestellen: Path) -> None:
    """The copied catalog gains a files-only connector with two datasets; anna's office gets grants."""
    catalog_file = policies / "catalog.yaml"
    catalog = yaml.safe_load(catalog_file.read_text(encoding="utf-8"))
    catalog["connectors"]["dateien"] = {"kind": "duckdb", "files": {
        "kitas": {"path": "dateien/kitas.parquet"},                      # relative to the data dir
        "haltestellen": {"path": str(haltestellen), **HALTESTELLEN_OPTIONS},  # absolute
    }}
    like = catalog["datasets"]["einwohner"]
    catalog["datasets"]["kitas"] = _dataset(like, "kitas", "Kindertagesstätten", {
        "kita_id": ("BIGINT", "none"), "name": ("VARCHAR", "none"), "leitung": ("VARCHAR", "direct_identifier"),
        "strasse": ("VARCHAR", "direct_identifier"), "eroeffnet_am": ("DATE", "none"),
        "monatsbeitrag": ("DECIMAL(12,2)", "none"), "oeffnungszeiten": ("VARCHAR", "none")})
    catalog["datasets"]["haltestellen"] = _dataset(like, "haltestellen", "Haltestellen", {
        "halt_id": ("BIGINT", "none"), "name": ("VARCHAR", "none"), "in_betrieb_seit": ("DATE", "none"),
        "fahrgaeste_tag": ("DECIMAL(12,2)", "none"), "bemerkung": ("VARCHAR", "none")})
    catalog_file.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")

    grants_file = policies / "data" / "grants.yaml"
    grants = yaml.safe_load(grants_file.read_text(encoding="utf-8"))
    like = next(g for g in grants["grants"] if g["id"] == "einwohner.statistik")
    plain = {"op": "plain", "rule": "kitas.statistik"}
    grants["grants"].append(_grant(like, "kitas", {
        "kita_id": plain, "name": plain, "eroeffnet_am": plain, "monatsbeitrag": plain, "oeffnungszeiten": plain,
        "leitung": {"op": "pseudonymise", "params": {"domain": "person"}, "rule": "kitas.pseudonymise_head"},
        "strasse": {"op": "redact", "rule": "kitas.redact_address"}}))
    grants["grants"].append(_grant(like, "haltestellen", {
        name: {"op": "plain", "rule": "haltestellen.statistik"} for name in HALTESTELLEN[0]}))
    grants_file.write_text(yaml.safe_dump(grants, allow_unicode=True, sort_keys=False), encoding="utf-8")


@dataclass
class FilesGateway:
    runtime: Runtime
    client: TestClient
    token: Callable[[str], str]
    data_dir: Path
    policies: Path

    def query(self, sql: str, *, accept: str = "application/json") -> Any:
        return self.client.post("/v1/query", json={"sql": sql, "purpose": "statistik"},
                                headers={"Authorization": f"Bearer {self.token('anna')}", "Accept": accept})


@pytest.fixture(scope="module")
def files_gateway(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path, oidc_provider: ProviderHandle,
                  access_token: Callable[..., str]) -> Iterator[FilesGateway]:
    base = tmp_path_factory.mktemp("duckdb-files")
    data_dir, policies, outside = base / "data", base / "policies", base / "exports"
    (data_dir / "dateien").mkdir(parents=True)
    outside.mkdir()
    shutil.copyfile(demo_dir / "demo.duckdb", data_dir / "demo.duckdb")
    _write_kitas(data_dir / "dateien" / "kitas.parquet")
    (outside / "haltestellen.csv").write_bytes(HALTESTELLEN_CSV.encode("latin-1"))
    shutil.copytree(DEFAULT_POLICY_DIR, policies)
    _add_file_datasets(policies, outside / "haltestellen.csv")
    settings = Settings(data_dir=data_dir, policy_dir=policies, catalog_path=policies / "catalog.yaml",
                        policy_reload_seconds=0,
                        identity=IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience))
    runtime = build_runtime(settings, create_keys=True, scanner=lambda values: list(values))
    with TestClient(create_app(runtime), raise_server_exceptions=False, client=("127.0.0.1", 50000)) as client:
        yield FilesGateway(runtime, client, access_token, data_dir, policies)
    runtime.close()


def test_files_through_the_api_with_exact_values_and_types(files_gateway: FilesGateway) -> None:
    response = files_gateway.query("SELECT * FROM haltestellen ORDER BY halt_id", accept=ARROW)
    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(response.content).read_all()
    assert table.schema.remove_metadata() == HALTESTELLEN_SCHEMA
    assert table.to_pylist() == HALTESTELLEN

    response = files_gateway.query("SELECT kita_id, name, eroeffnet_am, monatsbeitrag, oeffnungszeiten "
                                   "FROM kitas ORDER BY kita_id", accept=ARROW)
    assert response.status_code == 200, response.text
    table = pa.ipc.open_stream(response.content).read_all()
    assert [table.schema.field(n).type for n in table.column_names] == [
        pa.int64(), pa.string(), pa.date32(), pa.decimal128(12, 2), pa.string()]
    assert [tuple(r.values()) for r in table.to_pylist()] == [(k[0], k[1], k[4], k[5], k[6]) for k in KITAS]


def test_the_grants_masks_apply_to_file_backed_columns(files_gateway: FilesGateway) -> None:
    response = files_gateway.query("SELECT kita_id, leitung, strasse FROM kitas ORDER BY kita_id")
    assert response.status_code == 200, response.text
    rows = response.json()["rows"]
    heads = [row[1] for row in rows]
    assert all(re.fullmatch(r"p_[0-9a-f]{16}", h) for h in heads[:2]) and heads[0] != heads[1]
    assert heads[2] is None  # NULL stays NULL
    assert [row[2] for row in rows[:2]] == ["***", "***"]
    for raw in ("Eva Müller", "Jörg Weiß", "Große Straße 5", "Mühlgasse 3"):
        assert raw not in response.text


@pytest.mark.parametrize("template", [
    "SELECT * FROM read_parquet('{kitas}')",
    "SELECT * FROM '{kitas}'",
    "SELECT * FROM read_csv('{haltestellen}', delim = ';')",
    "SELECT * FROM read_csv('{policies}/catalog.yaml')",
    "SELECT * FROM \"{kitas}\"",
])
def test_analysts_cannot_read_files_by_path(files_gateway: FilesGateway, template: str) -> None:
    sql = template.format(kitas=files_gateway.data_dir / "dateien" / "kitas.parquet",
                          haltestellen=files_gateway.data_dir.parent / "exports" / "haltestellen.csv",
                          policies=files_gateway.policies)
    response = files_gateway.query(sql)
    assert response.status_code in (403, 422), response.text
    assert response.json()["code"] in ("table_function_not_allowed", "unknown_dataset", "function_not_allowed")
    assert "Müller" not in response.text and "Schloßplatz" not in response.text


def test_file_backed_datasets_have_no_replica_and_hash_in_sql(files_gateway: FilesGateway) -> None:
    """The pseudonym replica copies database tables only: the file-backed dataset's pseudonyms are
    computed in SQL, while einwohner on the demo database still reads its replica."""
    gateway = files_gateway.runtime.gateway
    data = load_bundle(files_gateway.policies, gateway.catalog).data
    specs = specs_from_policy_data(data, gateway.catalog)
    assert {s.dataset for s in specs} >= {"einwohner"} and "kitas" not in {s.dataset for s in specs}
    _, plan, _ = gateway.plan(ANNA, QueryRequest(sql="SELECT leitung FROM kitas", purpose="statistik"), INTERNAL)
    assert REPLICA_ALIAS not in plan.sql and "sha256" in plan.sql.lower()
    _, plan, _ = gateway.plan(ANNA, QueryRequest(sql="SELECT vorname FROM einwohner", purpose="statistik"), INTERNAL)
    assert REPLICA_ALIAS in plan.sql
    assert not (files_gateway.data_dir / "pseudonyms" / "dateien.duckdb").exists()


def _catalog_with(files: dict[str, Any], datasets: dict[str, str] | None = None) -> Catalog:
    raw = load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml").model_dump(by_alias=True)
    raw["connectors"] = {"dateien": {"kind": "duckdb", "files": files}}
    like = raw["datasets"]["stadtteile"]
    raw["datasets"] = {name: {**like, "connector": "dateien", "table": table}
                       for name, table in (datasets or {}).items()}
    return Catalog.model_validate(raw)


def test_a_missing_or_unreadable_file_is_a_clear_start_up_error(tmp_path: Path) -> None:
    secret_dir = tmp_path / "geheim-verzeichnis"
    secret_dir.mkdir()
    _write_kitas(secret_dir / "kitas.parquet")
    (tmp_path / "kaputt.parquet").write_bytes(b"PAR1 not really")
    settings = Settings(data_dir=tmp_path)
    for broken, reason in (("fehlt.parquet", "does not exist"), ("kaputt.parquet", "cannot be read as parquet")):
        catalog = _catalog_with({"kitas": {"path": str(secret_dir / "kitas.parquet")},
                                 "haltestellen": {"path": broken}})
        with pytest.raises(ValueError) as caught:
            build_connectors(settings, catalog)
        message = str(caught.value)
        assert message.startswith(f"connector 'dateien': table haltestellen: the declared file {broken} {reason}")
        assert str(secret_dir) not in message
    # the half-built copy of the readable file is gone too
    assert sorted(p.name for p in tmp_path.iterdir()) == ["geheim-verzeichnis", "kaputt.parquet"]


def test_a_dataset_must_name_a_declared_file(tmp_path: Path) -> None:
    _write_kitas(tmp_path / "kitas.parquet")
    catalog = _catalog_with({"kitas": {"path": "kitas.parquet"}}, {"kitas": "kitas", "kita_raw": "kitas_raw"})
    with pytest.raises(ValueError, match="table 'kitas_raw' is not one of the files of connector 'dateien'"):
        build_connectors(Settings(data_dir=tmp_path), catalog)


@pytest.mark.parametrize(("entry", "message"), [
    ({"path": "kitas.xlsx"}, "set format"),
    ({"path": "kitas.parquet", "delimiter": ";"}, "CSV options"),
    ({"path": "kitas.csv", "sheet": "1"}, "Extra inputs are not permitted"),
])
def test_file_declarations_are_checked_when_the_catalog_loads(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _catalog_with({"kitas": entry})
