"""The audit API (gateway/api/audit_routes.py) through HTTP with real tokens, plus the subject-access
search and the audit CLI functions.

The app is the real one (``create_app``) with the audit router included (if ``create_app`` does not yet
include it).  Its TestClient is used without ``with``: the lifespan would close the session's runtime.
Every test looks only at records written since this module's scenario started (``time_from``), so records
of other test modules do not matter.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.api.audit_routes import audit_router, reason_digest
from gateway.audit import AuditEvent, open_store
from gateway.audit.person_index import encode_person_keys
from gateway.audit.subject_access import analyst_pseudonym, pseudonym_domains, requests_touching_person
from gateway.cli.audit_commands import audit_list, audit_show, audit_verify_receipt
from gateway.errors import AuditUnavailable
from gateway.runtime import Runtime
from gateway.sql.masks import KeyRing

MUELLER_SQL = "SELECT count(*) FROM einwohner WHERE nachname = 'Müller'"
ANNA_SQL = "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil"


def _principal_dependency(app: FastAPI) -> Callable[..., Any]:
    """The app's own token-checking dependency, taken from a route that uses it."""
    for route in app.routes:
        if isinstance(route, APIRoute) and route.path == "/v1/datasets":
            for dependency in route.dependant.dependencies:
                if dependency.call is not None and getattr(dependency.call, "__name__", "") == "principal":
                    return dependency.call
    raise AssertionError("the app has no principal dependency on /v1/datasets")


@dataclass
class AuditApi:
    client: TestClient
    token: Callable[..., str]

    def _headers(self, user: str | None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(user)}"} if user else {}

    def get(self, caller: str | None, path: str, /, **params: Any) -> Any:
        return self.client.get(path, headers=self._headers(caller), params=params)

    def post(self, caller: str | None, path: str, body: Any = None, /, **params: Any) -> Any:
        return self.client.post(path, headers=self._headers(caller), json=body, params=params)

    def query(self, user: str | None, sql: str, purpose: str) -> Any:
        return self.post(user, "/v1/query", {"sql": sql, "purpose": purpose})


@pytest.fixture(scope="module")
def audit_api(runtime: Runtime, access_token: Callable[..., str]) -> AuditApi:
    app = create_app(runtime)
    if not any(isinstance(r, APIRoute) and r.path == "/v1/audit" for r in app.routes):
        app.include_router(audit_router(runtime, _principal_dependency(app)))
    return AuditApi(client=TestClient(app, raise_server_exceptions=False, client=("127.0.0.1", 50000)),
                    token=access_token)


@dataclass
class Scenario:
    start: str
    results: dict[str, Any]

    def request_id(self, name: str) -> str:
        return str(self.results[name].headers["x-request-id"])


@pytest.fixture(scope="module")
def scenario(audit_api: AuditApi) -> Scenario:
    start = (datetime.now(UTC) - timedelta(milliseconds=1)).isoformat()
    runs = {
        "anna_ok": ("anna", ANNA_SQL, "statistik", 200),
        "anna_mueller": ("anna", MUELLER_SQL, "statistik", 403),
        "sven_ok": ("sven", "SELECT fall_id, stadtteil FROM sozialleistungen LIMIT 5", "sozialplanung", 200),
        "sven_iban": ("sven", "SELECT iban FROM sozialleistungen", "sozialplanung", 403),
        "paula_ok": ("paula", "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil",
                     "stadtplanung", 200),
        "paula_social": ("paula", "SELECT count(*) FROM sozialleistungen", "stadtplanung", 403),
        "nobody": (None, "SELECT 1", "statistik", 401),
    }
    results: dict[str, Any] = {}
    for name, (user, sql, purpose, status) in runs.items():
        response = audit_api.query(user, sql, purpose)
        assert response.status_code == status, (name, response.text)
        results[name] = response
    return Scenario(start=start, results=results)


