"""Rewrite an analyst's query so that the database itself enforces the policy decision.

Each catalog table in the query is replaced by a derived table that applies the decision: row
filters in its WHERE, masks in its projection, denied columns left out. Whatever the analyst writes
on top (joins, CTEs, subqueries, set operations, aliases, window functions) can only see what that
derived table releases, and filters are never mixed into the analyst's own predicates.
"""

from __future__ import annotations

import datetime as dt
import enum
import secrets
import threading
from collections import OrderedDict
from collections.abc import Hashable
from dataclasses import dataclass, field
from decimal import Decimal

from pydantic import BaseModel
from sqlglot import exp
from sqlglot.errors import ErrorLevel, OptimizeError, UnsupportedError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.qualify_columns import validate_qualify_columns
from sqlglot.optimizer.scope import Scope, traverse_scope
from sqlglot.schema import MappingSchema

from gateway.catalog import Catalog, Column
from gateway.errors import AccessDenied, InvalidQuery
from gateway.policy.decision import ColumnRule, Decision, RowFilter
from gateway.sql.aggregate import PERSONS_COLUMN, enforce_aggregate_only
from gateway.sql.functions import check_functions
from gateway.sql.lineage import LineageAnalysis, Origin
from gateway.sql.masks import KeyRing, datatype, mask_expression, redact_keys
from gateway.sql.pseudonym_replica import REPLICA_ALIAS, PseudonymReplicas, Replica
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
        rules = ds_decision.columns
        schema[name] = {
            col: meta.type
            for col, meta in dataset.columns.items()
            if (rule := rules.get(col)) is not None and rule.op != "deny"  # no rule: denied by default
        }
    return schema


class _PrenormalizedSchema(MappingSchema):
    """A MappingSchema over a mapping that MappingSchema itself has already normalised.

    Normalising parses every table name (tokenizer and parser) and is most of a MappingSchema's
    construction; the normalised mapping depends only on the dialect and the allowed columns, so it is
    computed once per (dialect, allowed schema). Each query still gets a schema object of its own:
    its lookup caches hold nodes of the query's tree and must not outlive it.
    """

    def __init__(self, normalized: dict[str, object], dialect: str) -> None:
        self._prenormalized = normalized
        super().__init__(normalized, dialect=dialect, normalize=True)

    def _normalize(self, schema: dict[str, object]) -> dict[str, object]:
        return self._prenormalized


_NORMALIZED_SCHEMAS: OrderedDict[Hashable, dict[str, object]] = OrderedDict()
_NORMALIZED_SCHEMAS_SIZE = 256
_NORMALIZED_SCHEMAS_LOCK = threading.Lock()


def _schema_for(allowed: dict[str, dict[str, str]], dialect: str) -> MappingSchema:
    key = (dialect, tuple((name, tuple(columns.items())) for name, columns in allowed.items()))
    with _NORMALIZED_SCHEMAS_LOCK:
        normalized = _NORMALIZED_SCHEMAS.get(key)
        if normalized is not None:
            _NORMALIZED_SCHEMAS.move_to_end(key)
    if normalized is None:
        mapping: dict[str, object] = dict(allowed)
        normalized = MappingSchema(mapping, dialect=dialect).mapping  # raises as qualify would
        with _NORMALIZED_SCHEMAS_LOCK:
            _NORMALIZED_SCHEMAS[key] = normalized
            while len(_NORMALIZED_SCHEMAS) > _NORMALIZED_SCHEMAS_SIZE:
                _NORMALIZED_SCHEMAS.popitem(last=False)
    return _PrenormalizedSchema(normalized, dialect)


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


def _unresolved_columns(scopes: list[Scope]) -> bool:
    """Whether sqlglot's ``validate_qualify_columns`` would refuse the tree these scopes come from: a
    column that resolves to no source (outside a correlated subquery), or one left unqualified because it
    is ambiguous. The same conditions, asked of scopes the lineage analysis reuses."""
    for scope in scopes:
        if not isinstance(scope.expression, exp.Select):
            continue
        if scope.external_columns and not scope.is_correlated_subquery and not scope.pivots:
            return True
        if scope.unqualified_columns:
            return True
    return False


