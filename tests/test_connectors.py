"""Live tests of the PostgreSQL and MariaDB connectors, plus the offline part of the Trino connector.

Each run creates its own databases and roles (``gw_conn_<random>``) and drops them afterwards. The
tests need the local servers and fail, not skip, when one is down.
"""

from __future__ import annotations

import datetime as dt
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import psycopg
import pyarrow as pa
import pymysql
import pytest

from connectors.base import ConnectorError, ConnectorTimeout, ConnectorUnavailable, QueryRejected
from connectors.mysql import MySQLConnector
from connectors.postgres import PostgresConnector

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
SCHEMA = "gw"
#: a password that must never show up in an exception (the DSNs of the reader roles carry it)
SECRET = "Pw-" + secrets.token_hex(8)

ROWS = [
    (1, dt.date(2024, 2, 29), dt.datetime(2024, 1, 1, 10, 0, 1, 500000), Decimal("12.50"), "Müller", "Straße 5"),
    (2, dt.date(1925, 6, 22), dt.datetime(1999, 12, 31, 23, 59, 59), Decimal("-99999999.99"), "Ærø Ōno 東京",
     "Heßloch"),
    (3, None, None, None, None, None),
]
EXPECTED_SCHEMA = pa.schema([
    ("id", pa.int64()), ("tag", pa.date32()), ("zeit", pa.timestamp("us")), ("betrag", pa.decimal128(10, 2)),
    ("name", pa.string()), ("ort", pa.string()),
])


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _assert_no_secret(exc: BaseException, *secret_values: str) -> None:
    texts = [str(exc), repr(exc), *map(str, exc.args)]
    if isinstance(exc, ConnectorError):
        texts.append(exc.internal_detail)
    for text in texts:
        for value in secret_values:
            assert value not in text, f"secret leaked in {text!r}"


def _run_error(connector: PostgresConnector | MySQLConnector, sql: str, *, timeout_s: float = 10.0,
               max_rows: int = 10) -> ConnectorError:
    with pytest.raises(ConnectorError) as info:
        connector.execute(sql, max_rows=max_rows, timeout_s=timeout_s)
    return info.value


# ==================================================================================================
# PostgreSQL
# ==================================================================================================


@dataclass(frozen=True)
class PgEnv:
    database: str
    admin_dsn: str  # superuser, on the test database
    reader: str
    reader_dsn: str  # the SELECT-only role, password in the DSN


@pytest.fixture(scope="module")
def pg() -> Iterator[PgEnv]:
    database = _unique("gw_conn")
    reader = _unique("gw_reader")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}" ENCODING UTF8 TEMPLATE template0')
        admin.execute(f"CREATE ROLE \"{reader}\" LOGIN PASSWORD '{SECRET}' NOSUPERUSER NOCREATEDB NOCREATEROLE")
    admin_dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'CREATE SCHEMA "{SCHEMA}"')
            conn.execute(f'CREATE TABLE "{SCHEMA}".daten (id BIGINT PRIMARY KEY, tag DATE, zeit TIMESTAMP, '
                         "betrag NUMERIC(10,2), name TEXT, ort VARCHAR(40))")
            with conn.cursor() as cur:
                cur.executemany(f'INSERT INTO "{SCHEMA}".daten VALUES (%s, %s, %s, %s, %s, %s)', ROWS)
            conn.execute(f'CREATE TABLE "{SCHEMA}".geheim (x TEXT)')
            conn.execute(f"INSERT INTO \"{SCHEMA}\".geheim VALUES ('nur für Admins')")
            # a same-named table in public: unqualified names must not resolve to it
            conn.execute("CREATE TABLE public.daten (id BIGINT, falsch TEXT)")
            # a function that writes, to show that the transaction (not only the parser) is read-only
            conn.execute(f'CREATE FUNCTION "{SCHEMA}".schreiber() RETURNS int LANGUAGE sql VOLATILE AS '
                         f"$$ INSERT INTO \"{SCHEMA}\".geheim VALUES ('geschrieben') RETURNING 1 $$")
            # a function that would shadow a built-in if the schema came before pg_catalog
            conn.execute(f'CREATE FUNCTION "{SCHEMA}".upper(text) RETURNS text LANGUAGE sql AS $$ SELECT \'evil\' $$')
            # the operator page's SELECT-only grant (docs/connectors.md)
            conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}"')
            conn.execute(f'GRANT USAGE ON SCHEMA "{SCHEMA}" TO "{reader}"')
            conn.execute(f'GRANT SELECT ON "{SCHEMA}".daten TO "{reader}"')
            conn.execute(f'ALTER ROLE "{reader}" SET default_transaction_read_only = on')
        yield PgEnv(database, admin_dsn, reader,
                    f"postgresql://{reader}:{SECRET}@127.0.0.1:5432/{database}")
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{reader}"')


