"""Aggregate-only access: prove from the query that every result row aggregates over persons.

The rewriter accepts, for an aggregate-only dataset, one SELECT that reads the dataset directly (not
through a subquery or CTE), groups, and projects only group keys and summary aggregates. It then adds
``COUNT(DISTINCT person_key)`` per result row, whatever the analyst asked, so that the gateway can
suppress every cell resting on fewer than ``min_cell`` persons (see gateway/masking/disclosure.py).

Statistical disclosure control (docs/sdc.md) adds hidden columns the same way, all dropped before the
result leaves the gateway:

* ``__rollup_<i>__<name>``: ``GROUPING(key)`` of each ``ROLLUP`` key, for secondary suppression;
* ``__dominated_<j>``: 1 where the ``n`` largest persons make up more than ``p`` % of a magnitude cell
  (dominance rule), computed from per-person contributions in a derived table with window functions;
* ``__dp{count,sum,avg,avgn}_<i>``: which outputs get differential-privacy noise and their clamping bound;
  sums and averages are clamped in SQL and every person contributes at most ``max_contributions`` rows.
"""

from __future__ import annotations

from sqlglot import exp

from gateway.errors import AccessDenied
from gateway.policy.decision import AggregateRule

PERSONS_COLUMN = "__persons"
ROLLUP_PREFIX = "__rollup_"
DOMINATED_PREFIX = "__dominated_"
DP_PREFIX = "__dp"
#: hidden columns the masking stage uses and then drops
HIDDEN_PREFIXES = (PERSONS_COLUMN, ROLLUP_PREFIX, DOMINATED_PREFIX, DP_PREFIX)

_PC = "__dom_pc_"  # a person's contribution to the cell (per dominance column)
_PROW = "__dom_prow"  # 1 on one row per person and cell
_PRANK = "__dom_rank_"  # rank of the person's contribution within the cell
_DP_ROW = "__dp_row"  # row number within the person (contribution bounding)


def _deny(message: str, rule: AggregateRule) -> AccessDenied:
    return AccessDenied(
        f"aggregate-only access (rule {rule.rule}): {message}", code="aggregate_only", rule=rule.rule
    )


def _is_group_key(projection: exp.Expr, group_sql: set[str], group_columns: set[str]) -> bool:
    if projection.sql() in group_sql:
        return True
    columns = list(projection.find_all(exp.Column))
    return bool(columns) and all(c.sql() in group_columns for c in columns)


def _unalias(projection: exp.Expr) -> exp.Expr:
    return projection.this if isinstance(projection, exp.Alias) else projection


def _group_keys(ast: exp.Select, rule: AggregateRule) -> tuple[list[exp.Expr], list[exp.Expr]]:
    """(all group expressions, the ROLLUP keys in order — empty without ROLLUP)."""
    group = ast.args.get("group")
    if not group:
        return [], []
    if group.args.get("cube") or group.args.get("grouping_sets"):
        raise _deny("CUBE and GROUPING SETS are not supported; use ROLLUP or query each level", rule)
    plain: list[exp.Expr] = []
    rollups: list[exp.Rollup] = []
    for expression in group.expressions:
        if isinstance(expression, exp.Cube | exp.GroupingSets):
            raise _deny("CUBE and GROUPING SETS are not supported; use ROLLUP or query each level", rule)
        if isinstance(expression, exp.Rollup):
            rollups.append(expression)
        else:
            plain.append(expression)
    if group.args.get("rollup"):  # MySQL: GROUP BY a, b WITH ROLLUP
        if rollups:
            raise _deny("use either ROLLUP(...) or WITH ROLLUP, not both", rule)
        return plain, list(plain)
    if not rollups:
        return plain, []
    if plain or len(rollups) > 1:
        raise _deny("only one ROLLUP(...) and no further GROUP BY keys are supported", rule)
    keys = []
    for key in rollups[0].expressions:
        if isinstance(key, exp.Literal) and key.is_int:  # GROUP BY ROLLUP(1, 2): positions
            position = int(key.this)
            if not 1 <= position <= len(ast.expressions):
                raise _deny(f"ROLLUP position {position} is out of range", rule)
            key.replace(_unalias(ast.expressions[position - 1]).copy())
    keys = list(rollups[0].expressions)
    return keys, keys


def _output_for(key: exp.Expr, ast: exp.Select) -> str | None:
    for projection in ast.expressions:
        if _unalias(projection).sql() == key.sql():
            return str(projection.alias_or_name)
    return None


def _add_rollup_flags(ast: exp.Select, keys: list[exp.Expr], rule: AggregateRule) -> None:
    if not rule.secondary_suppression:
        raise _deny("ROLLUP is not released for this dataset (no secondary suppression)", rule)
    for index, key in enumerate(keys):
        name = _output_for(key, ast)
        if name is None:
            raise _deny(f"select every ROLLUP key ({key.sql()}) so that margins can be protected", rule)
        flag = exp.Grouping(expressions=[key.copy()])
        ast.select(exp.alias_(flag, f"{ROLLUP_PREFIX}{index}__{name}", quoted=True), copy=False)


