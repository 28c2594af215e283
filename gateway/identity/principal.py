"""The authenticated caller, as the rest of the gateway sees it."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Principal(BaseModel):
    """Attributes of the caller taken from a validated access token.

    Only these attributes reach the policy; the raw token never leaves the identity stage.
    """

    model_config = ConfigDict(frozen=True)

    subject: str = Field(description="Stable user id (the token's `sub`).")
    username: str = Field(description="Login name (e.g. `anna`), for people and logs.")
    office: str | None = Field(default=None, description="Office (Amt) the user belongs to.")
    roles: tuple[str, ...] = Field(default=(), description="Roles, e.g. analyst, dpo, auditor, planner.")
    purposes: tuple[str, ...] = Field(default=(), description="Purposes the user may declare.")
    districts: tuple[str, ...] = Field(default=(), description="Districts (Ortsbezirke) the user serves.")
    clearance: str | None = Field(default=None, description="Highest classification the user may see.")
    client_id: str | None = Field(default=None, description="OAuth client the token was issued to.")
