"""Four-eyes activation on the OPA backend in bundle mode (``opa.bundle_dir``), as docker-compose runs it.

The gateway writes the approved policy into ``policy_dir`` and publishes its bundle into the directory
OPA serves with ``--watch``; OPA picks it up and the gateway re-pins its version once OPA serves exactly
the revision of its own (tested) ``policy_dir``. OPA is played by tests/opa_compat_server.py (regopy
behind OPA's REST API, NOT OPA: no OPA binary can run here) with ``watch=True``, which re-reads the bundle
directory when its files change, like ``opa run --server --watch --bundle DIR``. Tokens come from the
real OIDC provider, the audit trail is the real store; the users are those of tests/test_policy_admin.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.catalog import load_catalog
from gateway.config import DEFAULT_POLICY_DIR, OpaSettings, Settings
from gateway.demo.oidc_provider import ProviderHandle
from gateway.errors import PolicyUnavailable
from gateway.policy.bundle import publish_bundle, read_bundle, write_bundle
from gateway.policy.engine import PolicyBundle, load_bundle
from gateway.policy.opa import OpaPolicyEngine, push_bundle
from gateway.runtime import Runtime, build_runtime
from tests.opa_compat_server import run_compat_server
from tests.test_policy_admin import _audit_events, _proposed_files

ZUZUG = {"sql": "SELECT zuzug_am FROM einwohner LIMIT 3", "purpose": "statistik"}


@dataclass
class OpaEnv:
    runtime: Runtime
    policy_dir: Path
    bundle_dir: Path
    opa_url: str
    call: Callable[..., Any]


@contextmanager
def _opa_env(base: Path, demo_dir: Path, oidc_provider: ProviderHandle,
             access_token: Callable[..., str]) -> Iterator[OpaEnv]:
    """A gateway on the OPA backend in bundle mode over a copy of policies/, and its OPA stand-in."""
    from gateway.identity.settings import IdentitySettings

    policy_dir = base / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    data_dir = base / "data"
    data_dir.mkdir()
    shutil.copyfile(demo_dir / "demo.duckdb", data_dir / "demo.duckdb")
    bundle_dir = write_bundle(load_bundle(policy_dir, load_catalog(policy_dir / "catalog.yaml")),
                              base / "bundles" / "policy")
    with run_compat_server(bundle_dir=bundle_dir, watch=True) as url:
        settings = Settings(
            data_dir=data_dir, policy_dir=policy_dir, catalog_path=policy_dir / "catalog.yaml",
            policy_reload_seconds=0, policy_backend="opa", opa=OpaSettings(url=url, bundle_dir=bundle_dir),
            identity=IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience))
        rt = build_runtime(settings, create_keys=True)
        try:
            with TestClient(create_app(rt), raise_server_exceptions=False, client=("10.1.2.3", 40000)) as client:
                def call(method: str, user: str, path: str, **kwargs: Any) -> Any:
                    headers = {"Authorization": f"Bearer {access_token(user)}"}
                    return client.request(method, path, headers=headers, **kwargs)
                yield OpaEnv(rt, policy_dir, bundle_dir, url, call)
        finally:
            rt.close()


@pytest.fixture
def opa_env(tmp_path: Path, demo_dir: Path, oidc_provider: ProviderHandle,
            access_token: Callable[..., str]) -> Iterator[OpaEnv]:
    with _opa_env(tmp_path, demo_dir, oidc_provider, access_token) as env:
        yield env


def _served(url: str) -> list[str]:
    engine = OpaPolicyEngine(url, version="-")
    try:
        return list(engine.served_revisions().values())
    finally:
        engine.close()


def _propose(env: OpaEnv) -> dict[str, Any]:
    response = env.call("POST", "dora", "/v1/policy/proposals",
                        json={"files": _proposed_files(env.policy_dir), "comment": "Zuzugsdatum nicht mehr"})
    assert response.status_code == 201, response.text
    proposal: dict[str, Any] = response.json()["proposal"]
    return proposal


def _activations(env: OpaEnv, version: str) -> list[dict[str, Any]]:
    return [e for e in _audit_events(env.runtime, "policy_activated") if e["policy_version"] == version]


def test_approval_publishes_the_bundle_and_the_gateway_adopts_what_opa_serves(opa_env: OpaEnv) -> None:
    env = opa_env
    before = env.runtime.gateway.policy.version
    assert _served(env.opa_url) == [before]
    assert env.call("POST", "anna", "/v1/query", json=ZUZUG).status_code == 200
    proposal = _propose(env)
    assert proposal["version"] != before

    approved = env.call("POST", "dirk", f"/v1/policy/proposals/{proposal['id']}/approve", json={"comment": "ok"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["proposal"]["state"] == "activated"
    # the bundle directory holds the new revision, OPA (the stand-in) serves it, the gateway pinned it
    assert read_bundle(env.bundle_dir).version == proposal["version"]
    assert "einwohner.deny_move_in" in (env.bundle_dir / "data.json").read_text(encoding="utf-8")
    assert _served(env.opa_url) == [proposal["version"]]
    assert env.runtime.gateway.policy.version == proposal["version"]
    health = env.call("GET", "anna", "/healthz")
    assert health.status_code == 200, health.text
    assert health.json()["policy_version"] == proposal["version"]
    assert health.json()["policy_reload"]["serving"] is True
    # decisions come from OPA's new bundle and carry the new version
    denied = env.call("POST", "anna", "/v1/query", json=ZUZUG)
    assert denied.status_code == 403 and "einwohner.deny_move_in" in denied.text
    rules = {rule for e in _activations(env, proposal["version"]) for rule in e["rules"]}
    assert {"opa.bundle_revision", "four_eyes.activate"} <= rules
    # the version is archived like every version that went live
    assert env.call("GET", "aaron", f"/v1/policy/versions/{proposal['version']}").status_code == 200


def _make_read_only(directory: Path) -> Callable[[], None]:
    """Make ``directory`` refuse new entries, even for root (immutable flag); returns the undo."""
    as_root = os.geteuid() == 0

    def undo() -> None:
        if as_root:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        else:
            directory.chmod(0o755)

    if as_root:
        subprocess.run(["chattr", "+i", str(directory)], check=True)
    else:
        directory.chmod(0o555)
    try:
        (directory / "probe").write_text("x", encoding="utf-8")
    except OSError:
        return undo
    undo()
    raise AssertionError(f"{directory} could not be made read-only, so this test would prove nothing")


def test_read_only_policy_dir_refuses_the_activation(opa_env: OpaEnv) -> None:
    env = opa_env
    before = env.runtime.gateway.policy.version
    proposal = _propose(env)
    undo = _make_read_only(env.policy_dir)
    try:
        response = env.call("POST", "dirk", f"/v1/policy/proposals/{proposal['id']}/approve")
    finally:
        undo()
    assert response.status_code == 503, response.text
    body = response.json()
    assert response.headers["content-type"].startswith("application/problem+json")
    assert body["code"] == "policy_not_activated"
    assert str(env.policy_dir) in body["detail"] and "writable" in body["detail"]
    assert "Traceback" not in response.text
    state = env.call("GET", "aaron", f"/v1/policy/proposals/{proposal['id']}").json()["proposal"]["state"]
    assert state == "proposed"
    assert _activations(env, proposal["version"]) == []
    approvals = [e for e in _audit_events(env.runtime, "policy_approved")
                 if f"policy.proposal={proposal['id']}" in e["columns"]]
    assert [(e["decision"], e["error_code"]) for e in approvals] == [("error", "policy_not_activated")]
    assert env.runtime.gateway.policy.version == before
    assert _served(env.opa_url) == [before] and read_bundle(env.bundle_dir).version == before
    assert env.call("POST", "anna", "/v1/query", json=ZUZUG).status_code == 200  # the old policy decides


def _changed_elsewhere(bundle: PolicyBundle) -> PolicyBundle:
    data = json.loads(json.dumps(bundle.data))
    data["networks_note"] = "changed outside the gateway"
    return PolicyBundle(modules=bundle.modules, data=data, version="sha256:feedfacefeedface",
                        test_modules=bundle.test_modules)


def test_foreign_revision_is_not_adopted_and_healthz_says_why(tmp_path: Path) -> None:
    """OPA serves a revision the gateway's policy directory does not hold: decisions stay 503."""
    policy_dir = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    bundle = load_bundle(policy_dir, load_catalog(policy_dir / "catalog.yaml"))
    bundle_dir = write_bundle(bundle, tmp_path / "bundles" / "policy")
    activated: list[str] = []
    with run_compat_server(bundle_dir=bundle_dir, watch=True) as url:
        engine = OpaPolicyEngine(url, version=bundle.version, check_revision=True, policy_dir=policy_dir,
                                 catalog_path=policy_dir / "catalog.yaml",
                                 on_activate=lambda b, rule: activated.append(b.version))
        try:
            assert engine.check_now() is False and engine.status()["serving"] is True
            publish_bundle(_changed_elsewhere(bundle), bundle_dir)
            assert engine.check_now() is False
            status = engine.status()
            assert status["serving"] is False and status["version"] == bundle.version
            assert "sha256:feedfacefeedface" in str(status["last_error"])
            assert f"the policy directory {policy_dir} holds {bundle.version}" in str(status["last_error"])
            with pytest.raises(PolicyUnavailable) as info:
                engine.verify_revision(force=True)
            assert info.value.code == "policy_version_mismatch"
            assert activated == []
        finally:
            engine.close()