def _records(audit_api: AuditApi, caller: str, /, **params: Any) -> list[dict[str, Any]]:
    response = audit_api.get(caller, "/v1/audit", limit=1000, **params)
    assert response.status_code == 200, response.text
    records: list[dict[str, Any]] = response.json()["records"]
    return records


def _by_request(records: list[dict[str, Any]], request_id: str) -> dict[str, Any]:
    matches = [r for r in records if r["request_id"] == request_id]
    assert len(matches) == 1, request_id
    return matches[0]


def _problem(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if code is not None:
        assert body["code"] == code
    return body


# --- listing and visibility -------------------------------------------------------------------------

def test_auditor_sees_everyone(audit_api: AuditApi, scenario: Scenario) -> None:
    records = _records(audit_api, "aaron", time_from=scenario.start, event="query")
    users = {r["username"] for r in records}
    assert {"anna", "sven", "paula"} <= users
    for name in ("anna_ok", "anna_mueller", "sven_ok", "sven_iban", "paula_ok", "paula_social"):
        _by_request(records, scenario.request_id(name))
    unauthenticated = _records(audit_api, "aaron", time_from=scenario.start, event="unauthenticated")
    record = _by_request(unauthenticated, scenario.request_id("nobody"))
    assert record["username"] is None and record["decision"] == "deny"
    assert "sql_original_encrypted" not in records[0] and records[0]["original_sql_available"] is True


def test_dpo_sees_everyone(audit_api: AuditApi, scenario: Scenario) -> None:
    records = _records(audit_api, "dora", time_from=scenario.start, event="query")
    assert {"anna", "sven", "paula"} <= {r["username"] for r in records}


def test_analyst_sees_only_her_own(audit_api: AuditApi, scenario: Scenario) -> None:
    records = _records(audit_api, "anna", time_from=scenario.start)
    assert records and {r["username"] for r in records} == {"anna"}
    _by_request(records, scenario.request_id("anna_ok"))
    # asking for someone else's records still yields only her own
    forced = _records(audit_api, "anna", time_from=scenario.start, user="sven")
    assert forced and {r["username"] for r in forced} == {"anna"}


def test_single_record_visibility(audit_api: AuditApi, scenario: Scenario) -> None:
    everything = _records(audit_api, "aaron", time_from=scenario.start, event="query")
    anna_seq = _by_request(everything, scenario.request_id("anna_ok"))["seq"]
    sven_seq = _by_request(everything, scenario.request_id("sven_ok"))["seq"]
    own = audit_api.get("anna", f"/v1/audit/{anna_seq}")
    assert own.status_code == 200 and own.json()["request_id"] == scenario.request_id("anna_ok")
    _problem(audit_api.get("anna", f"/v1/audit/{sven_seq}"), 404, "audit_record_not_found")
    _problem(audit_api.get("aaron", "/v1/audit/999999999"), 404, "audit_record_not_found")
    assert audit_api.get("aaron", f"/v1/audit/{sven_seq}").json()["username"] == "sven"


def test_denied_record_names_the_rule(audit_api: AuditApi, scenario: Scenario) -> None:
    records = _records(audit_api, "aaron", time_from=scenario.start, event="query")
    seq = _by_request(records, scenario.request_id("anna_mueller"))["seq"]
    record = audit_api.get("aaron", f"/v1/audit/{seq}").json()
    assert record["decision"] == "deny" and record["error_code"] == "column_use_not_allowed"
    assert "einwohner.pseudonymise_names" in record["rules"]
    assert record["sql_normalised"] is not None and "?" in record["sql_normalised"]
    iban = _by_request(records, scenario.request_id("sven_iban"))
    assert "sozialleistungen.deny_iban" in iban["rules"]


def test_record_states_the_legal_basis_from_the_catalog(audit_api: AuditApi, scenario: Scenario,
                                                        runtime: Runtime) -> None:
    records = _records(audit_api, "aaron", time_from=scenario.start, event="query")
    allowed = _by_request(records, scenario.request_id("anna_ok"))
    expected = runtime.gateway.catalog.datasets["einwohner"].legal_basis
    assert expected and allowed["legal_bases"] == {"einwohner": expected}
    social = _by_request(records, scenario.request_id("sven_ok"))
    assert social["legal_bases"]["sozialleistungen"] == runtime.gateway.catalog.datasets["sozialleistungen"].legal_basis


def test_filters(audit_api: AuditApi, scenario: Scenario) -> None:
    since = {"time_from": scenario.start, "event": "query"}
    social = _records(audit_api, "aaron", dataset="sozialleistungen", **since)
    assert social and all("sozialleistungen" in r["datasets"] for r in social)
    assert scenario.request_id("sven_ok") in {r["request_id"] for r in social}
    denied = _records(audit_api, "aaron", decision="deny", **since)
    assert denied and {r["decision"] for r in denied} == {"deny"}
    by_rule = _records(audit_api, "aaron", rule="sozialleistungen.deny_iban", **since)
    assert [r["request_id"] for r in by_rule] == [scenario.request_id("sven_iban")]
    paula = _records(audit_api, "aaron", user="paula", **since)
    assert paula and {r["username"] for r in paula} == {"paula"}
    office = _records(audit_api, "aaron", office="Amt für Soziale Arbeit", **since)
    assert office and {r["username"] for r in office} == {"sven"}
    purpose = _records(audit_api, "aaron", purpose="stadtplanung", **since)
    assert purpose and {r["purpose"] for r in purpose} == {"stadtplanung"}
    assert _records(audit_api, "aaron", event="query", time_to=scenario.start, request_id=
                    scenario.request_id("anna_ok")) == []
    by_id = _records(audit_api, "aaron", request_id=scenario.request_id("paula_ok"))
    assert len(by_id) == 1


def test_paging(audit_api: AuditApi, scenario: Scenario) -> None:
    first = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, event="query", limit=2).json()
    assert len(first["records"]) == 2 and first["next_offset"] == 2
    second = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, event="query", limit=2,
                           offset=2).json()
    assert {r["seq"] for r in first["records"]}.isdisjoint(r["seq"] for r in second["records"])
    newest = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, newest_first=True, limit=3).json()
    seqs = [r["seq"] for r in newest["records"]]
    assert seqs == sorted(seqs, reverse=True)
    _problem(audit_api.get("aaron", "/v1/audit", limit=1001), 400, "invalid_request")
    _problem(audit_api.get("aaron", "/v1/audit", format="xml"), 400, "invalid_request")


