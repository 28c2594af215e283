"""Docs that are tested stay true: every setting is documented, every README command exists."""

from __future__ import annotations

from pathlib import Path

from gateway.cli.main import build_parser
from gateway.config import OpaSettings, Settings
from gateway.identity.settings import IdentitySettings

ROOT = Path(__file__).resolve().parent.parent


def test_every_setting_is_in_the_operator_guide() -> None:
    text = (ROOT / "docs" / "operator.md").read_text(encoding="utf-8")
    for name in Settings.model_fields:
        if name in ("opa", "identity"):
            continue
        assert f"`{name}`" in text, f"setting {name} is not documented in docs/operator.md"
    for name in OpaSettings.model_fields:
        assert f"opa.{name}" in text
    for name in IdentitySettings.model_fields:
        assert f"identity.{name}" in text, f"identity.{name} is not documented"


def test_readme_commands_are_real_subcommands() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    parser = build_parser()
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert choices is not None
    for line in readme.splitlines():
        line = line.strip()
        if line.startswith("gateway "):
            assert line.split()[1] in choices, line


def test_user_pages_exist() -> None:
    for page in ("analyst", "dpo", "auditor", "operator", "architecture"):
        assert (ROOT / "docs" / f"{page}.md").stat().st_size > 1000


def _section(page: str, heading: str) -> str:
    """The text of the section ``heading`` (a ``###`` line) up to the next heading or rule."""
    text = (ROOT / "docs" / page).read_text(encoding="utf-8")
    start = text.index(f"\n### {heading}\n")
    ends = [i for marker in ("\n### ", "\n## ", "\n---") if (i := text.find(marker, start + 1)) != -1]
    return text[start:min(ends, default=len(text))]


def _blocks(section: str, language: str) -> list[str]:
    return [block.split("\n", 1)[1] for block in section.split("```")[1::2] if block.startswith(language + "\n")]


def test_writing_a_rule_example_compiles_and_its_tests_pass(tmp_path: Path) -> None:
    """The rule and test of dpo-policy.md section 11 (German and English alike), added to a copy of the
    policies, pass `gateway policy test` with every existing test; without the rule its test fails."""
    import io
    import shutil

    from gateway.policy.testing import policy_test_main

    english = _blocks(_section("dpo-policy.md", "11. Writing a rule"), "rego")
    german = _blocks(_section("dpo-policy.md", "11. Eine Regel schreiben"), "rego")
    assert len(english) == 2 and german == english
    rule, test = english
    assert "denials contains {" in rule and "\ntest_" in test
    policy_dir = tmp_path / "policies"
    shutil.copytree(ROOT / "policies", policy_dir)
    (policy_dir / "office_required.rego").write_text(rule, encoding="utf-8")
    (policy_dir / "office_required_test.rego").write_text(test, encoding="utf-8")
    out = io.StringIO()
    assert policy_test_main(policy_dir, policy_dir / "catalog.yaml", out=out) == 0, out.getvalue()
    assert "PASS  gateway.office_required_test.test_einwohner_needs_an_office" in out.getvalue()
    assert "PASS  gateway.office_required_test.test_members_of_an_office_still_allowed" in out.getvalue()

    (policy_dir / "office_required.rego").unlink()
    for other in policy_dir.glob("*_test.rego"):
        if other.name != "office_required_test.rego":
            other.unlink()
    out = io.StringIO()
    assert policy_test_main(policy_dir, policy_dir / "catalog.yaml", out=out) == 1, out.getvalue()
    assert "FAIL  gateway.office_required_test.test_einwohner_needs_an_office" in out.getvalue()


def test_worked_example_decision_is_the_policys() -> None:
    """The example input and decision of dpo-policy.md section 7 are what the reference policy answers."""
    import json

    from gateway.catalog import load_catalog
    from gateway.policy.embedded import EmbeddedPolicyEngine
    from gateway.policy.engine import DECISION_PATH, load_bundle

    english = _blocks(_section("dpo-policy.md", "7. Worked example: the Wiesbaden reference scenario"), "json")
    german = _blocks(_section("dpo-policy.md", "7. Beispiel: das Referenzszenario Wiesbaden"), "json")
    assert len(english) == 2 and german == english
    policy_input, documented = (json.loads(block) for block in english)
    engine = EmbeddedPolicyEngine(load_bundle(ROOT / "policies", load_catalog(ROOT / "policies" / "catalog.yaml")))
    assert engine.evaluate(DECISION_PATH, policy_input) == documented
    assert [f["rule"] for f in documented["datasets"]["sozialleistungen"]["row_filters"]] == [
        "sozialleistungen.own_districts_only", "retention.deletion_period"]
