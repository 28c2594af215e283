"""Rego v1 syntax only: regopy still reads v0 rule heads that OPA >= 1.0 refuses, so the gateway refuses
them itself (``gateway policy check`` and before any version goes live)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from gateway.catalog import load_catalog
from gateway.config import DEFAULT_POLICY_DIR
from gateway.errors import PolicyUnavailable
from gateway.policy.lint import check_policy
from gateway.policy.rego_syntax import modules_v1_problems, rego_v1_problems
from gateway.policy.reload import load_candidate

V1_MODULE = '''package x

import rego.v1

default allow := false

roles := {"dpo"}

decision := {
\t"allow": allow,
}

filters(name) := [{"column": name}]

allow if input.user in roles

denials contains msg if {
\tmsg := "no"
}

f(x) := y if {
\ty := x
} else := 0
'''


def test_the_reference_policy_is_rego_v1() -> None:
    modules = {p.name: p.read_text(encoding="utf-8") for p in DEFAULT_POLICY_DIR.glob("*.rego")}
    assert len(modules) >= 4
    assert modules_v1_problems(modules) == []


def test_v1_constructs_are_not_mistaken_for_v0() -> None:
    assert rego_v1_problems("x.rego", V1_MODULE) == []


@pytest.mark.parametrize("head", ["deny[msg] {", "allow {", "f(x) := y {", "z := input.a {", "test_a {",
                                  "default_grant = g {"])
def test_v0_rule_heads_are_named_with_their_line(head: str) -> None:
    problems = rego_v1_problems("x.rego", V1_MODULE + f"\n{head}\n\ttrue\n}}\n")
    assert len(problems) == 1
    line = len(V1_MODULE.splitlines()) + 2
    assert problems[0].startswith(f"x.rego:{line}: Rego v0 rule head `{head}`")


def test_a_module_without_the_v1_import_is_named() -> None:
    problems = rego_v1_problems("y.rego", V1_MODULE.replace("import rego.v1\n", ""))
    assert problems == ["y.rego: add `import rego.v1` after the package line (Rego v1 syntax, portable to OPA 1.0)"]


def _policy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(DEFAULT_POLICY_DIR, target)
    return target


def test_check_and_activation_refuse_a_v0_module(tmp_path: Path) -> None:
    """regopy compiles the v0 rule (the embedded engine alone would accept it); the gateway does not."""
    policy_dir = _policy_copy(tmp_path)
    (policy_dir / "extra.rego").write_text("package gateway.extra\n\nimport rego.v1\n\nflag[x] {\n\tx := 1\n}\n",
                                           encoding="utf-8")
    catalog = load_catalog(policy_dir / "catalog.yaml")
    findings = [f for f in check_policy(policy_dir, catalog) if f.severity == "error"]
    assert [f.message for f in findings] == [
        "extra.rego:5: Rego v0 rule head `flag[x] {`: write `... if {` (or `... contains x if {` for a partial "
        "set rule)"]
    with pytest.raises(PolicyUnavailable) as caught:
        load_candidate(policy_dir, policy_dir / "catalog.yaml", run_tests=False)
    assert caught.value.code == "policy_invalid" and "not Rego v1 syntax" in caught.value.detail
    (policy_dir / "extra.rego").write_text("package gateway.extra\n\nimport rego.v1\n\nflag contains x if {\n"
                                           "\tx := 1\n}\n", encoding="utf-8")
    assert load_candidate(policy_dir, policy_dir / "catalog.yaml", run_tests=False).bundle.version