def test_csv_and_jsonl_exports_parse(audit_api: AuditApi, scenario: Scenario) -> None:
    response = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, event="query", format="csv")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"))))
    assert {"anna", "sven", "paula"} <= {row["username"] for row in rows}
    iban = next(row for row in rows if row["request_id"] == scenario.request_id("sven_iban"))
    assert "sozialleistungen.deny_iban" in iban["rules"].split(";") and iban["decision"] == "deny"

    response = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, event="query", format="jsonl")
    assert response.status_code == 200 and response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines() if line]
    assert [r["seq"] for r in lines] == sorted(r["seq"] for r in lines)
    assert {r["request_id"] for r in lines} == {row["request_id"] for row in rows}

    own = audit_api.get("anna", "/v1/audit", time_from=scenario.start, format="jsonl")
    assert {json.loads(line)["username"] for line in own.text.splitlines() if line} == {"anna"}
    limited = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, format="jsonl", limit=2)
    assert len([line for line in limited.text.splitlines() if line]) == 2


def test_csv_cells_cannot_become_formulas(audit_api: AuditApi, scenario: Scenario) -> None:
    audit_api.query("anna", "SELECT plz FROM einwohner LIMIT 1", "=HYPERLINK(\"http://x\")")
    response = audit_api.get("aaron", "/v1/audit", time_from=scenario.start, user="anna", format="csv")
    purposes = {row["purpose"] for row in csv.DictReader(io.StringIO(response.text))}
    assert "'=HYPERLINK(\"http://x\")" in purposes
    assert not any(p.startswith("=") for p in purposes)


