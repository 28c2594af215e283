"""A database that goes away and comes back: the connectors, and the gateway's HTTP answers.

The outage is real: every connection goes through ``TcpForwarder``, a TCP relay on 127.0.0.1 to the
local PostgreSQL (5432) or MariaDB (3306). Closing it drops every relayed connection and refuses new
ones (nothing listens on the port); opening it again listens on the same port. No database is faked.

Connector level: a query during the outage raises ``ConnectorUnavailable`` within about one
``connect_timeout_s``, and the same connector object answers again once the forwarder is back, also
after psycopg_pool gave up reconnecting in the background (``reconnect_timeout``).

HTTP level: a runtime whose catalog puts ``einwohner`` on PostgreSQL or MariaDB (through the
forwarder, the DSN from ``dsn_file`` / ``dsn_env``) and keeps ``stadtteile`` on DuckDB. While the
database is down, ``POST /v1/query`` answers 503 ``connector_unavailable`` as problem+json and the
failure is audited, while ``/healthz`` and DuckDB queries still answer; a slow query answers 504
``query_timeout``. Every test needs its server (markers ``postgres`` / ``mariadb``) and fails, not
skips, when it is down.
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
import yaml
from fastapi.testclient import TestClient

from connectors.base import ConnectorError, ConnectorUnavailable
from connectors.mysql import MySQLConnector
from connectors.postgres import PostgresConnector
from gateway.api.app import create_app
from gateway.config import Settings
from gateway.demo.data import generate_demo_database
from gateway.demo.load import load_into
from gateway.demo.oidc_provider import ProviderHandle
from gateway.identity.settings import IdentitySettings
from gateway.runtime import Runtime, build_runtime
from tests.conftest import Api

REPO = Path(__file__).resolve().parents[1]
PG_PORT, MARIA_PORT = 5432, 3306
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA_ADMIN: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
#: residents in the small reference scenario loaded for the HTTP tests
RESIDENTS = 300
#: a count over einwohner on the external database (anna, purpose statistik)
EXTERNAL_SQL = "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil"
#: far too many rows for a 0.5 s limit: RESIDENTS ** 4 combinations
HEAVY_SQL = ("SELECT count(*) AS n FROM einwohner a CROSS JOIN einwohner b CROSS JOIN einwohner c "
             "CROSS JOIN einwohner d")
DUCKDB_SQL = "SELECT stadtteil, einwohner_gesamt FROM stadtteile"
CONNECT_TIMEOUT_S = 1.0

ENGINES = [pytest.param("postgres", marks=pytest.mark.postgres, id="postgres"),
           pytest.param("mariadb", marks=pytest.mark.mariadb, id="mariadb")]


class TcpForwarder:
    """A TCP relay from 127.0.0.1:``port`` to a real server, which can be closed and opened again.

    ``close()`` stops listening (new connections are refused) and shuts down every relayed connection
    in both directions; ``open()`` listens again on the same port. The port is taken below the
    ephemeral range, so no outgoing connection can hold it while the forwarder is closed.
    """

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.port = _free_port()
        self._listener: socket.socket | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._threads: list[threading.Thread] = []

    @property
    def is_open(self) -> bool:
        return self._listener is not None

    def open(self) -> None:
        if self._listener is not None:
            return
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.05)  # the accept loop looks at the stop flag this often
        self._listener = listener
        self._stop.clear()
        self._start(self._accept_loop, listener)

    def close(self) -> None:
        self._stop.set()
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            relayed, self._sockets = self._sockets, set()
        for sock in relayed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        threads, self._threads = self._threads, []
        for thread in threads:
            thread.join(timeout=5)

    def _start(self, target: Callable[..., None], *args: Any) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self._threads.append(thread)

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            upstream.settimeout(None)
            with self._lock:
                if self._stop.is_set():
                    client.close()
                    upstream.close()
                    return
                self._sockets |= {client, upstream}
            self._start(_pump, client, upstream)
            self._start(_pump, upstream, client)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    """Copy bytes one way until either side ends; then end both directions."""
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _free_port() -> int:
    low, _high = (int(v) for v in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    for _ in range(200):
        port = random.randint(20_000, min(low, 32_768) - 1)
        with socket.socket() as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free TCP port below the ephemeral range")


@contextlib.contextmanager
def forwarding(target_port: int) -> Iterator[TcpForwarder]:
    forwarder = TcpForwarder(target_port)
    forwarder.open()
    try:
        yield forwarder
    finally:
        forwarder.close()


def wait_until(check: Callable[[], bool], *, within_s: float, every_s: float = 0.1) -> float:
    """Call ``check`` until it returns True; the seconds that took (fails after ``within_s``)."""
    started = time.monotonic()
    while True:
        if check():
            return time.monotonic() - started
        if time.monotonic() - started > within_s:
            raise AssertionError(f"not within {within_s:g} s")
        time.sleep(every_s)


# ==================================================================================================
# connector level
# ==================================================================================================

Conn = PostgresConnector | MySQLConnector


def _connector(engine: str, port: int, **kwargs: Any) -> Conn:
    if engine == "postgres":
        return PostgresConnector(f"postgresql://postgres@127.0.0.1:{port}/test",
                                 connect_timeout_s=CONNECT_TIMEOUT_S, **kwargs)
    return MySQLConnector(f"mysql://root@127.0.0.1:{port}/test", connect_timeout_s=CONNECT_TIMEOUT_S, **kwargs)


def _answers(connector: Conn) -> bool:
    try:
        table = connector.execute("SELECT 41 + 1 AS x", max_rows=1, timeout_s=5).table
    except ConnectorUnavailable:
        return False
    return bool(table.column("x").to_pylist() == [42])


def _unavailable_within(connector: Conn, bound_s: float) -> ConnectorError:
    started = time.monotonic()
    with pytest.raises(ConnectorUnavailable) as info:
        connector.execute("SELECT 1 AS x", max_rows=1, timeout_s=5)
    assert time.monotonic() - started < bound_s
    return info.value


@pytest.fixture
def forwarder(request: pytest.FixtureRequest) -> Iterator[TcpForwarder]:
    with forwarding(PG_PORT if request.param == "postgres" else MARIA_PORT) as fwd:
        yield fwd


@pytest.mark.parametrize(("engine", "forwarder"), [
    pytest.param("postgres", "postgres", marks=pytest.mark.postgres, id="postgres"),
    pytest.param("mariadb", "mariadb", marks=pytest.mark.mariadb, id="mariadb"),
], indirect=["forwarder"])
class TestConnectorOutage:
    def test_down_fails_fast_and_the_same_connector_recovers(self, engine: str, forwarder: TcpForwarder) -> None:
        connector = _connector(engine, forwarder.port)
        try:
            assert _answers(connector)
            forwarder.close()
            for _ in range(3):  # several queries during the outage: each fails within a bound
                error = _unavailable_within(connector, CONNECT_TIMEOUT_S + 3)
                assert "not reachable" in str(error)
            with pytest.raises(ConnectorUnavailable):
                connector.stream("SELECT 1 AS x", max_rows=1, timeout_s=5)
            forwarder.open()
            wait_until(lambda: _answers(connector), within_s=3 * CONNECT_TIMEOUT_S + 3)
            for _ in range(5):  # and keeps answering (a pool of several sessions, all fresh)
                assert _answers(connector)
            stream = connector.stream("SELECT 7 AS x", max_rows=1, timeout_s=5)
            assert [b.to_pylist() for b in stream.batches] == [[{"x": 7}]]
        finally:
            connector.close()

    def test_connector_built_while_down_works_once_up(self, engine: str, forwarder: TcpForwarder) -> None:
        forwarder.close()
        connector = _connector(engine, forwarder.port)  # must not raise: the gateway starts without its databases
        try:
            _unavailable_within(connector, CONNECT_TIMEOUT_S + 3)
            forwarder.open()
            wait_until(lambda: _answers(connector), within_s=3 * CONNECT_TIMEOUT_S + 3)
        finally:
            connector.close()

    def test_connection_lost_mid_query_is_unavailable(self, engine: str, forwarder: TcpForwarder) -> None:
        connector = _connector(engine, forwarder.port)
        sleep = "SELECT pg_sleep(5) AS s" if engine == "postgres" else "SELECT SLEEP(5) AS s"
        errors: list[BaseException] = []

        def run() -> None:
            try:
                connector.execute(sleep, max_rows=1, timeout_s=10)
            except BaseException as exc:
                errors.append(exc)

        try:
            assert _answers(connector)
            worker = threading.Thread(target=run)
            worker.start()
            time.sleep(0.5)
            started = time.monotonic()
            forwarder.close()
            worker.join(timeout=10)
            assert not worker.is_alive() and time.monotonic() - started < 3
            assert len(errors) == 1 and isinstance(errors[0], ConnectorUnavailable), errors
            forwarder.open()
            wait_until(lambda: _answers(connector), within_s=3 * CONNECT_TIMEOUT_S + 3)
        finally:
            connector.close()


@pytest.mark.postgres
@pytest.mark.parametrize("forwarder", ["postgres"], indirect=True)
def test_postgres_pool_usable_after_it_gave_up_reconnecting(forwarder: TcpForwarder,
                                                            caplog: pytest.LogCaptureFixture) -> None:
    """An outage longer than ``reconnect_timeout``: psycopg_pool stops retrying that connection (and
    says so on its logger); the next query after the database is back grows the pool again at once."""
    caplog.set_level(logging.WARNING, logger="psycopg.pool")
    connector = PostgresConnector(f"postgresql://postgres@127.0.0.1:{forwarder.port}/test", pool_min=2,
                                  pool_max=2, connect_timeout_s=CONNECT_TIMEOUT_S, reconnect_timeout_s=0.5)
    try:
        assert _answers(connector)
        forwarder.close()
        _unavailable_within(connector, CONNECT_TIMEOUT_S + 3)
        wait_until(lambda: "reconnection attempt in pool" in caplog.text, within_s=10)
        time.sleep(1.5)  # well past the give-up: nothing retries in the background any more
        forwarder.open()
        started = time.monotonic()
        assert _answers(connector)  # the first query after the outage, not a later retry
        assert time.monotonic() - started < CONNECT_TIMEOUT_S + 0.5
        assert all(_answers(connector) for _ in range(4))
    finally:
        connector.close()


@pytest.mark.postgres
@pytest.mark.parametrize("forwarder", ["postgres"], indirect=True)
def test_postgres_recovers_within_one_connect_timeout_by_default(forwarder: TcpForwarder) -> None:
    """With the default ``reconnect_timeout`` (one ``connect_timeout_s``) the pool does not sit in a long
    retry delay after the database is back. psycopg_pool retries after 1, 2, 4, 8 s: after an 8 s outage a
    60 s ``reconnect_timeout`` (this connector's former setting) answered again only after 5-8 s (6.9 s
    measured), the default now at once."""
    connector = _connector("postgres", forwarder.port)
    try:
        assert _answers(connector)
        forwarder.close()
        outage_end = time.monotonic() + 8  # ends between the 4 s and the 8 s retry delay
        while time.monotonic() < outage_end:
            _unavailable_within(connector, CONNECT_TIMEOUT_S + 3)
        forwarder.open()
        assert wait_until(lambda: _answers(connector), within_s=10) < 2 * CONNECT_TIMEOUT_S + 1
    finally:
        connector.close()


# ==================================================================================================
# HTTP level: a gateway runtime with einwohner on PostgreSQL or MariaDB
# ==================================================================================================


@dataclass
class GatewayEnv:
    engine: str
    forwarder: TcpForwarder
    runtime: Runtime
    api: Api
    #: the reader's password: in the DSN, and nowhere else
    secret: str


@dataclass(frozen=True)
class ExternalDatabase:
    """The reference scenario loaded into a fresh database, readable by a role with a password."""

    engine: str
    database: str
    reader: str
    secret: str

    def dsn(self, port: int) -> str:
        if self.engine == "postgres":
            return f"postgresql://{self.reader}:{self.secret}@127.0.0.1:{port}/{self.database}"
        return f"mysql://{self.reader}:{self.secret}@127.0.0.1:{port}/{self.database}"


def _small_scenario(directory: Path) -> Path:
    source = directory / "demo.duckdb"
    if not source.exists():
        generate_demo_database(source, rows=RESIDENTS)
    return source


@contextlib.contextmanager
def external_database(engine: str, source: Path) -> Iterator[ExternalDatabase]:
    """Load ``source`` into a fresh PostgreSQL database (schema ``melde``) or MariaDB database, with a
    SELECT-only reader whose password is distinctive; both are dropped afterwards."""
    token = secrets.token_hex(4)
    database, reader = f"gw_outage_{token}", f"gw_secret_{token}"
    secret = f"Sekr3t-{secrets.token_hex(8)}"
    if engine == "postgres":
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{database}" ENCODING UTF8 TEMPLATE template0')
            admin.execute(f"CREATE ROLE \"{reader}\" LOGIN PASSWORD '{secret}'")
        try:
            admin_dsn = f"postgresql://postgres@127.0.0.1:5432/{database}"
            load_into(admin_dsn, source, schema="melde")
            with psycopg.connect(admin_dsn, autocommit=True) as conn:
                conn.execute(f'GRANT USAGE ON SCHEMA melde TO "{reader}"')
                conn.execute(f'GRANT SELECT ON ALL TABLES IN SCHEMA melde TO "{reader}"')
            yield ExternalDatabase(engine, database, reader, secret)
        finally:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
                admin.execute(f'DROP ROLE IF EXISTS "{reader}"')
        return
    admin = pymysql.connect(**MARIA_ADMIN, charset="utf8mb4", autocommit=True)
    try:
        load_into("mysql://root@127.0.0.1:3306/test", source, schema=database)
        with admin.cursor() as cur:
            cur.execute(f"CREATE USER '{reader}'@'%' IDENTIFIED BY '{secret}'")
            cur.execute(f"GRANT SELECT ON `{database}`.* TO '{reader}'@'%'")
        yield ExternalDatabase(engine, database, reader, secret)
    finally:
        with admin.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{database}`")
            cur.execute(f"DROP USER IF EXISTS '{reader}'@'%'")
        admin.close()


@contextlib.contextmanager
def gateway_env(engine: str, base: Path, oidc_provider: ProviderHandle, access_token: Callable[..., str], *,
                dsn_source: str) -> Iterator[GatewayEnv]:
    """A runtime whose catalog puts ``einwohner`` on a connector ``extern`` (the database behind a
    forwarder, DSN from ``dsn_source``: ``env`` or ``file``) and keeps the rest on DuckDB."""
    data = base / "data"
    policies = data / "policies"
    data.mkdir(parents=True)
    shutil.copytree(REPO / "policies", policies)
    source = _small_scenario(base)
    shutil.copyfile(source, data / "demo.duckdb")
    with external_database(engine, source) as db, forwarding(PG_PORT if engine == "postgres" else MARIA_PORT) as fwd:
        connector: dict[str, Any] = {"kind": "postgres" if engine == "postgres" else "mysql"}
        if engine == "postgres":
            connector["schema"] = "melde"
        variable = f"GW_TEST_EXTERN_DSN_{secrets.token_hex(4).upper()}"
        if dsn_source == "env":
            connector["dsn_env"] = variable
            os.environ[variable] = db.dsn(fwd.port)
        else:
            secret_file = base / "extern.dsn"
            secret_file.write_text(db.dsn(fwd.port) + "\n", encoding="utf-8")
            secret_file.chmod(0o400)
            connector["dsn_file"] = str(secret_file)
        catalog_path = policies / "catalog.yaml"
        catalog = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
        catalog["connectors"]["extern"] = connector
        catalog["datasets"]["einwohner"]["connector"] = "extern"
        catalog_path.write_text(yaml.safe_dump(catalog, allow_unicode=True, sort_keys=False), encoding="utf-8")
        settings = Settings(
            data_dir=data, catalog_path=catalog_path, policy_dir=policies,
            identity=IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience),
        )
        runtime = build_runtime(settings, create_keys=True, scanner=lambda values: list(values))
        try:
            with TestClient(create_app(runtime), raise_server_exceptions=False,
                            client=("127.0.0.1", 50000)) as client:
                yield GatewayEnv(engine, fwd, runtime, Api(client=client, token=access_token), db.secret)
        finally:
            runtime.close()
            os.environ.pop(variable, None)


@pytest.fixture(scope="module", params=ENGINES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, oidc_provider: ProviderHandle,
        access_token: Callable[..., str]) -> Iterator[GatewayEnv]:
    # PostgreSQL's DSN from a secret file, MariaDB's from the environment (tests/test_credentials.py: the reverse)
    source = "file" if request.param == "postgres" else "env"
    with gateway_env(request.param, tmp_path_factory.mktemp(f"outage-{request.param}"), oidc_provider,
                     access_token, dsn_source=source) as built:
        yield built


@pytest.fixture
def database_down(env: GatewayEnv) -> Iterator[GatewayEnv]:
    env.forwarder.close()
    try:
        yield env
    finally:
        env.forwarder.open()


def audit_events(runtime: Runtime, request_id: str) -> list[dict[str, Any]]:
    return [r.event_data for r in runtime.gateway.audit.iter_records() if r.event_data.get("request_id") == request_id]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"].endswith("/" + code)
    assert "Traceback" not in response.text and "psycopg" not in response.text and "pymysql" not in response.text
    return body


def assert_failure_audited(runtime: Runtime, request_id: str, code: str) -> None:
    events = audit_events(runtime, request_id)
    assert len(events) == 1, events
    event = events[0]
    assert event["decision"] == "error" and event["error_code"] == code
    assert event["connector"] == "extern" and event["datasets"] == ["einwohner"]
    assert event["rows_returned"] == 0


def query_answers(env: GatewayEnv) -> bool:
    response = env.api.query("anna", EXTERNAL_SQL, "statistik")
    if response.status_code == 503:
        return False
    assert response.status_code == 200, response.text
    assert sum(row[1] for row in response.json()["rows"]) == RESIDENTS  # rows are [stadtteil, n]
    return True


def test_external_dataset_answers_through_the_forwarder(env: GatewayEnv) -> None:
    assert query_answers(env)
    response = env.api.query("anna", DUCKDB_SQL, "statistik")
    assert response.status_code == 200 and response.json()["rows"]


@pytest.mark.parametrize("answer_format", ["json", "csv"])
def test_database_down_answers_503_problem_and_is_audited(database_down: GatewayEnv, answer_format: str) -> None:
    env = database_down
    # json: the whole answer (execute); csv: the streamed path (stream), whose first batch comes first
    response = env.api.client.post("/v1/query", params={"format": answer_format},
                                   json={"sql": EXTERNAL_SQL, "purpose": "statistik"},
                                   headers={"Authorization": f"Bearer {env.api.token('anna')}"})
    body = assert_problem(response, 503, "connector_unavailable")
    assert "try again later" in body["detail"] and body["request_id"] in body["detail"]
    assert_failure_audited(env.runtime, body["request_id"], "connector_unavailable")
    # the rest of the gateway still answers
    health = env.api.client.get("/healthz")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    duck = env.api.query("anna", DUCKDB_SQL, "statistik")
    assert duck.status_code == 200 and len(duck.json()["rows"]) > 0


def test_answers_again_once_the_database_is_back(env: GatewayEnv) -> None:
    env.forwarder.close()
    try:
        assert not query_answers(env)
    finally:
        env.forwarder.open()
    # PostgreSQL: the runtime's pool waits connect_timeout_s (5 s) per query; it is back within two
    wait_until(lambda: query_answers(env), within_s=15, every_s=0.2)


@pytest.fixture
def short_timeout(env: GatewayEnv) -> Iterator[GatewayEnv]:
    """The runtime's per-query limit (``statement_timeout_seconds``) at 0.5 s for one test."""
    gateway = env.runtime.gateway
    previous, gateway.statement_timeout_s = gateway.statement_timeout_s, 0.5
    try:
        yield env
    finally:
        gateway.statement_timeout_s = previous


def test_slow_query_answers_504_problem_and_is_audited(short_timeout: GatewayEnv) -> None:
    env = short_timeout
    started = time.monotonic()
    response = env.api.query("anna", HEAVY_SQL, "statistik")
    body = assert_problem(response, 504, "query_timeout")
    assert time.monotonic() - started < 5
    assert "narrow the query" in body["detail"]
    assert_failure_audited(env.runtime, body["request_id"], "query_timeout")
    assert query_answers(env)  # the session the statement was cancelled on did not break the pool
