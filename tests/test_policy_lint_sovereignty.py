"""`gateway policy check` on the sovereignty data: each broken entry is reported, the reference is clean."""

from __future__ import annotations

import copy
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from gateway.catalog import load_catalog
from gateway.policy.engine import PolicyBundle, load_bundle
from gateway.policy.lint_sovereignty import check_sovereignty

REPO = Path(__file__).resolve().parents[1]
TODAY = date(2026, 1, 15)


@pytest.fixture(scope="module")
def reference() -> tuple[PolicyBundle, Any]:
    catalog = load_catalog(REPO / "policies" / "catalog.yaml")
    return load_bundle(REPO / "policies", catalog), catalog


def _with(bundle: PolicyBundle, change: Any) -> PolicyBundle:
    data = copy.deepcopy(bundle.data)
    change(data)
    return PolicyBundle(modules=bundle.modules, data=data, version=bundle.version + "+x")


def _messages(bundle: PolicyBundle, catalog: Any) -> list[str]:
    return [f"{f.severity} {f.where}: {f.message}" for f in check_sovereignty(bundle, catalog, today=TODAY)]


def test_reference_policy_is_clean(reference: tuple[PolicyBundle, Any]) -> None:
    bundle, catalog = reference
    assert _messages(bundle, catalog) == []


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d["agreements"][0].update(datasets=["einwohnr"]), "names dataset 'einwohnr'"),
    (lambda d: d["agreements"][0].update(parties=["Amt für Statistik und Stadtforschung"]),
     "its owner 'Bürgeramt' is not a party"),
    (lambda d: d["agreements"][0].update(valid_until="31.12.2028"), "valid_until must be a quoted date"),
    (lambda d: d["agreements"][0].update(valid_from="2029-01-01"), "ends (2028-12-31) before it starts"),
    (lambda d: d["agreements"][0].update(valid_until="2025-12-31"), "expired on 2025-12-31"),
    (lambda d: d["agreements"][0].pop("purposes"), "has no purposes"),
    (lambda d: d["regimes"].pop("social_data"), "legal regime 'social_data' is not listed"),
    (lambda d: d.update(regime_bridges=[{"regimes": ["social_data", "steuer"], "purposes": ["x"],
                                         "legal_basis": "y"}]), "names unknown regime 'steuer'"),
    (lambda d: d.update(regime_bridges=[{"regimes": ["social_data", "registration_data"]}]),
     "needs purposes and a legal_basis"),
    (lambda d: d["purposes"].pop("statistik"), "purpose 'statistik' has no kind"),
    (lambda d: d["networks"]["internal"].append("10.0.0.1/8"), "'10.0.0.1/8' is not a network"),
    (lambda d: d["networks"]["internal"].append("fd00::/8"), "write ADDRESS/128"),
    (lambda d: d["grants"][-1]["office_hours"].update(days=[0, 1]), "weekdays 1 (Monday) to 7"),
    (lambda d: d["grants"][-1]["office_hours"].update(until="7 Uhr"), "quoted \"HH:MM\" times"),
    (lambda d: d["grants"][-1]["office_hours"].update(until="06:00"), "until must be later than from"),
    # grant validity: quoted local dates only, never timestamps (their zone would be ambiguous)
    (lambda d: d["grants"][-1].update(valid_from="2025-01-01T00:00:00Z"),
     "valid_from '2025-01-01T00:00:00Z' must be a quoted date \"YYYY-MM-DD\""),
    (lambda d: d["grants"][0].update(valid_until="2026-12-31T23:59:59+01:00"), "valid_until '2026-12-31T23:59:59"),
    (lambda d: d["grants"][0].update(valid_until=date(2026, 12, 31)), "must be a quoted date"),
    (lambda d: d["grants"][0].update(valid_until=None), "valid_until None must be a quoted date"),
    (lambda d: d["grants"][0].update(valid_from="2026-03-01", valid_until="2026-02-28"),
     "valid_until (2026-02-28) is before valid_from (2026-03-01)"),
    (lambda d: d["grants"][0].update(valid_until="2026-01-14"), "grant einwohner.statistik: expired on 2026-01-14"),
])
def test_broken_entries_reported(reference: tuple[PolicyBundle, Any], change: Any, expected: str) -> None:
    bundle, catalog = reference
    messages = _messages(_with(bundle, change), catalog)
    assert any(expected in m for m in messages), messages


def test_grant_valid_until_today_is_still_in_force(reference: tuple[PolicyBundle, Any]) -> None:
    """valid_until is inclusive: a grant ending on the (local) day of the check has not expired yet."""
    bundle, catalog = reference
    messages = _messages(_with(bundle, lambda d: d["grants"][0].update(valid_from="2026-01-15",
                                                                        valid_until="2026-01-15")), catalog)
    assert messages == []


def test_retention_on_a_non_date_column(reference: tuple[PolicyBundle, Any], tmp_path: Path) -> None:
    bundle, _ = reference
    text = (REPO / "policies" / "catalog.yaml").read_text(encoding="utf-8")
    broken = tmp_path / "catalog.yaml"
    broken.write_text(text.replace("retention: {column: eingegangen_am", "retention: {column: kategorie", 1),
                      encoding="utf-8")
    messages = _messages(bundle, load_catalog(broken))
    assert any("retention column kategorie is VARCHAR, not a date" in m for m in messages), messages
