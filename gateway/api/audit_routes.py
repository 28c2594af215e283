"""The audit API: search, export, summaries, chain verification, receipts, decryption, subject access.

Mounted by :func:`gateway.api.app.create_app` with ``app.include_router(audit_router(runtime, principal))``.
Documented for users in docs/auditor-api.md.

Access rules (checked here, not by the data policy):

* every endpoint needs a valid access token;
* auditors (role ``auditor``) and the data-protection officer (role ``dpo``) see every record; everyone
  else sees only records with their own ``username`` (the filter is forced);
* summaries and chain verification: auditors and the DPO; decrypting an original SQL text and
  data-subject access searches: the DPO only; verifying a receipt: anyone with a token.

Every access, granted or refused, is itself audited (events ``audit_read``, ``audit_decrypt``,
``audit_verify``) *before* any answer leaves; if that record cannot be written the caller gets
``audit_unavailable`` (503) and no data.  Audit events of this module use the record fields as follows:
``rules`` names the access rule applied (``audit.read_all``, ``audit.read_own``, ...), ``columns`` holds
the request's parameters as ``audit.<name>=<value>`` (filters, ``audit.seq=42``, the format),
``datasets`` the dataset filter, ``rows_returned`` the number of records (or groups) returned.
"""

import csv
import hashlib
import hmac
import io
import logging
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, Body, Depends, Path, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from gateway.api import problems
from gateway.audit import (
    AuditEvent,
    AuditFilter,
    AuditKeys,
    StoredRecord,
    VerifyReport,
    decrypt_original,
    format_time,
    verify,
    verify_receipt,
)
from gateway.audit.subject_access import SubjectAccessReport, pseudonym_domains, requests_touching_person
from gateway.errors import AccessDenied, AuditUnavailable, BadRequest, GatewayError, NotFound
from gateway.identity.principal import Principal
from gateway.runtime import Runtime

log = logging.getLogger("gateway.api.audit")

AUDIT_ROLES = frozenset({"auditor", "dpo"})
DPO_ROLE = "dpo"
MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
EXPORT_BATCH = 1000

#: columns of the CSV export, in order
CSV_COLUMNS = (
    "seq", "time", "request_id", "event", "decision", "username", "office", "roles", "subject",
    "client_address", "purpose", "datasets", "columns", "rules", "masks", "error_code", "policy_version",
    "rows_returned", "bytes_returned", "duration_ms", "connector", "sql_dialect", "sql_normalised",
    "sql_rewritten", "rewritten_dialect", "person_keys_count", "original_sql_available", "prev_hash",
    "record_hash",
)
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")

PROBLEM_RESPONSES = problems.openapi_responses(
    (400, "Invalid request"),
    (401, "Missing or invalid access token"),
    (403, "Your role may not use this endpoint"),
    (404, "No such record, or not visible to you"),
    (503, "The audit trail is unavailable"),
)


# --- presentation of records (shared with the CLI) -------------------------------------------------

def record_view(record: StoredRecord) -> dict[str, Any]:
    """A record as the API shows it: ``seq``, the stored event fields, the chain hashes.

    The Fernet ciphertext of the original SQL is replaced by ``original_sql_available`` (it is of no use
    without the key, which only the decryption endpoint applies), and the recorded person keys by their
    number ``person_keys_count``: pseudonyms of residents are needed only by the subject-access search,
    which reads them from the store itself.
    """
    data = dict(record.event_data)
    encrypted = data.pop("sql_original_encrypted", None)
    person_keys = data.pop("person_keys", None)
    return {
        "seq": record.seq,
        **data,
        "person_keys_count": len(person_keys) if isinstance(person_keys, list) else 0,
        "original_sql_available": bool(encrypted),
        "prev_hash": record.prev_hash,
        "record_hash": record.record_hash,
    }


def _csv_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, dict):
        text = ";".join(f"{k}={v}" for k, v in sorted(value.items()))
    elif isinstance(value, (list, tuple)):
        text = ";".join(str(v) for v in value)
    else:
        text = str(value)
    # spreadsheet formula injection: purposes and names are caller-controlled text
    return "'" + text if text.startswith(_FORMULA_START) else text


def csv_row(view: dict[str, Any]) -> list[str]:
    """One CSV line (see :data:`CSV_COLUMNS`) of a :func:`record_view`: lists joined with ``;``, masks as
    ``column=mask``, text cells that a spreadsheet would run as a formula prefixed with ``'``."""
    return [_csv_text(view.get(name)) for name in CSV_COLUMNS]


