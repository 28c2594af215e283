"""Errors the gateway raises, each mapped to one RFC 9457 problem type.

Every error carries a stable machine-readable ``code``, an HTTP ``status``, a short ``title`` and a
human ``detail`` that says what to change. Details must never contain secrets, tokens, raw database
error text or values the caller may not see.
"""

from __future__ import annotations

from typing import Any


class GatewayError(Exception):
    """Base class: a refusal or failure that becomes a problem+json response."""

    status: int = 500
    code: str = "internal_error"
    title: str = "The gateway failed"

    def __init__(
        self,
        detail: str,
        *,
        code: str | None = None,
        rule: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        if code is not None:
            self.code = code
        self.rule = rule
        self.extra: dict[str, Any] = dict(extra or {})


class AuthenticationError(GatewayError):
    """No usable access token: 401 with a ``WWW-Authenticate`` challenge."""

    status = 401
    code = "unauthenticated"
    title = "Authentication required"

    def __init__(self, detail: str, *, code: str | None = None, error: str = "invalid_token") -> None:
        super().__init__(detail, code=code)
        #: the RFC 6750 error value for the WWW-Authenticate header
        self.error = error


class AccessDenied(GatewayError):
    """The policy refuses the request (or part of it)."""

    status = 403
    code = "access_denied"
    title = "Access denied by policy"


class InvalidQuery(GatewayError):
    """The analyst's SQL cannot be accepted as written."""

    status = 422
    code = "invalid_query"
    title = "The query cannot be accepted"


class AggregateTooLarge(InvalidQuery):
    """An aggregate-only answer with more groups than ``aggregate_max_groups`` (it is held whole in memory
    while disclosure control runs, so its size is bounded)."""

    code = "aggregate_too_large"
    title = "The aggregate has too many groups"


class BadRequest(GatewayError):
    status = 400
    code = "bad_request"
    title = "Bad request"


class NotFound(GatewayError):
    status = 404
    code = "not_found"
    title = "Not found"


class Conflict(GatewayError):
    status = 409
    code = "conflict"
    title = "The request conflicts with the current state"


class PolicyRejected(GatewayError):
    """A proposed policy version fails the gate (compile, decision, Rego tests)."""

    status = 422
    code = "policy_invalid"
    title = "The proposed policy cannot go live"


class PolicyUnavailable(GatewayError):
    """The policy engine failed: fail closed."""

    status = 503
    code = "policy_unavailable"
    title = "The policy engine is not available"


class AuditUnavailable(GatewayError):
    """The audit record could not be written: fail closed, no data leaves."""

    status = 503
    code = "audit_unavailable"
    title = "The audit trail is not available"


class MaskingFailed(GatewayError):
    """Result masking failed: fail closed."""

    status = 500
    code = "masking_failed"
    title = "Result masking failed"


class ConnectorUnavailable(GatewayError):
    status = 503
    code = "connector_unavailable"
    title = "The database is not available"


class QueryTimeout(GatewayError):
    status = 504
    code = "query_timeout"
    title = "The query took too long"


class DatabaseRejected(GatewayError):
    """The database refused the rewritten query; its own text never reaches the caller."""

    status = 422
    code = "database_rejected_query"
    title = "The database rejected the query"
