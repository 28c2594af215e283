"""Database adapters. Independent of the gateway package: each takes SQL in its dialect and returns
Arrow data, holds its own credentials, and opens read-only, time-limited sessions."""

from connectors.base import (
    Connector,
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    QueryRejected,
    QueryResult,
)

__all__ = [
    "Connector",
    "ConnectorError",
    "ConnectorTimeout",
    "ConnectorUnavailable",
    "QueryRejected",
    "QueryResult",
]
