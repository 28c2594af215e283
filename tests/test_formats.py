"""Answers as CSV, Arrow IPC stream and Parquet, streamed, with the same masking as JSON."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import duckdb
import httpx
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pymysql
import pytest
import yaml
from fastapi.testclient import TestClient

import connectors.duckdb as duckdb_connector
from gateway.api.app import create_app
from gateway.api.serialize import dumps, rows_of
from gateway.config import Settings
from gateway.demo.data import generate_demo_database
from gateway.demo.load import load_into
from gateway.identity.settings import IdentitySettings
from gateway.runtime import Runtime, build_runtime
from tests.conftest import DEMO_ROWS, Api

ACCEPT = {
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
#: rows per DuckDB batch in the streaming tests (the demo has DEMO_ROWS = 5,000 residents)
SMALL_BATCH = 500


def _post(api: Api, user: str, sql: str, purpose: str, accept: str) -> httpx.Response:
    response: httpx.Response = api.client.post(
        "/v1/query", json={"sql": sql, "purpose": purpose},
        headers={"Authorization": f"Bearer {api.token(user)}", "Accept": accept})
    return response


def _table(fmt: str, content: bytes) -> pa.Table:
    if fmt == "arrow":
        return pa.ipc.open_stream(content).read_all()
    if fmt == "parquet":
        return pq.read_table(io.BytesIO(content))
    rows = list(csv.reader(io.StringIO(content.decode("utf-8"))))
    return pa.table({name: [r[i] for r in rows[1:]] for i, name in enumerate(rows[0])})


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_same_masked_rows_as_json(api: Api, fmt: str) -> None:
    sql = "SELECT id, vorname, geburtsdatum, telefon, stadtteil FROM einwohner ORDER BY zuzug_am, plz, id LIMIT 300"
    as_json = api.query("anna", sql, "statistik").json()
    response = _post(api, "anna", sql, "statistik", ACCEPT[fmt])
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith(ACCEPT[fmt])
    columns = json.loads(base64.urlsafe_b64decode(response.headers["x-columns"]))
    assert [c["masking"] for c in columns] == [c["masking"] for c in as_json["columns"]]
    table = _table(fmt, response.content)
    assert table.num_rows == 300
    assert table.column("vorname").to_pylist() == [r[1] for r in as_json["rows"]]
    assert set(table.column("telefon").to_pylist()) <= {"***", None, ""}
    receipt = json.loads(base64.urlsafe_b64decode(response.headers["x-receipt"]))
    assert receipt["request_id"] == response.headers["x-query-id"]


def test_large_export_streams_in_batches(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the DuckDB connector reading 500 rows per batch (its batch size is the module constant
    ``connectors.duckdb._BATCH_ROWS``), the Arrow answer holds the batches as they came: a gateway that
    collected the whole result first would send fewer, larger batches."""
    monkeypatch.setattr(duckdb_connector, "_BATCH_ROWS", SMALL_BATCH)
    response = _post(api, "anna", "SELECT * FROM einwohner", "statistik", ACCEPT["arrow"])
    assert response.status_code == 200, response.text[:300]
    reader = pa.ipc.open_stream(response.content)
    batches = list(reader)
    assert sum(b.num_rows for b in batches) == DEMO_ROWS
    assert len(batches) >= DEMO_ROWS // SMALL_BATCH
    assert max(b.num_rows for b in batches) <= SMALL_BATCH
    assert reader.schema.metadata[b"gateway.query_id"].decode() == response.headers["x-query-id"]


@dataclass
class _Chunk:
    size: int
    #: the audit events of the request when this chunk was handed to the server
    events: list[str]


def _asgi_post(app: Any, runtime: Runtime, token: str, accept: str, body: dict[str, str]) -> list[_Chunk]:
    """POST through the app's ASGI interface, noting at every body chunk which audit records exist.

    The TestClient gathers the whole body before returning it, so it cannot show when bytes leave;
    this drives the same app the way a server does, one ``http.response.body`` message at a time.
    """
    payload = json.dumps(body).encode()
    headers = [(b"content-type", b"application/json"), (b"accept", accept.encode()),
               (b"authorization", f"Bearer {token}".encode())]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/v1/query", "raw_path": b"/v1/query", "query_string": b"",
             "root_path": "", "headers": headers, "client": ("127.0.0.1", 50000), "server": ("testserver", 80)}
    chunks: list[_Chunk] = []
    query_id: list[str] = []

    async def run() -> None:
        done = anyio.Event()
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": payload, "more_body": False}
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                assert message["status"] == 200
                query_id.extend(v.decode() for k, v in message["headers"] if k == b"x-query-id")
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    events = [r.event.event for r in runtime.gateway.audit.iter_records()
                              if r.event.request_id == query_id[0]]
                    chunks.append(_Chunk(len(message["body"]), events))
                if not message.get("more_body", False):
                    done.set()

        await app(scope, receive, send)

    anyio.run(run)
    return chunks


