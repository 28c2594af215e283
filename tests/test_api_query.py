"""The reference scenario through the HTTP API, with real tokens from the demo OIDC provider."""

from __future__ import annotations

import json
from typing import Any

import duckdb
import pytest

from tests.conftest import Api

PROTECTED_EINWOHNER = ("vorname", "nachname", "strasse", "telefon", "email", "steuer_id")


@pytest.fixture(scope="module")
def raw_protected(raw_db: duckdb.DuckDBPyConnection) -> set[str]:
    """Every raw value of anna's masked or denied einwohner columns (and birth dates as ISO text)."""
    values: set[str] = set()
    for column in PROTECTED_EINWOHNER:
        values.update(
            str(v)
            for (v,) in raw_db.execute(f"SELECT DISTINCT {column} FROM einwohner").fetchall()
            if v is not None
        )
    values.update(str(v) for (v,) in raw_db.execute("SELECT DISTINCT geburtsdatum FROM einwohner").fetchall())
    return values


def _ok(response: Any) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _assert_no_raw(body: dict[str, Any], raw: set[str]) -> None:
    """No text cell of a non-plain column equals a raw protected value, and no raw contact detail
    appears anywhere in the response text. (Numbers are counts, years or pseudonymised ids here.)"""
    columns = body["columns"]
    for row in body["rows"]:
        for column, cell in zip(columns, row, strict=True):
            if column["masking"] == "plain" or not isinstance(cell, str):
                continue
            assert str(cell) not in raw, f"raw value leaked in column {column['name']}"
    text = json.dumps(body, ensure_ascii=False)
    for value in raw:
        if len(value) >= 9 and ("@" in value or value.replace(" ", "").isdigit()):
            assert value not in text


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith("/" + code)
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


class TestAnna:
    def test_star_is_masked_and_tax_id_left_out(self, api: Api, raw_protected: set[str]) -> None:
        body = _ok(api.query("anna", "SELECT * FROM einwohner LIMIT 50", "statistik"))
        names = [c["name"] for c in body["columns"]]
        assert "steuer_id" not in names
        masking = {c["name"]: c["masking"] for c in body["columns"]}
        assert masking["vorname"] == masking["nachname"] == masking["id"] == "pseudonymise"
        assert masking["telefon"] == masking["email"] == masking["strasse"] == "redact"
        assert masking["geburtsdatum"] == "generalise"
        assert body["row_count"] == 50 and not body["truncated"]
        row = dict(zip(names, body["rows"][0], strict=True))
        assert str(row["vorname"]).startswith("p_") and len(row["vorname"]) == 18
        assert row["telefon"] in ("***", None)
        assert isinstance(row["geburtsdatum"], int) and 1900 < row["geburtsdatum"] < 2030
        _assert_no_raw(body, raw_protected)

    def test_pseudonyms_are_stable(self, api: Api) -> None:
        sql = "SELECT id, vorname FROM einwohner ORDER BY zuzug_am, plz LIMIT 5"
        first = _ok(api.query("anna", sql, "statistik"))["rows"]
        second = _ok(api.query("anna", sql, "statistik"))["rows"]
        assert first == second

    def test_selecting_tax_id_is_refused_with_the_rule(self, api: Api) -> None:
        body = _problem(
            api.query("anna", "SELECT nachname, steuer_id FROM einwohner", "statistik"), 403, "column_denied"
        )
        assert body["rule"] == "einwohner.deny_tax_id"
        assert "steuer_id" in body["detail"]

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT x.vn FROM (SELECT vorname AS vn, nachname FROM einwohner) AS x LIMIT 20",
            "WITH t AS (SELECT vorname, nachname, telefon FROM einwohner) SELECT * FROM t LIMIT 20",
            "SELECT a.vorname, b.nachname, a.email FROM einwohner a JOIN einwohner b ON a.id = b.id LIMIT 20",
            "SELECT vorname FROM einwohner UNION ALL SELECT nachname FROM einwohner LIMIT 40",
            "SELECT e.vorname AS stadtteil, e.strasse AS plz FROM einwohner AS e LIMIT 20",
            "SELECT upper(vorname) AS v, lower(nachname) || email AS n FROM einwohner LIMIT 20",
            "SELECT * FROM (SELECT * FROM einwohner) AS inner_q LIMIT 20",
            "SELECT vorname, count(*) AS n FROM einwohner GROUP BY vorname ORDER BY n DESC LIMIT 20",
            "SELECT geburtsdatum, count(*) FROM einwohner GROUP BY 1 ORDER BY 1 LIMIT 20",
            "SELECT stadtteil, vorname, row_number() OVER (PARTITION BY stadtteil ORDER BY zuzug_am) AS rn "
            "FROM einwohner LIMIT 20",
            "SELECT s.stadtteil, e.nachname FROM stadtteile s LEFT JOIN einwohner e ON e.stadtteil = s.stadtteil "
            "LIMIT 20",
            "SELECT (SELECT max(nachname) FROM einwohner) AS m",
            "SELECT CAST(id AS VARCHAR) || '-' || telefon AS x FROM einwohner LIMIT 20",
        ],
    )
    def test_query_shapes_never_reach_raw_values(self, api: Api, raw_protected: set[str], sql: str) -> None:
        body = _ok(api.query("anna", sql, "statistik"))
        assert body["row_count"] > 0
        _assert_no_raw(body, raw_protected)

    @pytest.mark.parametrize(
        "sql",
        [
            "SELECT e FROM einwohner e",
            "SELECT e::text FROM einwohner e",
        ],
    )
    def test_whole_row_references_are_refused(self, api: Api, sql: str) -> None:
        _problem(api.query("anna", sql, "statistik"), 422, "whole_row_reference")

    def test_filter_on_pseudonymised_name_is_refused(self, api: Api) -> None:
        body = _problem(
            api.query("anna", "SELECT count(*) FROM einwohner WHERE nachname = 'Müller'", "statistik"),
            403,
            "column_use_not_allowed",
        )
        assert body["rule"] == "einwohner.pseudonymise_names"
        assert "Müller" not in body["detail"]

    def test_purpose_not_held(self, api: Api) -> None:
        body = _problem(api.query("anna", "SELECT plz FROM einwohner", "stadtplanung"), 403, "access_denied")
        assert body["rule"] == "purpose_binding.purpose_not_held"

    def test_other_offices_data_is_denied(self, api: Api) -> None:
        body = _problem(
            api.query("anna", "SELECT fall_id FROM sozialleistungen", "statistik"), 403, "access_denied"
        )
        assert "purpose_binding.purpose_not_permitted" in body["rules"]