def reason_digest(reason: str, keys: AuditKeys) -> str:
    """What an ``audit_decrypt`` record keeps of the stated reason: its length and a keyed digest.

    ``hmac-sha256:<32 hex>;len=<n>`` with HMAC-SHA-256 under the audit SQL key over
    ``"audit-reason\\0" + reason`` (blanks at both ends removed).  The reason itself may name a person
    (a complaint, a case), and the hash-chained trail can never be corrected, so it is not stored; the
    DPO keeps the text in the case file, and whoever holds the audit key can show that a given text is
    the one that was stated.  Keyed, so short reasons cannot be guessed from the trail.
    """
    text = reason.strip()
    digest = hmac.new(keys.fernet_key, b"audit-reason\0" + text.encode("utf-8"), hashlib.sha256).hexdigest()
    return f"hmac-sha256:{digest[:32]};len={len(text)}"


# --- request bodies and answers ---------------------------------------------------------------------

class DecryptBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    reason: str = Field(
        min_length=3,
        max_length=1000,
        description="Why the original SQL must be read (e.g. a case number). Only its length and a keyed "
        "digest are recorded, never the text; still, write no personal data into it.",
    )


class OriginalSql(BaseModel):
    seq: int
    request_id: str | None
    sql_dialect: str | None
    sql: str


class SubjectAccessBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    dataset: str = Field(min_length=1, max_length=200)
    person_key: str = Field(min_length=1, max_length=500,
                            description="the raw person key (e.g. 4711), or a pseudonym an analyst saw (p_...)")
    time_from: datetime | None = None
    time_to: datetime | None = None


class ReceiptCheck(BaseModel):
    valid: bool
    reason: str
    seq: int | None = None
    request_id: str | None = None


class SummaryGroup(BaseModel):
    key: str | None
    records: int
    allow: int = 0
    deny: int = 0
    error: int = 0


class RuleCount(BaseModel):
    rule: str
    count: int


class Summary(BaseModel):
    by: str
    total_records: int
    groups: list[SummaryGroup]
    denials_by_rule: list[RuleCount] = Field(
        description="per rule, how many denied records name it (a denied record names its denying rule "
        "and the other rules of the decision)"
    )


class RecordPage(BaseModel):
    records: list[dict[str, Any]]
    next_offset: int | None
    limit: int
    offset: int


# --- query parameters -------------------------------------------------------------------------------

def audit_filters(
    time_from: Annotated[datetime | None, Query(description="records at or after (ISO-8601, UTC if naive)")] = None,
    time_to: Annotated[datetime | None, Query(description="records before (exclusive)")] = None,
    user: Annotated[str | None, Query(max_length=200, description="username")] = None,
    office: Annotated[str | None, Query(max_length=200)] = None,
    dataset: Annotated[str | None, Query(max_length=200)] = None,
    purpose: Annotated[str | None, Query(max_length=200)] = None,
    decision: Annotated[Literal["allow", "deny", "error"] | None, Query()] = None,
    rule: Annotated[str | None, Query(max_length=300, description="a rule named in the record")] = None,
    event: Annotated[str | None, Query(max_length=50, description="query, unauthenticated, audit_read, ...")]
    = None,
    request_id: Annotated[str | None, Query(max_length=100)] = None,
) -> AuditFilter:
    return AuditFilter(time_from=time_from, time_to=time_to, username=user, office=office, dataset=dataset,
                       purpose=purpose, decision=decision, rule=rule, event=event, request_id=request_id)


_FILTER_PARAMS = (("time_from", "time_from"), ("time_to", "time_to"), ("username", "user"),
                  ("office", "office"), ("dataset", "dataset"), ("purpose", "purpose"),
                  ("decision", "decision"), ("rule", "rule"), ("event", "event"), ("request_id", "request_id"))


def filter_parameters(filters: AuditFilter) -> list[str]:
    """The filters as ``audit.filter.<name>=<value>`` strings (for the audit event's ``columns``)."""
    out: list[str] = []
    for attr, name in _FILTER_PARAMS:
        value = getattr(filters, attr)
        if value is None:
            continue
        text = format_time(value) if isinstance(value, datetime) else str(value)
        out.append(f"audit.filter.{name}={text}")
    return out


