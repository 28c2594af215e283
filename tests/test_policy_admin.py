"""The DPO's policy lifecycle through the HTTP API and the CLI, with real tokens and a real audit store.

Four-eyes activation (propose -> approve by another DPO -> in force; self-approval refused; a broken or
failing proposal refused; a stale proposal refused), the impact preview (`gateway policy diff` and the
preview inside a proposal) on the reference scenario's audited queries, and the sovereignty rules as an
analyst meets them (on-premises data from outside the city's network; retention in the rewritten SQL).

Each test module gets its own gateway over a copy of `policies/`, so activations never touch the repo.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.config import DEFAULT_POLICY_DIR, Settings
from gateway.demo.oidc_provider import ProviderHandle
from gateway.runtime import Runtime, build_runtime

REPO = Path(__file__).resolve().parents[1]


def _policy_files(root: Path) -> dict[str, str]:
    files = {str(p.relative_to(root)): p.read_text(encoding="utf-8") for p in sorted(root.rglob("*.rego"))}
    files.update({f"data/{p.name}": p.read_text(encoding="utf-8") for p in sorted((root / "data").glob("*.yaml"))})
    return files


@pytest.fixture(scope="module")
def admin_env(tmp_path_factory: pytest.TempPathFactory, demo_dir: Path,
              oidc_provider: ProviderHandle) -> Iterator[tuple[Runtime, Path]]:
    from gateway.identity.settings import IdentitySettings

    base = tmp_path_factory.mktemp("policy-admin")
    policy_dir = base / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, policy_dir)
    data_dir = base / "data"
    data_dir.mkdir()
    shutil.copyfile(demo_dir / "demo.duckdb", data_dir / "demo.duckdb")
    settings = Settings(
        data_dir=data_dir, policy_dir=policy_dir, catalog_path=policy_dir / "catalog.yaml",
        policy_reload_seconds=0,
        identity=IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience),
    )
    rt = build_runtime(settings, create_keys=True)
    (data_dir / "gateway.yaml").write_text(json.dumps({
        "data_dir": str(data_dir), "policy_dir": str(policy_dir), "catalog_path": str(policy_dir / "catalog.yaml"),
    }), encoding="utf-8")
    yield rt, policy_dir
    rt.close()


@pytest.fixture(scope="module")
def admin(admin_env: tuple[Runtime, Path], access_token: Callable[..., str]) -> Iterator[Callable[..., Any]]:
    rt, _ = admin_env
    with TestClient(create_app(rt), raise_server_exceptions=False, client=("10.1.2.3", 40000)) as client:
        def call(method: str, user: str, path: str, **kwargs: Any) -> Any:
            headers = {"Authorization": f"Bearer {access_token(user)}"}
            return client.request(method, path, headers=headers, **kwargs)
        yield call


def _proposed_files(policy_dir: Path) -> dict[str, str]:
    """The reference policy with one change the DPO wants: birth dates generalised to the decade of the
    year would be too coarse, so instead anna's grant loses `zuzug_am` (now denied)."""
    files = _policy_files(policy_dir)
    grants = files["data/grants.yaml"]
    needle = "      zuzug_am: {op: plain, rule: einwohner.statistik}\n"
    assert needle in grants
    files["data/grants.yaml"] = grants.replace(needle, "      zuzug_am: {op: deny, rule: einwohner.deny_move_in}\n", 1)
    return files


def _audit_events(rt: Runtime, event: str) -> list[dict[str, Any]]:
    from gateway.audit import AuditFilter

    return [r.event_data for r in rt.gateway.audit.query(AuditFilter(event=event), limit=1000)]


def test_policy_roles_only(admin: Callable[..., Any]) -> None:
    response = admin("POST", "anna", "/v1/policy/proposals", json={"files": {"x.rego": "package x"}, "comment": "hi!"})
    assert response.status_code == 403, response.text
    assert response.json()["code"] == "policy_role_required"
    assert admin("GET", "aaron", "/v1/policy").status_code == 200  # auditors may read
    assert admin("GET", "sven", "/v1/policy/proposals").status_code == 403


