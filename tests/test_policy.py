"""Tests of the policy layer: reference outcomes, embedded-vs-OPA conformance, Rego unit tests, lint, reload.

The OPA backend is exercised against tests/opa_compat_server.py, a stand-in that speaks OPA's REST
data API but evaluates with regopy (no OPA binary can be installed here); CI never sets
GATEWAY_TEST_OPA_URL and always takes this path. To check the reference cases against a real OPA (the
docker-compose ``opa`` service publishes no port), serve the reference policy as a bundle and point the
tests at it:

    gateway policy bundle /tmp/b && opa run --server -b /tmp/b
    GATEWAY_TEST_OPA_URL=http://127.0.0.1:8181 pytest tests/test_policy.py -k "opa or conformance"

In that mode nothing is pushed (the bundle's roots make OPA refuse writes): the tests first check that
OPA serves exactly the reference policy's revision. The edge cases need a second bundle that only the
stand-in can be given, so the conformance test then fails naming them instead of skipping them.
"""

from __future__ import annotations

import http.server
import io
import os
import shutil
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalog import Catalog, DefaultMask, load_catalog
from gateway.demo.oidc_provider import DEMO_USERS
from gateway.errors import PolicyUnavailable
from gateway.identity.principal import Principal
from gateway.policy.decision import Decision, PolicyInput
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import PolicyBundle, load_bundle
from gateway.policy.inputs import build_input
from gateway.policy.lint import Finding, check_policy, policy_check_main
from gateway.policy.opa import OpaPolicyEngine, push_bundle
from gateway.policy.reload import ReloadingPolicyEngine
from gateway.policy.testing import policy_test_main, run_rego_tests
from tests.opa_compat_server import run_compat_server

ROOT = Path(__file__).resolve().parents[1]
POLICY_DIR = ROOT / "policies"
CATALOG_PATH = POLICY_DIR / "catalog.yaml"
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
DATASETS = ("stadtteile", "einwohner", "sozialleistungen", "anliegen")
PURPOSES = ("statistik", "stadtplanung", "sozialplanung", "buergerservice", "datenschutzkontrolle", "revision")

PURPOSE_NOT_HELD = "purpose_binding.purpose_not_held"
NOT_PERMITTED = "purpose_binding.purpose_not_permitted"
UNKNOWN = "catalog.unknown_dataset"
OVERSIGHT = "separation_of_duties.oversight_no_personal_data"
CLEARANCE = "abac.clearance_too_low"
NO_GRANT = "abac.no_grant"
NO_AGREEMENT = "sovereignty.no_data_use_agreement"
OFFICE_HOURS = "time_bound.outside_office_hours"


# ---------------------------------------------------------------------------------------------
# fixtures
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(CATALOG_PATH)


@pytest.fixture(scope="module")
def bundle(catalog: Catalog) -> PolicyBundle:
    return load_bundle(POLICY_DIR, catalog)


@pytest.fixture(scope="module")
def embedded(bundle: PolicyBundle) -> EmbeddedPolicyEngine:
    return EmbeddedPolicyEngine(bundle)


STEUERAMT = "Kassen- und Steueramt"
STATISTIKAMT = "Amt für Statistik und Stadtforschung"


def _edge_bundle(bundle: PolicyBundle) -> PolicyBundle:
    """The reference bundle with validity dates on anna's grant (local days 2025-01-02 to 2025-02-28), and
    two synthetic datasets for the legal-regime cases: ``grundsteuer`` (tax secrecy, the tax office) and
    ``zensus_haushalte`` (statistics secrecy, the sealed-off statistics unit), with grants, one agreement
    covering both and einwohner, and a bridge tax_secrecy + statistics_secrecy for statistik."""
    data = yaml.safe_load(yaml.safe_dump(bundle.data))  # deep copy
    for grant in data["grants"]:
        if grant["id"] == "einwohner.statistik":
            grant.update(valid_from="2025-01-02", valid_until="2025-02-28")
    column = {"stadtteil": {"class": "quasi_identifier", "type": "VARCHAR"},
              "betrag": {"class": "sensitive", "type": "DOUBLE"}}
    common = {"classification": "vertraulich", "person_key": None, "connector": "demo", "columns": column}
    data["catalog"]["grundsteuer"] = {**common, "owner": STEUERAMT, "legal_regime": "tax_secrecy",
                                      "legal_basis": "§ 30 Abs. 4 Nr. 2 AO", "purposes": ["statistik"]}
    data["catalog"]["zensus_haushalte"] = {**common, "owner": STATISTIKAMT, "legal_regime": "statistics_secrecy",
                                           "legal_basis": "§ 16 BStatG", "purposes": ["statistik", "stadtplanung"]}
    plain = {"stadtteil": {"op": "plain", "rule": "edge.plain"}, "betrag": {"op": "plain", "rule": "edge.plain"}}
    data["grants"] += [
        {"id": "edge.grundsteuer_statistik", "dataset": "grundsteuer", "purpose": "statistik", "columns": plain},
        {"id": "edge.zensus_statistik", "dataset": "zensus_haushalte", "purpose": "statistik", "columns": plain},
        # granted by mistake for an administrative purpose: the Rückspielverbot still refuses it
        {"id": "edge.zensus_planung", "dataset": "zensus_haushalte", "purpose": "stadtplanung", "columns": plain},
    ]
    data["agreements"] += [
        {"id": "edge.dnv_steuer", "parties": [STEUERAMT, STATISTIKAMT, "Bürgeramt"],
         "datasets": ["grundsteuer", "einwohner", "zensus_haushalte"], "purposes": ["statistik"],
         "valid_from": "2025-01-01", "valid_until": "2025-12-31"},
        {"id": "edge.dnv_zensus_planung", "parties": [STATISTIKAMT, "Stadtplanungsamt"],
         "datasets": ["zensus_haushalte"], "purposes": ["stadtplanung"],
         "valid_from": "2025-01-01", "valid_until": "2025-12-31"},
    ]
    data["regime_bridges"] = [{"id": "edge.bridge_steuer_statistik", "regimes": ["tax_secrecy", "statistics_secrecy"],
                               "purposes": ["statistik"], "legal_basis": "§ 30 Abs. 4 Nr. 2 AO i. V. m. § 16 BStatG"}]
    return PolicyBundle(modules=bundle.modules, data=data, version=bundle.version + "+edge",
                        test_modules=bundle.test_modules)