def test_first_bytes_leave_before_the_result_is_complete(api: Api, runtime: Runtime,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The first chunk is sent while the database result is still being read: its query_completed
    record (written when the source is exhausted) does not exist yet; it does once the body ends."""
    monkeypatch.setattr(duckdb_connector, "_BATCH_ROWS", SMALL_BATCH)
    for fmt in ("arrow", "csv", "parquet"):
        chunks = _asgi_post(api.client.app, runtime, api.token("anna"), ACCEPT[fmt],
                            {"sql": "SELECT * FROM einwohner", "purpose": "statistik"})
        assert len(chunks) > 2, fmt
        assert chunks[0].events == ["query"], fmt
        assert chunks[0].size < sum(c.size for c in chunks) // 2, fmt
        final = [r.event for r in runtime.gateway.audit.iter_records() if r.event.event == "query_completed"]
        assert final and final[-1].rows_returned == DEMO_ROWS, fmt


def test_free_text_is_masked_in_streams(api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
    response = _post(api, "sven", "SELECT fall_id, bemerkung FROM sozialleistungen", "sozialplanung", ACCEPT["csv"])
    assert response.status_code == 200
    text = response.content.decode("utf-8")
    assert "<PERSON>" in text and "<IBAN>" in text
    compact = text.replace(" ", "")
    for (iban,) in raw_db.execute("SELECT iban FROM sozialleistungen").fetchall():
        assert iban not in compact


def test_refusals_stay_problem_json(api: Api) -> None:
    response = _post(api, "anna", "SELECT steuer_id FROM einwohner", "statistik", ACCEPT["parquet"])
    assert response.status_code == 403
    assert response.headers["content-type"].startswith("application/problem+json")


def test_unknown_format_is_a_clear_400(api: Api) -> None:
    response = _post(api, "anna", "SELECT 1", "statistik", "application/xml")
    assert response.status_code == 400
    assert response.json()["code"] == "format_not_acceptable"


def test_stream_is_audited_before_and_after(api: Api, runtime: Runtime) -> None:
    response = _post(api, "anna", "SELECT plz FROM einwohner LIMIT 42", "statistik", ACCEPT["csv"])
    query_id = response.headers["x-query-id"]
    events = [r.event for r in runtime.gateway.audit.iter_records() if r.event.request_id == query_id]
    assert [e.event for e in events] == ["query", "query_completed"]
    assert events[0].decision == "allow" and events[0].rows_returned is None
    assert events[1].rows_returned == 42


def test_aggregate_only_streams_pass_disclosure_control(api: Api) -> None:
    sql = ("SELECT stadtteil, staatsangehoerigkeit, count(*) AS n FROM einwohner "
           "GROUP BY stadtteil, staatsangehoerigkeit")
    response = _post(api, "paula", sql, "stadtplanung", ACCEPT["arrow"])
    assert response.status_code == 200, response.text[:300]
    table = pa.ipc.open_stream(response.content).read_all()
    rows = table.to_pylist()
    assert any(r["_suppressed"] for r in rows)
    assert all(r["n"] is None for r in rows if r["_suppressed"])
    assert all(r["n"] >= 3 for r in rows if not r["_suppressed"])


@pytest.mark.parametrize("fmt", ["json", "arrow"])
def test_aggregate_answers_have_a_group_bound(api: Api, runtime: Runtime, raw_db: duckdb.DuckDBPyConnection,
                                              monkeypatch: pytest.MonkeyPatch, fmt: str) -> None:
    """Aggregate-only answers are held whole (disclosure control needs every group): more groups than
    ``aggregate_max_groups`` are refused with a clear problem, exactly that many still pass."""
    assert runtime.gateway.aggregate_max_groups == runtime.settings.aggregate_max_groups
    sql = "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil"
    row = raw_db.execute("SELECT count(DISTINCT stadtteil) FROM einwohner").fetchone()
    assert row is not None and row[0] > 5
    groups = int(row[0])
    monkeypatch.setattr(runtime.gateway, "aggregate_max_groups", groups - 1)
    refused = _post(api, "paula", sql, "stadtplanung", ACCEPT.get(fmt, "application/json"))
    assert refused.status_code == 422
    assert refused.headers["content-type"].startswith("application/problem+json")
    problem = refused.json()
    assert problem["code"] == "aggregate_too_large"
    assert f"more than {groups - 1:,} groups" in problem["detail"] and "group more coarsely" in problem["detail"]
    events = [r.event for r in runtime.gateway.audit.iter_records()
              if r.event.request_id == problem["request_id"]]
    assert [(e.decision, e.error_code) for e in events] == [("error", "aggregate_too_large")]
    monkeypatch.setattr(runtime.gateway, "aggregate_max_groups", groups)
    allowed = _post(api, "paula", sql, "stadtplanung", ACCEPT.get(fmt, "application/json"))
    assert allowed.status_code == 200, allowed.text[:300]
    rows = allowed.json()["rows"] if fmt == "json" else pa.ipc.open_stream(allowed.content).read_all().to_pylist()
    assert len(rows) == groups


def test_large_json_answers_stream_with_the_same_shape(api: Api, runtime: Runtime,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A JSON answer past `json_stream_after_rows` is written batch by batch: the same document as the
    whole-answer path (same keys, rows, masks), audited as query + query_completed."""
    sql = "SELECT id, vorname, geburtsdatum, telefon, plz, stadtteil FROM einwohner ORDER BY id"
    whole = api.query("anna", sql, "statistik")
    assert whole.status_code == 200
    monkeypatch.setattr(runtime.settings, "json_stream_after_rows", 700)
    streamed = api.query("anna", sql, "statistik")
    assert streamed.status_code == 200, streamed.text[:300]
    assert streamed.headers["content-type"].startswith("application/json")
    a, b = whole.json(), streamed.json()
    assert list(b) == list(a)  # same keys, same order
    assert b["columns"] == a["columns"]
    assert b["rows"] == a["rows"] and b["row_count"] == a["row_count"] == 5000
    assert b["truncated"] is False
    assert b["query_id"] == streamed.headers["x-query-id"] != a["query_id"]
    events = [r.event for r in runtime.gateway.audit.iter_records() if r.event.request_id == b["query_id"]]
    assert [e.event for e in events] == ["query", "query_completed"]
    assert events[0].rows_returned is None and events[1].rows_returned == 5000
    assert b["receipt"]["request_id"] == b["query_id"]
    # the whole-answer path is unchanged below the threshold: one record with rows and person keys
    whole_events = [r.event for r in runtime.gateway.audit.iter_records() if r.event.request_id == a["query_id"]]
    assert [e.event for e in whole_events] == ["query"] and whole_events[0].rows_returned == 5000
    assert whole_events[0].person_keys


def test_json_below_the_threshold_is_one_record(api: Api, runtime: Runtime,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Under the threshold the streaming reader finishes first and answers exactly like run_query."""
    monkeypatch.setattr(runtime.settings, "json_stream_after_rows", 700)
    response = api.query("anna", "SELECT id, plz FROM einwohner ORDER BY id LIMIT 650", "statistik")
    body = response.json()
    assert body["row_count"] == 650 and len(body["rows"]) == 650
    events = [r.event for r in runtime.gateway.audit.iter_records() if r.event.request_id == body["query_id"]]
    assert [e.event for e in events] == ["query"]
    assert events[0].rows_returned == 650 and events[0].person_keys


# ==================================================================================================
# The same answers from PostgreSQL and MariaDB: the reference scenario loaded with load_into()
# ==================================================================================================

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA_ADMIN: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
DB_ROWS = 2_000

#: (user, purpose, query): decimals, dates, umlauts and NULLs (open cases have no `ende`), masked columns
DB_QUERIES = [
    pytest.param("sven", "sozialplanung",
                 "SELECT fall_id, einwohner_id, leistungsart, betrag_monat, beginn, ende, stadtteil "
                 "FROM sozialleistungen ORDER BY fall_id", id="sozialleistungen"),
    pytest.param("anna", "statistik",
                 "SELECT id, vorname, nachname, geburtsdatum, telefon, stadtteil, zuzug_am FROM einwohner "
                 "WHERE stadtteil IN ('Heßloch', 'Amöneburg', 'Biebrich') ORDER BY zuzug_am, id", id="einwohner"),
]


@pytest.fixture(scope="module")
def db_scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("formats-db") / "demo.duckdb"
    generate_demo_database(path, rows=DB_ROWS)
    return path


@contextmanager
def _postgres_database(source: Path) -> Iterator[str]:
    name = f"gw_formats_{secrets.token_hex(4)}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}" ENCODING UTF8 TEMPLATE template0')
    try:
        dsn = f"postgresql://postgres@127.0.0.1:5432/{name}"
        load_into(dsn, source)
        yield dsn
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def _maria_database(source: Path) -> Iterator[str]:
    name = f"gw_formats_{secrets.token_hex(4)}"
    dsn = f"mysql://root@127.0.0.1:3306/{name}"
    try:
        load_into(dsn, source, schema=name)
        yield dsn
    finally:
        conn = pymysql.connect(**MARIA_ADMIN, autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def _database_runtime(kind: str, dsn: str, work: Path, identity: IdentitySettings) -> Runtime:
    """The reference catalog and policy with the `demo` connector pointed at the loaded database."""
    dsn_file = work / "demo.dsn"
    dsn_file.write_text(dsn, encoding="utf-8")
    catalog = yaml.safe_load((ROOT / "policies" / "catalog.yaml").read_text(encoding="utf-8"))
    catalog["connectors"]["demo"] = {"kind": kind, "dsn_file": str(dsn_file)}
    catalog_path = work / "catalog.yaml"
    catalog_path.write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    settings = Settings(data_dir=work, catalog_path=catalog_path, policy_reload_seconds=0, identity=identity)
    return build_runtime(settings, create_keys=True)


@pytest.fixture(scope="module", params=[pytest.param("postgres", marks=pytest.mark.postgres),
                                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def db_api(request: pytest.FixtureRequest, db_scenario: Path, identity_settings: IdentitySettings,
           access_token: Callable[..., str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Api]:
    kind = "postgres" if request.param == "postgres" else "mysql"
    database = _postgres_database if kind == "postgres" else _maria_database
    with database(db_scenario) as dsn:
        runtime = _database_runtime(kind, dsn, tmp_path_factory.mktemp(f"formats-{kind}"), identity_settings)
        app = create_app(runtime)  # the app's lifespan closes the runtime
        with TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)) as client:
            assert runtime.gateway.connectors["demo"].dialect == kind
            yield Api(client=client, token=access_token)


def _csv_cell(value: Any) -> str:
    """A JSON value as pyarrow's CSV writer spells it: NULL empty, dates ISO, decimals as exact text."""
    return "" if value is None else str(value)


@pytest.mark.parametrize(("user", "purpose", "sql"), DB_QUERIES)
@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_database_answers_equal_json_in_every_format(db_api: Api, fmt: str, user: str, purpose: str,
                                                     sql: str) -> None:
    as_json = db_api.query(user, sql, purpose)
    assert as_json.status_code == 200, as_json.text[:300]
    expected = as_json.json()
    rows = expected["rows"]
    assert rows and expected["truncated"] is False
    response = _post(db_api, user, sql, purpose, ACCEPT[fmt])
    assert response.status_code == 200, response.text[:300]
    assert response.headers["content-type"].startswith(ACCEPT[fmt])
    columns = json.loads(base64.urlsafe_b64decode(response.headers["x-columns"]))
    assert columns == expected["columns"]
    if fmt == "csv":
        text = response.content.decode("utf-8")
        lines = list(csv.reader(io.StringIO(text)))
        assert lines[0] == [c["name"] for c in expected["columns"]]
        assert lines[1:] == [[_csv_cell(v) for v in row] for row in rows]
    else:
        table = _table(fmt, response.content)
        assert [str(t) for t in table.schema.types] == [c["type"] for c in expected["columns"]]
        assert json.loads(dumps(rows_of(table))) == rows


@pytest.mark.parametrize("fmt", ["csv", "arrow", "parquet"])
def test_database_answers_carry_decimals_dates_umlauts_and_nulls(db_api: Api, fmt: str) -> None:
    """The comparison above is not vacuous: the answer holds each kind of value, typed as in DuckDB."""
    sql = str(DB_QUERIES[0].values[2])
    response = _post(db_api, "sven", sql, "sozialplanung", ACCEPT[fmt])
    assert response.status_code == 200, response.text[:300]
    table = _table(fmt, response.content)
    if fmt != "csv":
        assert table.schema.field("betrag_monat").type == pa.decimal128(10, 2)
        assert table.schema.field("beginn").type == pa.date32()
        assert table.schema.field("ende").type == pa.date32()
    values = {name: [("" if v is None else str(v)) for v in table.column(name).to_pylist()]
              for name in ("betrag_monat", "beginn", "ende", "leistungsart")}
    assert values["betrag_monat"] and all(re.fullmatch(r"-?\d+\.\d\d", v) for v in values["betrag_monat"])
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\d", v) for v in values["beginn"])
    assert "" in values["ende"]  # open cases
    assert "Bürgergeld" in values["leistungsart"]
