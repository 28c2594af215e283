"""The catalog: datasets, where they live, and per column the personal-data class.

One YAML file (``policies/catalog.yaml`` by default) is loaded into these models. The same data is
handed to the policy engine (as ``data.catalog``) and to the SQL rewriter (as the schema).
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from gateway.policy.decision import MaskOp


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


class DefaultMask(BaseModel):
    """How a column is released when a grant lists it without naming an ``op`` (and on public datasets)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    op: MaskOp = Field(description="A mask operator, as in grants (docs/dpo-policy.md).")
    params: dict[str, Any] = Field(default_factory=dict, description="Operator parameters, as in grants.")


class Column(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True, extra="forbid")

    type: str = Field(description="SQL type as the rewriter should assume it (DuckDB spelling).")
    pd_class: PersonalDataClass = Field(alias="class", description="Personal-data class of the column.")
    description: str | None = None
    default_mask: DefaultMask | None = Field(
        default=None, description="Mask applied where a grant lists the column without an op.")


_CSV_SUFFIXES = (".csv", ".csv.gz", ".tsv")


class DuckDBFile(BaseModel):
    """A Parquet or CSV file that a DuckDB connector serves as a table (docs/connectors.md, DuckDB)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str = Field(description="The file, relative to the data dir or absolute.")
    format: Literal["parquet", "csv"] | None = Field(
        default=None, description="parquet | csv; by default from the file name (.parquet, .csv, .csv.gz, .tsv).")
    header: bool | None = Field(default=None, description="CSV: the first line names the columns (default: detected).")
    delimiter: str | None = Field(default=None, description="CSV: the column separator, e.g. ';' (default: detected).")
    quote: str | None = Field(default=None, description="CSV: the quote character (default: detected).")
    encoding: Literal["utf-8", "utf-16", "latin-1"] | None = Field(default=None, description="CSV: default utf-8.")
    date_format: str | None = Field(default=None, description="CSV: e.g. '%d.%m.%Y' (default: ISO dates detected).")
    decimal_separator: Literal[".", ","] | None = Field(default=None, description="CSV: default '.'.")
    null_string: str | None = Field(default=None, description="CSV: the text read as NULL (default: an empty field).")
    types: dict[str, str] = Field(default_factory=dict, description=(
        "CSV: column -> DuckDB type, e.g. {betrag: 'DECIMAL(12,2)'}; the other columns' types are detected."))

    @property
    def file_format(self) -> Literal["parquet", "csv"]:
        if self.format is not None:
            return self.format
        name = self.path.lower()
        if name.endswith(".parquet"):
            return "parquet"
        if name.endswith(_CSV_SUFFIXES):
            return "csv"
        raise ValueError(f"file {Path(self.path).name}: set format (parquet or csv)")

    def reader_options(self) -> dict[str, object]:
        """The CSV options in DuckDB's ``read_csv`` spelling (none for Parquet; unset ones left out)."""
        options: dict[str, object] = {
            "header": self.header, "delim": self.delimiter, "quote": self.quote, "encoding": self.encoding,
            "dateformat": self.date_format, "decimal_separator": self.decimal_separator,
            "nullstr": self.null_string, "types": dict(self.types) or None,
        }
        return {name: value for name, value in options.items() if value is not None}

    @model_validator(mode="after")
    def _csv_options_only_for_csv(self) -> DuckDBFile:
        if self.file_format == "parquet" and self.reader_options():
            raise ValueError(f"file {Path(self.path).name}: CSV options (header, delimiter, …) on a Parquet file")
        return self


#: the catalog fields each kind of connector takes (docs/operator.md, "Connectors")
_CONNECTOR_FIELDS: dict[str, frozenset[str]] = {
    "duckdb": frozenset({"database", "files", "schema_name", "threads", "memory_limit"}),
    "postgres": frozenset({"dsn_env", "dsn_file", "schema_name", "pool_max", "connect_timeout_s"}),
    "mysql": frozenset({"dsn_env", "dsn_file", "pool_max", "connect_timeout_s"}),
    "trino": frozenset({"dsn_env", "dsn_file", "schema_name", "host", "port", "user", "catalog", "http_scheme",
                        "tls_ca_file", "connect_timeout_s"}),
}


