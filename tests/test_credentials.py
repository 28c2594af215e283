"""Database credentials: where the gateway reads them, and that they never leave it.

A connector's DSN comes from ``dsn_env`` or ``dsn_file`` (``gateway.runtime._dsn``), never from the
catalog. The password in it must not appear in any HTTP answer (body or header), log line (DEBUG and
up, including the drivers' and psycopg_pool's loggers) or audit record: not after a successful query,
a query the database rejects, a timeout or an outage, and not when the DSN itself is malformed.

The live tests load the small reference scenario into PostgreSQL or MariaDB with a reader whose
password is a distinctive marker (``tests/test_connector_outage.py``, ``gateway_env``). PostgreSQL
here trusts local connections, so its password is only a marker there; MariaDB checks it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from connectors.base import ConnectorError, ConnectorTimeout, ConnectorUnavailable, QueryRejected, scrub_credentials
from connectors.mysql import MySQLConnector
from connectors.postgres import PostgresConnector
from gateway.catalog import ConnectorConfig
from gateway.demo.oidc_provider import ProviderHandle
from gateway.pipeline import _connector_error
from gateway.runtime import _dsn
from tests.test_connector_outage import (
    ENGINES,
    EXTERNAL_SQL,
    HEAVY_SQL,
    GatewayEnv,
    assert_failure_audited,
    assert_problem,
    gateway_env,
)

#: a password with an unencoded '/': URL parsers split it, and their errors quote a piece of it
MALFORMED_PASSWORD = "Zq7Geh/eim9Xw"
MALFORMED_PIECES = ("Zq7Geh", "eim9Xw")


# ==================================================================================================
# where the DSN comes from
# ==================================================================================================


def test_dsn_from_an_environment_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    dsn = "postgresql://gw_reader:Env-Geheimnis@db.intern:5432/melde"
    monkeypatch.setenv("GW_TEST_MELDE_DSN", dsn)
    assert _dsn("melde", ConnectorConfig(kind="postgres", dsn_env="GW_TEST_MELDE_DSN")) == dsn


def test_dsn_from_a_secret_file(tmp_path: Path) -> None:
    dsn = "mysql://gw_reader:Datei-Geheimnis@db.intern:3306/sozial"
    secret_file = tmp_path / "sozial.dsn"
    secret_file.write_text(dsn + "\n", encoding="utf-8")  # one line, as secret stores write it
    secret_file.chmod(0o400)
    assert _dsn("sozial", ConnectorConfig(kind="mysql", dsn_file=str(secret_file))) == dsn


@pytest.mark.postgres
@pytest.mark.mariadb
def test_pool_settings_come_from_the_catalog(monkeypatch: pytest.MonkeyPatch) -> None:
    from gateway.catalog import Catalog
    from gateway.config import Settings
    from gateway.runtime import build_connectors

    monkeypatch.setenv("GW_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("GW_TEST_MY_DSN", "mysql://root@127.0.0.1:3306/test")
    catalog = Catalog.model_validate({"connectors": {
        "pg": {"kind": "postgres", "dsn_env": "GW_TEST_PG_DSN", "pool_max": 2, "connect_timeout_s": 1.5},
        "my": {"kind": "mysql", "dsn_env": "GW_TEST_MY_DSN", "pool_max": 3, "connect_timeout_s": 2.5},
    }, "datasets": {}})
    connectors = build_connectors(Settings(), catalog)
    try:
        pg, my = connectors["pg"], connectors["my"]
        assert isinstance(pg, PostgresConnector) and isinstance(my, MySQLConnector)
        assert pg._pool.max_size == 2 and pg._connect_timeout_s == 1.5
        assert my._slots._value == 3 and my._connect_timeout_s == 2.5  # a fresh pool: every slot free
    finally:
        for connector in connectors.values():
            connector.close()
    with pytest.raises(ValueError, match="pool_max"):
        ConnectorConfig(kind="postgres", dsn_env="X", pool_max=0)


@pytest.mark.parametrize(("config", "message"), [
    ({}, "set exactly one of dsn_env or dsn_file"),
    ({"dsn_env": "GW_TEST_A", "dsn_file": "/run/secrets/a"}, "set exactly one of dsn_env or dsn_file"),
    ({"dsn_env": "GW_TEST_UNSET_DSN"}, "environment variable GW_TEST_UNSET_DSN is not set"),
    ({"dsn_file": "/nonexistent/gw-test.dsn"}, "DSN file /nonexistent/gw-test.dsn does not exist"),
])
def test_dsn_source_errors_say_what_to_set(config: dict[str, str], message: str,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GW_TEST_UNSET_DSN", raising=False)
    with pytest.raises(ValueError, match=message):
        _dsn("melde", ConnectorConfig.model_validate({"kind": "postgres", **config}))


@pytest.mark.parametrize(("entry", "message"), [
    ({"kind": "postgres", "dsn_env": "X", "password": "Geheim-1"}, "password"),
    ({"kind": "mysql", "dsn": "mysql://gw:Geheim-1@db/x"}, "dsn"),
    ({"kind": "postgres", "dsn_env": "X", "pool_size": 8}, "pool_size"),
    ({"kind": "duckdb", "database": "demo.duckdb", "pool_max": 2}, "not a setting of a duckdb connector"),
    ({"kind": "trino", "host": "t", "pool_max": 2}, "not a setting of a trino connector"),
    ({"kind": "oracle", "dsn_env": "X"}, "kind 'oracle' is not supported"),
])
def test_catalog_refuses_secrets_typos_and_foreign_connector_fields(entry: dict[str, Any], message: str,
                                                                    tmp_path: Path) -> None:
    """Secrets never sit in the reviewed catalog, and a misspelt setting never falls back to a default.
    The error names the place, never the value found there (it may be the secret)."""
    import yaml

    from gateway.catalog import load_catalog

    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump({"connectors": {"amt": entry}, "datasets": {}}), encoding="utf-8")
    with pytest.raises(ValueError, match=message) as caught:
        load_catalog(path)
    assert "connectors.amt" in str(caught.value)
    assert "Geheim-1" not in str(caught.value) and caught.value.__cause__ is None


def test_empty_environment_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GW_TEST_EMPTY_DSN", "")
    with pytest.raises(ValueError, match="GW_TEST_EMPTY_DSN is not set"):
        _dsn("melde", ConnectorConfig(kind="postgres", dsn_env="GW_TEST_EMPTY_DSN"))


# ==================================================================================================
# malformed DSNs and the scrub helper (no server needed: construction refuses them)
# ==================================================================================================


def _texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), *map(str, exc.args)]
    if isinstance(exc, ConnectorError):
        texts.append(exc.internal_detail)
    return texts


@pytest.mark.parametrize(("factory", "dsn"), [
    (MySQLConnector, f"mysql://gw:{MALFORMED_PASSWORD}@db:3306/sozial"),
    (MySQLConnector, f"mysql://gw:{MALFORMED_PASSWORD}@[::1/sozial"),
    (MySQLConnector, "mysql://gw:1234/eim9Xw@db:3306/sozial"),
    (PostgresConnector, f"postgresql://gw:{MALFORMED_PASSWORD}@db:5432/melde"),
    (PostgresConnector, "postgresql://gw:1234/eim9Xw@db:5432/melde"),
    (PostgresConnector, "postgresql://gw:Zq7Geh eim9Xw@db:5432/melde"),
    (PostgresConnector, "postgresql://gw:Zq7Geh:eim9Xw@[::1/melde"),
    (PostgresConnector, "host=db user=gw password='Zq7Geh eim9Xw"),
], ids=["mysql-slash", "mysql-ipv6", "mysql-digits-slash", "pg-slash", "pg-digits-slash", "pg-space", "pg-ipv6",
        "pg-unterminated-quote"])
def test_malformed_dsn_is_refused_without_quoting_the_password(
        factory: Callable[..., Any], dsn: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ConnectorUnavailable) as info:
        factory(dsn, connect_timeout_s=1)
    assert "DSN" in str(info.value) and "percent-encode" in str(info.value)
    for text in [*_texts(info.value), caplog.text]:
        for piece in MALFORMED_PIECES:
            assert piece not in text, f"a piece of the password in {text!r}"


@pytest.mark.parametrize(("text", "expected"), [
    ("connect postgresql://gw:Geheim@db:5432/melde failed", "connect postgresql://***@db:5432/melde failed"),
    ("mysql+pymysql://gw:Ge/he@im@db/x", "mysql+pymysql://***@db/x"),
    ("host=db password=Geheim user=gw", "host=db password=*** user=gw"),
    ("host=db password = 'Ge heim' user=gw", "host=db password = *** user=gw"),
    ("postgresql://db/melde?password=Geheim&sslmode=require", "postgresql://db/melde?password=***&sslmode=require"),
    ("PGPASSWORD=Geheim MYSQL_PWD=Geheim", "PGPASSWORD=*** MYSQL_PWD=***"),
    ("password authentication failed for user gw", "password authentication failed for user gw"),
    ("postgresql://db:5432/melde and mail@example.org", "postgresql://db:5432/melde and mail@example.org"),
])
def test_scrub_credentials(text: str, expected: str) -> None:
    assert scrub_credentials(text) == expected


@pytest.mark.parametrize(("error", "level", "code"), [
    (ConnectorUnavailable("the PostgreSQL database is not reachable",
                          internal_detail="OperationalError: postgresql://gw:Geheim@db:5432/melde password=Geheim"),
     logging.WARNING, "connector_unavailable"),
    (ConnectorTimeout("the query ran longer than 1 s", internal_detail="QueryCanceled: password=Geheim"),
     logging.INFO, "query_timeout"),
    (QueryRejected("the database rejected the query", internal_detail="DataError: mysql://gw:Geheim@db/x"),
     logging.INFO, "database_rejected_query"),
])
def test_connector_failure_is_logged_for_the_operator_without_credentials(
        error: ConnectorError, level: int, code: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="gateway.pipeline")
    mapped = _connector_error(error, "req-4711")
    assert mapped.code == code and "Geheim" not in mapped.detail
    [record] = [r for r in caplog.records if r.name == "gateway.pipeline"]
    assert record.levelno == level
    line = record.getMessage()
    assert "req-4711" in line and type(error).__name__ in line
    assert error.internal_detail.split(":")[0] in line  # the detail is there, for the operator
    assert "Geheim" not in line and "***" in line


# ==================================================================================================
# through the HTTP API, against the real databases
# ==================================================================================================


@pytest.fixture(scope="module", params=ENGINES)
def env(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, oidc_provider: ProviderHandle,
        access_token: Callable[..., str]) -> Iterator[GatewayEnv]:
    # the reverse of tests/test_connector_outage.py: PostgreSQL's DSN from the environment, MariaDB's from a file
    source = "env" if request.param == "postgres" else "file"
    with gateway_env(request.param, tmp_path_factory.mktemp(f"credentials-{request.param}"), oidc_provider,
                     access_token, dsn_source=source) as built:
        yield built


def _assert_secret_absent(secret: str, responses: list[Any], caplog: pytest.LogCaptureFixture,
                          env: GatewayEnv) -> None:
    for response in responses:
        assert secret not in response.text
        for name, value in response.headers.items():
            assert secret not in value, f"password in header {name}"
    assert secret not in caplog.text
    for record in env.runtime.gateway.audit.iter_records():
        assert secret not in record.event_json


def test_password_never_leaves_the_gateway(env: GatewayEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    api, gateway = env.api, env.runtime.gateway
    responses = []

    ok = api.query("anna", EXTERNAL_SQL, "statistik")
    assert ok.status_code == 200, ok.text
    csv = api.client.post("/v1/query", params={"format": "csv"}, json={"sql": EXTERNAL_SQL, "purpose": "statistik"},
                          headers={"Authorization": f"Bearer {api.token('anna')}"})
    assert csv.status_code == 200, csv.text
    responses += [ok, csv]

    # the database refuses the statement (a scalar subquery with many rows): its text stays in the log
    rejected = api.query("anna", "SELECT stadtteil FROM einwohner WHERE stadtteil = (SELECT stadtteil FROM einwohner)",
                         "statistik")
    assert_problem(rejected, 422, "database_rejected_query")
    responses.append(rejected)

    previous, gateway.statement_timeout_s = gateway.statement_timeout_s, 0.5
    try:
        slow = api.query("anna", HEAVY_SQL, "statistik")
    finally:
        gateway.statement_timeout_s = previous
    assert_problem(slow, 504, "query_timeout")
    responses.append(slow)

    env.forwarder.close()
    try:
        down = api.query("anna", EXTERNAL_SQL, "statistik")
    finally:
        env.forwarder.open()
    body = assert_problem(down, 503, "connector_unavailable")
    assert_failure_audited(env.runtime, body["request_id"], "connector_unavailable")
    responses.append(down)

    # the operator's log line for the outage: request id, error class and the (scrubbed) detail
    lines = [r.getMessage() for r in caplog.records
             if r.name == "gateway.pipeline" and body["request_id"] in r.getMessage()]
    assert len(lines) == 1 and "ConnectorUnavailable" in lines[0] and "(detail: " in lines[0]

    _assert_secret_absent(env.secret, responses, caplog, env)
