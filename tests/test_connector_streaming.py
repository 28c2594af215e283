"""Native streaming of the PostgreSQL and MariaDB connectors (``stream()``), against the real servers.

Each engine gets its own fresh database and a SELECT-only reader (``gw_stream_<random>``), dropped
afterwards. Every test runs once per engine (markers ``postgres`` / ``mariadb``) and fails, not
skips, when a server is down. Large results come from ``generate_series`` (PostgreSQL) and the
sequence engine (MariaDB, as the administrator: ``seq_1_to_N`` needs privileges on the database).
"""

from __future__ import annotations

import datetime as dt
import gc
import secrets
import shutil
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pymysql
import pytest

from connectors.base import ConnectorError, ConnectorTimeout, ConnectorUnavailable, QueryRejected, StreamResult
from connectors.mysql import MySQLConnector
from connectors.postgres import PostgresConnector

#: a client address inside the city's network (the policy's residency rule checks it)
INTERNAL = "127.0.0.1"

PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
SECRET = "Pw-" + secrets.token_hex(8)
BATCH = 10_000
ZAHLEN = 30_000  # rows of the `zahlen` table (1..ZAHLEN), readable by the reader

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

Conn = PostgresConnector | MySQLConnector


def _unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def _maria_admin(database: str | None = None) -> Any:
    return pymysql.connect(**MARIA, database=database, charset="utf8mb4", autocommit=True)


@dataclass
class Engine:
    """One database under test, with the engine-specific SQL and server-side probes."""

    kind: str
    database: str
    admin_dsn: str
    reader_dsn: str
    #: SELECT of 1..n as column ``n`` (runs as the admin on MariaDB)
    series: Callable[[int], str]
    #: `zahlen` in order, with a column that fails for n > k (a runtime error, not a planning error)
    fails_after: Callable[[int], str]
    #: 1..n where every row after the k-th takes 10 ms
    slow_after: Callable[[int, int], str]
    #: how many statements of this test's database are open on the server (cursor or running query)
    open_statements: Callable[[], int]
    #: terminate every session of the given login on the server
    kill_sessions: Callable[[str], None]
    reader: str

    def connector(self, *, admin: bool = False, **kwargs: Any) -> Conn:
        dsn = self.admin_dsn if admin else self.reader_dsn
        if self.kind == "postgres":
            return PostgresConnector(dsn, schema="gw", **kwargs)
        kwargs.pop("pool_min", None)
        return MySQLConnector(dsn, **kwargs)

    @property
    def big_needs_admin(self) -> bool:
        return self.kind == "mariadb"


@pytest.fixture(scope="module")
def pg_engine() -> Iterator[Engine]:
    database = _unique("gw_stream")
    reader = _unique("gw_stream_reader")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{database}" ENCODING UTF8 TEMPLATE template0')
        admin.execute(f"CREATE ROLE \"{reader}\" LOGIN PASSWORD '{SECRET}' NOSUPERUSER NOCREATEDB NOCREATEROLE")
    admin_dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"

    def open_statements() -> int:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND application_name = %s "
                "AND (state = 'active' OR state LIKE 'idle in transaction%%') AND pid <> pg_backend_pid()",
                (database, "municipal-data-gateway")).fetchone()
            assert row is not None
            return int(row[0])

    def kill_sessions(login: str) -> None:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s "
                         "AND datname = %s", (login, database))

    try:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute('CREATE SCHEMA "gw"')
            conn.execute('CREATE TABLE gw.daten (id BIGINT PRIMARY KEY, tag DATE, zeit TIMESTAMP, '
                         "betrag NUMERIC(10,2), name TEXT, ort VARCHAR(40))")
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO gw.daten VALUES (%s, %s, %s, %s, %s, %s)", ROWS)
            conn.execute("CREATE TABLE gw.zahlen (n BIGINT PRIMARY KEY)")
            conn.execute(f"INSERT INTO gw.zahlen SELECT g FROM generate_series(1, {ZAHLEN}) g")
            conn.execute(f'REVOKE ALL ON DATABASE "{database}" FROM PUBLIC')
            conn.execute(f'GRANT CONNECT ON DATABASE "{database}" TO "{reader}"')
            conn.execute(f'GRANT USAGE ON SCHEMA gw TO "{reader}"')
            conn.execute(f'GRANT SELECT ON gw.daten, gw.zahlen TO "{reader}"')
        yield Engine(
            kind="postgres", database=database, admin_dsn=admin_dsn, reader=reader,
            reader_dsn=f"postgresql://{reader}:{SECRET}@127.0.0.1:5432/{database}",
            series=lambda n: f"SELECT g AS n FROM generate_series(1, {n}) g",
            fails_after=lambda k: f"SELECT n, 1 / (n - {k + 1}) AS x FROM zahlen ORDER BY n",
            slow_after=lambda n, k: (f"SELECT g AS n FROM generate_series(1, {n}) g "
                                     f"WHERE g <= {k} OR pg_sleep(0.01)::text IS NOT NULL"),
            open_statements=open_statements, kill_sessions=kill_sessions,
        )
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
            admin.execute(f'DROP ROLE IF EXISTS "{reader}"')


