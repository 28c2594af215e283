"""Audit stage: a tamper-evident, fail-closed audit trail.

Every request (allowed, denied, failed, unauthenticated) appends one :class:`AuditEvent` to an
:class:`AuditStore` (SQLite or PostgreSQL) as a hash-chained record with signed checkpoints; failure to
write raises :class:`gateway.errors.AuditUnavailable`.  :func:`verify` checks the chain,
:func:`make_receipt` / :func:`verify_receipt` give callers signed proof of their record.
"""

from .chain import (
    ANCHOR,
    GENESIS_HASH,
    PERIODIC,
    CheckpointPolicy,
    VerifyReport,
    record_hash,
    sign_checkpoint,
    verify,
)
from .keys import (
    AuditKeyError,
    AuditKeys,
    key_id,
    keys_from_config,
    load_fernet_key,
    load_or_create_keys,
    load_public_key,
    load_signing_key,
)
from .receipt import make_receipt, query_hash, verify_receipt
from .record import (
    AuditEvent,
    AuditFilter,
    Checkpoint,
    DecryptionFailed,
    OriginalSqlUnavailable,
    StoredRecord,
    canonical_json,
    decrypt_original,
    encrypt_original,
    format_time,
    sql_fields,
)
from .sql_text import normalise_sql, unparseable_marker
from .store import AuditStore, SQLAuditStore, default_sqlite_url, open_store, prune

__all__ = [
    "ANCHOR",
    "GENESIS_HASH",
    "PERIODIC",
    "AuditEvent",
    "AuditFilter",
    "AuditKeyError",
    "AuditKeys",
    "AuditStore",
    "Checkpoint",
    "CheckpointPolicy",
    "DecryptionFailed",
    "OriginalSqlUnavailable",
    "SQLAuditStore",
    "StoredRecord",
    "VerifyReport",
    "canonical_json",
    "decrypt_original",
    "default_sqlite_url",
    "encrypt_original",
    "format_time",
    "key_id",
    "keys_from_config",
    "load_fernet_key",
    "load_or_create_keys",
    "load_public_key",
    "load_signing_key",
    "make_receipt",
    "normalise_sql",
    "open_store",
    "prune",
    "query_hash",
    "record_hash",
    "sign_checkpoint",
    "sql_fields",
    "unparseable_marker",
    "verify",
    "verify_receipt",
]
