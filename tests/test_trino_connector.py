"""The Trino connector and the Trino SQL the rewriter writes, tested without a Trino server.

**Trino cannot run on these machines** (no JVM cluster, no container engine). What stands in for it:

* ``StandIn`` replaces only ``trino.dbapi.connect``. Its connection and cursor implement the DB-API
  surface the connector uses (``cursor``/``execute``/``description``/``fetchmany``/``cancel``/
  ``close``). ``execute`` transpiles the Trino SQL the connector sends to DuckDB with sqlglot and runs
  it on a real DuckDB database, so every row, type and NULL is real data; ``cancel`` interrupts the
  running DuckDB statement. DuckDB errors come back as the client's real exception classes with
  Trino's error names. The ``trino`` package itself is real: its ``auth`` and ``exceptions`` modules
  are used unchanged.
* The last tests run the real client (no stand-in) against a closed port and against a local HTTP
  endpoint that answers 401: connection failures and HTTP errors as the client really raises them.

What this proves: the connector's streaming (bounded batches, lazy fetching, ``max_rows + 1``
truncation and the cancel after it), its time limit (watchdog cancel, deadline between batches), its
error mapping and scrubbing, the session properties and authentication it hands to the client, the
catalog/DSN configuration, and that the rewritten Trino SQL carries the row filter, the retention
filter and the masks and gives the same answer as the DuckDB plan *as sqlglot understands Trino SQL*.

What it does not prove: that a real coordinator accepts the SQL and computes the same values (Trino's
own functions, e.g. the text form of ``CAST(x AS VARCHAR)``), the client's HTTP protocol against a
real server (paging, retries, the cancel's DELETE), the type names a real coordinator reports for
each catalog, and the file-based access control of docs/examples/trino/. Those need a live Trino
(docker compose --profile trino, docs/connectors.md).
"""

from __future__ import annotations

import http.server
import re
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest
import sqlglot
import trino.auth
import trino.dbapi
import trino.exceptions
from sqlglot import exp
from sqlglot.errors import ErrorLevel

from connectors.base import ConnectorError, ConnectorTimeout, ConnectorUnavailable, QueryRejected
from connectors.trino import TrinoConnector, TrinoSettings, trino_settings
from gateway.catalog import Catalog, load_catalog
from gateway.config import Settings
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import load_bundle
from gateway.runtime import build_connectors
from tests.test_conformance import USERS, _plan

ROOT = Path(__file__).resolve().parents[1]
SECRET = "Tr1no/Pw@" + "x7#q"  # characters that must be percent-encoded in a DSN
SECRET_IN_DSN = "Tr1no%2FPw%40x7%23q"
ROWS = 25


# --------------------------------------------------------------------------------------------------
# The stand-in for trino.dbapi (see the module docstring)
# --------------------------------------------------------------------------------------------------

_TRINO_TYPE_NAMES = {
    "BIGINT": "bigint", "INTEGER": "integer", "SMALLINT": "smallint", "BOOLEAN": "boolean",
    "DOUBLE": "double", "FLOAT": "real", "DATE": "date", "VARCHAR": "varchar", "BLOB": "varbinary",
    "TIMESTAMP": "timestamp(6)", "TIMESTAMP WITH TIME ZONE": "timestamp(6) with time zone",
}


def _trino_type_name(duckdb_type: str) -> str:
    """The type name a Trino coordinator reports for a DuckDB result type (unknown ones fail the test)."""
    decimal = re.fullmatch(r"DECIMAL\((\d+),(\d+)\)", duckdb_type)
    if decimal:
        return f"decimal({decimal.group(1)},{decimal.group(2)})"
    return _TRINO_TYPE_NAMES[duckdb_type]


def _trino_error(name: str, error_type: str, message: str) -> trino.exceptions.TrinoQueryError:
    payload = {"errorName": name, "errorType": error_type, "message": message}
    if error_type == "USER_ERROR":
        return trino.exceptions.TrinoUserError(payload, "20250101_000000_00001_gwtst")
    if error_type == "EXTERNAL":
        return trino.exceptions.TrinoExternalError(payload, "20250101_000000_00001_gwtst")
    return trino.exceptions.TrinoQueryError(payload, "20250101_000000_00001_gwtst")


