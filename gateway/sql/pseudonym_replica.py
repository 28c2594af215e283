"""Pseudonyms computed ahead for DuckDB tables, so a masked scan costs about what an unmasked one does.

A keyed SHA-256 per value is what a pseudonym computed in SQL costs (about 160 ns per value here, so
three pseudonymised columns triple a million-row scan). For datasets on a DuckDB connector the gateway
computes them once per version of the source: a *replica* of the table in a gateway-owned DuckDB file
holds every source column plus one column per (column, purpose, domain, key) with exactly the pseudonym
the SQL expression gives (it is built with that expression). The DuckDB connector attaches the replica
read-only as ``gw_pseudonyms`` before it locks its configuration.

The rewriter reads a dataset from its replica only when
- the source file (and its WAL) has the size, modification time and inode it had when the replica was
  built (checked on every rewrite: a changed source, e.g. after an erasure, is never served stale), and
- every pseudonym the decision asks for is in the replica, made with the key in force (the replica
  records a check value of each key; a rotated or replaced key misses);
otherwise it computes the pseudonyms in SQL as before. Row filters, other masks and denied columns apply
to the replica exactly as to the source: the derived table is the same apart from its FROM and those
pseudonym columns. Which pseudonyms to compute comes from the policy data's grants (``grants[].columns``
with ``op: pseudonymise``); a rule elsewhere in Rego simply takes the SQL path.

The replica is a copy of the source's personal data: it lives in the data directory
(``pseudonyms/<connector>.duckdb``) with the source's protection, is rebuilt on start when the source or
the keys changed; the setting ``precompute_pseudonyms: false`` turns it off for all datasets, the
catalog's ``pseudonym_replica: false`` for one. Tables a DuckDB connector serves from declared
Parquet/CSV files (the catalog's ``files``) have no replica: their pseudonyms are always computed in SQL.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
from sqlglot import exp

from gateway.catalog import Catalog
from gateway.policy.decision import ColumnRule
from gateway.sql.masks import KeyRing, mask_expression

log = logging.getLogger(__name__)

#: the name the DuckDB connector attaches its replica file under
REPLICA_ALIAS = "gw_pseudonyms"
_META_TABLE = "__gw_replica"
#: DuckDB memory limit while a replica is built
BUILD_MEMORY_LIMIT = "64MB"  # 1M rows: +110 MB peak RSS (256MB: +200 MB), same time
_FORMAT = 1


@dataclass(frozen=True)
class PseudonymSpec:
    """One pseudonym to compute ahead: ``column`` of ``dataset`` under ``purpose`` and ``domain``."""

    dataset: str
    column: str
    purpose: str
    domain: str


def _source_state(path: Path) -> str:
    """Size, modification time and inode of a DuckDB file and its WAL: changes with every write."""
    parts = []
    for candidate in (path, path.with_name(path.name + ".wal")):
        try:
            st = candidate.stat()
        except FileNotFoundError:
            parts.append("-")
            continue
        parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ino}")
    return "|".join(parts)


def _key_check(keys: KeyRing, purpose: str, domain: str) -> str:
    """A value that changes with the key material of (purpose, domain) and reveals nothing of it."""
    return hashlib.sha256(b"replica-check\0" + keys.pseudonym_key(purpose, domain).encode()).hexdigest()[:16]


def _column_name(spec: PseudonymSpec, column_type: str, keys: KeyRing) -> str:
    ident = json.dumps([spec.column, column_type, spec.purpose, spec.domain, keys.key_id,
                        _key_check(keys, spec.purpose, spec.domain)])
    return "__p_" + hashlib.sha256(ident.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Replica:
    """A dataset's replica: where it is, what source state it copies, which pseudonyms it holds."""

    dataset: str
    table: str
    source: Path
    source_state: str
    #: (column, purpose, domain, key id, key check) -> column in the replica
    columns: Mapping[tuple[str, str, str, str, str], str] = field(repr=False)

    @property
    def token(self) -> str:
        """Identity for cache keys: the replica's table and the source state it was built from."""
        return f"{self.table}@{self.source_state}"

    def fresh(self) -> bool:
        return _source_state(self.source) == self.source_state

    def column_for(self, column: str, purpose: str, domain: str, keys: KeyRing) -> str | None:
        return self.columns.get((column, purpose, domain, keys.key_id, _key_check(keys, purpose, domain)))