def test_mueller_never_appears_in_audit_output(audit_api: AuditApi, scenario: Scenario) -> None:
    seq = _by_request(_records(audit_api, "aaron", time_from=scenario.start, event="query"),
                      scenario.request_id("anna_mueller"))["seq"]
    outputs = [
        audit_api.get("aaron", "/v1/audit", time_from=scenario.start),
        audit_api.get("anna", "/v1/audit", time_from=scenario.start),
        audit_api.get("aaron", "/v1/audit", time_from=scenario.start, format="csv"),
        audit_api.get("aaron", "/v1/audit", time_from=scenario.start, format="jsonl"),
        audit_api.get("aaron", f"/v1/audit/{seq}"),
        audit_api.get("anna", f"/v1/audit/{seq}"),
        audit_api.get("aaron", "/v1/audit/summary", time_from=scenario.start, by="rule"),
        audit_api.get("dora", "/v1/audit/subject-access", dataset="einwohner", person_key="17"),
    ]
    for response in outputs:
        assert response.status_code == 200, response.text
        text = response.content.decode("utf-8")
        assert "Müller" not in text and "M\\u00fcller" not in text and "ller'" not in text


# --- summaries and verification ---------------------------------------------------------------------

def test_summary_is_for_oversight_roles(audit_api: AuditApi, scenario: Scenario) -> None:
    body = _problem(audit_api.get("paula", "/v1/audit/summary"), 403, "audit_role_required")
    assert body["rule"] == "audit.summary_role_required"
    _problem(audit_api.get("anna", "/v1/audit/summary", by="office"), 403)

    summary = audit_api.get("aaron", "/v1/audit/summary", time_from=scenario.start, event="query").json()
    groups = {g["key"]: g for g in summary["groups"]}
    assert groups["sozialleistungen"]["allow"] >= 1 and groups["einwohner"]["allow"] >= 2
    # requests refused by the policy are recorded with the datasets they asked for
    assert sum(g["deny"] for g in groups.values()) >= 3
    assert groups["einwohner"]["deny"] >= 1
    assert summary["total_records"] >= 6
    denials = {d["rule"]: d["count"] for d in summary["denials_by_rule"]}
    assert denials["sozialleistungen.deny_iban"] >= 1 and denials["einwohner.pseudonymise_names"] >= 1

    for by in ("office", "day", "rule"):
        response = audit_api.get("dora", "/v1/audit/summary", time_from=scenario.start, by=by)
        assert response.status_code == 200, response.text
    offices = {g["key"] for g in audit_api.get("dora", "/v1/audit/summary", time_from=scenario.start,
                                                 by="office", event="query").json()["groups"]}
    assert {"Stadtplanungsamt", "Amt für Soziale Arbeit"} <= offices
    days = audit_api.get("dora", "/v1/audit/summary", time_from=scenario.start, by="day").json()["groups"]
    assert datetime.now(UTC).date().isoformat() in {g["key"] for g in days}


def test_verify_chain(audit_api: AuditApi, scenario: Scenario) -> None:
    report = audit_api.post("aaron", "/v1/audit/verify").json()
    assert report["ok"] is True and report["records_checked"] > 0 and report["problem"] is None
    assert audit_api.post("dora", "/v1/audit/verify").json()["ok"] is True
    _problem(audit_api.post("anna", "/v1/audit/verify"), 403, "audit_role_required")
    verifications = _records(audit_api, "aaron", time_from=scenario.start, event="audit_verify")
    assert any(r["username"] == "aaron" and "audit.result=ok" in r["columns"] for r in verifications)
    assert any(r["username"] == "anna" and r["decision"] == "deny" for r in verifications)


