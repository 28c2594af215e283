"""Trino (optional): the ``trino`` client package, imported only when a Trino connector is built.

Trino has no per-session READ ONLY switch that the client could rely on: read-only access must be
enforced by Trino's access control (a role or file-based rule that grants SELECT only) and by the
privileges of the connector's user in the underlying catalogs. The gateway's side of the bargain:

* ``query_max_execution_time`` and ``query_max_run_time`` are set per query from ``timeout_s``, and
  the query is cancelled from the client as well when the limit passes;
* at most ``max_rows + 1`` rows are fetched, then the query is cancelled;
* errors are mapped like the other connectors: ``EXCEEDED_TIME_LIMIT``/cancellation ->
  ConnectorTimeout, connection and HTTP failures -> ConnectorUnavailable, everything else ->
  QueryRejected, with Trino's text only in ``internal_detail``.

The connector is not exercised against a live Trino in this repository (no Trino can run on the
build machines); ``tests/test_conformance.py`` checks that the rewritten SQL is valid Trino SQL.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pyarrow as pa

from connectors.base import ConnectorTimeout, ConnectorUnavailable, QueryRejected, QueryResult

_BATCH_ROWS = 5_000
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


def _load_client() -> Any:
    try:
        import trino.dbapi
        import trino.exceptions
    except ImportError:
        raise ConnectorUnavailable(
            "the Trino connector needs the 'trino' Python package, which is not installed; "
            "install it (pip install trino) or use another connector kind"
        ) from None
    return trino


def _arrow_type(type_name: str) -> tuple[pa.DataType, Callable[[Any], Any] | None]:
    name = type_name.lower().strip()
    if name in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[name], None
    if name.startswith(("varchar", "char")):
        return pa.string(), None
    match = _DECIMAL_RE.fullmatch(name)
    if match:
        precision, scale = int(match.group(1)), int(match.group(2))
        arrow = pa.decimal128(precision, scale) if precision <= 38 else pa.decimal256(precision, scale)
        return arrow, lambda v: v if isinstance(v, Decimal) else Decimal(str(v))
    match = _TIMESTAMP_RE.fullmatch(name)
    if match:
        precision = int(match.group(1) or 3)
        unit = "ms" if precision <= 3 else "us" if precision <= 6 else "ns"
        return pa.timestamp(unit, tz="UTC" if match.group(2) else None), None
    # time, interval, json, array, map, row, uuid, ipaddress, ...: their text form
    return pa.string(), lambda v: v if isinstance(v, str) else str(v)


def _build_table(description: list[Any], rows: list[Any]) -> pa.Table:
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    for index, column in enumerate(description):
        arrow_type, convert = _arrow_type(str(column[1]))
        values = [row[index] for row in rows]
        if convert is not None:
            values = [None if v is None else convert(v) for v in values]
        arrays.append(pa.array(values, type=arrow_type))
        fields.append(pa.field(str(column[0]), arrow_type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


class TrinoConnector:
    """Read-only (by Trino access control), time-limited queries on Trino."""

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
        self._closed = False

    def _scrub(self, text: str) -> str:
        return text.replace(self._password, "***") if self._password else text

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
            source="municipal-data-gateway",
            request_timeout=self._request_timeout_s,
            session_properties={"query_max_execution_time": limit, "query_max_run_time": limit},
        )

    def _map_error(self, exc: Exception, timeout_s: float, elapsed_s: float) -> Exception:
        exceptions = self._client.exceptions
        detail = self._scrub(f"{type(exc).__name__}: {exc}")
        error_name = str(getattr(exc, "error_name", "") or "")
        if error_name in _TIMEOUT_ERRORS or (isinstance(exc, exceptions.TrinoQueryError)
                                             and elapsed_s >= timeout_s):
            return ConnectorTimeout(f"the query ran longer than {timeout_s:g} s", internal_detail=detail)
        if error_name in _UNAVAILABLE_ERRORS or isinstance(
                exc, exceptions.TrinoConnectionError | exceptions.HttpError | OSError):
            return ConnectorUnavailable("the Trino cluster is not reachable", internal_detail=detail)
        return QueryRejected("the database rejected the query", internal_detail=detail)

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        if self._closed:
            raise ConnectorUnavailable("the Trino connector is closed")
        started = time.monotonic()
        conn = None
        cursor = None
        timer: threading.Timer | None = None
        try:
            conn = self._connect(timeout_s)
            cursor = conn.cursor()
            timer = threading.Timer(timeout_s, cursor.cancel)
            timer.start()
            cursor.execute(sql)
            rows: list[Any] = []
            wanted = max_rows + 1
            while len(rows) < wanted:
                batch = cursor.fetchmany(min(self._batch_rows, wanted - len(rows)))
                if not batch:
                    break
                rows.extend(batch)
            table = _build_table(list(cursor.description or []), rows)
            if len(rows) >= wanted:
                with contextlib.suppress(Exception):
                    cursor.cancel()
        except ConnectorUnavailable:
            raise
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError) as exc:
            raise QueryRejected("the result could not be converted", internal_detail=self._scrub(str(exc))
                                ) from None
        except Exception as exc:
            raise self._map_error(exc, timeout_s, time.monotonic() - started) from None
        finally:
            if timer is not None:
                timer.cancel()
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
        truncated = table.num_rows > max_rows
        return QueryResult(table=table.slice(0, max_rows) if truncated else table, truncated=truncated)

    def close(self) -> None:
        self._closed = True
