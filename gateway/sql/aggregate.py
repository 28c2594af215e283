"""Aggregate-only access: prove from the query that every result row aggregates over persons.

The rewriter accepts, for an aggregate-only dataset, one SELECT that reads the dataset directly (not
through a subquery or CTE), groups, and projects only group keys and summary aggregates. It then adds
``COUNT(DISTINCT person_key)`` per result row, whatever the analyst asked, so that the gateway can
suppress every cell resting on fewer than ``min_cell`` persons (see gateway/masking/disclosure.py).
"""

from __future__ import annotations

from sqlglot import exp

from gateway.errors import AccessDenied
from gateway.policy.decision import AggregateRule

PERSONS_COLUMN = "__persons"


def _deny(message: str, rule: AggregateRule) -> AccessDenied:
    return AccessDenied(
        f"aggregate-only access (rule {rule.rule}): {message}", code="aggregate_only", rule=rule.rule
    )


def _is_group_key(projection: exp.Expr, group_sql: set[str], group_columns: set[str]) -> bool:
    if projection.sql() in group_sql:
        return True
    columns = list(projection.find_all(exp.Column))
    return bool(columns) and all(c.sql() in group_columns for c in columns)


def enforce_aggregate_only(
    ast: exp.Expr,
    catalog_tables: list[tuple[exp.Table, str]],
    rules: dict[str, AggregateRule],
    person_keys: dict[str, str | None],
) -> tuple[str, ...]:
    """Check the query shape; add the person count; return the names of aggregate outputs."""
    rule = next(iter(rules.values()))
    if not isinstance(ast, exp.Select):
        raise _deny("send one SELECT with GROUP BY (no UNION/INTERSECT/EXCEPT)", rule)
    aggregate_tables = [(t, n) for t, n in catalog_tables if n in rules]
    for table, name in aggregate_tables:
        if table.find_ancestor(exp.Select) is not ast:
            raise _deny(f"read {name} directly in the outermost FROM, not in a subquery or CTE", rules[name])
        if not person_keys.get(name):
            raise _deny(f"dataset {name} has no person key in the catalog", rules[name])
    if any(True for _ in ast.find_all(exp.Window)):
        raise _deny("window functions are not released on aggregate-only data", rule)
    group = ast.args.get("group")
    group_exprs = list(group.expressions) if group else []
    for key in ("rollup", "cube", "grouping_sets"):
        if group and group.args.get(key):
            raise _deny("ROLLUP, CUBE and GROUPING SETS are not supported yet; query each level", rule)
    group_sql = {g.sql() for g in group_exprs}
    group_columns = {c.sql() for g in group_exprs for c in g.find_all(exp.Column)}
    aggregates: list[str] = []
    for projection in ast.expressions:
        inner = projection.this if isinstance(projection, exp.Alias) else projection
        if any(True for _ in inner.find_all(exp.AggFunc)):
            aggregates.append(projection.alias_or_name)
            continue
        if not _is_group_key(inner, group_sql, group_columns):
            raise _deny(
                f"{projection.alias_or_name!r} is neither a GROUP BY key nor an aggregate; "
                "every result row must summarise several persons",
                rule,
            )
    if not aggregates:
        raise _deny("the query returns no aggregate (count, sum, avg); add one", rule)
    for index, (table, name) in enumerate(aggregate_tables):
        key = str(person_keys[name])
        count = exp.Count(
            this=exp.Distinct(expressions=[exp.column(key, table=table.alias_or_name, quoted=True)])
        )
        ast.select(exp.alias_(count, f"{PERSONS_COLUMN}_{index}", quoted=True), copy=False)
    return tuple(aggregates)
