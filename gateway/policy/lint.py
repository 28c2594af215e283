"""``gateway policy check``: static checks of the policy directory against the catalog.

Errors make the check fail (exit code 1); warnings are printed but do not fail it. The checks:

* every Rego module (tests included) is Rego v1 syntax, so OPA >= 1.0 loads it (see
  :mod:`gateway.policy.rego_syntax`);
* the Rego modules compile (embedded engine) and the decision is defined for an empty request;
* the four-eyes rule (``policies/four_eyes.rego``) exists and refuses a self-approval;
* every grant has an ``id`` (unique), a ``dataset`` and a ``purpose``; it names a catalogued dataset
  and only that dataset's columns; its purpose is one the dataset permits;
* every column treatment uses a known operator (plain, deny, redact, pseudonymise, generalise,
  partial, free_text, noise, tokenise) and names its rule, or names no operator where the catalog sets
  a ``default_mask`` for the column;
* row filters name a catalogued column and a claim (a filter without a claim would be silently
  dropped by the policy - an error); ``aggregate_only`` has ``min_cell >= 1`` and a rule;
* datasets have an owner, a legal basis and at least one permitted purpose; no direct identifier has
  the default mask ``plain`` (an unknown default-mask operator already stops the catalog from loading);
* warnings: ``free_text`` on a column whose class is not ``free_text``; ``plain`` on a personal-data
  column of a ``streng_vertraulich`` dataset; ``plain`` on a column whose catalog default mask is not;
* the sovereignty data (agreements, regimes, purposes, networks, office hours, retention): see
  :mod:`gateway.policy.lint_sovereignty`.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TextIO, get_args

from gateway.catalog import Catalog, Classification, Column, Dataset, PersonalDataClass, load_catalog
from gateway.errors import PolicyUnavailable
from gateway.policy.decision import MaskOp, PolicyInput
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import PolicyBundle, load_bundle
from gateway.policy.proposals import require_four_eyes_rule
from gateway.policy.rego_syntax import modules_v1_problems

KNOWN_OPS: frozenset[str] = frozenset(get_args(MaskOp))
Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Finding:
    severity: Severity
    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7}  {self.where}: {self.message}"


def _check_catalog(catalog: Catalog) -> list[Finding]:
    findings: list[Finding] = []
    for name, ds in sorted(catalog.datasets.items()):
        where = f"catalog: dataset {name}"
        if not ds.owner.strip():
            findings.append(Finding("error", where, "has no owner (the office responsible for it)"))
        if not ds.legal_basis.strip():
            findings.append(Finding("error", where, "has no legal_basis (the provision the processing rests on, "
                                                    "e.g. \"§ 3 BMG i. V. m. Art. 6 Abs. 1 lit. e DSGVO\")"))
        for col, column in sorted(ds.columns.items()):
            if column.pd_class is PersonalDataClass.DIRECT_IDENTIFIER and column.default_mask is not None \
                    and column.default_mask.op == "plain":
                findings.append(Finding("error", f"{where} column {col}",
                                        "a direct identifier may not have the default mask plain; use "
                                        "pseudonymise, redact, partial, tokenise or deny"))
        if not [p for p in ds.purposes if p.strip()]:
            findings.append(Finding("error", where, "permits no purpose, so no grant can ever apply"))
    return findings


def _check_compiles(bundle: PolicyBundle) -> list[Finding]:
    try:
        engine = EmbeddedPolicyEngine(bundle)
    except PolicyUnavailable as exc:
        return [Finding("error", "rego", exc.detail)]
    probe = PolicyInput(identity={}, action={"operation": "SelectFromColumns", "purpose": ""},
                        resource={"datasets": []}, context={"time": "1970-01-01T00:00:00Z"})
    try:
        engine.decide(probe)
    except PolicyUnavailable as exc:
        return [Finding("error", "rego", f"the decision is not defined for an empty request: {exc.detail}")]
    try:
        require_four_eyes_rule(engine, bundle.version)
    except PolicyUnavailable as exc:
        return [Finding("error", "rego", exc.detail)]
    return []


def _check_column(where: str, col: str, rule: Any, ds: Dataset | None, ds_name: str) -> list[Finding]:
    """One column treatment of a grant: ``{op, params, rule}``, or ``{}``/``{rule}`` for the default mask."""
    findings: list[Finding] = []
    sub = f"{where} column {col}"
    column = ds.columns.get(col) if ds is not None else None
    if ds is not None and column is None:
        findings.append(Finding("error", sub, f"column {col!r} is not a column of dataset {ds_name}"))
    if not isinstance(rule, dict):
        return [*findings, Finding("error", sub, "the treatment must be a mapping {op, params, rule} "
                                                 "(or {} for the catalog's default mask)")]
    op = rule.get("op")
    known = ", ".join(sorted(KNOWN_OPS))
    if op is None and column is not None and column.default_mask is None:
        findings.append(Finding("error", sub, f"names no op and the catalog sets no default_mask for "
                                              f"{ds_name}.{col}, so it would be denied; name an op ({known})"))
    elif op is not None and op not in KNOWN_OPS:
        findings.append(Finding("error", sub, f"unknown operator {op!r} (known: {known})"))
    if op is not None and not rule.get("rule"):
        findings.append(Finding("error", sub, "names no rule (every treatment must name the rule that set it)"))
    params = rule.get("params")
    if params is not None and not isinstance(params, dict):
        findings.append(Finding("error", sub, "params must be a mapping"))
    if ds is not None and column is not None:
        findings.extend(_column_warnings(sub, op, column, ds))
    return findings


def _column_warnings(sub: str, op: Any, column: Column, ds: Dataset) -> list[Finding]:
    findings: list[Finding] = []
    pd_class = column.pd_class
    if op == "free_text" and pd_class is not PersonalDataClass.FREE_TEXT:
        findings.append(Finding("warning", sub, f"op free_text on a column classified {pd_class.value!r}, "
                                                "not 'free_text'"))
    if op == "plain" and pd_class is not PersonalDataClass.NONE \
            and ds.classification is Classification.STRENG_VERTRAULICH:
        findings.append(Finding("warning", sub, f"personal data ({pd_class.value}) released plain from a "
                                                "streng_vertraulich dataset"))
    default = column.default_mask
    if op == "plain" and default is not None and default.op != "plain":
        findings.append(Finding("warning", sub, f"released plain although the catalog's default mask is "
                                                f"{default.op}; confirm deliberately"))
    return findings


def _check_grant(index: int, grant: Any, catalog: Catalog) -> list[Finding]:
    findings: list[Finding] = []
    if not isinstance(grant, dict):
        return [Finding("error", f"grants[{index}]", "a grant must be a mapping")]
    gid = grant.get("id")
    where = f"grant {gid}" if gid else f"grants[{index}]"

    def err(message: str, sub: str = "") -> None:
        findings.append(Finding("error", where + sub, message))

    for key in ("id", "dataset", "purpose"):
        if not isinstance(grant.get(key), str) or not grant.get(key):
            err(f"has no {key}")
    ds_name = grant.get("dataset")
    ds = catalog.dataset(ds_name) if isinstance(ds_name, str) else None
    if isinstance(ds_name, str) and ds_name and ds is None:
        err(f"names dataset {ds_name!r}, which is not in the catalog")
    purpose = grant.get("purpose")
    if ds is not None and isinstance(purpose, str) and purpose and "*" not in ds.purposes \
            and purpose not in ds.purposes:
        err(f"purpose {purpose!r} is not permitted by dataset {ds_name} "
            f"(permitted: {', '.join(ds.purposes) or 'none'})")
    for key in ("offices", "roles"):
        value = grant.get(key)
        if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
            err(f"{key} must be a list of strings")

    columns = grant.get("columns") or {}
    if not isinstance(columns, dict):
        err("columns must be a mapping column -> treatment")
        columns = {}
    for col, rule in sorted(columns.items()):
        findings.extend(_check_column(where, col, rule, ds, str(ds_name)))

    filters = grant.get("row_filters") or []
    if not isinstance(filters, list):
        err("row_filters must be a list")
        filters = []
    for k, f in enumerate(filters):
        sub = f" row_filters[{k}]"
        if not isinstance(f, dict):
            err("a row filter must be a mapping", sub)
            continue
        if not f.get("claim"):
            err("names no claim; the policy drops such a filter, which would release every row", sub)
        if not f.get("rule"):
            err("names no rule", sub)
        column = f.get("column")
        if not column:
            err("names no column", sub)
        elif ds is not None and column not in ds.columns:
            err(f"filters on {column!r}, which is not a column of dataset {ds_name}", sub)

    agg = grant.get("aggregate_only")
    if agg is not None:
        if not isinstance(agg, dict) or not isinstance(agg.get("min_cell"), int) or agg["min_cell"] < 1:
            err("aggregate_only needs min_cell, an integer >= 1", " aggregate_only")
        elif not agg.get("rule"):
            err("aggregate_only names no rule", " aggregate_only")
    max_rows = grant.get("max_rows")
    if max_rows is not None and (not isinstance(max_rows, int) or max_rows < 1):
        err("max_rows must be a positive integer")
    # valid_from / valid_until: see lint_sovereignty._grant_validity
    return findings


def check_bundle(bundle: PolicyBundle, catalog: Catalog) -> list[Finding]:
    findings = _check_catalog(catalog)
    findings.extend(Finding("error", "rego", problem)
                    for problem in modules_v1_problems({**bundle.modules, **bundle.test_modules}))
    findings.extend(_check_compiles(bundle))
    grants = bundle.data.get("grants")
    if grants is None:
        findings.append(Finding("warning", "data/grants.yaml", "no grants: only public datasets can be read"))
        grants = []
    if not isinstance(grants, list):
        findings.append(Finding("error", "data/grants.yaml", "grants must be a list"))
        grants = []
    for index, grant in enumerate(grants):
        findings.extend(_check_grant(index, grant, catalog))
    ids = Counter(g.get("id") for g in grants if isinstance(g, dict) and g.get("id"))
    for gid, n in sorted(ids.items()):
        if n > 1:
            findings.append(Finding("error", f"grant {gid}", f"the id is used by {n} grants; ids must be unique"))
    from gateway.policy.lint_sovereignty import check_sovereignty  # (imports Finding from here)

    findings.extend(check_sovereignty(bundle, catalog))
    return findings


def check_policy(policy_dir: Path, catalog: Catalog) -> list[Finding]:
    """All findings for the policy in ``policy_dir`` checked against ``catalog``."""
    try:
        bundle = load_bundle(policy_dir, catalog)
    except PolicyUnavailable as exc:
        return [*_check_catalog(catalog), Finding("error", str(policy_dir), exc.detail)]
    except Exception as exc:  # YAML syntax errors and the like
        return [*_check_catalog(catalog), Finding("error", str(policy_dir), f"cannot be loaded: {exc}")]
    return check_bundle(bundle, catalog)


def policy_check_main(policy_dir: Path, catalog_path: Path, *, out: TextIO | None = None) -> int:
    """``gateway policy check``: print the findings; exit 1 on any error, 2 if the catalog cannot load."""
    stream = out if out is not None else sys.stdout
    try:
        catalog = load_catalog(catalog_path)
    except Exception as exc:
        print(f"ERROR    {catalog_path}: the catalog cannot be loaded: {exc}", file=stream)
        return 2
    findings = check_policy(policy_dir, catalog)
    for finding in findings:
        print(str(finding), file=stream)
    errors = sum(1 for f in findings if f.severity == "error")
    warnings = len(findings) - errors
    print(f"{errors} error(s), {warnings} warning(s) in {policy_dir} (catalog {catalog_path})", file=stream)
    return 1 if errors else 0
