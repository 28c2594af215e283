"""Trino (optional): the ``trino`` client package, imported only when a Trino connector is built.

Trino runs the rewritten SQL (row filters, masks and limits already inside) across its workers; the
gateway reads the answer through the client's DB-API cursor, ``fetchmany`` by ``fetchmany``:

* ``stream()`` hands on Arrow record batches of at most ``batch_rows`` rows as the consumer asks for
  them; at most ``max_rows + 1`` rows are read (the extra row only sets ``truncated``), then the query
  is cancelled on the coordinator. ``execute()`` collects the same stream.
* Time: ``query_max_execution_time`` and ``query_max_run_time`` are set per query from ``timeout_s``
  (Trino ends the query itself), a watchdog cancels it from the client when the time passes, and
  ``timeout_s`` bounds the whole stream, including the time the consumer takes between batches.
* The session time zone is UTC, as on the other connectors (the retention filters use ``current_date``).
* Errors: ``EXCEEDED_TIME_LIMIT``/cancellation -> ConnectorTimeout; connection, HTTP and
  authentication failures and ``EXTERNAL`` errors (a data source behind Trino) -> ConnectorUnavailable;
  everything else -> QueryRejected. Trino's text is kept only in ``internal_detail``, with the
  password replaced by ``***``.

Trino has no per-session READ ONLY switch that the client could rely on: read-only access must be
enforced by Trino's access control (file-based rules that grant SELECT on the released tables only)
and by the privileges of the catalogs' own database users (docs/connectors.md, docs/examples/trino/).

No Trino can run on the build machines: ``tests/test_trino_connector.py`` tests this module against a
stand-in for ``trino.dbapi`` backed by DuckDB (its docstring says what that does and does not prove).
"""

from __future__ import annotations

import base64
import contextlib
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pyarrow as pa

from connectors.base import (
    ConnectorError,
    ConnectorTimeout,
    ConnectorUnavailable,
    QueryRejected,
    QueryResult,
    StreamResult,
    Watchdog,
    bounded_stream,
)

#: rows per fetchmany and per Arrow record batch
_BATCH_ROWS = 10_000
_SOURCE = "municipal-data-gateway"
_DEFAULT_PORTS = {"https": 8443, "http": 8080}
_DECIMAL_RE = re.compile(r"decimal\((\d+),\s*(\d+)\)")
_TIMESTAMP_RE = re.compile(r"timestamp(?:\((\d+)\))?( with time zone)?")
_TIMEOUT_ERRORS = {"EXCEEDED_TIME_LIMIT", "USER_CANCELED", "ADMINISTRATIVELY_KILLED"}
_UNAVAILABLE_ERRORS = {"NO_NODES_AVAILABLE", "SERVER_SHUTTING_DOWN", "SERVER_STARTING_UP",
                       "CLUSTER_OUT_OF_MEMORY", "TOO_MANY_REQUESTS_FAILED", "PAGE_TRANSPORT_TIMEOUT"}

_SIMPLE_TYPES: dict[str, pa.DataType] = {
    "boolean": pa.bool_(),
    "tinyint": pa.int8(),
    "smallint": pa.int16(),
    "integer": pa.int32(),
    "bigint": pa.int64(),
    "real": pa.float32(),
    "double": pa.float64(),
    "date": pa.date32(),
    "varbinary": pa.binary(),
}

Convert = Callable[[Any], Any]


def _load_client() -> Any:
    try:
        import trino.auth
        import trino.dbapi
        import trino.exceptions
    except ImportError:
        raise ConnectorUnavailable(
            "the Trino connector needs the 'trino' Python package, which is not installed; "
            "install it (pip install 'municipal-data-gateway[trino]') or use another connector kind"
        ) from None
    return trino


# --------------------------------------------------------------------------------------------------
# Settings: the catalog entry and the DSN (the only place a password may come from)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrinoSettings:
    """Where and as whom to connect; ``password`` is never shown by ``repr``."""

    host: str
    port: int
    user: str
    catalog: str
    schema: str
    password: str | None = field(default=None, repr=False)
    http_scheme: str = "https"
    tls_ca_file: str | None = None


