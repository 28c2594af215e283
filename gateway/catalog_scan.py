"""``gateway catalog scan <dataset>``: sample a table and propose, per column, a personal-data class and
a default mask for the data protection officer to confirm.

The proposal combines three signals, each recorded as evidence:

* the German recognizers of gateway.pii run on the sampled values (share of values with a finding);
* simple statistics: an almost unique column is an identifier, a date column a quasi-identifier, long
  texts with spaces are free text;
* the column name (``geburtsdatum``, ``plz``, ``email``, ...), a weak hint only.

Nothing is written: the DPO copies what is right into the catalog and the grants. The sampled values
never leave this process (only shares and classes are printed).
"""

from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from connectors.base import Connector
from gateway.catalog import Catalog, PersonalDataClass

ProgressCallback = Callable[[int, int, str], None]

#: recognizer entity -> the class a column mostly made of it has
_DIRECT = {"PERSON", "EMAIL", "PHONE", "IBAN", "STEUER_ID", "SV_NUMMER", "KVNR", "AUSWEIS_NR", "ADDRESS",
           "CREDIT_CARD", "KFZ_KENNZEICHEN", "AKTENZEICHEN", "KASSENZEICHEN", "US_SSN", "UK_NINO"}
_QUASI = {"DATE_OF_BIRTH", "PLZ_ORT", "LOCATION", "FLURSTUECK", "UST_ID"}
#: entities whose columns are not worth releasing even masked: the DPO must decide explicitly
_DENY = {"STEUER_ID", "SV_NUMMER", "KVNR", "AUSWEIS_NR", "CREDIT_CARD", "US_SSN", "UK_NINO"}
#: contact data: nothing analytical in it, redact
_CONTACT = {"EMAIL", "PHONE", "ADDRESS", "IBAN", "KFZ_KENNZEICHEN"}

_NAME_HINTS: tuple[tuple[str, PersonalDataClass, str], ...] = (
    (r"(^|_)(einwohner|person|kunden|buerger|bürger)_?id$|^id$", PersonalDataClass.DIRECT_IDENTIFIER,
     "a person key"),
    (r"(^|_)(vor|nach|familien|geburts)?name", PersonalDataClass.DIRECT_IDENTIFIER, "a name"),
    (r"strasse|straße|hausnummer|adresse|anschrift", PersonalDataClass.DIRECT_IDENTIFIER, "an address"),
    (r"telefon|mobil|handy|fax|e_?mail|iban|steuer|sv_?nummer|ausweis|kennzeichen",
     PersonalDataClass.DIRECT_IDENTIFIER, "contact or identity data"),
    (r"geburt|alter|plz|postleitzahl|geschlecht|stadtteil|bezirk|zuzug|wohnort",
     PersonalDataClass.QUASI_IDENTIFIER, "a quasi-identifier"),
    (r"staatsangeh|religion|konfession|gesundheit|diagnose|behinderung|leistung|einkommen|betrag|schulden",
     PersonalDataClass.SENSITIVE, "sensitive data (Art. 9 GDPR or social data)"),
    (r"bemerkung|notiz|kommentar|freitext|beschreibung|text$", PersonalDataClass.FREE_TEXT, "free text"),
)

#: a column with at least this share of findings is classified by the recognizers
FINDING_SHARE = 0.3
#: a column this unique (distinct / non-null, with enough rows) is an identifier
UNIQUE_SHARE = 0.95
MIN_ROWS_FOR_UNIQUENESS = 20
#: recognizers run on at most this many distinct values per column (bounded time per column)
MAX_RECOGNIZER_VALUES = 300


class _Analyzer(Protocol):
    def analyze(self, text: str) -> Sequence[Any]: ...


@dataclass(frozen=True)
class ColumnProposal:
    """What the scan proposes for one column; ``evidence`` says why."""

    column: str
    arrow_type: str
    pd_class: PersonalDataClass
    mask: str
    params: dict[str, Any] = field(default_factory=dict)
    confidence: str = "low"  # low | medium | high
    evidence: tuple[str, ...] = ()
    catalog_class: PersonalDataClass | None = None
    distinct_share: float = 0.0
    null_share: float = 0.0
    findings: dict[str, float] = field(default_factory=dict)

    @property
    def agrees_with_catalog(self) -> bool | None:
        return None if self.catalog_class is None else self.catalog_class == self.pd_class

    def mask_text(self) -> str:
        if not self.params:
            return self.mask
        inner = ", ".join(f"{k}: {v}" for k, v in self.params.items())
        return f"{self.mask} {{{inner}}}"


def sample_sql(catalog: Catalog, dataset: str, dialect: str, sample_rows: int) -> str:
    meta = catalog.datasets[dataset]
    table = exp.Table(this=exp.to_identifier(meta.table, quoted=True))
    schema_name = catalog.connectors[meta.connector].schema_name
    if schema_name:
        table.set("db", exp.to_identifier(schema_name, quoted=True))
    columns: list[exp.Expr] = [exp.column(c, quoted=True) for c in meta.columns] or [exp.Star()]
    return exp.select(*columns).from_(table).limit(sample_rows).sql(dialect=dialect)


