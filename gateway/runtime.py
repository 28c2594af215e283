"""Assemble a Gateway from Settings: catalog, policy engine, connectors, keys, audit store, scanner."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from connectors.base import Connector, ConnectorUnavailable
from connectors.duckdb import DeclaredFile, DeclaredFileError, DuckDBConnector
from gateway.audit import AuditKeys, load_or_create_keys, open_store
from gateway.catalog import Catalog, ConnectorConfig, load_catalog
from gateway.config import Settings
from gateway.identity.verifier import TokenVerifier
from gateway.pipeline import Gateway, Scanner
from gateway.policy.engine import ActivationHook, PolicyEngine, load_bundle
from gateway.policy.versions import VERSIONS_DIR, PolicyVersionArchive, activation_recorder
from gateway.sql.masks import KeyRing
from gateway.sql.pseudonym_replica import (
    REPLICA_ALIAS,
    PseudonymReplicas,
    build_replicas,
    specs_from_policy_data,
)

PSEUDONYM_KEY_FILE = "pseudonym.key"

log = logging.getLogger(__name__)


def load_key_ring(keys_dir: Path, *, create: bool) -> KeyRing:
    """The pseudonym master key: 32 random bytes, hex, in ``keys_dir/pseudonym.key`` (mode 0600)."""
    path = keys_dir / PSEUDONYM_KEY_FILE
    if not path.exists():
        if not create:
            raise FileNotFoundError(f"pseudonym key file {path} is missing")
        keys_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_hex(32))
    master = bytes.fromhex(path.read_text().strip())
    if len(master) < 32:
        raise ValueError(f"pseudonym key in {path} is shorter than 32 bytes")
    return KeyRing(master=master, key_id=hashlib.sha256(master).hexdigest()[:8])


def build_policy_engine(settings: Settings, catalog: Catalog,
                        on_activate: ActivationHook | None = None) -> PolicyEngine:
    """The policy engine of ``settings``; ``on_activate`` (archive + audit, gateway.policy.versions) is
    called for every version that goes live, before it serves."""
    if settings.policy_backend == "embedded":
        from gateway.policy.reload import ReloadingPolicyEngine

        # always the reloading engine (four-eyes activation reloads it); it polls the files only if asked
        engine = ReloadingPolicyEngine(settings.policy_dir, settings.catalog_path,
                                       poll_seconds=settings.policy_reload_seconds or 2, on_activate=on_activate)
        return engine.start() if settings.policy_reload_seconds > 0 else engine
    from gateway.errors import PolicyUnavailable
    from gateway.policy.opa import OpaPolicyEngine

    if settings.opa.push_policy:
        from gateway.policy.reload import load_candidate

        # the same gate as an embedded reload: compiles, decides, passes its Rego tests
        bundle = load_candidate(settings.policy_dir, settings.catalog_path).bundle
        opa = OpaPolicyEngine(settings.opa.url, version=bundle.version, timeout_s=settings.opa.timeout_seconds,
                              on_activate=on_activate, policy_dir=settings.policy_dir,
                              catalog_path=settings.catalog_path)
        opa.install(bundle, rule="startup")
        return opa
    # OPA loads the policy from its bundle (gateway policy bundle); the gateway checks that OPA's bundle
    # revision is the version of its own policy_dir, fails closed while it is not, and re-pins when OPA
    # serves the version policy_dir holds (four-eyes activation publishes it into opa.bundle_dir)
    bundle = load_bundle(settings.policy_dir, catalog)
    if on_activate is not None:
        on_activate(bundle, "startup")
    opa = OpaPolicyEngine(settings.opa.url, version=bundle.version, timeout_s=settings.opa.timeout_seconds,
                          check_revision=True, on_activate=on_activate, policy_dir=settings.policy_dir,
                          catalog_path=settings.catalog_path, bundle_dir=settings.opa.bundle_dir)
    try:
        opa.verify_revision(force=True)
    except PolicyUnavailable as exc:  # OPA may start later: decisions and /healthz answer 503 meanwhile
        log.error("policy: %s", exc.detail)
    return opa


def duckdb_files(settings: Settings, catalog: Catalog) -> dict[str, Path]:
    """The database file of each DuckDB connector (none for a connector that serves only declared files)."""
    files: dict[str, Path] = {}
    for name, config in catalog.connectors.items():
        if config.kind == "duckdb" and (config.database or not config.files):
            files[name] = _data_path(settings, config.database or f"{name}.duckdb")
    return files


def _data_path(settings: Settings, value: str) -> Path:
    path = Path(value)
    return path if path.is_absolute() else settings.data_dir / path


def declared_files(settings: Settings, catalog: Catalog, name: str) -> list[DeclaredFile]:
    """The Parquet/CSV files of DuckDB connector ``name``. On a connector without a database file every
    dataset must name one of them (an unknown table is a start-up error, not a failing query)."""
    config = catalog.connectors[name]
    files = [DeclaredFile(table=table, path=_data_path(settings, file.path), format=file.file_format,
                          options=file.reader_options()) for table, file in config.files.items()]
    if config.files and not config.database:
        for dataset, meta in catalog.datasets.items():
            if meta.connector == name and not config.serves_file(meta.table):
                raise ValueError(f"dataset {dataset!r}: table {meta.table!r} is not one of the files of "
                                 f"connector {name!r} ({', '.join(sorted(config.files))})")
    return files


def _duckdb_connector(settings: Settings, catalog: Catalog, name: str,
                      replicas: PseudonymReplicas | None) -> DuckDBConnector:
    """The connector with its pseudonym replica attached if there is one (without it, if it cannot be
    attached). Start-up errors name the connector; a declared file's error also its table."""
    config = catalog.connectors[name]
    database = duckdb_files(settings, catalog).get(name)
    files = declared_files(settings, catalog, name)

    def connect(attach: dict[str, Path] | None) -> DuckDBConnector:
        return DuckDBConnector(database, attach=attach, files=files, schema=config.schema_name,
                               threads=config.threads, memory_limit=config.memory_limit,
                               work_dir=settings.data_dir)

    try:
        if replicas is not None and (replica := replicas.files.get(name)) is not None:
            try:
                return connect({REPLICA_ALIAS: replica})
            except DeclaredFileError:
                raise
            except ConnectorUnavailable as exc:
                # without the replica attached its datasets must not be planned against it
                log.error("connector %s: pseudonym replica not attached, pseudonyms are computed in SQL: %s",
                          name, exc.internal_detail or exc)
                replicas.drop_connector(name, catalog)
        return connect(None)
    except ConnectorUnavailable as exc:
        if exc.internal_detail:
            log.error("connector %s: %s", name, exc.internal_detail)
        raise ValueError(f"connector {name!r}: {exc}") from None