def _parse_dsn(dsn: str) -> dict[str, Any]:
    """``trino://user[:password]@host[:port]/catalog/schema``; errors never quote the DSN."""
    hint = "percent-encode '@', ':', '/', '?' and '#' in the user name and password"
    try:
        parts = urlsplit(dsn.strip())
        port = parts.port
    except ValueError:
        raise ValueError(f"the Trino DSN is not a valid URL ({hint})") from None
    if parts.scheme != "trino":
        raise ValueError("the Trino DSN must start with trino://")
    if parts.query or parts.fragment:
        raise ValueError(f"the Trino DSN takes no query string or fragment: set http_scheme and tls_ca_file "
                         f"in the catalog ({hint})")
    if "@" in parts.path:
        raise ValueError(f"the Trino DSN has an '@' after the host ({hint})")
    segments = [unquote(s) for s in parts.path.split("/") if s]
    if len(segments) > 2:
        raise ValueError(f"the Trino DSN's path must be /catalog/schema ({hint})")
    return {
        "host": parts.hostname or None,
        "port": port,
        "user": unquote(parts.username) if parts.username else None,
        "password": unquote(parts.password) if parts.password else None,
        "catalog": segments[0] if segments else None,
        "schema": segments[1] if len(segments) > 1 else None,
    }


def trino_settings(dsn: str | None, *, host: str | None = None, port: int | None = None,
                   user: str | None = None, catalog: str | None = None, schema: str | None = None,
                   http_scheme: str | None = None, tls_ca_file: str | None = None) -> TrinoSettings:
    """Combine the catalog's connector entry with the DSN (from ``dsn_env``/``dsn_file``).

    Host, port, user, catalog and schema may be set in either place; set in both, they must agree.
    The password can only come from the DSN. A password is only ever sent over HTTPS.
    """
    from_dsn = _parse_dsn(dsn) if dsn else {}
    configured: dict[str, Any] = {"host": host, "port": port, "user": user, "catalog": catalog, "schema": schema}
    merged: dict[str, Any] = {}
    for key, value in configured.items():
        other = from_dsn.get(key)
        if value is not None and other is not None and value != other:
            raise ValueError(f"{key} differs between the catalog entry and the DSN; set it in one place")
        merged[key] = value if value is not None else other
    missing = [key for key in ("host", "user", "catalog", "schema") if not merged[key]]
    if missing:
        raise ValueError(f"{', '.join(missing)} missing: set them in the catalog's connector entry or the DSN")
    scheme = http_scheme or "https"
    if scheme not in _DEFAULT_PORTS:
        raise ValueError("http_scheme must be https or http")
    password = from_dsn.get("password")
    if password and scheme != "https":
        raise ValueError("a password is only sent over HTTPS: set http_scheme: https or drop the password")
    return TrinoSettings(host=merged["host"], port=int(merged["port"] or _DEFAULT_PORTS[scheme]),
                         user=merged["user"], catalog=merged["catalog"], schema=merged["schema"],
                         password=password, http_scheme=scheme, tls_ca_file=tls_ca_file)


# --------------------------------------------------------------------------------------------------
# Types: Trino's type names (the DB-API description) -> Arrow
# --------------------------------------------------------------------------------------------------


def _as_decimal(value: Any) -> Decimal:
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _as_text(value: Any) -> str:
    return value if isinstance(value, str) else str(value)


