"""``gateway policy check`` for the sovereignty data: agreements, regimes, purposes, networks, time rules.

Errors: an agreement naming an unknown dataset, a party that owns none of its datasets' data and is not
an office anyone could hold (unknown owners are errors: a typo would silently refuse every query),
dates that are not ``YYYY-MM-DD`` or run backwards; a dataset whose legal regime is not in
``regimes``; a bridge naming an unknown regime; a network that is not IPv4 CIDR or ``ADDRESS/128``;
a grant's ``valid_from``/``valid_until`` not a quoted date ``"YYYY-MM-DD"`` (local calendar days, both
inclusive, like agreements) or running backwards; ``office_hours`` malformed; a retention column that is
not a date or timestamp. Warnings: a purpose used by the catalog but missing from ``purposes`` (it counts
as administrative), an agreement or grant that expired ("today" is the local date, Europe/Berlin).
"""

from __future__ import annotations

import ipaddress
import re
from datetime import date, datetime
from typing import Any

from gateway.catalog import Catalog
from gateway.policy.engine import PolicyBundle
from gateway.policy.inputs import LOCAL_TZ
from gateway.policy.lint import Finding

_DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_HHMM_RE = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")
_DATE_TYPES = ("DATE", "TIMESTAMP")


def _as_date(value: Any) -> date | None:
    if isinstance(value, str) and _DATE_RE.match(value):
        try:
            return date.fromisoformat(value)
        except ValueError:
            return None
    return None


def _agreements(data: dict[str, Any], catalog: Catalog, today: date) -> list[Finding]:
    findings: list[Finding] = []
    agreements = data.get("agreements", [])
    if not isinstance(agreements, list):
        return [Finding("error", "data/agreements.yaml", "agreements must be a list")]
    owners = {ds.owner for ds in catalog.datasets.values()}
    for index, agreement in enumerate(agreements):
        if not isinstance(agreement, dict):
            findings.append(Finding("error", f"agreements[{index}]", "an agreement must be a mapping"))
            continue
        where = f"agreement {agreement.get('id') or index}"
        for key in ("id", "parties", "datasets", "purposes", "valid_from", "valid_until"):
            if not agreement.get(key):
                findings.append(Finding("error", where, f"has no {key}"))
        start, end = _as_date(agreement.get("valid_from")), _as_date(agreement.get("valid_until"))
        for key, parsed in (("valid_from", start), ("valid_until", end)):
            if agreement.get(key) and parsed is None:
                findings.append(Finding("error", where, f"{key} must be a quoted date \"YYYY-MM-DD\""))
        if start and end and end < start:
            findings.append(Finding("error", where, f"ends ({end}) before it starts ({start})"))
        if end and end < today:
            findings.append(Finding("warning", where, f"expired on {end}; it grants nothing any more"))
        parties = agreement.get("parties") or []
        for name in agreement.get("datasets") or []:
            ds = catalog.dataset(str(name))
            if ds is None:
                findings.append(Finding("error", where, f"names dataset {name!r}, which is not in the catalog"))
            elif ds.owner not in parties:
                findings.append(Finding("error", where, f"covers {name}, but its owner {ds.owner!r} is not a party"))
        if parties and not any(p in owners for p in parties):
            findings.append(Finding("error", where, "no party owns a catalogued dataset"))
    return findings


def _regimes(data: dict[str, Any], catalog: Catalog) -> list[Finding]:
    findings: list[Finding] = []
    regimes = data.get("regimes")
    if not isinstance(regimes, dict):
        return [Finding("error", "data/regimes.yaml", "regimes must be a mapping name -> description")]
    for name, ds in sorted(catalog.datasets.items()):
        if ds.legal_regime not in regimes:
            findings.append(Finding("error", f"catalog: dataset {name}",
                                    f"legal regime {ds.legal_regime!r} is not listed in regimes"))
    for index, bridge in enumerate(data.get("regime_bridges") or []):
        where = f"regime_bridges[{index}]"
        if not isinstance(bridge, dict):
            findings.append(Finding("error", where, "a bridge must be a mapping"))
            continue
        for regime in bridge.get("regimes") or []:
            if regime not in regimes:
                findings.append(Finding("error", where, f"names unknown regime {regime!r}"))
        if len(bridge.get("regimes") or []) < 2:
            findings.append(Finding("error", where, "a bridge joins at least two regimes"))
        if not bridge.get("purposes") or not bridge.get("legal_basis"):
            findings.append(Finding("error", where, "a bridge needs purposes and a legal_basis"))
    purposes = data.get("purposes") or {}
    used = {p for ds in catalog.datasets.values() for p in ds.purposes if p != "*"}
    for purpose in sorted(used - set(purposes)):
        findings.append(Finding("warning", "data/regimes.yaml",
                                f"purpose {purpose!r} has no kind in purposes; it counts as administrative"))
    return findings


