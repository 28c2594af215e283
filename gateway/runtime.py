"""Assemble a Gateway from Settings: catalog, policy engine, connectors, keys, audit store, scanner."""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from connectors.base import Connector, ConnectorUnavailable
from connectors.duckdb import DuckDBConnector
from gateway.audit import AuditKeys, load_or_create_keys, open_store
from gateway.catalog import Catalog, ConnectorConfig, load_catalog
from gateway.config import Settings
from gateway.identity.verifier import TokenVerifier
from gateway.pipeline import Gateway, Scanner
from gateway.policy.engine import PolicyEngine, load_bundle
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


def build_policy_engine(settings: Settings, catalog: Catalog) -> PolicyEngine:
    if settings.policy_backend == "embedded":
        from gateway.policy.reload import ReloadingPolicyEngine

        # always the reloading engine (four-eyes activation reloads it); it polls the files only if asked
        engine = ReloadingPolicyEngine(settings.policy_dir, settings.catalog_path,
                                       poll_seconds=settings.policy_reload_seconds or 2)
        return engine.start() if settings.policy_reload_seconds > 0 else engine
    from gateway.policy.opa import OpaPolicyEngine

    if settings.opa.push_policy:
        from gateway.policy.reload import load_candidate

        # the same gate as an embedded reload: compiles, decides, passes its Rego tests
        bundle = load_candidate(settings.policy_dir, settings.catalog_path).bundle
        opa = OpaPolicyEngine(settings.opa.url, version=bundle.version, timeout_s=settings.opa.timeout_seconds)
        opa.install(bundle)
        return opa
    # OPA loads the policy itself; the gateway only needs the version it serves
    version = load_bundle(settings.policy_dir, catalog).version
    return OpaPolicyEngine(settings.opa.url, version=version, timeout_s=settings.opa.timeout_seconds)


def duckdb_files(settings: Settings, catalog: Catalog) -> dict[str, Path]:
    """The database file of each DuckDB connector."""
    files: dict[str, Path] = {}
    for name, config in catalog.connectors.items():
        if config.kind == "duckdb":
            database = Path(config.database or f"{name}.duckdb")
            files[name] = database if database.is_absolute() else settings.data_dir / database
    return files


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
    files = duckdb_files(settings, catalog)
    for name, config in catalog.connectors.items():
        if config.kind == "duckdb":
            replica = replicas.files.get(name) if replicas is not None else None
            if replica is None:
                connectors[name] = DuckDBConnector(files[name])
                continue
            try:
                connectors[name] = DuckDBConnector(files[name], attach={REPLICA_ALIAS: replica})
            except ConnectorUnavailable as exc:
                # without the replica attached its datasets must not be planned against it
                log.error("connector %s: pseudonym replica not attached, pseudonyms are computed in SQL: %s",
                          name, exc.internal_detail or exc)
                assert replicas is not None
                replicas.drop_connector(name, catalog)
                connectors[name] = DuckDBConnector(files[name])
        elif config.kind == "postgres":
            from connectors.postgres import PostgresConnector

            connectors[name] = PostgresConnector(_dsn(name, config), schema=config.schema_name)
        elif config.kind == "mysql":
            from connectors.mysql import MySQLConnector

            connectors[name] = MySQLConnector(_dsn(name, config))
        else:
            raise ValueError(f"connector {name!r}: kind {config.kind!r} is not supported")
    return connectors


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
        policy=build_policy_engine(settings, catalog),
        connectors=build_connectors(settings, catalog, replicas),
        replicas=replicas,
        audit=store,
        audit_keys=audit_keys,
        key_ring=key_ring,
        scanner=scanner or default_scanner(settings.pii_language),
        max_rows_cap=settings.max_rows_cap,
        statement_timeout_s=settings.statement_timeout_seconds,
    )
    return Runtime(
        settings=settings, gateway=gateway, verifier=TokenVerifier(settings.identity), audit_keys=audit_keys
    )