@dataclass
class Calls:
    connects: list[dict[str, Any]] = field(default_factory=list)
    statements: list[str] = field(default_factory=list)
    fetch_sizes: list[int] = field(default_factory=list)
    rows_sent: int = 0
    cancels: int = 0
    closes: int = 0


class StandInCursor:
    def __init__(self, stand_in: StandIn) -> None:
        self._stand_in = stand_in
        self._duck: duckdb.DuckDBPyConnection | None = None
        # (name, type_code, ...) as the client's ColumnDescription; its type_code is Trino's type name
        self.description: list[tuple[str, str, None, None, None, None, None]] | None = None

    def execute(self, sql: str) -> StandInCursor:
        stand_in = self._stand_in
        stand_in.calls.statements.append(sql)
        if stand_in.fail_on_execute is not None:
            raise stand_in.fail_on_execute
        try:
            duck_sql = sqlglot.transpile(sql, read="trino", write="duckdb", unsupported_level=ErrorLevel.RAISE)[0]
        except sqlglot.errors.SqlglotError as exc:
            raise _trino_error("SYNTAX_ERROR", "USER_ERROR", str(exc)) from None
        self._duck = stand_in.db.cursor()
        try:
            self._duck.execute(duck_sql)
        except duckdb.InterruptException:
            raise _trino_error("USER_CANCELED", "USER_ERROR", "Query was canceled") from None
        except duckdb.CatalogException as exc:
            raise _trino_error("TABLE_NOT_FOUND", "USER_ERROR", str(exc)) from None
        except duckdb.Error as exc:
            raise _trino_error("GENERIC_USER_ERROR", "USER_ERROR", str(exc)) from None
        self.description = [(name, _trino_type_name(str(kind)), None, None, None, None, None)
                            for name, kind, *_ in self._duck.description or []]
        return self

    def fetchmany(self, size: int) -> list[list[Any]]:
        stand_in = self._stand_in
        stand_in.calls.fetch_sizes.append(size)
        failure = stand_in.fail_on_fetch.get(len(stand_in.calls.fetch_sizes))
        if failure is not None:
            raise failure
        assert self._duck is not None, "fetchmany before execute"
        rows = [list(row) for row in self._duck.fetchmany(size)]
        stand_in.calls.rows_sent += len(rows)
        return rows

    def cancel(self) -> None:
        self._stand_in.calls.cancels += 1
        if self._duck is not None:
            self._duck.interrupt()


class StandInConnection:
    def __init__(self, stand_in: StandIn) -> None:
        self._stand_in = stand_in

    def cursor(self) -> StandInCursor:
        return StandInCursor(self._stand_in)

    def close(self) -> None:
        self._stand_in.calls.closes += 1


class StandIn:
    """``trino.dbapi.connect`` backed by a DuckDB database; records what the connector asked for."""

    def __init__(self, db: duckdb.DuckDBPyConnection) -> None:
        self.db = db
        self.calls = Calls()
        self.fail_on_execute: BaseException | None = None
        self.fail_on_fetch: dict[int, BaseException] = {}  # n-th fetchmany call (1-based) -> error

    def connect(self, **kwargs: Any) -> StandInConnection:
        self.calls.connects.append(kwargs)
        return StandInConnection(self)


@pytest.fixture
def db() -> Iterator[duckdb.DuckDBPyConnection]:
    conn = duckdb.connect(":memory:", config={"threads": "1"})
    conn.execute(f"CREATE TABLE zahlen AS SELECT range::BIGINT AS n FROM range(1, {ROWS + 1})")
    conn.execute("CREATE TABLE gross AS SELECT range::BIGINT AS n FROM range(60000)")  # ~20 s uncancelled
    conn.execute("CREATE TABLE typen (id BIGINT, betrag DECIMAL(10,2), tag DATE, zeit TIMESTAMP, name VARCHAR, "
                 "daten BLOB, ok BOOLEAN)")
    conn.execute("INSERT INTO typen VALUES (1, 12.50, DATE '2024-02-29', TIMESTAMP '2024-01-01 10:00:01.5', "
                 "'Heßloch', 'ab'::BLOB, true), (2, NULL, NULL, NULL, NULL, NULL, NULL)")
    yield conn
    conn.close()


