"""Data-subject access: answers record the pseudonymous keys of the persons they carry."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.audit.person_index import EXPLICIT_LIMIT, encode_person_keys, may_contain
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