@pytest.fixture(scope="module")
def maria_engine() -> Iterator[Engine]:
    database = _unique("gw_stream")
    reader = _unique("gw_stream_reader")
    admin = _maria_admin()

    def open_statements() -> int:
        probe = _maria_admin()
        try:
            with probe.cursor() as cur:
                cur.execute("SELECT COUNT(*) FROM information_schema.processlist WHERE db = %s "
                            "AND command = 'Query' AND id <> CONNECTION_ID()", (database,))
                row = cur.fetchone()
                assert row is not None
                return int(row[0])
        finally:
            probe.close()

    def kill_sessions(login: str) -> None:
        probe = _maria_admin()
        try:
            with probe.cursor() as cur:
                cur.execute("SELECT id FROM information_schema.processlist WHERE user = %s AND db = %s "
                            "AND id <> CONNECTION_ID()", (login, database))
                for (thread_id,) in cur.fetchall():
                    cur.execute(f"KILL CONNECTION {int(thread_id)}")
        finally:
            probe.close()

    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.execute(f"USE `{database}`")
            cur.execute("CREATE TABLE daten (id BIGINT PRIMARY KEY, tag DATE, zeit DATETIME(6), betrag DECIMAL(10,2), "
                        "name TEXT, ort VARCHAR(40)) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
            cur.executemany("INSERT INTO daten VALUES (%s, %s, %s, %s, %s, %s)", ROWS)
            cur.execute("CREATE TABLE zahlen (n BIGINT PRIMARY KEY)")
            cur.execute(f"INSERT INTO zahlen SELECT seq FROM seq_1_to_{ZAHLEN}")
            cur.execute(f"CREATE USER '{reader}'@'%' IDENTIFIED BY '{SECRET}'")
            cur.execute(f"GRANT SELECT ON `{database}`.`daten` TO '{reader}'@'%'")
            cur.execute(f"GRANT SELECT ON `{database}`.`zahlen` TO '{reader}'@'%'")
        yield Engine(
            kind="mariadb", database=database, admin_dsn=f"mysql://root@127.0.0.1:3306/{database}", reader=reader,
            reader_dsn=f"mysql://{reader}:{SECRET}@127.0.0.1:3306/{database}",
            series=lambda n: f"SELECT seq AS n FROM seq_1_to_{n}",
            # a scalar subquery that returns three rows once n > k: error 1242 at that row
            fails_after=lambda k: (f"SELECT z.n, (SELECT d.id FROM daten d WHERE z.n > {k}) AS x "
                                   "FROM zahlen z ORDER BY z.n"),
            slow_after=lambda n, k: f"SELECT seq AS n FROM seq_1_to_{n} WHERE seq <= {k} OR SLEEP(0.01) = 0",
            open_statements=open_statements, kill_sessions=kill_sessions,
        )
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{reader}'@'%'")
        admin.close()


@pytest.fixture(params=[pytest.param("postgres", marks=pytest.mark.postgres),
                        pytest.param("mariadb", marks=pytest.mark.mariadb)])
def engine(request: pytest.FixtureRequest) -> Engine:
    fixture = "pg_engine" if request.param == "postgres" else "maria_engine"
    value = request.getfixturevalue(fixture)
    assert isinstance(value, Engine)
    return value


@pytest.fixture
def reader(engine: Engine) -> Iterator[Conn]:
    connector = engine.connector(pool_max=1)
    yield connector
    connector.close()


@pytest.fixture
def big(engine: Engine) -> Iterator[Conn]:
    """A connector that may read the large generated results (pool of one: a leaked session blocks)."""
    connector = engine.connector(admin=engine.big_needs_admin, pool_max=1)
    yield connector
    connector.close()


def _collect(stream: StreamResult) -> pa.Table:
    return pa.Table.from_batches(list(stream.batches), schema=stream.schema)


def _wait_until(condition: Callable[[], bool], timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def _assert_no_secret(exc: BaseException) -> None:
    texts = [str(exc), repr(exc), *map(str, exc.args)]
    if isinstance(exc, ConnectorError):
        texts.append(exc.internal_detail)
    for text in texts:
        assert SECRET not in text, f"secret leaked in {text!r}"


def _works(connector: Conn) -> None:
    """The connector (and its one pooled session) answers a fresh query correctly."""
    table = connector.execute("SELECT COUNT(*) AS n FROM daten", max_rows=1, timeout_s=5).table
    assert table.column(0).to_pylist() == [3]


# ==================================================================================================
# (1) the same answer as execute(): types from the metadata, values exact
# ==================================================================================================


def test_stream_equals_execute(engine: Engine, reader: Conn) -> None:
    sql = "SELECT * FROM daten ORDER BY id"
    executed = reader.execute(sql, max_rows=10, timeout_s=10)
    stream = reader.stream(sql, max_rows=10, timeout_s=10)
    streamed = _collect(stream)
    assert stream.schema == EXPECTED_SCHEMA == executed.table.schema
    assert streamed.equals(executed.table)
    assert [tuple(r.values()) for r in streamed.to_pylist()] == ROWS
    assert not stream.truncated


@pytest.mark.parametrize("order", ["ASC", "DESC"])
def test_batch_of_one_row_keeps_the_metadata_types(engine: Engine, order: str) -> None:
    # DESC: the first batch holds only the all-NULL row; the schema must still come from the metadata
    connector = engine.connector(pool_max=1, batch_rows=1)
    try:
        sql = f"SELECT * FROM daten ORDER BY id {order}"
        stream = connector.stream(sql, max_rows=10, timeout_s=10)
        batches = list(stream.batches)
        assert [b.num_rows for b in batches] == [1, 1, 1]
        assert all(b.schema == EXPECTED_SCHEMA for b in batches)
        assert pa.Table.from_batches(batches).equals(connector.execute(sql, max_rows=10, timeout_s=10).table)
    finally:
        connector.close()


def test_aggregates_equal_execute(engine: Engine, reader: Conn) -> None:
    sql = ("SELECT sum(betrag) AS s, avg(betrag) AS a, count(*) AS n, min(tag) AS t, max(name) AS m "
           "FROM daten")
    executed = reader.execute(sql, max_rows=10, timeout_s=10).table
    streamed = _collect(reader.stream(sql, max_rows=10, timeout_s=10))
    assert streamed.schema == executed.schema
    assert streamed.equals(executed)
    assert streamed.column("s").to_pylist() == [Decimal("-99999987.49")]


@pytest.mark.postgres
def test_postgres_unconstrained_numeric_scale_is_fixed_by_the_first_batch(pg_engine: Engine) -> None:
    connector = pg_engine.connector(pool_max=1, batch_rows=2)
    try:
        fits = "SELECT x FROM (VALUES (1.25::numeric, 1), (2.5, 2), (3, 3)) v(x, o) ORDER BY o"
        stream = connector.stream(fits, max_rows=10, timeout_s=10)
        assert stream.schema.field("x").type == pa.decimal128(38, 2)
        assert _collect(stream).equals(connector.execute(fits, max_rows=10, timeout_s=10).table)
        # a later value that needs more fractional digits than the first batch had: an error, not rounding
        wider = "SELECT x FROM (VALUES (1::numeric, 1), (2, 2), (3.75, 3)) v(x, o) ORDER BY o"
        assert connector.execute(wider, max_rows=10, timeout_s=10).table.schema.field("x").type == \
            pa.decimal128(38, 2)
        stream = connector.stream(wider, max_rows=10, timeout_s=10)
        assert stream.schema.field("x").type == pa.decimal128(38, 0)
        iterator = iter(stream.batches)
        assert next(iterator).num_rows == 2
        with pytest.raises(QueryRejected) as info:
            next(iterator)
        assert "NUMERIC(p,s)" in info.value.internal_detail
        _works(connector)
    finally:
        connector.close()


# ==================================================================================================
# (2) incremental: the first batch arrives while the server still holds the rest
# ==================================================================================================


def test_first_batch_arrives_while_the_statement_is_still_open(engine: Engine, big: Conn) -> None:
    assert engine.open_statements() == 0
    stream = big.stream(engine.series(500_000), max_rows=1_000_000, timeout_s=30)
    iterator = iter(stream.batches)
    first = next(iterator)
    assert first.num_rows == BATCH
    assert first.column("n").to_pylist()[:3] == [1, 2, 3]
    # PostgreSQL: the session is idle in the transaction that holds the cursor (last query: FETCH);
    # MariaDB: the SELECT is still running, blocked writing the rest to the socket
    assert engine.open_statements() == 1
    second = next(iterator)
    assert second.num_rows == BATCH and second.column("n")[0].as_py() == BATCH + 1
    stream.close()
    assert _wait_until(lambda: engine.open_statements() == 0)
    _works(big)


def test_memory_stays_at_one_batch(engine: Engine, big: Conn) -> None:
    sql = engine.series(200_000)
    tracemalloc.start()
    try:
        stream = big.stream(sql, max_rows=1_000_000, timeout_s=60)
        rows = 0
        for batch in stream.batches:
            rows += batch.num_rows
        _, streamed_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        before, _ = tracemalloc.get_traced_memory()
        table = big.execute(sql, max_rows=1_000_000, timeout_s=60).table
        _, executed_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert rows == table.num_rows == 200_000
    # execute() holds all 200,000 rows as Python tuples at once, stream() one batch of 10,000
    assert streamed_peak * 5 < executed_peak - before, (streamed_peak, executed_peak - before)


# ==================================================================================================
# (3) truncation at max_rows
# ==================================================================================================


@pytest.mark.parametrize(("total", "max_rows", "sizes", "truncated"), [
    (100_000, 25, [25], True),
    (25, 25, [25], False),
    (24_999, 25_000, [10_000, 10_000, 4_999], False),
    (25_000, 25_000, [10_000, 10_000, 5_000], False),
    (25_001, 25_000, [10_000, 10_000, 5_000], True),
    (30_000, 20_000, [10_000, 10_000], True),
    (5, 0, [], True),
    (0, 10, [], False),
])
def test_truncation(engine: Engine, big: Conn, total: int, max_rows: int, sizes: list[int],
                    truncated: bool) -> None:
    sql = engine.series(total) if total else "SELECT id AS n FROM daten WHERE id < 0"
    stream = big.stream(sql, max_rows=max_rows, timeout_s=30)
    batches = list(stream.batches)
    assert [b.num_rows for b in batches] == sizes
    assert stream.truncated is truncated
    values = pa.Table.from_batches(batches, schema=stream.schema).column("n").to_pylist()
    assert values == list(range(1, sum(sizes) + 1))
    assert engine.open_statements() == 0 or _wait_until(lambda: engine.open_statements() == 0)
    _works(big)


@pytest.mark.mariadb
def test_mariadb_truncation_under_a_limit_keeps_the_session(maria_engine: Engine) -> None:
    connector = maria_engine.connector(admin=True, pool_max=1)
    assert isinstance(connector, MySQLConnector)
    try:
        _works(connector)
        thread_id = connector._idle.queue[0].thread_id()
        # the rewriter always adds LIMIT max_rows + 1: the end of the result is read, the session reused
        stream = connector.stream(maria_engine.series(100_000) + " LIMIT 25001", max_rows=25_000, timeout_s=30)
        assert sum(b.num_rows for b in stream.batches) == 25_000 and stream.truncated
        assert connector._idle.qsize() == 1 and connector._idle.queue[0].thread_id() == thread_id
        _works(connector)
    finally:
        connector.close()


# ==================================================================================================
# (4) closing early gives the session back clean
# ==================================================================================================


def test_close_early_returns_a_clean_session(engine: Engine, big: Conn) -> None:
    for _ in range(3):  # a pool of one: a session not given back would make the next query wait and fail
        stream = big.stream(engine.series(300_000), max_rows=1_000_000, timeout_s=30)
        iterator = iter(stream.batches)
        assert next(iterator).num_rows == BATCH
        stream.close()
        stream.close()  # idempotent
        assert list(iterator) == []  # iterating after close ends quietly
        _works(big)  # no rows of the abandoned result are left in the session
    assert _wait_until(lambda: engine.open_statements() == 0)
    if isinstance(big, PostgresConnector):
        stats = big._pool.get_stats()
        assert stats["pool_size"] == 1 and stats["pool_available"] == 1
    else:
        assert big._slots._value == 1  # type: ignore[attr-defined]


def test_dropped_streams_release_their_session(engine: Engine, big: Conn) -> None:
    stream = big.stream(engine.series(300_000), max_rows=1_000_000, timeout_s=30)
    del stream  # never iterated
    gc.collect()
    _works(big)
    stream = big.stream(engine.series(300_000), max_rows=1_000_000, timeout_s=30)
    iterator = iter(stream.batches)
    next(iterator)
    del stream, iterator  # half read
    gc.collect()
    _works(big)
    assert _wait_until(lambda: engine.open_statements() == 0)


def test_exhausted_stream_keeps_the_session(engine: Engine, big: Conn) -> None:
    _works(big)
    stream = big.stream(engine.series(25_000), max_rows=1_000_000, timeout_s=30)
    assert sum(b.num_rows for b in stream.batches) == 25_000 and not stream.truncated
    if isinstance(big, PostgresConnector):
        assert big._pool.get_stats()["pool_available"] == 1
    else:
        assert big._idle.qsize() == 1
    _works(big)


# ==================================================================================================
# (5) time limits: a slow statement and a slow consumer
# ==================================================================================================


def test_timeout_while_streaming(engine: Engine, big: Conn) -> None:
    # the first 15,000 rows come at once, every later row takes 10 ms: the second batch cannot finish
    stream = big.stream(engine.slow_after(100_000, 15_000), max_rows=1_000_000, timeout_s=1.5)
    started = time.monotonic()
    iterator = iter(stream.batches)
    assert next(iterator).num_rows == BATCH
    with pytest.raises(ConnectorTimeout) as info:
        next(iterator)
    assert time.monotonic() - started < 5
    assert "1.5 s" in str(info.value)
    assert _wait_until(lambda: engine.open_statements() == 0)
    _works(big)


def test_slow_consumer_hits_the_time_limit(engine: Engine, big: Conn) -> None:
    stream = big.stream(engine.series(300_000), max_rows=1_000_000, timeout_s=1.0)
    iterator = iter(stream.batches)
    next(iterator)
    time.sleep(1.3)
    with pytest.raises(ConnectorTimeout):
        next(iterator)
    assert _wait_until(lambda: engine.open_statements() == 0)
    _works(big)


def test_timeout_before_the_first_row(engine: Engine, reader: Conn) -> None:
    sleep = "SELECT pg_sleep(10) AS s" if engine.kind == "postgres" else "SELECT SLEEP(10) AS s"
    started = time.monotonic()
    with pytest.raises(ConnectorTimeout):
        reader.stream(sleep, max_rows=1, timeout_s=0.5)
    assert time.monotonic() - started < 4
    _works(reader)


def test_a_late_cancel_never_reaches_the_next_query(engine: Engine, reader: Conn) -> None:
    """The stream's own timer and the server's limit fire at the same moment, again and again.

    A cancel names a session, not a statement: one that landed after the session went back to the
    pool stopped the next caller's query (seen once in CI as a 5 s "timeout" of a COUNT(*)). A session
    a cancel was sent to is closed instead of pooled, so the query after it always succeeds.
    """
    sleep = "SELECT pg_sleep(10) AS s" if engine.kind == "postgres" else "SELECT SLEEP(10) AS s"
    for _ in range(12):
        with pytest.raises(ConnectorTimeout):
            reader.stream(sleep, max_rows=1, timeout_s=0.2)
        _works(reader)


# ==================================================================================================
# (6) errors while streaming: the right class, the database's text only in internal_detail, no secret
# ==================================================================================================


def test_error_mid_stream_is_rejected_without_secrets(engine: Engine, reader: Conn) -> None:
    stream = reader.stream(engine.fails_after(25_000), max_rows=1_000_000, timeout_s=30)
    received = 0
    with pytest.raises(QueryRejected) as info:
        for batch in stream.batches:
            received += batch.num_rows
    assert received == 2 * BATCH  # two whole batches arrived before the failing row
    error = info.value
    expected = "division by zero" if engine.kind == "postgres" else "Subquery returns more than 1 row"
    assert expected in error.internal_detail
    assert expected.lower() not in str(error).lower()
    _assert_no_secret(error)
    _works(reader)


def test_rejected_statement_fails_in_stream_call(engine: Engine, reader: Conn) -> None:
    for sql in ("SELECT gibtsnicht FROM daten", "SELECT * FROM gibtsnicht", f"SELECT '{SECRET}' + * FROM daten"):
        with pytest.raises(QueryRejected) as info:
            reader.stream(sql, max_rows=10, timeout_s=10)
        _assert_no_secret(info.value)
        assert "gibtsnicht" not in str(info.value)
    _works(reader)


def test_lost_session_mid_stream_is_unavailable(engine: Engine) -> None:
    connector = engine.connector(pool_max=1, batch_rows=1_000)
    try:
        # slow after the first 2,000 rows, so that the statement is still running when it is killed
        sleep = "pg_sleep(0.001)::text IS NOT NULL" if engine.kind == "postgres" else "SLEEP(0.001) = 0"
        stream = connector.stream(f"SELECT n FROM zahlen WHERE n <= 2000 OR {sleep} ORDER BY n",
                                  max_rows=1_000_000, timeout_s=30)
        iterator = iter(stream.batches)
        assert next(iterator).num_rows == 1_000
        engine.kill_sessions(engine.reader)
        with pytest.raises(ConnectorUnavailable) as info:
            for _ in iterator:
                pass
        _assert_no_secret(info.value)
        for _ in range(2):  # the pool replaces the killed session
            _works(connector)
    finally:
        connector.close()


def test_closed_connector_refuses_to_stream(engine: Engine) -> None:
    connector = engine.connector(pool_max=1)
    connector.close()
    with pytest.raises(ConnectorUnavailable):
        connector.stream("SELECT 1 AS x", max_rows=1, timeout_s=5)


# ==================================================================================================
# end to end: a masked export through the pipeline's streaming path, same as on DuckDB
# ==================================================================================================


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gateway.demo.data import generate_demo_database

    path = tmp_path_factory.mktemp("streaming") / "demo.duckdb"
    generate_demo_database(path, rows=3_000)
    return path


def _gateway(connector: Any, work: Path) -> Any:
    from gateway.audit import load_or_create_keys, open_store
    from gateway.catalog import load_catalog
    from gateway.pipeline import Gateway
    from gateway.policy.embedded import EmbeddedPolicyEngine
    from gateway.policy.engine import load_bundle
    from gateway.sql.masks import KeyRing

    root = Path(__file__).resolve().parents[1]
    catalog = load_catalog(root / "policies" / "catalog.yaml")
    keys = load_or_create_keys(work / "keys")
    return Gateway(catalog=catalog, policy=EmbeddedPolicyEngine(load_bundle(root / "policies", catalog)),
                   connectors={"demo": connector},
                   audit=open_store(f"sqlite:///{work / 'audit.sqlite'}", keys.signing_key), audit_keys=keys,
                   key_ring=KeyRing(master=bytes(range(32)), key_id="streaming"),
                   scanner=lambda values: list(values), statement_timeout_s=30)


def _export(connector: Any, work: Path, sql: str) -> tuple[pa.Table, pa.Table, int]:
    """(streamed export, JSON-path table, number of batches) for anna's query on one engine."""
    from gateway.identity.principal import Principal
    from gateway.pipeline import QueryRequest, RequestContext

    anna = Principal(subject="anna-sub", username="anna", office="Amt für Statistik und Stadtforschung",
                     roles=("analyst",), purposes=("statistik",), clearance="vertraulich")
    gateway = _gateway(connector, work)
    try:
        request = QueryRequest(sql=sql, purpose="statistik", dialect="postgres")
        stream = gateway.run_query_stream(anna, request, RequestContext(client_address=INTERNAL))
        batches = list(stream.batches)
        streamed = pa.Table.from_batches(batches, schema=stream.schema)
        whole = gateway.run_query(anna, request, RequestContext(client_address=INTERNAL)).table
        return streamed, whole, len(batches)
    finally:
        gateway.audit.close()


def _sorted(table: pa.Table) -> pa.Table:
    return table.sort_by([(name, "ascending") for name in table.column_names])


@pytest.mark.postgres
@pytest.mark.mariadb
def test_masked_export_through_the_pipeline_matches_duckdb(scenario: Path, tmp_path: Path) -> None:
    from connectors.duckdb import DuckDBConnector
    from gateway.demo.load import load_into

    sql = "SELECT * FROM einwohner"
    duck = DuckDBConnector(scenario)
    try:
        reference, _, _ = _export(duck, tmp_path / "duckdb", sql)
    finally:
        duck.close()  # load_into() opens the file with another configuration
    assert reference.num_rows > 1_000
    pg_name, maria_name = _unique("gw_stream_e2e"), _unique("gw_stream_e2e")
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{pg_name}" ENCODING UTF8 TEMPLATE template0')
    try:
        pg_dsn = f"postgresql://postgres@127.0.0.1:5432/{pg_name}"
        maria_dsn = f"mysql://root@127.0.0.1:3306/{maria_name}"
        load_into(pg_dsn, scenario)
        load_into(maria_dsn, scenario, schema=maria_name)
        engines: dict[str, Any] = {"postgres": PostgresConnector(pg_dsn, pool_max=1, batch_rows=400),
                                   "mariadb": MySQLConnector(maria_dsn, pool_max=1, batch_rows=400)}
        try:
            for kind, connector in engines.items():
                streamed, whole, count = _export(connector, tmp_path / kind, sql)
                assert count > 1, kind  # really streamed batch by batch
                assert streamed.schema == reference.schema, kind
                assert _sorted(streamed).equals(_sorted(reference)), kind
                assert _sorted(whole).equals(_sorted(streamed)), kind
        finally:
            for connector in engines.values():
                connector.close()
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
        conn = _maria_admin()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{maria_name}`")
        finally:
            conn.close()
        shutil.rmtree(tmp_path, ignore_errors=True)
