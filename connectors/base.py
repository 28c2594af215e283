"""The connector contract: SQL in, Arrow out, read-only, bounded in rows and time."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa


class ConnectorError(Exception):
    """Base class. ``internal_detail`` may contain the database's own text: never show it to callers."""

    def __init__(self, message: str, *, internal_detail: str = "") -> None:
        super().__init__(message)
        self.internal_detail = internal_detail


class QueryRejected(ConnectorError):
    """The database refused the statement (type error, cast error, ...)."""


class ConnectorUnavailable(ConnectorError):
    """The database cannot be reached."""


class ConnectorTimeout(ConnectorError):
    """The statement ran longer than allowed and was cancelled."""


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    truncated: bool


@dataclass
class StreamResult:
    """Batches as they come from the database; at most ``max_rows`` rows in all.

    ``truncated`` is known only once the iterator is exhausted. Iterating maps database errors to
    the ConnectorError classes above; ``close()`` releases the session early.
    """

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    state: dict[str, bool] = field(default_factory=lambda: {"truncated": False})
    closer: Callable[[], None] | None = None

    @property
    def truncated(self) -> bool:
        return self.state["truncated"]

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


def stream_from_result(result: QueryResult, batch_rows: int = 65_536) -> StreamResult:
    """A StreamResult over a fully fetched result (for connectors that do not stream natively)."""
    state = {"truncated": result.truncated}
    return StreamResult(schema=result.table.schema,
                        batches=iter(result.table.to_batches(max_chunksize=batch_rows)), state=state)


class Connector(Protocol):
    #: the sqlglot dialect the connector's SQL must be written in
    dialect: str

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        """Run one read-only query; return at most ``max_rows`` rows (``truncated`` if there were more)."""
        ...

    def close(self) -> None: ...
