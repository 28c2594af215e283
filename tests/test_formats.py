"""Answers as CSV, Arrow IPC stream and Parquet, streamed, with the same masking as JSON."""

from __future__ import annotations

import base64
import csv
import io
import json

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from gateway.runtime import Runtime
from tests.conftest import Api

ACCEPT = {
    "csv": "text/csv",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}


def _post(api: Api, user: str, sql: str, purpose: str, accept: str) -> object:
    return api.client.post("/v1/query", json={"sql": sql, "purpose": purpose},
                           headers={"Authorization": f"Bearer {api.token(user)}", "Accept": accept})


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


def test_large_export_streams_in_batches(api: Api) -> None:
    response = _post(api, "anna", "SELECT * FROM einwohner", "statistik", ACCEPT["arrow"])
    reader = pa.ipc.open_stream(response.content)
    batches = list(reader)
    assert sum(b.num_rows for b in batches) == 5000
    assert reader.schema.metadata[b"gateway.query_id"].decode() == response.headers["x-query-id"]


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
