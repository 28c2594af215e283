"""What a caller may query, and how each column is treated: the answer of GET /v1/datasets."""

from __future__ import annotations

from gateway.api.models import DatasetColumn, DatasetInfo
from gateway.identity.principal import Principal
from gateway.pipeline import Gateway, RequestContext


def visible_datasets(
    gateway: Gateway, principal: Principal, purpose: str | None, ctx: RequestContext
) -> list[DatasetInfo]:
    purposes = [purpose] if purpose else list(principal.purposes) or ["-"]
    result: list[DatasetInfo] = []
    for name, dataset in gateway.catalog.datasets.items():
        for wanted in purposes:
            decision = gateway.decide(principal, wanted, [name], ctx)
            ds = decision.datasets.get(name)
            if not decision.allow or ds is None:
                continue
            columns = [
                DatasetColumn(
                    name=col,
                    type=meta.type,
                    personal_data_class=meta.pd_class.value,
                    treatment=ds.columns[col].op,
                    rule=ds.columns[col].rule,
                    permitted_uses=list(ds.columns[col].permitted_uses()),
                )
                for col, meta in dataset.columns.items()
                if col in ds.columns
            ]
            result.append(
                DatasetInfo(
                    name=name,
                    title=dataset.title,
                    owner=dataset.owner,
                    classification=dataset.classification.value,
                    purpose=wanted,
                    access="aggregate_only" if ds.aggregate_only else "microdata",
                    min_cell=ds.aggregate_only.min_cell if ds.aggregate_only else None,
                    row_filters=[
                        f"{f.column} in ({', '.join(map(str, f.values))}) [rule {f.rule}]"
                        for f in ds.row_filters
                    ],
                    max_rows=ds.max_rows,
                    columns=columns,
                )
            )
            break
    return result
