"""The HTTP API: thin handlers over the pipeline. OpenAPI at /docs."""

import base64
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from typing import Annotated

import pyarrow as pa
from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway import __version__
from gateway.api import problems
from gateway.api.audit_routes import audit_router
from gateway.api.formats import MEDIA_TYPES, encode, negotiate
from gateway.api.models import (
    ColumnInfo,
    DatasetsResponse,
    DetokeniseBody,
    ExplainBody,
    ExplainResponse,
    Health,
    QueryBody,
    QueryResponse,
)
from gateway.api.policy_routes import policy_router
from gateway.api.serialize import dumps, rows_of
from gateway.audit import AuditEvent, encrypt_original, normalise_sql
from gateway.datasets import visible_datasets
from gateway.errors import AccessDenied, AuthenticationError, BadRequest, GatewayError
from gateway.identity.principal import Principal
from gateway.masking.disclosure import SUPPRESSED_COLUMN
from gateway.masking.tokens import DetokeniseRecord, detokenise
from gateway.pipeline import QueryOutcome, QueryRequest, QueryStream, RequestContext
from gateway.runtime import Runtime
from gateway.sql.rewrite import OutputColumn

PROBLEM_RESPONSES = problems.openapi_responses(
    (400, "Invalid request"),
    (401, "Missing or invalid access token"),
    (403, "Refused by policy"),
    (422, "The query cannot be accepted"),
    (503, "A dependency (policy, audit, database) is unavailable"),
)


def _context(request: Request) -> RequestContext:
    return RequestContext(
        request_id=request.state.request_id, client_address=request.client.host if request.client else None
    )