def test_every_access_is_audited(audit_api: AuditApi, scenario: Scenario) -> None:
    audit_api.get("sven", "/v1/audit", time_from=scenario.start, dataset="sozialleistungen")
    audit_api.get("aaron", "/v1/audit", time_from=scenario.start, limit=1)
    _problem(audit_api.get("paula", "/v1/audit/summary", by="day"), 403)
    reads = _records(audit_api, "aaron", time_from=scenario.start, event="audit_read", user="sven")
    assert reads, "sven's read of the audit trail was not recorded"
    last = reads[-1]
    assert last["rules"] == ["audit.read_own"] and last["decision"] == "allow"
    assert "audit.filter.user=sven" in last["columns"] and "audit.filter.dataset=sozialleistungen" in last["columns"]
    assert last["datasets"] == ["sozialleistungen"]
    aaron = _records(audit_api, "aaron", time_from=scenario.start, event="audit_read", user="aaron")
    assert any(r["rules"] == ["audit.read_all"] for r in aaron)
    refusals = _records(audit_api, "aaron", time_from=scenario.start, event="audit_read", decision="deny")
    assert any(r["username"] == "paula" and r["error_code"] == "audit_role_required" for r in refusals)


def test_unauthenticated_audit_access_is_refused_and_recorded(audit_api: AuditApi, scenario: Scenario) -> None:
    response = audit_api.get(None, "/v1/audit")
    _problem(response, 401, "token_missing")
    request_id = response.headers["x-request-id"]
    records = _records(audit_api, "aaron", time_from=scenario.start, request_id=request_id)
    assert len(records) == 1 and records[0]["event"] == "unauthenticated"


