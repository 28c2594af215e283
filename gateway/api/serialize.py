"""Arrow results to JSON (dates ISO-8601, decimals as exact strings), serialised with orjson."""

from __future__ import annotations

import decimal
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc


def _default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _column(array: pa.ChunkedArray) -> list[Any]:
    kind = array.type
    if pa.types.is_decimal(kind):
        return pc.cast(array, pa.string()).to_pylist()  # type: ignore[no-any-return]
    return array.to_pylist()  # type: ignore[no-any-return]


def rows_of(table: pa.Table) -> list[list[Any]]:
    columns = [_column(table.column(i)) for i in range(table.num_columns)]
    return [list(row) for row in zip(*columns, strict=True)] if columns else []


def dumps(payload: Any) -> bytes:
    return orjson.dumps(payload, default=_default, option=orjson.OPT_PASSTHROUGH_SUBCLASS)
