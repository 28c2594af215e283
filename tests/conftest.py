"""Shared fixtures: the real demo OIDC provider, a generated reference scenario, and the gateway app.

The gateway is exercised through its HTTP API (FastAPI's TestClient over ASGI, plus one real-socket
smoke test in test_demo_smoke.py) with access tokens obtained from the real provider by the
authorization code + PKCE flow.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.demo.data import generate_demo_database
from gateway.demo.oidc_provider import ProviderHandle
from gateway.runtime import Runtime, build_runtime
from tests.oidc_support import access_token, identity_settings, oidc_provider

__all__ = ["access_token", "identity_settings", "oidc_provider"]

DEMO_ROWS = 5_000


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding the reference scenario (5,000 residents) as `demo.duckdb`."""
    path = tmp_path_factory.mktemp("demo-data")
    generate_demo_database(path / "demo.duckdb", rows=DEMO_ROWS)
    return path


@pytest.fixture(scope="session")
def raw_db(demo_dir: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """Direct read access to the raw demo data, to compare answers against (a byte copy of the file:
    DuckDB refuses a second in-process connection with another configuration)."""
    copy = demo_dir.parent / f"{demo_dir.name}-raw.duckdb"
    shutil.copyfile(demo_dir / "demo.duckdb", copy)
    conn = duckdb.connect(str(copy), read_only=True)
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def runtime(demo_dir: Path, oidc_provider: ProviderHandle) -> Iterator[Runtime]:
    from gateway.identity.settings import IdentitySettings

    settings = Settings(
        data_dir=demo_dir,
        identity=IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience),
    )
    rt = build_runtime(settings, create_keys=True)
    yield rt
    rt.close()


@pytest.fixture(scope="session")
def client(runtime: Runtime) -> Iterator[TestClient]:
    # the client address is what the policy's residency rule sees: an address inside the city's network
    # (the default "testclient" is no address at all); tests from outside pass their own client
    with TestClient(create_app(runtime), raise_server_exceptions=False, client=("127.0.0.1", 50000)) as test_client:
        yield test_client


@dataclass
class Api:
    client: TestClient
    token: Callable[..., str]

    def query(self, user: str | None, sql: str, purpose: str, **extra: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return self.client.post("/v1/query", json={"sql": sql, "purpose": purpose, **extra}, headers=headers)

    def get(self, user: str | None, path: str, **params: Any) -> Any:
        headers = {"Authorization": f"Bearer {self.token(user)}"} if user else {}
        return self.client.get(path, headers=headers, params=params)


@pytest.fixture(scope="session")
def api(client: TestClient, access_token: Callable[..., str]) -> Api:
    return Api(client=client, token=access_token)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Record which database a test needs, for .ci/check_db_tests.py."""
    for item in items:
        for kind in ("postgres", "mariadb"):
            if item.get_closest_marker(kind) is not None:
                item.user_properties.append(("db", kind))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """With GATEWAY_REQUIRE_DATABASES=1 (CI), a skipped database test counts as failed (an expected
    failure, ``xfail``, is reported as skipped too: it ran, so it stays as it is)."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    needs_db = any(item.get_closest_marker(k) for k in ("postgres", "mariadb"))
    expected_failure = hasattr(report, "wasxfail")
    if report.skipped and needs_db and not expected_failure and os.environ.get("GATEWAY_REQUIRE_DATABASES") == "1":
        report.outcome = "failed"
        report.longrepr = "a test that needs PostgreSQL/MariaDB was skipped; CI requires it to run"