def _wrap_source(
    ast: exp.Select,
    table: exp.Table,
    key: exp.Expr,
    group_exprs: list[exp.Expr],
    dominance_columns: list[exp.Expr],
    max_contributions: int | None,
) -> None:
    """Move the dataset (and the analyst's WHERE) into a derived table that adds per-person columns.

    level 1: the filtered rows plus, per dominance column, each person's contribution to the cell
    (``SUM(ABS(col)) OVER (PARTITION BY <group keys>, <person>)``), a marker on one row per person and
    cell, and a row number per person (for contribution bounding under differential privacy).
    level 2: the rank of each person's contribution within the cell. The derived table keeps the
    analyst's alias, so every column reference of the query still resolves.
    """
    alias = table.alias_or_name
    star = exp.Column(this=exp.Star(), table=exp.to_identifier(alias, quoted=True))
    partition_cell = [g.copy() for g in group_exprs]
    where = ast.args.get("where")
    ast.set("where", None)
    ast.set("from_", None)  # detaches the catalog table node, which moves into level 1 unchanged
    level1 = exp.Select(expressions=[star.copy()], from_=exp.From(this=table))
    if where is not None:
        level1.set("where", where)
    for index, column in enumerate(dominance_columns):
        contribution = exp.Window(
            this=exp.Sum(this=exp.Abs(this=column.copy())),
            partition_by=[*[g.copy() for g in partition_cell], key.copy()],
        )
        level1.select(exp.alias_(contribution, f"{_PC}{index}", quoted=True), copy=False)
    if dominance_columns:
        marker = exp.Window(
            this=exp.RowNumber(),
            partition_by=[*[g.copy() for g in partition_cell], key.copy()],
            order=exp.Order(expressions=[exp.Ordered(this=key.copy())]),
        )
        level1.select(exp.alias_(marker, _PROW, quoted=True), copy=False)
    if max_contributions is not None:
        row = exp.Window(
            this=exp.RowNumber(),
            partition_by=[key.copy()],
            order=exp.Order(expressions=[exp.Ordered(this=key.copy())]),
        )
        level1.select(exp.alias_(row, _DP_ROW, quoted=True), copy=False)
    source: exp.Select = level1
    if dominance_columns:
        level2 = exp.Select(
            expressions=[star.copy()],
            from_=exp.From(this=exp.Subquery(
                this=level1, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))),
        )
        for index in range(len(dominance_columns)):
            contribution_ref = exp.column(f"{_PC}{index}", table=alias, quoted=True)
            rank = exp.Window(
                this=exp.DenseRank(),
                partition_by=[g.copy() for g in partition_cell] or None,
                order=exp.Order(
                    expressions=[exp.Ordered(this=contribution_ref, desc=True), exp.Ordered(this=key.copy())]
                ),
            )
            level2.select(exp.alias_(rank, f"{_PRANK}{index}", quoted=True), copy=False)
        source = level2
    derived = exp.Subquery(this=source, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
    ast.set("from_", exp.From(this=derived))
    if max_contributions is not None:
        limit = exp.LTE(
            this=exp.column(_DP_ROW, table=alias, quoted=True), expression=exp.Literal.number(max_contributions)
        )
        ast.where(limit, copy=False)


def _dominance_flags(ast: exp.Select, alias: str, rule: AggregateRule, count: int) -> None:
    dominance = rule.dominance
    assert dominance is not None
    share = exp.Literal.number(repr(dominance.p / 100.0))
    for index in range(count):
        contribution = exp.column(f"{_PC}{index}", table=alias, quoted=True)
        first = exp.EQ(this=exp.column(_PROW, table=alias, quoted=True), expression=exp.Literal.number(1))
        in_top = exp.and_(
            first.copy(),
            exp.LTE(
                this=exp.column(f"{_PRANK}{index}", table=alias, quoted=True),
                expression=exp.Literal.number(dominance.n),
            ),
        )
        top = exp.Sum(this=exp.Case(ifs=[exp.If(this=in_top, true=contribution.copy())]))
        total = exp.Sum(this=exp.Case(ifs=[exp.If(this=first, true=contribution.copy())]))
        dominated = exp.Case(
            ifs=[exp.If(this=exp.GT(this=top, expression=exp.Mul(this=share, expression=total)),
                        true=exp.Literal.number(1))],
            default=exp.Literal.number(0),
        )
        ast.select(exp.alias_(dominated, f"{DOMINATED_PREFIX}{index}", quoted=True), copy=False)


def _clamp(value: exp.Expr, lower: float, upper: float) -> exp.Expr:
    """``CASE`` instead of LEAST/GREATEST: same result on every engine, NULLs stay NULL."""
    low, high = exp.Literal.number(repr(float(lower))), exp.Literal.number(repr(float(upper)))
    return exp.Case(
        ifs=[
            exp.If(this=exp.LT(this=value.copy(), expression=low.copy()), true=low.copy()),
            exp.If(this=exp.GT(this=value.copy(), expression=high.copy()), true=high.copy()),
        ],
        default=value.copy(),
    )


def _apply_dp(ast: exp.Select, rule: AggregateRule) -> None:
    """Under differential privacy: only COUNT, SUM and AVG over bounded columns, clamped in SQL."""
    dp = rule.dp
    assert dp is not None
    if ast.args.get("having") is not None:
        raise _deny("HAVING is not released under differential privacy (it filters on exact values)", rule)
    order = ast.args.get("order")
    if order is not None and any(True for _ in order.find_all(exp.AggFunc)):
        raise _deny("ordering by an aggregate is not released under differential privacy", rule)
    for index, projection in enumerate(list(ast.expressions)):
        inner = _unalias(projection)
        if not any(True for _ in inner.find_all(exp.AggFunc)):
            continue
        name = projection.alias_or_name
        if isinstance(inner, exp.Count) and not isinstance(inner.this, exp.Distinct):
            marker = exp.alias_(exp.Literal.number(1), f"{DP_PREFIX}count_{index}", quoted=True)
            ast.select(marker, copy=False)
            continue
        if isinstance(inner, exp.Sum | exp.Avg) and isinstance(inner.this, exp.Column):
            column = inner.this
            bounds = dp.bounds.get(column.name.lower())
            if bounds is None:
                raise _deny(f"column {column.name!r} has no clamping bounds for differential privacy", rule)
            lower, upper = bounds
            bound = exp.Literal.number(repr(float(max(abs(lower), abs(upper)))))
            clamped = exp.Sum(this=_clamp(column, lower, upper))
            projection.replace(exp.alias_(clamped, name, quoted=True))
            kind = "sum" if isinstance(inner, exp.Sum) else "avg"
            ast.select(exp.alias_(bound, f"{DP_PREFIX}{kind}_{index}", quoted=True), copy=False)
            if kind == "avg":
                count = exp.Count(this=column.copy())
                ast.select(exp.alias_(count, f"{DP_PREFIX}avgn_{index}", quoted=True), copy=False)
            continue
        raise _deny(
            f"{name!r}: under differential privacy only count(*), count(column), sum(column) and "
            "avg(column) are released, each aggregate as the whole output expression",
            rule,
        )


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
    group_exprs, rollup_keys = _group_keys(ast, rule)
    group_sql = {g.sql() for g in group_exprs}
    group_columns = {c.sql() for g in group_exprs for c in g.find_all(exp.Column)}
    aggregates: list[str] = []
    for projection in ast.expressions:
        inner = _unalias(projection)
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

    strict = [r for r in rules.values() if r.dominance or r.dp]
    if strict and (ast.args.get("joins") or len(aggregate_tables) != 1):
        raise _deny(
            "with the dominance rule or differential privacy the dataset must be the only table in FROM; no joins",
            strict[0],
        )
    guarded = [r for r in rules.values() if r.differencing.enabled]
    if guarded and len(aggregate_tables) != 1:
        raise _deny("with the differencing guard, read one aggregate-only dataset per query", guarded[0])
    if rollup_keys and any(r.dp or r.dominance for r in rules.values()):
        raise _deny("ROLLUP is not supported together with the dominance rule or differential privacy", rule)

    dp_rule = next((r for r in rules.values() if r.dp), None)
    if dp_rule is not None:
        _apply_dp(ast, dp_rule)

    for index, (table, name) in enumerate(aggregate_tables):
        key = str(person_keys[name])
        count = exp.Count(
            this=exp.Distinct(expressions=[exp.column(key, table=table.alias_or_name, quoted=True)])
        )
        ast.select(exp.alias_(count, f"{PERSONS_COLUMN}_{index}", quoted=True), copy=False)
    if rollup_keys:
        _add_rollup_flags(ast, rollup_keys, rule)

    dominance_rule = next((r for r in rules.values() if r.dominance), None)
    dominance_columns: list[exp.Expr] = []
    if dominance_rule is not None and dp_rule is None:
        wanted = {c.lower() for c in dominance_rule.dominance.columns} if dominance_rule.dominance else set()
        seen: set[str] = set()
        for projection in ast.expressions:
            for agg in _unalias(projection).find_all(exp.AggFunc):
                for column in agg.find_all(exp.Column):
                    if column.name.lower() in wanted and column.sql() not in seen:
                        seen.add(column.sql())
                        dominance_columns.append(column.copy())
    if dominance_columns or dp_rule is not None:
        table, name = aggregate_tables[0]
        key_column = exp.column(str(person_keys[name]), table=table.alias_or_name, quoted=True)
        bound = dp_rule.dp.max_contributions if dp_rule is not None and dp_rule.dp else None
        _wrap_source(ast, table, key_column, group_exprs, dominance_columns, bound)
        if dominance_columns and dominance_rule is not None:
            _dominance_flags(ast, table.alias_or_name, dominance_rule, len(dominance_columns))
    return tuple(aggregates)