def _arrow_type(type_name: str) -> tuple[pa.DataType, Convert | None]:
    name = type_name.lower().strip()
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name], None
    if name.startswith(("varchar", "char")):
        return pa.string(), None
    match = _DECIMAL_RE.fullmatch(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        arrow = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        return arrow, _as_decimal
    match = _TIMESTAMP_RE.fullmatch(name)
    if match:
        precision = int(match.group(1) or 3)
        unit = "ms" if precision <= 3 else "us" if precision <= 6 else "ns"
        return pa.timestamp(unit, tz="UTC" if match.group(2) else None), None
    # time, interval, json, array, map, row, uuid, ipaddress, ...: their text form
    return pa.string(), _as_text


def _columns(description: list[Any]) -> tuple[pa.Schema, list[Convert | None]]:
    fields: list[pa.Field] = []
    converts: list[Convert | None] = []
    for column in description:
        arrow_type, convert = _arrow_type(str(column[1]))
        fields.append(pa.field(str(column[0]), arrow_type))
        converts.append(convert)
    return pa.schema(fields), converts


def _build_batch(schema: pa.Schema, converts: list[Convert | None], rows: list[Any]) -> pa.RecordBatch:
    arrays: list[pa.Array] = []
    for index, (column, convert) in enumerate(zip(schema, converts, strict=True)):
        values = [row[index] for row in rows]
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
        arrays.append(pa.array(values, type=column.type))
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


# --------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------


def _attribute(exc: BaseException, name: str) -> str:
    """An attribute of a client exception (some of its properties fail on odd payloads)."""
    try:
        return str(getattr(exc, name, None) or "")
    except Exception:
        return ""


def _describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # trino's TrinoQueryError.__str__ fails when built from a plain string
        text = " ".join(str(arg) for arg in exc.args)
    return f"{type(exc).__name__}: {text}"


class TrinoConnector:
    """Read-only (by Trino access control), time-limited, streamed queries on Trino."""

    dialect = "trino"

    def __init__(self, host: str, port: int, user: str, catalog: str, schema: str, *,
                 password: str | None = None, http_scheme: str = "https", verify: bool | str = True,
                 request_timeout_s: float = 30.0, batch_rows: int = _BATCH_ROWS) -> None:
        self._client = _load_client()  # fails early, with a clear message, if the package is missing
        self._host = host
        self._port = port
        self._user = user
        self._catalog = catalog
        self._schema = schema
        self._password = password
        self._http_scheme = http_scheme
        self._verify = verify
        self._request_timeout_s = request_timeout_s
        self._batch_rows = max(1, batch_rows)
        self._secrets = self._secret_forms(user, password)
        self._closed = False

    @classmethod
    def from_settings(cls, settings: TrinoSettings, **options: Any) -> TrinoConnector:
        return cls(settings.host, settings.port, settings.user, settings.catalog, settings.schema,
                   password=settings.password, http_scheme=settings.http_scheme,
                   verify=settings.tls_ca_file or True, **options)

    @staticmethod
    def _secret_forms(user: str, password: str | None) -> list[str]:
        """The password as it may appear in text: plain, percent-encoded, inside a Basic auth header."""
        if not password:
            return []
        basic = base64.b64encode(f"{user}:{password}".encode()).decode()
        return sorted({password, quote(password, safe=""), basic}, key=len, reverse=True)

    def _scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def _connect(self, timeout_s: float) -> Any:
        client = self._client
        auth = None
        if self._password is not None:
            auth = client.auth.BasicAuthentication(self._user, self._password)
        limit = f"{max(1, int(timeout_s + 0.999))}s"
        return client.dbapi.connect(
            host=self._host,
            port=self._port,
            user=self._user,
            catalog=self._catalog,
            schema=self._schema,
            http_scheme=self._http_scheme,
            auth=auth,
            verify=self._verify,
            source=_SOURCE,
            timezone="UTC",
            legacy_primitive_types=False,
            request_timeout=self._request_timeout_s,
            session_properties={"query_max_execution_time": limit, "query_max_run_time": limit},
        )

    def _map_error(self, exc: BaseException, timeout_s: float, *, timed_out: bool) -> ConnectorError:
        exceptions = self._client.exceptions
        detail = self._scrub(_describe(exc))
        error_name = _attribute(exc, "error_name")
        if timed_out or error_name in _TIMEOUT_ERRORS:
            return ConnectorTimeout(f"the query ran longer than {timeout_s:g} s", internal_detail=detail)
        # OperationalError: connection and authentication failures, HTTP errors while fetching, and
        # TrinoExternalError (a data source behind Trino failed)
        if error_name in _UNAVAILABLE_ERRORS or isinstance(
                exc, exceptions.OperationalError | exceptions.HttpError | OSError):
            return ConnectorUnavailable("the Trino cluster is not reachable", internal_detail=detail)
        return QueryRejected("the database rejected the query", internal_detail=detail)

    # -- the Connector protocol ------------------------------------------------------------------

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        """The whole answer (at most ``max_rows`` rows): ``stream()`` collected."""
        source = self.stream(sql, max_rows=max_rows, timeout_s=timeout_s)
        try:
            batches = list(source.batches)
        finally:
            source.close()
        return QueryResult(table=pa.Table.from_batches(batches, schema=source.schema), truncated=source.truncated)

    def stream(self, sql: str, *, max_rows: int, timeout_s: float) -> StreamResult:
        """Stream record batches of up to ``batch_rows`` rows.

        The first batch is fetched here, so that errors in the statement surface before any data is
        handed on and the schema is known. The query runs until the batches are exhausted, ``close()``
        is called or the StreamResult is garbage collected; a query whose answer was not read to the end
        is cancelled on the coordinator. ``timeout_s`` bounds the whole stream.
        """
        if self._closed:
            raise ConnectorUnavailable("the Trino connector is closed")
        if max_rows < 0:
            raise ValueError("max_rows must not be negative")
        session = _TrinoStream(self, timeout_s=timeout_s, started=time.monotonic())
        try:
            session.open(sql)
            first_rows, first_more = session.fetch(min(self._batch_rows, max_rows + 1))
            schema, converts = session.columns()
            first = session.convert(schema, converts, first_rows)
            del first_rows
        except BaseException:
            session.release()
            raise

        def fetch_next(limit: int) -> tuple[pa.RecordBatch, bool]:
            rows, more = session.fetch(limit)
            return session.convert(schema, converts, rows), more

        return bounded_stream(first, first_more, fetch_next, max_rows=max_rows, batch_rows=self._batch_rows,
                              release=session.release)

    def close(self) -> None:
        self._closed = True


class _TrinoStream:
    """The state of one streamed query: its connection, cursor, deadline and watchdog.

    ``fetch`` and ``release`` may be called from different threads (a web server iterates the batches
    in a worker thread); a lock keeps them apart, and ``release`` first cancels a fetch that is still
    waiting for the coordinator. A Trino cancel names one query (not a session), so a late cancel
    cannot reach anyone else's query.
    """

    def __init__(self, owner: TrinoConnector, *, timeout_s: float, started: float) -> None:
        self._owner = owner
        self._timeout_s = timeout_s
        self._deadline = started + timeout_s
        self._conn: Any = None
        self._cursor: Any = None
        self._lock = threading.Lock()
        self._released = False
        self._exhausted = False
        self._watchdog = Watchdog(timeout_s, self._cancel)

    def _cancel(self) -> bool:
        cursor = self._cursor
        if cursor is None or self._exhausted:
            return False
        cursor.cancel()
        return True

    def _timed_out(self) -> bool:
        return self._watchdog.fired or time.monotonic() >= self._deadline

    def _mapped(self, exc: BaseException) -> ConnectorError:
        return self._owner._map_error(exc, self._timeout_s, timed_out=self._timed_out())

    def open(self, sql: str) -> None:
        """Connect (one HTTP session per query) and submit the statement."""
        with self._lock:
            try:
                self._conn = self._owner._connect(self._timeout_s)
                self._cursor = self._conn.cursor()
                self._watchdog.start()
                self._cursor.execute(sql)
            except ConnectorError:
                raise
            except Exception as exc:
                raise self._mapped(exc) from None

    def columns(self) -> tuple[pa.Schema, list[Convert | None]]:
        description = self._cursor.description if self._cursor is not None else None
        if not description:
            raise QueryRejected("the statement returned no result set")
        return _columns(list(description))

    def fetch(self, size: int) -> tuple[list[Any], bool]:
        """Up to ``size`` rows, and whether the query may have more."""
        with self._lock:
            if self._released or self._cursor is None:
                return [], False  # closed by the consumer: end quietly
            if time.monotonic() >= self._deadline:
                raise ConnectorTimeout(f"the query ran longer than {self._timeout_s:g} s",
                                       internal_detail="deadline passed between batches")
            try:
                rows = list(self._cursor.fetchmany(size))
            except Exception as exc:
                raise self._mapped(exc) from None
            self._exhausted = len(rows) < size
        if self._exhausted and self._watchdog.fired:
            # a cancel may have cut the answer short without an error
            raise ConnectorTimeout(f"the query ran longer than {self._timeout_s:g} s",
                                   internal_detail="the watchdog cancelled the query")
        return rows, not self._exhausted

    def convert(self, schema: pa.Schema, converts: list[Convert | None], rows: list[Any]) -> pa.RecordBatch:
        try:
            return _build_batch(schema, converts, rows)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ArithmeticError, ValueError) as exc:
            raise QueryRejected("the result could not be converted",
                                internal_detail=self._owner._scrub(_describe(exc))) from None

    def release(self) -> None:
        """Cancel a query whose answer was not read to the end and close the connection (idempotent)."""
        if self._released:
            return
        if self._lock.locked():
            self._watchdog.fire_now()  # a fetch is waiting in another thread: stop the query
        with self._lock:
            if self._released:
                return
            self._released = True
        self._watchdog.disarm()
        if self._cursor is not None and not self._exhausted:
            with contextlib.suppress(Exception):
                self._cursor.cancel()
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
