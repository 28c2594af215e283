"""The OPA bundle (`gateway policy bundle`), the gateway's check of the revision OPA serves, and the
docker-compose deployment that mounts the bundle into OPA.

No OPA binary can be installed here: the bundle is checked against what the embedded engine evaluates
(same data document, same version, same decisions when loaded back), and OPA's REST API is played by
tests/opa_compat_server.py (regopy behind OPA's wire protocol, NOT OPA; see its docstring).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.catalog import load_catalog
from gateway.cli.main import main
from gateway.config import DEFAULT_POLICY_DIR, REPO_ROOT, load_settings
from gateway.demo.oidc_provider import DEMO_USERS
from gateway.errors import PolicyUnavailable
from gateway.identity.principal import Principal
from gateway.policy.bundle import bundle_roots, read_bundle, recomputed_version, write_bundle
from gateway.policy.decision import PolicyInput
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import PolicyBundle, load_bundle
from gateway.policy.inputs import build_input
from gateway.policy.opa import OpaPolicyEngine, push_bundle
from tests.opa_compat_server import run_compat_server

NOW = datetime(2025, 6, 2, 10, 0, tzinfo=UTC)  # a Monday, inside office hours


def _input(user: str, purpose: str, datasets: list[str], address: str = "127.0.0.1") -> PolicyInput:
    claims: dict[str, Any] = dict(DEMO_USERS[user])
    principal = Principal(
        subject=str(claims["sub"]), username=str(claims["preferred_username"]), office=claims.get("office"),
        roles=tuple(claims.get("roles", ())), purposes=tuple(claims.get("purposes", ())),
        districts=tuple(claims.get("districts", ())), clearance=claims.get("clearance"))
    return build_input(principal, purpose, datasets, now=NOW, client_address=address)


#: allowed with masks, allowed with row filters, aggregate only, denied (purpose), unknown dataset, outside
CASES = [
    ("anna", "statistik", ["einwohner"], "127.0.0.1"),
    ("sven", "sozialplanung", ["sozialleistungen"], "127.0.0.1"),
    ("paula", "stadtplanung", ["einwohner"], "127.0.0.1"),
    ("anna", "sozialplanung", ["sozialleistungen"], "127.0.0.1"),
    ("anna", "statistik", ["gibt_es_nicht"], "127.0.0.1"),
    ("anna", "statistik", ["einwohner", "stadtteile"], "203.0.113.9"),
]


@pytest.fixture(scope="module")
def bundle() -> PolicyBundle:
    return load_bundle(DEFAULT_POLICY_DIR, load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml"))


@pytest.fixture(scope="module")
def bundle_dir(bundle: PolicyBundle, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_bundle(bundle, tmp_path_factory.mktemp("bundle") / "b")


def test_bundle_holds_exactly_the_embedded_engines_data_and_version(bundle: PolicyBundle, bundle_dir: Path) -> None:
    engine = EmbeddedPolicyEngine(bundle)
    data = json.loads((bundle_dir / "data.json").read_text(encoding="utf-8"))
    manifest = json.loads((bundle_dir / ".manifest").read_text(encoding="utf-8"))
    assert data == engine.bundle.data
    assert "catalog" in data and "grants" in data and "data" not in data  # not data.data.grants as OPA's loader would
    assert manifest["revision"] == engine.version
    assert set(data) <= set(manifest["roots"]) and "gateway" in manifest["roots"]
    on_disk = {str(p.relative_to(bundle_dir)) for p in bundle_dir.rglob("*.rego")}
    assert on_disk == set(bundle.modules) | set(bundle.test_modules)  # tests included, for `opa test DIR`
    assert not (bundle_dir / "catalog.yaml").exists() and not (bundle_dir / "data").exists()


def test_bundle_loaded_back_decides_identically(bundle: PolicyBundle, bundle_dir: Path) -> None:
    loaded = read_bundle(bundle_dir)
    assert loaded.version == bundle.version == recomputed_version(loaded)
    original, reloaded = EmbeddedPolicyEngine(bundle), EmbeddedPolicyEngine(loaded)
    outcomes = set()
    for user, purpose, datasets, address in CASES:
        expected = original.decide(_input(user, purpose, datasets, address))
        assert reloaded.decide(_input(user, purpose, datasets, address)) == expected, (user, purpose, datasets)
        outcomes.add(expected.allow)
    assert outcomes == {True, False}  # the cases cover both answers


def test_altered_bundle_no_longer_matches_its_revision(bundle: PolicyBundle, tmp_path: Path) -> None:
    target = write_bundle(bundle, tmp_path / "b")
    data = json.loads((target / "data.json").read_text(encoding="utf-8"))
    data["grants"] = {}
    (target / "data.json").write_text(json.dumps(data), encoding="utf-8")
    assert recomputed_version(read_bundle(target)) != bundle.version


def test_write_bundle_replaces_a_bundle_but_not_other_files(bundle: PolicyBundle, tmp_path: Path) -> None:
    target = write_bundle(bundle, tmp_path / "b")
    (target / "stale.rego").write_text("package stale\n", encoding="utf-8")
    write_bundle(bundle, target)
    assert not (target / "stale.rego").exists()
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine", encoding="utf-8")
    with pytest.raises(ValueError, match="holds no bundle"):
        write_bundle(bundle, other)
    assert (other / "todo.txt").read_text(encoding="utf-8") == "mine"


def _small_policy(root: Path, *, test_passes: bool) -> Path:
    """The reference policy and catalog with one fast test module instead of the reference tests."""
    shutil.copytree(DEFAULT_POLICY_DIR, root, ignore=shutil.ignore_patterns("*_test.rego"))
    (root / "bundle_smoke_test.rego").write_text(
        "package gateway.bundle_smoke_test\n\nimport rego.v1\n\nimport data.gateway.authz\n\n"
        f"test_catalog_loaded if count(data.catalog) {'>' if test_passes else '<'} 0\n", encoding="utf-8")
    return root


def test_cli_bundle_writes_a_tested_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_dir = _small_policy(tmp_path / "policies", test_passes=True)
    out = tmp_path / ".bundle"
    assert main(["policy", "bundle", str(out), "--policy-dir", str(policy_dir)]) == 0
    expected = load_bundle(policy_dir, load_catalog(policy_dir / "catalog.yaml"))
    manifest = json.loads((out / ".manifest").read_text(encoding="utf-8"))
    assert manifest == {"revision": expected.version, "roots": bundle_roots(expected)}
    assert (out / "bundle_smoke_test.rego").exists()
    assert expected.version in capsys.readouterr().out


def test_cli_bundle_refuses_a_policy_failing_its_tests(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy_dir = _small_policy(tmp_path / "policies", test_passes=False)
    out = tmp_path / ".bundle"
    assert main(["policy", "bundle", str(out), "--policy-dir", str(policy_dir)]) == 1
    assert not out.exists()
    assert "test_catalog_loaded" in capsys.readouterr().out


# -- OPA serving the mounted bundle ------------------------------------------------------------------


@pytest.fixture(scope="module")
def opa_url(bundle_dir: Path) -> Iterator[str]:
    with run_compat_server(bundle_dir=bundle_dir) as url:
        yield url


def test_opa_with_the_mounted_bundle_decides_like_the_embedded_engine(bundle: PolicyBundle, opa_url: str) -> None:
    opa = OpaPolicyEngine(opa_url, version=bundle.version, check_revision=True)
    embedded = EmbeddedPolicyEngine(bundle)
    try:
        assert list(opa.served_revisions().values()) == [bundle.version]
        for user, purpose, datasets, address in CASES:
            policy_input = _input(user, purpose, datasets, address)
            assert opa.decide(policy_input) == embedded.decide(policy_input), (user, purpose, datasets)
        status = opa.status()
        assert status["serving"] is True and status["last_error"] is None and status["source"] == "bundle"
    finally:
        opa.close()


def test_gateway_fails_closed_when_opa_serves_another_revision(opa_url: str) -> None:
    opa = OpaPolicyEngine(opa_url, version="sha256:0000000000000000", check_revision=True)
    try:
        with pytest.raises(PolicyUnavailable) as info:
            opa.decide(_input(*CASES[0]))
        assert info.value.code == "policy_version_mismatch" and info.value.status == 503
        assert "sha256:0000000000000000" in info.value.detail and "gateway policy bundle" in info.value.detail
        status = opa.status()
        assert status["serving"] is False and "sha256:0000000000000000" in str(status["last_error"])
    finally:
        opa.close()


def test_gateway_fails_closed_when_opa_serves_no_bundle(bundle: PolicyBundle) -> None:
    with run_compat_server() as url:
        push_bundle(url, bundle)  # the policy is there, but not as a bundle with a revision
        opa = OpaPolicyEngine(url, version=bundle.version, check_revision=True)
        try:
            with pytest.raises(PolicyUnavailable) as info:
                opa.decide(_input(*CASES[0]))
            assert info.value.code == "policy_version_mismatch" and "serves no policy bundle" in info.value.detail
        finally:
            opa.close()


def test_mounted_bundle_cannot_be_overwritten_through_opas_api(bundle: PolicyBundle, opa_url: str) -> None:
    with pytest.raises(PolicyUnavailable) as info:
        push_bundle(opa_url, bundle)
    assert info.value.code == "policy_push_failed"


# -- docker-compose ------------------------------------------------------------------------------------


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


def _host_mounts(compose: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(service, host path, container path) of every bind mount (named volumes left out)."""
    found = []
    for name, service in compose["services"].items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith((".", "/")):
                found.append((name, source, target))
    return found