def test_broken_proposal_refused(admin: Callable[..., Any], admin_env: tuple[Runtime, Path]) -> None:
    _, policy_dir = admin_env
    files = _policy_files(policy_dir)
    files["gateway.rego"] = files["gateway.rego"].replace("default allow := false", "default allow := ", 1)
    response = admin("POST", "dora", "/v1/policy/proposals", json={"files": files, "comment": "broken"})
    assert response.status_code == 422, response.text
    assert response.json()["code"].startswith("policy_")
    assert "Traceback" not in response.text


def test_proposal_failing_its_tests_refused(admin: Callable[..., Any], admin_env: tuple[Runtime, Path]) -> None:
    _, policy_dir = admin_env
    files = _policy_files(policy_dir)
    # drop the on-premises rule's effect: the residency tests must catch it
    files["gateway.rego"] = files["gateway.rego"].replace(
        'data.catalog[name].residency.serve == "on_premises"', 'data.catalog[name].residency.serve == "nowhere"', 1)
    response = admin("POST", "dora", "/v1/policy/proposals", json={"files": files, "comment": "weaken residency"})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "policy_tests_failed"
    assert "test_on_premises_dataset_from_outside_refused" in body["detail"]


@pytest.mark.parametrize("change", ["drop the rule", "let self-approval through"])
def test_proposal_without_a_working_four_eyes_rule_refused(admin: Callable[..., Any],
                                                           admin_env: tuple[Runtime, Path], change: str) -> None:
    """A version that, once in force, would let a DPO approve their own next change never goes live."""
    _, policy_dir = admin_env
    files = _policy_files(policy_dir)
    if change == "drop the rule":
        del files["four_eyes.rego"], files["four_eyes_test.rego"]
    else:
        files["four_eyes.rego"] = files["four_eyes.rego"].replace(
            "input.approver.subject == input.proposer.subject", "input.approver.subject == \"nobody\"", 1)
        assert files["four_eyes.rego"] != _policy_files(policy_dir)["four_eyes.rego"]
    response = admin("POST", "dora", "/v1/policy/proposals", json={"files": files, "comment": change})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == "policy_invalid" and "four-eyes rule" in body["detail"]


def test_proposal_without_tests_refused(admin: Callable[..., Any], admin_env: tuple[Runtime, Path]) -> None:
    _, policy_dir = admin_env
    files = {k: v for k, v in _policy_files(policy_dir).items() if not k.endswith("_test.rego")}
    response = admin("POST", "dora", "/v1/policy/proposals", json={"files": files, "comment": "no tests"})
    assert response.status_code == 400
    assert response.json()["code"] == "proposal_without_tests"


def test_bad_file_names_refused(admin: Callable[..., Any]) -> None:
    for name in ("../evil.rego", "/etc/passwd", "data/../../x.yaml", "notes.txt"):
        response = admin("POST", "dora", "/v1/policy/proposals",
                         json={"files": {name: "x", "gateway.rego": "package x"}, "comment": "bad names"})
        assert response.status_code == 400, name
        assert response.json()["code"] == "proposal_bad_file"


