"""Free-text columns: scan each value for personal data and replace what is found (Presidio)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pyarrow as pa

Scanner = Callable[[Sequence[str | None]], list[str | None]]


def mask_free_text(table: pa.Table, positions: Sequence[int], scan: Scanner) -> pa.Table:
    """Replace each column (by position) by its scanned form; one scanner batch per column."""
    for index in positions:
        name = table.schema.field(index).name
        values = table.column(index).cast(pa.string()).to_pylist()
        masked = scan(values)
        if len(masked) != len(values):
            raise ValueError("the scanner returned a different number of values")
        table = table.set_column(index, pa.field(name, pa.string()), pa.array(masked, type=pa.string()))
    return table
