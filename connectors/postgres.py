"""PostgreSQL: psycopg 3 with a connection pool, one READ ONLY transaction per query.

Every query runs as

    BEGIN READ ONLY;
    SELECT set_config('statement_timeout', ..., true), set_config('search_path', ..., true), ...;
    DECLARE "gw_..." NO SCROLL CURSOR FOR <sql>;      -- extended protocol: exactly one statement
    FETCH FORWARD n FROM "gw_..."; ...                 -- until max_rows + 1 rows or the end
    ROLLBACK;

so nothing the query does can outlive it: settings are transaction-local and the transaction is
always rolled back. ``search_path`` is ``pg_catalog, <schema>, pg_temp``: built-in functions cannot be
shadowed by objects in the data schema, unqualified table names resolve to the schema (pg_catalog
holds only ``pg_*`` relations) and temporary objects are searched last.

Results are built as Arrow with explicit types from the column type OIDs, so a NUMERIC(10,2) is a
decimal128(10, 2), a DATE a date32 and NULLs stay NULL, whatever the first rows look like.

``execute()`` runs the FETCHes back to back and returns one table; ``stream()`` sends each FETCH only
when the consumer asks for the next record batch, holding the pooled connection (and its transaction)
until the stream ends or is closed. The only type decided from values, the scale of an unconstrained
NUMERIC, comes from all rows in ``execute()`` and from the first batch in ``stream()``.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pyarrow as pa
from psycopg import errors as pg_errors
from psycopg import sql as pg_sql
from psycopg.conninfo import conninfo_to_dict
from psycopg_pool import ConnectionPool, PoolTimeout

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

#: rows per FETCH (execute) and per Arrow record batch (stream)
_BATCH_ROWS = 10_000
_APPLICATION_NAME = "municipal-data-gateway"

#: sessions are created with these settings; the per-query ``set_config`` calls pin them again
_SESSION_OPTIONS = "-c DateStyle=ISO,YMD -c IntervalStyle=iso_8601 -c TimeZone=UTC -c extra_float_digits=1"

# Type OIDs (pg_type.oid) of the built-in types we map explicitly.
_OID_BOOL = 16
_OID_BYTEA = 17
_OID_NAME = 19
_OID_INT8 = 20
_OID_INT2 = 21
_OID_INT4 = 23
_OID_TEXT = 25
_OID_OID = 26
_OID_JSON = 114
_OID_FLOAT4 = 700
_OID_FLOAT8 = 701
_OID_BPCHAR = 1042
_OID_VARCHAR = 1043
_OID_DATE = 1082
_OID_TIME = 1083
_OID_TIMESTAMP = 1114
_OID_TIMESTAMPTZ = 1184
_OID_INTERVAL = 1186
_OID_NUMERIC = 1700
_OID_UUID = 2950
_OID_JSONB = 3802

_FIXED_TYPES: dict[int, pa.DataType] = {
    _OID_BOOL: pa.bool_(),
    _OID_BYTEA: pa.binary(),
    _OID_NAME: pa.string(),
    _OID_INT2: pa.int16(),
    _OID_INT4: pa.int32(),
    _OID_INT8: pa.int64(),
    _OID_OID: pa.int64(),
    _OID_TEXT: pa.string(),
    _OID_BPCHAR: pa.string(),
    _OID_VARCHAR: pa.string(),
    _OID_FLOAT4: pa.float32(),
    _OID_FLOAT8: pa.float64(),
    _OID_DATE: pa.date32(),
    _OID_TIME: pa.time64("us"),
    _OID_TIMESTAMP: pa.timestamp("us"),
    _OID_TIMESTAMPTZ: pa.timestamp("us", tz="UTC"),
    _OID_INTERVAL: pa.duration("us"),
}

#: SQLSTATE classes that mean "the server or the connection is not usable", not "bad query"
_UNAVAILABLE_CLASSES = ("08", "53", "57P", "58")


def _secrets_of(dsn: str) -> list[str]:
    """The password in ``dsn`` (URL or key=value form), to scrub it from any text we keep."""
    secrets: list[str] = []
    try:
        if "://" in dsn:
            password = urlsplit(dsn).password
            if password:
                secrets += [password, unquote(password)]
        else:
            value = conninfo_to_dict(dsn).get("password")
            if value:
                secrets.append(str(value))
    except (ValueError, psycopg.Error):
        pass
    return [s for s in secrets if s]


#: what to do about a DSN that does not parse: the usual cause is an unencoded character in the password
_DSN_HINT = ("expected postgresql://user:password@host:port/database or key=value pairs; percent-encode "
             "special characters in the user and password ('/' as %2F, '@' as %40, ':' as %3A)")
#: libpq quotes the value it could not parse ("Ge heim"): that value can be a piece of the password
_QUOTED = re.compile(r'"[^"]*"')


def _check_dsn(conninfo: str) -> None:
    """Refuse a DSN whose password would end up elsewhere (as the port, in the database name).

    ``postgresql://gw:Ge/heim@db/x`` parses as host ``gw``, port ``Ge`` and database ``heim@db/x``: libpq
    would then name the "port" in its errors and psycopg in its connection log. Raises ConnectorUnavailable
    with a message and detail that quote no part of the DSN.
    """
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.Error as exc:
        raise ConnectorUnavailable(f"the PostgreSQL DSN is not valid ({_DSN_HINT})",
                                   internal_detail=_QUOTED.sub('"***"', scrub_credentials(str(exc)).strip())
                                   ) from None
    ports = str(params.get("port") or "").split(",")
    if any(port.strip() and not port.strip().isdigit() for port in ports):
        raise ConnectorUnavailable(f"the PostgreSQL DSN is not valid: the port is not a number ({_DSN_HINT})")
    if "://" in conninfo and "@" in str(params.get("dbname") or ""):
        raise ConnectorUnavailable(f"the PostgreSQL DSN is not valid: an '@' after the host ({_DSN_HINT})")


def _normalise_dsn(dsn: str) -> str:
    for prefix in ("postgresql+psycopg://", "postgres+psycopg://"):
        if dsn.startswith(prefix):
            return "postgresql://" + dsn.removeprefix(prefix)
    return dsn


class _ColumnSpec:
    """How one result column becomes an Arrow array."""

    __slots__ = ("convert", "name", "type")

    def __init__(self, name: str, arrow_type: pa.DataType | None,
                 convert: Callable[[Any], Any] | None = None) -> None:
        self.name = name
        self.type = arrow_type  # None: unconstrained NUMERIC, decided from the values
        self.convert = convert


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _column_spec(column: Any) -> _ColumnSpec:
    oid = int(column.type_code)
    name = str(column.name)
    if oid == _OID_NUMERIC:
        precision, scale = column.precision, column.scale
        if precision is not None and scale is not None and 0 < precision <= 38:
            return _ColumnSpec(name, pa.decimal128(int(precision), int(scale)))
        if precision is not None and scale is not None and 38 < precision <= 76:
            return _ColumnSpec(name, pa.decimal256(int(precision), int(scale)))
        return _ColumnSpec(name, None)
    fixed = _FIXED_TYPES.get(oid)
    if fixed is not None:
        return _ColumnSpec(name, fixed)
    # json, jsonb, uuid, arrays, ranges, enums, ...: their text form, as DuckDB prints unknown types
    return _ColumnSpec(name, pa.string(), _as_text)


def _decimal_type(values: Sequence[Any]) -> pa.DataType:
    """The narrowest decimal type that holds every value of an unconstrained NUMERIC column."""
    int_digits = 1
    scale = 0
    for value in values:
        if not isinstance(value, Decimal) or not value.is_finite():
            continue
        _sign, digits, exponent = value.as_tuple()
        assert isinstance(exponent, int)
        scale = max(scale, -exponent)
        int_digits = max(int_digits, len(digits) + exponent)
    # like DuckDB's SUM(DECIMAL): the widest precision, the scale the values need
    if int_digits + scale <= 38:
        return pa.decimal128(38, scale)
    if int_digits + scale <= 76:
        return pa.decimal256(76, scale)
    return pa.float64()


def _arrays(specs: list[_ColumnSpec], rows: list[tuple[Any, ...]],
            types: Sequence[pa.DataType | None]) -> tuple[list[pa.Array], list[pa.Field]]:
    """One Arrow array per column; ``types[i]`` fixes an unconstrained NUMERIC column's type (None: infer)."""
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for index, spec in enumerate(specs):
        values = [row[index] for row in rows]
        if spec.convert is not None:
            values = [None if v is None else spec.convert(v) for v in values]
        arrow_type = spec.type if spec.type is not None else types[index]
        if arrow_type is None:
            arrow_type = _decimal_type(values)
        if pa.types.is_floating(arrow_type) and spec.type is None:
            values = [None if v is None else float(v) for v in values]
        arrays.append(pa.array(values, type=arrow_type))
        fields.append(pa.field(spec.name, arrow_type))
    return arrays, fields


