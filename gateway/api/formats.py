"""Streamed answer formats: CSV, Arrow IPC stream and Parquet, chosen by the Accept header.

Each writer turns masked record batches into bytes as they come, so memory stays bounded by one batch
whatever the size of the answer.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

MEDIA_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "arrow": "application/vnd.apache.arrow.stream",
    "parquet": "application/vnd.apache.parquet",
}
_ACCEPT = {
    "text/csv": "csv",
    "application/vnd.apache.arrow.stream": "arrow",
    "application/vnd.apache.arrow.file": "arrow",
    "application/vnd.apache.parquet": "parquet",
    "application/x-parquet": "parquet",
    "application/json": "json",
    "application/problem+json": "json",
    "*/*": "json",
}


def negotiate(accept: str | None, explicit: str | None = None) -> str | None:
    """``json``, ``csv``, ``arrow`` or ``parquet`` for a request; None if nothing acceptable."""
    if explicit:
        return explicit if explicit in ("json", *MEDIA_TYPES) else None
    if not accept:
        return "json"
    for part in accept.split(","):
        media = part.split(";")[0].strip().lower()
        if media in _ACCEPT:
            return _ACCEPT[media]
    return None


def _drain(sink: io.BytesIO) -> bytes:
    data = sink.getvalue()
    sink.seek(0)
    sink.truncate()
    return data


def _conform(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    if batch.schema.equals(schema):
        return batch
    table = pa.Table.from_batches([batch]).cast(schema)
    return table.combine_chunks().to_batches()[0] if table.num_rows else pa.RecordBatch.from_pylist([], schema)


def encode(fmt: str, schema: pa.Schema, batches: Iterator[pa.RecordBatch],
           metadata: dict[str, str] | None = None) -> Iterator[bytes]:
    """Yield the encoded answer chunk by chunk."""
    sink = io.BytesIO()
    if metadata:
        schema = schema.with_metadata({**(schema.metadata or {}), **metadata})
    writer: Any
    if fmt == "csv":
        writer = pacsv.CSVWriter(sink, schema)
    elif fmt == "arrow":
        writer = pa.ipc.new_stream(sink, schema)
    elif fmt == "parquet":
        writer = pq.ParquetWriter(sink, schema)
    else:
        raise ValueError(f"unknown format {fmt!r}")
    try:
        for batch in batches:
            if batch.num_rows == 0:
                continue
            writer.write_batch(_conform(batch, schema))
            chunk = _drain(sink)
            if chunk:
                yield chunk
    finally:
        writer.close()
    tail = _drain(sink)
    if tail:
        yield tail
