"""Gateway configuration: one YAML file (``GATEWAY_CONFIG``) plus ``GATEWAY_*`` environment variables.

Environment variables win over the file; nested fields use ``__`` (``GATEWAY_IDENTITY__ISSUER``).
Secrets (keys, DSNs) are never values here: settings name the *files* or *environment variables* that
hold them. Every field is documented in docs/operator.md (a test keeps the two in step).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.identity.settings import IdentitySettings

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_POLICY_DIR = REPO_ROOT / "policies"


class OpaSettings(BaseModel):
    url: str = Field(default="http://127.0.0.1:8181", description="Base URL of the OPA server.")
    timeout_seconds: float = Field(default=2.0, gt=0, description="Timeout of one decision request.")
    push_policy: bool = Field(default=False, description=(
        "Upload the policy directory (after its Rego tests pass) to OPA at start and on four-eyes "
        "activation; for an OPA that has no bundle source of its own (tests and development)."))
    bundle_dir: Path | None = Field(default=None, description=(
        "The bundle directory OPA serves (opa run --server --watch --bundle DIR), writable for the gateway: "
        "four-eyes activation publishes the approved policy there and the gateway adopts it once OPA "
        "serves its revision. Unset: OPA's bundle is updated by other means."))


class Settings(BaseSettings):
    """All settings of one gateway process."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", env_nested_delimiter="__", extra="forbid")

    data_dir: Path = Field(
        default=Path(".gateway-demo"),
        description="Directory for the DuckDB files, keys and the embedded audit store.",
    )
    catalog_path: Path = Field(default=DEFAULT_POLICY_DIR / "catalog.yaml", description="The catalog file.")
    policy_dir: Path = Field(default=DEFAULT_POLICY_DIR, description="Rego modules and policy data.")
    policy_backend: Literal["embedded", "opa"] = Field(
        default="embedded", description="embedded (regopy) or opa (OPA server)."
    )
    opa: OpaSettings = Field(default_factory=OpaSettings)
    policy_reload_seconds: float = Field(default=2.0, ge=0, description=(
        "Embedded backend: check the policy files this often and switch to a changed version once it "
        "compiles and passes its Rego tests (0 turns reloading off)."))
    identity: IdentitySettings | None = Field(default=None, description="OIDC access-token verification.")
    audit_url: str | None = Field(
        default=None,
        description=("Audit store: sqlite:///path or postgresql://... (default: sqlite in the data dir)."),
    )
    keys_dir: Path | None = Field(
        default=None,
        description=(
            "Directory with the pseudonym master key and the audit signing keys (default: <data_dir>/keys)."
        ),
    )
    max_rows_cap: int = Field(default=1_000_000, ge=1, description="Upper bound on rows of any one answer.")
    json_stream_after_rows: int = Field(default=50_000, ge=1, description=(
        "JSON answers with more rows than this are streamed batch by batch instead of built whole "
        "(the audit trail then holds a query and a query_completed record, as for CSV/Arrow/Parquet)."))
    aggregate_max_groups: int = Field(default=10_000, ge=1, description=(
        "Most rows (groups) of an aggregate-only answer: such answers are held whole in memory while "
        "disclosure control runs, so a larger one is refused with aggregate_too_large."))
    statement_timeout_seconds: float = Field(default=30.0, gt=0, description="Per-query time limit.")
    default_dialect: Literal["postgres", "duckdb", "mysql", "trino"] = Field(
        default="postgres", description="SQL dialect assumed when a request names none."
    )
    pii_language: Literal["de", "en"] = Field(default="de", description="Language of free-text scanning.")
    precompute_pseudonyms: bool = Field(default=True, description=(
        "Compute the pseudonyms the grants ask for ahead, once per version of a DuckDB source, into a "
        "replica under <data_dir>/pseudonyms/ (a copy of the source's personal data, rebuilt on start "
        "when the source or the keys changed); masked scans then cost about what unmasked ones do. "
        "Off: every pseudonym is computed in SQL."))

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (env_settings, init_settings)

    def resolved_keys_dir(self) -> Path:
        return self.keys_dir if self.keys_dir is not None else self.data_dir / "keys"

    def resolved_audit_url(self) -> str:
        return self.audit_url or f"sqlite:///{(self.data_dir / 'audit.sqlite').resolve()}"


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Read the config file (``path`` or ``$GATEWAY_CONFIG``), then apply env vars and ``overrides``."""
    data: dict[str, Any] = {}
    config_path = path or (Path(os.environ["GATEWAY_CONFIG"]) if os.environ.get("GATEWAY_CONFIG") else None)
    if config_path is not None:
        loaded = yaml.safe_load(config_path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, dict):
            raise ValueError(f"{config_path} must hold a mapping of settings")
        data.update(loaded)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return Settings(**data)
