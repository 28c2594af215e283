"""Which rules were in force: every version that goes live is logged, audited and archived, and a past
query's ``policy_version`` can be turned back into its rules (``GET /v1/policy/versions/{version}``).

A real gateway (real tokens, real audit store, the reference scenario) over a copy of ``policies/`` whose
reference Rego tests are replaced by one fast test module, so reloads here take a second, not a minute.
"""

from __future__ import annotations

import json
import logging
import shutil
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.audit import AuditFilter
from gateway.catalog import load_catalog
from gateway.cli.main import main
from gateway.config import DEFAULT_POLICY_DIR, Settings
from gateway.demo.oidc_provider import ProviderHandle
from gateway.policy.engine import content_version, load_bundle
from gateway.policy.versions import PolicyVersionArchive
from gateway.runtime import Runtime, build_runtime

SQL = "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY 1"


def _copy_policy(target: Path) -> Path:
    shutil.copytree(DEFAULT_POLICY_DIR, target, ignore=shutil.ignore_patterns("*_test.rego"))
    (target / "versions_smoke_test.rego").write_text(
        "package gateway.versions_smoke_test\n\nimport rego.v1\n\n"
        "test_catalog_loaded if count(data.catalog) > 0\n", encoding="utf-8")
    return target


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path,
        oidc_provider: ProviderHandle) -> Iterator[tuple[Runtime, Path]]:
    from gateway.identity.settings import IdentitySettings

    base = tmp_path_factory.mktemp("policy-versions")
    policy_dir = _copy_policy(base / "policies")
    data_dir = base / "data"
    data_dir.mkdir()
    shutil.copyfile(demo_dir / "demo.duckdb", data_dir / "demo.duckdb")
    settings = Settings(
        data_dir=data_dir, policy_dir=policy_dir, catalog_path=policy_dir / "catalog.yaml",
        policy_reload_seconds=0, precompute_pseudonyms=False,
        identity=IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience),
    )
    rt = build_runtime(settings, create_keys=True)
    yield rt, policy_dir
    rt.close()


@pytest.fixture(scope="module")
def call(env: tuple[Runtime, Path], access_token: Callable[..., str]) -> Iterator[Callable[..., Any]]:
    rt, _ = env
    with TestClient(create_app(rt), raise_server_exceptions=False, client=("127.0.0.1", 40001)) as client:
        def request(method: str, user: str | None, path: str, **kwargs: Any) -> Any:
            headers = {"Authorization": f"Bearer {access_token(user)}"} if user else {}
            return client.request(method, path, headers=headers, **kwargs)
        yield request


def _events(rt: Runtime, event: str) -> list[dict[str, Any]]:
    return [r.event_data for r in rt.gateway.audit.query(AuditFilter(event=event), limit=1000)]


def test_the_version_in_force_at_start_is_archived_read_only_and_audited(env: tuple[Runtime, Path]) -> None:
    rt, _ = env
    version = rt.gateway.policy.version
    started = [e for e in _events(rt, "policy_activated") if e["rules"] == ["startup"]]
    assert [e["policy_version"] for e in started] == [version]
    assert f"policy.version={version}" in started[0]["columns"]
    archived = rt.settings.data_dir / "policy-versions" / version.replace(":", "-")
    files = [p for p in archived.rglob("*") if p.is_file()]
    assert {p.name for p in files} >= {".manifest", "data.json", "gateway.rego", "versions_smoke_test.rego"}
    assert all(stat.S_IMODE(p.stat().st_mode) & 0o222 == 0 for p in files)


def test_a_querys_policy_version_can_be_turned_back_into_its_rules(
        env: tuple[Runtime, Path], call: Callable[..., Any]) -> None:
    rt, _ = env
    response = call("POST", "paula", "/v1/query", json={"sql": SQL, "purpose": "stadtplanung"})
    assert response.status_code == 200, response.text
    record = next(e for e in _events(rt, "query") if e["username"] == "paula")
    assert record["policy_version"] == rt.gateway.policy.version
    for reader in ("aaron", "dora"):  # auditor, DPO
        answer = call("GET", reader, f"/v1/policy/versions/{record['policy_version']}")
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["version"] == record["policy_version"] and body["verified"] is True
        assert body["manifest"]["revision"] == record["policy_version"]
        files = body["files"]
        modules = {n: t for n, t in files.items() if n.endswith(".rego") and not n.endswith("_test.rego")}
        assert content_version(modules, json.loads(files["data.json"])) == record["policy_version"]
        assert "einwohner" in json.loads(files["data.json"])["catalog"]
    reads = [e for e in _events(rt, "policy_read") if e["rules"] == ["policy_versions.read"]]
    assert {e["username"] for e in reads} >= {"aaron", "dora"}


