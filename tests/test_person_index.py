"""Data-subject access: answers record the pseudonymous keys of the persons they carry."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import duckdb
import numpy as np
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.person_index import (
    EXPLICIT_LIMIT,
    PersonKeyCollector,
    _fingerprint,
    _fnv1a64,
    _fnv1a64_array,
    _pack_fingerprints,
    _unpack_fingerprints,
    encode_person_keys,
    may_contain,
)
from gateway.audit.subject_access import requests_touching_person
from gateway.runtime import Runtime
from tests.conftest import Api


@settings(max_examples=30, deadline=None)
@given(keys=st.sets(st.text(min_size=1, max_size=20), min_size=1, max_size=3000))
def test_no_false_negatives(keys: set[str]) -> None:
    entries = encode_person_keys("einwohner", keys)
    assert all(may_contain(entries, "einwohner", k) for k in keys)
    if len(keys) > EXPLICIT_LIMIT:
        assert len(entries) == 1 and entries[0].startswith("bloom:einwohner:")


def test_bloom_false_positives_are_rare() -> None:
    entries = encode_person_keys("einwohner", (f"p_{i:016x}" for i in range(5000)))
    hits = sum(may_contain(entries, "einwohner", f"q_{i}") for i in range(20000))
    assert hits < 100  # designed for 0.1 %


def test_answers_record_their_persons(api: Api, runtime: Runtime) -> None:
    body = api.query("sven", "SELECT einwohner_id, leistungsart FROM sozialleistungen LIMIT 5", "sozialplanung").json()
    record = next(r for r in runtime.gateway.audit.iter_records() if r.event.request_id == body["query_id"])
    for pseudonym, _ in body["rows"]:
        assert may_contain(record.event.person_keys, "sozialleistungen", pseudonym)


# --- streamed answers ------------------------------------------------------------------------------

@settings(max_examples=60, deadline=None)
@given(keys=st.lists(st.text(max_size=24), min_size=1, max_size=50), start=st.integers(0, 5))
def test_vectorised_fnv_is_the_scalar_function(keys: list[str], start: int) -> None:
    array = pa.array(["pad"] * start + keys).slice(start)  # sliced arrays have an offset
    assert [int(v) for v in _fnv1a64_array(array)] == [_fnv1a64(k) for k in keys]


@settings(max_examples=25, deadline=None)
@given(keys=st.lists(st.text(min_size=1, max_size=20), min_size=1, max_size=4000),
       batch=st.integers(1, 1500))
def test_collector_has_no_false_negatives(keys: list[str], batch: int) -> None:
    collector = PersonKeyCollector("einwohner")
    for i in range(0, len(keys), batch):
        collector.add(pa.array([*keys[i:i + batch], None]))
    entries = collector.entries()
    assert all(may_contain(entries, "einwohner", k) for k in keys)
    if len(set(keys)) <= EXPLICIT_LIMIT:
        assert sorted(entries) == sorted(f"einwohner:{k}" for k in set(keys))
    else:
        assert len(entries) == 1 and entries[0].startswith("fp32:einwohner:")


def test_collector_fingerprints_are_rare_false_positives_and_compact() -> None:
    collector = PersonKeyCollector("einwohner")
    for part in range(4):  # the same 50,000 persons twice: kept once
        collector.add(pa.array([f"p_{i:016x}" for i in range(part % 2 * 25_000, (part % 2 + 1) * 25_000)]))
    (entry,) = collector.entries()
    stored = _unpack_fingerprints(entry.split(":", 2)[2])
    expected = sorted({_fingerprint(f"p_{i:016x}") for i in range(50_000)})
    assert stored.tolist() == expected  # each person once, in order, whatever the batches repeated
    assert len(base64.b64decode(entry.split(":", 2)[2])) < 2 * 50_000  # compressed below 4 bytes a person
    hits = sum(may_contain([entry], "einwohner", f"q_{i}") for i in range(2000))
    assert hits <= 2  # 50,000 of 2**32 fingerprints: about 0.001 % per lookup


def test_streamed_answers_record_their_persons(api: Api, runtime: Runtime,
                                               raw_db: duckdb.DuckDBPyConnection) -> None:
    """A CSV export's persons are in its query_completed record; subject access narrows by them."""
    start = datetime.now(UTC) - timedelta(milliseconds=1)
    residents = raw_db.execute("SELECT CAST(id AS VARCHAR), stadtteil FROM einwohner ORDER BY id").fetchall()
    district = residents[0][1]
    outsider = next(rid for rid, where in residents if where != district)
    insider = next(rid for rid, where in residents if where == district)
    headers = {"Authorization": f"Bearer {api.token('anna')}", "Accept": "text/csv"}
    every = api.client.post("/v1/query", json={"sql": "SELECT id, stadtteil FROM einwohner",
                                               "purpose": "statistik"}, headers=headers)
    one_district = api.client.post("/v1/query", json={
        "sql": f"SELECT id FROM einwohner WHERE stadtteil = '{district}'", "purpose": "statistik"}, headers=headers)
    assert every.status_code == one_district.status_code == 200
    assert every.text.count("\n") > EXPLICIT_LIMIT + 1  # more persons than are listed one by one
    ids = {name: response.headers["x-request-id"] for name, response in
           (("every", every), ("one_district", one_district))}
    completed = {r.event.request_id: r.event for r in runtime.gateway.audit.iter_records()
                 if r.event.event == "query_completed" and r.event.request_id in ids.values()}
    assert completed[ids["every"]].person_keys[0].startswith("fp32:einwohner:")
    assert all(k.startswith("einwohner:p_") for k in completed[ids["one_district"]].person_keys)

    def basis(person: str) -> dict[str, str]:
        report = requests_touching_person(runtime.gateway.audit, "einwohner", person,
                                          key_ring=runtime.gateway.key_ring, time_from=start)
        return {m.request_id: m.basis for m in report.requests if m.request_id in ids.values()}

    assert basis(insider) == {ids["every"]: "person_key_filter", ids["one_district"]: "person_key_recorded"}
    assert basis(outsider) == {ids["every"]: "person_key_filter"}  # the district export did not carry them


@settings(max_examples=50, deadline=None)
@given(values=st.sets(st.integers(0, 2**32 - 1), min_size=1, max_size=3000))
def test_fingerprints_pack_and_unpack_exactly(values: set[int]) -> None:
    fingerprints = np.array(sorted(values), dtype=np.uint32)
    assert np.array_equal(_unpack_fingerprints(_pack_fingerprints(fingerprints)), fingerprints)
