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