@pytest.fixture
def pg_admin_conn(pg: PgEnv) -> Iterator[PostgresConnector]:
    """The connector as a superuser: everything it refuses is refused by the session, not by grants."""
    connector = PostgresConnector(pg.admin_dsn, schema=SCHEMA, pool_min=1, pool_max=2)
    yield connector
    connector.close()


@pytest.fixture
def pg_reader_conn(pg: PgEnv) -> Iterator[PostgresConnector]:
    connector = PostgresConnector(pg.reader_dsn, schema=SCHEMA, pool_min=1, pool_max=2)
    yield connector
    connector.close()


def _pg_count(pg: PgEnv, table: str) -> int:
    with psycopg.connect(pg.admin_dsn) as conn:
        row = conn.execute(f'SELECT count(*) FROM "{SCHEMA}".{table}').fetchone()
        assert row is not None
        return int(row[0])


@pytest.mark.postgres
class TestPostgres:
    def test_types_map_faithfully(self, pg_reader_conn: PostgresConnector) -> None:
        result = pg_reader_conn.execute("SELECT * FROM daten ORDER BY id", max_rows=10, timeout_s=10)
        assert result.table.schema == EXPECTED_SCHEMA
        assert [tuple(r.values()) for r in result.table.to_pylist()] == ROWS
        assert not result.truncated

    def test_unconstrained_numeric_and_other_types(self, pg_reader_conn: PostgresConnector) -> None:
        result = pg_reader_conn.execute(
            "SELECT sum(betrag) AS s, EXTRACT(YEAR FROM max(tag)) AS y, count(*) AS n, 1.5::float8 AS f, "
            "true AS b, NULL::int AS nichts FROM daten WHERE id = 1", max_rows=10, timeout_s=10)
        table = result.table
        assert table.schema.field("s").type == pa.decimal128(38, 2)
        assert table.schema.field("y").type == pa.decimal128(38, 0)
        assert table.schema.field("n").type == pa.int64()
        assert table.schema.field("f").type == pa.float64()
        assert table.schema.field("b").type == pa.bool_()
        assert table.schema.field("nichts").type == pa.int32()
        assert table.to_pylist() == [{"s": Decimal("12.50"), "y": Decimal(2024), "n": 1, "f": 1.5, "b": True,
                                      "nichts": None}]

    def test_unqualified_names_resolve_to_the_schema(self, pg_admin_conn: PostgresConnector) -> None:
        table = pg_admin_conn.execute("SELECT current_setting('search_path') AS p, upper('a') AS u, "
                                      "(SELECT count(*) FROM daten) AS n", max_rows=1, timeout_s=10).table
        assert table.to_pylist() == [{"p": 'pg_catalog, "gw", pg_temp', "u": "A", "n": 3}]

    @pytest.mark.parametrize("sql", [
        "INSERT INTO daten (id) VALUES (99)",
        "UPDATE daten SET name = 'x'",
        "DELETE FROM daten",
        "CREATE TABLE neu (a int)",
        "DROP TABLE geheim",
        "SELECT 1; DROP TABLE geheim",
        "WITH x AS (DELETE FROM daten RETURNING id) SELECT * FROM x",
    ])
    def test_writes_are_rejected(self, sql: str, pg: PgEnv, pg_admin_conn: PostgresConnector) -> None:
        error = _run_error(pg_admin_conn, sql)
        assert isinstance(error, QueryRejected)
        assert _pg_count(pg, "daten") == 3
        assert _pg_count(pg, "geheim") == 1

    def test_read_only_transaction_refuses_writing_function(self, pg: PgEnv,
                                                            pg_admin_conn: PostgresConnector) -> None:
        error = _run_error(pg_admin_conn, "SELECT schreiber() AS r")
        assert isinstance(error, QueryRejected)
        assert "read-only transaction" in error.internal_detail
        assert _pg_count(pg, "geheim") == 1

    def test_session_changes_do_not_leak(self, pg_admin_conn: PostgresConnector) -> None:
        pg_admin_conn.execute("SELECT set_config('search_path', 'public', false) AS x, "
                              "set_config('statement_timeout', '0', false) AS y", max_rows=1, timeout_s=10)
        table = pg_admin_conn.execute("SELECT current_setting('search_path') AS p, count(*) AS n FROM daten",
                                      max_rows=1, timeout_s=10).table
        assert table.to_pylist() == [{"p": 'pg_catalog, "gw", pg_temp', "n": 3}]
        assert isinstance(_run_error(pg_admin_conn, "SELECT pg_sleep(3)", timeout_s=0.3), ConnectorTimeout)

    def test_statement_timeout(self, pg_reader_conn: PostgresConnector) -> None:
        started = time.monotonic()
        error = _run_error(pg_reader_conn, "SELECT pg_sleep(10)", timeout_s=0.5)
        assert isinstance(error, ConnectorTimeout)
        assert time.monotonic() - started < 3
        assert "statement timeout" in error.internal_detail
        # the connection is fine afterwards
        assert pg_reader_conn.execute("SELECT 1 AS one", max_rows=1, timeout_s=5).table.num_rows == 1

    def test_max_rows_and_truncation(self, pg_reader_conn: PostgresConnector) -> None:
        result = pg_reader_conn.execute("SELECT g FROM generate_series(1, 100000) g", max_rows=25, timeout_s=10)
        assert result.truncated and result.table.num_rows == 25
        assert result.table.column("g").to_pylist() == list(range(1, 26))
        exact = pg_reader_conn.execute("SELECT g FROM generate_series(1, 25) g", max_rows=25, timeout_s=10)
        assert not exact.truncated and exact.table.num_rows == 25
        empty = pg_reader_conn.execute("SELECT id FROM daten WHERE false", max_rows=25, timeout_s=10)
        assert empty.table.num_rows == 0 and empty.table.schema.field("id").type == pa.int64()

    def test_batches_larger_than_one_fetch(self, pg: PgEnv) -> None:
        connector = PostgresConnector(pg.reader_dsn, schema=SCHEMA, batch_rows=7)
        try:
            result = connector.execute("SELECT g FROM generate_series(1, 100) g", max_rows=50, timeout_s=10)
            assert result.truncated and result.table.column("g").to_pylist() == list(range(1, 51))
        finally:
            connector.close()

    def test_database_text_only_in_internal_detail(self, pg_reader_conn: PostgresConnector) -> None:
        error = _run_error(pg_reader_conn, "SELECT 1 / (id - id) AS x FROM daten")
        assert isinstance(error, QueryRejected)
        assert "division" not in str(error).lower()
        assert "division by zero" in error.internal_detail
        error = _run_error(pg_reader_conn, "SELECT gibtsnicht FROM daten")
        assert "gibtsnicht" not in str(error) and "gibtsnicht" in error.internal_detail

    def test_restricted_role_cannot_read_other_tables(self, pg_reader_conn: PostgresConnector) -> None:
        assert pg_reader_conn.execute("SELECT count(*) AS n FROM daten", max_rows=1,
                                      timeout_s=10).table.to_pylist() == [{"n": 3}]
        for sql in ("SELECT * FROM geheim", "SELECT * FROM public.daten"):
            error = _run_error(pg_reader_conn, sql)
            assert isinstance(error, QueryRejected)
            assert "permission denied" in error.internal_detail
            _assert_no_secret(error, SECRET)

    def test_unreachable_dsn_fails_fast_without_leaking_the_password(self) -> None:
        started = time.monotonic()
        connector = PostgresConnector(f"postgresql://someone:{SECRET}@127.0.0.1:1/nowhere", connect_timeout_s=1)
        try:
            error = _run_error(connector, "SELECT 1")
        finally:
            connector.close()
        assert isinstance(error, ConnectorUnavailable)
        assert time.monotonic() - started < 5
        _assert_no_secret(error, SECRET)

    def test_password_never_in_exceptions(self, pg: PgEnv, pg_reader_conn: PostgresConnector) -> None:
        for sql in ("SELECT * FROM geheim", f"SELECT '{SECRET}'::int", "SELECT pg_sleep(5)"):
            error = _run_error(pg_reader_conn, sql, timeout_s=0.3)
            _assert_no_secret(error, SECRET)
        connector = PostgresConnector(f"postgresql://x:{SECRET}@127.0.0.1:5432/db?sslmode=gibtsnicht",
                                      connect_timeout_s=1)
        try:
            error = _run_error(connector, "SELECT 1")
        finally:
            connector.close()
        assert isinstance(error, ConnectorUnavailable)
        _assert_no_secret(error, SECRET)

    def test_pool_recovers_after_connections_are_killed(self, pg: PgEnv) -> None:
        connector = PostgresConnector(pg.reader_dsn, schema=SCHEMA, pool_min=2, pool_max=2)
        try:
            assert connector.execute("SELECT 1 AS x", max_rows=1, timeout_s=5).table.num_rows == 1
            with psycopg.connect(pg.admin_dsn, autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE usename = %s AND datname = %s", (pg.reader, pg.database))
            for _ in range(4):
                assert connector.execute("SELECT count(*) AS n FROM daten", max_rows=1,
                                         timeout_s=5).table.to_pylist() == [{"n": 3}]
        finally:
            connector.close()

    def test_concurrent_queries_share_the_pool(self, pg_reader_conn: PostgresConnector) -> None:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(5):
                    table = pg_reader_conn.execute("SELECT count(*) AS n FROM daten", max_rows=1, timeout_s=10).table
                    assert table.to_pylist() == [{"n": 3}]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []

    def test_closed_connector_is_unavailable(self, pg: PgEnv) -> None:
        connector = PostgresConnector(pg.reader_dsn, schema=SCHEMA)
        connector.close()
        assert isinstance(_run_error(connector, "SELECT 1"), ConnectorUnavailable)


# ==================================================================================================
# MariaDB
# ==================================================================================================


@dataclass(frozen=True)
class MariaEnv:
    database: str
    admin_dsn: str
    reader: str
    reader_dsn: str


def _maria_admin(database: str | None = None) -> Any:
    return pymysql.connect(**MARIA, database=database, charset="utf8mb4", autocommit=True)


@pytest.fixture(scope="module")
def maria() -> Iterator[MariaEnv]:
    database = _unique("gw_conn")
    reader = _unique("gw_reader")
    admin = _maria_admin()
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute(f"USE `{database}`")
            cur.execute("CREATE TABLE daten (id BIGINT PRIMARY KEY, tag DATE, zeit DATETIME(6), betrag DECIMAL(10,2), "
                        "name TEXT, ort VARCHAR(40)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.executemany("INSERT INTO daten VALUES (%s, %s, %s, %s, %s, %s)", ROWS)
            cur.execute("CREATE TABLE geheim (x TEXT) CHARACTER SET utf8mb4")
            cur.execute("INSERT INTO geheim VALUES ('nur für Admins')")
            # the operator page's SELECT-only grant (docs/connectors.md)
            cur.execute(f"CREATE USER '{reader}'@'%' IDENTIFIED BY '{SECRET}'")
            cur.execute(f"GRANT SELECT ON `{database}`.`daten` TO '{reader}'@'%'")
        yield MariaEnv(database, f"mysql://root@127.0.0.1:3306/{database}", reader,
                       f"mysql://{reader}:{SECRET}@127.0.0.1:3306/{database}")
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{reader}'@'%'")
        admin.close()


@pytest.fixture
def maria_admin_conn(maria: MariaEnv) -> Iterator[MySQLConnector]:
    connector = MySQLConnector(maria.admin_dsn, pool_max=2)
    yield connector
    connector.close()


@pytest.fixture
def maria_reader_conn(maria: MariaEnv) -> Iterator[MySQLConnector]:
    connector = MySQLConnector(maria.reader_dsn, pool_max=2)
    yield connector
    connector.close()


def _maria_count(maria: MariaEnv, table: str) -> int:
    conn = _maria_admin(maria.database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"SELECT COUNT(*) FROM `{table}`")
            row = cur.fetchone()
            assert row is not None
            return int(row[0])
    finally:
        conn.close()


@pytest.mark.mariadb
class TestMariaDB:
    def test_types_map_faithfully(self, maria_reader_conn: MySQLConnector) -> None:
        result = maria_reader_conn.execute("SELECT * FROM daten ORDER BY id", max_rows=10, timeout_s=10)
        assert result.table.schema == EXPECTED_SCHEMA
        assert [tuple(r.values()) for r in result.table.to_pylist()] == ROWS
        assert not result.truncated

    def test_binary_collation_and_umlauts(self, maria_reader_conn: MySQLConnector) -> None:
        table = maria_reader_conn.execute(
            "SELECT id FROM daten WHERE name = 'Müller' OR name = 'müller' OR ort = 'Hessloch'",
            max_rows=10, timeout_s=10).table
        assert table.to_pylist() == [{"id": 1}]
        table = maria_reader_conn.execute(
            "SELECT SHA2(CONCAT('k', name), 256) AS h FROM daten WHERE id = 1", max_rows=1, timeout_s=10).table
        import hashlib

        assert table.column("h")[0].as_py() == hashlib.sha256("kMüller".encode()).hexdigest()

    @pytest.mark.parametrize("sql", [
        "INSERT INTO daten (id) VALUES (99)",
        "UPDATE daten SET name = 'x'",
        "DELETE FROM daten",
        "CREATE TABLE neu (a int)",
        "DROP TABLE geheim",
        "SELECT 1; DROP TABLE geheim",
    ])
    def test_writes_are_rejected(self, sql: str, maria: MariaEnv, maria_admin_conn: MySQLConnector) -> None:
        error = _run_error(maria_admin_conn, sql)
        assert isinstance(error, QueryRejected)
        assert _maria_count(maria, "daten") == 3
        assert _maria_count(maria, "geheim") == 1

    def test_file_export_needs_the_file_privilege(self, maria_reader_conn: MySQLConnector) -> None:
        # READ ONLY transactions do NOT stop SELECT ... INTO OUTFILE (the server writes the file as
        # root would); only a user without the FILE privilege is safe. See docs/connectors.md.
        target = f"/tmp/{_unique('gw_conn_outfile')}.txt"
        error = _run_error(maria_reader_conn, f"SELECT * FROM daten INTO OUTFILE '{target}'")
        assert isinstance(error, QueryRejected)
        assert "FILE" in error.internal_detail

    def test_statement_without_result_set_is_rejected(self, maria_reader_conn: MySQLConnector) -> None:
        error = _run_error(maria_reader_conn, "DO 1")
        assert isinstance(error, QueryRejected)

    def test_read_only_transaction_is_the_reason(self, maria_admin_conn: MySQLConnector) -> None:
        # as root, with every privilege: only the READ ONLY transaction stops the write
        error = _run_error(maria_admin_conn, "INSERT INTO daten (id) VALUES (99)")
        assert "READ ONLY transaction" in error.internal_detail

    def test_only_full_group_by(self, maria_reader_conn: MySQLConnector) -> None:
        error = _run_error(maria_reader_conn, "SELECT name, count(*) AS n FROM daten GROUP BY ort")
        assert isinstance(error, QueryRejected)
        assert "GROUP BY" in error.internal_detail

    def test_statement_timeout(self, maria_reader_conn: MySQLConnector) -> None:
        started = time.monotonic()
        error = _run_error(maria_reader_conn, "SELECT SLEEP(10) AS s", timeout_s=0.5)
        assert isinstance(error, ConnectorTimeout)
        assert time.monotonic() - started < 3
        assert maria_reader_conn.execute("SELECT 1 AS one", max_rows=1, timeout_s=5).table.num_rows == 1

    def test_max_rows_and_truncation(self, maria_admin_conn: MySQLConnector) -> None:
        # (the sequence engine's seq_1_to_N tables need privileges on the whole database: admin here)
        conn = maria_admin_conn
        result = conn.execute("SELECT seq FROM seq_1_to_100000", max_rows=25, timeout_s=10)
        assert result.truncated and result.table.num_rows == 25
        assert result.table.column("seq").to_pylist() == list(range(1, 26))
        limited = conn.execute("SELECT seq FROM seq_1_to_100000 LIMIT 26", max_rows=25, timeout_s=10)
        assert limited.truncated and limited.table.num_rows == 25
        exact = conn.execute("SELECT seq FROM seq_1_to_25", max_rows=25, timeout_s=10)
        assert not exact.truncated and exact.table.num_rows == 25
        # the pool still works after a result was abandoned half-read
        assert conn.execute("SELECT COUNT(*) AS n FROM daten", max_rows=1,
                            timeout_s=10).table.to_pylist() == [{"n": 3}]

    def test_database_text_only_in_internal_detail(self, maria_reader_conn: MySQLConnector) -> None:
        error = _run_error(maria_reader_conn, "SELECT gibtsnicht FROM daten")
        assert isinstance(error, QueryRejected)
        assert "gibtsnicht" not in str(error) and "gibtsnicht" in error.internal_detail

    def test_restricted_user_cannot_read_other_tables(self, maria_reader_conn: MySQLConnector) -> None:
        assert maria_reader_conn.execute("SELECT COUNT(*) AS n FROM daten", max_rows=1,
                                         timeout_s=10).table.to_pylist() == [{"n": 3}]
        for sql in ("SELECT * FROM geheim", "SELECT * FROM mysql.user"):
            error = _run_error(maria_reader_conn, sql)
            assert isinstance(error, QueryRejected)
            assert "denied" in error.internal_detail
            _assert_no_secret(error, SECRET)

    def test_unreachable_dsn_fails_fast_without_leaking_the_password(self) -> None:
        started = time.monotonic()
        connector = MySQLConnector(f"mysql://someone:{SECRET}@127.0.0.1:1/nowhere", connect_timeout_s=1)
        error = _run_error(connector, "SELECT 1")
        assert isinstance(error, ConnectorUnavailable)
        assert time.monotonic() - started < 5
        _assert_no_secret(error, SECRET)

    def test_wrong_password_is_unavailable_and_not_leaked(self, maria: MariaEnv) -> None:
        wrong = SECRET + "x"
        connector = MySQLConnector(f"mysql://{maria.reader}:{wrong}@127.0.0.1:3306/{maria.database}")
        error = _run_error(connector, "SELECT 1")
        assert isinstance(error, ConnectorUnavailable)
        _assert_no_secret(error, wrong, SECRET)

    def test_password_never_in_exceptions(self, maria_reader_conn: MySQLConnector) -> None:
        for sql in ("SELECT * FROM geheim", f"SELECT `{SECRET}` FROM daten", "SELECT SLEEP(5)"):
            error = _run_error(maria_reader_conn, sql, timeout_s=0.3)
            _assert_no_secret(error, SECRET)

    def test_pool_recovers_after_connections_are_killed(self, maria: MariaEnv) -> None:
        connector = MySQLConnector(maria.reader_dsn, pool_max=2)
        try:
            assert connector.execute("SELECT 1 AS x", max_rows=1, timeout_s=5).table.num_rows == 1
            admin = _maria_admin()
            try:
                with admin.cursor() as cur:
                    cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s", (maria.reader,))
                    for (thread_id,) in cur.fetchall():
                        cur.execute(f"KILL CONNECTION {int(thread_id)}")
            finally:
                admin.close()
            for _ in range(3):
                assert connector.execute("SELECT COUNT(*) AS n FROM daten", max_rows=1,
                                         timeout_s=5).table.to_pylist() == [{"n": 3}]
        finally:
            connector.close()

    def test_concurrent_queries_share_the_pool(self, maria_reader_conn: MySQLConnector) -> None:
        errors: list[BaseException] = []

        def work() -> None:
            try:
                for _ in range(5):
                    table = maria_reader_conn.execute("SELECT COUNT(*) AS n FROM daten", max_rows=1,
                                                      timeout_s=10).table
                    assert table.to_pylist() == [{"n": 3}]
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=work) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []

    def test_invalid_dsn(self) -> None:
        with pytest.raises(ConnectorUnavailable):
            MySQLConnector(f"postgresql://u:{SECRET}@h/db")


# ==================================================================================================
# Trino (no server here; its connector is tested against a stand-in in tests/test_trino_connector.py)
# ==================================================================================================


def test_trino_type_mapping() -> None:
    from connectors.trino import _arrow_type

    assert _arrow_type("decimal(10,2)")[0] == pa.decimal128(10, 2)
    assert _arrow_type("varchar(255)")[0] == pa.string()
    assert _arrow_type("date")[0] == pa.date32()
    assert _arrow_type("timestamp(6)")[0] == pa.timestamp("us")
    assert _arrow_type("timestamp(3) with time zone")[0] == pa.timestamp("ms", tz="UTC")
    assert _arrow_type("bigint")[0] == pa.int64()
    assert _arrow_type("array(varchar)")[0] == pa.string()
