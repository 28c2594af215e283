"""Operators applied to the Arrow result after the query (the ones SQL engines cannot do portably).

Every mask SQL can express runs in the database (gateway/sql/masks.py). What remains is ``tokenise``
(AES-SIV encryption): the rewriter passes the raw column through (only as a bare projection, like
``free_text``) and ``apply_arrow_side`` replaces it by tokens before the result leaves the gateway.
The plan says which output columns need it: ``OutputColumn.masking == "tokenise"`` (from the lineage
origin's op, as for free text). Work is vectorised: each column is dictionary-encoded, every distinct
value is encrypted once and the tokens are gathered back with ``take``.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc

from gateway.masking.tokens import Tokeniser
from gateway.policy.decision import Decision
from gateway.sql.masks import KeyRing
from gateway.sql.rewrite import RewritePlan

ARROW_SIDE_OPS = ("tokenise",)


@dataclass(frozen=True)
class ArrowSideContext:
    """What the Arrow-side stage needs besides the plan: the key ring, the purpose, the decision."""

    keys: KeyRing
    purpose: str
    decision: Decision


def arrow_side_positions(plan: RewritePlan) -> list[int]:
    """Output positions whose values must be tokenised before release."""
    return [i for i, column in enumerate(plan.columns) if column.masking in ARROW_SIDE_OPS]


def canonical_strings(values: pa.ChunkedArray | pa.Array) -> pa.ChunkedArray | pa.Array:
    """Values as text, the same whichever engine produced them (the input of ``tokenise``).

    Timestamps are spelled with microseconds (UTC for time-zone aware ones), decimals with their
    scale, dates as ISO dates; engines that give int32 or int64, decimal(10,2) or decimal(38,2) give
    the same text.
    """
    kind = values.type
    if pa.types.is_string(kind):
        return values
    if pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return pc.cast(values, pa.string())
    if pa.types.is_timestamp(kind):
        if kind.tz is not None:
            values = pc.cast(values, pa.timestamp(kind.unit, tz="UTC"))
            values = pc.local_timestamp(values)
        return pc.cast(pc.cast(values, pa.timestamp("us")), pa.string())
    if pa.types.is_dictionary(kind):
        return canonical_strings(pc.cast(values, kind.value_type))
    return pc.cast(values, pa.string())


def tokenise_array(values: pa.ChunkedArray | pa.Array, tokeniser: Tokeniser, domain: str) -> pa.Array:
    """Tokens for ``values`` (NULL stays NULL): one encryption per distinct value, then a gather."""
    text = canonical_strings(values)
    if isinstance(text, pa.ChunkedArray):
        text = text.combine_chunks() if text.num_chunks else pa.array([], pa.string())
    encoded = pc.dictionary_encode(text)
    tokens = pa.array(tokeniser.tokenise(encoded.dictionary.to_pylist(), domain), type=pa.string())
    return pc.take(tokens, encoded.indices)


def _domain_of(plan: RewritePlan, index: int, context: ArrowSideContext) -> str:
    column = plan.columns[index]
    if column.dataset is None or column.source_column is None:
        raise ValueError(f"output column {column.name!r} is tokenised but has no source column")
    rule = context.decision.datasets[column.dataset].columns[column.source_column]
    if rule.op != "tokenise":
        raise ValueError(f"output column {column.name!r} is marked tokenise but its rule is {rule.op!r}")
    return str(rule.params.get("domain", "default"))


def apply_arrow_side(table: pa.Table, plan: RewritePlan, context: ArrowSideContext | None) -> pa.Table:
    """Tokenise every column the plan marks; fail (closed) if the context is missing."""
    positions = arrow_side_positions(plan)
    if not positions:
        return table
    if context is None:
        raise ValueError("the plan needs Arrow-side masking (tokenise) but no key context was given")
    tokeniser = Tokeniser(context.keys, context.purpose)
    for index in positions:
        name = table.schema.field(index).name
        if name.lower() != plan.columns[index].name.lower():
            raise ValueError(f"result column {index} is {name!r}, the plan expects {plan.columns[index].name!r}")
        tokens = tokenise_array(table.column(index), tokeniser, _domain_of(plan, index, context))
        table = table.set_column(index, pa.field(name, pa.string()), tokens)
    return table
