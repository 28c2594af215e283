"""The differencing guard: refuse a query whose population differs from a recent one by < k persons.

The attack: ``count in Heßloch`` (12) and ``count in Heßloch except nationality X`` (11) are both large
enough to be released; their difference is one person. For every aggregate query on a dataset with the
guard, the gateway remembers the query's *population* (its WHERE predicate, in canonical SQL) and its
grouping, per user and dataset, in a bounded window (``differencing.window`` entries, in memory, newest
first; a restart forgets them). Before a new query with a different predicate runs, the gateway asks the
database, for each remembered population, in one extra query over the same masked and row-filtered view:

    SELECT <new group keys>, <old group keys>,
           COUNT(DISTINCT CASE WHEN <new predicate> THEN person END),
           COUNT(DISTINCT CASE WHEN <old predicate> THEN person END),
           COUNT(DISTINCT CASE WHEN <new> AND <old> THEN person END),
           COUNT(DISTINCT CASE WHEN <new> AND NOT <old> THEN person END),
           COUNT(DISTINCT CASE WHEN <old> AND NOT <new> THEN person END)
    FROM dataset GROUP BY <both sets of keys>

From this it derives, for every pair of an old cell ``a`` and a new cell ``b`` that share persons, how
many persons have rows in exactly one of the two (for one row per person: ``|a| + |b| - 2 |a ∩ b|``).
If both cells are large enough to be released (``>= min_cell``) and they differ by at least one but
fewer than ``k`` persons, the query is refused with ``differencing_refused``. What this cannot catch is
described in docs/sdc.md.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlglot import exp
from sqlglot.optimizer.qualify import qualify

from gateway.catalog import Catalog
from gateway.errors import AccessDenied
from gateway.policy.decision import AggregateRule

POP_ALIAS = "__pop"
CHECK_DIALECT = "postgres"


@dataclass(frozen=True)
class Population:
    dataset: str
    where: str | None  # the predicate in CHECK_DIALECT, columns qualified by POP_ALIAS
    groups: tuple[str, ...]  # group keys in CHECK_DIALECT
    #: joined tables: (alias, table SQL, ON condition SQL, inner join?)
    joins: tuple[tuple[str, str, str, bool], ...] = ()

    @property
    def tables(self) -> tuple[str, ...]:
        return tuple(sorted({exp.to_table(t, dialect=CHECK_DIALECT).name.lower() for _, t, _, _ in self.joins}))

    @property
    def signature(self) -> str:
        return f"{self.where or 'TRUE'}\x00{self.joins!r}"


def population_of(ast: exp.Expr, dialect: str, dataset: str, catalog: Catalog) -> Population | None:
    """The population of an (already accepted) aggregate query on ``dataset``; None if not a plain SELECT."""
    if not isinstance(ast, exp.Select):
        return None
    schema = {name: {c: m.type for c, m in ds.columns.items()} for name, ds in catalog.datasets.items()}
    tree = qualify(ast.copy(), schema=dict(schema), dialect=dialect, quote_identifiers=True, identify=True)
    assert isinstance(tree, exp.Select)
    source = tree.args.get("from_")
    table = source.this if source is not None else None
    if not isinstance(table, exp.Table) or table.name.lower() != dataset:
        return None
    alias = table.alias_or_name
    for column in tree.find_all(exp.Column):
        if column.table == alias:
            column.set("table", exp.to_identifier(POP_ALIAS, quoted=True))
    joins: list[tuple[str, str, str, bool]] = []
    for join in tree.args.get("joins") or []:
        target, on = join.this, join.args.get("on")
        side = str(join.args.get("side") or "").upper()
        kind = str(join.args.get("kind") or "").upper()
        if not isinstance(target, exp.Table) or on is None or join.args.get("using") or side in ("RIGHT", "FULL") \
                or kind not in ("", "INNER", "OUTER"):
            raise ValueError("only [LEFT] JOIN <table> ON ... is modelled by the differencing guard")
        plain = exp.Table(this=target.this.copy(), db=target.args.get("db"))
        joins.append((target.alias_or_name, plain.sql(dialect=CHECK_DIALECT), on.sql(dialect=CHECK_DIALECT),
                      side != "LEFT"))
    where = tree.args.get("where")
    groups: list[exp.Expr] = []
    group = tree.args.get("group")
    for expression in group.expressions if group else []:
        if isinstance(expression, exp.Rollup | exp.Cube | exp.GroupingSets):
            inner = expression.expressions
        else:
            inner = [expression]
        for key in inner:
            if isinstance(key, exp.Literal) and key.is_int and 1 <= int(key.this) <= len(tree.expressions):
                projection = tree.expressions[int(key.this) - 1]
                key = projection.this if isinstance(projection, exp.Alias) else projection
            groups.append(key)
    return Population(
        dataset=dataset,
        where=where.this.sql(dialect=CHECK_DIALECT) if where is not None else None,
        groups=tuple(dict.fromkeys(g.sql(dialect=CHECK_DIALECT) for g in groups)),
        joins=tuple(joins),
    )


def check_query(new: Population, old: Population, person_key: str) -> str:
    """The comparison query (analyst-level SQL in CHECK_DIALECT over the dataset)."""

    def predicate(population: Population) -> exp.Expr:
        """The population's WHERE and the ON conditions of its inner joins (all joins are LEFT here)."""
        parts: list[exp.Expr] = [
            exp.maybe_parse(on, dialect=CHECK_DIALECT) for _, _, on, inner in population.joins if inner
        ]
        if population.where:
            parts.append(exp.maybe_parse(population.where, dialect=CHECK_DIALECT))
        return exp.and_(*[exp.paren(p) for p in parts]) if parts else exp.true()

    scope: dict[str, tuple[str, str]] = {}
    for population in (new, old):
        for alias, table_sql, on, _ in population.joins:
            if scope.setdefault(alias, (table_sql, on)) != (table_sql, on):
                raise ValueError(f"the two queries join different tables as {alias!r}")

    person = exp.column(person_key, table=POP_ALIAS, quoted=True)

    def persons(condition: exp.Expr) -> exp.Expr:
        return exp.Count(this=exp.Distinct(expressions=[exp.Case(ifs=[exp.If(this=condition, true=person.copy())])]))

    projections: list[exp.Expr] = []
    keys: list[exp.Expr] = []
    for prefix, population in (("__gn", new), ("__go", old)):
        for index, text in enumerate(population.groups):
            key: exp.Expr = exp.maybe_parse(text, dialect=CHECK_DIALECT)
            projections.append(exp.alias_(key, f"{prefix}{index}", quoted=True))
            keys.append(key.copy())
    new_condition = exp.func("COALESCE", exp.paren(predicate(new)), exp.false())
    old_condition = exp.func("COALESCE", exp.paren(predicate(old)), exp.false())
    projections += [
        exp.alias_(persons(new_condition.copy()), "__n_new", quoted=True),
        exp.alias_(persons(old_condition.copy()), "__n_old", quoted=True),
        exp.alias_(persons(exp.and_(new_condition.copy(), old_condition.copy())), "__n_both", quoted=True),
        exp.alias_(persons(exp.and_(new_condition.copy(), exp.not_(old_condition.copy()))), "__n_new_only",
                   quoted=True),
        exp.alias_(persons(exp.and_(old_condition.copy(), exp.not_(new_condition.copy()))), "__n_old_only",
                   quoted=True),
    ]
    unique_keys = list({k.sql(): k for k in keys}.values())
    table = exp.Table(
        this=exp.to_identifier(new.dataset, quoted=True),
        alias=exp.TableAlias(this=exp.to_identifier(POP_ALIAS, quoted=True)),
    )
    query = exp.select(*projections).from_(table)
    for alias, (table_sql, on) in scope.items():
        joined = exp.to_table(table_sql, dialect=CHECK_DIALECT)
        joined.set("alias", exp.TableAlias(this=exp.to_identifier(alias, quoted=True)))
        query = query.join(joined, on=exp.maybe_parse(on, dialect=CHECK_DIALECT), join_type="LEFT")
    if unique_keys:
        query = query.group_by(*unique_keys)
    return query.sql(dialect=CHECK_DIALECT)