@pytest.fixture(scope="module")
def opa_urls() -> Iterator[tuple[str, str]]:
    """(reference, edge) OPA URLs: the compat stand-in, or GATEWAY_TEST_OPA_URL for one real OPA."""
    real = os.environ.get("GATEWAY_TEST_OPA_URL")
    if real:
        yield real, real
        return
    with run_compat_server() as ref_url, run_compat_server() as edge_url:
        yield ref_url, edge_url


@pytest.fixture(scope="module")
def engines(bundle: PolicyBundle, opa_urls: tuple[str, str]) -> dict[str, tuple[Any, Any]]:
    """name -> (embedded, opa) for the reference and the edge bundle."""
    edge = _edge_bundle(bundle)
    ref_url, edge_url = opa_urls
    if edge_url == ref_url:  # GATEWAY_TEST_OPA_URL: a real OPA serving the reference bundle, never pushed to
        real = OpaPolicyEngine(ref_url, version=bundle.version, check_revision=True)
        try:
            real.verify_revision(force=True)
        except PolicyUnavailable as exc:
            pytest.fail(f"GATEWAY_TEST_OPA_URL={ref_url} must serve the reference policy as a bundle "
                        f"(gateway policy bundle /tmp/b && opa run --server -b /tmp/b): {exc.detail}")
        return {"reference": (EmbeddedPolicyEngine(bundle), real)}
    push_bundle(ref_url, bundle)
    push_bundle(edge_url, edge)
    return {
        "reference": (EmbeddedPolicyEngine(bundle), OpaPolicyEngine(ref_url, version=bundle.version)),
        "edge": (EmbeddedPolicyEngine(edge), OpaPolicyEngine(edge_url, version=edge.version)),
    }


def principal(user: str, **changes: Any) -> Principal:
    claims = {**DEMO_USERS[user], **changes}
    return Principal(
        subject=str(claims["sub"]), username=str(claims["preferred_username"]),
        office=claims.get("office"), roles=tuple(claims.get("roles", ())),
        purposes=tuple(claims.get("purposes", ())), districts=tuple(claims.get("districts", ())),
        clearance=claims.get("clearance"),
    )


def request(user: str, purpose: str, datasets: list[str], *, now: datetime = NOW, address: str = "127.0.0.1",
            **changes: Any) -> PolicyInput:
    return build_input(principal(user, **changes), purpose, datasets, now=now, client_address=address)


def own_purpose(user: str) -> str:
    purposes = DEMO_USERS[user]["purposes"]
    assert isinstance(purposes, list)
    return str(purposes[0])


def held_purposes(user: str) -> set[str]:
    purposes = DEMO_USERS[user]["purposes"]
    assert isinstance(purposes, list)
    return {str(p) for p in purposes}


def denial_rules(decision: Decision) -> set[str]:
    return {d.rule for d in decision.denials}


# ---------------------------------------------------------------------------------------------
# The reference scenario: expected outcomes
# ---------------------------------------------------------------------------------------------

ANNA_MASKS = {
    "id": ("pseudonymise", "einwohner.pseudonymise_person_key"),
    "vorname": ("pseudonymise", "einwohner.pseudonymise_names"),
    "nachname": ("pseudonymise", "einwohner.pseudonymise_names"),
    "geburtsdatum": ("generalise", "einwohner.generalise_birth_date"),
    "geschlecht": ("plain", "einwohner.statistik"),
    "strasse": ("redact", "einwohner.redact_contact"),
    "hausnummer": ("redact", "einwohner.redact_contact"),
    "plz": ("plain", "einwohner.statistik"),
    "stadtteil": ("plain", "einwohner.statistik"),
    "staatsangehoerigkeit": ("plain", "einwohner.statistik"),
    "steuer_id": ("deny", "einwohner.deny_tax_id"),
    "telefon": ("redact", "einwohner.redact_contact"),
    "email": ("redact", "einwohner.redact_contact"),
    "zuzug_am": ("plain", "einwohner.statistik"),
}


def test_anna_statistik_einwohner_masks_as_in_grants(embedded: EmbeddedPolicyEngine) -> None:
    d = embedded.decide(request("anna", "statistik", ["einwohner"]))
    assert d.allow and not d.denials
    ds = d.datasets["einwohner"]
    assert ds.rules == ("einwohner.statistik",)
    assert {c: (r.op, r.rule) for c, r in ds.columns.items()} == ANNA_MASKS
    assert ds.columns["steuer_id"].permitted_uses() == ()
    assert ds.columns["geburtsdatum"].params == {"to": "year"}
    assert ds.columns["id"].params == {"domain": "person"}
    assert ds.row_filters == () and ds.aggregate_only is None and ds.max_rows == 100_000
    assert d.policy_version == embedded.version


def test_anna_columns_match_grants_yaml(embedded: EmbeddedPolicyEngine, bundle: PolicyBundle) -> None:
    grant = next(g for g in bundle.data["grants"] if g["id"] == "einwohner.statistik")
    ds = embedded.decide(request("anna", "statistik", ["einwohner"])).datasets["einwohner"]
    for col, spec in grant["columns"].items():
        assert ds.columns[col].op == spec["op"]
        assert ds.columns[col].rule == spec["rule"]
        assert ds.columns[col].params == spec.get("params", {})


def test_sven_only_own_districts(embedded: EmbeddedPolicyEngine) -> None:
    d = embedded.decide(request("sven", "sozialplanung", ["sozialleistungen"]))
    assert d.allow
    ds = d.datasets["sozialleistungen"]
    assert [(f.column, f.op, f.values, f.rule) for f in ds.row_filters] == [
        ("stadtteil", "in", ("Biebrich", "Dotzheim"), "sozialleistungen.own_districts_only"),
        ("ende", "not_before_days", (3650,), "retention.deletion_period"),
    ]
    assert ds.row_filters[1].keep_null
    assert ds.columns["iban"].op == "deny" and ds.columns["bemerkung"].op == "free_text"
    assert ds.columns["einwohner_id"].op == "pseudonymise"


def test_paula_aggregate_only(embedded: EmbeddedPolicyEngine) -> None:
    d = embedded.decide(request("paula", "stadtplanung", ["einwohner"]))
    assert d.allow
    ds = d.datasets["einwohner"]
    assert ds.aggregate_only is not None
    assert (ds.aggregate_only.min_cell, ds.aggregate_only.rule) == (3, "einwohner.aggregate_only_min_cell")
    assert ds.max_rows is None
    assert ds.columns["steuer_id"].op == "deny"


