"""The audit record: one per request to the gateway (allowed, denied, failed or unauthenticated).

The record holds no personal data in clear: SQL text is stored literal-free (see
:mod:`gateway.audit.sql_text`), the analyst's original SQL only encrypted (Fernet), and persons are
named only by pseudonymous keys.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import cached_property
from typing import Any, Literal

from cryptography.fernet import InvalidToken
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_serializer,
    field_validator,
    model_validator,
)

from gateway.errors import GatewayError, NotFound
from gateway.identity.principal import Principal

from .keys import AuditKeys, FernetKeyInput, fernet_of
from .sql_text import normalise_sql

log = logging.getLogger("gateway.audit")

Decision = Literal["allow", "deny", "error"]

#: event kinds the gateway writes; other strings are accepted for forward compatibility
EVENT_KINDS = ("query", "explain", "datasets", "policy_change", "login_failed", "audit_read",
               "audit_decrypt", "audit_verify", "unauthenticated")

#: pass as validation context when loading records from a store: SQL is not normalised again
TRUSTED_CONTEXT: dict[str, Any] = {"audit_trusted": True}


def format_time(value: datetime) -> str:
    """Canonical ISO-8601 UTC text with microseconds, e.g. ``2024-05-01T12:00:00.000000Z``.

    Naive datetimes are taken to be UTC.
    """
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time(text: str) -> datetime:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity; datetimes as :func:`format_time`."""

    def default(obj: Any) -> Any:
        if isinstance(obj, datetime):
            return format_time(obj)
        raise TypeError(f"not JSON serialisable: {type(obj).__name__}")

    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False,
                      default=default).encode("utf-8")


class AuditEvent(BaseModel):
    """What happened in one request. Build it with literal-free or raw SQL: both SQL fields are
    normalised on construction (literals -> ``?``), so a value typed by the analyst never reaches the log.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    time: datetime = Field(default_factory=utc_now, description="When the request started (UTC).")
    request_id: str
    event: str = Field(description="query | explain | datasets | policy_change | login_failed | ...")
    subject: str | None = None
    username: str | None = None
    office: str | None = None
    roles: list[str] = Field(default_factory=list)
    client_address: str | None = None
    purpose: str | None = None
    datasets: list[str] = Field(default_factory=list)
    columns: list[str] = Field(default_factory=list, description='"dataset.column" names')
    decision: Decision
    rules: list[str] = Field(default_factory=list)
    legal_bases: dict[str, str] = Field(default_factory=dict,
                                        description="dataset -> the legal basis it was processed under (catalog)")
    masks: dict[str, str] = Field(default_factory=dict, description='"dataset.column" -> mask name')
    policy_version: str | None = None
    sql_normalised: str | None = Field(default=None, description="analyst SQL, literals replaced by ?")
    sql_rewritten: str | None = Field(default=None, description="rewritten SQL, literals replaced by ?")
    sql_dialect: str = Field(default="postgres", description="dialect of the analyst's SQL")
    rewritten_dialect: str | None = Field(default=None, description="dialect of sql_rewritten")
    rows_returned: int | None = None
    bytes_returned: int | None = None
    duration_ms: float | None = None
    connector: str | None = None
    error_code: str | None = None
    person_keys: list[str] = Field(default_factory=list, description="pseudonymous keys of persons returned")
    sql_original_encrypted: str | None = Field(default=None, description="Fernet ciphertext of the SQL")
    policy_input: dict[str, Any] | None = Field(
        default=None,
        description="the policy input the decision was made on (the caller's attributes, purpose, datasets, "
                    "time, client address); `gateway policy diff` replays it under a proposed policy",
    )

    @field_validator("time")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC)

    @field_serializer("time")
    def _ser_time(self, value: datetime) -> str:
        return format_time(value)

    @model_validator(mode="before")
    @classmethod
    def _strip_literals(cls, data: Any, info: ValidationInfo) -> Any:
        context = info.context
        if isinstance(context, Mapping) and context.get("audit_trusted"):
            return data
        if not isinstance(data, Mapping):
            return data
        data = dict(data)
        dialect = data.get("sql_dialect") or "postgres"
        rewritten_dialect = data.get("rewritten_dialect") or dialect
        if isinstance(data.get("sql_normalised"), str):
            data["sql_normalised"] = normalise_sql(data["sql_normalised"], dialect)
        if isinstance(data.get("sql_rewritten"), str):
            data["sql_rewritten"] = normalise_sql(data["sql_rewritten"], rewritten_dialect)
        return data

    @classmethod
    def for_principal(cls, principal: Principal | None, **fields: Any) -> AuditEvent:
        """An event with subject, username, office and roles taken from ``principal`` (if any)."""
        if principal is not None:
            fields.setdefault("subject", principal.subject)
            fields.setdefault("username", principal.username)
            fields.setdefault("office", principal.office)
            fields.setdefault("roles", list(principal.roles))
        return cls(**fields)

    def canonical_dict(self) -> dict[str, Any]:
        """The JSON form that is stored and hashed."""
        return self.model_dump(mode="json")


@dataclass(frozen=True)
class StoredRecord:
    """One record as held by a store. ``event_json`` is the exact canonical JSON that was hashed."""

    seq: int
    time: datetime
    prev_hash: str
    record_hash: str
    event_json: str = field(repr=False)

    @cached_property
    def event_data(self) -> dict[str, Any]:
        data = json.loads(self.event_json)
        if not isinstance(data, dict):
            raise ValueError("stored event is not a JSON object")
        return data

    @cached_property
    def event(self) -> AuditEvent:
        return AuditEvent.model_validate(self.event_data, context=TRUSTED_CONTEXT)


@dataclass(frozen=True)
class Checkpoint:
    """A signed statement "the chain's hash at ``seq`` is ``head_hash``".

    ``kind == "anchor"`` (written by retention pruning) instead states that the record at ``seq`` is the
    first one kept and that its ``prev_hash`` is ``head_hash``.
    """

    seq: int
    kind: str
    head_hash: str
    time: datetime
    key_id: str
    signature: str


class AuditFilter(BaseModel):
    """Search criteria for :meth:`AuditStore.query`; ``None`` means "any"."""

    model_config = ConfigDict(frozen=True)

    time_from: datetime | None = None
    time_to: datetime | None = Field(default=None, description="exclusive upper bound")
    username: str | None = None
    office: str | None = None
    dataset: str | None = None
    purpose: str | None = None
    decision: Decision | None = None
    rule: str | None = None
    event: str | None = None
    request_id: str | None = None
    newest_first: bool = False


# --- original SQL, encrypted -------------------------------------------------------------------------

class OriginalSqlUnavailable(NotFound):
    code = "original_sql_unavailable"
    title = "The original SQL is not available"


class DecryptionFailed(GatewayError):
    status = 500
    code = "audit_decryption_failed"
    title = "The original SQL could not be decrypted"


def encrypt_original(sql: str, key: FernetKeyInput | AuditKeys) -> str:
    """Fernet ciphertext (text) of the analyst's original SQL."""
    return fernet_of(key).encrypt(sql.encode("utf-8")).decode("ascii")