class TestSven:
    def test_only_own_districts_with_free_text_masked(
        self, api: Api, raw_db: duckdb.DuckDBPyConnection
    ) -> None:
        body = _ok(
            api.query(
                "sven",
                "SELECT fall_id, stadtteil, bemerkung, einwohner_id FROM sozialleistungen",
                "sozialplanung",
            )
        )
        assert body["row_count"] > 0
        masking = {c["name"]: c["masking"] for c in body["columns"]}
        assert masking["bemerkung"] == "free_text" and masking["einwohner_id"] == "pseudonymise"
        assert {row[1] for row in body["rows"]} == {"Biebrich", "Dotzheim"}
        raw = {
            fall: (iban, bem, nachname, telefon)
            for fall, iban, bem, nachname, telefon in raw_db.execute(
                "SELECT s.fall_id, s.iban, s.bemerkung, e.nachname, e.telefon FROM sozialleistungen s "
                "JOIN einwohner e ON e.id = s.einwohner_id"
            ).fetchall()
        }
        changed = 0
        for fall_id, _, masked, pseudonym in body["rows"]:
            iban, original, nachname, telefon = raw[fall_id]
            assert str(pseudonym).startswith("p_")
            if masked is None:
                continue
            assert iban not in masked.replace(" ", "")
            if telefon:
                assert telefon not in masked
            if original and nachname in original:
                assert nachname not in masked, "the resident's surname survived masking"
            changed += masked != original
        assert changed > 0

    def test_row_filter_holds_under_or_union_and_subquery(self, api: Api) -> None:
        for sql in (
            "SELECT DISTINCT stadtteil FROM sozialleistungen WHERE stadtteil = 'Mitte' OR 1 = 1",
            "SELECT stadtteil FROM sozialleistungen WHERE NOT (stadtteil IN ('Biebrich')) OR stadtteil IS NULL "
            "UNION SELECT stadtteil FROM sozialleistungen",
            "SELECT DISTINCT s.stadtteil FROM stadtteile t LEFT JOIN sozialleistungen s ON true",
            "SELECT stadtteil FROM (SELECT * FROM sozialleistungen) q WHERE q.stadtteil <> 'Biebrich' OR true",
        ):
            rows = _ok(api.query("sven", sql, "sozialplanung"))["rows"]
            assert {r[0] for r in rows} <= {"Biebrich", "Dotzheim", None}, sql

    def test_iban_denied(self, api: Api) -> None:
        body = _problem(
            api.query("sven", "SELECT iban FROM sozialleistungen", "sozialplanung"), 403, "column_denied"
        )
        assert body["rule"] == "sozialleistungen.deny_iban"

    def test_free_text_cannot_be_filtered(self, api: Api) -> None:
        body = _problem(
            api.query(
                "sven", "SELECT fall_id FROM sozialleistungen WHERE bemerkung LIKE '%Herr%'", "sozialplanung"
            ),
            403,
            "column_use_not_allowed",
        )
        assert body["rule"] == "sozialleistungen.scan_free_text"

    def test_einwohner_denied(self, api: Api) -> None:
        body = _problem(api.query("sven", "SELECT * FROM einwohner", "sozialplanung"), 403, "access_denied")
        assert body["rule"].startswith("purpose_binding") or body["rule"].startswith("abac")