def _qualify(
    parsed: ParsedQuery, decision: Decision, catalog: Catalog, purpose: str
) -> tuple[exp.Expr, list[Scope]]:
    """The analyst's tree qualified against the released columns, and its scopes."""
    ast = parsed.ast.copy()
    try:
        qualified = qualify(
            ast,
            schema=_schema_for(_allowed_schema(decision, catalog), parsed.dialect),
            dialect=parsed.dialect,
            # validated below, on the scopes that the lineage analysis then reuses
            validate_qualify_columns=False,
            # quoting is left to the generator (identify=True in _generate): the same SQL, one walk less
            quote_identifiers=False,
        )
        scopes = traverse_scope(qualified)
        if _unresolved_columns(scopes):
            validate_qualify_columns(qualified)  # raises with sqlglot's own message
            raise OptimizeError("a column could not be resolved")  # fail closed if it did not
        return qualified, scopes
    except OptimizeError as exc:
        _raise_denied_column(parsed.ast, decision, purpose)
        message = str(exc).split("\n")[0]
        raise InvalidQuery(
            f"{message}; GET /v1/datasets lists the columns you can use", code="unknown_column"
        ) from None


_WHOLE_ROW = getattr(exp, "TableColumn", None)


def _refuse_whole_row_refs(ast: exp.Expr) -> list[exp.Table]:
    """After qualification every real column carries its table; a bare name that is a relation's
    alias is a whole-row value (a struct of the raw row), which must never be released.

    Returns the tree's table nodes (breadth-first, as ``find_all`` gives them).
    """
    # one walk over the tree (breadth-first, like find_all, so the same node is reported first)
    whole_rows: list[exp.Expr] = []
    columns: list[exp.Column] = []
    stars: list[exp.Star] = []
    tables: list[exp.Table] = []
    relation_names: set[str] = set()
    for node in ast.walk():
        if _WHOLE_ROW is not None and isinstance(node, _WHOLE_ROW):
            whole_rows.append(node)
        if isinstance(node, exp.TableAlias | exp.Table):
            relation_names.add(node.name)
        if isinstance(node, exp.Table):
            tables.append(node)
        if isinstance(node, exp.Column):
            columns.append(node)
        if isinstance(node, exp.Star):
            stars.append(node)
    for node in whole_rows:
        raise InvalidQuery(
            f"{node.name!r} refers to a whole row; name the columns you need instead",
            code="whole_row_reference",
        )
    for column in columns:
        if not column.table and column.name in relation_names:
            raise InvalidQuery(
                f"{column.name!r} refers to a whole row; name the columns you need instead",
                code="whole_row_reference",
            )
    for star in stars:
        if not isinstance(star.parent, exp.Count):
            raise InvalidQuery(
                "this use of * cannot be expanded safely; name the columns you need",
                code="star_not_expandable",
            )
    return tables


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


def _derived_select(
    dataset: str,
    decision: Decision,
    catalog: Catalog,
    *,
    dialect: str,
    keys: KeyRing,
    purpose: str,
    replica: Replica | None = None,
    precomputed: dict[str, str] | None = None,
) -> exp.Select:
    """The SELECT of a dataset's derived table: masked projections of every released column, row filters.

    With a ``replica`` it reads the replica's copy of the table and takes the ``precomputed`` pseudonym
    columns (column -> replica column) instead of hashing in SQL; nothing else differs.
    Its SQL is cached (``derived_table_sql``): whatever this reads must be covered by ``_template_key``.
    """
    meta = catalog.datasets[dataset]
    ds_decision = decision.datasets[dataset]
    precomputed = precomputed or {}
    projections: list[exp.Expr] = []
    for col, col_meta in meta.columns.items():
        rule = ds_decision.columns.get(col)
        if rule is None or rule.op == "deny":
            continue
        if col in precomputed:
            masked: exp.Expr = exp.column(precomputed[col], table=SOURCE_ALIAS, quoted=True)
        else:
            raw = exp.column(col, table=SOURCE_ALIAS, quoted=True)
            masked = mask_expression(
                raw, rule, column_type=col_meta.type, dialect=dialect, keys=keys, purpose=purpose,
                arrow_side=True,
            )
        projections.append(exp.alias_(masked, col, quoted=True, copy=False))
    source = exp.Table(
        this=exp.to_identifier(meta.table, quoted=True),
        alias=exp.TableAlias(this=exp.to_identifier(SOURCE_ALIAS, quoted=True)),
    )
    schema_name = catalog.connectors[meta.connector].schema_name
    if replica is not None:
        source.set("this", exp.to_identifier(replica.table, quoted=True))
        source.set("db", exp.to_identifier("main", quoted=True))
        source.set("catalog", exp.to_identifier(REPLICA_ALIAS, quoted=True))
    elif schema_name:
        source.set("db", exp.to_identifier(schema_name, quoted=True))
    # built directly: the builder API copies every projection again
    inner = exp.Select(expressions=projections, from_=exp.From(this=source))
    for row_filter in ds_decision.row_filters:
        inner = inner.where(_filter_condition(row_filter, meta.columns), copy=False)
    return inner