def _name_hint(column: str) -> tuple[PersonalDataClass, str] | None:
    for pattern, pd_class, what in _NAME_HINTS:
        if re.search(pattern, column.lower()):
            return pd_class, what
    return None


def _findings(values: Sequence[str], scanner: _Analyzer) -> dict[str, float]:
    """Share of (distinct, sampled) values in which each entity type was found."""
    if not values:
        return {}
    counts: Counter[str] = Counter()
    for value in values:
        counts.update({span.type for span in scanner.analyze(value)})
    return {entity: count / len(values) for entity, count in counts.most_common()}


def propose_column(
    column: str, values: pa.ChunkedArray | pa.Array, scanner: _Analyzer, catalog_class: PersonalDataClass | None
) -> ColumnProposal:
    """Classify one sampled column and choose its default mask."""
    kind = values.type
    total = len(values)
    non_null = total - values.null_count
    distinct = pc.count_distinct(values).as_py() if non_null else 0
    distinct_share = distinct / non_null if non_null else 0.0
    null_share = values.null_count / total if total else 0.0
    evidence: list[str] = []
    texts: list[str] = []
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        uniques = pc.unique(values.drop_null()).to_pylist()
        texts = [str(v) for v in uniques[:MAX_RECOGNIZER_VALUES] if v]
    findings = _findings(texts, scanner)
    top = next(iter(findings.items()), None)
    is_temporal = pa.types.is_date(kind) or pa.types.is_timestamp(kind)
    is_number = pa.types.is_integer(kind) or pa.types.is_decimal(kind) or pa.types.is_floating(kind)
    mean_length = sum(map(len, texts)) / len(texts) if texts else 0.0
    free_text = bool(texts) and mean_length >= 40 and sum(" " in t for t in texts) / len(texts) > 0.5
    unique = non_null >= MIN_ROWS_FOR_UNIQUENESS and distinct_share >= UNIQUE_SHARE
    hint = _name_hint(column)

    pd_class = PersonalDataClass.NONE
    mask, confidence = "plain", "low"
    params: dict[str, Any] = {}
    entity = top[0] if top and top[1] >= FINDING_SHARE else None
    if free_text:
        pd_class, mask, confidence = PersonalDataClass.FREE_TEXT, "free_text", "high"
        evidence.append(f"long texts (mean {mean_length:.0f} characters) with spaces")
        if findings:
            evidence.append("personal data found in " + ", ".join(f"{e} {s:.0%}" for e, s in findings.items()))
    elif entity is not None:
        share = findings[entity]
        evidence.append(f"recognizer {entity} in {share:.0%} of the distinct values")
        confidence = "high" if share >= 0.7 else "medium"
        if entity in _DIRECT:
            pd_class = PersonalDataClass.DIRECT_IDENTIFIER
            if entity in _DENY:
                mask = "deny"
            elif entity in _CONTACT:
                mask = "redact"
            else:
                mask, params = "pseudonymise", {"domain": column}
        else:
            pd_class = PersonalDataClass.QUASI_IDENTIFIER
            if entity == "DATE_OF_BIRTH":
                mask, params = "generalise", {"to": "year"}
            elif entity == "PLZ_ORT":
                mask, params = "generalise", {"to": "prefix", "length": 3, "fill": "x"}
            else:
                mask = "redact"
    elif unique and not (pa.types.is_decimal(kind) or pa.types.is_floating(kind)):
        pd_class = PersonalDataClass.DIRECT_IDENTIFIER
        confidence = "medium"
        evidence.append(f"{distinct_share:.0%} of {non_null} sampled values are distinct: an identifier")
        if is_temporal:
            pd_class = PersonalDataClass.QUASI_IDENTIFIER
            mask, params = "generalise", {"to": "year"}
        else:
            mask, params = "pseudonymise", {"domain": column}
    elif is_temporal:
        pd_class, confidence = PersonalDataClass.QUASI_IDENTIFIER, "medium"
        mask, params = "generalise", {"to": "year"}
        evidence.append("a date: with other attributes it singles people out")
    if hint is not None:
        hinted, what = hint
        evidence.append(f"the name {column!r} suggests {what}")
        if pd_class is PersonalDataClass.NONE:
            pd_class = hinted
            mask, params = _default_mask(hinted, column, kind, texts)
        elif pd_class is hinted and confidence != "high":
            confidence = "high" if confidence == "medium" else "medium"
    if pd_class is PersonalDataClass.QUASI_IDENTIFIER and mask == "plain":
        evidence.append("released plainly only if the DPO accepts it; consider generalise")
    if is_number and pd_class is PersonalDataClass.SENSITIVE and mask == "plain":
        mask, params = "noise", {"scale": 10}
    if not evidence:
        evidence.append("no personal data found in the sample")
    return ColumnProposal(
        column=column, arrow_type=str(kind), pd_class=pd_class, mask=mask, params=params,
        confidence=confidence, evidence=tuple(evidence), catalog_class=catalog_class,
        distinct_share=distinct_share, null_share=null_share, findings=findings,
    )