def decrypt_original(record: StoredRecord | AuditEvent, key: FernetKeyInput | AuditKeys, reason: str) -> str:
    """The plaintext original SQL of ``record``.

    ``reason`` is mandatory; the caller (the API layer) must write an audit event of its own recording
    who decrypted which record and why. The reason is also logged here.
    """
    if not reason or not reason.strip():
        raise ValueError("a reason is required to decrypt the original SQL")
    event = record.event if isinstance(record, StoredRecord) else record
    if not event.sql_original_encrypted:
        raise OriginalSqlUnavailable("this audit record holds no encrypted original SQL")
    try:
        plain = fernet_of(key).decrypt(event.sql_original_encrypted.encode("ascii"))
    except (InvalidToken, ValueError) as exc:
        raise DecryptionFailed("the original SQL cannot be decrypted with the configured key") from exc
    log.info("audit: original SQL of request %s decrypted (seq %s); the reason is in the audit trail",
             event.request_id, record.seq if isinstance(record, StoredRecord) else "-")
    return plain.decode("utf-8")


def sql_fields(original_sql: str | None, *, rewritten_sql: str | None = None,
               key: FernetKeyInput | AuditKeys | None = None, dialect: str = "postgres",
               rewritten_dialect: str | None = None) -> dict[str, Any]:
    """The SQL-related fields of an :class:`AuditEvent`: normalised texts and, if a key is given,
    the encrypted original."""
    fields: dict[str, Any] = {"sql_dialect": dialect, "rewritten_dialect": rewritten_dialect}
    if original_sql is not None:
        fields["sql_normalised"] = normalise_sql(original_sql, dialect)
        if key is not None:
            fields["sql_original_encrypted"] = encrypt_original(original_sql, key)
    if rewritten_sql is not None:
        fields["sql_rewritten"] = normalise_sql(rewritten_sql, rewritten_dialect or dialect)
    return fields
