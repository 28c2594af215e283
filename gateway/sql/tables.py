"""Which catalog datasets a query reads, and refusal of every other table reference."""

from __future__ import annotations

from sqlglot import exp

from gateway.catalog import Catalog
from gateway.errors import InvalidQuery


def cte_names(ast: exp.Expr) -> set[str]:
    return {cte.alias_or_name.lower() for cte in ast.find_all(exp.CTE)}


def referenced_datasets(ast: exp.Expr, catalog: Catalog) -> list[str]:
    """Catalog datasets named in ``ast``; refuses anything that is not a plain catalog name.

    Refused: schema- or catalog-qualified names (``information_schema.tables``, ``main.einwohner``),
    table functions (``read_csv(...)``), file paths (``FROM 'x.csv'``), names not in the catalog, and
    CTEs named like a dataset (they would shadow it and confuse readers of the audit log).
    """
    ctes = cte_names(ast)
    for name in ctes:
        if catalog.dataset(name) is not None:
            raise InvalidQuery(
                f"the CTE name {name!r} is also a dataset name; rename the CTE", code="cte_shadows_dataset"
            )
    found: list[str] = []
    for table in ast.find_all(exp.Table):
        if not isinstance(table.this, exp.Identifier):
            raise InvalidQuery(
                "table functions are not allowed in FROM; query the datasets by name (GET /v1/datasets)",
                code="table_function_not_allowed",
            )
        if table.args.get("db") or table.args.get("catalog"):
            raise InvalidQuery(
                f"schema-qualified table {table.sql()!r} is not allowed; name a dataset without schema "
                "(GET /v1/datasets lists them)",
                code="unknown_dataset",
            )
        name = table.name.lower()
        if name in ctes:
            continue
        if catalog.dataset(name) is None:
            raise InvalidQuery(
                f"{table.name!r} is not a dataset you can query; GET /v1/datasets lists the datasets",
                code="unknown_dataset",
                extra={"dataset": table.name[:64]},
            )
        if name not in found:
            found.append(name)
    return found
