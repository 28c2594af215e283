"""RFC 9457 problem+json: one shape for every error the API returns."""

from __future__ import annotations

import logging
import os
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.errors import AuthenticationError, GatewayError

log = logging.getLogger("gateway.api")

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_BASE = "https://data-gateway.invalid/problems/"

#: keys of ``GatewayError.extra`` that may be shown to callers (everything else stays internal)
_PUBLIC_EXTRA = {"dataset", "column", "use", "function", "construct", "rules", "line", "column_number"}


def openapi_responses(*statuses: tuple[int, str]) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` for routes that answer these statuses with problem+json."""
    return {status: {"description": text, "content": {PROBLEM_MEDIA_TYPE: {}}} for status, text in statuses}


def problem_body(
    *,
    status: int,
    code: str,
    title: str,
    detail: str,
    request_id: str | None,
    rule: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": PROBLEM_BASE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if request_id:
        body["instance"] = f"urn:request:{request_id}"
        body["request_id"] = request_id
    if rule:
        body["rule"] = rule
    for key, value in (extra or {}).items():
        if key in _PUBLIC_EXTRA and value is not None:
            body[key] = value
    return body


def problem_response(error: GatewayError, request_id: str | None) -> JSONResponse:
    headers: dict[str, str] = {}
    if isinstance(error, AuthenticationError):
        description = error.detail.replace('"', "'")
        headers["WWW-Authenticate"] = (
            f'Bearer realm="data-gateway", error="{error.error}", error_description="{description}"'
            if error.code != "token_missing"
            else 'Bearer realm="data-gateway"'
        )
    body = problem_body(
        status=error.status,
        code=error.code,
        title=error.title,
        detail=error.detail,
        request_id=request_id,
        rule=error.rule,
        extra=error.extra,
    )
    return JSONResponse(body, status_code=error.status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def _request_id(request: Request) -> str | None:
    value = getattr(request.state, "request_id", None)
    return str(value) if value else None


async def gateway_error_handler(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, GatewayError)
    return problem_response(exc, _request_id(request))


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Say which fields are wrong, never echo their values."""
    errors = exc.errors() if isinstance(exc, RequestValidationError) else []
    problems = []
    for err in errors:
        location = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        problems.append(f"{location or 'body'}: {err.get('msg', 'invalid')}")
    detail = (
        "the request body is not valid: " + "; ".join(problems[:5])
        if problems
        else "the request body is not valid JSON of the documented shape"
    )
    body = problem_body(
        status=400,
        code="invalid_request",
        title="Invalid request",
        detail=detail,
        request_id=_request_id(request),
    )
    return JSONResponse(body, status_code=400, media_type=PROBLEM_MEDIA_TYPE)


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    status = exc.status_code if isinstance(exc, StarletteHTTPException) else 500
    code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
    detail = {404: "no such endpoint; see /docs for the API", 405: "this method is not allowed here"}.get(
        status, "the request could not be handled"
    )
    body = problem_body(
        status=status,
        code=code,
        title=code.replace("_", " ").capitalize(),
        detail=detail,
        request_id=_request_id(request),
    )
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)


async def unexpected_error_handler(request: Request, exc: Exception) -> JSONResponse:
    request_id = _request_id(request)
    # the traceback can hold data values: only with GATEWAY_DEBUG_TRACEBACKS=1, on the operator's console
    log.error(
        "request %s failed: %s",
        request_id,
        type(exc).__name__,
        exc_info=exc if os.environ.get("GATEWAY_DEBUG_TRACEBACKS") == "1" else None,
    )
    body = problem_body(
        status=500,
        code="internal_error",
        title="The gateway failed",
        detail=f"the gateway failed; quote reference {request_id} to the operator",
        request_id=request_id,
    )
    return JSONResponse(body, status_code=500, media_type=PROBLEM_MEDIA_TYPE)