class PseudonymReplicas:
    """The replicas a gateway may read from, by dataset (empty when precomputation is off)."""

    def __init__(self, replicas: Mapping[str, Replica] | None = None,
                 files: Mapping[str, Path] | None = None) -> None:
        self._replicas = dict(replicas or {})
        #: connector name -> replica file, for the DuckDB connector to attach
        self.files = dict(files or {})
        self._warned: set[str] = set()

    def __bool__(self) -> bool:
        return bool(self._replicas)

    def drop_connector(self, connector: str, catalog: Catalog) -> None:
        """Forget the replicas of ``connector``'s datasets (its connector could not attach the file)."""
        self.files.pop(connector, None)
        for name in [n for n in self._replicas if catalog.datasets[n].connector == connector]:
            del self._replicas[name]

    def usable(self, dataset: str) -> Replica | None:
        """The dataset's replica if its source is unchanged since it was built."""
        replica = self._replicas.get(dataset)
        if replica is None:
            return None
        if replica.fresh():
            return replica
        if dataset not in self._warned:
            self._warned.add(dataset)
            log.warning("the source of dataset %s changed since its pseudonym replica was built: pseudonyms "
                        "are computed in SQL until the replica is rebuilt (restart or `gateway pseudonyms "
                        "build`)", dataset)
        return None

    def token(self, datasets: Iterable[str]) -> str:
        """Part of a plan cache key: which replicas a plan for ``datasets`` may read right now."""
        return ";".join(r.token if (r := self.usable(name)) is not None else f"{name}:-" for name in datasets
                        if name in self._replicas)


def specs_from_policy_data(data: Mapping[str, Any], catalog: Catalog) -> list[PseudonymSpec]:
    """The pseudonyms the grants in the policy data ask for, on DuckDB datasets (not declared files)."""
    specs: set[PseudonymSpec] = set()
    for grant in data.get("grants") or []:
        if not isinstance(grant, dict):
            continue
        dataset, purpose = grant.get("dataset"), grant.get("purpose")
        meta = catalog.datasets.get(str(dataset))
        if meta is None or not isinstance(purpose, str) or not meta.pseudonym_replica:
            continue
        connector = catalog.connectors[meta.connector]
        if connector.kind != "duckdb" or connector.serves_file(meta.table):
            continue  # a declared Parquet/CSV file is no database table to copy: hashed in SQL
        for column, spec in (grant.get("columns") or {}).items():
            if not isinstance(spec, dict) or spec.get("op") != "pseudonymise" or column not in meta.columns:
                continue
            params = spec.get("params") or {}
            domain = params.get("domain", "default") if isinstance(params, dict) else "default"
            specs.add(PseudonymSpec(str(dataset), column, purpose, str(domain)))
    return sorted(specs, key=lambda s: (s.dataset, s.column, s.purpose, s.domain))