def _build_table(specs: list[_ColumnSpec], rows: list[tuple[Any, ...]]) -> pa.Table:
    """All rows at once: an unconstrained NUMERIC column gets the largest scale of all its values."""
    arrays, fields = _arrays(specs, rows, [None] * len(specs))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def _build_batch(specs: list[_ColumnSpec], rows: list[tuple[Any, ...]], schema: pa.Schema | None) -> pa.RecordBatch:
    """One streamed batch. Without ``schema`` (the first batch) the types are inferred as in
    ``_build_table``; afterwards the first batch's schema is kept, so a later value of an unconstrained
    NUMERIC column that needs more fractional digits fails (ArrowInvalid) instead of being rounded."""
    types = [None] * len(specs) if schema is None else [f.type for f in schema]
    arrays, fields = _arrays(specs, rows, types)
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields) if schema is None else schema)


class PostgresConnector:
    """Read-only, time-limited queries on PostgreSQL; see the module docstring for the protocol."""

    dialect = "postgres"

    def __init__(self, dsn: str, *, schema: str | None = None, pool_min: int = 1, pool_max: int = 4,
                 connect_timeout_s: float = 5.0, batch_rows: int = _BATCH_ROWS,
                 reconnect_timeout_s: float | None = None) -> None:
        if pool_min < 0 or pool_max < 1 or pool_min > pool_max:
            raise ValueError("need 0 <= pool_min <= pool_max and pool_max >= 1")
        self._secrets = _secrets_of(dsn)
        self._schema = schema
        self._batch_rows = max(1, batch_rows)
        self._connect_timeout_s = connect_timeout_s
        search_path = None
        if schema is not None:
            search_path = "pg_catalog, " + pg_sql.Identifier(schema).as_string(None) + ", pg_temp"
        self._search_path = search_path
        self._closed = False
        self._lock = threading.Lock()
        conninfo = _normalise_dsn(dsn)
        _check_dsn(conninfo)  # before the pool starts connecting (and psycopg logging) with it
        self._pool = ConnectionPool(
            conninfo,
            min_size=pool_min,
            max_size=pool_max,
            open=False,
            name="gateway-postgres",
            timeout=connect_timeout_s,
            kwargs={
                "autocommit": False,
                "connect_timeout": max(1, round(connect_timeout_s)),
                "application_name": _APPLICATION_NAME,
                "options": _SESSION_OPTIONS,
                "client_encoding": "UTF8",
            },
            configure=self._configure,
            check=ConnectionPool.check_connection,
            # psycopg_pool retries a failed connection in the background with a growing delay (1, 2, 4,
            # ... s) until reconnect_timeout and then gives up that slot; a later query grows the pool
            # again at once. A long reconnect_timeout would leave queries waiting for the next retry long
            # after the database came back (measured: 10 s after a 20 s outage with 60 s), so the
            # default lets the background give up after one connect_timeout_s and the next query connect
            reconnect_timeout=connect_timeout_s if reconnect_timeout_s is None else reconnect_timeout_s,
        )
        # do not wait: the gateway may start while the database is still down; queries then fail
        # with ConnectorUnavailable and the pool reconnects in the background
        self._pool.open(wait=False)

    # -- helpers ---------------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return scrub_credentials(text)

    @staticmethod
    def _configure(conn: psycopg.Connection[Any]) -> None:
        conn.read_only = True  # every transaction on this connection starts as BEGIN READ ONLY

    def _map_error(self, exc: psycopg.Error, timeout_s: float) -> Exception:
        detail = self._scrub(f"{type(exc).__name__}: {exc}".strip())
        sqlstate = exc.sqlstate or ""
        if isinstance(exc, pg_errors.QueryCanceled):
            return ConnectorTimeout(f"the query ran longer than {timeout_s:g} s", internal_detail=detail)
        if (isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError)
                and not sqlstate) or sqlstate.startswith(_UNAVAILABLE_CLASSES):
            return ConnectorUnavailable("the PostgreSQL database is not reachable", internal_detail=detail)
        return QueryRejected("the database rejected the query", internal_detail=detail)

    # -- the Connector protocol ------------------------------------------------------------------

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        if self._closed:
            raise ConnectorUnavailable("the PostgreSQL connector is closed")
        if max_rows < 0:
            raise ValueError("max_rows must not be negative")
        timeout_ms = max(1, int(timeout_s * 1000))
        started = time.monotonic()
        try:
            with self._pool.connection(timeout=self._connect_timeout_s) as conn:
                table = self._run(conn, sql, max_rows=max_rows, timeout_ms=timeout_ms)
        except PoolTimeout as exc:
            raise ConnectorUnavailable(
                "the PostgreSQL database is not reachable (no connection within "
                f"{self._connect_timeout_s:g} s)", internal_detail=self._scrub(str(exc))) from None
        except psycopg.Error as exc:
            mapped = self._map_error(exc, timeout_s)
            if isinstance(mapped, QueryRejected) and time.monotonic() - started >= timeout_s:
                mapped = ConnectorTimeout(f"the query ran longer than {timeout_s:g} s",
                                          internal_detail=mapped.internal_detail)
            raise mapped from None
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise QueryRejected("the result could not be converted",
                                internal_detail=self._scrub(str(exc))) from None
        truncated = table.num_rows > max_rows
        return QueryResult(table=table.slice(0, max_rows) if truncated else table, truncated=truncated)

    def _begin(self, conn: psycopg.Connection[Any], timeout_ms: int) -> None:
        with conn.cursor() as setup:
            # BEGIN READ ONLY is sent implicitly (autocommit off, conn.read_only); all settings are
            # transaction-local, so the ROLLBACK at the end undoes anything the query might change
            setup.execute(
                "SELECT set_config('statement_timeout', %s, true),"
                " set_config('idle_in_transaction_session_timeout', %s, true),"
                " set_config('transaction_read_only', 'on', true),"
                " set_config('search_path', coalesce(%s, current_setting('search_path')), true)",
                (str(timeout_ms), str(timeout_ms + 5_000), self._search_path),
            )

    @staticmethod
    def _declare(conn: psycopg.Connection[Any], sql: str) -> psycopg.ServerCursor[Any]:
        cursor = conn.cursor(name=f"gw_{uuid.uuid4().hex}", scrollable=False, withhold=False)
        try:
            cursor.execute(sql)  # DECLARE ... CURSOR FOR <sql>, extended protocol: one statement
        except BaseException:
            with contextlib.suppress(psycopg.Error):
                cursor.close()
            raise
        return cursor

    def _run(self, conn: psycopg.Connection[Any], sql: str, *, max_rows: int, timeout_ms: int) -> pa.Table:
        try:
            self._begin(conn, timeout_ms)
            with self._declare(conn, sql) as cursor:
                description = cursor.description or []
                specs = [_column_spec(c) for c in description]
                rows: list[tuple[Any, ...]] = []
                wanted = max_rows + 1
                while len(rows) < wanted:
                    batch = cursor.fetchmany(min(self._batch_rows, wanted - len(rows)))
                    if not batch:
                        break
                    rows.extend(batch)
            return _build_table(specs, rows)
        finally:
            if not conn.closed:
                conn.rollback()

    def stream(self, sql: str, *, max_rows: int, timeout_s: float) -> StreamResult:
        """Stream record batches of up to ``batch_rows`` rows from a server-side cursor.

        The first batch is fetched here, so that errors in the statement surface before any data is
        handed on and the schema is known. The pooled connection (and its READ ONLY transaction) is
        held until the batches are exhausted, ``close()`` is called or the StreamResult is garbage
        collected; then the transaction is rolled back and the connection goes back to the pool.
        ``timeout_s`` bounds the whole stream, including the time the consumer spends between batches.
        """
        if self._closed:
            raise ConnectorUnavailable("the PostgreSQL connector is closed")
        if max_rows < 0:
            raise ValueError("max_rows must not be negative")
        started = time.monotonic()
        try:
            conn = self._pool.getconn(timeout=self._connect_timeout_s)
        except PoolTimeout as exc:
            raise ConnectorUnavailable(
                "the PostgreSQL database is not reachable (no connection within "
                f"{self._connect_timeout_s:g} s)", internal_detail=self._scrub(str(exc))) from None
        session = _PgStream(self, conn, timeout_s=timeout_s, started=started)
        try:
            session.open(sql)
            specs = [_column_spec(c) for c in session.description()]
            first_rows, first_more = session.fetch(min(self._batch_rows, max_rows + 1))
            first = session.convert(specs, first_rows, None)
        except BaseException:
            session.release()
            raise
        schema = first.schema

        def fetch_next(limit: int) -> tuple[pa.RecordBatch, bool]:
            rows, more = session.fetch(limit)
            return session.convert(specs, rows, schema), more

        return bounded_stream(first, first_more, fetch_next, max_rows=max_rows, batch_rows=self._batch_rows,
                              release=session.release)

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        self._pool.close()