def _default_mask(
    pd_class: PersonalDataClass, column: str, kind: pa.DataType, texts: Sequence[str]
) -> tuple[str, dict[str, Any]]:
    if pd_class is PersonalDataClass.DIRECT_IDENTIFIER:
        if pa.types.is_integer(kind):
            return "pseudonymise", {"domain": column}
        return "redact", {}
    if pd_class is PersonalDataClass.FREE_TEXT:
        return "free_text", {}
    if pd_class is PersonalDataClass.SENSITIVE:
        return ("noise", {"scale": 10}) if pa.types.is_integer(kind) or pa.types.is_decimal(kind) else ("deny", {})
    if pd_class is PersonalDataClass.QUASI_IDENTIFIER:
        if texts and all(re.fullmatch(r"\d{5}", t) for t in texts):
            return "generalise", {"to": "prefix", "length": 3, "fill": "x"}
        if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
            return "generalise", {"to": "year"}
        return "plain", {}
    return "plain", {}


def scan_dataset(
    connector: Connector,
    catalog: Catalog,
    dataset: str,
    sample_rows: int = 1000,
    progress: ProgressCallback | None = None,
    *,
    scanner: _Analyzer | None = None,
    timeout_s: float = 60.0,
) -> list[ColumnProposal]:
    """Sample ``sample_rows`` rows of ``dataset`` and propose a class and a mask per column.

    ``progress(done, total, column)`` is called after each column (``done`` = 0 after sampling).
    """
    meta = catalog.dataset(dataset)
    if meta is None:
        raise ValueError(f"dataset {dataset!r} is not in the catalog; add it (columns and types) first")
    if scanner is None:
        from gateway.pii import get_scanner

        scanner = get_scanner("de")
    sql = sample_sql(catalog, dataset.lower(), connector.dialect, sample_rows)
    table = connector.execute(sql, max_rows=sample_rows, timeout_s=timeout_s).table
    names = list(table.column_names)
    if progress is not None:
        progress(0, len(names), "")
    proposals = []
    for index, name in enumerate(names):
        declared = meta.columns.get(name.lower())
        proposals.append(propose_column(name, table.column(index), scanner,
                                        declared.pd_class if declared else None))
        if progress is not None:
            progress(index + 1, len(names), name)
    return proposals


def catalog_scan_main(settings: Any, dataset: str, *, sample_rows: int = 1000,
                      scanner: _Analyzer | None = None) -> int:
    """Scan ``dataset`` with the connectors of ``settings`` (gateway.config.Settings) and print a table.

    Returns 0 if every proposal agrees with the catalog, 1 if some differ (for the DPO to review).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.table import Table

    from gateway.catalog import load_catalog
    from gateway.runtime import build_connectors

    catalog = load_catalog(settings.catalog_path)
    meta = catalog.dataset(dataset)
    if meta is None:
        raise ValueError(f"dataset {dataset!r} is not in the catalog {settings.catalog_path}")
    connectors = build_connectors(settings, catalog)
    console = Console()
    try:
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console, transient=True) as bar:
            task = bar.add_task(f"sampling {dataset}", total=len(meta.columns))

            def advance(done: int, total: int, column: str) -> None:
                bar.update(task, completed=done, total=total,
                           description=f"scanning {dataset}.{column}" if column else f"scanning {dataset}")

            proposals = scan_dataset(connectors[meta.connector], catalog, dataset, sample_rows, advance,
                                     scanner=scanner)
    finally:
        for connector in connectors.values():
            connector.close()
    table = Table(title=f"{dataset}: proposed classes and masks ({sample_rows} rows sampled, "
                        f"{dt.date.today().isoformat()}) - confirm before use")
    for heading in ("column", "type", "proposed class", "catalog", "mask", "confidence", "evidence"):
        table.add_column(heading, overflow="fold")
    for p in proposals:
        catalog_text = "-" if p.catalog_class is None else (
            p.catalog_class.value if p.agrees_with_catalog else f"[bold red]{p.catalog_class.value}[/]")
        table.add_row(p.column, p.arrow_type, p.pd_class.value, catalog_text, p.mask_text(), p.confidence,
                      "; ".join(p.evidence))
    console.print(table)
    differing = [p.column for p in proposals if p.agrees_with_catalog is False]
    if differing:
        console.print(f"{len(differing)} column(s) differ from the catalog: {', '.join(differing)}")
        return 1
    return 0
