"""The catalog: datasets, where they live, and per column the personal-data class.

One YAML file (``policies/catalog.yaml`` by default) is loaded into these models. The same data is
handed to the policy engine (as ``data.catalog``) and to the SQL rewriter (as the schema).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator


class PersonalDataClass(StrEnum):
    DIRECT_IDENTIFIER = "direct_identifier"
    QUASI_IDENTIFIER = "quasi_identifier"
    SENSITIVE = "sensitive"
    FREE_TEXT = "free_text"
    NONE = "none"


class Classification(StrEnum):
    OEFFENTLICH = "oeffentlich"
    INTERN = "intern"
    VERTRAULICH = "vertraulich"
    STRENG_VERTRAULICH = "streng_vertraulich"


class Column(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    type: str = Field(description="SQL type as the rewriter should assume it (DuckDB spelling).")
    pd_class: PersonalDataClass = Field(alias="class", description="Personal-data class of the column.")
    description: str | None = None


class ConnectorConfig(BaseModel):
    model_config = ConfigDict(extra="allow")

    kind: str = Field(description="duckdb | postgres | mysql | trino")
    database: str | None = Field(default=None, description="DuckDB file (relative to the data dir).")
    dsn_env: str | None = Field(default=None, description="Environment variable holding the DSN.")
    dsn_file: str | None = Field(default=None, description="File holding the DSN (a secret file).")
    schema_name: str | None = Field(default=None, alias="schema")


class Residency(BaseModel):
    """Where a dataset lives and where it may be served (data sovereignty)."""

    model_config = ConfigDict(extra="forbid")

    stored_in: str = Field(description="Where the data is kept, e.g. 'Rechenzentrum der Stadt'.")
    serve: Literal["anywhere", "on_premises"] = Field(
        default="anywhere",
        description="on_premises: released only to clients inside the policy's internal networks.",
    )


class Retention(BaseModel):
    """Deletion period (Löschfrist): rows older than ``days`` (by ``column``) are invisible to every query."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field(description="The date or timestamp column the period runs from.")
    days: int = Field(ge=1, description="Deletion period in days.")
    category: str = Field(description="Retention category, named in decisions and docs.")
    keep_null: bool = Field(
        default=False, description="Rows whose date is NULL (e.g. a case still open) stay visible."
    )


class Dataset(BaseModel):
    model_config = ConfigDict(frozen=True)

    title: str = ""
    connector: str
    table: str
    owner: str
    classification: Classification
    legal_regime: str
    purposes: tuple[str, ...]
    person_key: str | None = None
    residency: Residency | None = None
    retention: Retention | None = None
    pseudonym_replica: bool = Field(default=True, description=(
        "DuckDB datasets: the gateway may keep a replica with precomputed pseudonyms "
        "(gateway/sql/pseudonym_replica.py); false: pseudonyms are always computed in SQL."))
    columns: dict[str, Column]

    @field_validator("columns")
    @classmethod
    def _lower_names(cls, value: dict[str, Column]) -> dict[str, Column]:
        for name in value:
            if name != name.lower():
                raise ValueError(f"column names must be lower case: {name!r}")
        return value


class Catalog(BaseModel):
    version: int = 1
    connectors: dict[str, ConnectorConfig]
    datasets: dict[str, Dataset]

    def dataset(self, name: str) -> Dataset | None:
        return self.datasets.get(name.lower())

    def schema_for_sqlglot(self) -> dict[str, dict[str, str]]:
        """``{table: {column: type}}`` for sqlglot's ``qualify``."""
        return {name: {col: c.type for col, c in ds.columns.items()} for name, ds in self.datasets.items()}

    def as_policy_data(self) -> dict[str, Any]:
        """The catalog as the policy sees it (``data.catalog``)."""
        return {name: self._policy_entry(ds) for name, ds in self.datasets.items()}

    @staticmethod
    def _policy_entry(ds: Dataset) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "owner": ds.owner,
            "classification": ds.classification.value,
            "legal_regime": ds.legal_regime,
            "purposes": list(ds.purposes),
            "person_key": ds.person_key,
            "connector": ds.connector,
            "columns": {
                col: {"class": c.pd_class.value, "type": c.type} for col, c in ds.columns.items()
            },
        }
        # optional parts are left out when unset: Rego tests presence (`data.catalog[d].retention`)
        if ds.residency is not None:
            entry["residency"] = ds.residency.model_dump()
        if ds.retention is not None:
            entry["retention"] = ds.retention.model_dump()
        return entry


def load_catalog(path: Path) -> Catalog:
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    catalog = Catalog.model_validate(raw)
    for name, ds in catalog.datasets.items():
        if ds.connector not in catalog.connectors:
            raise ValueError(f"dataset {name!r} names unknown connector {ds.connector!r}")
        if ds.retention is not None and ds.retention.column not in ds.columns:
            raise ValueError(f"dataset {name!r}: retention column {ds.retention.column!r} is not one of its columns")
        if ds.person_key is not None and ds.person_key not in ds.columns:
            raise ValueError(f"dataset {name!r}: person_key {ds.person_key!r} is not one of its columns")
    return catalog