def iter_matching(store_query: Callable[[AuditFilter, int, int], list[StoredRecord]], filters: AuditFilter,
                  *, offset: int = 0, limit: int | None = None, head_seq: int | None = None,
                  batch_size: int = EXPORT_BATCH, first: list[StoredRecord] | None = None
                  ) -> Iterator[StoredRecord]:
    """All records matching ``filters`` from ``offset`` in pages, each at most once, none newer than
    ``head_seq`` (so an export ends even while records are appended).  ``first`` is the already fetched
    first page."""
    emitted = 0
    last: int | None = None
    position = offset
    batch = first
    while True:
        if batch is None:
            batch = store_query(filters, batch_size, position)
        for record in batch:
            if head_seq is not None and record.seq > head_seq:
                continue
            if last is not None and (record.seq >= last if filters.newest_first else record.seq <= last):
                continue  # shifted page: already emitted
            last = record.seq
            yield record
            emitted += 1
            if limit is not None and emitted >= limit:
                return
        if len(batch) < batch_size:
            return
        position += len(batch)
        batch = None


# --- the router -------------------------------------------------------------------------------------

def _is_auditor(caller: Principal) -> bool:
    return bool(AUDIT_ROLES.intersection(caller.roles))


def _is_dpo(caller: Principal) -> bool:
    return DPO_ROLE in caller.roles


def _request_id(request: Request) -> str:
    value = getattr(request.state, "request_id", None)
    if not value:
        value = uuid.uuid4().hex
        request.state.request_id = value
    return str(value)