def test_push_bundle_deletes_modules_the_bundle_dropped(tmp_path: Path) -> None:
    """Push mode: a module removed by an approved version disappears from OPA; modules the gateway did
    not create (ids not shaped like a policy file) stay."""
    import requests

    bundle = load_bundle(DEFAULT_POLICY_DIR, load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml"))
    extra = "package gateway.extra\n\nimport rego.v1\n\nflag := true\n"
    with_extra = PolicyBundle(modules={**bundle.modules, "sub/extra.rego": extra}, data=bundle.data,
                              version="sha256:withextra")
    with run_compat_server() as url:
        foreign = requests.put(f"{url}/v1/policies/ops:hook", data="package ops.hook\n\nx := 1\n", timeout=10)
        assert foreign.status_code == 200
        push_bundle(url, with_extra)
        assert requests.get(f"{url}/v1/data/gateway/extra/flag", timeout=10).json() == {"result": True}
        push_bundle(url, bundle)
        ids = {p["id"] for p in requests.get(f"{url}/v1/policies", timeout=10).json()["result"]}
        assert ids == set(bundle.modules) | {"ops:hook"}
        assert requests.get(f"{url}/v1/data/gateway/extra/flag", timeout=10).json() == {}


def test_publishing_never_shows_the_new_revision_with_old_files(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """While the files of a bundle are rewritten in place, OPA may reload any time: until the last file is
    written it must see a revision that is no policy version (the gateway then fails closed)."""
    import gateway.policy.bundle as bundle_module

    catalog = load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml")
    old = load_bundle(DEFAULT_POLICY_DIR, catalog)
    bundle_dir = tmp_path / "bundle"
    write_bundle(old, bundle_dir)
    changed = PolicyBundle(modules={**old.modules, "extra.rego": "package gateway.extra\n\nimport rego.v1\n\nx := 1\n"},
                           data=old.data, version="sha256:" + "ab" * 32, test_modules=old.test_modules)
    seen: list[str] = []
    real_replace = bundle_module._replace_file

    def replace_and_look(target: Path, text: str, mode: int) -> None:
        if target.name != ".manifest":  # what OPA would read if it reloaded right now
            seen.append(json.loads((bundle_dir / ".manifest").read_text(encoding="utf-8"))["revision"])
        real_replace(target, text, mode)

    monkeypatch.setattr(bundle_module, "_replace_file", replace_and_look)
    publish_bundle(changed, bundle_dir)
    assert seen and set(seen) == {changed.version + bundle_module.PUBLISHING_SUFFIX}
    assert read_bundle(bundle_dir).version == changed.version
    assert (bundle_dir / "extra.rego").exists()