def test_four_eyes_lifecycle(admin: Callable[..., Any], admin_env: tuple[Runtime, Path],
                             access_token: Callable[..., str]) -> None:
    rt, policy_dir = admin_env
    before = rt.gateway.policy.version
    # anna uses zuzug_am before the change (this query is audited and becomes part of the preview) ...
    ok = admin("POST", "anna", "/v1/query", json={"sql": "SELECT zuzug_am FROM einwohner LIMIT 3",
                                                   "purpose": "statistik"})
    assert ok.status_code == 200, ok.text
    # ... and the same dataset without it, and all of it
    other = admin("POST", "anna", "/v1/query", json={
        "sql": "SELECT geburtsdatum FROM einwohner WHERE stadtteil = 'Biebrich' LIMIT 3", "purpose": "statistik"})
    assert other.status_code == 200, other.text
    star = admin("POST", "anna", "/v1/query", json={"sql": "SELECT * FROM einwohner LIMIT 2", "purpose": "statistik"})
    assert star.status_code == 200, star.text

    response = admin("POST", "dora", "/v1/policy/proposals",
                     json={"files": _proposed_files(policy_dir), "comment": "Zuzugsdatum nicht mehr für Statistik"})
    assert response.status_code == 201, response.text
    proposal = response.json()["proposal"]
    assert proposal["state"] == "proposed"
    assert proposal["base_version"] == before
    # the impact preview replays each query through the rewriter: the zuzug_am query is now refused, the
    # query without zuzug_am is unchanged, and SELECT * loses the column
    changes = {(g["user"], g["dataset"]): g["changes"] for g in proposal["impact"]["changes"]}
    assert ("anna", "einwohner") in changes, proposal["impact"]
    anna = changes[("anna", "einwohner")]
    by_detail = {c["detail"]: c for c in anna}
    refused = by_detail.get("allowed -> denied (einwohner.deny_move_in; column_denied)")
    assert refused is not None and refused["kind"] == "outcome", anna
    assert ok.json()["query_id"] in refused["examples"]
    assert other.json()["query_id"] not in {e for c in anna for e in c["examples"]}, anna
    star_column = by_detail.get("zuzug_am: plain -> deny")
    assert star_column is not None and star_column["kind"] == "column", anna
    assert star.json()["query_id"] in star_column["examples"]
    assert ok.json()["query_id"] not in star_column["examples"]
    assert proposal["impact"]["decision_only"] == 0
    # not yet in force
    assert rt.gateway.policy.version == before
    pid = proposal["id"]

    # the proposer cannot approve it
    self_approval = admin("POST", "dora", f"/v1/policy/proposals/{pid}/approve", json={"comment": "ok"})
    assert self_approval.status_code == 403
    assert self_approval.json()["code"] == "self_approval_refused"
    assert self_approval.json()["rule"] == "separation_of_duties.self_approval"
    assert rt.gateway.policy.version == before
    # an analyst cannot either
    assert admin("POST", "anna", f"/v1/policy/proposals/{pid}/approve").status_code == 403

    # a second DPO approves: in force at once
    approved = admin("POST", "dirk", f"/v1/policy/proposals/{pid}/approve", json={"comment": "geprüft"})
    assert approved.status_code == 200, approved.text
    assert approved.json()["proposal"]["state"] == "activated"
    assert rt.gateway.policy.version == proposal["version"] != before
    denied = admin("POST", "anna", "/v1/query", json={"sql": "SELECT zuzug_am FROM einwohner LIMIT 3",
                                                       "purpose": "statistik"})
    assert denied.status_code == 403
    assert "einwohner.deny_move_in" in denied.text
    # the installed files are the proposal's
    assert "einwohner.deny_move_in" in (policy_dir / "data" / "grants.yaml").read_text(encoding="utf-8")

    # approving again: not open any more
    again = admin("POST", "dirk", f"/v1/policy/proposals/{pid}/approve")
    assert again.status_code == 409
    assert again.json()["code"] == "proposal_not_open"

    # everything is in the audit trail, including the refusal
    proposed = [e for e in _audit_events(rt, "policy_proposed") if f"policy.proposal={pid}" in e["columns"]]
    assert proposed and proposed[0]["username"] == "dora"
    approvals = [e for e in _audit_events(rt, "policy_approved") if f"policy.proposal={pid}" in e["columns"]]
    assert {(e["username"], e["decision"]) for e in approvals} >= {("dora", "deny"), ("dirk", "allow")}
    # the refusal and the approval name the Rego rules of policies/four_eyes.rego
    refusals = [e for e in approvals if e["error_code"] == "self_approval_refused"]
    assert refusals and refusals[0]["rules"] == ["separation_of_duties.self_approval"]
    granted = [e for e in approvals if e["decision"] == "allow"]
    assert granted and granted[0]["rules"] == ["separation_of_duties.four_eyes"]
    activated = [e for e in _audit_events(rt, "policy_activated") if f"policy.proposal={pid}" in e["columns"]]
    assert activated and activated[0]["policy_version"] == proposal["version"]

    # auditors can read the proposal with its files
    view = admin("GET", "aaron", f"/v1/policy/proposals/{pid}")
    assert view.status_code == 200
    assert "einwohner.deny_move_in" in view.json()["files"]["data/grants.yaml"]