@pytest.fixture
def stand_in(db: duckdb.DuckDBPyConnection, monkeypatch: pytest.MonkeyPatch) -> StandIn:
    fake = StandIn(db)
    monkeypatch.setattr(trino.dbapi, "connect", fake.connect)
    return fake


def _connector(batch_rows: int = 10) -> TrinoConnector:
    return TrinoConnector("trino.stadt.example", 8443, "gateway", "melde", "demo", password=SECRET,
                          batch_rows=batch_rows)


def _assert_no_secret(error: BaseException) -> None:
    texts = [str(error), repr(error), *map(str, error.args), getattr(error, "internal_detail", "")]
    for text in texts:
        assert SECRET not in text and SECRET_IN_DSN not in text, text


# --------------------------------------------------------------------------------------------------
# Streaming, truncation, types
# --------------------------------------------------------------------------------------------------


def test_stream_reads_lazily_in_bounded_batches(stand_in: StandIn) -> None:
    source = _connector(batch_rows=10).stream("SELECT n FROM zahlen ORDER BY n", max_rows=100, timeout_s=30)
    assert stand_in.calls.rows_sent == 10, "stream() must read only the first batch before it returns"
    sizes = [batch.num_rows for batch in source.batches]
    assert sizes == [10, 10, 5]
    assert not source.truncated
    assert all(size <= 10 for size in stand_in.calls.fetch_sizes)
    assert stand_in.calls.cancels == 0, "an answer read to the end needs no cancel"
    assert stand_in.calls.closes == 1


def test_truncates_after_max_rows_plus_one_and_cancels(stand_in: StandIn) -> None:
    source = _connector(batch_rows=5).stream("SELECT n FROM zahlen ORDER BY n", max_rows=12, timeout_s=30)
    table = pa.Table.from_batches(list(source.batches), schema=source.schema)
    assert table.column("n").to_pylist() == list(range(1, 13))
    assert source.truncated
    assert stand_in.calls.rows_sent == 13, "exactly max_rows + 1 rows are read"
    assert stand_in.calls.cancels == 1, "the rest of the answer is cancelled on the coordinator"
    assert stand_in.calls.closes == 1


def test_exactly_max_rows_is_not_truncated(stand_in: StandIn) -> None:
    result = _connector(batch_rows=5).execute("SELECT n FROM zahlen", max_rows=ROWS, timeout_s=30)
    assert result.table.num_rows == ROWS
    assert not result.truncated
    assert stand_in.calls.cancels == 0


def test_execute_collects_the_stream(stand_in: StandIn) -> None:
    result = _connector(batch_rows=4).execute("SELECT n FROM zahlen WHERE n > 20 ORDER BY n", max_rows=3,
                                              timeout_s=30)
    assert result.table.column("n").to_pylist() == [21, 22, 23]
    assert result.truncated
    assert stand_in.calls.fetch_sizes == [4], "max_rows + 1 = 4 rows in one fetch"


def test_types_and_nulls(stand_in: StandIn) -> None:
    result = _connector().execute("SELECT id, betrag, tag, zeit, name, daten, ok FROM typen ORDER BY id",
                                  max_rows=10, timeout_s=30)
    assert result.table.schema == pa.schema([
        ("id", pa.int64()), ("betrag", pa.decimal128(10, 2)), ("tag", pa.date32()), ("zeit", pa.timestamp("us")),
        ("name", pa.string()), ("daten", pa.binary()), ("ok", pa.bool_()),
    ])
    rows = result.table.to_pylist()
    assert rows[0]["betrag"] == Decimal("12.50") and rows[0]["name"] == "Heßloch" and rows[0]["daten"] == b"ab"
    assert rows[0]["zeit"].microsecond == 500000
    assert set(rows[1].values()) == {2, None}