def build_replicas_for(settings: Settings, catalog: Catalog, key_ring: KeyRing, *,
                       force: bool = False) -> PseudonymReplicas:
    """The pseudonym replicas of the DuckDB datasets (built or reused; none when switched off)."""
    if not settings.precompute_pseudonyms:
        return PseudonymReplicas()
    data = load_bundle(settings.policy_dir, catalog).data
    return build_replicas(catalog, settings.data_dir, key_ring, specs_from_policy_data(data, catalog),
                          source_files=duckdb_files(settings, catalog), force=force)


def build_connectors(settings: Settings, catalog: Catalog,
                     replicas: PseudonymReplicas | None = None) -> dict[str, Connector]:
    connectors: dict[str, Connector] = {}
    for name, config in catalog.connectors.items():
        if config.kind == "duckdb":
            connectors[name] = _duckdb_connector(settings, catalog, name, replicas)
        elif config.kind == "postgres":
            from connectors.postgres import PostgresConnector

            connectors[name] = PostgresConnector(_dsn(name, config), schema=config.schema_name,
                                                 pool_max=config.pool_max, connect_timeout_s=config.connect_timeout_s)
        elif config.kind == "mysql":
            from connectors.mysql import MySQLConnector

            connectors[name] = MySQLConnector(_dsn(name, config), pool_max=config.pool_max,
                                              connect_timeout_s=config.connect_timeout_s)
        elif config.kind == "trino":
            connectors[name] = _trino_connector(name, config)
        else:
            raise ValueError(f"connector {name!r}: kind {config.kind!r} is not supported")
    return connectors