def smallest_difference(
    rows: Sequence[Sequence[Any]], new_keys: int, old_keys: int, *, release_at: int
) -> int | None:
    """The fewest persons whose rows differ between an old and a new cell that are both released.

    Each row: new keys, old keys, then distinct persons with rows in the new population, the old, both,
    only the new, only the old (per joint cell). For an old cell ``a`` and a new cell ``b`` sharing rows,
    the persons with rows in exactly one of them are those only in the old population within ``a``, only
    in the new within ``b``, and those in both populations but in ``a`` and another new cell (or ``b`` and
    another old cell). Distinct counts are added up over joint cells, exact when a person's rows fall in
    one joint cell (one row per person, as in the register) and an overestimate otherwise.
    """
    new_size: dict[tuple[Any, ...], int] = defaultdict(int)
    old_size: dict[tuple[Any, ...], int] = defaultdict(int)
    old_only: dict[tuple[Any, ...], int] = defaultdict(int)
    new_only: dict[tuple[Any, ...], int] = defaultdict(int)
    both_by_old: dict[tuple[Any, ...], int] = defaultdict(int)
    both_by_new: dict[tuple[Any, ...], int] = defaultdict(int)
    both: dict[tuple[tuple[Any, ...], tuple[Any, ...]], int] = defaultdict(int)
    for row in rows:
        b, a = tuple(row[:new_keys]), tuple(row[new_keys : new_keys + old_keys])
        n_new, n_old, n_both, n_new_only, n_old_only = (
            int(v or 0) for v in row[new_keys + old_keys : new_keys + old_keys + 5]
        )
        new_size[b] += n_new
        old_size[a] += n_old
        new_only[b] += n_new_only
        old_only[a] += n_old_only
        both_by_old[a] += n_both
        both_by_new[b] += n_both
        both[(a, b)] += n_both
    smallest: int | None = None
    for (a, b), shared in both.items():
        if shared <= 0 or old_size[a] < release_at or new_size[b] < release_at:
            continue
        difference = old_only[a] + new_only[b] + (both_by_old[a] - shared) + (both_by_new[b] - shared)
        if difference > 0 and (smallest is None or difference < smallest):
            smallest = difference
    return smallest


