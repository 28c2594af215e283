"""Pseudonyms computed ahead (gateway.sql.pseudonym_replica): the same answers, never stale, never named.

Two gateways over byte copies of the reference scenario (same keys): one reads the pseudonym replica
(the default), one computes every pseudonym in SQL. Queries go through the HTTP API with tokens from the
real demo OIDC provider.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.catalog import Catalog, load_catalog
from gateway.config import DEFAULT_POLICY_DIR, Settings
from gateway.demo.oidc_provider import ProviderHandle
from gateway.identity.principal import Principal
from gateway.identity.settings import IdentitySettings
from gateway.pipeline import QueryRequest, RequestContext
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import load_bundle
from gateway.policy.inputs import build_input
from gateway.runtime import Runtime, build_connectors, build_replicas_for, build_runtime
from gateway.sql.masks import KeyRing
from gateway.sql.pseudonym_replica import REPLICA_ALIAS, build_replicas, specs_from_policy_data
from gateway.sql.rewrite import clear_template_cache, derived_table_sql

ANNA = Principal(subject="anna", username="anna", office="Amt für Statistik und Stadtforschung",
                 roles=("analyst",), purposes=("statistik",), clearance="vertraulich")
INTERNAL = RequestContext(client_address="127.0.0.1")

QUERIES = [
    ("anna", "statistik", "SELECT * FROM einwohner ORDER BY id"),
    ("anna", "statistik", "SELECT vorname, nachname, count(*) AS n FROM einwohner GROUP BY 1, 2 ORDER BY 1, 2"),
    ("anna", "statistik", "SELECT a.id, b.nachname FROM einwohner a JOIN einwohner b ON a.id = b.id "
                          "WHERE a.stadtteil = 'Mitte' ORDER BY 1"),
    ("anna", "statistik", "WITH t AS (SELECT id, vorname FROM einwohner) SELECT vorname, count(DISTINCT id) "
                          "AS n FROM t GROUP BY vorname ORDER BY vorname"),
    ("paula", "stadtplanung", "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil ORDER BY 1"),
]


def _runtime(data_dir: Path, oidc: ProviderHandle, *, precompute: bool) -> Runtime:
    settings = Settings(data_dir=data_dir, precompute_pseudonyms=precompute,
                        identity=IdentitySettings(issuer=oidc.issuer, audience=oidc.audience))
    return build_runtime(settings, create_keys=True)


@pytest.fixture(scope="module")
def twin_dirs(demo_dir: Path, runtime: Runtime, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two copies of the scenario with the same keys (the session runtime made them) and no replica yet."""
    dirs = []
    for name in ("with-replica", "sql-only"):
        target = tmp_path_factory.mktemp(name)
        shutil.copyfile(demo_dir / "demo.duckdb", target / "demo.duckdb")
        shutil.copytree(demo_dir / "keys", target / "keys")
        dirs.append(target)
    return dirs[0], dirs[1]


@pytest.fixture(scope="module")
def twins(twin_dirs: tuple[Path, Path], oidc_provider: ProviderHandle) -> Iterator[tuple[Runtime, Runtime]]:
    with_replica = _runtime(twin_dirs[0], oidc_provider, precompute=True)
    sql_only = _runtime(twin_dirs[1], oidc_provider, precompute=False)
    yield with_replica, sql_only
    with_replica.close()
    sql_only.close()


@pytest.fixture(scope="module")
def twin_clients(twins: tuple[Runtime, Runtime]) -> Iterator[tuple[TestClient, TestClient]]:
    """The two gateways' HTTP APIs (the app closes its runtime when the client ends)."""
    with (TestClient(create_app(twins[0]), raise_server_exceptions=False, client=("127.0.0.1", 50000)) as a,
          TestClient(create_app(twins[1]), raise_server_exceptions=False, client=("127.0.0.1", 50000)) as b):
        yield a, b


@pytest.mark.parametrize(("user", "purpose", "sql"), QUERIES)
def test_answers_through_the_api_are_the_same_with_and_without_the_replica(
    twin_clients: tuple[TestClient, TestClient], access_token: Callable[..., str], user: str, purpose: str,
    sql: str,
) -> None:
    answers = []
    for client in twin_clients:
        response = client.post("/v1/query", json={"sql": sql, "purpose": purpose},
                               headers={"Authorization": f"Bearer {access_token(user)}"})
        assert response.status_code == 200, response.text
        answers.append(response.json())
    assert answers[0]["columns"] == answers[1]["columns"]
    assert answers[0]["rows"] == answers[1]["rows"]
    assert answers[0]["rows"], "the comparison needs rows"


