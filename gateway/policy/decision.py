"""The decision document: what the policy answers for one request.

Versioned (``schema_version``) and documented in docs/dpo.md. Both policy backends (embedded Rego and
an OPA server) must produce exactly this shape; anything that does not validate is treated as a denial
(fail closed).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MaskOp = Literal[
    "plain", "deny", "redact", "pseudonymise", "generalise", "partial", "free_text", "noise", "tokenise"
]
ColumnUse = Literal["select", "filter", "group", "join", "order", "aggregate"]

#: what each mask permits by default, when the policy does not say (see docs/dpo.md, "column uses")
DEFAULT_USES: dict[str, tuple[ColumnUse, ...]] = {
    "plain": ("select", "filter", "group", "join", "order", "aggregate"),
    "pseudonymise": ("select", "group", "join", "order", "aggregate"),
    "generalise": ("select", "filter", "group", "order", "aggregate"),
    "redact": ("select",),
    "partial": ("select",),
    "free_text": ("select",),
    # deterministic noise: the noisy value may be filtered/ordered/aggregated like any release, but not
    # grouped or joined (equal values get equal offsets, so a join would link records across tables)
    "noise": ("select", "filter", "order", "aggregate"),
    # raw in SQL, encrypted after the query: any use inside SQL would see the raw value
    "tokenise": ("select",),
    "deny": (),
}


class ColumnRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    op: MaskOp = Field(description="How the column is released.")
    rule: str = Field(description="Name of the policy rule that set this treatment.")
    params: dict[str, Any] = Field(default_factory=dict, description="Operator parameters.")
    uses: tuple[ColumnUse, ...] | None = Field(
        default=None, description="Permitted uses; None means the operator's default (DEFAULT_USES)."
    )

    def permitted_uses(self) -> tuple[ColumnUse, ...]:
        return self.uses if self.uses is not None else DEFAULT_USES[self.op]


class RowFilter(BaseModel):
    model_config = ConfigDict(frozen=True)

    column: str
    op: Literal["in", "eq", "not_before_days"] = "in"
    values: tuple[str | int | float, ...] = ()
    #: retention only: a row whose date is NULL (a case still open) stays visible
    keep_null: bool = False
    rule: str


class DominanceRule(BaseModel):
    """(n, p) dominance: suppress a magnitude cell whose ``n`` largest contributors (persons) make up
    more than ``p`` per cent of it. Applies to sums/averages of the listed columns (docs/sdc.md)."""

    model_config = ConfigDict(frozen=True)

    n: int = Field(default=2, ge=1, description="Number of largest contributors.")
    p: float = Field(default=85.0, gt=0, le=100, description="Share in per cent that they may not exceed.")
    columns: tuple[str, ...] = Field(default=(), description="Magnitude columns the rule applies to.")


class DifferencingRule(BaseModel):
    """Differencing guard: refuse a query whose population differs from a recent one by fewer than
    ``min_difference`` persons (default: the rule's ``min_cell``). See docs/sdc.md."""

    model_config = ConfigDict(frozen=True)

    enabled: bool = True
    window: int = Field(default=20, ge=1, description="Populations remembered per user and dataset.")
    min_difference: int | None = Field(default=None, ge=1, description="Default: min_cell.")


class DpRule(BaseModel):
    """Differential privacy for count/sum/avg: noise per query, a privacy budget per user and dataset."""

    model_config = ConfigDict(frozen=True)

    epsilon_per_query: float = Field(gt=0, description="Privacy loss charged for one query.")
    budget: float = Field(gt=0, description="Total epsilon per user and dataset.")
    bounds: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="Clamping bounds [lower, upper] per column for sum and avg."
    )
    max_contributions: int = Field(default=1, ge=1, description="Rows per person that are counted at most.")


class AggregateRule(BaseModel):
    model_config = ConfigDict(frozen=True)

    min_cell: int = Field(ge=1, description="Minimum distinct persons behind each released cell.")
    rule: str
    dominance: DominanceRule | None = Field(default=None, description="Dominance rule for magnitude cells.")
    secondary_suppression: bool = Field(default=True, description="Protect ROLLUP margins by suppression.")
    differencing: DifferencingRule = Field(default_factory=DifferencingRule, description="Differencing guard.")
    dp: DpRule | None = Field(default=None, description="Differential privacy (noise and budget).")


class DatasetDecision(BaseModel):
    model_config = ConfigDict(frozen=True)

    allow: bool
    rules: tuple[str, ...] = ()
    legal_basis: str | None = Field(default=None, description="The dataset's legal basis (catalog).")
    columns: dict[str, ColumnRule] = Field(default_factory=dict)
    row_filters: tuple[RowFilter, ...] = ()
    aggregate_only: AggregateRule | None = None
    max_rows: int | None = None


class Denial(BaseModel):
    model_config = ConfigDict(frozen=True)

    rule: str
    message: str
    dataset: str | None = None


class Decision(BaseModel):
    """The policy's answer for one request (schema version 1)."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = 1
    allow: bool
    datasets: dict[str, DatasetDecision] = Field(default_factory=dict)
    denials: tuple[Denial, ...] = ()
    policy_version: str = ""

    def rules(self) -> list[str]:
        names: list[str] = [d.rule for d in self.denials]
        for ds in self.datasets.values():
            names.extend(ds.rules)
            names.extend(f.rule for f in ds.row_filters)
            if ds.aggregate_only:
                names.append(ds.aggregate_only.rule)
        return sorted(set(names))

    def legal_bases(self) -> dict[str, str]:
        """The catalog's legal basis per released dataset (what the audit record states as the basis)."""
        return {name: ds.legal_basis for name, ds in sorted(self.datasets.items()) if ds.legal_basis}


class PolicyInput(BaseModel):
    """What the policy sees. Borrows the top-level names of Trino's OPA plugin input (identity, action, resource,
    context) and adds the declared purpose; docs/architecture.md maps it to Trino's input field by field."""

    identity: dict[str, Any]
    action: dict[str, Any]
    resource: dict[str, Any]
    context: dict[str, Any] = Field(default_factory=dict)
