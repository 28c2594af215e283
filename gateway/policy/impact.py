"""Impact preview: replay audited requests under a proposed policy and report what would really change.

Every query record in the audit trail carries the policy input its decision was made on (the caller's
attributes, purpose, datasets, time, client address) and the query's SQL with every literal replaced by
``?`` (``sql_normalised``, see gateway/audit/sql_text.py). ``replay`` takes each record through the
gateway's own planning steps twice, under the policy in force and under the proposed one, at the time of
the original request: the decision, then - if the decision allows - the real SQL rewriter
(gateway/sql/rewrite.py) on the recorded SQL, exactly as gateway.pipeline does before a query runs. It
reports the outcome the analyst would meet:

* ``outcome``: allowed -> denied (with the refusing rules and problem code, e.g. a column the query reads
  is now denied: ``column_denied``), denied -> allowed, or denied by other rules;
* ``column``: a changed treatment of a column the query reads (``SELECT *`` reads every released column,
  so a column newly released or withdrawn shows up for it too); columns the query does not read are not
  reported;
* ``row_filter``: row filters added to or removed from a dataset the query reads;
* ``aggregate_only`` and ``max_rows`` of the datasets the query reads.

The report groups the changes by user and dataset, with example request ids an auditor can look up.

What it reads and what it does not: only the literal-free SQL, which it replays. The encrypted original
SQL is never decrypted here, so the DPO who previews a policy reads no personal data (separation of
duties). Decrypting one record's original SQL is a separate, exceptional act of the DPO alone, with a
logged reason (``POST /v1/audit/{seq}/original-sql``, gateway/api/audit_routes.py). Literals do not
decide the rewriter's outcome (which columns are read and how, which datasets, which functions), so each
``?`` is planned as the number 1. The rewritten
SQL is discarded: it is planned with a throwaway pseudonymisation key, and nothing is executed against a
database. A record whose SQL cannot be recovered (no ``sql_normalised``, or the unparseable-SQL marker)
is compared on the two decisions alone, for every dataset it names, and its report line says so
(``decision only: SQL not recoverable``).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import sqlglot
import sqlglot.errors
from sqlglot import exp

from gateway.audit.record import StoredRecord
from gateway.audit.sql_text import is_marker
from gateway.catalog import Catalog
from gateway.errors import GatewayError, PolicyUnavailable
from gateway.policy.decision import ColumnRule, DatasetDecision, Decision, PolicyInput
from gateway.policy.engine import PolicyEngine
from gateway.policy.inputs import local_context
from gateway.sql.masks import KeyRing
from gateway.sql.rewrite import RewritePlan, rewrite
from gateway.sql.statement import ParsedQuery, parse_query
from gateway.sql.tables import referenced_datasets

#: audit events whose policy input is replayed
REPLAYED_EVENTS = frozenset({"query", "explain"})
#: appended to report lines of records compared on their decisions alone
DECISION_ONLY = " (decision only: SQL not recoverable)"
#: the row cap the plans are made with (the datasets' own max_rows are compared separately)
_ROW_CAP = 1_000_000


@dataclass
class Change:
    """One kind of change for one user and dataset, with how often it occurred."""

    kind: str  # outcome | column | row_filter | aggregate_only | max_rows
    detail: str
    count: int = 0
    examples: list[str] = field(default_factory=list)  # request ids

    def add(self, request_id: str) -> None:
        self.count += 1
        if len(self.examples) < 3 and request_id not in self.examples:
            self.examples.append(request_id)


@dataclass
class ImpactReport:
    current_version: str
    proposed_version: str
    replayed: int = 0
    skipped: int = 0  # records without a policy input (written before inputs were audited)
    decision_only: int = 0  # records whose SQL could not be recovered: decisions compared only
    unchanged: int = 0
    changed_requests: int = 0
    #: (username, dataset or "*") -> change key -> Change
    changes: dict[tuple[str, str], dict[tuple[str, str], Change]] = field(default_factory=dict)

    def note(self, user: str, dataset: str, kind: str, detail: str, request_id: str) -> None:
        group = self.changes.setdefault((user, dataset), {})
        group.setdefault((kind, detail), Change(kind=kind, detail=detail)).add(request_id)

    def as_dict(self) -> dict[str, Any]:
        return {
            "current_version": self.current_version,
            "proposed_version": self.proposed_version,
            "replayed": self.replayed,
            "skipped": self.skipped,
            "decision_only": self.decision_only,
            "unchanged": self.unchanged,
            "changed_requests": self.changed_requests,
            "changes": [
                {"user": user, "dataset": dataset,
                 "changes": [{"kind": c.kind, "detail": c.detail, "requests": c.count, "examples": c.examples}
                             for c in sorted(group.values(), key=lambda c: (c.kind, c.detail))]}
                for (user, dataset), group in sorted(self.changes.items())
            ],
        }

    def render(self) -> str:
        notes = []
        if self.decision_only:
            notes.append(f"{self.decision_only} compared on decisions only (SQL not recoverable)")
        if self.skipped:
            notes.append(f"{self.skipped} skipped (no policy input recorded)")
        lines = [
            f"impact of policy {self.proposed_version} (proposed) against {self.current_version} (in force)",
            f"replayed {self.replayed} audited requests: {self.changed_requests} would change, "
            f"{self.unchanged} unchanged" + "".join(f"; {n}" for n in notes),
        ]
        for (user, dataset), group in sorted(self.changes.items()):
            lines.append("")
            lines.append(f"{user} / {dataset}")
            for c in sorted(group.values(), key=lambda c: (c.kind, c.detail)):
                lines.append(f"  {c.kind:<15} {c.detail}  ({c.count} request{'s' if c.count != 1 else ''}, "
                             f"e.g. {', '.join(c.examples)})")
        if not self.changes:
            lines.append("no audited request would change outcome, masks, filters or limits")
        return "\n".join(lines)


# -- one side of the comparison: a decision and, where the SQL is known, the rewriter's plan ----------


@dataclass(frozen=True)
class Side:
    """A policy version as the preview uses it: its engine and its catalog (``None``: decisions only)."""

    engine: PolicyEngine
    catalog: Catalog | None
    label: str  # "in force" | "proposed", for error messages


@dataclass(frozen=True)
class Outcome:
    """What a request meets under one policy version."""

    decision: Decision
    allowed: bool
    refusal: str = ""  # "rule, rule; code" when refused
    plan: RewritePlan | None = None


def recover_query(data: dict[str, Any]) -> ParsedQuery | None:
    """The recorded literal-free SQL, parsed, with each ``?`` as the number 1; ``None`` when the record
    holds none we can use. Raises InvalidQuery when the gateway's parser refuses it (as it refused the
    request, whatever the policy)."""
    text = data.get("sql_normalised")
    if not isinstance(text, str) or not text.strip() or is_marker(text):
        return None
    dialect = str(data.get("sql_dialect") or "postgres")
    try:
        trees = [tree for tree in sqlglot.parse(text, read=dialect) if tree is not None]
    except sqlglot.errors.SqlglotError:
        trees = []
    if len(trees) == 1:  # else parse_query below refuses the text as it refused the request
        with_values = trees[0].transform(lambda n: exp.Literal.number(1) if isinstance(n, exp.Placeholder) else n)
        text = with_values.sql(dialect=dialect)
    # the gateway's own parser and checks (InvalidQuery propagates: the request was refused the same way)
    return parse_query(text, dialect)


def _denial_rules(decision: Decision) -> str:
    return ", ".join(sorted({d.rule for d in decision.denials})) or "default.deny"


def _refused(error: GatewayError) -> str:
    rules = [str(r) for r in error.extra.get("rules", [])] or ([error.rule] if error.rule else [])
    return f"{', '.join(rules) or 'no rule'}; {error.code}"


def _with_local_clock(policy_input: PolicyInput) -> PolicyInput:
    """Records written before the input carried the local day get it from their UTC time, so dated grants
    and agreements are judged on the same calendar day as for a new request."""
    context = policy_input.context
    if "local_date" in context or not isinstance(context.get("time"), str):
        return policy_input
    try:
        moment = datetime.strptime(context["time"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    except ValueError:
        return policy_input
    return policy_input.model_copy(update={"context": {**context, **local_context(moment)}})


def _decide(side: Side, policy_input: PolicyInput, request_id: str) -> Decision:
    try:
        return side.engine.decide(policy_input)
    except PolicyUnavailable as exc:
        raise PolicyUnavailable(f"the policy {side.label} cannot decide request {request_id}: {exc.detail}",
                                code=exc.code) from exc


@dataclass
class _Planner:
    """Plans recorded queries through the real rewriter; the SQL it produces is never used."""

    keys: KeyRing = field(default_factory=lambda: KeyRing(master=secrets.token_bytes(32), key_id="preview"))
    #: outcomes by (version, SQL, decision, purpose, dialect): replayed requests repeat a lot
    cache: dict[tuple[str, ...], Outcome] = field(default_factory=dict)

    def outcome(self, side: Side, decision: Decision, query: ParsedQuery | GatewayError | None,
                purpose: str, dialect: str) -> Outcome:
        """The steps of gateway.pipeline in its order: parse, find the datasets, decide, rewrite."""
        if isinstance(query, GatewayError):  # the recorded SQL is refused whatever the policy
            return Outcome(decision, False, _refused(query))
        if query is not None and side.catalog is not None:
            try:
                referenced_datasets(query.ast, side.catalog)
            except GatewayError as exc:
                return Outcome(decision, False, _refused(exc))
        if not decision.allow:
            return Outcome(decision, False, f"{_denial_rules(decision)}; access_denied")
        if query is None or side.catalog is None:
            return Outcome(decision, True)
        key = (side.engine.version, query.sql, decision.model_dump_json(), purpose, dialect)
        cached = self.cache.get(key)
        if cached is None:
            try:
                plan = rewrite(query, decision, side.catalog, target_dialect=dialect, keys=self.keys,
                               purpose=purpose, max_rows_cap=_ROW_CAP)
                cached = Outcome(decision, True, plan=plan)
            except GatewayError as exc:
                cached = Outcome(decision, False, _refused(exc))
            self.cache[key] = cached
        return cached


# -- comparing two outcomes ----------------------------------------------------------------------------


def _describe_rule(rule: ColumnRule | None) -> str:
    if rule is None:
        return "absent"
    params = ",".join(f"{k}={rule.params[k]}" for k in sorted(rule.params))
    text = rule.op + (f"({params})" if params else "")
    if rule.uses is not None:
        text += f" uses={'/'.join(rule.uses)}"
    return text


def _filter_text(f: Any) -> str:
    values = ", ".join(str(v) for v in f.values)
    keep = " keep_null" if getattr(f, "keep_null", False) else ""
    return f"{f.column} {f.op} [{values}]{keep} by {f.rule}"


def _compare_columns(report: ImpactReport, user: str, name: str, request_id: str, columns: Iterable[str],
                     before: DatasetDecision, after: DatasetDecision, suffix: str) -> bool:
    changed = False
    for column in sorted(columns):
        old_text, new_text = _describe_rule(before.columns.get(column)), _describe_rule(after.columns.get(column))
        if old_text != new_text:
            report.note(user, name, "column", f"{column}: {old_text} -> {new_text}{suffix}", request_id)
            changed = True
    return changed


def _compare_limits(report: ImpactReport, user: str, name: str, request_id: str,
                    before: DatasetDecision, after: DatasetDecision, suffix: str) -> bool:
    """Row filters, aggregate-only and row limits of one dataset the request reads."""
    changed = False
    old_filters = {_filter_text(f) for f in before.row_filters}
    new_filters = {_filter_text(f) for f in after.row_filters}
    for text in sorted(new_filters - old_filters):
        report.note(user, name, "row_filter", f"rows newly filtered: {text}{suffix}", request_id)
        changed = True
    for text in sorted(old_filters - new_filters):
        report.note(user, name, "row_filter", f"filter removed: {text}{suffix}", request_id)
        changed = True
    old_agg = before.aggregate_only.min_cell if before.aggregate_only else None
    new_agg = after.aggregate_only.min_cell if after.aggregate_only else None
    if old_agg != new_agg:
        report.note(user, name, "aggregate_only",
                    f"min_cell {old_agg if old_agg is not None else 'none'} -> "
                    f"{new_agg if new_agg is not None else 'none'}{suffix}", request_id)
        changed = True
    if before.max_rows != after.max_rows:
        report.note(user, name, "max_rows", f"{before.max_rows} -> {after.max_rows}{suffix}", request_id)
        changed = True
    return changed


def _compare_outcome(report: ImpactReport, user: str, request_id: str, datasets: list[str],
                     before: Outcome, after: Outcome, suffix: str) -> bool | None:
    """Allowed/denied changes; ``None`` when both are allowed (the treatments must be compared)."""
    if before.allowed and after.allowed:
        return None
    if before.allowed:
        detail = f"allowed -> denied ({after.refusal}){suffix}"
    elif after.allowed:
        detail = f"denied ({before.refusal}) -> allowed{suffix}"
    elif before.refusal != after.refusal:
        detail = f"still denied, by {after.refusal} instead of {before.refusal}{suffix}"
    else:
        return False
    for name in datasets or ["*"]:
        report.note(user, name, "outcome", detail, request_id)
    return True


def compare_plans(report: ImpactReport, user: str, request_id: str, before: Outcome, after: Outcome) -> bool:
    """Both allowed and planned: the treatments of what the query really reads."""
    if before.plan is None or after.plan is None:
        raise ValueError("compare_plans needs two planned outcomes")
    read: dict[str, set[str]] = {}
    for touched in (*before.plan.columns_touched, *after.plan.columns_touched):
        dataset, _, column = touched.partition(".")
        read.setdefault(dataset, set()).add(column)
    changed = False
    for name in sorted(set(before.plan.datasets) | set(after.plan.datasets)):
        old, new = before.decision.datasets.get(name), after.decision.datasets.get(name)
        if old is None or new is None:
            continue
        changed |= _compare_columns(report, user, name, request_id, read.get(name, set()), old, new, "")
        changed |= _compare_limits(report, user, name, request_id, old, new, "")
    return changed


def compare_decisions(report: ImpactReport, user: str, request_id: str, datasets: list[str],
                      before: Decision, after: Decision) -> bool:
    """Both allowed, SQL unknown: every column treatment and limit of the datasets the request named."""
    changed = False
    for name in datasets:
        old, new = before.datasets.get(name), after.datasets.get(name)
        if old is None or new is None:
            continue
        columns = set(old.columns) | set(new.columns)
        changed |= _compare_columns(report, user, name, request_id, columns, old, new, DECISION_ONLY)
        changed |= _compare_limits(report, user, name, request_id, old, new, DECISION_ONLY)
    return changed


def compare(report: ImpactReport, user: str, request_id: str, datasets: list[str],
            before: Outcome, after: Outcome, *, sql_known: bool) -> bool:
    """Record the differences between two outcomes of one request; True if there were any."""
    outcome = _compare_outcome(report, user, request_id, datasets, before, after,
                               "" if sql_known else DECISION_ONLY)
    if outcome is not None:
        return outcome
    if before.plan is not None and after.plan is not None:
        return compare_plans(report, user, request_id, before, after)
    return compare_decisions(report, user, request_id, datasets, before.decision, after.decision)


# -- the replay --------------------------------------------------------------------------------------


def _side(engine: PolicyEngine, catalog: Catalog | None, label: str) -> Side:
    if catalog is None:
        live = getattr(engine, "catalog", None)
        catalog = live if isinstance(live, Catalog) else None
    return Side(engine=engine, catalog=catalog, label=label)


def _recorded_query(data: dict[str, Any]) -> ParsedQuery | GatewayError | None:
    try:
        return recover_query(data)
    except GatewayError as exc:
        return exc


def replay(records: Iterable[StoredRecord], current: PolicyEngine, proposed: PolicyEngine,
           progress: Callable[[], None] | None = None, *, current_catalog: Catalog | None = None,
           proposed_catalog: Catalog | None = None) -> ImpactReport:
    """Plan every audited query under both policies (decision, then the rewriter on its recorded SQL) and
    compare what the analyst would meet.

    ``current_catalog``/``proposed_catalog``: the catalogs of the two versions (default: the engine's own
    ``catalog``, if it has one); without a catalog a side is compared on decisions only. Identical inputs
    are decided once per engine (the embedded engine caches decisions by input). ``progress`` is called
    once per record.
    """
    report = ImpactReport(current_version=current.version, proposed_version=proposed.version)
    before_side = _side(current, current_catalog, "in force")
    after_side = _side(proposed, proposed_catalog, "proposed")
    planner = _Planner()
    for record in records:
        if progress is not None:
            progress()
        data = record.event_data
        if data.get("event") not in REPLAYED_EVENTS:
            continue
        raw_input = data.get("policy_input")
        if not isinstance(raw_input, dict):
            report.skipped += 1
            continue
        policy_input = _with_local_clock(PolicyInput.model_validate(raw_input))
        user = str(data.get("username") or data.get("subject") or "?")
        datasets = [str(d) for d in policy_input.resource.get("datasets", [])]
        request_id = str(data.get("request_id") or record.seq)
        query = _recorded_query(data)
        sql_known = query is not None and before_side.catalog is not None and after_side.catalog is not None
        purpose = str(policy_input.action.get("purpose") or "")
        dialect = str(data.get("rewritten_dialect") or data.get("sql_dialect") or "postgres")
        before = planner.outcome(before_side, _decide(before_side, policy_input, request_id),
                                 query if sql_known else None, purpose, dialect)
        after = planner.outcome(after_side, _decide(after_side, policy_input, request_id),
                                query if sql_known else None, purpose, dialect)
        report.replayed += 1
        if not sql_known:
            report.decision_only += 1
        if compare(report, user, request_id, datasets, before, after, sql_known=sql_known):
            report.changed_requests += 1
        else:
            report.unchanged += 1
    return report