def test_compose_mounts_only_files_that_exist() -> None:
    mounts = _host_mounts(_compose())
    assert any(target == "/etc/gateway/gateway.yaml" for _, _, target in mounts)
    missing = [(service, source) for service, source, _ in mounts if not (REPO_ROOT / source).exists()]
    assert missing == []


def test_compose_opa_serves_the_read_only_bundle_and_is_not_published() -> None:
    compose = _compose()
    opa = compose["services"]["opa"]
    assert "ports" not in opa
    command = opa["command"]
    assert command[:2] == ["run", "--server"] and "--bundle" in command and "--watch" in command
    bundle_path = command[command.index("--bundle") + 1]
    holding = [v for v in opa["volumes"] if bundle_path.startswith(v.split(":")[1] + "/")]
    assert holding and all(v.endswith(":ro") for v in holding)
    bundler = compose["services"]["policy-bundle"]
    assert any("gateway policy bundle" in part for part in bundler["command"])
    assert opa["depends_on"]["policy-bundle"]["condition"] == "service_completed_successfully"
    gateway = compose["services"]["gateway"]
    assert "GATEWAY_OPA__PUSH_POLICY" not in gateway.get("environment", {})
    # four-eyes activation: the gateway writes its policy directory and OPA's bundle (the same volume, rw)
    settings = load_settings(REPO_ROOT / "docs" / "examples" / "gateway.compose.yaml")
    assert settings.opa.bundle_dir is not None and str(settings.opa.bundle_dir) == bundle_path
    writable = {v.split(":")[1]: v.split(":")[0] for v in gateway["volumes"] if not v.endswith(":ro")}
    assert writable.get("/bundles") == holding[0].split(":")[0]
    assert writable.get(str(settings.policy_dir)) == "gateway-policy"
    assert any(f"--policy-dir {settings.policy_dir}" in part for part in bundler["command"])


def test_compose_gateway_config_loads_with_the_real_settings_loader() -> None:
    settings = load_settings(REPO_ROOT / "docs" / "examples" / "gateway.compose.yaml")
    assert settings.policy_backend == "opa"
    assert settings.opa.url == "http://opa:8181" and settings.opa.push_policy is False
    assert str(settings.opa.bundle_dir) == "/bundles/policy"
    assert settings.identity is not None and str(settings.identity.issuer).startswith("https://")
    assert str(settings.audit_url).startswith("postgresql://")