def test_stale_proposal_cannot_be_approved(admin: Callable[..., Any], admin_env: tuple[Runtime, Path]) -> None:
    _, policy_dir = admin_env
    files = _policy_files(policy_dir)
    first = admin("POST", "dora", "/v1/policy/proposals", json={
        "files": {**files, "gateway.rego": files["gateway.rego"] + "\n# Fassung A\n"}, "comment": "revision A"})
    second = admin("POST", "dirk", "/v1/policy/proposals", json={
        "files": {**files, "gateway.rego": files["gateway.rego"] + "\n# Fassung B\n"}, "comment": "revision B"})
    assert first.status_code == second.status_code == 201, first.text + second.text
    assert admin("POST", "dirk", f"/v1/policy/proposals/{first.json()['proposal']['id']}/approve").status_code == 200
    stale = admin("POST", "dora", f"/v1/policy/proposals/{second.json()['proposal']['id']}/approve")
    assert stale.status_code == 409
    assert stale.json()["code"] == "policy_changed_since_proposal"
    withdrawn = admin("POST", "dirk", f"/v1/policy/proposals/{second.json()['proposal']['id']}/reject")
    assert withdrawn.status_code == 200
    assert withdrawn.json()["proposal"]["state"] == "withdrawn"


def test_policy_diff_cli_reports_known_change(admin: Callable[..., Any], admin_env: tuple[Runtime, Path],
                                              tmp_path: Path) -> None:
    """`gateway policy diff` replays the audited queries (from the tests above and these) under a policy
    that takes `sozialleistungen` from sven: his audited queries turn allowed -> denied."""
    rt, policy_dir = admin_env
    ok = admin("POST", "sven", "/v1/query", json={"sql": "SELECT leistungsart, count(*) FROM sozialleistungen "
                                                          "GROUP BY 1", "purpose": "sozialplanung"})
    assert ok.status_code == 200, ok.text
    proposed = tmp_path / "proposed"
    shutil.copytree(policy_dir, proposed)
    grants = proposed / "data" / "grants.yaml"
    text = grants.read_text(encoding="utf-8")
    grants.write_text(text.replace('offices: ["Amt für Soziale Arbeit"]', 'offices: ["Jugendamt"]', 1),
                      encoding="utf-8")
    # the replaced rule must not break the proposal's own tests: drop the ones about sven's grant
    for test_file in proposed.glob("*_test.rego"):
        test_file.unlink()
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "policy", "diff", str(proposed), "--json",
         "--data-dir", str(rt.settings.data_dir), "--config", str(rt.settings.data_dir / "gateway.yaml")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 1, done.stderr  # 1: something would change
    report = json.loads(done.stdout)
    assert report["replayed"] >= 2
    groups = {(g["user"], g["dataset"]): g["changes"] for g in report["changes"]}
    sven = groups[("sven", "sozialleistungen")]
    assert any(c["kind"] == "outcome" and c["detail"].startswith("allowed -> denied (abac.no_grant")
               for c in sven), sven
    assert ("anna", "einwohner") not in groups  # anna is unaffected by this change

    # a proposal identical to the policy in force changes nothing
    same = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "policy", "diff", str(policy_dir),
         "--data-dir", str(rt.settings.data_dir), "--config", str(rt.settings.data_dir / "gateway.yaml")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert same.returncode == 0, same.stdout + same.stderr
    assert "would change" in same.stdout