class TestPaula:
    def test_aggregates_with_small_cells_suppressed(self, api: Api) -> None:
        body = _ok(
            api.query(
                "paula",
                "SELECT stadtteil, staatsangehoerigkeit, count(*) AS n FROM einwohner "
                "GROUP BY stadtteil, staatsangehoerigkeit",
                "stadtplanung",
            )
        )
        names = [c["name"] for c in body["columns"]]
        assert names == ["stadtteil", "staatsangehoerigkeit", "n", "_suppressed"]
        suppressed = [r for r in body["rows"] if r[3]]
        released = [r for r in body["rows"] if not r[3]]
        assert suppressed and released
        assert all(r[2] is None for r in suppressed)
        assert all(r[2] >= 3 for r in released)

    def test_microdata_is_refused(self, api: Api) -> None:
        body = _problem(
            api.query("paula", "SELECT vorname, stadtteil FROM einwohner", "stadtplanung"),
            403,
            "aggregate_only",
        )
        assert body["rule"] == "einwohner.aggregate_only_min_cell"

    def test_single_row_aggregates_are_refused(self, api: Api) -> None:
        _problem(
            api.query(
                "paula", "SELECT stadtteil, max(zuzug_am) FROM einwohner GROUP BY stadtteil", "stadtplanung"
            ),
            403,
            "aggregate_not_allowed",
        )

    def test_population_by_district_is_useful(self, api: Api, raw_db: duckdb.DuckDBPyConnection) -> None:
        body = _ok(
            api.query(
                "paula", "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil", "stadtplanung"
            )
        )
        raw = dict(raw_db.execute("SELECT stadtteil, count(*) FROM einwohner GROUP BY 1").fetchall())
        for stadtteil, n, suppressed in body["rows"]:
            if not suppressed:
                assert n == raw[stadtteil]

    def test_social_data_denied(self, api: Api) -> None:
        _problem(
            api.query("paula", "SELECT count(*) FROM sozialleistungen", "stadtplanung"), 403, "access_denied"
        )


class TestOversightRoles:
    @pytest.mark.parametrize("user,purpose", [("dora", "datenschutzkontrolle"), ("aaron", "revision")])
    def test_no_personal_data(self, api: Api, user: str, purpose: str) -> None:
        body = _problem(api.query(user, "SELECT count(*) FROM einwohner", purpose), 403, "access_denied")
        assert "separation_of_duties.oversight_no_personal_data" in body["rules"]

    def test_open_data_for_everyone(self, api: Api) -> None:
        body = _ok(api.query("aaron", "SELECT stadtteil, einwohner_gesamt FROM stadtteile", "revision"))
        assert body["row_count"] == 26


