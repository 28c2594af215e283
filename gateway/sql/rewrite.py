"""Rewrite an analyst's query so that the database itself enforces the policy decision.

Each catalog table in the query is replaced by a derived table that applies the decision: row
filters in its WHERE, masks in its projection, denied columns left out. Whatever the analyst writes
on top (joins, CTEs, subqueries, set operations, aliases, window functions) can only see what that
derived table releases, and filters are never mixed into the analyst's own predicates.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import ErrorLevel, OptimizeError, UnsupportedError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import traverse_scope

from gateway.catalog import Catalog, Column
from gateway.errors import AccessDenied, InvalidQuery
from gateway.policy.decision import ColumnRule, Decision, RowFilter
from gateway.sql.aggregate import PERSONS_COLUMN, enforce_aggregate_only
from gateway.sql.functions import check_functions
from gateway.sql.lineage import LineageAnalysis, Origin
from gateway.sql.masks import KeyRing, datatype, mask_expression, redact_keys
from gateway.sql.statement import ParsedQuery

SOURCE_ALIAS = "__src"


@dataclass(frozen=True)
class OutputColumn:
    name: str
    masking: str
    dataset: str | None = None
    source_column: str | None = None
    free_text: bool = False


@dataclass(frozen=True)
class RewritePlan:
    """The executable result of rewriting: SQL for the connector plus what to do with the rows."""

    sql: str = field(repr=False)  # holds pseudonym keys: never show, never log
    sql_for_audit: str
    dialect: str
    columns: tuple[OutputColumn, ...]
    datasets: tuple[str, ...]
    columns_touched: tuple[str, ...]
    masks: dict[str, str]
    max_rows: int
    min_cell: int | None = None
    min_cell_rule: str | None = None
    aggregate_outputs: tuple[str, ...] = ()


def _allowed_schema(decision: Decision, catalog: Catalog) -> dict[str, dict[str, str]]:
    schema: dict[str, dict[str, str]] = {}
    for name, ds_decision in decision.datasets.items():
        dataset = catalog.datasets[name]
        schema[name] = {
            col: meta.type
            for col, meta in dataset.columns.items()
            if ds_decision.columns.get(col, ColumnRule(op="deny", rule="default.deny")).op != "deny"
        }
    return schema


def _raise_denied_column(ast: exp.Expr, decision: Decision, purpose: str) -> None:
    for column in ast.find_all(exp.Column):
        name = column.name.lower()
        for dataset, ds_decision in decision.datasets.items():
            rule = ds_decision.columns.get(name)
            if rule is not None and rule.op == "deny":
                raise AccessDenied(
                    f"column {name!r} of dataset {dataset!r} is denied for purpose {purpose} by rule "
                    f"{rule.rule}; remove it from the query (SELECT * leaves it out by itself)",
                    code="column_denied",
                    rule=rule.rule,
                    extra={"dataset": dataset, "column": name},
                )


def _qualify(parsed: ParsedQuery, decision: Decision, catalog: Catalog, purpose: str) -> exp.Expr:
    ast = parsed.ast.copy()
    try:
        return qualify(
            ast,
            schema=dict(_allowed_schema(decision, catalog)),
            dialect=parsed.dialect,
            validate_qualify_columns=True,
            quote_identifiers=True,
            identify=True,
        )
    except OptimizeError as exc:
        _raise_denied_column(parsed.ast, decision, purpose)
        message = str(exc).split("\n")[0]
        raise InvalidQuery(
            f"{message}; GET /v1/datasets lists the columns you can use", code="unknown_column"
        ) from None


def _refuse_whole_row_refs(ast: exp.Expr) -> None:
    """After qualification every real column carries its table; a bare name that is a relation's
    alias is a whole-row value (a struct of the raw row), which must never be released."""
    whole_row = getattr(exp, "TableColumn", None)
    if whole_row is not None:
        for node in ast.find_all(whole_row):
            raise InvalidQuery(
                f"{node.name!r} refers to a whole row; name the columns you need instead",
                code="whole_row_reference",
            )
    relation_names = {a.name for a in ast.find_all(exp.TableAlias)} | {
        t.name for t in ast.find_all(exp.Table)
    }
    for column in ast.find_all(exp.Column):
        if not column.table and column.name in relation_names:
            raise InvalidQuery(
                f"{column.name!r} refers to a whole row; name the columns you need instead",
                code="whole_row_reference",
            )
    for star in ast.find_all(exp.Star):
        if not isinstance(star.parent, exp.Count):
            raise InvalidQuery(
                "this use of * cannot be expanded safely; name the columns you need",
                code="star_not_expandable",
            )


def _check_uses(analysis: LineageAnalysis) -> None:
    for ref in analysis.refs:
        origin = ref.origin
        if origin.rule.op in ("free_text", "tokenise"):
            if not ref.bare_projection:
                why = ("it is scanned for personal data after the query" if origin.rule.op == "free_text"
                       else "it is encrypted into tokens after the query")
                raise AccessDenied(
                    f"column {origin.dataset}.{origin.column} may only be selected as it is "
                    f"(rule {origin.rule.rule}): {why}, so it "
                    "cannot be filtered, grouped, joined, ordered or passed to functions",
                    code="column_use_not_allowed",
                    rule=origin.rule.rule,
                    extra={"dataset": origin.dataset, "column": origin.column, "use": ref.use},
                )
            continue
        if ref.use not in origin.rule.permitted_uses():
            allowed = ", ".join(origin.rule.permitted_uses()) or "none"
            raise AccessDenied(
                f"column {origin.dataset}.{origin.column} is released as {origin.rule.op} (rule "
                f"{origin.rule.rule}) and may not be used for {ref.use}; permitted uses: {allowed}",
                code="column_use_not_allowed",
                rule=origin.rule.rule,
                extra={"dataset": origin.dataset, "column": origin.column, "use": ref.use},
            )


def _derived_table(
    table: exp.Table,
    dataset: str,
    decision: Decision,
    catalog: Catalog,
    *,
    dialect: str,
    keys: KeyRing,
    purpose: str,
) -> exp.Subquery:
    meta = catalog.datasets[dataset]
    ds_decision = decision.datasets[dataset]
    projections: list[exp.Expr] = []
    for col, col_meta in meta.columns.items():
        rule = ds_decision.columns.get(col)
        if rule is None or rule.op == "deny":
            continue
        raw = exp.column(col, table=SOURCE_ALIAS, quoted=True)
        masked = mask_expression(
            raw, rule, column_type=col_meta.type, dialect=dialect, keys=keys, purpose=purpose, arrow_side=True
        )
        projections.append(exp.alias_(masked, col, quoted=True, copy=False))
    source = exp.Table(
        this=exp.to_identifier(meta.table, quoted=True),
        alias=exp.TableAlias(this=exp.to_identifier(SOURCE_ALIAS, quoted=True)),
    )
    schema_name = catalog.connectors[meta.connector].schema_name
    if schema_name:
        source.set("db", exp.to_identifier(schema_name, quoted=True))
    # built directly: the builder API copies every projection again (the plan cache makes this rare,
    # but an uncached rewrite should stay around a millisecond or two)
    inner = exp.Select(expressions=projections, from_=exp.From(this=source))
    for row_filter in ds_decision.row_filters:
        inner = inner.where(_filter_condition(row_filter, meta.columns), copy=False)
    alias = table.alias_or_name
    return exp.Subquery(this=inner, alias=exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))


def _filter_condition(row_filter: RowFilter, columns: dict[str, Column]) -> exp.Expr:
    """A row filter as a condition on the raw table (inside the derived table, never the analyst's WHERE).

    ``in``/``eq``: the column is one of the values (no values: no rows). ``not_before_days``: retention,
    the date column is no older than ``values[0]`` days (rows past their deletion period are invisible;
    a NULL date counts as expired).
    """
    if row_filter.column not in columns:
        raise AccessDenied(f"the policy filters on unknown column {row_filter.column!r}", code="policy_invalid",
                           rule=row_filter.rule)
    target = exp.column(row_filter.column, table=SOURCE_ALIAS, quoted=True)
    values = [exp.Literal.string(v) if isinstance(v, str) else exp.Literal.number(v) for v in row_filter.values]
    if row_filter.op in ("in", "eq"):
        return target.isin(*values) if values else exp.false()
    if row_filter.op == "not_before_days":
        if len(row_filter.values) != 1 or not isinstance(row_filter.values[0], int | float):
            raise AccessDenied("a retention filter needs exactly one number of days", code="policy_invalid",
                               rule=row_filter.rule)
        days = int(row_filter.values[0])
        cutoff = exp.DateSub(this=exp.CurrentDate(), expression=exp.Literal.number(days), unit=exp.var("DAY"))
        return exp.GTE(this=exp.Cast(this=target, to=datatype("DATE")), expression=cutoff)
    raise AccessDenied(f"unknown row filter operator {row_filter.op!r} in the policy", code="policy_invalid",
                       rule=row_filter.rule)


def _apply_limit(ast: exp.Expr, max_rows: int) -> exp.Expr:
    fetch = max_rows + 1
    if isinstance(ast, exp.Select):
        limit = ast.args.get("limit")
        current = limit.expression if isinstance(limit, exp.Limit) else None
        if isinstance(current, exp.Literal) and current.is_int and int(current.this) <= max_rows:
            return ast
        if limit is not None and not isinstance(current, exp.Literal):
            raise InvalidQuery("LIMIT must be a plain number", code="limit_not_literal")
        return ast.limit(fetch, copy=False)
    wrapped = exp.select(exp.Star()).from_(
        exp.Subquery(this=ast, alias=exp.TableAlias(this=exp.to_identifier("q", quoted=True)))
    )
    return wrapped.limit(fetch, copy=False)


def _verify_sources(ast: exp.Expr, inserted: set[int]) -> None:
    """Last line of defence: every base table the engine will read is one the rewriter inserted."""
    for scope in traverse_scope(ast):
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and id(source) not in inserted:
                raise InvalidQuery(
                    "the query reads a table the gateway cannot verify", code="unknown_dataset"
                )


def _output_columns(outputs: dict[str, Origin | None]) -> tuple[OutputColumn, ...]:
    columns = []
    for name, origin in outputs.items():
        if name == PERSONS_COLUMN:
            continue
        if origin is None:
            columns.append(OutputColumn(name=name, masking="computed"))
        else:
            columns.append(
                OutputColumn(
                    name=name,
                    masking=origin.rule.op,
                    dataset=origin.dataset,
                    source_column=origin.column,
                    free_text=origin.rule.op == "free_text",
                )
            )
    return tuple(columns)


def rewrite(
    parsed: ParsedQuery,
    decision: Decision,
    catalog: Catalog,
    *,
    target_dialect: str,
    keys: KeyRing,
    purpose: str,
    max_rows_cap: int,
) -> RewritePlan:
    """Apply ``decision`` to ``parsed``; raise AccessDenied/InvalidQuery for anything unsafe."""
    aggregate_rules = {n: d.aggregate_only for n, d in decision.datasets.items() if d.aggregate_only}
    check_functions(parsed.ast, aggregate_only=bool(aggregate_rules))
    ast = _qualify(parsed, decision, catalog, purpose)
    _refuse_whole_row_refs(ast)

    table_rules: dict[int, tuple[str, dict[str, ColumnRule]]] = {}
    catalog_tables: list[tuple[exp.Table, str]] = []
    for table in list(ast.find_all(exp.Table)):
        name = table.name.lower()
        if name in decision.datasets and catalog.dataset(name) is not None:
            table_rules[id(table)] = (name, decision.datasets[name].columns)
            catalog_tables.append((table, name))
    analysis = LineageAnalysis(ast, table_rules)
    _check_uses(analysis)

    touched = sorted({f"{r.origin.dataset}.{r.origin.column}" for r in analysis.refs})
    masks: dict[str, str] = {f"{r.origin.dataset}.{r.origin.column}": r.origin.rule.op for r in analysis.refs}

    min_cell = None
    min_cell_rule = None
    aggregate_outputs: tuple[str, ...] = ()
    if aggregate_rules:
        persons = {n: catalog.datasets[n].person_key for n in aggregate_rules}
        aggregate_outputs = enforce_aggregate_only(ast, catalog_tables, aggregate_rules, persons)
        strictest = max(aggregate_rules.values(), key=lambda r: r.min_cell)
        min_cell, min_cell_rule = strictest.min_cell, strictest.rule

    inserted: set[int] = set()
    for table, name in catalog_tables:
        derived = _derived_table(
            table, name, decision, catalog, dialect=target_dialect, keys=keys, purpose=purpose
        )
        table.replace(derived)
        for base in derived.find_all(exp.Table):
            inserted.add(id(base))
    _verify_sources(ast, inserted)

    limits = [d.max_rows for d in decision.datasets.values() if d.max_rows]
    max_rows = min([max_rows_cap, *limits])
    ast = _apply_limit(ast, max_rows)
    try:
        sql = ast.sql(dialect=target_dialect, unsupported_level=ErrorLevel.RAISE)
    except UnsupportedError as exc:
        raise InvalidQuery(
            f"the query uses SQL that the {target_dialect} engine does not support: "
            f"{str(exc).splitlines()[0]}",
            code="unsupported_in_target_dialect",
        ) from None
    domains = sorted(
        {
            (purpose, str(rule.params.get("domain", "default")))
            for d in decision.datasets.values()
            for rule in d.columns.values()
            if rule.op in ("pseudonymise", "noise")
        }
    )
    return RewritePlan(
        sql=sql,
        sql_for_audit=redact_keys(sql, keys, domains),
        dialect=target_dialect,
        columns=_output_columns(analysis.root_outputs),
        datasets=tuple(sorted({n for _, n in catalog_tables})),
        columns_touched=tuple(touched),
        masks=masks,
        max_rows=max_rows,
        min_cell=min_cell,
        min_cell_rule=min_cell_rule,
        aggregate_outputs=aggregate_outputs,
    )
