"""The orchestrator: runs the stages of one request in order and audits every outcome.

identity (done by the caller) -> policy -> SQL rewrite -> connector -> result masking -> audit.
Nothing here knows about HTTP. Any failure of policy, masking or audit means no data leaves.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from connectors.base import (
    Connector,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    QueryRejected,
    StreamResult,
    scrub_credentials,
    stream_from_result,
)
from gateway.audit import AuditEvent, AuditKeys, AuditStore, make_receipt, sql_fields
from gateway.audit.person_index import PersonKeyCollector, encode_person_keys
from gateway.catalog import Catalog
from gateway.errors import (
    AccessDenied,
    AggregateTooLarge,
    AuditUnavailable,
    DatabaseRejected,
    GatewayError,
    InvalidQuery,
    QueryTimeout,
)
from gateway.errors import ConnectorUnavailable as ConnectorDown
from gateway.identity.principal import Principal
from gateway.masking import mask_results
from gateway.masking.operators import ArrowSideContext
from gateway.policy.decision import Decision
from gateway.policy.engine import PolicyEngine
from gateway.policy.inputs import build_input
from gateway.sdc.controls import SdcControls  # SDC hooks (docs/sdc.md)
from gateway.sql.masks import KeyRing
from gateway.sql.pseudonym_replica import PseudonymReplicas
from gateway.sql.rewrite import OutputColumn, RewritePlan, rewrite
from gateway.sql.statement import ParsedQuery, parse_query
from gateway.sql.tables import referenced_datasets

log = logging.getLogger("gateway.pipeline")

Scanner = Callable[[Sequence[str | None]], list[str | None]]


@dataclass(frozen=True)
class QueryRequest:
    sql: str
    purpose: str
    dialect: str = "postgres"


@dataclass(frozen=True)
class RequestContext:
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    client_address: str | None = None


@dataclass(frozen=True)
class QueryStream:
    query_id: str
    columns: tuple[OutputColumn, ...]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    receipt: dict[str, Any]
    decision: Decision
    max_rows: int
    #: ``truncated`` is known once ``batches`` is exhausted
    state: dict[str, bool] = field(default_factory=lambda: {"truncated": False})


@dataclass(frozen=True)
class _Planned:
    """A request after the decision and the rewrite: what the later steps and their audit records need."""

    started: float
    base: dict[str, Any]
    decision: Decision
    plan: RewritePlan
    connector_name: str


@dataclass(frozen=True)
class QueryOutcome:
    query_id: str
    columns: tuple[OutputColumn, ...]
    table: pa.Table
    truncated: bool
    receipt: dict[str, Any]
    decision: Decision


#: which denial to name first when several apply: the one the analyst can act on most directly
_DENIAL_ORDER = (
    "catalog.unknown_dataset",
    "purpose_binding.purpose_not_held",
    "residency.on_premises_only",
    "legal_regime.rueckspielverbot",
    "separation_of_duties.oversight_no_personal_data",
    "purpose_binding.purpose_not_permitted",
    "abac.clearance_too_low",
    "abac.no_grant",
    "time_bound.not_yet_valid",
    "time_bound.outside_office_hours",
    "sovereignty.no_data_use_agreement",
    "sovereignty.cross_office_join_without_agreement",
    "legal_regime.cross_regime_join",
)


def _priority(rule: str) -> int:
    return _DENIAL_ORDER.index(rule) if rule in _DENIAL_ORDER else len(_DENIAL_ORDER)


def _first_denial(decision: Decision) -> AccessDenied:
    ordered = sorted(decision.denials, key=lambda d: _priority(d.rule))
    denial = ordered[0] if ordered else None
    if denial is None:
        return AccessDenied(
            "the policy did not allow this request", code="access_denied", rule="default.deny"
        )
    others = [d.rule for d in ordered[1:]]
    extra: dict[str, Any] = {"rules": [d.rule for d in ordered]}
    detail = f"{denial.message} (rule {denial.rule})"
    if others:
        detail += f"; also refused by: {', '.join(others)}"
    return AccessDenied(detail, code="access_denied", rule=denial.rule, extra=extra)


class Gateway:
    """One configured gateway: catalog, policy engine, connectors, key ring, scanner and audit store."""

    def __init__(
        self,
        *,
        catalog: Catalog,
        policy: PolicyEngine,
        connectors: dict[str, Connector],
        audit: AuditStore,
        audit_keys: AuditKeys,
        key_ring: KeyRing,
        scanner: Scanner,
        max_rows_cap: int = 1_000_000,
        statement_timeout_s: float = 30.0,
        aggregate_max_groups: int = 10_000,
        replicas: PseudonymReplicas | None = None,
    ) -> None:
        self._catalog = catalog
        self.policy = policy
        self.connectors = connectors
        self.audit = audit
        self.audit_keys = audit_keys
        self.key_ring = key_ring
        self.scanner = scanner
        self.max_rows_cap = max_rows_cap
        #: aggregate-only answers are held whole (disclosure control needs all groups): at most this many rows
        self.aggregate_max_groups = aggregate_max_groups
        self.statement_timeout_s = statement_timeout_s
        #: DuckDB tables with pseudonyms computed ahead (gateway.sql.pseudonym_replica)
        self.replicas = replicas or PseudonymReplicas()
        self._plans: OrderedDict[tuple[str, ...], RewritePlan] = OrderedDict()
        self._parsed: OrderedDict[tuple[str, ...], tuple[ParsedQuery, list[str]]] = OrderedDict()
        self._plans_lock = threading.Lock()
        self.plan_cache_size = 1024
        self.sdc = SdcControls(self)  # SDC: differencing guard, privacy budget, DP noise (docs/sdc.md)

    @property
    def catalog(self) -> Catalog:
        """The catalog in force: the reloading policy engine's (it changes with an activated policy
        version), else the one the gateway was built with."""
        live = getattr(self.policy, "catalog", None)
        return live if isinstance(live, Catalog) else self._catalog

    # -- audit helpers -------------------------------------------------------------------------

    def _append(self, event: AuditEvent) -> Any:
        try:
            return self.audit.append(event)
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise AuditUnavailable(
                "the audit record could not be written, so no data is returned", code="audit_unavailable"
            ) from exc

    def audit_event(self, event: AuditEvent) -> None:
        """Append an event written by another part of the gateway (fail closed on error)."""
        self._append(event)

    def record_unauthenticated(self, ctx: RequestContext, error: GatewayError, *, path: str) -> None:
        """Audit a request that failed authentication (the token itself is never recorded)."""
        self._append(
            AuditEvent(
                request_id=ctx.request_id,
                event="unauthenticated",
                decision="deny",
                client_address=ctx.client_address,
                error_code=error.code,
                rules=["identity.authentication_required"],
            )
        )
        log.info("unauthenticated request %s to %s: %s", ctx.request_id, path, error.code)

    # -- the query path ------------------------------------------------------------------------

    def _connector_for(self, datasets: Sequence[str]) -> tuple[str, Connector]:
        names = {self.catalog.datasets[d].connector for d in datasets} or {next(iter(self.connectors))}
        if len(names) > 1:
            raise InvalidQuery(
                "this query joins datasets held in different databases "
                f"({', '.join(sorted(names))}); query them separately",
                code="cross_connector_query",
            )
        name = names.pop()
        connector = self.connectors.get(name)
        if connector is None:
            raise ConnectorDown(f"the database {name!r} is not configured", code="connector_unavailable")
        return name, connector

    def decide(
        self, principal: Principal, purpose: str, datasets: list[str], ctx: RequestContext
    ) -> Decision:
        return self.policy.decide(
            build_input(principal, purpose, datasets, client_address=ctx.client_address)
        )

    def _parse(self, sql: str, dialect: str) -> tuple[ParsedQuery, list[str]]:
        """Parse and find the datasets; cached by text (the AST is never mutated downstream)."""
        key = ("parse", sql, dialect, self.policy.version)  # the version hashes the catalog too
        with self._plans_lock:
            hit = self._parsed.get(key)
            if hit is not None:
                self._parsed.move_to_end(key)
                return hit
        parsed = parse_query(sql, dialect)
        result = (parsed, referenced_datasets(parsed.ast, self.catalog))
        with self._plans_lock:
            self._parsed[key] = result
            if len(self._parsed) > self.plan_cache_size:
                self._parsed.popitem(last=False)
        return result

    def plan(
        self, principal: Principal, request: QueryRequest, ctx: RequestContext,
        audit: dict[str, Any] | None = None,
    ) -> tuple[Decision, RewritePlan, str]:
        """Decide and rewrite. ``audit`` (the request's audit fields) receives the policy input, so the
        record says what the decision was made on and `gateway policy diff` can replay it."""
        parsed, datasets = self._parse(request.sql, request.dialect)
        policy_input = build_input(principal, request.purpose, datasets, client_address=ctx.client_address)
        if audit is not None:
            audit["policy_input"] = policy_input.model_dump(mode="json")
        decision = self.policy.decide(policy_input)
        if not decision.allow:
            denial = _first_denial(decision)
            denial.extra["_datasets"] = list(datasets)  # for the audit record only (not a public extra)
            raise denial
        connector_name, connector = self._connector_for(datasets)
        key = (request.sql, request.dialect, request.purpose, connector.dialect, str(self.max_rows_cap),
               decision.model_dump_json(), self.replicas.token(datasets))
        with self._plans_lock:
            cached = self._plans.get(key)
            if cached is not None:
                self._plans.move_to_end(key)
                return decision, cached, connector_name
        plan = rewrite(
            parsed,
            decision,
            self.catalog,
            target_dialect=connector.dialect,
            keys=self.key_ring,
            purpose=request.purpose,
            max_rows_cap=self.max_rows_cap,
            replicas=self.replicas,
        )
        with self._plans_lock:
            self._plans[key] = plan
            if len(self._plans) > self.plan_cache_size:
                self._plans.popitem(last=False)
        return decision, plan, connector_name

    def explain(self, caller: Principal, subject: Principal, request: QueryRequest, ctx: RequestContext
                ) -> tuple[Decision, RewritePlan]:
        """Plan ``request`` for ``subject`` without running it; audited as ``explain`` for ``caller``."""
        started = time.perf_counter()
        base = {**self._base_event(request, ctx), "event": "explain"}
        decision: Decision | None = None
        plan: RewritePlan | None = None
        try:
            decision, plan, connector_name = self.plan(subject, request, ctx, base)
        except Exception as exc:
            raise self._failed(caller, base, exc, decision, plan, None, started) from exc
        event = self._allowed_event(caller, base, decision, plan, connector_name, started, 0, 0)
        self._append(event)
        return decision, plan

    def _base_event(self, request: QueryRequest, ctx: RequestContext) -> dict[str, Any]:
        base: dict[str, Any] = {
            "request_id": ctx.request_id,
            "event": "query",
            "purpose": request.purpose,
            "client_address": ctx.client_address,
            **sql_fields(request.sql, key=self.audit_keys, dialect=request.dialect),
        }
        base.pop("rewritten_dialect", None)
        return base

    def _failed(self, principal: Principal, base: dict[str, Any], exc: Exception, decision: Decision | None,
                plan: RewritePlan | None, connector_name: str | None, started: float) -> GatewayError:
        """Audit a failed request; return the caller-safe error to raise."""
        if isinstance(exc, GatewayError):
            error = exc
        elif isinstance(exc, ConnectorError):
            error = _connector_error(exc, base["request_id"])
        else:
            log.error("request %s failed inside the gateway: %s", base["request_id"], type(exc).__name__)
            error = GatewayError(f"the gateway failed; quote reference {base['request_id']} to the operator")
        self._audit_failure(principal, base, error, decision, plan, connector_name, started)
        return error

    def _allowed_event(self, principal: Principal, base: dict[str, Any], decision: Decision, plan: RewritePlan,
                       connector_name: str, started: float, rows: int | None, nbytes: int | None,
                       person_keys: list[str] | None = None) -> AuditEvent:
        return AuditEvent.for_principal(
            principal,
            **base,
            decision="allow",
            datasets=list(plan.datasets),
            columns=list(plan.columns_touched),
            rules=decision.rules(),
            legal_bases=decision.legal_bases(),
            masks=plan.masks,
            policy_version=decision.policy_version,
            sql_rewritten=plan.sql_for_audit,
            rewritten_dialect=plan.dialect,
            rows_returned=rows,
            bytes_returned=nbytes,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            connector=connector_name,
            person_keys=person_keys or [],
        )

    def _person_key_columns(self, plan: RewritePlan) -> list[tuple[int, str]]:
        """(index, dataset) of the answer's columns that carry a dataset's person key."""
        return [(index, column.dataset) for index, column in enumerate(plan.columns)
                if column.dataset is not None
                and column.source_column == self.catalog.datasets[column.dataset].person_key]

    def _person_keys(self, plan: RewritePlan, table: pa.Table) -> list[str]:
        """Pseudonymous keys of the persons whose rows the answer carries (see gateway/audit/person_index)."""
        entries: list[str] = []
        for index, dataset in self._person_key_columns(plan):
            if index >= table.num_columns:
                continue
            values = pc.unique(table.column(index).drop_null()).to_pylist()
            entries.extend(encode_person_keys(dataset, (str(v) for v in values)))
        return entries

    def _planned(self, principal: Principal, request: QueryRequest, ctx: RequestContext) -> _Planned:
        """Decide and rewrite; a refusal or failure is audited and raised."""
        started = time.perf_counter()
        base = self._base_event(request, ctx)
        decision: Decision | None = None
        plan: RewritePlan | None = None
        connector_name: str | None = None
        try:
            decision, plan, connector_name = self.plan(principal, request, ctx, base)
        except Exception as exc:
            raise self._failed(principal, base, exc, decision, plan, connector_name, started) from exc
        return _Planned(started, base, decision, plan, connector_name)

    def _failed_after_plan(self, principal: Principal, p: _Planned, exc: Exception) -> GatewayError:
        return self._failed(principal, p.base, exc, p.decision, p.plan, p.connector_name, p.started)

    def _open_source(self, p: _Planned) -> StreamResult:
        """The connector's native stream, or its whole result as one (for connectors that do not stream)."""
        connector = self.connectors[p.connector_name]
        streamer = getattr(connector, "stream", None)
        if streamer is not None:
            source: StreamResult = streamer(p.plan.sql, max_rows=p.plan.max_rows, timeout_s=self.statement_timeout_s)
            return source
        return stream_from_result(connector.execute(p.plan.sql, max_rows=p.plan.max_rows,
                                                    timeout_s=self.statement_timeout_s))

    def _outcome(self, principal: Principal, ctx: RequestContext, p: _Planned, table: pa.Table,
                 truncated: bool) -> QueryOutcome:
        """Audit a whole answer (rows and person keys) and return it."""
        event = self._allowed_event(principal, p.base, p.decision, p.plan, p.connector_name, p.started,
                                    table.num_rows, table.nbytes, self._person_keys(p.plan, table))
        stored = self._append(event)
        receipt = make_receipt(stored, event, self.audit_keys.signing_key)
        return QueryOutcome(query_id=ctx.request_id, columns=p.plan.columns, table=table,
                            truncated=truncated, receipt=receipt, decision=p.decision)

    def _stream(self, principal: Principal, ctx: RequestContext, p: _Planned, first: pa.Table,
                source: StreamResult, arrow_side: ArrowSideContext) -> QueryStream:
        """Audit the start of a streamed answer (before any batch leaves) and return the stream; the rest of
        ``source`` is masked batch by batch and ``query_completed`` is written when it ends."""
        try:
            stored = self._append(self._allowed_event(principal, p.base, p.decision, p.plan, p.connector_name,
                                                      p.started, None, None))
        except GatewayError:
            source.close()
            raise
        receipt = make_receipt(stored, stored.event, self.audit_keys.signing_key)
        return QueryStream(query_id=ctx.request_id, columns=p.plan.columns, schema=first.schema,
                           batches=self._masked_batches(principal, p.base, first, source, p.plan, p.started,
                                                        arrow_side),
                           receipt=receipt, decision=p.decision, max_rows=p.plan.max_rows, state=source.state)

    def run_query(self, principal: Principal, request: QueryRequest, ctx: RequestContext) -> QueryOutcome:
        """Run a query and return the whole masked answer (the JSON API)."""
        return self._collected(principal, request, ctx, self._planned(principal, request, ctx))

    def _collected(self, principal: Principal, request: QueryRequest, ctx: RequestContext,
                   p: _Planned) -> QueryOutcome:
        try:
            connector = self.connectors[p.connector_name]
            ticket = self.sdc.admit(principal, request, p.decision, p.plan, connector, request_id=ctx.request_id,
                                     client_address=ctx.client_address)  # SDC
            bound = self._aggregate_bound(p.plan)
            result = connector.execute(p.plan.sql, max_rows=bound or p.plan.max_rows,
                                       timeout_s=self.statement_timeout_s)
            if bound is not None and result.truncated:
                raise _aggregate_too_large(bound)
            table = mask_results(self.sdc.perturb(ticket, result.table), p.plan, self.scanner,  # SDC: DP noise
                                 ArrowSideContext(self.key_ring, request.purpose, p.decision))
            self.sdc.record(ticket)  # SDC: remember the population for the differencing guard
        except Exception as exc:
            raise self._failed_after_plan(principal, p, exc) from exc
        return self._outcome(principal, ctx, p, table, result.truncated)

    def _aggregate_bound(self, plan: RewritePlan) -> int | None:
        """The row bound of an aggregate-only answer when it is tighter than the plan's own row limit."""
        if plan.min_cell is None or self.aggregate_max_groups >= plan.max_rows:
            return None
        return self.aggregate_max_groups

    def run_query_stream(self, principal: Principal, request: QueryRequest, ctx: RequestContext) -> QueryStream:
        """Run a query whose answer is streamed batch by batch (CSV, Arrow, Parquet).

        The allow record is appended before the first batch leaves (fail closed); a second record,
        ``query_completed``, carries rows and bytes once the stream has ended (or why it broke off).
        """
        p = self._planned(principal, request, ctx)
        if p.plan.min_cell is not None:
            # aggregate-only answers are small and must pass every disclosure control (differencing guard,
            # privacy budget, noise) exactly as in the JSON path: run them there and stream the result
            outcome = self._collected(principal, request, ctx, p)
            return QueryStream(query_id=outcome.query_id, columns=outcome.columns, schema=outcome.table.schema,
                               batches=iter(outcome.table.to_batches()), receipt=outcome.receipt,
                               decision=outcome.decision, max_rows=p.plan.max_rows,
                               state={"truncated": outcome.truncated})
        arrow_side = ArrowSideContext(self.key_ring, request.purpose, p.decision)
        try:
            source = self._open_source(p)
            first_in = next(source.batches, None)
            first_table = pa.Table.from_batches([first_in] if first_in is not None else [], schema=source.schema)
            first = mask_results(first_table, p.plan, self.scanner, arrow_side)
        except Exception as exc:
            raise self._failed_after_plan(principal, p, exc) from exc
        return self._stream(principal, ctx, p, first, source, arrow_side)

    def run_query_json(self, principal: Principal, request: QueryRequest, ctx: RequestContext,
                       *, stream_after_rows: int) -> QueryOutcome | QueryStream:
        """The JSON API: the whole answer when it has at most ``stream_after_rows`` rows, else a stream, so a
        large answer never sits in memory whole.

        Up to the threshold nothing differs from ``run_query`` (one ``query`` record with rows and person
        keys, written before any data leaves). Past it, the answer continues as ``run_query_stream`` does:
        the ``query`` record is written before the first batch leaves and ``query_completed`` follows.
        Aggregate-only answers always take the whole-answer path (every disclosure control applies there).
        """
        p = self._planned(principal, request, ctx)
        if p.plan.min_cell is not None or p.plan.max_rows <= stream_after_rows:
            return self._collected(principal, request, ctx, p)
        arrow_side = ArrowSideContext(self.key_ring, request.purpose, p.decision)
        held: list[pa.Table] = []
        held_rows = 0
        finished = True
        try:
            source = self._open_source(p)
            for batch in source.batches:
                held.append(mask_results(pa.Table.from_batches([batch]), p.plan, self.scanner, arrow_side))
                held_rows += held[-1].num_rows
                if held_rows > stream_after_rows:
                    finished = False
                    break
            if not held:
                held.append(mask_results(pa.Table.from_batches([], schema=source.schema), p.plan, self.scanner,
                                         arrow_side))
            table = pa.concat_tables(held)
        except Exception as exc:
            raise self._failed_after_plan(principal, p, exc) from exc
        del held
        if finished:  # small after all: exactly the run_query record and answer
            source.close()
            return self._outcome(principal, ctx, p, table, source.truncated)
        return self._stream(principal, ctx, p, table, source, arrow_side)

    def _masked_batches(self, principal: Principal, base: dict[str, Any], first: pa.Table, source: StreamResult,
                        plan: RewritePlan, started: float, arrow_side: ArrowSideContext) -> Iterator[pa.RecordBatch]:
        rows = 0
        nbytes = 0
        error_code: str | None = None
        # the persons the answer carries, for data-subject access; noted before a batch leaves
        person_columns = [(i, d) for i, d in self._person_key_columns(plan) if i < first.num_columns]
        collectors = {dataset: PersonKeyCollector(dataset) for _, dataset in person_columns}
        try:
            for index, dataset in person_columns:
                collectors[dataset].add(first.column(index))
            yield from first.to_batches()
            rows, nbytes = first.num_rows, first.nbytes
            for batch in source.batches:
                masked = mask_results(pa.Table.from_batches([batch]), plan, self.scanner, arrow_side)
                for index, dataset in person_columns:
                    collectors[dataset].add(masked.column(index))
                for out in masked.to_batches():
                    rows += out.num_rows
                    nbytes += out.nbytes
                    yield out
        except ConnectorError as exc:
            error_code = _connector_error(exc, base["request_id"]).code
            raise
        except GatewayError as exc:
            error_code = exc.code
            raise
        except GeneratorExit:
            error_code = "client_disconnected"
            raise
        finally:
            source.close()
            completed = {**base, "event": "query_completed"}
            try:
                self._append(AuditEvent.for_principal(
                    principal, **completed, decision="allow" if error_code is None else "error",
                    rows_returned=rows, bytes_returned=nbytes, error_code=error_code,
                    datasets=list(plan.datasets),
                    person_keys=[entry for c in collectors.values() for entry in c.entries()],
                    duration_ms=round((time.perf_counter() - started) * 1000, 3)))
            except GatewayError:
                log.error("request %s: the completion record could not be written", base["request_id"])

    def _audit_failure(
        self,
        principal: Principal,
        base: dict[str, Any],
        error: GatewayError,
        decision: Decision | None,
        plan: RewritePlan | None,
        connector_name: str | None,
        started: float,
    ) -> None:
        outcome = "deny" if error.status in (401, 403) else "error"
        rules = list(decision.rules()) if decision is not None else []
        for rule in [error.rule, *error.extra.get("rules", [])]:
            if rule and rule not in rules:
                rules.append(rule)
        known_datasets = list(error.extra.get("_datasets", []))
        event = AuditEvent.for_principal(
            principal,
            **base,
            decision=outcome,
            rules=rules,
            legal_bases=decision.legal_bases() if decision is not None else {},
            error_code=error.code,
            datasets=list(plan.datasets) if plan else sorted(decision.datasets) if decision else known_datasets,
            columns=list(plan.columns_touched) if plan else [],
            masks=plan.masks if plan else {},
            policy_version=decision.policy_version if decision else self.policy.version,
            sql_rewritten=plan.sql_for_audit if plan else None,
            rewritten_dialect=plan.dialect if plan else None,
            connector=connector_name,
            duration_ms=round((time.perf_counter() - started) * 1000, 3),
            rows_returned=0,
        )
        self._append(event)


#: how loud the operator's log line for a connector failure is: an unreachable database is the
#: operator's business, a rejected or slow query usually the analyst's
_CONNECTOR_LOG_LEVELS: tuple[tuple[type[ConnectorError], int], ...] = (
    (ConnectorUnavailable, logging.WARNING),
    (ConnectorTimeout, logging.INFO),
    (QueryRejected, logging.INFO),
)


def _log_connector_failure(exc: ConnectorError, request_id: str) -> None:
    """The operator's log line: the connector's message and ``internal_detail`` (the database's own
    text), with any DSN credentials scrubbed. The caller never sees the detail."""
    level = next((lvl for kind, lvl in _CONNECTOR_LOG_LEVELS if isinstance(exc, kind)), logging.ERROR)
    detail = scrub_credentials(exc.internal_detail) if exc.internal_detail else "-"
    log.log(level, "request %s: %s: %s (detail: %s)", request_id, type(exc).__name__,
            scrub_credentials(str(exc)), detail)


def _aggregate_too_large(bound: int) -> AggregateTooLarge:
    return AggregateTooLarge(
        f"this aggregate has more than {bound:,} groups, the most an aggregate-only answer may have (it is "
        "held whole while disclosure control runs); group more coarsely (for example by year instead of "
        "date, by district instead of postcode) or add a filter",
        code="aggregate_too_large")


def _connector_error(exc: ConnectorError, request_id: str) -> GatewayError:
    """Map a connector failure to a caller-safe error (the database's own text is never passed on) and
    write the operator's log line."""
    _log_connector_failure(exc, request_id)
    if isinstance(exc, ConnectorTimeout):
        return QueryTimeout(
            f"{exc}; narrow the query (filters, LIMIT) or aggregate in SQL", code="query_timeout"
        )
    if isinstance(exc, ConnectorUnavailable):
        return ConnectorDown(
            f"the database is not reachable right now; try again later (reference {request_id})",
            code="connector_unavailable",
        )
    if isinstance(exc, QueryRejected):
        return DatabaseRejected(
            "the database rejected the query (for example a type mismatch, a failed cast or division by "
            f"zero); its message is withheld because it can contain data. Check types and casts "
            f"(reference {request_id})",
            code="database_rejected_query",
        )
    return GatewayError(f"the database failed (reference {request_id})", code="connector_error")