def audit_router(runtime: Runtime, principal_dependency: Callable[..., Principal]) -> APIRouter:
    """The audit endpoints; ``principal_dependency`` is the app's token-checking dependency."""
    router = APIRouter(tags=["audit"], responses=PROBLEM_RESPONSES)
    Caller = Annotated[Principal, Depends(principal_dependency)]
    Filters = Annotated[AuditFilter, Depends(audit_filters)]
    gateway = runtime.gateway

    def store_query(filters: AuditFilter, limit: int, offset: int) -> list[StoredRecord]:
        return gateway.audit.query(filters, limit=limit, offset=offset)

    def audit(caller: Principal, request: Request, *, event: str, decision: Literal["allow", "deny", "error"],
              rule: str, parameters: Iterable[str] = (), datasets: Iterable[str] = (),
              purpose: str | None = None, rows: int | None = None, error_code: str | None = None) -> None:
        """Append the record of this audit access; raise AuditUnavailable (fail closed) if impossible."""
        record = AuditEvent.for_principal(
            caller,
            request_id=_request_id(request),
            event=event,
            decision=decision,
            client_address=request.client.host if request.client else None,
            rules=[rule],
            columns=list(parameters),
            datasets=list(datasets),
            purpose=purpose,
            rows_returned=rows,
            error_code=error_code,
            policy_version=gateway.policy.version,
        )
        try:
            gateway.audit.append(record)
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable("the audit access could not be recorded, so nothing is returned",
                                   code="audit_unavailable") from exc

    def refuse(caller: Principal, request: Request, *, event: str, rule: str, detail: str,
               parameters: Iterable[str] = (), datasets: Iterable[str] = ()) -> AccessDenied:
        error = AccessDenied(detail, code="audit_role_required", rule=rule)
        audit(caller, request, event=event, decision="deny", rule=rule, parameters=parameters,
              datasets=datasets, error_code=error.code)
        return error

    def scoped(caller: Principal, filters: AuditFilter) -> tuple[AuditFilter, str]:
        if _is_auditor(caller):
            return filters, "audit.read_all"
        return filters.model_copy(update={"username": caller.username}), "audit.read_own"

    def visible(caller: Principal, record: StoredRecord) -> bool:
        return _is_auditor(caller) or record.event_data.get("username") == caller.username

    def current_grants() -> list[Any] | None:
        """The grants of the policy files (for the pseudonym domains of person keys); None if unreadable."""
        from gateway.policy.engine import load_bundle

        try:
            grants = load_bundle(runtime.settings.policy_dir, gateway.catalog).data.get("grants")
        except Exception as exc:  # the defaults still apply; never fail the search for this
            log.warning("subject access: the policy grants could not be read (%s)", type(exc).__name__)
            return None
        return grants if isinstance(grants, list) else None

    def json_response(payload: Any, status: int = 200) -> Response:
        return Response(orjson.dumps(payload), status_code=status, media_type="application/json",
                        headers={"Cache-Control": "no-store"})

    @router.get(
        "/v1/audit",
        response_model=RecordPage,
        summary="Search the audit trail (JSON page, or CSV / JSON-lines download)",
        responses={200: {"content": {"text/csv": {}, "application/x-ndjson": {}}}},
    )
    def list_records(
        request: Request,
        caller: Caller,
        filters: Filters,
        limit: Annotated[int | None, Query(ge=1, le=MAX_LIMIT, description="JSON: default 100; "
                                           "CSV/JSON lines: default all matching records")] = None,
        offset: Annotated[int, Query(ge=0)] = 0,
        newest_first: bool = False,
        fmt: Annotated[Literal["json", "csv", "jsonl"], Query(alias="format")] = "json",
    ) -> Response:
        scope, rule = scoped(caller, filters.model_copy(update={"newest_first": newest_first}))
        parameters = [*filter_parameters(scope), f"audit.format={fmt}", f"audit.offset={offset}"]
        if limit is not None:
            parameters.append(f"audit.limit={limit}")
        datasets = [scope.dataset] if scope.dataset else []
        if fmt == "json":
            page_size = limit or DEFAULT_LIMIT
            records = store_query(scope, page_size, offset)
            audit(caller, request, event="audit_read", decision="allow", rule=rule, parameters=parameters,
                  datasets=datasets, rows=len(records))
            return json_response({
                "records": [record_view(r) for r in records],
                "next_offset": offset + len(records) if len(records) == page_size else None,
                "limit": page_size,
                "offset": offset,
            })
        head_seq, _ = gateway.audit.head()
        batch_size = min(limit or EXPORT_BATCH, EXPORT_BATCH)
        first = store_query(scope, batch_size, offset)  # store failures become a problem, not a cut stream
        complete = len(first) < batch_size or (limit is not None and limit <= batch_size)
        known = sum(1 for r in first if r.seq <= head_seq)
        rows = min(known, limit) if limit is not None else known
        audit(caller, request, event="audit_read", decision="allow", rule=rule, parameters=parameters,
              datasets=datasets, rows=rows if complete else None)
        stream = iter_matching(store_query, scope, offset=offset, limit=limit, head_seq=head_seq,
                               batch_size=batch_size, first=first)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        if fmt == "csv":
            return StreamingResponse(
                _csv_stream(stream), media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.csv"',
                         "Cache-Control": "no-store"},
            )
        return StreamingResponse(
            _jsonl_stream(stream), media_type="application/x-ndjson",
            headers={"Content-Disposition": f'attachment; filename="audit-{stamp}.jsonl"',
                     "Cache-Control": "no-store"},
        )

    @router.get("/v1/audit/summary", response_model=Summary,
                summary="Counts per dataset, office, day or rule (auditors and DPO)")
    def summary(
        request: Request,
        caller: Caller,
        filters: Filters,
        by: Annotated[Literal["dataset", "office", "day", "rule"], Query()] = "dataset",
    ) -> Response:
        parameters = [*filter_parameters(filters), f"audit.by={by}"]
        datasets = [filters.dataset] if filters.dataset else []
        if not _is_auditor(caller):
            raise refuse(caller, request, event="audit_read", rule="audit.summary_role_required",
                         detail="summaries of the audit trail are for auditors and the data-protection officer",
                         parameters=parameters, datasets=datasets)
        groups: dict[str | None, Counter[str]] = {}
        denials: Counter[str] = Counter()
        total = 0
        head_seq, _ = gateway.audit.head()
        for record in iter_matching(store_query, filters, head_seq=head_seq):
            total += 1
            data = record.event_data
            decision = str(data.get("decision"))
            for key in _summary_keys(record, by):
                counter = groups.setdefault(key, Counter())
                counter["records"] += 1
                counter[decision] += 1
            if decision == "deny":
                denials.update(str(r) for r in data.get("rules") or [])
        result = Summary(
            by=by,
            total_records=total,
            groups=[SummaryGroup(key=key, records=c["records"], allow=c["allow"], deny=c["deny"],
                                 error=c["error"])
                    for key, c in sorted(groups.items(), key=lambda kv: (-kv[1]["records"], kv[0] or ""))],
            denials_by_rule=[RuleCount(rule=r, count=n) for r, n in denials.most_common()],
        )
        audit(caller, request, event="audit_read", decision="allow", rule="audit.summary",
              parameters=parameters, datasets=datasets, rows=len(result.groups))
        return json_response(result.model_dump(mode="json"))

    def subject_access(request: Request, caller: Caller, body: SubjectAccessBody) -> Response:
        parameters = [f"audit.filter.dataset={body.dataset}"]
        if body.time_from is not None:
            parameters.append(f"audit.filter.time_from={format_time(body.time_from)}")
        if body.time_to is not None:
            parameters.append(f"audit.filter.time_to={format_time(body.time_to)}")
        # the person key is never recorded, in any form
        if not _is_dpo(caller):
            raise refuse(caller, request, event="audit_read", rule="audit.subject_access_dpo_only",
                         detail="data-subject access searches are for the data-protection officer",
                         parameters=parameters, datasets=[body.dataset])
        spec = gateway.catalog.datasets.get(body.dataset)
        problem: GatewayError | None = None
        if spec is None:
            problem = NotFound(f"there is no dataset {body.dataset!r} in the catalog", code="unknown_dataset")
        elif spec.person_key is None:
            problem = BadRequest(
                f"dataset {body.dataset!r} has no person key in the catalog, so requests cannot be related to "
                "one person; every allowed query on it is a candidate (search with dataset=...)",
                code="no_person_key",
            )
        if problem is not None:
            audit(caller, request, event="audit_read", decision="error", rule="audit.subject_access",
                  parameters=parameters, datasets=[body.dataset], error_code=problem.code)
            raise problem
        try:
            report: SubjectAccessReport = requests_touching_person(
                gateway.audit, body.dataset, body.person_key, key_ring=gateway.key_ring,
                domains=pseudonym_domains(current_grants(), body.dataset, spec.person_key if spec else None),
                time_from=body.time_from, time_to=body.time_to,
            )
        except ValueError as exc:
            audit(caller, request, event="audit_read", decision="error", rule="audit.subject_access",
                  parameters=parameters, datasets=[body.dataset], error_code="bad_request")
            raise BadRequest(str(exc)) from None
        audit(caller, request, event="audit_read", decision="allow", rule="audit.subject_access",
              parameters=parameters, datasets=[body.dataset], rows=len(report.requests))
        return json_response(report.model_dump(mode="json"))

    @router.get("/v1/audit/subject-access", response_model=SubjectAccessReport,
                summary="Requests that may have disclosed data about one person (DPO; Art. 15 GDPR)")
    def subject_access_get(
        request: Request,
        caller: Caller,
        dataset: Annotated[str, Query(min_length=1, max_length=200)],
        person_key: Annotated[str, Query(min_length=1, max_length=500)],
        time_from: Annotated[datetime | None, Query()] = None,
        time_to: Annotated[datetime | None, Query()] = None,
    ) -> Response:
        return subject_access(request, caller, SubjectAccessBody(
            dataset=dataset, person_key=person_key, time_from=time_from, time_to=time_to))

    @router.post("/v1/audit/subject-access", response_model=SubjectAccessReport,
                 summary="As GET, with the person key in the body (kept out of URLs and access logs)")
    def subject_access_post(request: Request, caller: Caller, body: SubjectAccessBody) -> Response:
        return subject_access(request, caller, body)

    @router.post("/v1/audit/verify", response_model=VerifyReport,
                 summary="Verify the hash chain and signed checkpoints (auditors and DPO)")
    def verify_chain(
        request: Request,
        caller: Caller,
        from_seq: Annotated[int | None, Query(ge=1, description="verify from this record on")] = None,
    ) -> Response:
        parameters = [f"audit.from_seq={from_seq}"] if from_seq is not None else []
        if not _is_auditor(caller):
            raise refuse(caller, request, event="audit_verify", rule="audit.verify_role_required",
                         detail="chain verification is for auditors and the data-protection officer",
                         parameters=parameters)
        report = verify(gateway.audit, runtime.audit_keys.public_key, from_seq=from_seq)
        outcome = ["audit.result=ok"] if report.ok else ["audit.result=broken",
                                                         f"audit.first_bad_seq={report.first_bad_seq}"]
        audit(caller, request, event="audit_verify", decision="allow", rule="audit.verify_chain",
              parameters=[*parameters, *outcome], rows=report.records_checked)
        return json_response(report.model_dump(mode="json"))

    @router.get("/v1/audit/{seq}", summary="One audit record (yours, or any for auditors and DPO)")
    def show(request: Request, caller: Caller, seq: Annotated[int, Path(ge=1)]) -> Response:
        rule = "audit.read_all" if _is_auditor(caller) else "audit.read_own"
        record = gateway.audit.get(seq)
        if record is None or not visible(caller, record):
            # absent and not visible look the same, also in the caller's own audit records
            audit(caller, request, event="audit_read", decision="deny", rule=rule,
                  parameters=[f"audit.seq={seq}"], error_code="audit_record_not_found")
            raise NotFound(f"there is no audit record {seq} that you may see", code="audit_record_not_found")
        audit(caller, request, event="audit_read", decision="allow", rule=rule,
              parameters=[f"audit.seq={seq}"], rows=1)
        return json_response(record_view(record))

    @router.post("/v1/audit/{seq}/original-sql", response_model=OriginalSql,
                 summary="Decrypt the analyst's original SQL of one record (DPO, with a reason)")
    def original_sql(request: Request, caller: Caller, seq: Annotated[int, Path(ge=1)],
                     body: DecryptBody) -> Response:
        purpose = reason_digest(body.reason, runtime.audit_keys)
        parameters = [f"audit.seq={seq}"]
        if not _is_dpo(caller):
            error = AccessDenied("only the data-protection officer may decrypt original SQL",
                                 code="audit_role_required", rule="audit.decrypt_dpo_only")
            audit(caller, request, event="audit_decrypt", decision="deny", rule="audit.decrypt_dpo_only",
                  parameters=parameters, purpose=purpose, error_code=error.code)
            raise error
        record = gateway.audit.get(seq)
        if record is None:
            audit(caller, request, event="audit_decrypt", decision="error", rule="audit.decrypt_original",
                  parameters=parameters, purpose=purpose, error_code="audit_record_not_found")
            raise NotFound(f"there is no audit record {seq}", code="audit_record_not_found")
        target_request = record.event_data.get("request_id")
        parameters.append(f"audit.request_id={target_request}")
        try:
            plain = decrypt_original(record, runtime.audit_keys, body.reason)
        except GatewayError as error:
            audit(caller, request, event="audit_decrypt", decision="error", rule="audit.decrypt_original",
                  parameters=parameters, purpose=purpose, error_code=error.code)
            raise
        audit(caller, request, event="audit_decrypt", decision="allow", rule="audit.decrypt_original",
              parameters=parameters, purpose=purpose, rows=1)
        return json_response(OriginalSql(seq=seq, request_id=target_request,
                                         sql_dialect=record.event_data.get("sql_dialect"),
                                         sql=plain).model_dump())

    @router.post("/v1/receipts/verify", response_model=ReceiptCheck,
                 summary="Check a query receipt: the gateway's signature and that the trail still holds it")
    def check_receipt(
        request: Request,
        caller: Caller,
        body: Annotated[dict[str, Any], Body(description="a receipt, or an object with a `receipt` member")],
    ) -> Response:
        receipt = body.get("receipt") if isinstance(body.get("receipt"), dict) else body
        assert isinstance(receipt, dict)
        valid, reason = verify_receipt(receipt, runtime.audit_keys.public_key, gateway.audit)
        seq = receipt.get("seq") if isinstance(receipt.get("seq"), int) else None
        request_id = receipt.get("request_id") if isinstance(receipt.get("request_id"), str) else None
        parameters = [f"audit.seq={seq}"] if seq is not None else []
        parameters.append("audit.result=valid" if valid else "audit.result=invalid")
        audit(caller, request, event="audit_verify", decision="allow", rule="audit.verify_receipt",
              parameters=parameters)
        return json_response(ReceiptCheck(valid=valid, reason=reason, seq=seq,
                                          request_id=request_id[:100] if request_id else None).model_dump())

    return router


def _summary_keys(record: StoredRecord, by: str) -> list[str | None]:
    data = record.event_data
    if by == "day":
        return [record.time.date().isoformat()]
    if by == "office":
        office = data.get("office")
        return [str(office) if office is not None else None]
    name = "datasets" if by == "dataset" else "rules"
    values = data.get(name) or []
    return [str(v) for v in values] or [None]


def _csv_stream(records: Iterable[StoredRecord]) -> Iterator[bytes]:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for count, record in enumerate(records, start=1):
        writer.writerow(csv_row(record_view(record)))
        if count % 200 == 0:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _jsonl_stream(records: Iterable[StoredRecord]) -> Iterator[bytes]:
    chunk: list[bytes] = []
    for record in records:
        chunk.append(orjson.dumps(record_view(record)) + b"\n")
        if len(chunk) >= 200:
            yield b"".join(chunk)
            chunk = []
    yield b"".join(chunk)