def _networks(data: dict[str, Any]) -> list[Finding]:
    findings: list[Finding] = []
    internal = (data.get("networks") or {}).get("internal") or []
    for entry in internal:
        text = str(entry)
        try:
            network = ipaddress.ip_network(text, strict=True)
        except ValueError:
            findings.append(Finding("error", "data/networks.yaml", f"{text!r} is not a network in CIDR form"))
            continue
        if network.version == 6 and network.prefixlen != 128:
            findings.append(Finding("error", "data/networks.yaml",
                                    f"{text}: IPv6 networks are matched as exact addresses only; write ADDRESS/128"))
    return findings


def _grant_validity(grant: dict[str, Any], where: str, today: date) -> list[Finding]:
    """valid_from / valid_until: quoted local dates, both inclusive (the policy compares context.local_date)."""
    findings: list[Finding] = []
    parsed: dict[str, date | None] = {}
    for key in ("valid_from", "valid_until"):
        if key not in grant:
            continue
        parsed[key] = _as_date(grant[key])
        if parsed[key] is None:
            findings.append(Finding("error", where, (
                f"{key} {grant[key]!r} must be a quoted date \"YYYY-MM-DD\" (a local calendar day, Europe/Berlin, "
                "inclusive); timestamps are not accepted, and the policy treats the grant as not in force")))
    start, end = parsed.get("valid_from"), parsed.get("valid_until")
    if start and end and end < start:
        findings.append(Finding("error", where, f"valid_until ({end}) is before valid_from ({start})"))
    if end and end < today:
        findings.append(Finding("warning", where, f"expired on {end}; it grants nothing any more"))
    return findings


def _time_rules(data: dict[str, Any], catalog: Catalog, today: date) -> list[Finding]:
    findings: list[Finding] = []
    for grant in data.get("grants") or []:
        if not isinstance(grant, dict):
            continue
        where = f"grant {grant.get('id')}"
        findings.extend(_grant_validity(grant, where, today))
        hours = grant.get("office_hours")
        if hours is None:
            continue
        if not isinstance(hours, dict):
            findings.append(Finding("error", where, "office_hours must be {days, from, until}"))
            continue
        days = hours.get("days")
        if not isinstance(days, list) or not days or not all(isinstance(d, int) and 1 <= d <= 7 for d in days):
            findings.append(Finding("error", where, "office_hours.days must list weekdays 1 (Monday) to 7"))
        start, end = hours.get("from"), hours.get("until")
        if not (isinstance(start, str) and _HHMM_RE.match(start) and isinstance(end, str) and _HHMM_RE.match(end)):
            findings.append(Finding("error", where, "office_hours.from/until must be quoted \"HH:MM\" times"))
        elif end <= start:
            findings.append(Finding("error", where, "office_hours.until must be later than from"))
    for name, ds in sorted(catalog.datasets.items()):
        if ds.retention is not None:
            column_type = ds.columns[ds.retention.column].type.upper()
            if not column_type.startswith(_DATE_TYPES):
                findings.append(Finding("error", f"catalog: dataset {name}",
                                        f"retention column {ds.retention.column} is {column_type}, not a date"))
    return findings


def check_sovereignty(bundle: PolicyBundle, catalog: Catalog, *, today: date | None = None) -> list[Finding]:
    day = today or datetime.now(LOCAL_TZ).date()
    data = bundle.data
    return [*_agreements(data, catalog, day), *_regimes(data, catalog), *_networks(data),
            *_time_rules(data, catalog, day)]