@pytest.mark.parametrize("user", sorted(DEMO_USERS))
def test_everyone_reads_public_stadtteile(embedded: EmbeddedPolicyEngine, user: str) -> None:
    d = embedded.decide(request(user, own_purpose(user), ["stadtteile"]))
    assert d.allow
    ds = d.datasets["stadtteile"]
    assert ds.rules == ("open_data.public_dataset",)
    assert {r.op for r in ds.columns.values()} == {"plain"}


#: the demo users with their own purpose on each non-public dataset -> the denial rules
#: (every case reads another office's data without a data-use agreement; NOW is a Sunday, outside bea's
#: office hours)
DENIED_OWN_PURPOSE: dict[tuple[str, str], set[str]] = {
    ("anna", "sozialleistungen"): {NOT_PERMITTED, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("anna", "anliegen"): {NOT_PERMITTED, NO_GRANT, NO_AGREEMENT},
    ("sven", "einwohner"): {NOT_PERMITTED, NO_GRANT, NO_AGREEMENT},
    ("sven", "anliegen"): {NOT_PERMITTED, NO_GRANT, NO_AGREEMENT},
    ("paula", "sozialleistungen"): {NOT_PERMITTED, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("paula", "anliegen"): {NOT_PERMITTED, NO_GRANT, NO_AGREEMENT},
    ("bea", "einwohner"): {NOT_PERMITTED, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("bea", "sozialleistungen"): {NOT_PERMITTED, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("bea", "anliegen"): {OFFICE_HOURS},
    ("dora", "einwohner"): {NOT_PERMITTED, OVERSIGHT, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("dora", "sozialleistungen"): {NOT_PERMITTED, OVERSIGHT, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("dora", "anliegen"): {NOT_PERMITTED, OVERSIGHT, NO_GRANT, NO_AGREEMENT},
    ("dirk", "einwohner"): {NOT_PERMITTED, OVERSIGHT, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("dirk", "sozialleistungen"): {NOT_PERMITTED, OVERSIGHT, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("dirk", "anliegen"): {NOT_PERMITTED, OVERSIGHT, NO_GRANT, NO_AGREEMENT},
    ("aaron", "einwohner"): {NOT_PERMITTED, OVERSIGHT, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("aaron", "sozialleistungen"): {NOT_PERMITTED, OVERSIGHT, CLEARANCE, NO_GRANT, NO_AGREEMENT},
    ("aaron", "anliegen"): {NOT_PERMITTED, OVERSIGHT, NO_GRANT, NO_AGREEMENT},
}
ALLOWED_OWN_PURPOSE = {("anna", "einwohner"), ("sven", "sozialleistungen"), ("paula", "einwohner")}


@pytest.mark.parametrize(("user", "dataset"), sorted(DENIED_OWN_PURPOSE))
def test_everything_else_denied_with_named_rule(embedded: EmbeddedPolicyEngine, user: str, dataset: str) -> None:
    d = embedded.decide(request(user, own_purpose(user), [dataset]))
    assert not d.allow
    assert denial_rules(d) == DENIED_OWN_PURPOSE[(user, dataset)]
    assert dataset not in d.datasets
    for denial in d.denials:
        assert denial.message and (denial.dataset in (dataset, None))


def test_own_purpose_table_is_complete() -> None:
    cases = {(u, ds) for u in DEMO_USERS for ds in DATASETS if ds != "stadtteile"}
    assert cases == set(DENIED_OWN_PURPOSE) | ALLOWED_OWN_PURPOSE


@pytest.mark.parametrize("user", sorted(DEMO_USERS))
@pytest.mark.parametrize("dataset", [ds for ds in DATASETS if ds != "stadtteile"])
def test_purpose_not_held_always_denied(embedded: EmbeddedPolicyEngine, user: str, dataset: str) -> None:
    held = held_purposes(user)
    for purpose in PURPOSES:
        if purpose in held:
            continue
        d = embedded.decide(request(user, purpose, [dataset]))
        assert not d.allow
        assert PURPOSE_NOT_HELD in denial_rules(d)


def test_unknown_dataset_denied(embedded: EmbeddedPolicyEngine) -> None:
    d = embedded.decide(request("anna", "statistik", ["einwohner", "geheimakten"]))
    assert not d.allow
    assert [(x.rule, x.dataset) for x in d.denials] == [(UNKNOWN, "geheimakten")]


def test_one_denied_dataset_refuses_the_whole_request(embedded: EmbeddedPolicyEngine) -> None:
    d = embedded.decide(request("anna", "statistik", ["einwohner", "sozialleistungen"]))
    assert not d.allow
    assert d.datasets["einwohner"].allow  # the treatment is computed, but the request is refused


def test_empty_districts_give_a_filter_matching_nothing(embedded: EmbeddedPolicyEngine) -> None:
    d = embedded.decide(request("sven", "sozialplanung", ["sozialleistungen"], districts=[]))
    assert d.allow
    flt, retention = d.datasets["sozialleistungen"].row_filters
    assert flt.values == () and flt.rule == "sozialleistungen.own_districts_only"
    assert retention.rule == "retention.deletion_period"


def test_expired_grant_denied_via_context_time(bundle: PolicyBundle) -> None:
    engine = EmbeddedPolicyEngine(_edge_bundle(bundle))
    before = engine.decide(request("anna", "statistik", ["einwohner"], now=datetime(2025, 2, 1, tzinfo=UTC)))
    after = engine.decide(request("anna", "statistik", ["einwohner"], now=NOW))
    assert before.allow
    assert not after.allow and denial_rules(after) == {"time_bound.expired"}


# ---------------------------------------------------------------------------------------------
# Conformance: embedded (regopy in-process) == OPA REST backend
# ---------------------------------------------------------------------------------------------


def _conformance_cases() -> list[tuple[str, str, PolicyInput]]:
    cases: list[tuple[str, str, PolicyInput]] = []
    for user in sorted(DEMO_USERS):
        for purpose in PURPOSES:
            for ds in DATASETS:
                cases.append((f"{user}-{purpose}-{ds}", "reference", request(user, purpose, [ds])))
            cases.append((f"{user}-{purpose}-all", "reference", request(user, purpose, list(DATASETS))))
    edge = [
        ("unknown-dataset", request("anna", "statistik", ["einwohner", "geheimakten"])),
        ("only-unknown", request("anna", "statistik", ["geheimakten"])),
        ("purpose-not-held", request("anna", "sozialplanung", ["einwohner"])),
        ("dpo-personal", request("dora", "datenschutzkontrolle", ["einwohner", "anliegen"])),
        ("auditor-personal", request("aaron", "revision", ["sozialleistungen"])),
        ("dpo-with-grant-role", request("anna", "statistik", ["einwohner"], roles=["analyst", "dpo"])),
        ("empty-districts", request("sven", "sozialplanung", ["sozialleistungen"], districts=[])),
        ("no-clearance", request("anna", "statistik", ["einwohner"], clearance=None)),
        ("no-office", request("anna", "statistik", ["einwohner"], office=None)),
        ("empty-request", request("anna", "statistik", [])),
        ("public-and-private", request("sven", "sozialplanung", ["stadtteile", "sozialleistungen"])),
    ]
    tuesday_10h = datetime(2025, 6, 3, 8, 0, tzinfo=UTC)  # 10:00 in Wiesbaden
    edge += [  # sovereignty, residency, time rules
        ("outside-network", request("sven", "sozialplanung", ["sozialleistungen"], address="203.0.113.9")),
        ("no-address", request("sven", "sozialplanung", ["sozialleistungen"], address="")),
        ("ipv6-loopback", request("sven", "sozialplanung", ["sozialleistungen"], address="::1")),
        ("office-hours-in", request("bea", "buergerservice", ["anliegen"], now=tuesday_10h)),
        ("office-hours-out", request("bea", "buergerservice", ["anliegen"],
                                     now=datetime(2025, 6, 3, 18, 30, tzinfo=UTC))),
        ("grant-not-yet-valid", request("bea", "buergerservice", ["anliegen"],
                                        now=datetime(2024, 12, 3, 9, tzinfo=UTC))),
        ("agreement-not-yet", request("anna", "statistik", ["einwohner"], now=datetime(2024, 12, 31, tzinfo=UTC))),
        ("agreement-over", request("paula", "stadtplanung", ["einwohner"], now=datetime(2027, 3, 1, tzinfo=UTC))),
        ("cross-office-join", request("sven", "sozialplanung", ["sozialleistungen", "einwohner"])),
    ]
    edge += [  # local calendar days (Europe/Berlin) for agreements: 00:30 local is 23:30 UTC the day before
        ("agreement-first-day-0030-local", request("anna", "statistik", ["einwohner"],
                                                   now=datetime(2024, 12, 31, 23, 30, tzinfo=UTC))),
        ("agreement-day-after-0030-local", request("anna", "statistik", ["einwohner"],
                                                   now=datetime(2028, 12, 31, 23, 30, tzinfo=UTC))),
    ]
    cases.extend((name, "reference", pi) for name, pi in edge)
    cases.extend((f"grant-{name}", "edge", request("anna", "statistik", ["einwohner"], now=when))
                 for name, (when, _) in GRANT_DAY_EDGES.items())
    cases.extend((name, "edge", request(user, purpose, datasets, now=REGIME_TIME))
                 for name, (user, purpose, datasets, _) in REGIME_EDGES.items())
    return cases


EXPIRED = "time_bound.expired"
NOT_YET_VALID = "time_bound.not_yet_valid"
#: anna's grant in the edge bundle runs from local day 2025-01-02 to 2025-02-28 (both inclusive):
#: name -> (time, expected denial rules; empty = allowed)
GRANT_DAY_EDGES: dict[str, tuple[datetime, set[str]]] = {
    "before-2024-12-01": (datetime(2024, 12, 1, tzinfo=UTC), {NOT_YET_VALID, NO_AGREEMENT}),
    "day-before-from-2330-local": (datetime(2025, 1, 1, 22, 30, tzinfo=UTC), {NOT_YET_VALID}),
    "from-day-0030-local": (datetime(2025, 1, 1, 23, 30, tzinfo=UTC), set()),
    "last-day-2359-local": (datetime(2025, 2, 28, 22, 59, tzinfo=UTC), set()),
    "day-after-until-0030-local": (datetime(2025, 2, 28, 23, 30, tzinfo=UTC), {EXPIRED}),
    "after-2025-06-01": (NOW, {EXPIRED}),
}

#: legal-regime cases on the edge bundle, decided on a Monday while anna's edge grant is in force
REGIME_TIME = datetime(2025, 2, 3, 9, 0, tzinfo=UTC)
CROSS_REGIME = "legal_regime.cross_regime_join"
RUECKSPIELVERBOT = "legal_regime.rueckspielverbot"
#: name -> (user, purpose, datasets, expected denial rules; empty = allowed)
REGIME_EDGES: dict[str, tuple[str, str, list[str], set[str]]] = {
    "tax-alone": ("anna", "statistik", ["grundsteuer"], set()),
    "tax-join-registration-no-bridge": ("anna", "statistik", ["einwohner", "grundsteuer"], {CROSS_REGIME}),
    "tax-join-statistics-bridged": ("anna", "statistik", ["grundsteuer", "zensus_haushalte"], set()),
    "tax-statistics-registration-not-all-bridged": (
        "anna", "statistik", ["einwohner", "grundsteuer", "zensus_haushalte"], {CROSS_REGIME}),
    "statistics-for-statistics": ("anna", "statistik", ["zensus_haushalte"], set()),
    "rueckspielverbot": ("paula", "stadtplanung", ["zensus_haushalte"], {RUECKSPIELVERBOT}),
    "rueckspielverbot-join": ("paula", "stadtplanung", ["einwohner", "zensus_haushalte"], {
        RUECKSPIELVERBOT, CROSS_REGIME, NO_AGREEMENT, "sovereignty.cross_office_join_without_agreement"}),
}


CONFORMANCE = _conformance_cases()


def test_conformance_embedded_equals_opa(engines: dict[str, tuple[Any, Any]]) -> None:
    """Every case through both backends gives the identical Decision (model equality, all fields)."""
    mismatches: list[str] = []
    checked = 0
    for name, which, pi in CONFORMANCE:
        if which not in engines:
            continue  # reported below, after the cases that can be checked
        embedded_engine, opa_engine = engines[which]
        a, b = embedded_engine.decide(pi), opa_engine.decide(pi)
        checked += 1
        if a != b:
            mismatches.append(f"{name}:\n  embedded={a.model_dump()}\n  opa     ={b.model_dump()}")
    assert not mismatches, "\n".join(mismatches[:5])
    assert checked >= len(DEMO_USERS) * len(PURPOSES) * (len(DATASETS) + 1)
    unserved = sorted({which for _, which, _ in CONFORMANCE} - set(engines))
    assert not unserved, (
        f"the reference cases agree, but no OPA serves the {', '.join(unserved)} bundle: with "
        "GATEWAY_TEST_OPA_URL one real OPA serves only the reference policy, so these cases were not checked; "
        "run without GATEWAY_TEST_OPA_URL (the stand-in serves every bundle) to check them")


def test_conformance_covers_allow_and_deny(engines: dict[str, tuple[Any, Any]]) -> None:
    _, opa_engine = engines["reference"]
    outcomes = {opa_engine.decide(pi).allow for _, which, pi in CONFORMANCE[:40] if which == "reference"}
    assert outcomes == {True, False}


@pytest.mark.parametrize("name", sorted(GRANT_DAY_EDGES))
def test_grant_dates_are_inclusive_local_days(bundle: PolicyBundle, name: str) -> None:
    when, expected = GRANT_DAY_EDGES[name]
    d = EmbeddedPolicyEngine(_edge_bundle(bundle)).decide(request("anna", "statistik", ["einwohner"], now=when))
    assert (d.allow, denial_rules(d)) == (not expected, expected)


@pytest.mark.parametrize("name", sorted(REGIME_EDGES))
def test_tax_and_statistics_secrecy_regimes(bundle: PolicyBundle, name: str) -> None:
    user, purpose, datasets, expected = REGIME_EDGES[name]
    d = EmbeddedPolicyEngine(_edge_bundle(bundle)).decide(request(user, purpose, datasets, now=REGIME_TIME))
    assert (d.allow, denial_rules(d)) == (not expected, expected)


@pytest.mark.parametrize(("now", "allowed"), [
    (datetime(2024, 12, 31, 23, 30, tzinfo=UTC), True),   # 00:30 local on 2025-01-01, DNV-2025-004's first day
    (datetime(2024, 12, 31, 22, 59, tzinfo=UTC), False),  # 23:59 local on 2024-12-31
    (datetime(2028, 12, 31, 22, 59, tzinfo=UTC), True),   # 23:59 local on its last day
    (datetime(2028, 12, 31, 23, 30, tzinfo=UTC), False),  # 00:30 local on 2029-01-01
])
def test_agreement_days_are_local_days(embedded: EmbeddedPolicyEngine, now: datetime, allowed: bool) -> None:
    d = embedded.decide(request("anna", "statistik", ["einwohner"], now=now))
    assert d.allow is allowed
    assert denial_rules(d) == (set() if allowed else {NO_AGREEMENT})


@pytest.mark.parametrize(("now", "local"), [
    (datetime(2024, 12, 31, 23, 30, tzinfo=UTC), ("2025-01-01", 3, "00:30")),  # CET, UTC+1
    (datetime(2025, 3, 30, 22, 30, tzinfo=UTC), ("2025-03-31", 1, "00:30")),   # CEST, UTC+2
    (datetime(2025, 6, 1, 12, 0, tzinfo=UTC), ("2025-06-01", 7, "14:00")),
])
def test_input_carries_the_local_day(now: datetime, local: tuple[str, int, str]) -> None:
    context = request("anna", "statistik", ["einwohner"], now=now).context
    assert (context["local_date"], context["local_weekday"], context["local_time"]) == local
    assert context["time"] == now.strftime("%Y-%m-%dT%H:%M:00Z")


# ---------------------------------------------------------------------------------------------
# OpaPolicyEngine fails closed
# ---------------------------------------------------------------------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    behaviour: str = "500"

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self.rfile.read(length)
        mode = self.server.behaviour  # type: ignore[attr-defined]
        if mode == "slow":
            time.sleep(1.5)
        status, body = {
            "500": (500, b'{"code": "internal_error", "message": "boom"}'),
            "404": (404, b'{"code": "resource_not_found"}'),
            "notjson": (200, b"<html>proxy error</html>"),
            "undefined": (200, b"{}"),
            "garbage": (200, b'{"result": {"allow": "yes please"}}'),
            "notdict": (200, b'{"result": true}'),
            "slow": (200, b"{}"),
        }[mode]
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture()
def fake_opa() -> Iterator[Any]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("mode", "code"),
    [("500", "policy_eval_error"), ("404", "policy_eval_error"), ("notjson", "policy_eval_error"),
     ("undefined", "policy_no_decision"), ("garbage", "policy_bad_decision"), ("notdict", "policy_no_decision"),
     ("slow", "policy_timeout")],
)
def test_opa_engine_fails_closed(fake_opa: Any, mode: str, code: str) -> None:
    fake_opa.behaviour = mode
    engine = OpaPolicyEngine(f"http://127.0.0.1:{fake_opa.server_address[1]}", version="v", timeout_s=0.3, retries=0)
    with pytest.raises(PolicyUnavailable) as info:
        engine.decide(request("anna", "statistik", ["einwohner"]))
    assert info.value.code == code
    assert info.value.status == 503


def test_opa_engine_unreachable() -> None:
    with run_compat_server() as url:
        pass  # the port is free again now
    engine = OpaPolicyEngine(url, version="v", timeout_s=0.5, retries=0)
    with pytest.raises(PolicyUnavailable) as info:
        engine.decide(request("anna", "statistik", ["einwohner"]))
    assert info.value.code == "policy_unreachable"
    assert engine.healthy() is False


def test_opa_engine_without_policy_is_undefined() -> None:
    with run_compat_server() as url:
        engine = OpaPolicyEngine(url, version="v")
        assert engine.healthy()
        with pytest.raises(PolicyUnavailable) as info:
            engine.decide(request("anna", "statistik", ["einwohner"]))
        assert info.value.code == "policy_no_decision"


def test_push_bundle_refuses_broken_module(bundle: PolicyBundle) -> None:
    broken = PolicyBundle(modules={"gateway.rego": "package gateway.authz\nx := {\n"}, data=bundle.data,
                          version="broken")
    with run_compat_server() as url, pytest.raises(PolicyUnavailable) as info:
        push_bundle(url, broken)
    assert info.value.code == "policy_push_failed"


def test_opa_install_pushes_and_pins_the_version(bundle: PolicyBundle) -> None:
    """Four-eyes activation on the OPA backend (opa.push_policy): the approved bundle is uploaded and its
    version is what decisions carry from then on."""
    with run_compat_server() as url:
        engine = OpaPolicyEngine(url, version="sha256:old")
        try:
            with pytest.raises(PolicyUnavailable):  # nothing loaded yet: fail closed
                engine.decide(request("anna", "statistik", ["einwohner"]))
            engine.install(bundle)
            assert engine.version == bundle.version
            decision = engine.decide(request("anna", "statistik", ["einwohner"]))
            assert decision.allow and decision.policy_version == bundle.version
        finally:
            engine.close()


def test_opa_url_validation() -> None:
    with pytest.raises(ValueError):
        OpaPolicyEngine("opa:8181", version="v")
    with pytest.raises(ValueError):
        OpaPolicyEngine("http://opa:8181/v1", version="v")


# ---------------------------------------------------------------------------------------------
# Rego unit tests (policies/gateway_test.rego) via gateway.policy.testing
# ---------------------------------------------------------------------------------------------


def _copy_policies(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(POLICY_DIR, target)
    return target


def test_rego_unit_tests_pass(catalog: Catalog) -> None:
    results = run_rego_tests(POLICY_DIR, catalog)
    assert len(results) >= 25
    failed = [f"{r.name}: {r.error}" for r in results if not r.passed]
    assert not failed, failed
    names = {r.name for r in results}
    for expected in ("test_purpose_not_held", "test_unknown_dataset", "test_dpo_never_reads_personal_data",
                     "test_clearance_too_low", "test_no_grant_expired", "test_row_filter_own_districts",
                     "test_unlisted_columns_are_denied", "test_public_dataset_all_plain"):
        assert expected in names


def test_rego_unit_tests_catch_a_policy_regression(tmp_path: Path, catalog: Catalog) -> None:
    pdir = _copy_policies(tmp_path)
    grants = pdir / "data" / "grants.yaml"
    grants.write_text(grants.read_text(encoding="utf-8").replace(
        "steuer_id: {op: deny, rule: einwohner.deny_tax_id}", "steuer_id: {op: plain, rule: einwohner.oops}", 1
    ), encoding="utf-8")
    results = {r.name: r for r in run_rego_tests(pdir, catalog)}
    assert not results["test_anna_masks_from_grant"].passed
    assert results["test_purpose_not_held"].passed


def test_rego_engine_crash_fails_one_test_only(tmp_path: Path, catalog: Catalog) -> None:
    pdir = _copy_policies(tmp_path)
    (pdir / "crash_test.rego").write_text(
        "package crash_test\n\nimport rego.v1\n\nimport data.gateway.authz\n\n"
        "test_whole_input_with if {\n\tauthz.decision with input as {\"resource\": {\"datasets\": [\"x\"]}}\n}\n\n"
        "test_fine if {\n\ttrue\n}\n",
        encoding="utf-8",
    )
    results = {r.name: r for r in run_rego_tests(pdir, catalog)}
    # regopy aborts compiling that module, so both of its tests fail with the reason ...
    for name in ("test_whole_input_with", "test_fine"):
        assert not results[name].passed
        error = results[name].error
        assert error is not None and "crashed" in error
    # ... and the other test module is unaffected
    assert all(r.passed for r in results.values() if r.module == "gateway_test.rego")
    assert results["test_purpose_not_held"].passed


def test_policy_test_main_report(tmp_path: Path) -> None:
    out = io.StringIO()
    assert policy_test_main(POLICY_DIR, CATALOG_PATH, out=out) == 0
    text = out.getvalue()
    assert "PASS  gateway.authz_test.test_purpose_not_held" in text and " 0 failed" in text
    pdir = _copy_policies(tmp_path)
    (pdir / "gateway_test.rego").write_text(
        (pdir / "gateway_test.rego").read_text(encoding="utf-8") + "\ntest_always_fails if {\n\tfalse\n}\n",
        encoding="utf-8",
    )
    out = io.StringIO()
    assert policy_test_main(pdir, CATALOG_PATH, out=out) == 1
    assert "FAIL  gateway.authz_test.test_always_fails" in out.getvalue()
    assert policy_test_main(tmp_path / "missing", CATALOG_PATH, out=io.StringIO()) == 2


# ---------------------------------------------------------------------------------------------
# gateway policy check
# ---------------------------------------------------------------------------------------------


def test_reference_policy_has_no_lint_errors(catalog: Catalog) -> None:
    findings = check_policy(POLICY_DIR, catalog)
    assert [f for f in findings if f.severity == "error"] == []
    # plain personal data out of the streng_vertraulich dataset is flagged for the DPO to confirm
    assert {f.where for f in findings if f.severity == "warning"} == {
        "grant sozialleistungen.sozialplanung column leistungsart",
        "grant sozialleistungen.sozialplanung column betrag_monat",
        "grant sozialleistungen.sozialplanung column stadtteil",
    }
    assert policy_check_main(POLICY_DIR, CATALOG_PATH, out=io.StringIO()) == 0


def _write_grants(pdir: Path, grants: list[dict[str, Any]]) -> None:
    (pdir / "data" / "grants.yaml").write_text(yaml.safe_dump({"grants": grants}, allow_unicode=True),
                                               encoding="utf-8")


def _has(findings: list[Finding], severity: str, where: str, fragment: str) -> bool:
    return any(f.severity == severity and f.where == where and fragment in f.message for f in findings)


def test_lint_finds_bad_grants(tmp_path: Path, catalog: Catalog) -> None:
    pdir = _copy_policies(tmp_path)
    _write_grants(pdir, [
        {"id": "g.unknown_ds", "dataset": "geheim", "purpose": "statistik", "columns": {}},
        {"id": "g.cols", "dataset": "einwohner", "purpose": "statistik",
         "columns": {"gehalt": {"op": "plain", "rule": "r"}, "vorname": {"op": "shuffle", "rule": "r"},
                     "plz": {"op": "free_text", "rule": "r"}, "nachname": {"op": "redact"}}},
        {"id": "g.purpose", "dataset": "anliegen", "purpose": "statistik",
         "columns": {"text": {"op": "free_text", "rule": "r"}}},
        {"id": "g.sv", "dataset": "sozialleistungen", "purpose": "sozialplanung",
         "columns": {"iban": {"op": "plain", "rule": "r"}},
         "row_filters": [{"column": "stadtteil", "rule": "r"}, {"column": "bezirk", "claim": "districts", "rule": "r"}],
         "aggregate_only": {"min_cell": 0, "rule": "r"}},
        {"id": "g.sv", "dataset": "stadtteile", "purpose": "statistik", "columns": {}},
    ])
    findings = check_policy(pdir, catalog)
    assert _has(findings, "error", "grant g.unknown_ds", "not in the catalog")
    assert _has(findings, "error", "grant g.cols column gehalt", "not a column")
    assert _has(findings, "error", "grant g.cols column vorname", "unknown operator 'shuffle'")
    assert _has(findings, "warning", "grant g.cols column plz", "free_text")
    assert _has(findings, "error", "grant g.cols column nachname", "names no rule")
    assert _has(findings, "error", "grant g.purpose", "purpose 'statistik' is not permitted")
    assert _has(findings, "warning", "grant g.sv column iban", "streng_vertraulich")
    assert _has(findings, "error", "grant g.sv row_filters[0]", "names no claim")
    assert _has(findings, "error", "grant g.sv row_filters[1]", "'bezirk'")
    assert _has(findings, "error", "grant g.sv aggregate_only", "min_cell")
    assert _has(findings, "error", "grant g.sv", "ids must be unique")
    assert policy_check_main(pdir, CATALOG_PATH, out=io.StringIO()) == 1


def test_lint_finds_catalog_and_compile_problems(tmp_path: Path, catalog: Catalog) -> None:
    ds = catalog.datasets["anliegen"].model_copy(update={"owner": "", "purposes": ()})
    bad_catalog = catalog.model_copy(update={"datasets": {**catalog.datasets, "anliegen": ds}})
    pdir = _copy_policies(tmp_path)
    (pdir / "gateway.rego").write_text("package gateway.authz\n\ndecision := {\n", encoding="utf-8")
    findings = check_policy(pdir, bad_catalog)
    assert _has(findings, "error", "catalog: dataset anliegen", "no owner")
    assert _has(findings, "error", "catalog: dataset anliegen", "permits no purpose")
    assert _has(findings, "error", "rego", "does not compile")


def test_lint_requires_a_four_eyes_rule_that_refuses_self_approval(tmp_path: Path, catalog: Catalog) -> None:
    assert not [f for f in check_policy(POLICY_DIR, catalog) if "four-eyes" in f.message]
    pdir = _copy_policies(tmp_path)
    (pdir / "four_eyes.rego").unlink()
    (pdir / "four_eyes_test.rego").unlink()
    assert _has(check_policy(pdir, catalog), "error", "rego", "has no working four-eyes rule")


def test_lint_catalog_legal_basis_and_default_masks(tmp_path: Path, catalog: Catalog) -> None:
    einwohner = catalog.datasets["einwohner"]
    plain_tax_id = einwohner.columns["steuer_id"].model_copy(update={"default_mask": DefaultMask(op="plain")})
    ds = einwohner.model_copy(update={"legal_basis": " ", "columns": {**einwohner.columns, "steuer_id": plain_tax_id}})
    bad_catalog = catalog.model_copy(update={"datasets": {**catalog.datasets, "einwohner": ds}})
    findings = check_policy(POLICY_DIR, bad_catalog)
    assert _has(findings, "error", "catalog: dataset einwohner", "has no legal_basis")
    assert _has(findings, "error", "catalog: dataset einwohner column steuer_id", "may not have the default mask plain")


def test_lint_grant_columns_without_op(tmp_path: Path, catalog: Catalog) -> None:
    pdir = _copy_policies(tmp_path)
    _write_grants(pdir, [{"id": "g.defaults", "dataset": "einwohner", "purpose": "statistik", "columns": {
        "vorname": {}, "nachname": {"rule": "g.names"}, "plz": {}, "email": {"op": "plain", "rule": "g.plain"},
    }}])
    findings = check_policy(pdir, catalog)
    assert _has(findings, "error", "grant g.defaults column plz", "sets no default_mask for einwohner.plz")
    assert _has(findings, "warning", "grant g.defaults column email", "catalog's default mask is redact")
    assert not [f for f in findings if f.where in (f"grant g.defaults column {c}" for c in ("vorname", "nachname"))]


def _write_catalog(tmp_path: Path, old: str, new: str) -> Path:
    text = CATALOG_PATH.read_text(encoding="utf-8")
    assert old in text
    path = tmp_path / "catalog.yaml"
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(("old", "new", "fragment"), [
    ("    legal_basis: \"§ 3 HDSIG", "    legal_bases: \"§ 3 HDSIG", "legal_bases"),  # a typo is not ignored
    ("class: free_text, default_mask:", "class: free_text, defualt_mask:", "defualt_mask"),
    # the error names the place and what is allowed, never the value found (it could be a secret)
    ("default_mask: {op: deny}}", "default_mask: {op: shuffle}}", "steuer_id.default_mask.op: Input should be 'plain'"),
    ("default_mask: {op: redact}}", "default_mask: {op: redact, param: {}}}", "param"),
])
def test_catalog_refuses_unknown_keys_and_mask_ops(tmp_path: Path, old: str, new: str, fragment: str) -> None:
    path = _write_catalog(tmp_path, old, new)
    with pytest.raises(ValueError, match=fragment):
        load_catalog(path)
    out = io.StringIO()
    assert policy_check_main(POLICY_DIR, path, out=out) == 2
    assert "the catalog cannot be loaded" in out.getvalue() and fragment in out.getvalue()


def test_catalog_requires_a_legal_basis(tmp_path: Path) -> None:
    path = _write_catalog(tmp_path, "    legal_basis: \"§ 3 HDSIG i. V. m. Art. 6 Abs. 1 lit. e DSGVO\"\n", "")
    with pytest.raises(ValueError, match="legal_basis"):
        load_catalog(path)


def test_catalog_hands_legal_basis_and_default_masks_to_the_policy(catalog: Catalog) -> None:
    entry = catalog.as_policy_data()["einwohner"]
    assert entry["legal_basis"] == catalog.datasets["einwohner"].legal_basis
    assert entry["columns"]["id"]["default_mask"] == {"op": "pseudonymise", "params": {"domain": "person"}}
    assert "default_mask" not in entry["columns"]["plz"]
    assert all(ds.legal_basis.strip() for ds in catalog.datasets.values())


def test_decision_names_the_legal_basis(embedded: EmbeddedPolicyEngine, catalog: Catalog) -> None:
    d = embedded.decide(request("anna", "statistik", ["einwohner", "stadtteile"]))
    assert d.allow
    for name in ("einwohner", "stadtteile"):
        assert d.datasets[name].legal_basis == catalog.datasets[name].legal_basis


def test_grant_column_without_op_gets_the_catalog_default_mask(bundle: PolicyBundle) -> None:
    data = yaml.safe_load(yaml.safe_dump(bundle.data))  # deep copy
    grant = next(g for g in data["grants"] if g["id"] == "einwohner.statistik")
    grant["columns"].update(vorname={}, strasse={"rule": "einwohner.address_as_catalog"}, plz={})
    engine = EmbeddedPolicyEngine(PolicyBundle(modules=bundle.modules, data=data, version="defaults"))
    columns = engine.decide(request("anna", "statistik", ["einwohner"])).datasets["einwohner"].columns
    assert (columns["vorname"].op, columns["vorname"].params, columns["vorname"].rule) == (
        "pseudonymise", {"domain": "vorname"}, "catalog.default_mask")
    assert (columns["strasse"].op, columns["strasse"].rule) == ("redact", "einwohner.address_as_catalog")
    assert (columns["plz"].op, columns["plz"].rule) == ("deny", "einwohner.statistik.no_default_mask")
    assert columns["plz"].permitted_uses() == ()


# ---------------------------------------------------------------------------------------------
# Hot reload
# ---------------------------------------------------------------------------------------------


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_reload_keeps_last_good_version_and_swaps_on_valid_change(tmp_path: Path) -> None:
    pdir = _copy_policies(tmp_path)
    engine = ReloadingPolicyEngine(pdir, pdir / "catalog.yaml", poll_seconds=0.1)
    v0 = engine.version
    assert engine.last_error is None and engine.last_attempt_version == v0
    assert engine.check_now() is False  # nothing changed

    good_rego = (pdir / "gateway.rego").read_text(encoding="utf-8")
    (pdir / "gateway.rego").write_text(good_rego + "\nbroken := {\n", encoding="utf-8")
    assert engine.check_now() is False
    assert engine.version == v0
    assert engine.last_error is not None and "compile" in engine.last_error
    assert engine.last_attempt_version is not None and engine.last_attempt_version != v0
    assert engine.decide(request("anna", "statistik", ["einwohner"])).allow  # old version still serves

    (pdir / "gateway.rego").write_text(good_rego, encoding="utf-8")
    # (the Rego tests pin anna's max_rows, so change sven's grant)
    _edit(pdir / "data" / "grants.yaml", "max_rows: 100000\n    row_filters:", "max_rows: 5000\n    row_filters:")
    assert engine.check_now() is True, engine.last_error
    assert engine.version != v0 and engine.last_error is None
    assert engine.last_attempt_version == engine.version
    d = engine.decide(request("sven", "sozialplanung", ["sozialleistungen"]))
    assert d.datasets["sozialleistungen"].max_rows == 5000 and d.policy_version == engine.version
    status = engine.status()
    assert status["version"] == engine.version and status["last_error"] is None


def test_reload_refuses_a_version_whose_tests_fail(tmp_path: Path) -> None:
    pdir = _copy_policies(tmp_path)
    engine = ReloadingPolicyEngine(pdir, pdir / "catalog.yaml")
    v0 = engine.version
    _edit(pdir / "data" / "grants.yaml", "steuer_id: {op: deny, rule: einwohner.deny_tax_id}",
          "steuer_id: {op: plain, rule: einwohner.deny_tax_id}")
    assert engine.check_now() is False
    assert engine.version == v0
    assert engine.last_error is not None and "test_anna_masks_from_grant" in engine.last_error
    d = engine.decide(request("anna", "statistik", ["einwohner"]))
    assert d.datasets["einwohner"].columns["steuer_id"].op == "deny"


def test_reload_refuses_a_broken_catalog(tmp_path: Path) -> None:
    pdir = _copy_policies(tmp_path)
    engine = ReloadingPolicyEngine(pdir, pdir / "catalog.yaml", run_tests=False)
    v0 = engine.version
    _edit(pdir / "catalog.yaml", "classification: vertraulich", "classification: geheim")
    assert engine.check_now() is False
    assert engine.version == v0 and engine.last_error is not None and "catalog" in engine.last_error


def test_reload_background_thread(tmp_path: Path) -> None:
    pdir = _copy_policies(tmp_path)
    with ReloadingPolicyEngine(pdir, pdir / "catalog.yaml", poll_seconds=0.1, run_tests=False) as engine:
        v0 = engine.version
        assert engine.status()["polling"]
        _edit(pdir / "data" / "grants.yaml", "min_cell: 3", "min_cell: 5")
        deadline = time.monotonic() + 20
        while engine.version == v0 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert engine.version != v0
        d = engine.decide(request("paula", "stadtplanung", ["einwohner"]))
        assert d.datasets["einwohner"].aggregate_only is not None
        assert d.datasets["einwohner"].aggregate_only.min_cell == 5
    assert not engine.status()["polling"]


def test_reload_concurrent_decisions_see_a_whole_version(tmp_path: Path) -> None:
    pdir = _copy_policies(tmp_path)
    engine = ReloadingPolicyEngine(pdir, pdir / "catalog.yaml", run_tests=False)
    seen: set[tuple[str, int | None]] = set()
    errors: list[BaseException] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                d = engine.decide(request("anna", "statistik", ["einwohner"]))
                seen.add((d.policy_version, d.datasets["einwohner"].max_rows))
            except BaseException as exc:
                errors.append(exc)
                return

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        for rows in (1000, 2000):
            _edit(pdir / "data" / "grants.yaml", "max_rows: 100000" if rows == 1000 else "max_rows: 1000",
                  f"max_rows: {rows}")
            assert engine.check_now() is True
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join()
    assert not errors
    by_version: dict[str, set[int | None]] = {}
    for version, rows_seen in seen:
        by_version.setdefault(version, set()).add(rows_seen)
    assert all(len(v) == 1 for v in by_version.values())  # a version never mixes old and new grants


def test_impact_preview_gives_old_records_their_local_day() -> None:
    """Records audited before the input carried `local_date` are replayed on the local calendar day."""
    from gateway.policy.decision import PolicyInput
    from gateway.policy.impact import _with_local_clock

    old = PolicyInput(identity={}, action={"purpose": "statistik"}, resource={"datasets": ["einwohner"]},
                      context={"time": "2025-12-31T23:30:00Z", "client_address": "10.0.0.1"})
    replayed = _with_local_clock(old)
    assert replayed.context["local_date"] == "2026-01-01"
    assert replayed.context["local_time"] == "00:30" and replayed.context["local_weekday"] == 4
    recent = old.model_copy(update={"context": {**old.context, "local_date": "2025-12-31"}})
    assert _with_local_clock(recent).context["local_date"] == "2025-12-31"
