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
    for line in readme.splitlines():
        line = line.strip()
        if line.startswith("gateway "):
            assert line.split()[1] in choices, line


def test_user_pages_exist() -> None:
    for page in ("analyst", "dpo", "auditor", "operator", "architecture"):
        assert (ROOT / "docs" / f"{page}.md").stat().st_size > 1000