class DifferencingGuard:
    """Remembered populations per (user, dataset): a bounded, thread-safe window in memory."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._windows: dict[tuple[str, str], OrderedDict[str, Population]] = {}

    def recent(self, subject: str, dataset: str) -> list[Population]:
        with self._lock:
            window = self._windows.get((subject, dataset))
            return list(reversed(window.values())) if window else []

    def remember(self, subject: str, population: Population, *, window: int) -> None:
        key = f"{population.signature}\x00{'|'.join(population.groups)}"
        with self._lock:
            entries = self._windows.setdefault((subject, population.dataset), OrderedDict())
            entries.pop(key, None)
            entries[key] = population
            while len(entries) > window:
                entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._windows.clear()

    def forget(self, subject: str) -> None:
        with self._lock:
            for key in [k for k in self._windows if k[0] == subject]:
                del self._windows[key]


def refusal(rule: AggregateRule, difference: int | None, threshold: int, detail: str = "") -> AccessDenied:
    what = (
        f"its population differs from one of your recent queries on the same data by {difference} "
        f"person(s), fewer than {threshold}"
        if difference is not None
        else detail
    )
    return AccessDenied(
        f"differencing guard (rule {rule.rule}): {what}; comparing the two answers would reveal a small "
        "group. Ask for the larger population grouped instead, or ask the data-protection officer",
        code="differencing_refused",
        rule=rule.rule,
        extra={"guard": "differencing", "threshold": threshold},
    )
