"""MariaDB and MySQL: pymysql, streaming (unbuffered) cursors, one READ ONLY transaction per query.

Each pooled session is set up once with

    SET SESSION TRANSACTION READ ONLY;
    SET SESSION sql_mode = 'ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,'
                           'NO_ENGINE_SUBSTITUTION', time_zone = '+00:00';
    SET NAMES utf8mb4 COLLATE utf8mb4_bin;        -- (pymysql: charset and collation arguments)

and every query runs as

    SET SESSION max_statement_time = <s>        -- MariaDB   (max_execution_time = <ms> on MySQL)
    START TRANSACTION READ ONLY
    <sql>                                       -- SSCursor: rows are streamed, at most max_rows + 1 read
    ROLLBACK

The sql_mode is set explicitly because the SQL comes from sqlglot's ``mysql`` generator, which writes
backtick identifiers and backslash-escaped string literals: ``ANSI_QUOTES`` and
``NO_BACKSLASH_ESCAPES`` must therefore stay off, whatever the server's default is.
``ONLY_FULL_GROUP_BY`` makes the server refuse a non-aggregated column that is not grouped
instead of returning the value of an arbitrary row. Multi-statement support is never enabled, so a
query string can only ever be one statement.

``stream()`` reads the same unbuffered result batch by batch as the consumer asks for it. A session
whose result was not read to the end never goes back to the pool: its query is killed and the
session closed.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyarrow as pa
import pymysql
import pymysql.cursors
from pymysql.constants import FIELD_TYPE, FLAG

from connectors.base import (
    ConnectorTimeout,
    ConnectorUnavailable,
    QueryRejected,
    QueryResult,
    StreamResult,
    Watchdog,
    bounded_stream,
    scrub_credentials,
)

#: rows per fetchmany (execute) and per Arrow record batch (stream)
_BATCH_ROWS = 10_000
_SQL_MODE = "ONLY_FULL_GROUP_BY,STRICT_TRANS_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"
_BINARY_CHARSET = 63

# server error numbers
_ER_STATEMENT_TIMEOUT_MARIADB = 1969  # max_statement_time exceeded
_ER_QUERY_TIMEOUT_MYSQL = 3024  # max_execution_time exceeded
_ER_QUERY_INTERRUPTED = 1317  # KILL QUERY (our watchdog)
_ER_CON_COUNT = 1040
_ER_ACCESS_DENIED = 1045
_ER_DBACCESS_DENIED = 1044
_ER_BAD_DB = 1049
_ER_SERVER_SHUTDOWN = 1053
# client error numbers (pymysql uses the libmysqlclient ones)
_CR_CONN_HOST_ERROR = 2003
_CR_SERVER_GONE = 2006
_CR_SERVER_LOST = 2013
_UNAVAILABLE = {_ER_CON_COUNT, _ER_ACCESS_DENIED, _ER_DBACCESS_DENIED, _ER_BAD_DB, _ER_SERVER_SHUTDOWN,
                _CR_CONN_HOST_ERROR, _CR_SERVER_GONE, _CR_SERVER_LOST}
_TIMEOUT = {_ER_STATEMENT_TIMEOUT_MARIADB, _ER_QUERY_TIMEOUT_MYSQL, _ER_QUERY_INTERRUPTED}

#: the watchdog kills a query this long after the server-side limit should have stopped it
_WATCHDOG_GRACE_S = 2.0


@dataclass(frozen=True)
class _Target:
    host: str
    port: int
    user: str
    password: str
    database: str
    unix_socket: str | None = None


class _InvalidDsn(ValueError):
    """A DSN that cannot be used; the message is ours and never quotes any part of the DSN."""


#: what to do about a DSN that does not parse: the usual cause is an unencoded character in the password
_DSN_HINT = ("expected mysql://user:password@host:port/database; percent-encode special characters in the "
             "user and password ('/' as %2F, '@' as %40, ':' as %3A)")


def _parse_dsn(dsn: str) -> _Target:
    """``mysql://user:password@host:port/database`` (also ``mariadb://``, ``mysql+pymysql://``).

    Raises ``_InvalidDsn``, whose message names the problem without quoting the DSN: the parser's own
    text (``Port could not be cast to integer value as '<part of the password>'``) is never passed on.
    """
    try:
        parts = urlsplit(dsn)
        port = parts.port
    except ValueError:
        raise _InvalidDsn(f"the MySQL/MariaDB DSN cannot be parsed ({_DSN_HINT})") from None
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"):
        raise _InvalidDsn("not a MySQL/MariaDB DSN (expected mysql://user:password@host:port/database)")
    if "@" in parts.path or "@" in parts.query:
        # an unencoded '/' or '?' in the password ended the authority early
        raise _InvalidDsn(f"the MySQL/MariaDB DSN has an '@' after the host ({_DSN_HINT})")
    database = unquote(parts.path.lstrip("/"))
    if not database:
        raise _InvalidDsn("the MySQL/MariaDB DSN names no database")
    query = parse_qs(parts.query)
    return _Target(
        host=parts.hostname or "127.0.0.1",
        port=port or 3306,
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        database=database,
        unix_socket=query["unix_socket"][0] if query.get("unix_socket") else None,
    )


def _arrow_type(field: Any) -> tuple[pa.DataType, Callable[[Any], Any] | None]:
    """Arrow type (and value conversion, if any) for one pymysql result field."""
    code = field.type_code
    unsigned = bool(field.flags & FLAG.UNSIGNED)
    binary = field.charsetnr == _BINARY_CHARSET
    if code in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
        scale = int(field.scale)
        # the column length counts the digits plus a sign and a decimal point
        precision = int(field.length) - (1 if scale > 0 else 0) - (0 if unsigned else 1)
        precision = max(precision, scale, 1)
        if precision <= 38:
            return pa.decimal128(precision, scale), None
        return pa.decimal256(min(precision, 76), scale), None
    if code == FIELD_TYPE.TINY:
        return (pa.uint8() if unsigned else pa.int8()), None
    if code in (FIELD_TYPE.SHORT, FIELD_TYPE.YEAR):
        return (pa.uint16() if unsigned else pa.int16()), None
    if code in (FIELD_TYPE.INT24, FIELD_TYPE.LONG):
        return (pa.uint32() if unsigned else pa.int32()), None
    if code == FIELD_TYPE.LONGLONG:
        return (pa.uint64() if unsigned else pa.int64()), None
    if code == FIELD_TYPE.FLOAT:
        return pa.float32(), None
    if code == FIELD_TYPE.DOUBLE:
        return pa.float64(), None
    if code in (FIELD_TYPE.DATE, FIELD_TYPE.NEWDATE):
        return pa.date32(), None
    if code in (FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP):
        return pa.timestamp("us"), None
    if code == FIELD_TYPE.TIME:
        return pa.duration("us"), None
    if code == FIELD_TYPE.NULL:
        return pa.null(), None
    if code == FIELD_TYPE.BIT:
        return pa.binary(), None
    if code in (FIELD_TYPE.TINY_BLOB, FIELD_TYPE.MEDIUM_BLOB, FIELD_TYPE.LONG_BLOB, FIELD_TYPE.BLOB,
                FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING, FIELD_TYPE.VARCHAR) and binary:
        return pa.binary(), None
    # strings, ENUM, SET, JSON, GEOMETRY (as text or bytes, whatever the driver returns)
    return pa.string(), _to_text


def _to_text(value: Any) -> str:
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)


def _columns(fields: list[Any]) -> tuple[pa.Schema, list[Callable[[Any], Any] | None]]:
    """The Arrow schema of a result (from its field metadata alone) and the per-column conversions."""
    types = [_arrow_type(field) for field in fields]
    schema = pa.schema([pa.field(str(field.name), arrow_type) for field, (arrow_type, _) in zip(fields, types,
                                                                                             strict=True)])
    return schema, [convert for _, convert in types]


def _arrays(schema: pa.Schema, converts: list[Callable[[Any], Any] | None],
            rows: list[tuple[Any, ...]]) -> list[pa.Array]:
    arrays: list[pa.Array] = []
    for index, (field, convert) in enumerate(zip(schema, converts, strict=True)):
        values = [row[index] for row in rows]
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
        arrays.append(pa.array(values, type=field.type))
    return arrays


def _build_table(fields: list[Any], rows: list[tuple[Any, ...]]) -> pa.Table:
    schema, converts = _columns(fields)
    return pa.Table.from_arrays(_arrays(schema, converts, rows), schema=schema)


class MySQLConnector:
    """Read-only, time-limited queries on MariaDB or MySQL; see the module docstring."""

    dialect = "mysql"

    def __init__(self, dsn: str, *, pool_max: int = 4, connect_timeout_s: float = 5.0,
                 batch_rows: int = _BATCH_ROWS) -> None:
        if pool_max < 1:
            raise ValueError("pool_max must be at least 1")
        try:
            self._target = _parse_dsn(dsn)
        except _InvalidDsn as exc:
            raise ConnectorUnavailable(str(exc)) from None
        except ValueError:  # not expected from _parse_dsn; its text could quote the DSN
            raise ConnectorUnavailable(f"the MySQL/MariaDB DSN is not valid ({_DSN_HINT})") from None
        password = urlsplit(dsn).password or ""
        # the password as written in the DSN and decoded, scrubbed from any text we keep
        self._secrets = [s for s in {password, self._target.password} if s]
        self._connect_timeout_s = connect_timeout_s
        self._batch_rows = max(1, batch_rows)
        self._idle: queue.LifoQueue[pymysql.connections.Connection[Any]] = queue.LifoQueue()
        self._slots = threading.BoundedSemaphore(pool_max)
        self._closed = False
        self._is_mariadb: bool | None = None

    # -- helpers ---------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return scrub_credentials(text)

    def _connect(self) -> pymysql.connections.Connection[Any]:
        target = self._target
        conn = pymysql.connect(
            host=target.host,
            port=target.port,
            user=target.user,
            password=target.password,
            database=target.database,
            unix_socket=target.unix_socket,
            charset="utf8mb4",
            collation="utf8mb4_bin",
            autocommit=True,
            connect_timeout=max(1, round(self._connect_timeout_s)),
            client_flag=0,  # in particular no CLIENT.MULTI_STATEMENTS
            program_name="municipal-data-gateway",
        )
        try:
            with conn.cursor() as cur:
                cur.execute("SET SESSION TRANSACTION READ ONLY")
                cur.execute("SET SESSION sql_mode = %s, time_zone = '+00:00'", (_SQL_MODE,))
                if self._is_mariadb is None:
                    cur.execute("SELECT VERSION()")
                    row = cur.fetchone()
                    self._is_mariadb = bool(row and "mariadb" in str(row[0]).lower())
        except BaseException:
            conn.close()
            raise
        return conn

    def _checkout(self) -> pymysql.connections.Connection[Any]:
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return self._connect()
            try:
                conn.ping(reconnect=False)
                return conn
            except pymysql.Error:
                with contextlib.suppress(Exception):
                    conn.close()

    def _checkin(self, conn: pymysql.connections.Connection[Any], *, reusable: bool) -> None:
        if reusable and not self._closed and conn.open:
            self._idle.put(conn)
            return
        with contextlib.suppress(Exception):
            conn.close()

    def _kill(self, thread_id: int) -> bool:
        """``KILL QUERY`` from a second session (the watchdog, if the server-side limit failed).

        True: the kill may have been sent, so the session must not be pooled again.
        """
        with contextlib.suppress(Exception):
            killer = self._connect()
            try:
                with killer.cursor() as cur:
                    cur.execute(f"KILL QUERY {int(thread_id)}")
            finally:
                killer.close()
        return True

    def _map_error(self, exc: Exception, timeout_s: float) -> Exception:
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        detail = self._scrub(f"{type(exc).__name__}: {exc}")
        if code in _TIMEOUT:
            return ConnectorTimeout(f"the query ran longer than {timeout_s:g} s", internal_detail=detail)
        if code in _UNAVAILABLE or isinstance(exc, pymysql.err.InterfaceError | OSError):
            return ConnectorUnavailable("the MySQL/MariaDB database is not reachable", internal_detail=detail)
        return QueryRejected("the database rejected the query", internal_detail=detail)

    # -- the Connector protocol ------------------------------------------------------------------

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        if self._closed:
            raise ConnectorUnavailable("the MySQL/MariaDB connector is closed")
        if max_rows < 0:
            raise ValueError("max_rows must not be negative")
        if not self._slots.acquire(timeout=self._connect_timeout_s + timeout_s):
            raise ConnectorUnavailable("all MySQL/MariaDB connections are busy")
        try:
            try:
                conn = self._checkout()
            except (pymysql.Error, OSError) as exc:
                raise ConnectorUnavailable("the MySQL/MariaDB database is not reachable",
                                           internal_detail=self._scrub(f"{type(exc).__name__}: {exc}")
                                           ) from None
            reusable = False
            thread_id = conn.thread_id()
            watchdog = Watchdog(timeout_s + _WATCHDOG_GRACE_S, lambda: self._kill(thread_id))
            try:
                table, reusable = self._run(conn, sql, max_rows=max_rows, timeout_s=timeout_s,
                                            watchdog=watchdog)
            except (pymysql.Error, OSError) as exc:
                mapped = self._map_error(exc, timeout_s)
                reusable = not isinstance(mapped, ConnectorUnavailable) and conn.open
                if reusable:
                    with contextlib.suppress(Exception):
                        conn.rollback()
                raise mapped from None
            except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
                raise QueryRejected("the result could not be converted",
                                    internal_detail=self._scrub(str(exc))) from None
            finally:
                # a session the watchdog's KILL QUERY was sent to is never pooled again
                killed = watchdog.disarm()
                self._checkin(conn, reusable=reusable and not killed)
        finally:
            self._slots.release()
        truncated = table.num_rows > max_rows
        return QueryResult(table=table.slice(0, max_rows) if truncated else table, truncated=truncated)

    def _run(self, conn: pymysql.connections.Connection[Any], sql: str, *, max_rows: int, timeout_s: float,
             watchdog: Watchdog) -> tuple[pa.Table, bool]:
        with conn.cursor() as setup:
            if self._is_mariadb:
                setup.execute("SET SESSION max_statement_time = %s", (max(timeout_s, 0.001),))
            else:
                setup.execute("SET SESSION max_execution_time = %s", (max(1, int(timeout_s * 1000)),))
            setup.execute("START TRANSACTION READ ONLY")
        cursor = pymysql.cursors.SSCursor(conn)
        rows: list[tuple[Any, ...]] = []
        started = time.monotonic()
        watchdog.start()
        cursor.execute(sql)  # not "%"-formatted: no arguments are passed
        result = cursor._result
        fields = list(getattr(result, "fields", None) or [])
        if not fields:
            # not a query (DO, SET, ... INTO OUTFILE): nothing to return, and nothing we asked for
            cursor.close()
            conn.rollback()
            raise QueryRejected("the statement returned no result set")
        wanted = max_rows + 1
        while len(rows) < wanted:
            batch = cursor.fetchmany(min(self._batch_rows, wanted - len(rows)))
            if not batch:
                break
            rows.extend(batch)
        if len(rows) == wanted and result is not None and result.unbuffered_active:
            # with the rewriter's LIMIT max_rows + 1 this reads the end-of-result marker
            extra = cursor.fetchone()
            if extra is not None:
                rows.append(extra)
        pending = result is not None and bool(result.unbuffered_active)
        if pending:
            # more rows than we want: do not drain them over the wire, drop the session instead
            return _build_table(fields, rows), False
        cursor.close()
        conn.rollback()
        if time.monotonic() - started > timeout_s + _WATCHDOG_GRACE_S:
            # the watchdog's KILL QUERY may have cut the result short without an error
            raise ConnectorTimeout(f"the query ran longer than {timeout_s:g} s")
        return _build_table(fields, rows), True

    def stream(self, sql: str, *, max_rows: int, timeout_s: float) -> StreamResult:
        """Stream record batches of up to ``batch_rows`` rows from an unbuffered (SSCursor) result.

        The first batch is fetched here, so that errors in the statement surface before any data is
        handed on. The pooled session is held until the batches are exhausted, ``close()`` is called or
        the batches are garbage collected. A session whose result was not read to the end is never
        returned to the pool: its query is killed (``KILL QUERY`` from a second session) and the
        session closed. ``timeout_s`` bounds the whole stream, including the time the consumer spends
        between batches (the server's own limit counts that time as well).
        """
        if self._closed:
            raise ConnectorUnavailable("the MySQL/MariaDB connector is closed")
        if max_rows < 0:
            raise ValueError("max_rows must not be negative")
        started = time.monotonic()
        if not self._slots.acquire(timeout=self._connect_timeout_s + timeout_s):
            raise ConnectorUnavailable("all MySQL/MariaDB connections are busy")
        try:
            conn = self._checkout()
        except (pymysql.Error, OSError) as exc:
            self._slots.release()
            raise ConnectorUnavailable("the MySQL/MariaDB database is not reachable",
                                       internal_detail=self._scrub(f"{type(exc).__name__}: {exc}")) from None
        except BaseException:
            self._slots.release()
            raise
        session = _MySQLStream(self, conn, timeout_s=timeout_s, started=started)
        try:
            fields = session.open(sql)
            schema, converts = _columns(fields)
            first_rows, first_more = session.fetch(min(self._batch_rows, max_rows + 1))
            first = session.convert(schema, converts, first_rows)
            del first_rows
        except BaseException:
            session.release()
            raise

        def fetch_next(limit: int) -> tuple[pa.RecordBatch, bool]:
            rows, more = session.fetch(limit)
            return session.convert(schema, converts, rows), more

        # with the rewriter's LIMIT max_rows + 1, reading the end after a truncation keeps the session clean
        # for the pool
        return bounded_stream(first, first_more, fetch_next, max_rows=max_rows, batch_rows=self._batch_rows,
                              release=session.release, on_truncate=session.read_end)

    def close(self) -> None:
        self._closed = True
        while True:
            try:
                conn = self._idle.get_nowait()
            except queue.Empty:
                return
            with contextlib.suppress(Exception):
                conn.close()


class _MySQLStream:
    """The state of one streamed query: its pooled session, unbuffered cursor and deadline.

    ``fetch`` and ``release`` may be called from different threads; a lock keeps them apart (pymysql
    sessions are not thread-safe), and ``release`` kills a query that is still sending rows first.
    """

    def __init__(self, owner: MySQLConnector, conn: pymysql.connections.Connection[Any], *, timeout_s: float,
                 started: float) -> None:
        self._owner = owner
        self._conn = conn
        self._thread_id = conn.thread_id()
        self._timeout_s = timeout_s
        self._deadline = started + timeout_s
        self._cursor: pymysql.cursors.SSCursor | None = None
        self._lock = threading.Lock()
        self._released = False
        self._reusable = True  # False once an error or a kill may have left the session in doubt
        self._watchdog = Watchdog(timeout_s + _WATCHDOG_GRACE_S, lambda: owner._kill(self._thread_id))

    def _timed_out(self, detail: str = "") -> ConnectorTimeout:
        return ConnectorTimeout(f"the query ran longer than {self._timeout_s:g} s", internal_detail=detail)

    def _mapped(self, exc: Exception) -> Exception:
        mapped = self._owner._map_error(exc, self._timeout_s)
        if isinstance(mapped, ConnectorUnavailable) or not self._conn.open:
            self._reusable = False
        if isinstance(mapped, QueryRejected) and self._watchdog.fired:
            return self._timed_out(mapped.internal_detail)
        return mapped

    def _pending(self) -> bool:
        result = self._cursor._result if self._cursor is not None else None
        return result is not None and bool(result.unbuffered_active)

    def open(self, sql: str) -> list[Any]:
        """Set the time limit, start the READ ONLY transaction and send the query; its result fields."""
        owner = self._owner
        with self._lock:
            try:
                with self._conn.cursor() as setup:
                    if owner._is_mariadb:
                        setup.execute("SET SESSION max_statement_time = %s", (max(self._timeout_s, 0.001),))
                    else:
                        setup.execute("SET SESSION max_execution_time = %s", (max(1, int(self._timeout_s * 1000)),))
                    setup.execute("START TRANSACTION READ ONLY")
                self._cursor = pymysql.cursors.SSCursor(self._conn)
                self._watchdog.start()
                self._cursor.execute(sql)  # not "%"-formatted: no arguments are passed
            except (pymysql.Error, OSError) as exc:
                raise self._mapped(exc) from None
            fields = list(getattr(self._cursor._result, "fields", None) or [])
        if not fields:
            # not a query (DO, SET, ... INTO OUTFILE): nothing to return, and nothing we asked for
            raise QueryRejected("the statement returned no result set")
        return fields

    def fetch(self, size: int) -> tuple[list[tuple[Any, ...]], bool]:
        """Up to ``size`` rows, and whether the result may hold more."""
        with self._lock:
            if self._released or self._cursor is None:
                return [], False  # closed by the consumer: end quietly
            if time.monotonic() >= self._deadline:
                raise self._timed_out("deadline passed between batches")
            try:
                rows = list(self._cursor.fetchmany(size))
            except (pymysql.Error, OSError) as exc:
                raise self._mapped(exc) from None
            more = self._pending()
        if not more and self._watchdog.fired:
            # the watchdog's KILL QUERY may have cut the result short without an error
            self._reusable = False
            raise self._timed_out("the watchdog killed the query")
        return rows, more

    def read_end(self) -> None:
        """After ``max_rows + 1`` rows: read one more row, which is the end marker under a LIMIT."""
        with self._lock, contextlib.suppress(pymysql.Error, OSError):
            if not self._released and self._cursor is not None and self._pending():
                self._cursor.fetchone()

    def convert(self, schema: pa.Schema, converts: list[Callable[[Any], Any] | None],
                rows: list[tuple[Any, ...]]) -> pa.RecordBatch:
        try:
            return pa.RecordBatch.from_arrays(_arrays(schema, converts, rows), schema=schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise QueryRejected("the result could not be converted",
                                internal_detail=self._owner._scrub(str(exc))) from None

    def release(self) -> None:
        """Give the session back clean, or kill its query and close it (idempotent, any thread)."""
        if self._released:
            return
        if self._lock.locked():
            # a fetch is running in another thread: stop the query so that it returns promptly
            self._watchdog.fire_now()
            self._reusable = False
        with self._lock:
            if self._released:
                return
            self._released = True
        killed = self._watchdog.disarm()  # no KILL QUERY can land after this, on a later caller's query
        conn = self._conn
        try:
            if self._pending():
                # rows left unread: draining them could take long, and the session must not go back
                # to the pool with them; stop the query on the server and drop the session
                self._reusable = False
                self._owner._kill(self._thread_id)
                if self._cursor is not None and self._cursor._result is not None:
                    # or pymysql would try to drain the rest when the cursor is collected
                    self._cursor._result.unbuffered_active = False
            elif self._reusable and not killed and conn.open:
                try:
                    if self._cursor is not None:
                        self._cursor.close()
                    conn.rollback()
                except (pymysql.Error, OSError):
                    self._reusable = False
            self._owner._checkin(conn, reusable=self._reusable and not killed)
        finally:
            self._owner._slots.release()
