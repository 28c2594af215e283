"""Request and response models of the HTTP API (documented in OpenAPI at /docs)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class QueryBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sql: str = Field(description="One read-only SELECT over the catalog datasets.", max_length=100_000)
    purpose: str = Field(
        description="The purpose you query for (Zweckbindung), e.g. `statistik`.",
        min_length=1,
        max_length=100,
    )
    dialect: Literal["postgres", "duckdb", "mysql", "trino"] | None = Field(
        default=None, description="SQL dialect of `sql` (default: the gateway's, usually postgres)."
    )


class OnBehalfOf(BaseModel):
    """Attributes of the analyst a DPO explains a query for (never their token)."""

    model_config = ConfigDict(extra="forbid")

    username: str = Field(max_length=100)
    office: str | None = None
    roles: list[str] = Field(default_factory=list)
    purposes: list[str] = Field(default_factory=list)
    districts: list[str] = Field(default_factory=list)
    clearance: str | None = None


class ExplainBody(QueryBody):
    on_behalf_of: OnBehalfOf | None = Field(
        default=None, description="DPO only: explain the query as this analyst would get it.")


class ExplainResponse(BaseModel):
    allow: bool
    policy_version: str
    rules: list[str]
    datasets: dict[str, Any] = Field(description="Per dataset: column treatments, row filters, limits.")
    columns: list[dict[str, Any]] = Field(description="Result columns and how each is masked.")
    max_rows: int
    rewritten_sql: str | None = Field(
        default=None, description="The SQL the database runs, literals and keys removed (DPO only).")


class DetokeniseBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purpose: str = Field(min_length=1, max_length=100, description="The purpose the tokens were issued for.")
    domain: str = Field(min_length=1, max_length=100, description="The token domain (from the policy).")
    tokens: list[str | None] = Field(max_length=10_000)
    reason: str = Field(min_length=1, max_length=2000, description="Why re-identification is needed (logged).")


class ColumnInfo(BaseModel):
    name: str
    type: str
    masking: str = Field(
        description="plain | pseudonymise | redact | generalise | partial | free_text | "
        "computed | suppression_flag"
    )


class QueryResponse(BaseModel):
    columns: list[ColumnInfo]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    query_id: str
    receipt: dict[str, Any]


class DatasetColumn(BaseModel):
    name: str
    type: str
    personal_data_class: str
    treatment: str
    rule: str
    permitted_uses: list[str]


class DatasetInfo(BaseModel):
    name: str
    title: str
    owner: str
    classification: str
    purpose: str
    access: Literal["microdata", "aggregate_only"]
    min_cell: int | None = None
    row_filters: list[str] = Field(default_factory=list)
    max_rows: int | None = None
    columns: list[DatasetColumn]


class DatasetsResponse(BaseModel):
    datasets: list[DatasetInfo]
    policy_version: str


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    policy_version: str
    policy_backend: str
    audit_head_seq: int
    policy_reload: dict[str, Any] | None = Field(
        default=None, description="Embedded backend: last reload, and the error that kept a new version out.")
