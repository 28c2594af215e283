"""Impact preview: replay audited requests under a proposed policy and report what would change.

Every query record in the audit trail carries the policy input its decision was made on (the caller's
attributes, purpose, datasets, time, client address). ``replay`` decides each of them twice, under the
policy in force and under the proposed one, at the time of the original request, and compares:
outcome (allowed -> denied and back, with the rules), column treatments (new masks, masks removed,
columns now denied), row filters (rows newly filtered or no longer filtered), aggregate-only and row
limits. The report groups the changes by user and dataset, with example request ids an auditor can
look up. Nothing is executed against a database and no personal data is read.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from gateway.audit.record import StoredRecord
from gateway.errors import PolicyUnavailable
from gateway.policy.decision import ColumnRule, DatasetDecision, Decision, PolicyInput
from gateway.policy.engine import PolicyEngine

#: audit events whose policy input is replayed
REPLAYED_EVENTS = frozenset({"query", "explain"})


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
        lines = [
            f"impact of policy {self.proposed_version} (proposed) against {self.current_version} (in force)",
            f"replayed {self.replayed} audited requests: {self.changed_requests} would change, "
            f"{self.unchanged} unchanged" + (f"; {self.skipped} skipped (no policy input recorded)"
                                              if self.skipped else ""),
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
    return f"{f.column} {f.op} [{values}] by {f.rule}"


def _compare_dataset(report: ImpactReport, user: str, name: str, request_id: str,
                     before: DatasetDecision, after: DatasetDecision) -> bool:
    changed = False
    for column in sorted(set(before.columns) | set(after.columns)):
        old, new = before.columns.get(column), after.columns.get(column)
        old_text, new_text = _describe_rule(old), _describe_rule(new)
        if old_text != new_text:
            report.note(user, name, "column", f"{column}: {old_text} -> {new_text}", request_id)
            changed = True
    old_filters = {_filter_text(f) for f in before.row_filters}
    new_filters = {_filter_text(f) for f in after.row_filters}
    for text in sorted(new_filters - old_filters):
        report.note(user, name, "row_filter", f"rows newly filtered: {text}", request_id)
        changed = True
    for text in sorted(old_filters - new_filters):
        report.note(user, name, "row_filter", f"filter removed: {text}", request_id)
        changed = True
    old_agg = before.aggregate_only.min_cell if before.aggregate_only else None
    new_agg = after.aggregate_only.min_cell if after.aggregate_only else None
    if old_agg != new_agg:
        report.note(user, name, "aggregate_only",
                    f"min_cell {old_agg if old_agg is not None else 'none'} -> "
                    f"{new_agg if new_agg is not None else 'none'}", request_id)
        changed = True
    if before.max_rows != after.max_rows:
        report.note(user, name, "max_rows", f"{before.max_rows} -> {after.max_rows}", request_id)
        changed = True
    return changed


def _denial_rules(decision: Decision) -> str:
    return ", ".join(sorted({d.rule for d in decision.denials})) or "default.deny"


def compare(report: ImpactReport, user: str, request_id: str, datasets: list[str],
            before: Decision, after: Decision) -> bool:
    """Record the differences between two decisions for one request; True if there were any."""
    if before.allow != after.allow:
        for name in datasets or ["*"]:
            if before.allow:
                report.note(user, name, "outcome", f"allowed -> denied ({_denial_rules(after)})", request_id)
            else:
                report.note(user, name, "outcome", f"denied ({_denial_rules(before)}) -> allowed", request_id)
        return True
    if not before.allow:
        if _denial_rules(before) != _denial_rules(after):
            for name in datasets or ["*"]:
                report.note(user, name, "outcome",
                            f"still denied, by {_denial_rules(after)} instead of {_denial_rules(before)}", request_id)
            return True
        return False
    changed = False
    for name in datasets:
        old, new = before.datasets.get(name), after.datasets.get(name)
        if old is None or new is None:
            continue
        changed |= _compare_dataset(report, user, name, request_id, old, new)
    return changed


def replay(records: Iterable[StoredRecord], current: PolicyEngine, proposed: PolicyEngine,
           progress: Callable[[], None] | None = None) -> ImpactReport:
    """Decide every audited query's recorded policy input under both policies and compare.

    Identical inputs (same person, purpose, datasets, minute, address) are decided once per engine (the
    embedded engine caches decisions by input). ``progress`` is called once per record.
    """
    report = ImpactReport(current_version=current.version, proposed_version=proposed.version)
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
        policy_input = PolicyInput.model_validate(raw_input)
        user = str(data.get("username") or data.get("subject") or "?")
        datasets = [str(d) for d in policy_input.resource.get("datasets", [])]
        request_id = str(data.get("request_id") or record.seq)
        try:
            before = current.decide(policy_input)
        except PolicyUnavailable as exc:
            raise PolicyUnavailable(f"the policy in force cannot decide request {request_id}: {exc.detail}",
                                    code=exc.code) from exc
        try:
            after = proposed.decide(policy_input)
        except PolicyUnavailable as exc:
            raise PolicyUnavailable(f"the proposed policy cannot decide request {request_id}: {exc.detail}",
                                    code=exc.code) from exc
        report.replayed += 1
        if compare(report, user, request_id, datasets, before, after):
            report.changed_requests += 1
        else:
            report.unchanged += 1
    return report