# --------------------------------------------------------------------------------------------------
# Derived-table templates: the SQL text of a dataset's derived table, built and generated once per
# (target dialect, purpose, key ring, catalog entry, column rules, row filters) and reused verbatim.
# --------------------------------------------------------------------------------------------------

TEMPLATE_CACHE_SIZE = 512


class _Uncacheable(Exception):
    """A policy value whose identity cannot be captured exactly in a cache key."""


#: scalar types a cache key holds by type and repr: repr is exact (1, 1.0, True, -0.0, Decimal('1.00') and
#: datetimes in different zones all differ), where == is not (1 == 1.0 == True, 0.0 == -0.0)
_EXACT_SCALARS = frozenset({int, float, bool, Decimal, dt.date, dt.datetime, dt.time})


def _freeze(value: object) -> Hashable:
    """An exact, hashable image of a policy value or model: equal images mean identical values.

    Pydantic models are taken field by field (and their extra fields), so a field added to a decision
    model later is part of every key without anyone remembering to add it here.
    """
    kind = type(value)
    if kind is str or value is None:
        return value
    if kind in _EXACT_SCALARS:
        return (kind, repr(value))
    if kind is dict and isinstance(value, dict):
        return (dict, tuple((_freeze(k), _freeze(v)) for k, v in value.items()))
    if kind in (list, tuple) and isinstance(value, list | tuple):
        return (kind, tuple(_freeze(v) for v in value))
    if isinstance(value, enum.Enum):
        return (kind, repr(value))
    if isinstance(value, BaseModel):
        fields = tuple(_freeze(v) for v in value.__dict__.values())
        extra = value.__pydantic_extra__
        return (kind, fields, _freeze(dict(extra)) if extra else None)
    raise _Uncacheable(kind.__name__)


def _template_key(
    dataset: str, decision: Decision, catalog: Catalog, *, dialect: str, keys: KeyRing, purpose: str,
    replica: Replica | None = None, precomputed: dict[str, str] | None = None,
) -> Hashable:
    """Everything ``_derived_select`` can read, so that equal keys always mean equal SQL: the whole
    catalog entry (as its JSON: every field of it is typed) and its connector, the dataset's whole
    column rules and row filters (exactly, see ``_freeze``), and the replica read with its columns."""
    meta = catalog.datasets[dataset]
    ds_decision = decision.datasets[dataset]
    return (
        dialect,
        purpose,
        keys,
        dataset,
        None if replica is None else replica.token,
        None if not precomputed else tuple(sorted(precomputed.items())),
        meta.model_dump_json(),
        _freeze(catalog.connectors[meta.connector]),
        _freeze(ds_decision.columns),
        _freeze(ds_decision.row_filters),
    )


