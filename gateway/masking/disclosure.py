"""Small-cell, dominance and secondary suppression for aggregate-only results (docs/sdc.md).

The rewriter adds hidden columns to every aggregate query on aggregate-only data (gateway/sql/aggregate.py):
``COUNT(DISTINCT person_key)`` (``__persons_*``), dominance flags (``__dominated_*``) and ROLLUP grouping
flags (``__rollup_<i>__<output>``). Here a result row is suppressed (its aggregate values set to NULL and
``_suppressed`` set to true) if its person count is below ``min_cell`` (minimum frequency rule) or one of
its magnitude cells is dominated; with ROLLUP, further cells are suppressed so that no suppressed cell can
be recomputed from the margins (gateway/sdc/rollup.py). The hidden columns are then dropped.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa
import pyarrow.compute as pc

from gateway.sdc.rollup import secondary_suppression
from gateway.sql.aggregate import DOMINATED_PREFIX, HIDDEN_PREFIXES, PERSONS_COLUMN, ROLLUP_PREFIX

SUPPRESSED_COLUMN = "_suppressed"


def _rollup_columns(table: pa.Table) -> list[tuple[int, str, str]]:
    """(key position, grouping-flag column, output column) for each ROLLUP key, in key order."""
    found = []
    for name in table.column_names:
        if name.startswith(ROLLUP_PREFIX):
            position, _, output = name[len(ROLLUP_PREFIX) :].partition("__")
            found.append((int(position), name, output))
    return sorted(found)


def suppress_small_cells(table: pa.Table, *, min_cell: int, aggregate_columns: Sequence[str]) -> pa.Table:
    person_columns = [n for n in table.column_names if n.startswith(PERSONS_COLUMN)]
    if not person_columns:
        raise ValueError("aggregate-only result lacks the person count the rewriter adds")
    persons = table.column(person_columns[0])
    for name in person_columns[1:]:
        persons = pc.min_element_wise(persons, table.column(name))
    small = pc.fill_null(pc.less(persons, min_cell), True)
    for name in table.column_names:
        if name.startswith(DOMINATED_PREFIX):
            dominated = pc.fill_null(pc.equal(table.column(name), 1), True)
            small = pc.or_(small, dominated)
    rollup = _rollup_columns(table)
    if rollup:
        for _, _, output in rollup:
            if table.schema.get_field_index(output) < 0:
                raise KeyError(f"ROLLUP key column {output!r} is missing from the result")
        key_values = list(zip(*(table.column(o).to_pylist() for _, _, o in rollup), strict=True))
        flags = list(zip(*(table.column(f).to_pylist() for _, f, _ in rollup), strict=True))
        extended = secondary_suppression(
            key_values,
            [[bool(v) for v in row] for row in flags],
            persons.to_pylist(),
            small.to_pylist(),
            min_cell=min_cell,
        )
        small = pa.chunked_array([pa.array(extended, type=pa.bool_())])
    for name in aggregate_columns:
        index = table.schema.get_field_index(name)
        if index < 0:
            raise KeyError(f"aggregate column {name!r} is missing from the result")
        column = table.column(index)
        nulls = pa.nulls(len(column), type=column.type)
        table = table.set_column(index, table.schema.field(index), pc.if_else(small, nulls, column))
    hidden = [n for n in table.column_names if n.startswith(HIDDEN_PREFIXES)]
    table = table.drop_columns(hidden)
    return table.append_column(SUPPRESSED_COLUMN, small)