class _PgStream:
    """The state of one streamed query: its pooled connection, server-side cursor and deadline.

    ``fetch`` and ``release`` may be called from different threads (a web server iterates the batches
    in a worker thread); a lock keeps a FETCH and the final ROLLBACK apart, and ``release`` first
    cancels a FETCH that is still running, so that it need not wait for it.
    """

    def __init__(self, owner: PostgresConnector, conn: psycopg.Connection[Any], *, timeout_s: float,
                 started: float) -> None:
        self._owner = owner
        self._conn = conn
        self._timeout_s = timeout_s
        self._started = started
        self._deadline = started + timeout_s
        self._cursor: psycopg.ServerCursor[Any] | None = None
        self._lock = threading.Lock()
        self._busy = False
        self._released = False
        # statement_timeout limits each statement (DECLARE, every FETCH); this watchdog cancels a FETCH
        # still running when the stream's time is up, and fetch() refuses to start one after it
        self._watchdog = Watchdog(timeout_s, self._cancel_if_busy)

    def _timed_out(self, detail: str = "") -> ConnectorTimeout:
        return ConnectorTimeout(f"the query ran longer than {self._timeout_s:g} s", internal_detail=detail)

    def _mapped(self, exc: psycopg.Error) -> Exception:
        mapped = self._owner._map_error(exc, self._timeout_s)
        if isinstance(mapped, QueryRejected) and time.monotonic() >= self._deadline:
            return self._timed_out(mapped.internal_detail)
        return mapped

    def _cancel_if_busy(self) -> bool:
        if not self._busy:
            return False
        self._conn.cancel_safe(timeout=2.0)
        return True

    def open(self, sql: str) -> None:
        timeout_ms = max(1, int(self._timeout_s * 1000))
        with self._lock:
            self._busy = True
            self._watchdog.start()
            try:
                self._owner._begin(self._conn, timeout_ms)
                self._cursor = self._owner._declare(self._conn, sql)
            except psycopg.Error as exc:
                raise self._mapped(exc) from None
            finally:
                self._busy = False

    def description(self) -> list[Any]:
        assert self._cursor is not None
        return list(self._cursor.description or [])

    def fetch(self, size: int) -> tuple[list[tuple[Any, ...]], bool]:
        """Up to ``size`` rows, and whether the cursor may hold more."""
        with self._lock:
            if self._released or self._cursor is None:
                return [], False  # closed by the consumer: end quietly
            if time.monotonic() >= self._deadline:
                raise self._timed_out("deadline passed between batches")
            self._busy = True
            try:
                rows = self._cursor.fetchmany(size)
            except psycopg.Error as exc:
                raise self._mapped(exc) from None
            finally:
                self._busy = False
        return rows, len(rows) == size

    def convert(self, specs: list[_ColumnSpec], rows: list[tuple[Any, ...]],
                schema: pa.Schema | None) -> pa.RecordBatch:
        try:
            return _build_batch(specs, rows, schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            detail = self._owner._scrub(str(exc))
            if schema is not None:
                detail += (" (a streamed result keeps the column types of its first batch; cast an "
                           "unconstrained NUMERIC to NUMERIC(p,s) in SQL)")
            raise QueryRejected("the result could not be converted", internal_detail=detail) from None

    def release(self) -> None:
        """Roll back and return the connection to the pool (idempotent, any thread)."""
        if self._released:
            return
        self._watchdog.fire_now()  # stops a FETCH still running in another thread
        with self._lock:
            if self._released:
                return
            self._released = True
        # a cancel request may still reach the server after this point: that session is not reused
        cancelled = self._watchdog.disarm()
        conn = self._conn
        try:
            if cancelled:
                conn.close()
            elif not conn.closed:
                conn.rollback()  # also closes the cursor (WITHOUT HOLD)
            if self._cursor is not None:
                self._cursor.close()
        except Exception:  # a broken connection: the pool replaces it
            with contextlib.suppress(Exception):
                conn.close()
        finally:
            with contextlib.suppress(Exception):
                self._owner._pool.putconn(conn)