def create_app(runtime: Runtime) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        runtime.close()

    app = FastAPI(
        title="Municipal data gateway",
        version=__version__,
        lifespan=lifespan,
        description="Privacy-preserving SQL access to the city's datasets. "
        "Every answer is masked per policy and audited.",
    )
    app.add_exception_handler(GatewayError, problems.gateway_error_handler)
    app.add_exception_handler(RequestValidationError, problems.validation_error_handler)
    app.add_exception_handler(StarletteHTTPException, problems.http_error_handler)
    app.add_exception_handler(Exception, problems.unexpected_error_handler)
    gateway = runtime.gateway

    @app.middleware("http")
    async def request_id(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        request.state.request_id = uuid.uuid4().hex
        response = await call_next(request)
        response.headers["X-Request-Id"] = request.state.request_id
        return response

    def principal(
        request: Request, authorization: Annotated[str | None, Header(include_in_schema=False)] = None
    ) -> Principal:
        token: str | None = None
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() != "bearer" or not value.strip():
                error = AuthenticationError(
                    "send the access token as `Authorization: Bearer <token>`",
                    code="token_malformed",
                    error="invalid_request",
                )
                gateway.record_unauthenticated(_context(request), error, path=request.url.path)
                raise error
            token = value.strip()
        try:
            return runtime.verifier.verify(token)
        except AuthenticationError as error:
            gateway.record_unauthenticated(_context(request), error, path=request.url.path)
            raise

    Caller = Annotated[Principal, Depends(principal)]

    @app.post(
        "/v1/query",
        response_model=QueryResponse,
        responses=PROBLEM_RESPONSES,
        summary="Run one read-only SQL query for a declared purpose",
    )
    def query(body: QueryBody, request: Request, caller: Caller,
              format: Annotated[str | None, Query(description="json, csv, arrow or parquet "
                                                   "(instead of an Accept header)")] = None) -> Response:
        fmt = negotiate(request.headers.get("accept"), format)
        if fmt is None:
            raise BadRequest("this answer format is not available; accept application/json, text/csv, "
                             "application/vnd.apache.arrow.stream or application/vnd.apache.parquet",
                             code="format_not_acceptable")
        query_request = QueryRequest(sql=body.sql, purpose=body.purpose,
                                     dialect=body.dialect or runtime.settings.default_dialect)
        if fmt == "json":
            answer = gateway.run_query_json(caller, query_request, _context(request),
                                            stream_after_rows=runtime.settings.json_stream_after_rows)
            if isinstance(answer, QueryOutcome):
                return Response(dumps(_query_payload(answer)), media_type="application/json")
            return StreamingResponse(_json_stream(answer), media_type="application/json",
                                     headers={"X-Query-Id": answer.query_id})
        stream = gateway.run_query_stream(caller, query_request, _context(request))
        columns = _columns_info(stream.schema, stream.columns)
        headers = {
            "X-Query-Id": stream.query_id,
            "X-Columns": base64.urlsafe_b64encode(dumps(columns)).decode("ascii"),
            "X-Receipt": base64.urlsafe_b64encode(dumps(stream.receipt)).decode("ascii"),
            "X-Row-Limit": str(stream.max_rows),
        }
        metadata = {"gateway.columns": dumps(columns).decode(), "gateway.query_id": stream.query_id}
        return StreamingResponse(encode(fmt, stream.schema, stream.batches, metadata),
                                 media_type=MEDIA_TYPES[fmt], headers=headers)

    @app.post("/v1/query/explain", response_model=ExplainResponse, responses=PROBLEM_RESPONSES,
              summary="How a query would be treated: decision, masks, filters (no data)")
    def explain(body: ExplainBody, request: Request, caller: Caller) -> ExplainResponse:
        is_dpo = "dpo" in caller.roles
        subject = caller
        if body.on_behalf_of is not None:
            if not is_dpo:
                raise AccessDenied("only the data-protection officer may explain a query on behalf of "
                                   "someone else", code="explain_not_allowed", rule="separation_of_duties.explain")
            other = body.on_behalf_of
            subject = Principal(subject=f"explain:{other.username}", username=other.username, office=other.office,
                                roles=tuple(other.roles), purposes=tuple(other.purposes),
                                districts=tuple(other.districts), clearance=other.clearance)
        query_request = QueryRequest(sql=body.sql, purpose=body.purpose,
                                     dialect=body.dialect or runtime.settings.default_dialect)
        decision, plan = gateway.explain(caller, subject, query_request, _context(request))
        datasets = {
            name: {
                "columns": {c: {"treatment": r.op, "rule": r.rule, "uses": list(r.permitted_uses())}
                            for c, r in ds.columns.items()},
                "row_filters": [f"{f.column} {f.op} {list(f.values)} [rule {f.rule}]" for f in ds.row_filters],
                "aggregate_only": ds.aggregate_only.model_dump() if ds.aggregate_only else None,
                "max_rows": ds.max_rows,
            }
            for name, ds in decision.datasets.items() if name in plan.datasets
        }
        return ExplainResponse(
            allow=decision.allow, policy_version=decision.policy_version, rules=decision.rules(),
            datasets=datasets, max_rows=plan.max_rows,
            columns=[{"name": c.name, "masking": c.masking, "dataset": c.dataset, "source_column": c.source_column}
                     for c in plan.columns],
            rewritten_sql=normalise_sql(plan.sql_for_audit, plan.dialect) if is_dpo else None,
        )

    @app.post("/v1/detokenise", responses=PROBLEM_RESPONSES,
              summary="Re-identify tokens (role reidentification, purpose held, logged reason)")
    def detokenise_route(body: DetokeniseBody, request: Request, caller: Caller) -> dict[str, object]:
        ctx = _context(request)
        if body.purpose not in caller.purposes:
            raise AccessDenied(f"you do not hold the purpose {body.purpose}", code="access_denied",
                               rule="purpose_binding.purpose_not_held")

        def record(entry: DetokeniseRecord) -> None:
            gateway.audit_event(AuditEvent.for_principal(
                caller, request_id=ctx.request_id, event="detokenise", decision="allow", purpose=body.purpose,
                client_address=ctx.client_address, rules=["tokenise.reidentify", f"domain:{entry.domain}"],
                rows_returned=entry.tokens, sql_original_encrypted=encrypt_original(entry.reason, runtime.audit_keys)))

        values = detokenise(gateway.key_ring, body.tokens, subject=caller.username, roles=caller.roles,
                            purpose=body.purpose, domain=body.domain, reason=body.reason, record=record)
        return {"values": values, "request_id": ctx.request_id}

    @app.get(
        "/v1/datasets",
        response_model=DatasetsResponse,
        responses=PROBLEM_RESPONSES,
        summary="The datasets you may query and how each column is treated",
    )
    def datasets(
        request: Request, caller: Caller, purpose: Annotated[str | None, Query(max_length=100)] = None
    ) -> DatasetsResponse:
        return DatasetsResponse(
            datasets=visible_datasets(gateway, caller, purpose, _context(request)),
            policy_version=gateway.policy.version,
        )

    app.include_router(audit_router(runtime, principal))
    app.include_router(policy_router(runtime, principal))

    @app.get("/healthz", response_model=Health, summary="Liveness and the policy version in force")
    def healthz(response: Response) -> Health:
        seq, _ = gateway.audit.head()
        status_of = getattr(gateway.policy, "status", None)
        reload_status = status_of() if callable(status_of) else None
        degraded = bool(reload_status and reload_status.get("last_error"))
        if reload_status and reload_status.get("serving") is False:
            response.status_code = 503  # OPA serves another policy version: every decision fails closed
        return Health(
            status="degraded" if degraded else "ok",
            policy_version=gateway.policy.version,
            policy_backend=runtime.settings.policy_backend,
            audit_head_seq=seq,
            policy_reload=reload_status,
        )

    return app


def _columns_info(schema: pa.Schema, planned: tuple[OutputColumn, ...]) -> list[dict[str, object]]:
    columns = []
    for index, field in enumerate(schema):
        if index < len(planned):
            masking = planned[index].masking
        else:
            masking = "suppression_flag" if field.name == SUPPRESSED_COLUMN else "computed"
        columns.append(ColumnInfo(name=field.name, type=str(field.type), masking=masking).model_dump())
    return columns


#: rows turned into Python objects at a time when a JSON answer is streamed
JSON_CHUNK_ROWS = 4096


def _json_stream(stream: QueryStream) -> Iterator[bytes]:
    """The JSON answer of ``_query_payload``, written batch by batch (same keys, same order)."""
    yield b'{"columns":' + dumps(_columns_info(stream.schema, stream.columns)) + b',"rows":['
    count = 0
    for batch in stream.batches:
        # Python row objects cost ~10x their Arrow size: convert a few thousand rows at a time
        for offset in range(0, batch.num_rows, JSON_CHUNK_ROWS):
            rows = rows_of(pa.Table.from_batches([batch.slice(offset, JSON_CHUNK_ROWS)]))
            if not rows:
                continue
            body = dumps(rows)[1:-1]  # these rows without the enclosing brackets
            yield (b"," if count else b"") + body
            count += len(rows)
    tail = {"row_count": count, "truncated": stream.state["truncated"], "query_id": stream.query_id,
            "receipt": stream.receipt}
    yield b"]," + dumps(tail)[1:]


def _query_payload(outcome: QueryOutcome) -> dict[str, object]:
    columns = _columns_info(outcome.table.schema, outcome.columns)
    return {
        "columns": columns,
        "rows": rows_of(outcome.table),
        "row_count": outcome.table.num_rows,
        "truncated": outcome.truncated,
        "query_id": outcome.query_id,
        "receipt": outcome.receipt,
    }
