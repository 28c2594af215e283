"""The disclosure-control hooks the pipeline calls around one query (docs/sdc.md).

``admit`` (after planning, before the query runs): charges the privacy budget of a DP dataset, or runs the
differencing guard. ``perturb`` (on the raw result, before masking): adds DP noise. ``record`` (after the
answer is released): remembers the query's population for the differencing guard.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa

from gateway.errors import AccessDenied, MaskingFailed
from gateway.identity.principal import Principal
from gateway.policy.decision import AggregateRule, ColumnRule, Decision
from gateway.sdc.budget import BudgetExhausted, BudgetLedger
from gateway.sdc.differencing import (
    CHECK_DIALECT,
    DifferencingGuard,
    Population,
    check_query,
    population_of,
    refusal,
    smallest_difference,
)
from gateway.sdc.dp import apply_noise

if TYPE_CHECKING:
    from connectors.base import Connector
    from gateway.pipeline import Gateway, QueryRequest
    from gateway.sql.rewrite import RewritePlan

log = logging.getLogger("gateway.sdc")

LEDGER_FILE = "sdc_budget.sqlite"


@dataclass(frozen=True)
class Ticket:
    subject: str
    dataset: str
    rule: AggregateRule
    population: Population | None = None


def default_ledger_path(audit: object) -> Path | None:
    """Next to the SQLite audit store (in the data dir); None (in memory) for other stores."""
    path = getattr(audit, "path", None)
    if isinstance(path, str) and path not in ("", ":memory:"):
        return Path(path).parent / LEDGER_FILE
    return None


class SdcControls:
    def __init__(self, gateway: Gateway, *, ledger_path: Path | None = None) -> None:
        self.gateway = gateway
        path = ledger_path or default_ledger_path(gateway.audit)
        if path is None:
            log.warning("privacy-budget ledger kept in memory: the audit store is not a SQLite file")
        self.ledger = BudgetLedger(path)
        self.guard = DifferencingGuard()

    def admit(
        self,
        principal: Principal,
        request: QueryRequest,
        decision: Decision,
        plan: RewritePlan,
        connector: Connector,
        *,
        request_id: str | None = None,
        client_address: str | None = None,
    ) -> Ticket | None:
        rules = [(n, d.aggregate_only) for n, d in sorted(decision.datasets.items()) if d.aggregate_only]
        if not rules:
            return None
        dataset, rule = rules[0]
        if rule.dp is not None:
            try:
                left = self.ledger.charge(
                    principal.subject, dataset, rule.dp.epsilon_per_query, rule.dp.budget, request_id=request_id
                )
            except BudgetExhausted as exc:
                raise AccessDenied(
                    f"privacy budget exhausted (rule {rule.rule}): you have spent epsilon {exc.spent:g} of "
                    f"{exc.budget:g} on {dataset} and this query needs {exc.epsilon:g}; no more answers from "
                    "this dataset for this purpose until the data-protection officer grants a new budget",
                    code="privacy_budget_exhausted",
                    rule=rule.rule,
                    extra={"dataset": dataset, "spent": exc.spent, "budget": exc.budget},
                ) from None
            log.info("privacy budget: %s on %s, %.3f left", principal.username, dataset, left)
            return Ticket(principal.subject, dataset, rule)
        if not rule.differencing.enabled:
            return Ticket(principal.subject, dataset, rule)
        from gateway.sql.statement import parse_query

        try:
            parsed = parse_query(request.sql, request.dialect)
            population = population_of(parsed.ast, parsed.dialect, dataset, self.gateway.catalog)
        except Exception:  # fail closed
            population = None
        if population is None:
            raise refusal(rule, None, rule.min_cell, "the query's population could not be determined")
        threshold = rule.differencing.min_difference or rule.min_cell
        for earlier in self.guard.recent(principal.subject, dataset):
            if earlier.signature == population.signature:
                continue
            difference = self._difference(principal, population, earlier, dataset, request, connector, rule,
                                          client_address)
            if difference is not None and difference < threshold:
                raise refusal(rule, difference, threshold)
        return Ticket(principal.subject, dataset, rule, population)

    def _difference(
        self,
        principal: Principal,
        new: Population,
        old: Population,
        dataset: str,
        request: QueryRequest,
        connector: Connector,
        rule: AggregateRule,
        client_address: str | None,
    ) -> int | None:
        from gateway.sql.rewrite import rewrite
        from gateway.sql.statement import parse_query

        person_key = self.gateway.catalog.datasets[dataset].person_key
        if not person_key:
            raise refusal(rule, None, rule.min_cell, "the dataset has no person key")
        # the check sees exactly the analyst's view (masks, row filters) of every table either query reads,
        # plus the person key; its counts never leave the gateway
        from gateway.pipeline import RequestContext, _first_denial

        try:
            tables = sorted({dataset, *new.tables, *old.tables})
            # the caller's own context: residency and office hours apply to the check as to the query
            decision = self.gateway.decide(principal, request.purpose, tables,
                                           RequestContext(client_address=client_address))
        except Exception:
            raise refusal(rule, None, rule.min_cell, "the comparison with your recent queries failed") from None
        if not decision.allow:
            raise _first_denial(decision)
        view = decision.datasets[dataset]
        columns = dict(view.columns)
        columns[person_key] = ColumnRule(op="plain", rule="sdc.differencing_check")
        datasets = {n: d.model_copy(update={"aggregate_only": None, "max_rows": None})
                    for n, d in decision.datasets.items()}
        datasets[dataset] = view.model_copy(update={"columns": columns, "aggregate_only": None, "max_rows": None})
        check_decision = decision.model_copy(update={"datasets": datasets})
        try:
            parsed = parse_query(check_query(new, old, person_key), CHECK_DIALECT)
            plan = rewrite(
                parsed, check_decision, self.gateway.catalog, target_dialect=connector.dialect,
                keys=self.gateway.key_ring, purpose=request.purpose, max_rows_cap=self.gateway.max_rows_cap,
            )
            result = connector.execute(plan.sql, max_rows=plan.max_rows, timeout_s=self.gateway.statement_timeout_s)
        except Exception as exc:
            log.warning("differencing check failed: %s", type(exc).__name__)
            raise refusal(rule, None, rule.min_cell, "the comparison with your recent queries failed") from None
        if result.truncated:
            raise refusal(rule, None, rule.min_cell, "the comparison with your recent queries was too large")
        rows = [list(r) for r in zip(*(c.to_pylist() for c in result.table.columns), strict=True)]
        return smallest_difference(rows, len(new.groups), len(old.groups), release_at=rule.min_cell)

    def perturb(self, ticket: Ticket | None, table: pa.Table) -> pa.Table:
        if ticket is None or ticket.rule.dp is None:
            return table
        try:
            return apply_noise(table, ticket.rule.dp)
        except Exception as exc:  # fail closed: no noise, no answer
            raise MaskingFailed(
                "differential-privacy noise could not be added, so no data is returned", code="masking_failed"
            ) from exc

    def record(self, ticket: Ticket | None) -> None:
        if ticket is not None and ticket.population is not None:
            self.guard.remember(ticket.subject, ticket.population, window=ticket.rule.differencing.window)

    def close(self) -> None:
        self.ledger.close()
