"""The PostgreSQL audit store (psycopg 3, connection pool), for several gateway workers.

Appends take a transaction-level advisory lock (``pg_advisory_xact_lock``) keyed on the schema, so
concurrent workers serialise and never fork the chain.  Tables are created if missing in a
configurable schema (default ``audit``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from psycopg_pool import ConnectionPool

from gateway.errors import AuditUnavailable

from .chain import CheckpointPolicy
from .keys import SigningKeyInput
from .store import CHECKPOINTS_TABLE, RECORDS_TABLE, SQLAuditStore, _Cursor

_SCHEMA_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")


def split_schema(url: str, default: str = "audit") -> tuple[str, str]:
    """``(url without the schema query parameter, schema)``."""
    parts = urlsplit(url)
    query = parse_qsl(parts.query, keep_blank_values=True)
    schema = default
    rest = []
    for key, value in query:
        if key == "schema":
            schema = value
        else:
            rest.append((key, value))
    return urlunsplit(parts._replace(query=urlencode(rest))), schema


class PostgresAuditStore(SQLAuditStore):
    def __init__(self, dsn: str, signing_key: SigningKeyInput | None, *,
                 checkpoint_policy: CheckpointPolicy | None = None, checkpoint_on_close: bool = True,
                 schema: str | None = None, pool_size: int = 4,
                 connect_timeout_seconds: float = 10.0) -> None:
        super().__init__(signing_key, checkpoint_policy=checkpoint_policy,
                         checkpoint_on_close=checkpoint_on_close)
        dsn, url_schema = split_schema(dsn)
        self.schema = schema or url_schema
        if not _SCHEMA_NAME.fullmatch(self.schema):
            raise ValueError("the audit schema name must be a plain SQL identifier")
        self._records = f'"{self.schema}".{RECORDS_TABLE}'
        self._checkpoints = f'"{self.schema}".{CHECKPOINTS_TABLE}'
        self._lock_name = f"gateway-audit:{self.schema}"
        self._timeout = connect_timeout_seconds
        try:
            self._pool = ConnectionPool(
                dsn, min_size=1, max_size=max(1, pool_size), open=False, timeout=connect_timeout_seconds,
                kwargs={"autocommit": True, "connect_timeout": max(1, int(connect_timeout_seconds))},
                check=ConnectionPool.check_connection, name=f"audit-{self.schema}")
            self._pool.open(wait=True, timeout=connect_timeout_seconds)
        except Exception as exc:
            self._closed = True
            raise self._fail("be opened", exc) from exc
        try:
            self._create_tables()
        except Exception as exc:
            self._closed = True
            self._pool.close()
            raise self._fail("be opened", exc) from exc

    def _create_tables(self) -> None:
        with self._write_tx() as cur:
            cur.execute(f'CREATE SCHEMA IF NOT EXISTS "{self.schema}"')
            cur.execute(self._sql(
                "CREATE TABLE IF NOT EXISTS {records} (seq bigint PRIMARY KEY, time timestamptz NOT NULL, "
                "prev_hash text NOT NULL, record_hash text NOT NULL, event text NOT NULL)"))
            cur.execute(self._sql(f"CREATE INDEX IF NOT EXISTS {RECORDS_TABLE}_time ON {{records}} (time)"))
            cur.execute(self._sql(
                "CREATE TABLE IF NOT EXISTS {checkpoints} (seq bigint NOT NULL, kind text NOT NULL, "
                "head_hash text NOT NULL, time timestamptz NOT NULL, key_id text NOT NULL, "
                "signature text NOT NULL, PRIMARY KEY (seq, kind))"))

    def _sql(self, text: str) -> str:
        return text.format(records=self._records, checkpoints=self._checkpoints)

    def _time_param(self, value: datetime) -> Any:
        return value

    def _json_text(self, key: str) -> str:
        return f"((event::jsonb) ->> '{key}')"

    def _json_array_contains(self, key: str) -> str:
        return f"((event::jsonb) -> '{key}' @> jsonb_build_array(%s::text))"

    @contextmanager
    def _write_tx(self) -> Iterator[_Cursor]:
        if self._closed:
            raise AuditUnavailable("the audit store is closed")
        with self._pool.connection(timeout=self._timeout) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self._lock_name,))
            yield cur

    @contextmanager
    def _read(self) -> Iterator[_Cursor]:
        if self._closed:
            raise AuditUnavailable("the audit store is closed")
        with self._pool.connection(timeout=self._timeout) as conn, conn.cursor() as cur:
            yield cur

    def _release(self) -> None:
        self._pool.close()


__all__ = ["PostgresAuditStore", "split_schema"]