def test_policy_diff_reports_rows_newly_filtered(admin: Callable[..., Any], admin_env: tuple[Runtime, Path],
                                                 tmp_path: Path) -> None:
    """A proposal that adds a district row filter to anna's statistics grant: her audited query on
    `einwohner` is reported as `row_filter` (her token names no districts, so she would see no row); her
    query on another dataset is not reported."""
    rt, policy_dir = admin_env
    filtered = admin("POST", "anna", "/v1/query", json={
        "sql": "SELECT stadtteil, count(*) AS n FROM einwohner GROUP BY stadtteil", "purpose": "statistik"})
    assert filtered.status_code == 200, filtered.text
    elsewhere = admin("POST", "anna", "/v1/query", json={"sql": "SELECT * FROM stadtteile LIMIT 3",
                                                         "purpose": "statistik"})
    assert elsewhere.status_code == 200, elsewhere.text
    proposed = tmp_path / "proposed"
    shutil.copytree(policy_dir, proposed)
    grants = proposed / "data" / "grants.yaml"
    text = grants.read_text(encoding="utf-8")
    start = text.index("  - id: einwohner.statistik\n")
    grant = text[start:text.index("\n  - id: ", start + 1)]
    assert "row_filters" not in grant and "    max_rows: 100000\n" in grant, grant
    row_filter = ("    row_filters:\n"
                  "      - {column: stadtteil, claim: districts, rule: einwohner.own_districts_only}\n")
    changed = grant.replace("    max_rows: 100000\n", "    max_rows: 100000\n" + row_filter, 1)
    grants.write_text(text.replace(grant, changed, 1), encoding="utf-8")
    # the proposal keeps its Rego tests: `gateway policy diff` refuses a version that fails them (exit 2)
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli.main", "policy", "diff", str(proposed), "--json",
         "--data-dir", str(rt.settings.data_dir), "--config", str(rt.settings.data_dir / "gateway.yaml")],
        capture_output=True, text=True, cwd=REPO, timeout=300, check=False)
    assert done.returncode == 1, done.stderr  # 1: something would change
    groups = {(g["user"], g["dataset"]): g["changes"] for g in json.loads(done.stdout)["changes"]}
    anna = groups.get(("anna", "einwohner"))
    assert anna is not None, groups
    rows = [c for c in anna if c["kind"] == "row_filter"]
    assert [c["detail"] for c in rows] == [
        "rows newly filtered: stadtteil in [] by einwohner.own_districts_only"], anna
    assert filtered.json()["query_id"] in rows[0]["examples"]
    assert ("anna", "stadtteile") not in groups
    assert elsewhere.json()["query_id"] not in {e for group in groups.values() for c in group for e in c["examples"]}
    assert ("sven", "sozialleistungen") not in groups  # his grant and its filters are untouched


def test_on_premises_data_refused_outside_the_network(admin_env: tuple[Runtime, Path],
                                                      access_token: Callable[..., str]) -> None:
    rt, _ = admin_env
    sql = {"sql": "SELECT count(*) AS n FROM sozialleistungen", "purpose": "sozialplanung"}
    headers = {"Authorization": f"Bearer {access_token('sven')}"}
    # no `with`: the app's shutdown would close the module's shared runtime
    outside = TestClient(create_app(rt), raise_server_exceptions=False, client=("203.0.113.7", 40000))
    refused = outside.post("/v1/query", json=sql, headers=headers)
    assert refused.status_code == 403
    assert refused.json()["rule"] == "residency.on_premises_only"
    assert "internal networks" in refused.json()["detail"]
    # the same analyst may read public data from anywhere
    assert outside.post("/v1/query", json={"sql": "SELECT count(*) FROM stadtteile", "purpose": "sozialplanung"},
                        headers=headers).status_code == 200
    inside = TestClient(create_app(rt), raise_server_exceptions=False, client=("10.9.8.7", 40000))
    assert inside.post("/v1/query", json=sql, headers=headers).status_code == 200


