"""Audit stores: the protocol, the shared SQL logic, :func:`open_store` and :func:`prune`.

Every failure to write (and to read) raises :class:`gateway.errors.AuditUnavailable`; the pipeline then
returns no data.  Nothing is swallowed.  Appends are serialised inside the database (SQLite
``BEGIN IMMEDIATE``, PostgreSQL ``pg_advisory_xact_lock``), so several threads, processes or gateway
workers append to one chain without forking it.
"""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.errors import AuditUnavailable

from .chain import ANCHOR, GENESIS_HASH, PERIODIC, CheckpointPolicy, record_hash, sign_checkpoint, verify
from .keys import SigningKeyInput, load_signing_key
from .record import (
    AuditEvent,
    AuditFilter,
    Checkpoint,
    StoredRecord,
    canonical_json,
    format_time,
    parse_time,
    utc_now,
)

log = logging.getLogger("gateway.audit")

RECORDS_TABLE = "audit_records"
CHECKPOINTS_TABLE = "audit_checkpoints"


@runtime_checkable
class AuditStore(Protocol):
    """Append-only, hash-chained storage of audit records."""

    def append(self, event: AuditEvent) -> StoredRecord:
        """Store ``event`` as the next record; raise :class:`AuditUnavailable` if it cannot be stored."""
        ...

    def iter_records(self, from_seq: int = 1) -> Iterator[StoredRecord]: ...

    def iter_checkpoints(self) -> Iterator[Checkpoint]: ...

    def get(self, seq: int) -> StoredRecord | None: ...

    def query(self, filters: AuditFilter, limit: int = 100, offset: int = 0) -> list[StoredRecord]: ...

    def head(self) -> tuple[int, str]:
        """``(seq, record_hash)`` of the newest record; ``(0, GENESIS_HASH)`` for an empty chain."""
        ...

    def checkpoint(self) -> Checkpoint | None:
        """Sign the current head now (if not yet covered); for periodic timers and shutdown."""
        ...

    def prune_before(self, before: datetime, signing_key: Ed25519PrivateKey) -> int:
        """Low-level retention step; call :func:`prune` instead."""
        ...

    def close(self) -> None: ...


class _Cursor(Protocol):
    def execute(self, sql: str, params: Sequence[Any] = ()) -> Any: ...
    def fetchone(self) -> Any: ...
    def fetchall(self) -> list[Any]: ...


