"""The connector contract: SQL in, Arrow out, read-only, bounded in rows and time."""

from __future__ import annotations

from dataclasses import dataclass
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


class Connector(Protocol):
    #: the sqlglot dialect the connector's SQL must be written in
    dialect: str

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        """Run one read-only query; return at most ``max_rows`` rows (``truncated`` if there were more)."""
        ...

    def close(self) -> None: ...