def _read_meta(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    try:
        with duckdb.connect(str(path), read_only=True) as con:
            row = con.execute(f'SELECT meta FROM "{_META_TABLE}"').fetchone()
        meta = json.loads(row[0]) if row else None
        return meta if isinstance(meta, dict) and meta.get("format") == _FORMAT else None
    except (duckdb.Error, ValueError):
        return None


def _replicas_from_meta(meta: Mapping[str, Any], sources: Mapping[str, Path]) -> dict[str, Replica]:
    replicas: dict[str, Replica] = {}
    for dataset, entry in meta["datasets"].items():
        columns = {tuple(c["key"]): c["name"] for c in entry["columns"]}
        replicas[dataset] = Replica(dataset=dataset, table=entry["table"], source=sources[dataset],
                                    source_state=entry["source_state"], columns=columns)
    return replicas


def build_replicas(
    catalog: Catalog,
    data_dir: Path,
    keys: KeyRing,
    specs: Iterable[PseudonymSpec],
    *,
    source_files: Mapping[str, Path],
    force: bool = False,
) -> PseudonymReplicas:
    """Build (or reuse, when source and keys are unchanged) one replica file per DuckDB connector.

    ``source_files`` maps each DuckDB connector to its database file. Must run before a connector opens
    that file in this process (DuckDB refuses a second handle with another configuration). A replica that
    cannot be built is logged and left out: the SQL path serves its datasets.
    """
    by_connector: dict[str, list[PseudonymSpec]] = {}
    for spec in specs:
        by_connector.setdefault(catalog.datasets[spec.dataset].connector, []).append(spec)
    replicas: dict[str, Replica] = {}
    files: dict[str, Path] = {}
    for connector, wanted in sorted(by_connector.items()):
        source = source_files.get(connector)
        if source is None or not source.exists():
            continue
        target = data_dir / "pseudonyms" / f"{connector}.duckdb"
        try:
            built = _build_one(catalog, keys, wanted, source=source, target=target, force=force)
        except (duckdb.Error, OSError) as exc:
            log.error("pseudonym replica for connector %s not built, pseudonyms are computed in SQL: %s",
                      connector, exc)
            continue
        if built:
            replicas.update(built)
            files[connector] = target
    return PseudonymReplicas(replicas, files)


def _build_one(catalog: Catalog, keys: KeyRing, wanted: list[PseudonymSpec], *, source: Path,
               target: Path, force: bool) -> dict[str, Replica]:
    datasets = sorted({s.dataset for s in wanted})
    sources = {name: source for name in datasets}
    state = _source_state(source)
    plan: dict[str, list[tuple[PseudonymSpec, str]]] = {name: [] for name in datasets}
    for spec in wanted:
        column_type = catalog.datasets[spec.dataset].columns[spec.column].type
        plan[spec.dataset].append((spec, _column_name(spec, column_type, keys)))
    expected = {
        name: sorted(name_ for _, name_ in plan[name]) for name in datasets
    }
    meta = None if force else _read_meta(target)
    if meta is not None and all(
        name in meta["datasets"]
        and meta["datasets"][name]["source_state"] == state
        and sorted(c["name"] for c in meta["datasets"][name]["columns"]) == expected[name]
        for name in datasets
    ):
        return _replicas_from_meta(meta, sources)  # unchanged source, same keys and specs: reuse

    target.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        target.parent.chmod(0o700)
    temporary = target.with_name(f"{target.name}.{secrets.token_hex(4)}.tmp")
    entries: dict[str, Any] = {}
    try:
        with duckdb.connect(str(temporary)) as con:
            con.execute("SET enable_progress_bar = false")
            # the build runs inside the gateway's process: keep its memory small (DuckDB streams the copy)
            con.execute(f"SET memory_limit = '{BUILD_MEMORY_LIMIT}'")
            con.execute(f"ATTACH '{_sql_text(str(source))}' AS src (READ_ONLY)")
            for name in datasets:
                meta_ds = catalog.datasets[name]
                schema = catalog.connectors[meta_ds.connector].schema_name or "main"
                raw = exp.Table(this=exp.to_identifier(meta_ds.table, quoted=True),
                                db=exp.to_identifier(schema, quoted=True),
                                catalog=exp.to_identifier("src", quoted=True),
                                alias=exp.TableAlias(this=exp.to_identifier("s", quoted=True)))
                projections: list[exp.Expr] = [exp.Star()]
                columns = []
                for spec, column_name in plan[name]:
                    column_type = meta_ds.columns[spec.column].type
                    rule = ColumnRule(op="pseudonymise", params={"domain": spec.domain},
                                      rule="pseudonym_replica")
                    expression = mask_expression(exp.column(spec.column, table="s", quoted=True), rule,
                                                 column_type=column_type, dialect="duckdb", keys=keys,
                                                 purpose=spec.purpose)
                    projections.append(exp.alias_(expression, column_name, quoted=True))
                    columns.append({"name": column_name,
                                    "key": [spec.column, spec.purpose, spec.domain, keys.key_id,
                                            _key_check(keys, spec.purpose, spec.domain)]})
                select = exp.Select(expressions=projections, from_=exp.From(this=raw))
                con.execute(f"CREATE TABLE {exp.to_identifier(meta_ds.table, quoted=True).sql('duckdb')} AS "
                            + select.sql("duckdb"))
                entries[name] = {"table": meta_ds.table, "source_state": state, "columns": columns}
            con.execute(f'CREATE TABLE "{_META_TABLE}" (meta VARCHAR)')
            con.execute(f'INSERT INTO "{_META_TABLE}" VALUES (?)',
                        [json.dumps({"format": _FORMAT, "datasets": entries})])
            con.execute("DETACH src")
            con.execute("CHECKPOINT")
        if _source_state(source) != state:
            raise OSError("the source changed while its replica was built")
        os.chmod(temporary, 0o600)
        os.replace(temporary, target)
    finally:
        for leftover in (temporary, temporary.with_name(temporary.name + ".wal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    log.info("pseudonym replica %s built for %s", target.name, ", ".join(datasets))
    return _replicas_from_meta({"datasets": entries}, sources)


def _sql_text(text: str) -> str:
    return text.replace("'", "''")