def test_retention_hides_rows_past_their_deletion_period(admin: Callable[..., Any],
                                                         raw_db: duckdb.DuckDBPyConnection) -> None:
    """Closed social-benefit cases are invisible ten years after they ended; open cases stay."""
    response = admin("POST", "sven", "/v1/query", json={
        "sql": "SELECT count(*) AS n, count(ende) AS closed FROM sozialleistungen", "purpose": "sozialplanung"})
    assert response.status_code == 200, response.text
    row = response.json()["rows"][0]
    expected = raw_db.execute(
        "SELECT count(*), count(ende) FROM sozialleistungen WHERE stadtteil IN ('Biebrich', 'Dotzheim') "
        "AND (ende IS NULL OR ende >= current_date - INTERVAL 3650 DAY)").fetchone()
    hidden = raw_db.execute(
        "SELECT count(*) FROM sozialleistungen WHERE stadtteil IN ('Biebrich', 'Dotzheim') "
        "AND ende < current_date - INTERVAL 3650 DAY").fetchone()
    assert expected is not None and hidden is not None
    assert hidden[0] > 0  # the scenario has expired cases in sven's districts, so the test can fail
    values = list(row.values()) if isinstance(row, dict) else row
    assert values == [expected[0], expected[1]]
    explain = admin("POST", "sven", "/v1/query/explain", json={
        "sql": "SELECT count(*) FROM sozialleistungen", "purpose": "sozialplanung"})
    assert explain.status_code == 200
    assert "retention.deletion_period" in explain.text


def test_four_eyes_from_the_command_line(admin_env: tuple[Runtime, Path], access_token: Callable[..., str],
                                         tmp_path: Path) -> None:
    """`gateway policy propose / approve / proposals` against the gateway served over a real socket."""
    import threading
    import time

    import uvicorn

    from tests.opa_compat_server import _free_port

    rt, policy_dir = admin_env
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(rt), host="127.0.0.1", port=port, log_level="warning",
                                          lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the gateway did not start"
        time.sleep(0.05)
    try:
        proposed = tmp_path / "proposed"
        shutil.copytree(policy_dir, proposed)
        (proposed / "gateway.rego").write_text(
            (proposed / "gateway.rego").read_text(encoding="utf-8") + "\n# Fassung CLI\n", encoding="utf-8")

        def cli(user: str, *argv: str) -> subprocess.CompletedProcess[str]:
            env = {**os.environ, "GATEWAY_TOKEN": access_token(user)}
            return subprocess.run([sys.executable, "-m", "gateway.cli.main", "policy", *argv,
                                   "--url", f"http://127.0.0.1:{port}"],
                                  capture_output=True, text=True, cwd=REPO, timeout=300, env=env, check=False)

        made = cli("dora", "propose", str(proposed), "--comment", "Kommentar in der Regel", "--json")
        assert made.returncode == 0, made.stderr
        proposal = json.loads(made.stdout)["proposal"]
        own = cli("dora", "approve", proposal["id"])
        assert own.returncode == 1 and "self_approval_refused" in own.stderr
        approved = cli("dirk", "approve", proposal["id"], "--comment", "ok")
        assert approved.returncode == 0, approved.stderr
        assert f"{proposal['id']}  activated" in approved.stdout
        assert rt.gateway.policy.version == proposal["version"]
        listed = cli("aaron", "proposals")  # auditors read proposals
        assert listed.returncode == 0 and f"{proposal['id']}  activated" in listed.stdout
        refused = cli("anna", "proposals")
        assert refused.returncode == 1 and "policy_role_required" in refused.stderr
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def _proposal(proposer: str) -> Any:
    from datetime import UTC, datetime

    from gateway.policy.proposals import Proposal

    return Proposal(id="prop-0123456789ab", version="sha256:new", base_version="sha256:old", comment="test",
                    files=["gateway.rego"], proposed_by=f"sub-{proposer}", proposed_by_name=proposer,
                    proposed_at=datetime.now(UTC), tests="-")