class SQLAuditStore(ABC):
    """The chain logic over a SQL database; subclasses supply connections, locking and SQL dialect.

    SQL in this class uses ``%s`` placeholders and ``{records}`` / ``{checkpoints}`` table names.
    """

    batch_size = 1000

    def __init__(self, signing_key: SigningKeyInput | None, *,
                 checkpoint_policy: CheckpointPolicy | None = None, checkpoint_on_close: bool = True) -> None:
        self._signing_key = load_signing_key(signing_key) if signing_key is not None else None
        self.checkpoint_policy = checkpoint_policy or CheckpointPolicy()
        self.checkpoint_on_close = checkpoint_on_close
        self._closed = False
        self._close_lock = threading.Lock()

    # --- to implement ----------------------------------------------------------------------------------

    @abstractmethod
    def _write_tx(self) -> AbstractContextManager[_Cursor]:
        """A transaction holding the chain's append lock, yielding a cursor."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[_Cursor]:
        """A cursor for reading."""

    @abstractmethod
    def _sql(self, text: str) -> str:
        """Fill in table names and convert placeholders."""

    @abstractmethod
    def _time_param(self, value: datetime) -> Any: ...

    @abstractmethod
    def _json_text(self, key: str) -> str:
        """SQL expression: the text of top-level key ``key`` of the stored event JSON."""

    @abstractmethod
    def _json_array_contains(self, key: str) -> str:
        """SQL condition with one placeholder: the event's array ``key`` contains the parameter."""

    @abstractmethod
    def _release(self) -> None:
        """Close connections."""

    # --- helpers --------------------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    def _check_open(self) -> None:
        if self._closed:
            raise AuditUnavailable("the audit store is closed")

    def _fail(self, action: str, exc: BaseException) -> AuditUnavailable:
        log.error("audit store: %s failed: %s: %s", action, type(exc).__name__, exc)
        return AuditUnavailable(f"the audit trail could not {action}; no data is returned")

    @staticmethod
    def _to_time(value: Any) -> datetime:
        if isinstance(value, datetime):
            return parse_time(format_time(value))
        return parse_time(str(value))

    def _row_to_record(self, row: Sequence[Any]) -> StoredRecord:
        return StoredRecord(seq=int(row[0]), time=self._to_time(row[1]), prev_hash=str(row[2]),
                            record_hash=str(row[3]), event_json=str(row[4]))

    def _row_to_checkpoint(self, row: Sequence[Any]) -> Checkpoint:
        return Checkpoint(seq=int(row[0]), kind=str(row[1]), head_hash=str(row[2]),
                          time=self._to_time(row[3]), key_id=str(row[4]), signature=str(row[5]))

    def _head(self, cur: _Cursor) -> tuple[int, str]:
        cur.execute(self._sql("SELECT seq, record_hash FROM {records} ORDER BY seq DESC LIMIT 1"))
        row = cur.fetchone()
        if row is not None:
            return int(row[0]), str(row[1])
        cur.execute(self._sql("SELECT seq, head_hash FROM {checkpoints} WHERE kind = %s "
                              "ORDER BY seq DESC LIMIT 1"), (ANCHOR,))
        row = cur.fetchone()
        if row is not None:  # everything was pruned: continue after the anchor
            return int(row[0]) - 1, str(row[1])
        return 0, GENESIS_HASH

    def _last_checkpoint(self, cur: _Cursor) -> tuple[int, datetime | None]:
        cur.execute(self._sql("SELECT seq, kind, time FROM {checkpoints} ORDER BY seq DESC LIMIT 1"))
        row = cur.fetchone()
        if row is not None:
            seq = int(row[0]) - (1 if row[1] == ANCHOR else 0)
            return seq, self._to_time(row[2])
        cur.execute(self._sql("SELECT time FROM {records} ORDER BY seq LIMIT 1"))
        first = cur.fetchone()
        return 0, (self._to_time(first[0]) if first is not None else None)

    def _insert_checkpoint(self, cur: _Cursor, cp: Checkpoint) -> None:
        cur.execute(self._sql("INSERT INTO {checkpoints} (seq, kind, head_hash, time, key_id, signature) "
                              "VALUES (%s, %s, %s, %s, %s, %s)"),
                    (cp.seq, cp.kind, cp.head_hash, self._time_param(cp.time), cp.key_id, cp.signature))

    def _require_key(self, key: Ed25519PrivateKey | None = None) -> Ed25519PrivateKey:
        key = key or self._signing_key
        if key is None:
            raise AuditUnavailable("the audit store was opened without a signing key (read-only)")
        return key

    # --- AuditStore -----------------------------------------------------------------------------------

    def append(self, event: AuditEvent) -> StoredRecord:
        self._check_open()
        signing_key = self._require_key()
        try:
            # validate again: an event changed with model_copy(update=...) skipped the SQL normalisation
            event = AuditEvent.model_validate(event.model_dump())
            data = event.canonical_dict()
            event_json = canonical_json(data).decode("utf-8")
            time = event.time
            with self._write_tx() as cur:
                head_seq, head_hash = self._head(cur)
                seq = head_seq + 1
                digest = record_hash(seq, head_hash, data)
                cur.execute(self._sql("INSERT INTO {records} (seq, time, prev_hash, record_hash, event) "
                                      "VALUES (%s, %s, %s, %s, %s)"),
                            (seq, self._time_param(time), head_hash, digest, event_json))
                last_seq, last_time = self._last_checkpoint(cur)
                now = utc_now()
                if self.checkpoint_policy.due(seq, last_seq, last_time, now):
                    self._insert_checkpoint(cur, sign_checkpoint(seq, digest, signing_key, time=now))
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise self._fail("record the request", exc) from exc
        return StoredRecord(seq=seq, time=parse_time(format_time(time)), prev_hash=head_hash,
                            record_hash=digest, event_json=event_json)

    def checkpoint(self) -> Checkpoint | None:
        self._check_open()
        signing_key = self._require_key()
        try:
            with self._write_tx() as cur:
                head_seq, head_hash = self._head(cur)
                last_seq, _ = self._last_checkpoint(cur)
                if head_seq == 0 or head_seq <= last_seq:
                    return None
                cp = sign_checkpoint(head_seq, head_hash, signing_key)
                self._insert_checkpoint(cur, cp)
                return cp
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise self._fail("write a checkpoint", exc) from exc

    def head(self) -> tuple[int, str]:
        self._check_open()
        try:
            with self._read() as cur:
                return self._head(cur)
        except Exception as exc:
            raise self._fail("read the chain head", exc) from exc

    def get(self, seq: int) -> StoredRecord | None:
        self._check_open()
        try:
            with self._read() as cur:
                cur.execute(self._sql("SELECT seq, time, prev_hash, record_hash, event FROM {records} "
                                      "WHERE seq = %s"), (seq,))
                row = cur.fetchone()
        except Exception as exc:
            raise self._fail("read a record", exc) from exc
        return self._row_to_record(row) if row is not None else None

    def iter_records(self, from_seq: int = 1) -> Iterator[StoredRecord]:
        next_seq = from_seq
        while True:
            self._check_open()
            try:
                with self._read() as cur:
                    cur.execute(self._sql("SELECT seq, time, prev_hash, record_hash, event FROM {records} "
                                          "WHERE seq >= %s ORDER BY seq LIMIT %s"),
                                (next_seq, self.batch_size))
                    rows = cur.fetchall()
            except Exception as exc:
                raise self._fail("read records", exc) from exc
            for row in rows:
                yield self._row_to_record(row)
            if len(rows) < self.batch_size:
                return
            next_seq = int(rows[-1][0]) + 1

    def iter_checkpoints(self) -> Iterator[Checkpoint]:
        self._check_open()
        try:
            with self._read() as cur:
                cur.execute(self._sql("SELECT seq, kind, head_hash, time, key_id, signature "
                                      "FROM {checkpoints} ORDER BY seq, kind"))
                rows = cur.fetchall()
        except Exception as exc:
            raise self._fail("read checkpoints", exc) from exc
        for row in rows:
            yield self._row_to_checkpoint(row)

    def query(self, filters: AuditFilter, limit: int = 100, offset: int = 0) -> list[StoredRecord]:
        self._check_open()
        where: list[str] = []
        params: list[Any] = []
        if filters.time_from is not None:
            where.append("time >= %s")
            params.append(self._time_param(filters.time_from))
        if filters.time_to is not None:
            where.append("time < %s")
            params.append(self._time_param(filters.time_to))
        for key in ("username", "office", "purpose", "decision", "event", "request_id"):
            value = getattr(filters, key)
            if value is not None:
                where.append(f"{self._json_text(key)} = %s")
                params.append(value)
        if filters.dataset is not None:
            where.append(self._json_array_contains("datasets"))
            params.append(filters.dataset)
        if filters.rule is not None:
            where.append(self._json_array_contains("rules"))
            params.append(filters.rule)
        sql = "SELECT seq, time, prev_hash, record_hash, event FROM {records}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY seq " + ("DESC" if filters.newest_first else "ASC") + " LIMIT %s OFFSET %s"
        params += [max(0, int(limit)), max(0, int(offset))]
        try:
            with self._read() as cur:
                cur.execute(self._sql(sql), params)
                rows = cur.fetchall()
        except Exception as exc:
            raise self._fail("search records", exc) from exc
        return [self._row_to_record(row) for row in rows]

    def prune_before(self, before: datetime, signing_key: Ed25519PrivateKey) -> int:
        self._check_open()
        try:
            with self._write_tx() as cur:
                head_seq, head_hash = self._head(cur)
                cur.execute(self._sql("SELECT MIN(seq) FROM {records}"))
                row = cur.fetchone()
                if row is None or row[0] is None:
                    return 0
                first = int(row[0])
                cur.execute(self._sql("SELECT MIN(seq) FROM {records} WHERE time >= %s"),
                            (self._time_param(before),))
                row = cur.fetchone()
                if row is None or row[0] is None:
                    new_first, anchor_hash = head_seq + 1, head_hash
                else:
                    new_first = int(row[0])
                    cur.execute(self._sql("SELECT prev_hash FROM {records} WHERE seq = %s"), (new_first,))
                    anchor_hash = str(cur.fetchone()[0])
                if new_first <= first:
                    return 0
                cur.execute(self._sql("SELECT COUNT(*) FROM {records} WHERE seq < %s"), (new_first,))
                deleted = int(cur.fetchone()[0])
                cur.execute(self._sql("DELETE FROM {checkpoints} WHERE kind = %s AND seq = %s"),
                            (ANCHOR, new_first))
                anchor = sign_checkpoint(new_first, anchor_hash, signing_key, kind=ANCHOR)
                self._insert_checkpoint(cur, anchor)
                cur.execute(self._sql("DELETE FROM {records} WHERE seq < %s"), (new_first,))
                cur.execute(self._sql("DELETE FROM {checkpoints} WHERE kind = %s AND seq < %s"),
                            (PERIODIC, new_first - 1))
                return deleted
        except AuditUnavailable:
            raise
        except Exception as exc:
            raise self._fail("prune old records", exc) from exc

    def close(self) -> None:
        with self._close_lock:
            if self._closed:
                return
            error: Exception | None = None
            if self.checkpoint_on_close and self._signing_key is not None:
                try:
                    self.checkpoint()
                except Exception as exc:  # report after releasing the connections
                    error = exc
            self._closed = True
            self._release()
        if error is not None:
            raise error

    def __enter__(self) -> SQLAuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str, signing_key: SigningKeyInput | None, *, checkpoint_every: int = 100,
               checkpoint_interval_seconds: float = 300.0, checkpoint_on_close: bool = True,
               **options: Any) -> SQLAuditStore:
    """Open (creating tables if missing) the store at ``url``.

    * ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy style);
    * ``postgresql://user@host:port/db`` (also ``postgres://``); the schema comes from ``schema=...``
      (keyword or URL query parameter, default ``audit``); ``pool_size=...`` sizes the connection pool.

    ``signing_key`` signs checkpoints; ``None`` opens a read-only store (append raises).
    Raises :class:`AuditUnavailable` if the store cannot be opened.
    """
    policy = CheckpointPolicy(every=checkpoint_every, interval_seconds=checkpoint_interval_seconds)
    if url.startswith("sqlite://"):
        from .sqlite_store import SQLiteAuditStore

        path = url[len("sqlite://"):]
        if path.startswith("/"):
            path = path[1:]  # sqlite:///rel -> rel, sqlite:////abs -> /abs
        if not path:
            raise ValueError("sqlite URL without a path")
        return SQLiteAuditStore(path, signing_key, checkpoint_policy=policy,
                                checkpoint_on_close=checkpoint_on_close, **options)
    if url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        from .postgres_store import PostgresAuditStore

        url = url.replace("postgresql+psycopg://", "postgresql://", 1)
        return PostgresAuditStore(url, signing_key, checkpoint_policy=policy,
                                  checkpoint_on_close=checkpoint_on_close, **options)
    raise ValueError("unsupported audit store URL (use sqlite:///... or postgresql://...)")


def default_sqlite_url(data_dir: str | Path) -> str:
    """The URL of the embedded default store: ``audit.db`` in the gateway's data directory."""
    return f"sqlite:///{(Path(data_dir) / 'audit.db').resolve()}"


def prune(store: AuditStore, before: datetime, signing_key: SigningKeyInput, *,
          verify_first: bool = True) -> int:
    """Retention: delete the records older than ``before``; return how many were deleted.

    The chain is verified first (a damaged chain is not pruned: that would hide the damage).  A signed
    ``anchor`` checkpoint is written at the new first record, holding that record's ``prev_hash``, so
    the remaining chain still verifies.  Only a prefix of the chain is deleted: records are removed up to
    the first record at or after ``before`` (records are in append order; a few slightly older records
    behind it are kept until the next run).
    """
    key = load_signing_key(signing_key)
    if verify_first:
        report = verify(store, key.public_key())
        if not report.ok:
            raise AuditUnavailable(f"the audit chain does not verify (first bad seq {report.first_bad_seq}); "
                                   "refusing to prune")
    return store.prune_before(before, key)