def _trino_connector(name: str, config: ConnectorConfig) -> Connector:
    """Host, port, user, catalog and schema from the catalog entry or the DSN; the password only from
    the DSN (``dsn_env``/``dsn_file``, optional: a Trino without password authentication needs none)."""
    from connectors.trino import TrinoConnector, trino_settings

    dsn = _dsn(name, config) if config.dsn_env or config.dsn_file else None
    try:
        settings = trino_settings(dsn, host=config.host, port=config.port, user=config.user,
                                  catalog=config.catalog, schema=config.schema_name,
                                  http_scheme=config.http_scheme, tls_ca_file=config.tls_ca_file)
    except ValueError as exc:  # the messages name fields, never values from the DSN
        raise ValueError(f"connector {name!r}: {exc}") from None
    return TrinoConnector.from_settings(settings, request_timeout_s=config.connect_timeout_s)


def _dsn(name: str, config: ConnectorConfig) -> str:
    """The connector's DSN from exactly one of ``dsn_env`` or ``dsn_file`` (never from the catalog)."""
    if bool(config.dsn_env) == bool(config.dsn_file):
        raise ValueError(f"connector {name!r}: set exactly one of dsn_env or dsn_file")
    if config.dsn_env:
        value = os.environ.get(config.dsn_env)
        if not value:
            raise ValueError(f"connector {name!r}: environment variable {config.dsn_env} is not set")
        return value
    path = Path(str(config.dsn_file))
    if not path.exists():
        raise ValueError(f"connector {name!r}: DSN file {path} does not exist")
    return path.read_text(encoding="utf-8").strip()


def default_scanner(language: str) -> Scanner:
    from gateway.pii import get_scanner

    scanner = get_scanner(language)
    return scanner.mask_many


@dataclass
class Runtime:
    settings: Settings
    gateway: Gateway
    verifier: TokenVerifier
    audit_keys: AuditKeys
    closed: bool = False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.verifier.close()
        self.gateway.sdc.close()
        stop = getattr(self.gateway.policy, "stop", None)
        if callable(stop):
            stop()
        for connector in self.gateway.connectors.values():
            connector.close()
        self.gateway.audit.close()


def build_runtime(
    settings: Settings, *, create_keys: bool = False, scanner: Scanner | None = None
) -> Runtime:
    if settings.identity is None:
        raise ValueError(
            "identity settings are missing: set identity.issuer in the config file "
            "or GATEWAY_IDENTITY__ISSUER"
        )
    catalog = load_catalog(settings.catalog_path)
    keys_dir = settings.resolved_keys_dir()
    audit_keys = load_or_create_keys(keys_dir) if create_keys or keys_dir.exists() else None
    if audit_keys is None:
        raise FileNotFoundError(f"audit keys directory {keys_dir} is missing")
    key_ring = load_key_ring(keys_dir, create=create_keys)
    store = open_store(settings.resolved_audit_url(), audit_keys.signing_key)
    replicas = build_replicas_for(settings, catalog, key_ring)  # before the connectors open the files
    gateway = Gateway(
        catalog=catalog,
        policy=build_policy_engine(settings, catalog, activation_recorder(
            PolicyVersionArchive(settings.data_dir / VERSIONS_DIR), store.append)),
        connectors=build_connectors(settings, catalog, replicas),
        replicas=replicas,
        audit=store,
        audit_keys=audit_keys,
        key_ring=key_ring,
        scanner=scanner or default_scanner(settings.pii_language),
        max_rows_cap=settings.max_rows_cap,
        statement_timeout_s=settings.statement_timeout_seconds,
        aggregate_max_groups=settings.aggregate_max_groups,
    )
    return Runtime(
        settings=settings, gateway=gateway, verifier=TokenVerifier(settings.identity), audit_keys=audit_keys
    )