class ConnectorConfig(BaseModel):
    # unknown keys are refused: a typo must not silently fall back to a default, and a `password:` or
    # `dsn:` key (secrets in the reviewed catalog) must stop the start
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    kind: str = Field(description="duckdb | postgres | mysql | trino")
    database: str | None = Field(default=None, description="DuckDB file (relative to the data dir).")
    dsn_env: str | None = Field(default=None, description="Environment variable holding the DSN.")
    dsn_file: str | None = Field(default=None, description="File holding the DSN (a secret file).")
    schema_name: str | None = Field(default=None, alias="schema")
    # Trino (docs/connectors.md): where and as whom; the password only ever comes from dsn_env/dsn_file
    host: str | None = Field(default=None, description="Trino: coordinator host name.")
    port: int | None = Field(default=None, description="Trino: coordinator port (8443 for https, 8080 for http).")
    user: str | None = Field(default=None, description="Trino: the gateway's user name.")
    catalog: str | None = Field(default=None, description="Trino: the catalog the datasets' tables are in.")
    http_scheme: Literal["https", "http"] | None = Field(default=None, description="Trino: https (default).")
    tls_ca_file: str | None = Field(default=None, description="Trino: CA bundle of the coordinator's certificate.")
    # DuckDB (docs/connectors.md): declared Parquet/CSV files, served as tables by name; engine settings
    files: dict[str, DuckDBFile] = Field(default_factory=dict, description=(
        "DuckDB: table name -> a Parquet or CSV file (loaded read-only at start; never a path from SQL)."))
    threads: int | None = Field(default=None, ge=1, description="DuckDB: worker threads (default: one per core).")
    # PostgreSQL and MariaDB/MySQL: the connection pool
    pool_max: int = Field(default=4, ge=1, le=64, description="postgres/mysql: connections kept open at most.")
    connect_timeout_s: float = Field(default=5.0, gt=0, le=60, description=(
        "postgres/mysql: how long to wait for a connection before answering 503 connector_unavailable; "
        "trino: the time limit of each HTTP request to the coordinator."))
    memory_limit: str | None = Field(default=None, description="DuckDB: e.g. '2GB' (default: 80 % of the RAM).")

    @field_validator("files")
    @classmethod
    def _lower_table_names(cls, value: dict[str, DuckDBFile]) -> dict[str, DuckDBFile]:
        for name in value:
            if name != name.lower():
                raise ValueError(f"table names of files must be lower case: {name!r}")
        return value

    @model_validator(mode="after")
    def _files_only_on_duckdb(self) -> ConnectorConfig:
        if self.files and self.kind != "duckdb":
            raise ValueError(f"files: only a duckdb connector serves declared files (kind is {self.kind!r})")
        return self

    @model_validator(mode="after")
    def _fields_of_its_kind(self) -> ConnectorConfig:
        allowed = _CONNECTOR_FIELDS.get(self.kind)
        if allowed is None:
            raise ValueError(f"kind {self.kind!r} is not supported: use one of {', '.join(_CONNECTOR_FIELDS)}")
        # set to something other than its default (a dumped and re-read entry carries every field)
        wrong = sorted(name for name in set(self.model_fields_set) - allowed - {"kind"}
                       if getattr(self, name) != type(self).model_fields[name].get_default(call_default_factory=True))
        if wrong:
            raise ValueError(f"{', '.join(wrong)}: not a setting of a {self.kind} connector "
                             f"(it takes {', '.join(sorted(allowed))})")
        return self

    def serves_file(self, table: str) -> bool:
        """Whether ``table`` is one of this connector's declared files (not a table of a database)."""
        return table.lower() in self.files


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
    model_config = ConfigDict(frozen=True, extra="forbid")

    title: str = ""
    connector: str
    table: str
    owner: str
    classification: Classification
    legal_regime: str
    legal_basis: str = Field(description=(
        "Legal basis of the processing, e.g. '§ 3 HMeldeG i. V. m. Art. 6 Abs. 1 lit. e DSGVO'; "
        "named in every decision that releases the dataset."))
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
            "legal_basis": ds.legal_basis,
            "purposes": list(ds.purposes),
            "person_key": ds.person_key,
            "connector": ds.connector,
            "columns": {col: Catalog._policy_column(c) for col, c in ds.columns.items()},
        }
        # optional parts are left out when unset: Rego tests presence (`data.catalog[d].retention`)
        if ds.residency is not None:
            entry["residency"] = ds.residency.model_dump()
        if ds.retention is not None:
            entry["retention"] = ds.retention.model_dump()
        return entry

    @staticmethod
    def _policy_column(column: Column) -> dict[str, Any]:
        entry: dict[str, Any] = {"class": column.pd_class.value, "type": column.type}
        if column.default_mask is not None:
            entry["default_mask"] = column.default_mask.model_dump()
        return entry


def catalog_errors(exc: ValidationError) -> str:
    """Each problem with where it is and what is wrong, never the value found there: a value in the
    wrong place may be a secret (a `password:` key in a connector entry)."""
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or '(top)'}: {error['msg']}"
                     for error in exc.errors(include_input=False, include_url=False))


def load_catalog(path: Path) -> Catalog:
    with path.open(encoding="utf-8") as fh:
        raw = yaml.safe_load(fh)
    try:
        catalog = Catalog.model_validate(raw)
    except ValidationError as exc:
        raise ValueError(f"the catalog {path} is not valid: {catalog_errors(exc)}") from None
    for name, ds in catalog.datasets.items():
        if ds.connector not in catalog.connectors:
            raise ValueError(f"dataset {name!r} names unknown connector {ds.connector!r}")
        if ds.retention is not None and ds.retention.column not in ds.columns:
            raise ValueError(f"dataset {name!r}: retention column {ds.retention.column!r} is not one of its columns")
        if ds.person_key is not None and ds.person_key not in ds.columns:
            raise ValueError(f"dataset {name!r}: person_key {ds.person_key!r} is not one of its columns")
    return catalog