class _TemplateCache:
    """A bounded LRU of derived-table SQL texts (immutable strings: nothing can alter a cached entry)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[Hashable, str] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> str | None:
        with self._lock:
            sql = self._entries.get(key)
            if sql is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return sql

    def put(self, key: Hashable, sql: str) -> None:
        with self._lock:
            self._entries[key] = sql
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.hits = self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)


_TEMPLATES = _TemplateCache(TEMPLATE_CACHE_SIZE)


def clear_template_cache() -> None:
    """Forget every derived-table template (benchmarks measure the cold path with this)."""
    _TEMPLATES.clear()


def _generate(ast: exp.Expr, dialect: str) -> str:
    """SQL for a tree this module owns (not copied: generation may alter it, and it is not used again)."""
    try:
        return ast.sql(dialect=dialect, unsupported_level=ErrorLevel.RAISE, copy=False, identify=True)
    except UnsupportedError as exc:
        raise InvalidQuery(
            f"the query uses SQL that the {dialect} engine does not support: "
            f"{str(exc).splitlines()[0]}",
            code="unsupported_in_target_dialect",
        ) from None


def _replica_for(
    dataset: str, decision: Decision, catalog: Catalog, *, dialect: str, keys: KeyRing, purpose: str,
    replicas: PseudonymReplicas | None,
) -> tuple[Replica | None, dict[str, str]]:
    """The dataset's replica and its pseudonym columns, if it is fresh, copies the table the catalog in
    force names, and holds every pseudonym the decision asks for."""
    if not replicas or dialect != "duckdb":
        return None, {}
    replica = replicas.usable(dataset)
    if replica is None or replica.table != catalog.datasets[dataset].table:
        return None, {}
    precomputed: dict[str, str] = {}
    for col, rule in decision.datasets[dataset].columns.items():
        if rule.op != "pseudonymise":
            continue
        domain = rule.params.get("domain", "default")
        name = replica.column_for(col, purpose, str(domain), keys) if set(rule.params) <= {"domain"} else None
        if name is None:
            return None, {}  # one pseudonym it lacks: the whole derived table takes the SQL path
        precomputed[col] = name
    return (replica, precomputed) if precomputed else (None, {})


def derived_table_sql(
    dataset: str, decision: Decision, catalog: Catalog, *, dialect: str, keys: KeyRing, purpose: str,
    replicas: PseudonymReplicas | None = None,
) -> str:
    """The SQL text of the SELECT of ``dataset``'s derived table under ``decision`` (cached)."""
    replica, precomputed = _replica_for(dataset, decision, catalog, dialect=dialect, keys=keys,
                                        purpose=purpose, replicas=replicas)
    try:
        key: Hashable | None = _template_key(
            dataset, decision, catalog, dialect=dialect, keys=keys, purpose=purpose,
            replica=replica, precomputed=precomputed,
        )
    except _Uncacheable:
        key = None
    if key is not None:
        cached = _TEMPLATES.get(key)
        if cached is not None:
            return cached
    inner = _derived_select(dataset, decision, catalog, dialect=dialect, keys=keys, purpose=purpose,
                            replica=replica, precomputed=precomputed)
    sql = _generate(inner, dialect)
    if key is not None:
        _TEMPLATES.put(key, sql)
    return sql


def _splice(sql: str, marker: str, templates: list[str]) -> str:
    """Put each derived table's SQL where ``(SELECT <marker><index>)`` was generated.

    ``marker`` is drawn afresh for every rewrite (128 random bits), so no text in the analyst's query can
    contain it. Fails closed unless every occurrence of the marker has exactly that form and every
    derived table occurs (a dialect may legitimately repeat one: MySQL writes FULL OUTER JOIN as a
    UNION of two joins, each with its own copy).
    """
    opening = "(SELECT " + marker
    pieces = sql.split(opening)
    refused = InvalidQuery("the query could not be rewritten safely", code="rewrite_failed")
    if sql.count(marker) != len(pieces) - 1:
        raise refused
    out = [pieces[0]]
    seen: set[int] = set()
    for piece in pieces[1:]:
        digits = len(piece) - len(piece.lstrip("0123456789"))
        if digits == 0 or not piece.startswith(")", digits):
            raise refused
        index = int(piece[:digits])
        if index >= len(templates):
            raise refused
        seen.add(index)
        out.append("(" + templates[index] + piece[digits:])
    if seen != set(range(len(templates))):
        raise refused
    return "".join(out)