def test_empty_answer_keeps_its_schema(stand_in: StandIn) -> None:
    result = _connector().execute("SELECT n FROM zahlen WHERE n < 0", max_rows=10, timeout_s=30)
    assert result.table.num_rows == 0 and result.table.schema == pa.schema([("n", pa.int64())])
    assert not result.truncated


def test_closing_a_stream_early_cancels_the_query(stand_in: StandIn) -> None:
    source = _connector(batch_rows=5).stream("SELECT n FROM zahlen", max_rows=100, timeout_s=30)
    next(source.batches)
    source.close()
    assert stand_in.calls.cancels == 1 and stand_in.calls.closes == 1
    assert list(source.batches) == []


# --------------------------------------------------------------------------------------------------
# Session: properties, authentication, time zone
# --------------------------------------------------------------------------------------------------


def test_session_properties_and_authentication(stand_in: StandIn) -> None:
    _connector().execute("SELECT n FROM zahlen", max_rows=1, timeout_s=2.5)
    [kwargs] = stand_in.calls.connects
    assert kwargs["session_properties"] == {"query_max_execution_time": "3s", "query_max_run_time": "3s"}
    assert (kwargs["host"], kwargs["port"], kwargs["user"]) == ("trino.stadt.example", 8443, "gateway")
    assert (kwargs["catalog"], kwargs["schema"], kwargs["http_scheme"]) == ("melde", "demo", "https")
    assert kwargs["timezone"] == "UTC" and kwargs["verify"] is True and kwargs["legacy_primitive_types"] is False
    auth = kwargs["auth"]
    assert isinstance(auth, trino.auth.BasicAuthentication)
    assert (auth._username, auth._password) == ("gateway", SECRET)


# --------------------------------------------------------------------------------------------------
# Time limit
# --------------------------------------------------------------------------------------------------


def test_timeout_cancels_the_running_query(stand_in: StandIn) -> None:
    sql = "SELECT count(*) AS n FROM gross a CROSS JOIN gross b WHERE (a.n * b.n) % 7 = 3"
    started = time.monotonic()
    with pytest.raises(ConnectorTimeout) as caught:
        _connector().execute(sql, max_rows=10, timeout_s=0.5)
    assert time.monotonic() - started < 10, "the cancel must stop the statement"
    assert stand_in.calls.cancels >= 1
    assert "0.5 s" in str(caught.value)
    _assert_no_secret(caught.value)


def test_timeout_between_batches(stand_in: StandIn) -> None:
    source = _connector(batch_rows=5).stream("SELECT n FROM zahlen", max_rows=100, timeout_s=0.3)
    next(source.batches)
    time.sleep(0.5)
    with pytest.raises(ConnectorTimeout):
        next(source.batches)
    assert stand_in.calls.cancels >= 1 and stand_in.calls.closes == 1


def test_server_side_time_limit_is_a_timeout(stand_in: StandIn) -> None:
    stand_in.fail_on_execute = _trino_error("EXCEEDED_TIME_LIMIT", "INSUFFICIENT_RESOURCES",
                                            "Query exceeded the maximum execution time limit of 3.00s")
    with pytest.raises(ConnectorTimeout):
        _connector().execute("SELECT n FROM zahlen", max_rows=10, timeout_s=3)


# --------------------------------------------------------------------------------------------------
# Error mapping (and the password never in any message)
# --------------------------------------------------------------------------------------------------


def test_unknown_table_is_rejected(stand_in: StandIn) -> None:
    with pytest.raises(QueryRejected) as caught:
        _connector().execute("SELECT n FROM gibt_es_nicht", max_rows=10, timeout_s=30)
    assert str(caught.value) == "the database rejected the query"
    assert "TABLE_NOT_FOUND" in caught.value.internal_detail


