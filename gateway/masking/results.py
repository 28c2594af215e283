"""Apply every result-side protection a plan asks for; any failure propagates (fail closed)."""

from __future__ import annotations

import pyarrow as pa

from gateway.errors import MaskingFailed
from gateway.masking.disclosure import suppress_small_cells
from gateway.masking.free_text import Scanner, mask_free_text
from gateway.masking.operators import ArrowSideContext, apply_arrow_side
from gateway.sql.rewrite import RewritePlan


def mask_results(table: pa.Table, plan: RewritePlan, scan: Scanner,
                 arrow_side: ArrowSideContext | None = None) -> pa.Table:
    try:
        table = apply_arrow_side(table, plan, arrow_side)
        free_text = [i for i, c in enumerate(plan.columns) if c.free_text]
        if free_text:
            table = mask_free_text(table, free_text, scan)
        if plan.min_cell is not None:
            table = suppress_small_cells(
                table, min_cell=plan.min_cell, aggregate_columns=plan.aggregate_outputs
            )
    except Exception as exc:
        raise MaskingFailed(
            "the result could not be masked, so no data is returned; the incident is in the audit log",
            code="masking_failed",
        ) from exc
    return table
