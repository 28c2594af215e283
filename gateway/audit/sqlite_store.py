"""The embedded default audit store: one SQLite file (WAL mode) in the data directory.

Appends run in ``BEGIN IMMEDIATE`` transactions, which take SQLite's write lock before the head is
read, so concurrent writers - threads of one process (also serialised by a lock around the shared
connection) and several processes on the same file - never fork the chain.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway.errors import AuditUnavailable

from .chain import CheckpointPolicy
from .keys import SigningKeyInput
from .record import format_time
from .store import CHECKPOINTS_TABLE, RECORDS_TABLE, SQLAuditStore, _Cursor

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS {RECORDS_TABLE} (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    record_hash TEXT NOT NULL,
    event TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS {RECORDS_TABLE}_time ON {RECORDS_TABLE} (time);
CREATE TABLE IF NOT EXISTS {CHECKPOINTS_TABLE} (
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    head_hash TEXT NOT NULL,
    time TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature TEXT NOT NULL,
    PRIMARY KEY (seq, kind)
);
"""


class SQLiteAuditStore(SQLAuditStore):
    def __init__(self, path: str | Path, signing_key: SigningKeyInput | None, *,
                 checkpoint_policy: CheckpointPolicy | None = None, checkpoint_on_close: bool = True,
                 busy_timeout_seconds: float = 30.0) -> None:
        super().__init__(signing_key, checkpoint_policy=checkpoint_policy,
                         checkpoint_on_close=checkpoint_on_close)
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            if self.path != ":memory:":
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(self.path, timeout=busy_timeout_seconds, isolation_level=None,
                                         check_same_thread=False)
            self._conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_seconds * 1000)}")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = FULL")
            with self._write_tx() as cur:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        cur.execute(statement)
        except (sqlite3.Error, OSError) as exc:
            raise self._fail("be opened", exc) from exc

    def _sql(self, text: str) -> str:
        return text.format(records=RECORDS_TABLE, checkpoints=CHECKPOINTS_TABLE).replace("%s", "?")

    def _time_param(self, value: datetime) -> Any:
        return format_time(value)

    def _json_text(self, key: str) -> str:
        return f"json_extract(event, '$.{key}')"

    def _json_array_contains(self, key: str) -> str:
        return f"EXISTS (SELECT 1 FROM json_each(event, '$.{key}') AS j WHERE j.value = %s)"

    @contextmanager
    def _write_tx(self) -> Iterator[_Cursor]:
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit store is closed")
            cur = self._conn.cursor()
            cur.execute("BEGIN IMMEDIATE")
            try:
                yield cur
                cur.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.rollback()
                raise
            finally:
                cur.close()

    @contextmanager
    def _read(self) -> Iterator[_Cursor]:
        with self._lock:
            if self._closed:
                raise AuditUnavailable("the audit store is closed")
            cur = self._conn.cursor()
            try:
                yield cur
            finally:
                cur.close()

    def _release(self) -> None:
        with self._lock:
            self._conn.close()