ERRORS: list[tuple[str, BaseException, type[ConnectorError]]] = [
    ("no-nodes", _trino_error("NO_NODES_AVAILABLE", "INSUFFICIENT_RESOURCES", f"no nodes; {SECRET}"),
     ConnectorUnavailable),
    ("external", _trino_error("JDBC_ERROR", "EXTERNAL", f"connection refused for gateway:{SECRET}"),
     ConnectorUnavailable),
    ("connection", trino.exceptions.TrinoConnectionError(
        f"failed to execute: HTTPSConnectionPool(host='trino', port=8443) gateway:{SECRET_IN_DSN}"),
     ConnectorUnavailable),
    ("http-503", trino.exceptions.Http503Error("error 503: service unavailable"), ConnectorUnavailable),
    ("http-401", trino.exceptions.HttpError(f"error 401: b'Unauthorized {SECRET}'"), ConnectorUnavailable),
    ("auth", trino.exceptions.TrinoAuthError(f"TLS/SSL is required for authentication {SECRET}"),
     ConnectorUnavailable),
    ("killed", _trino_error("ADMINISTRATIVELY_KILLED", "USER_ERROR", "killed by the operator"), ConnectorTimeout),
    ("cast", _trino_error("INVALID_CAST_ARGUMENT", "USER_ERROR", f"Cannot cast '{SECRET}' to INT"),
     QueryRejected),
    # the client builds this one from a plain string: its __str__ fails, the mapping must not
    ("odd-payload", trino.exceptions.TrinoUserError(f"Query has been cancelled {SECRET}", None),  # type: ignore[arg-type]
     QueryRejected),
]


