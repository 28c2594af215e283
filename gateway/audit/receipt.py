"""Signed query receipts: proof handed to the caller that its request was recorded.

A receipt binds the request id, the hash of the normalised SQL, the policy version and decision to the
audit record (its seq and hash) with an Ed25519 signature by the gateway.  Someone holding a receipt
can later show that the record existed with that hash - which also protects records written after the
last checkpoint against silent deletion or rewriting.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature

from .encoding import b64url_decode, b64url_encode
from .keys import PublicKeyInput, SigningKeyInput, key_id, load_public_key, load_signing_key
from .record import AuditEvent, StoredRecord, canonical_json, format_time
from .store import AuditStore

RECEIPT_FIELDS = ("request_id", "query_hash", "policy_version", "decision", "audit_record_hash", "seq",
                  "time", "key_id")


def query_hash(sql_normalised: str | None) -> str | None:
    if sql_normalised is None:
        return None
    return hashlib.sha256(sql_normalised.encode("utf-8")).hexdigest()


def _payload(receipt: Mapping[str, Any]) -> bytes:
    return canonical_json({name: receipt.get(name) for name in RECEIPT_FIELDS})


def make_receipt(stored: StoredRecord, event: AuditEvent, signing_key: SigningKeyInput) -> dict[str, Any]:
    """The receipt for ``event`` stored as ``stored``; ``signature`` is base64url Ed25519 over the
    canonical JSON of the other fields.  The values are taken from the stored record (which is what the
    audit trail holds); ``event`` must be the event that was appended."""
    key = load_signing_key(signing_key)
    data = stored.event_data
    if data.get("request_id") != event.request_id:
        raise ValueError("the event does not belong to this stored record")
    sql = data.get("sql_normalised")
    receipt: dict[str, Any] = {
        "request_id": data.get("request_id"),
        "query_hash": query_hash(sql if isinstance(sql, str) else None),
        "policy_version": data.get("policy_version"),
        "decision": data.get("decision"),
        "audit_record_hash": stored.record_hash,
        "seq": stored.seq,
        "time": format_time(stored.time),
        "key_id": key_id(key),
    }
    receipt["signature"] = b64url_encode(key.sign(_payload(receipt)))
    return receipt


def verify_receipt(receipt: Mapping[str, Any], public_key: PublicKeyInput,
                   store: AuditStore | None = None) -> tuple[bool, str]:
    """``(True, "ok")`` if the signature is valid (and, with ``store``, the record at ``seq`` still has
    that hash and request id); otherwise ``(False, reason)``."""
    if not isinstance(receipt, Mapping):
        return False, "the receipt is not an object"
    missing = [name for name in (*RECEIPT_FIELDS, "signature") if name not in receipt]
    if missing:
        return False, f"the receipt lacks {', '.join(missing)}"
    extra = sorted(set(receipt) - {*RECEIPT_FIELDS, "signature"})
    if extra:
        return False, f"the receipt has unexpected fields: {', '.join(extra)}"
    key = load_public_key(public_key)
    if receipt["key_id"] != key_id(key):
        return False, "the receipt was signed with a different key"
    try:
        key.verify(b64url_decode(str(receipt["signature"])), _payload(receipt))
    except (InvalidSignature, ValueError, TypeError):
        return False, "the receipt signature is invalid"
    if store is not None:
        seq = receipt["seq"]
        if not isinstance(seq, int):
            return False, "the receipt's seq is not a number"
        record = store.get(seq)
        if record is None:
            return False, f"the audit trail has no record {seq}"
        if record.record_hash != receipt["audit_record_hash"]:
            return False, f"audit record {seq} has a different hash than the receipt"
        if record.event_data.get("request_id") != receipt["request_id"]:
            return False, f"audit record {seq} belongs to a different request"
    return True, "ok"