def test_fails_closed_when_the_access_cannot_be_recorded(
    audit_api: AuditApi, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    token = audit_api.token("aaron")  # fetched before the store "breaks"

    def broken(event: AuditEvent) -> Any:
        raise AuditUnavailable("the audit trail could not record the request; no data is returned")

    monkeypatch.setattr(runtime.gateway.audit, "append", broken)
    response = audit_api.client.get("/v1/audit", headers={"Authorization": f"Bearer {token}"})
    body = _problem(response, 503, "audit_unavailable")
    assert "records" not in body
    csv_response = audit_api.client.get("/v1/audit", params={"format": "csv"},
                                        headers={"Authorization": f"Bearer {token}"})
    _problem(csv_response, 503, "audit_unavailable")


# --- decrypting the original SQL --------------------------------------------------------------------

def test_original_sql_for_the_dpo_only(audit_api: AuditApi, scenario: Scenario, runtime: Runtime) -> None:
    records = _records(audit_api, "aaron", time_from=scenario.start, event="query")
    seq = _by_request(records, scenario.request_id("anna_ok"))["seq"]
    reason = "Prüfung Beschwerde Az. 2024-017"
    response = audit_api.post("dora", f"/v1/audit/{seq}/original-sql", {"reason": reason})
    assert response.status_code == 200, response.text
    assert response.json()["sql"] == ANNA_SQL
    assert response.json()["request_id"] == scenario.request_id("anna_ok")
    assert response.headers["cache-control"] == "no-store"

    for user in ("aaron", "anna"):
        body = _problem(audit_api.post(user, f"/v1/audit/{seq}/original-sql", {"reason": reason}), 403,
                        "audit_role_required")
        assert ANNA_SQL not in json.dumps(body)
    _problem(audit_api.post("dora", f"/v1/audit/{seq}/original-sql", {}), 400, "invalid_request")
    _problem(audit_api.post("dora", f"/v1/audit/{seq}/original-sql", {"reason": "   "}), 400, "invalid_request")
    _problem(audit_api.post("dora", "/v1/audit/999999999/original-sql", {"reason": reason}), 404)

    decrypts = _records(audit_api, "aaron", time_from=scenario.start, event="audit_decrypt")
    granted = [r for r in decrypts if r["decision"] == "allow"]
    assert len(granted) == 1
    record = granted[0]
    assert record["username"] == "dora" and f"audit.seq={seq}" in record["columns"]
    assert f"audit.request_id={scenario.request_id('anna_ok')}" in record["columns"]
    assert record["rules"] == ["audit.decrypt_original"]
    assert record["purpose"] == reason_digest(reason, runtime.audit_keys)
    assert reason not in json.dumps(decrypts, ensure_ascii=False)
    refused = {r["username"] for r in decrypts if r["decision"] == "deny"}
    assert {"aaron", "anna"} <= refused


# --- receipts ---------------------------------------------------------------------------------------

def test_receipt_verifies_and_tampering_is_detected(audit_api: AuditApi, scenario: Scenario) -> None:
    receipt = scenario.results["anna_ok"].json()["receipt"]
    check = audit_api.post("anna", "/v1/receipts/verify", receipt).json()
    assert check == {"valid": True, "reason": "ok", "seq": receipt["seq"], "request_id": receipt["request_id"]}
    wrapped = audit_api.post("paula", "/v1/receipts/verify", {"receipt": receipt}).json()
    assert wrapped["valid"] is True

    for change in ({"decision": "deny"}, {"seq": receipt["seq"] + 1}, {"audit_record_hash": "0" * 64},
                   {"signature": receipt["signature"][:-4] + "AAAA"}):
        tampered = {**receipt, **change}
        result = audit_api.post("anna", "/v1/receipts/verify", tampered).json()
        assert result["valid"] is False, change
        assert result["reason"] != "ok"
    assert audit_api.post("anna", "/v1/receipts/verify", {"x": 1}).json()["valid"] is False
    _problem(audit_api.post(None, "/v1/receipts/verify", receipt), 401)
    checks = _records(audit_api, "aaron", time_from=scenario.start, event="audit_verify", user="anna")
    assert any("audit.result=invalid" in r["columns"] for r in checks)


# --- data-subject access ----------------------------------------------------------------------------

def test_subject_access_lists_the_requests_on_the_dataset(audit_api: AuditApi, scenario: Scenario) -> None:
    response = audit_api.get("dora", "/v1/audit/subject-access", dataset="einwohner", person_key="90817263545",
                             time_from=scenario.start)
    assert response.status_code == 200, response.text
    report = response.json()
    basis = {r["request_id"]: r["basis"] for r in report["requests"]}
    # aggregates by district carry no person keys: the requests read the dataset, that is all we know
    assert basis[scenario.request_id("anna_ok")] == basis[scenario.request_id("paula_ok")] == "dataset_read"
    assert scenario.request_id("anna_mueller") not in basis  # denied: nothing was returned
    assert scenario.request_id("sven_ok") not in basis  # another dataset
    assert report["unconfirmed"] >= 2 and "person_keys" in report["limits"]
    assert "90817263545" not in response.text  # 11 digits: not found by chance in hashes or times

    social = audit_api.post("dora", "/v1/audit/subject-access",
                            {"dataset": "sozialleistungen", "person_key": "90817263545",
                             "time_from": scenario.start}).json()
    social_basis = {r["request_id"]: r["basis"] for r in social["requests"]}
    assert social_basis[scenario.request_id("sven_ok")] == "dataset_read"  # no einwohner_id in that answer
    assert scenario.request_id("anna_ok") not in social_basis

    for user in ("aaron", "anna"):
        _problem(audit_api.get(user, "/v1/audit/subject-access", dataset="einwohner", person_key="90817263545"), 403)
    _problem(audit_api.get("dora", "/v1/audit/subject-access", dataset="nope", person_key="1"), 404,
             "unknown_dataset")
    _problem(audit_api.get("dora", "/v1/audit/subject-access", dataset="stadtteile", person_key="1"), 400,
             "no_person_key")
    reads = _records(audit_api, "aaron", time_from=scenario.start, event="audit_read", user="dora")
    searches = [r for r in reads if r["rules"] == ["audit.subject_access"]]
    assert searches and "90817263545" not in json.dumps(reads)


def test_subject_access_narrows_by_recorded_person_keys(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    ring = KeyRing(master=b"k" * 32, key_id="test")
    me = analyst_pseudonym(ring, "statistik", "person", "k4711z")
    other = analyst_pseudonym(ring, "statistik", "person", "4712")
    assert me.startswith("p_") and len(me) == 18 and me != other
    assert analyst_pseudonym(ring, "stadtplanung", "person", "k4711z") != me
    store = open_store(f"sqlite:///{tmp_path / 'audit.db'}", Ed25519PrivateKey.generate())

    def add(request_id: str, **fields: Any) -> None:
        base: dict[str, Any] = {"event": "query", "decision": "allow", "datasets": ["einwohner"],
                                "rows_returned": 5, "username": "anna", "purpose": "statistik"}
        store.append(AuditEvent(request_id=request_id, **{**base, **fields}))

    add("has-me", person_keys=[f"einwohner:{other}", f"einwohner:{me}"])
    add("without-me", person_keys=[f"einwohner:{other}"])
    add("plain-key", person_keys=["einwohner:k4711z"], purpose="sonder")
    add("not-recorded", person_keys=[])
    add("other-datasets-keys", datasets=["einwohner", "sozialleistungen"],
        person_keys=[f"sozialleistungen:{other}"])
    add("no-rows", rows_returned=0)
    add("denied", decision="deny", rows_returned=0)
    add("other-dataset", datasets=["sozialleistungen"])
    add("explain", event="explain")
    add("replayed-out")
    add("bloom-me", person_keys=encode_person_keys("einwohner", [me, *(f"p_{i:016x}" for i in range(1500))]))
    add("bloom-not-me", person_keys=encode_person_keys("einwohner", (f"p_{i:016x}" for i in range(1500))))
    try:
        report = requests_touching_person(store, "einwohner", "k4711z", key_ring=ring,
                                          replay=lambda r: False if r.event.request_id == "replayed-out" else None)
        basis = {m.request_id: m.basis for m in report.requests}
        assert basis == {"has-me": "person_key_recorded", "plain-key": "person_key_recorded",
                         "not-recorded": "dataset_read", "other-datasets-keys": "dataset_read",
                         "no-rows": "dataset_read", "bloom-me": "person_key_filter"}
        assert report.excluded_by_person_keys == 2 and report.excluded_by_replay == 1
        assert report.confirmed == 2 and report.unconfirmed == 4 and report.narrowed
        assert "k4711z" not in report.model_dump_json() and me not in report.model_dump_json()

        # without the key ring a pseudonymised record cannot be excluded, only kept
        kept = requests_touching_person(store, "einwohner", "k4711z", batch_size=2)
        assert {"has-me", "without-me", "bloom-not-me"} <= {m.request_id for m in kept.requests}
        # a pseudonym seen by an analyst matches records of that purpose and domain
        by_pseudonym = {m.request_id: m.basis for m in requests_touching_person(store, "einwohner", me).requests}
        assert by_pseudonym["has-me"] == "person_key_recorded" and "without-me" not in by_pseudonym
        confirmed = requests_touching_person(store, "einwohner", "k4711z", key_ring=ring, replay=lambda r: True)
        assert {m.basis for m in confirmed.requests} == {"person_key_recorded", "replay_confirmed"}
        # a grant with another domain is found only when that domain is passed
        assert "has-me" not in {m.request_id for m in requests_touching_person(
            store, "einwohner", "k4711z", key_ring=ring, domains=["elsewhere"]).requests}
    finally:
        store.close()


def test_pseudonym_domains_from_grants() -> None:
    grants = [{"dataset": "einwohner", "columns": {"id": {"op": "pseudonymise", "params": {"domain": "melde"}}}},
              {"dataset": "einwohner", "columns": {"id": {"op": "pseudonymise"}}},
              {"dataset": "einwohner", "columns": {"id": {"op": "plain"}}},
              {"dataset": "other", "columns": {"id": {"op": "pseudonymise", "params": {"domain": "x"}}}}]
    assert pseudonym_domains(grants, "einwohner", "id") == {"melde", "default", "person"}
    assert pseudonym_domains(None, "einwohner", None) == {"person", "default"}


def test_subject_access_against_a_real_answer(audit_api: AuditApi, scenario: Scenario,
                                              raw_db: duckdb.DuckDBPyConnection) -> None:
    """sven's answer carries pseudonymised einwohner_id values; the raw id of a returned row finds the
    request, and (once the pipeline records person keys) the id of a row not returned does not."""
    answer = audit_api.query("sven", "SELECT fall_id, einwohner_id FROM sozialleistungen ORDER BY fall_id LIMIT 3",
                             "sozialplanung")
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]
    fall_ids = [row[0] for row in answer.json()["rows"]]
    raw = dict(raw_db.execute("SELECT fall_id, einwohner_id FROM sozialleistungen").fetchall())
    returned = {str(raw[f]) for f in fall_ids}
    absent = next(str(v) for v in sorted(set(raw.values())) if str(v) not in returned)

    def search(key: str) -> dict[str, str]:
        response = audit_api.post("dora", "/v1/audit/subject-access",
                                  {"dataset": "sozialleistungen", "person_key": key, "time_from": scenario.start})
        assert response.status_code == 200, response.text
        assert f'"{key}"' not in response.text and f":{key}," not in response.text
        return {m["request_id"]: m["basis"] for m in response.json()["requests"]}

    record = _records(audit_api, "aaron", request_id=request_id)[0]
    assert "person_keys" not in record
    keys_recorded = record["person_keys_count"] > 0
    assert search(sorted(returned)[0])[request_id] == ("person_key_recorded" if keys_recorded else "dataset_read")
    if keys_recorded:
        assert request_id not in search(absent)
    else:
        assert search(absent)[request_id] == "dataset_read"


# --- CLI --------------------------------------------------------------------------------------------

def test_cli_list_show_and_receipt(runtime: Runtime, scenario: Scenario, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.audit import AuditFilter

    since = datetime.fromisoformat(scenario.start)
    assert audit_list(runtime.settings, AuditFilter(time_from=since, event="query"), "jsonl") == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line]
    assert scenario.request_id("sven_iban") in {r["request_id"] for r in lines}
    assert audit_list(runtime.settings, AuditFilter(time_from=since, username="paula"), "csv") == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert rows and {r["username"] for r in rows} == {"paula"}
    assert audit_list(runtime.settings, AuditFilter(time_from=since, event="query"), "table", limit=5) == 0
    assert "5 records" in capsys.readouterr().out

    seq = lines[0]["seq"]
    assert audit_show(runtime.settings, seq) == 0
    assert json.loads(capsys.readouterr().out)["seq"] == seq
    assert audit_show(runtime.settings, 999_999_999) == 1
    capsys.readouterr()

    response_file = tmp_path / "answer.json"
    response_file.write_text(json.dumps(scenario.results["paula_ok"].json()), encoding="utf-8")
    assert audit_verify_receipt(runtime.settings, response_file) == 0
    assert "valid" in capsys.readouterr().out
    receipt = scenario.results["paula_ok"].json()["receipt"]
    tampered = tmp_path / "tampered.json"
    tampered.write_text(json.dumps({**receipt, "policy_version": "forged"}), encoding="utf-8")
    assert audit_verify_receipt(runtime.settings, tampered) == 1
    assert "INVALID" in capsys.readouterr().out