def test_the_plan_reads_the_replica_and_the_sql_only_gateway_hashes(twins: tuple[Runtime, Runtime]) -> None:
    request = QueryRequest(sql="SELECT id, vorname FROM einwohner", purpose="statistik")
    with_replica, sql_only = twins
    _, plan, _ = with_replica.gateway.plan(ANNA, request, INTERNAL)
    assert f'"{REPLICA_ALIAS}"."main"."einwohner"' in plan.sql and "sha256" not in plan.sql.lower()
    _, plan, _ = sql_only.gateway.plan(ANNA, request, INTERNAL)
    assert REPLICA_ALIAS not in plan.sql and "sha256" in plan.sql.lower()


def test_a_changed_source_is_never_read_through_its_replica(twins: tuple[Runtime, Runtime],
                                                            twin_dirs: tuple[Path, Path]) -> None:
    runtime = twins[0]
    source = twin_dirs[0] / "demo.duckdb"
    request = QueryRequest(sql="SELECT id, vorname, nachname FROM einwohner ORDER BY id", purpose="statistik")
    before = runtime.gateway.run_query(ANNA, request, INTERNAL).table
    original = source.stat()
    try:
        os.utime(source, ns=(original.st_atime_ns, original.st_mtime_ns + 1_000_000_000))
        _, plan, _ = runtime.gateway.plan(ANNA, request, INTERNAL)  # the plan cache must not answer
        assert REPLICA_ALIAS not in plan.sql and "sha256" in plan.sql.lower()
        assert runtime.gateway.run_query(ANNA, request, INTERNAL).table.equals(before)
    finally:
        os.utime(source, ns=(original.st_atime_ns, original.st_mtime_ns))
    _, plan, _ = runtime.gateway.plan(ANNA, request, INTERNAL)
    assert REPLICA_ALIAS in plan.sql


def test_an_erased_person_is_gone_after_the_restart(demo_dir: Path, runtime: Runtime, tmp_path: Path,
                                                    oidc_provider: ProviderHandle) -> None:
    shutil.copyfile(demo_dir / "demo.duckdb", tmp_path / "demo.duckdb")
    shutil.copytree(demo_dir / "keys", tmp_path / "keys")
    request = QueryRequest(sql="SELECT id FROM einwohner", purpose="statistik")
    first = _runtime(tmp_path, oidc_provider, precompute=True)
    try:
        pseudonyms = set(first.gateway.run_query(ANNA, request, INTERNAL).table.column("id").to_pylist())
        _, plan, _ = first.gateway.plan(ANNA, request, INTERNAL)
        assert REPLICA_ALIAS in plan.sql
    finally:
        first.close()
    with duckdb.connect(str(tmp_path / "demo.duckdb")) as con:  # the office erases one person
        con.execute("DELETE FROM einwohner WHERE id = (SELECT min(id) FROM einwohner)")
    second = _runtime(tmp_path, oidc_provider, precompute=True)
    try:
        _, plan, _ = second.gateway.plan(ANNA, request, INTERNAL)
        assert REPLICA_ALIAS in plan.sql  # rebuilt for the new source
        after = set(second.gateway.run_query(ANNA, request, INTERNAL).table.column("id").to_pylist())
    finally:
        second.close()
    assert len(after) == len(pseudonyms) - 1 and after < pseudonyms


@pytest.fixture()
def catalog() -> Catalog:
    return load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml")


