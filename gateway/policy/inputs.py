"""Build the policy input document from a principal, a purpose and the datasets a query reads."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.identity.principal import Principal
from gateway.policy.decision import PolicyInput

#: office hours in grants are local time (regopy's time zone builtins crash: the weekday and clock come in)
LOCAL_TZ = ZoneInfo("Europe/Berlin")


def build_input(
    principal: Principal,
    purpose: str,
    datasets: list[str],
    *,
    client_address: str | None = None,
    now: datetime | None = None,
) -> PolicyInput:
    identity: dict[str, object] = {
        "user": principal.username,
        "subject": principal.subject,
        "roles": list(principal.roles),
        "purposes": list(principal.purposes),
        "districts": list(principal.districts),
    }
    if principal.office is not None:
        identity["office"] = principal.office
    if principal.clearance is not None:
        identity["clearance"] = principal.clearance
    moment = (now or datetime.now(UTC)).astimezone(UTC)
    return PolicyInput(
        identity=identity,
        action={"operation": "SelectFromColumns", "purpose": purpose},
        resource={"datasets": sorted(datasets)},
        # minute resolution: time-bound grants take effect to the minute, and decisions can be cached
        context={"time": moment.strftime("%Y-%m-%dT%H:%M:00Z"), "client_address": client_address or "",
                 "local_weekday": moment.astimezone(LOCAL_TZ).isoweekday(),
                 "local_time": moment.astimezone(LOCAL_TZ).strftime("%H:%M")},
    )