def _filter_condition(row_filter: RowFilter, columns: dict[str, Column]) -> exp.Expr:
    """A row filter as a condition on the raw table (inside the derived table, never the analyst's WHERE).

    ``in``/``eq``: the column is one of the values (no values: no rows). ``not_before_days``: retention,
    the date column is no older than ``values[0]`` days (rows past their deletion period are invisible;
    a NULL date counts as expired unless ``keep_null`` says such rows, e.g. open cases, stay).
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
        in_period = exp.GTE(this=exp.Cast(this=target, to=datatype("DATE")), expression=cutoff)
        if row_filter.keep_null:
            return exp.or_(exp.Is(this=target.copy(), expression=exp.Null()), in_period, copy=False)
        return in_period
    raise AccessDenied(f"unknown row filter operator {row_filter.op!r} in the policy", code="policy_invalid",
                       rule=row_filter.rule)


def _limit(rows: int) -> exp.Limit:
    """``LIMIT rows`` built directly (the builder parses an int argument as SQL text)."""
    return exp.Limit(expression=exp.Literal.number(rows))


def _apply_limit(ast: exp.Expr, max_rows: int) -> exp.Expr:
    fetch = max_rows + 1
    if isinstance(ast, exp.Select):
        limit = ast.args.get("limit")
        current = limit.expression if isinstance(limit, exp.Limit) else None
        if isinstance(current, exp.Literal) and current.is_int and int(current.this) <= max_rows:
            return ast
        if limit is not None and not isinstance(current, exp.Literal):
            raise InvalidQuery("LIMIT must be a plain number", code="limit_not_literal")
        return ast.limit(_limit(fetch), copy=False)
    wrapped = exp.select(exp.Star()).from_(
        exp.Subquery(this=ast, alias=exp.TableAlias(this=exp.to_identifier("q", quoted=True)))
    )
    return wrapped.limit(_limit(fetch), copy=False)


def _verify_sources(scopes: list[Scope], catalog_tables: set[int]) -> None:
    """Last line of defence: every base table the engine will read is one the rewriter replaces with
    its derived table (whose only base table the rewriter writes itself)."""
    for scope in scopes:
        for source in scope.sources.values():
            if isinstance(source, exp.Table) and id(source) not in catalog_tables:
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
    replicas: PseudonymReplicas | None = None,
) -> RewritePlan:
    """Apply ``decision`` to ``parsed``; raise AccessDenied/InvalidQuery for anything unsafe.

    ``replicas``: DuckDB tables with pseudonyms computed ahead (gateway.sql.pseudonym_replica).
    """
    aggregate_rules = {n: d.aggregate_only for n, d in decision.datasets.items() if d.aggregate_only}
    check_functions(parsed.ast, aggregate_only=bool(aggregate_rules))
    ast, scopes = _qualify(parsed, decision, catalog, purpose)
    tables = _refuse_whole_row_refs(ast)

    table_rules: dict[int, tuple[str, dict[str, ColumnRule]]] = {}
    catalog_tables: list[tuple[exp.Table, str]] = []
    for table in tables:
        name = table.name.lower()
        if name in decision.datasets and catalog.dataset(name) is not None:
            table_rules[id(table)] = (name, decision.datasets[name].columns)
            catalog_tables.append((table, name))
    analysis = LineageAnalysis(ast, table_rules, scopes)
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

    templates = [
        derived_table_sql(name, decision, catalog, dialect=target_dialect, keys=keys, purpose=purpose,
                          replicas=replicas)
        for _, name in catalog_tables
    ]
    # every base table in the analyst's tree must be a catalog table that is now replaced by its derived
    # table (the lineage scopes are still current unless the aggregate rules reshaped the tree)
    _verify_sources(traverse_scope(ast) if aggregate_rules else analysis.scopes,
                    {id(t) for t, _ in catalog_tables})
    # each derived table's SELECT is spliced in as text after generation (see _splice)
    marker = f"__gw_derived_{secrets.token_hex(16)}_"
    for index, (table, _) in enumerate(catalog_tables):
        table.replace(exp.Subquery(
            this=exp.Select(expressions=[exp.Var(this=f"{marker}{index}")]),
            alias=exp.TableAlias(this=exp.to_identifier(table.alias_or_name, quoted=True)),
        ))

    limits = [d.max_rows for d in decision.datasets.values() if d.max_rows]
    max_rows = min([max_rows_cap, *limits])
    ast = _apply_limit(ast, max_rows)
    sql = _splice(_generate(ast, target_dialect), marker, templates)
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