def test_a_replica_made_with_another_key_is_not_used(catalog: Catalog, demo_dir: Path, tmp_path: Path) -> None:
    source = tmp_path / "demo.duckdb"
    shutil.copyfile(demo_dir / "demo.duckdb", source)
    bundle = load_bundle(DEFAULT_POLICY_DIR, catalog)
    old = KeyRing(master=b"o" * 32, key_id="2025")
    connector = catalog.datasets["einwohner"].connector
    replicas = build_replicas(catalog, tmp_path, old, specs_from_policy_data(bundle.data, catalog),
                              source_files={connector: source})
    decision = EmbeddedPolicyEngine(bundle).decide(
        build_input(ANNA, "statistik", ["einwohner"], client_address="127.0.0.1"))
    clear_template_cache()
    with_old = derived_table_sql("einwohner", decision, catalog, dialect="duckdb", keys=old,
                                 purpose="statistik", replicas=replicas)
    assert REPLICA_ALIAS in with_old
    rotated = old.rotate(b"n" * 32, "2026")
    same_id_other_key = KeyRing(master=b"x" * 32, key_id="2025")
    for keys in (rotated, same_id_other_key):
        sql = derived_table_sql("einwohner", decision, catalog, dialect="duckdb", keys=keys,
                                purpose="statistik", replicas=replicas)
        assert REPLICA_ALIAS not in sql and "sha256" in sql.lower()
    # another purpose's pseudonyms are other columns: a purpose no grant pseudonymises for has none
    assert replicas.usable("einwohner") is not None
    replica = replicas.usable("einwohner")
    assert replica is not None and replica.column_for("id", "revision", "person", old) is None


def test_the_replica_file_is_private_to_the_gateway(twin_dirs: tuple[Path, Path],
                                                    twins: tuple[Runtime, Runtime]) -> None:
    files = list((twin_dirs[0] / "pseudonyms").iterdir())
    assert [f.name for f in files] == ["demo.duckdb"]
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    assert stat.S_IMODE((twin_dirs[0] / "pseudonyms").stat().st_mode) == 0o700
    assert not (twin_dirs[1] / "pseudonyms").exists()


@pytest.mark.parametrize("table", [
    f"{REPLICA_ALIAS}.main.einwohner",
    f'"{REPLICA_ALIAS}"."main"."einwohner"',
    f"{REPLICA_ALIAS}.einwohner",
    f"{REPLICA_ALIAS}.main.__gw_replica",
])
def test_analysts_cannot_name_the_replica(api: object, table: str) -> None:
    """The connector has the replica attached, but only the rewriter's derived tables may read it."""
    response = api.query("anna", f"SELECT * FROM {table}", "statistik")  # type: ignore[attr-defined]
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "unknown_dataset"
    assert "__p_" not in response.text


def test_a_replica_that_cannot_be_attached_is_forgotten(catalog: Catalog, demo_dir: Path, tmp_path: Path,
                                                        oidc_provider: ProviderHandle) -> None:
    """If the connector cannot attach the file, its datasets are planned against the source again."""
    shutil.copyfile(demo_dir / "demo.duckdb", tmp_path / "demo.duckdb")
    settings = Settings(data_dir=tmp_path, identity=IdentitySettings(issuer=oidc_provider.issuer))
    keys = KeyRing(master=b"k" * 32, key_id="t")
    replicas = build_replicas_for(settings, catalog, keys)
    connector = catalog.datasets["einwohner"].connector
    assert replicas.usable("einwohner") is not None
    replicas.files[connector].write_bytes(b"not a database")  # damaged after the build
    connectors = build_connectors(settings, catalog, replicas)
    try:
        assert replicas.usable("einwohner") is None and connector not in replicas.files
        decision = EmbeddedPolicyEngine(load_bundle(DEFAULT_POLICY_DIR, catalog)).decide(
            build_input(ANNA, "statistik", ["einwohner"], client_address="127.0.0.1"))
        sql = derived_table_sql("einwohner", decision, catalog, dialect="duckdb", keys=keys,
                                purpose="statistik", replicas=replicas)
        assert REPLICA_ALIAS not in sql
        assert connectors[connector].execute(f"SELECT count(*) FROM ({sql})", max_rows=1,
                                             timeout_s=10).table.column(0)[0].as_py() > 0
    finally:
        for opened in connectors.values():
            opened.close()


def test_the_catalog_can_keep_a_dataset_out_of_the_replica(catalog: Catalog) -> None:
    data = load_bundle(DEFAULT_POLICY_DIR, catalog).data
    assert any(s.dataset == "einwohner" for s in specs_from_policy_data(data, catalog))
    raw = catalog.model_dump(by_alias=True)
    raw["datasets"]["einwohner"]["pseudonym_replica"] = False
    opted_out = Catalog.model_validate(raw)
    specs = specs_from_policy_data(data, opted_out)
    assert specs and not any(s.dataset == "einwohner" for s in specs)  # other datasets still have theirs