class TestAuthentication:
    def test_no_token_is_401_with_challenge(self, api: Api) -> None:
        response = api.query(None, "SELECT 1", "statistik")
        _problem(response, 401, "token_missing")
        assert response.headers["www-authenticate"].startswith("Bearer")

    def test_garbage_token(self, api: Api) -> None:
        response = api.client.post(
            "/v1/query",
            json={"sql": "SELECT 1", "purpose": "x"},
            headers={"Authorization": "Bearer not.a.token"},
        )
        body = _problem(response, 401, response.json()["code"])
        assert "not.a.token" not in response.text
        assert body["code"].startswith("token_")

    def test_id_token_is_not_an_access_token(self, api: Api, oidc_provider: Any) -> None:
        id_token = oidc_provider.id_token("anna")
        response = api.client.post(
            "/v1/query",
            json={"sql": "SELECT 1", "purpose": "statistik"},
            headers={"Authorization": f"Bearer {id_token}"},
        )
        assert response.status_code == 401
        assert id_token not in response.text


class TestDatasets:
    def test_anna_sees_her_datasets_and_treatments(self, api: Api) -> None:
        response = api.get("anna", "/v1/datasets")
        assert response.status_code == 200
        datasets = {d["name"]: d for d in response.json()["datasets"]}
        assert set(datasets) == {"stadtteile", "einwohner"}
        columns = {c["name"]: c for c in datasets["einwohner"]["columns"]}
        assert columns["steuer_id"]["treatment"] == "deny"
        assert columns["vorname"]["treatment"] == "pseudonymise"

    def test_paula_is_aggregate_only(self, api: Api) -> None:
        datasets = {d["name"]: d for d in api.get("paula", "/v1/datasets").json()["datasets"]}
        assert datasets["einwohner"]["access"] == "aggregate_only"
        assert datasets["einwohner"]["min_cell"] == 3


class TestExplain:
    def test_analyst_sees_masks_not_sql(self, api: Api) -> None:
        response = api.client.post("/v1/query/explain", json={"sql": "SELECT vorname, plz FROM einwohner",
                                                              "purpose": "statistik"},
                                   headers={"Authorization": f"Bearer {api.token('anna')}"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["allow"] and body["rewritten_sql"] is None
        assert [c["masking"] for c in body["columns"]] == ["pseudonymise", "plain"]
        assert body["datasets"]["einwohner"]["columns"]["steuer_id"]["treatment"] == "deny"

    def test_dpo_explains_on_behalf_and_sees_sql_without_keys(self, api: Api, runtime: Any) -> None:
        response = api.client.post("/v1/query/explain", json={
            "sql": "SELECT einwohner_id, stadtteil FROM sozialleistungen WHERE betrag_monat > 500",
            "purpose": "sozialplanung",
            "on_behalf_of": {"username": "sven", "office": "Amt für Soziale Arbeit", "roles": ["analyst"],
                             "purposes": ["sozialplanung"], "districts": ["Biebrich"],
                             "clearance": "streng_vertraulich"}},
            headers={"Authorization": f"Bearer {api.token('dora')}"})
        assert response.status_code == 200, response.text
        sql = response.json()["rewritten_sql"]
        assert "gw_pseudonyms" in sql and "500" not in sql  # pseudonyms read from the replica, no key
        key_hex = runtime.gateway.key_ring.pseudonym_key("sozialplanung", "person")
        assert key_hex not in response.text
        assert "sozialleistungen.own_districts_only" in response.text

    def test_analysts_cannot_explain_for_others(self, api: Api) -> None:
        response = api.client.post("/v1/query/explain", json={
            "sql": "SELECT 1", "purpose": "statistik", "on_behalf_of": {"username": "sven"}},
            headers={"Authorization": f"Bearer {api.token('anna')}"})
        assert response.status_code == 403
        assert response.json()["code"] == "explain_not_allowed"


def test_detokenise_needs_the_reidentification_role(api: Api) -> None:
    body = {"purpose": "statistik", "domain": "person", "tokens": ["t_x.y"],
            "reason": "Rückfrage des Bürgeramts zum Fall"}
    response = api.client.post("/v1/detokenise", json=body,
                               headers={"Authorization": f"Bearer {api.token('anna')}"})
    assert response.status_code == 403
    assert response.json()["code"] == "reidentification_not_permitted"


def test_healthz_reports_the_policy_reload_state(api: Api) -> None:
    body = api.client.get("/healthz").json()
    assert body["status"] == "ok"
    assert body["policy_reload"]["version"] == body["policy_version"]
    assert body["policy_reload"]["last_error"] is None
