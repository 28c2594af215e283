"""Build the policy input document from a principal, a purpose and the datasets a query reads."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from gateway.identity.principal import Principal
from gateway.policy.decision import PolicyInput

#: office hours, grant and agreement dates are local time; regopy's time zone builtins crash once pyarrow is
#: loaded, so the local date, weekday and clock are computed here and come in with the input
LOCAL_TZ = ZoneInfo("Europe/Berlin")


def local_context(moment: datetime) -> dict[str, object]:
    """The local calendar day, weekday (Monday = 1) and clock of ``moment`` (Europe/Berlin)."""
    local = moment.astimezone(LOCAL_TZ)
    return {"local_date": local.strftime("%Y-%m-%d"), "local_weekday": local.isoweekday(),
            "local_time": local.strftime("%H:%M")}


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
                 **local_context(moment)},
    )