def _person(name: str, *roles: str) -> Any:
    from gateway.identity.principal import Principal

    return Principal(subject=f"sub-{name}", username=name, roles=roles)


def test_four_eyes_rule_same_on_embedded_and_opa_backends() -> None:
    """The four-eyes decision comes from policies/four_eyes.rego on either backend. The OPA side talks to
    tests/opa_compat_server.py, a stand-in for OPA (no OPA binary can run here), over OPA's REST API."""
    from gateway.catalog import load_catalog
    from gateway.policy.embedded import EmbeddedPolicyEngine
    from gateway.policy.engine import load_bundle
    from gateway.policy.opa import OpaPolicyEngine, push_bundle
    from gateway.policy.proposals import four_eyes_decision
    from tests.opa_compat_server import run_compat_server

    bundle = load_bundle(DEFAULT_POLICY_DIR, load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml"))
    cases = [(_person("dora", "dpo"), False, ["separation_of_duties.self_approval"]),
             (_person("dirk", "dpo"), True, ["separation_of_duties.four_eyes"]),
             (_person("aaron", "auditor"), False, ["separation_of_duties.approver_not_authorised"]),
             (_person("dora", "analyst"), False, ["separation_of_duties.self_approval",
                                                  "separation_of_duties.approver_not_authorised"])]
    with run_compat_server() as url:
        push_bundle(url, bundle)
        opa = OpaPolicyEngine(url, version=bundle.version)
        try:
            for engine in (EmbeddedPolicyEngine(bundle), opa):
                for approver, allowed, rules in cases:
                    verdict = four_eyes_decision(engine, _proposal("dora"), approver)
                    assert (verdict.allow, verdict.rules) == (allowed, rules), (type(engine), approver)
        finally:
            opa.close()
    refusal = four_eyes_decision(EmbeddedPolicyEngine(bundle), _proposal("dora"), _person("dora", "dpo"))
    error = refusal.refusal("prop-0123456789ab")
    assert (error.status, error.code) == (403, "self_approval_refused")
    assert error.rule == "separation_of_duties.self_approval"
    assert "prop-0123456789ab yourself" in error.detail


@pytest.mark.parametrize("module", [
    None,  # the policy in force has no four-eyes rule
    'package gateway.four_eyes\n\nimport rego.v1\n\ndecision := "yes"\n',
    'package gateway.four_eyes\n\nimport rego.v1\n\ndecision := {"allow": true, "rule": "r",\n'
    '\t"refusals": [{"rule": "separation_of_duties.self_approval", "message": "m"}]}\n',
])
def test_four_eyes_fails_closed(module: str | None) -> None:
    from gateway.catalog import load_catalog
    from gateway.errors import PolicyUnavailable
    from gateway.policy.embedded import EmbeddedPolicyEngine
    from gateway.policy.engine import PolicyBundle, load_bundle
    from gateway.policy.proposals import four_eyes_decision

    reference = load_bundle(DEFAULT_POLICY_DIR, load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml"))
    modules = {n: t for n, t in reference.modules.items() if n != "four_eyes.rego"}
    if module is not None:
        modules["four_eyes.rego"] = module
    engine = EmbeddedPolicyEngine(PolicyBundle(modules=modules, data=reference.data, version="test"))
    with pytest.raises(PolicyUnavailable) as info:
        four_eyes_decision(engine, _proposal("dora"), _person("dirk", "dpo"))
    assert info.value.code == "four_eyes_unavailable"
    with pytest.raises(PolicyUnavailable):  # an engine without `evaluate` cannot decide either
        four_eyes_decision(object(), _proposal("dora"), _person("dirk", "dpo"))