def test_policy_versions_are_for_the_dpo_and_auditors_only(env: tuple[Runtime, Path], call: Callable[..., Any]) -> None:
    rt, _ = env
    response = call("GET", "anna", f"/v1/policy/versions/{rt.gateway.policy.version}")
    assert response.status_code == 403 and response.json()["code"] == "policy_role_required"
    assert call("GET", None, f"/v1/policy/versions/{rt.gateway.policy.version}").status_code == 401


@pytest.mark.parametrize("version", ["sha256:0000000000000000", "latest", "sha256:..keys", "sha256:0123456789abcdeg"])
def test_unknown_policy_version_is_a_404_problem(call: Callable[..., Any], version: str) -> None:
    response = call("GET", "aaron", f"/v1/policy/versions/{version}")
    assert response.status_code == 404, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["code"] == "policy_version_not_found" and "sha256:" in body["detail"]


def test_cli_show_version_lists_and_exports_the_archived_rules(
        env: tuple[Runtime, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rt, _ = env
    version = rt.gateway.policy.version
    out = tmp_path / "export"
    assert main(["policy", "show-version", version, "--data-dir", str(rt.settings.data_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "verified" in printed and "gateway.rego" in printed and "data.json" in printed
    assert json.loads((out / ".manifest").read_text(encoding="utf-8"))["revision"] == version
    assert main(["policy", "show-version", "sha256:0000000000000000", "--data-dir", str(rt.settings.data_dir)]) == 2


def test_archive_is_idempotent_and_notices_tampering(tmp_path: Path) -> None:
    bundle = load_bundle(DEFAULT_POLICY_DIR, load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml"))
    archive = PolicyVersionArchive(tmp_path / "policy-versions")
    first = archive.archive(bundle)
    data_file = first / "data.json"
    written = data_file.stat().st_mtime_ns
    assert archive.archive(bundle) == first and data_file.stat().st_mtime_ns == written
    assert archive.versions() == [bundle.version] and archive.get(bundle.version).verified
    data_file.chmod(0o644)
    data_file.write_text(data_file.read_text(encoding="utf-8").replace("Bürgeramt", "Niemand"), encoding="utf-8")
    assert archive.get(bundle.version).verified is False
    archive.archive(bundle)  # a damaged copy is written again
    assert archive.get(bundle.version).verified is True


def test_a_broken_policy_on_disk_is_refused_logged_and_the_old_version_keeps_serving(
        env: tuple[Runtime, Path], call: Callable[..., Any], caplog: pytest.LogCaptureFixture) -> None:
    rt, policy_dir = env
    engine: Any = rt.gateway.policy
    old_version = engine.version
    module = policy_dir / "gateway.rego"
    good = module.read_text(encoding="utf-8")
    module.write_text(good + "\nthis is not rego {\n", encoding="utf-8")
    try:
        with caplog.at_level(logging.INFO, logger="gateway.policy"):
            assert engine.check_now() is False
        refused = [r for r in caplog.records if r.name == "gateway.policy.reload" and r.levelno == logging.ERROR]
        assert refused and "refused" in refused[0].getMessage() and old_version in refused[0].getMessage()
        health = call("GET", None, "/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded" and body["policy_version"] == old_version
        assert "does not compile" in body["policy_reload"]["last_error"]
        response = call("POST", "paula", "/v1/query", json={"sql": SQL, "purpose": "stadtplanung"})
        assert response.status_code == 200, response.text
        assert _events(rt, "query")[-1]["policy_version"] == old_version
    finally:
        module.write_text(good + "\n# reviewed again\n", encoding="utf-8")
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="gateway.policy"):
        assert engine.check_now() is True
    new_version = engine.version
    assert new_version != old_version
    assert any(r.levelno == logging.INFO and new_version in r.getMessage() for r in caplog.records)
    reloads = [e for e in _events(rt, "policy_activated") if e["rules"] == ["reload.file_change"]]
    assert [e["policy_version"] for e in reloads] == [new_version]
    assert call("GET", None, "/healthz").json()["status"] == "ok"
    assert call("GET", "aaron", f"/v1/policy/versions/{old_version}").json()["verified"] is True
    assert call("GET", "aaron", f"/v1/policy/versions/{new_version}").json()["verified"] is True
