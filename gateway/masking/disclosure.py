"""Small-cell suppression for aggregate-only results (minimum frequency rule).

The rewriter adds ``COUNT(DISTINCT person_key)`` columns (``__persons_*``) to every aggregate query on
aggregate-only data. Here every result row whose person count is below ``min_cell`` has its aggregate
values set to NULL and ``_suppressed`` set to true; the person counts themselves are dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from gateway.sql.aggregate import PERSONS_COLUMN

SUPPRESSED_COLUMN = "_suppressed"


def suppress_small_cells(table: pa.Table, *, min_cell: int, aggregate_columns: Sequence[str]) -> pa.Table:
    person_columns = [n for n in table.column_names if n.startswith(PERSONS_COLUMN)]
    if not person_columns:
        raise ValueError("aggregate-only result lacks the person count the rewriter adds")
    persons = table.column(person_columns[0])
    for name in person_columns[1:]:
        persons = pc.min_element_wise(persons, table.column(name))
    small = pc.fill_null(pc.less(persons, min_cell), True)
    for name in aggregate_columns:
        index = table.schema.get_field_index(name)
        if index < 0:
            raise KeyError(f"aggregate column {name!r} is missing from the result")
        column = table.column(index)
        nulls = pa.nulls(len(column), type=column.type)
        table = table.set_column(index, table.schema.field(index), pc.if_else(small, nulls, column))
    for name in person_columns:
        table = table.drop_columns([name])
    return table.append_column(SUPPRESSED_COLUMN, small)