@pytest.mark.parametrize(("error", "expected"), [(e, c) for _, e, c in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_error_mapping_on_execute(stand_in: StandIn, error: BaseException, expected: type[ConnectorError]) -> None:
    stand_in.fail_on_execute = error
    with pytest.raises(ConnectorError) as caught:
        _connector().execute("SELECT n FROM zahlen", max_rows=10, timeout_s=30)
    assert type(caught.value) is expected
    assert caught.value.internal_detail, "the operator's log needs Trino's text"
    _assert_no_secret(caught.value)
    assert stand_in.calls.closes == 1


@pytest.mark.parametrize(("error", "expected"), [(e, c) for _, e, c in ERRORS], ids=[i for i, _, _ in ERRORS])
def test_error_mapping_mid_stream(stand_in: StandIn, error: BaseException, expected: type[ConnectorError]) -> None:
    stand_in.fail_on_fetch[2] = error
    source = _connector(batch_rows=5).stream("SELECT n FROM zahlen", max_rows=100, timeout_s=30)
    assert next(source.batches).num_rows == 5
    with pytest.raises(ConnectorError) as caught:
        next(source.batches)
    assert type(caught.value) is expected
    _assert_no_secret(caught.value)
    assert stand_in.calls.cancels == 1 and stand_in.calls.closes == 1


def test_fetch_http_error_as_the_client_raises_it(stand_in: StandIn) -> None:
    """The client turns an HttpError during fetching into a plain OperationalError."""
    stand_in.fail_on_fetch[1] = trino.exceptions.OperationalError("error 502: bad gateway")
    with pytest.raises(ConnectorUnavailable):
        _connector().execute("SELECT n FROM zahlen", max_rows=10, timeout_s=30)


def test_without_client_package_is_unavailable_with_a_clear_message(monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("trino", "trino.auth", "trino.dbapi", "trino.exceptions"):
        monkeypatch.setitem(sys.modules, module, None)
    with pytest.raises(ConnectorUnavailable, match=r"'trino' Python package") as caught:
        _connector()
    _assert_no_secret(caught.value)


def test_closed_connector_refuses() -> None:
    connector = _connector()
    connector.close()
    with pytest.raises(ConnectorUnavailable, match="closed"):
        connector.execute("SELECT 1", max_rows=1, timeout_s=1)


# --------------------------------------------------------------------------------------------------
# The real client, no stand-in: what it raises on a dead port and on an HTTP error
# --------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def test_real_client_on_a_closed_port_is_unavailable() -> None:
    connector = TrinoConnector("127.0.0.1", _free_port(), "gateway", "melde", "demo", http_scheme="http",
                               request_timeout_s=2)
    with pytest.raises(ConnectorUnavailable) as caught:
        connector.execute("SELECT 1", max_rows=1, timeout_s=5)
    assert "TrinoConnectionError" in caught.value.internal_detail


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    """Answers every statement with 401 and records the request headers the client sent."""

    seen: list[dict[str, str]] = []  # noqa: RUF012 - one test at a time uses it

    def do_POST(self) -> None:
        self.seen.append({key.lower(): value for key, value in self.headers.items()})
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(401)
        self.end_headers()
        self.wfile.write(b"Unauthorized")

    def log_message(self, *args: Any) -> None:
        pass


def test_real_client_sends_the_session_and_maps_http_errors() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Unauthorized.seen.clear()
    try:
        connector = TrinoConnector("127.0.0.1", server.server_address[1], "gateway", "melde", "demo",
                                   http_scheme="http", request_timeout_s=5)
        with pytest.raises(ConnectorUnavailable) as caught:
            connector.execute("SELECT 1", max_rows=1, timeout_s=4)
    finally:
        server.shutdown()
        server.server_close()
    assert "401" in caught.value.internal_detail
    [headers] = _Unauthorized.seen
    assert headers["x-trino-user"] == "gateway"
    assert headers["x-trino-catalog"] == "melde" and headers["x-trino-schema"] == "demo"
    assert headers["x-trino-time-zone"] == "UTC"
    assert headers["x-trino-source"] == "municipal-data-gateway"
    assert sorted(headers["x-trino-session"].split(",")) == ["query_max_execution_time=4s", "query_max_run_time=4s"]


# --------------------------------------------------------------------------------------------------
# Configuration: the catalog entry and the DSN (dsn_env / dsn_file)
# --------------------------------------------------------------------------------------------------


def _catalog(entry: dict[str, Any]) -> Catalog:
    return Catalog.model_validate({"connectors": {"cluster": {"kind": "trino", **entry}}, "datasets": {}})


def test_build_connectors_makes_a_trino_connector(stand_in: StandIn, monkeypatch: pytest.MonkeyPatch,
                                                  tmp_path: Path) -> None:
    monkeypatch.setenv("GW_TEST_TRINO_DSN", f"trino://gateway:{SECRET_IN_DSN}@trino.stadt.example/melde/demo")
    catalog = _catalog({"dsn_env": "GW_TEST_TRINO_DSN", "user": "gateway"})
    connector = build_connectors(Settings(data_dir=tmp_path), catalog)["cluster"]
    assert isinstance(connector, TrinoConnector) and connector.dialect == "trino"
    connector.execute("SELECT n FROM zahlen", max_rows=1, timeout_s=5)
    [kwargs] = stand_in.calls.connects
    assert (kwargs["host"], kwargs["port"], kwargs["catalog"], kwargs["schema"]) == (
        "trino.stadt.example", 8443, "melde", "demo")
    assert kwargs["auth"]._password == SECRET


def test_catalog_entry_without_password_and_ca_file(stand_in: StandIn, tmp_path: Path) -> None:
    catalog = _catalog({"host": "trino", "port": 8443, "user": "gateway", "catalog": "melde", "schema": "demo",
                        "tls_ca_file": "/etc/gateway/trino-ca.pem"})
    build_connectors(Settings(data_dir=tmp_path), catalog)["cluster"].execute("SELECT 1 AS x", max_rows=1,
                                                                              timeout_s=5)
    [kwargs] = stand_in.calls.connects
    assert kwargs["auth"] is None and kwargs["verify"] == "/etc/gateway/trino-ca.pem"


def test_dsn_file_works_like_dsn_env(tmp_path: Path) -> None:
    secret_file = tmp_path / "trino.dsn"
    secret_file.write_text(f"trino://gateway:{SECRET_IN_DSN}@trino:9443/melde/demo\n", encoding="utf-8")
    catalog = _catalog({"dsn_file": str(secret_file)})
    assert isinstance(build_connectors(Settings(data_dir=tmp_path), catalog)["cluster"], TrinoConnector)
    assert trino_settings(secret_file.read_text()) == TrinoSettings(
        host="trino", port=9443, user="gateway", catalog="melde", schema="demo", password=SECRET)


@pytest.mark.parametrize(("entry", "dsn", "message"), [
    ({"host": "trino", "user": "gateway"}, None, "catalog, schema missing"),
    ({"user": "someone-else"}, f"trino://gateway:{SECRET_IN_DSN}@trino/melde/demo", "user differs"),
    ({"http_scheme": "http"}, f"trino://gateway:{SECRET_IN_DSN}@trino/melde/demo", "only sent over HTTPS"),
    ({}, f"trino://gateway:{SECRET}@trino/melde/demo", "not a valid URL"),  # '/' and '#' not encoded
    ({}, f"trino://gateway:{SECRET_IN_DSN}@trino/melde/demo?verify=false", "no query string"),
    ({}, f"postgresql://gateway:{SECRET_IN_DSN}@trino/melde", "must start with trino://"),
    ({}, f"trino://gateway:{SECRET_IN_DSN}@trino/melde/demo/extra", "/catalog/schema"),
])
def test_configuration_errors_name_the_field_not_the_secret(entry: dict[str, Any], dsn: str | None,
                                                            message: str, monkeypatch: pytest.MonkeyPatch,
                                                            tmp_path: Path) -> None:
    if dsn is not None:
        monkeypatch.setenv("GW_TEST_TRINO_DSN", dsn)
        entry = {**entry, "dsn_env": "GW_TEST_TRINO_DSN"}
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        build_connectors(Settings(data_dir=tmp_path), _catalog(entry))
    assert "connector 'cluster'" in str(caught.value)
    _assert_no_secret(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


def test_settings_repr_hides_the_password() -> None:
    settings = trino_settings(f"trino://gateway:{SECRET_IN_DSN}@trino/melde/demo")
    assert settings.password == SECRET
    assert SECRET not in repr(settings) and SECRET_IN_DSN not in repr(settings)


# --------------------------------------------------------------------------------------------------
# The rewriter's Trino SQL: filters and masks inside, same answer as the DuckDB plan
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def catalog() -> Catalog:
    return load_catalog(ROOT / "policies" / "catalog.yaml")


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> EmbeddedPolicyEngine:
    return EmbeddedPolicyEngine(load_bundle(ROOT / "policies", catalog))


def _source_select(parsed: exp.Expr, table: str) -> exp.Select:
    """The innermost SELECT that reads the protected table (the derived table the rewriter built)."""
    for select in parsed.find_all(exp.Select):
        source = select.args.get("from_") or select.args.get("from")
        if isinstance(source, exp.From) and isinstance(source.this, exp.Table) and source.this.name == table:
            return select
    raise AssertionError(f"no SELECT reads {table}")


def _projection(select: exp.Select, alias: str) -> exp.Expr:
    for projection in select.expressions:
        if projection.alias_or_name == alias:
            inner: exp.Expr = projection.unalias()
            return inner
    raise AssertionError(f"{alias} is not projected")


def _is_pseudonym(expression: exp.Expr) -> bool:
    sql = expression.sql(dialect="trino").lower()
    return "lower(to_hex(sha256(to_utf8(" in sql


def test_trino_sql_for_sven_carries_district_and_retention_filters(catalog: Catalog,
                                                                   policy: EmbeddedPolicyEngine) -> None:
    plan = _plan("sven", "SELECT * FROM sozialleistungen", "trino", catalog, policy)
    parsed = sqlglot.parse_one(plan.sql, read="trino", error_level=ErrorLevel.RAISE)
    inner = _source_select(parsed, "sozialleistungen")
    where = inner.args["where"]
    # row filter: sven's districts, inside the derived table
    districts = [node for node in where.find_all(exp.In) if node.this.name == "stadtteil"]
    assert len(districts) == 1
    assert sorted(literal.name for literal in districts[0].expressions) == sorted(USERS["sven"].districts)
    # retention: rows whose `ende` is older than the deletion period are invisible, open cases stay
    retention = catalog.datasets["sozialleistungen"].retention
    assert retention is not None
    comparisons = [node for node in where.find_all(exp.GTE) if retention.column in
                   {c.name for c in node.this.find_all(exp.Column)}]
    assert len(comparisons) == 1
    bound = comparisons[0].expression.sql(dialect="trino")
    assert "CURRENT_DATE" in bound and str(retention.days) in bound
    assert retention.keep_null and any(node.this.name == retention.column for node in where.find_all(exp.Is))
    # masks: the person key pseudonymised with Trino's varbinary sha256, the IBAN not released
    assert _is_pseudonym(_projection(inner, "einwohner_id"))
    assert "iban" not in [p.alias_or_name for p in parsed.expressions]
    assert parsed.sql(dialect="trino") == plan.sql


def test_trino_sql_for_anna_carries_the_masks(catalog: Catalog, policy: EmbeddedPolicyEngine) -> None:
    plan = _plan("anna", "SELECT * FROM einwohner", "trino", catalog, policy)
    parsed = sqlglot.parse_one(plan.sql, read="trino", error_level=ErrorLevel.RAISE)
    inner = _source_select(parsed, "einwohner")
    for column in ("id", "vorname", "nachname"):
        assert _is_pseudonym(_projection(inner, column)), column
    for column in ("strasse", "hausnummer", "telefon", "email"):
        redacted = _projection(inner, column)
        assert isinstance(redacted, exp.Literal) and redacted.name == "***", column
    assert _projection(inner, "geburtsdatum").find(exp.Extract) is not None
    released = [p.alias_or_name for p in parsed.expressions]
    assert "steuer_id" not in released
    assert inner.args.get("where") is None or not list(inner.args["where"].find_all(exp.In)), "anna has no row filter"


@pytest.mark.parametrize(("user", "sql"), [
    ("sven", "SELECT * FROM sozialleistungen"),
    ("sven", "SELECT stadtteil, leistungsart, count(*) AS n, sum(betrag_monat) AS summe "
             "FROM sozialleistungen GROUP BY stadtteil, leistungsart"),
    ("anna", "SELECT * FROM einwohner"),
    ("anna", "SELECT stadtteil, geschlecht, count(*) AS n FROM einwohner GROUP BY stadtteil, geschlecht"),
])
def test_trino_plan_through_the_connector_matches_the_duckdb_plan(
        user: str, sql: str, catalog: Catalog, policy: EmbeddedPolicyEngine, raw_db: duckdb.DuckDBPyConnection,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Differential: the Trino plan through TrinoConnector (stand-in on the demo data) and the DuckDB plan
    on DuckDB give the same rows and Arrow types, pseudonyms included."""
    fake = StandIn(raw_db)
    monkeypatch.setattr(trino.dbapi, "connect", fake.connect)
    trino_plan = _plan(user, sql, "trino", catalog, policy)
    duck_plan = _plan(user, sql, "duckdb", catalog, policy)
    through_trino = _connector(batch_rows=1000).execute(trino_plan.sql, max_rows=trino_plan.max_rows, timeout_s=60)
    reference = raw_db.cursor().sql(duck_plan.sql).to_arrow_table()
    assert not through_trino.truncated and through_trino.table.num_rows > 0
    assert fake.calls.statements == [trino_plan.sql]
    assert through_trino.table.schema.names == reference.schema.names
    assert through_trino.table.schema.types == reference.schema.types

    def rows(table: pa.Table) -> list[tuple[Any, ...]]:
        return sorted((tuple(row.values()) for row in table.to_pylist()), key=repr)

    assert rows(through_trino.table) == rows(reference)
