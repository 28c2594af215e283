"""Where each column reference comes from, and how it is used.

Walks sqlglot scopes bottom-up (CTEs and derived tables before the queries that read them) and
records, for every output column of every scope, the catalog column it passes through unchanged, if
any. That lets the rewriter check column *uses* through any number of CTEs, subqueries and set
operations, and tell which result columns carry free text that must be scanned after the query.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp
from sqlglot.optimizer.scope import Scope, traverse_scope

from gateway.policy.decision import ColumnRule, ColumnUse


@dataclass(frozen=True)
class Origin:
    """A catalog column that reaches a scope output unchanged (a bare column reference)."""

    dataset: str
    column: str
    rule: ColumnRule


@dataclass
class ColumnRef:
    node: exp.Column
    origin: Origin
    use: ColumnUse
    bare_projection: bool


Outputs = dict[str, Origin | None]


def _unalias(node: exp.Expr) -> exp.Expr:
    return node.this if isinstance(node, exp.Alias) else node


def _clause_of(node: exp.Expr, select: exp.Expr) -> str:
    """The arg name of ``select`` under which ``node`` sits (``expressions``, ``where``, ...)."""
    child: exp.Expr = node
    parent = node.parent
    while parent is not None and parent is not select:
        child, parent = parent, parent.parent
    return (child.arg_key or "expressions") if parent is select else "expressions"


def _inside(node: exp.Expr, kinds: tuple[type[exp.Expr], ...], stop: exp.Expr) -> bool:
    parent = node.parent
    while parent is not None and parent is not stop:
        if isinstance(parent, kinds):
            return True
        parent = parent.parent
    return False


def classify_use(column: exp.Column, select: exp.Expr) -> tuple[ColumnUse, bool]:
    """How ``column`` is used in ``select``, and whether it is a bare projection."""
    clause = _clause_of(column, select)
    in_aggregate = _inside(column, (exp.AggFunc,), select)
    # a comparison anywhere (CASE WHEN nachname = 'Müller', count(*) FILTER (WHERE ...)) tests the value
    compared = _inside(column, (exp.Predicate, exp.Like, exp.ILike, exp.In, exp.Between), select)
    if clause == "expressions":
        parent = column.parent
        bare = parent is select or (isinstance(parent, exp.Alias) and parent.parent is select)
        if compared:
            return "filter", False
        if _inside(column, (exp.Window,), select) and not in_aggregate:
            return "order", False
        return ("aggregate" if in_aggregate else "select"), bare
    if clause in ("group",):
        return "group", False
    if clause in ("order", "distinct"):
        return "order", False
    if clause == "joins":
        return ("join" if _is_column_comparison(column) else "filter"), False
    if in_aggregate:
        return "aggregate", False
    return "filter", False


def _is_column_comparison(column: exp.Column) -> bool:
    parent = column.parent
    if isinstance(parent, exp.EQ):
        other = parent.expression if parent.this is column else parent.this
        return isinstance(other, exp.Column)
    return False


class LineageAnalysis:
    """Origins of every scope's outputs and every column reference of a qualified query."""

    def __init__(
        self,
        ast: exp.Expr,
        table_rules: dict[int, tuple[str, dict[str, ColumnRule]]],
        scopes: list[Scope] | None = None,
    ):
        """``scopes``: ``traverse_scope(ast)`` if the caller has it already (of the tree as it is now)."""
        #: id(exp.Table) -> (dataset, column rules) for each catalog table node
        self._table_rules = table_rules
        self._outputs: dict[int, Outputs] = {}
        self.refs: list[ColumnRef] = []
        self.root_outputs: Outputs = {}
        #: the scopes of ``ast`` as analysed (stale once the tree is changed)
        self.scopes: list[Scope] = traverse_scope(ast) if scopes is None else scopes
        scopes = self.scopes
        for scope in scopes:
            self._visit(scope)
        if scopes:
            self.root_outputs = self._outputs.get(id(scopes[-1].expression), {})

    def _origin_of(self, scope: Scope, column: exp.Column) -> Origin | None:
        source = scope.sources.get(column.table)
        outer = scope.parent
        while source is None and outer is not None:  # correlated reference to an enclosing query
            source = outer.sources.get(column.table)
            outer = outer.parent
        if isinstance(source, exp.Table):
            entry = self._table_rules.get(id(source))
            if entry is None:
                return None
            dataset, rules = entry
            rule = rules.get(column.name)
            return Origin(dataset, column.name, rule) if rule is not None else None
        if isinstance(source, Scope):
            return self._outputs.get(id(source.expression), {}).get(column.name)
        return None

    def _visit(self, scope: Scope) -> None:
        expression = scope.expression
        if isinstance(expression, exp.SetOperation):
            left = self._outputs.get(id(expression.left), {})
            right = list(self._outputs.get(id(expression.right), {}).values())
            merged: Outputs = {}
            for position, (name, origin) in enumerate(left.items()):
                other = right[position] if position < len(right) else None
                merged[name] = _merge(origin, other)
            self._outputs[id(expression)] = merged
            return
        if not isinstance(expression, exp.Select):
            return
        outputs: Outputs = {}
        for projection in expression.expressions:
            inner = _unalias(projection)
            outputs[projection.alias_or_name] = (
                self._origin_of(scope, inner) if isinstance(inner, exp.Column) else None
            )
        for column in expression.find_all(exp.Column):
            if column.table or column.find_ancestor(exp.Select) is not expression:
                continue
            # ORDER BY / GROUP BY / HAVING on a projection alias: the use applies to what the alias holds
            alias_origin = outputs.get(column.name)
            if alias_origin is not None:
                use, _ = classify_use(column, expression)
                self.refs.append(ColumnRef(column, alias_origin, use, False))
        for column in scope.columns:
            origin = self._origin_of(scope, column)
            if origin is None:
                continue
            use, bare = classify_use(column, expression)
            self.refs.append(ColumnRef(column, origin, use, bare))
        self._outputs[id(expression)] = outputs


def _merge(a: Origin | None, b: Origin | None) -> Origin | None:
    """Union of two branches: keep the stricter origin (free text wins, so it is scanned)."""
    if a is None:
        return b
    if b is None:
        return a
    for op in ("tokenise", "free_text"):  # what must be processed after the query wins
        if b.rule.op == op:
            return b
        if a.rule.op == op:
            return a
    return a
