"""The hash chain and its signed checkpoints, and :func:`verify`.

Record ``n`` is stored with ``prev_hash`` (the ``record_hash`` of record ``n-1``, 64 zeros for record 1)
and ``record_hash = SHA-256(canonical JSON of {"seq": n, "prev_hash": ..., "event": {...}})`` (sorted
keys, no whitespace, UTF-8, times as ISO-8601 UTC).  Changing, deleting, inserting or reordering records
therefore breaks the chain, unless the attacker recomputes every later hash - which is what the signed
checkpoints are for: every ``N`` records (and at least every few minutes, checked on append) the store
writes ``{seq, head_hash, time}`` signed with the gateway's Ed25519 key.  A rewritten chain no longer
matches the signed ``head_hash``; a truncated chain ends before the last checkpoint.

Limits, by construction: records appended after the last checkpoint are protected only by the chain
itself, i.e. deleting the *tail* after the last checkpoint (or rewriting it with recomputed hashes) is
not detectable until the next checkpoint is written; deleting checkpoint rows together with the records
they cover is not detectable either.  Query receipts handed to callers (see
:mod:`gateway.audit.receipt`) and exporting checkpoints elsewhere narrow both gaps.

Retention (:func:`gateway.audit.store.prune`) deletes a prefix of the chain and writes a signed
``anchor`` checkpoint at the new first record stating that record's ``prev_hash``; :func:`verify`
accepts a chain that starts at such an anchor.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from .encoding import b64url_decode, b64url_encode
from .keys import PublicKeyInput, key_id, load_public_key
from .record import Checkpoint, StoredRecord, canonical_json, format_time, parse_time, utc_now

if TYPE_CHECKING:
    from .store import AuditStore

GENESIS_HASH = "0" * 64
PERIODIC = "periodic"
ANCHOR = "anchor"

ProgressCallback = Callable[[int, int], None]


def record_hash(seq: int, prev_hash: str, event_data: Mapping[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of ``{seq, prev_hash, event}``."""
    return hashlib.sha256(canonical_json({"seq": seq, "prev_hash": prev_hash, "event": dict(event_data)})
                          ).hexdigest()


def checkpoint_payload(seq: int, kind: str, head_hash: str, time: datetime) -> bytes:
    return canonical_json({"kind": kind, "seq": seq, "head_hash": head_hash, "time": format_time(time)})


def sign_checkpoint(seq: int, head_hash: str, signing_key: Ed25519PrivateKey, *, kind: str = PERIODIC,
                    time: datetime | None = None) -> Checkpoint:
    time = time or utc_now()
    time = parse_time(format_time(time))  # the precision that is stored
    signature = signing_key.sign(checkpoint_payload(seq, kind, head_hash, time))
    return Checkpoint(seq=seq, kind=kind, head_hash=head_hash, time=time, key_id=key_id(signing_key),
                      signature=b64url_encode(signature))


def checkpoint_signature_ok(checkpoint: Checkpoint, public_keys: Mapping[str, Ed25519PublicKey]) -> bool:
    key = public_keys.get(checkpoint.key_id)
    if key is None:
        return False
    try:
        key.verify(b64url_decode(checkpoint.signature),
                   checkpoint_payload(checkpoint.seq, checkpoint.kind, checkpoint.head_hash, checkpoint.time))
    except (InvalidSignature, ValueError):
        return False
    return True


@dataclass(frozen=True)
class CheckpointPolicy:
    """When :meth:`AuditStore.append` writes a checkpoint: every ``every`` records, and on the first
    append more than ``interval_seconds`` after the last checkpoint."""

    every: int = 100
    interval_seconds: float = 300.0

    def due(self, new_seq: int, last_seq: int, last_time: datetime | None, now: datetime) -> bool:
        if new_seq <= last_seq:
            return False
        if new_seq - last_seq >= max(1, self.every):
            return True
        return last_time is not None and (now - last_time).total_seconds() >= self.interval_seconds


class VerifyReport(BaseModel):
    ok: bool
    records_checked: int
    checkpoints_checked: int
    first_bad_seq: int | None = None
    problem: str | None = None
    first_seq: int | None = None
    last_seq: int | None = None
    last_checkpoint_seq: int | None = None


def _public_key_map(public_key: PublicKeyInput | Iterable[PublicKeyInput]) -> dict[str, Ed25519PublicKey]:
    if isinstance(public_key, (Ed25519PublicKey, Ed25519PrivateKey, bytes, str)) or not isinstance(
            public_key, Iterable):
        keys = [load_public_key(public_key)]
    else:
        keys = [load_public_key(k) for k in public_key]
    return {key_id(k): k for k in keys}


def verify(store: AuditStore, public_key: PublicKeyInput | Iterable[PublicKeyInput],
           from_seq: int | None = None, progress: ProgressCallback | None = None) -> VerifyReport:
    """Recompute the chain and check it against the signed checkpoints.

    Detects: gaps in ``seq`` (deletion), records whose hash does not match their content (modification,
    renumbering/reordering), records not linked to their predecessor (insertion, rewriting), a chain that
    does not start at seq 1 or at a signed anchor (deletion of the oldest records), checkpoints with an
    invalid signature, checkpoints whose ``head_hash`` differs from the recomputed hash at their seq
    (rewritten chain), and a chain ending before the last checkpoint (truncation).  Records after the last
    checkpoint are protected only once the next checkpoint is written (see the module docs).

    ``public_key`` may be several keys (key rotation); checkpoints name their key by ``key_id``.
    ``first_bad_seq`` is the first seq at which verification failed.
    """
    keys = _public_key_map(public_key)
    problems: list[tuple[int, str]] = []

    checkpoints = list(store.iter_checkpoints())
    periodic: dict[int, Checkpoint] = {}
    anchors: dict[int, Checkpoint] = {}
    for cp in checkpoints:
        if not checkpoint_signature_ok(cp, keys):
            problems.append((cp.seq, f"the {cp.kind} checkpoint at seq {cp.seq} has an invalid signature "
                                     f"(or an unknown key id {cp.key_id})"))
            continue
        (anchors if cp.kind == ANCHOR else periodic)[cp.seq] = cp

    checked = 0
    first_seq: int | None = None
    last_seq: int | None = None
    last_good_checkpoint = 0
    expected_seq = 0
    expected_prev: str | None = None
    prev_record: StoredRecord | None = None
    chain_problem: tuple[int, str] | None = None

    for rec in store.iter_records(from_seq if from_seq is not None else 1):
        seq = rec.seq
        if first_seq is None:
            first_seq = seq
            expected_seq = seq
            start = from_seq if from_seq is not None else 1
            if seq == 1:
                expected_prev = GENESIS_HASH
            elif seq in anchors:
                expected_prev = anchors[seq].head_hash
            elif seq == start and from_seq is not None:
                # partial verification: trust the first record's link unless a checkpoint covers it
                expected_prev = periodic[seq - 1].head_hash if (seq - 1) in periodic else None
            else:
                older = [a for a in anchors if a < seq]
                missing_from = max(older) if older else start
                chain_problem = (missing_from, f"records {missing_from}..{seq - 1} are missing: the chain "
                                               f"starts at seq {seq} without a signed anchor there")
                break
        if seq != expected_seq:
            if seq > expected_seq:
                chain_problem = (expected_seq, f"records {expected_seq}..{seq - 1} are missing (deleted)")
            else:
                chain_problem = (seq, f"record seq {seq} appears twice or out of order")
            break
        try:
            data = rec.event_data
            own = record_hash(seq, rec.prev_hash, data)
        except (ValueError, TypeError) as exc:
            chain_problem = (seq, f"record {seq} cannot be read ({type(exc).__name__})")
            break
        if own != rec.record_hash:
            if prev_record is not None and rec.prev_hash == prev_record.prev_hash:
                chain_problem = (seq - 1, f"record {seq - 1} was inserted: it and record {seq} claim the "
                                          f"same predecessor, and record {seq} no longer matches its hash")
            else:
                chain_problem = (seq, f"record {seq} does not match its hash (modified or renumbered)")
            break
        if expected_prev is not None and rec.prev_hash != expected_prev:
            chain_problem = (seq, f"record {seq} is not linked to record {seq - 1} (a record was inserted, "
                                  f"removed or rewritten)")
            break
        try:
            time_ok = parse_time(str(data.get("time"))) == rec.time
        except ValueError:
            time_ok = False
        if not time_ok:
            chain_problem = (seq, f"the time column of record {seq} differs from the hashed event time")
            break
        if seq in anchors and seq != first_seq and anchors[seq].head_hash != rec.prev_hash:
            chain_problem = (seq, f"record {seq} does not match the signed anchor at seq {seq}")
            break
        if seq in periodic:
            if periodic[seq].head_hash != own:
                chain_problem = (seq, f"the chain was rewritten between seq {last_good_checkpoint + 1} and "
                                      f"{seq}: the hash at {seq} differs from the signed checkpoint")
                break
            last_good_checkpoint = seq
        checked += 1
        last_seq = seq
        expected_prev = own
        expected_seq = seq + 1
        prev_record = rec
        if progress is not None and checked % 1000 == 0:
            progress(checked, seq)

    if chain_problem is not None:
        problems.append(chain_problem)
    else:
        if last_seq is None:
            # empty chain: everything may have been pruned, up to the newest anchor
            end = max(anchors) - 1 if anchors else 0
            if from_seq is not None and from_seq > 1:
                end = max(end, from_seq - 1)
        else:
            end = last_seq
        beyond = [s for s in periodic if s > end] + [s - 1 for s in anchors if s - 1 > end]
        if beyond:
            problems.append((end + 1, f"the chain ends at seq {end} but a signed checkpoint covers seq "
                                      f"{max(beyond)}: records {end + 1}..{max(beyond)} were deleted "
                                      f"(truncated)"))
    if progress is not None:
        progress(checked, last_seq or 0)

    report = VerifyReport(ok=not problems, records_checked=checked, checkpoints_checked=len(checkpoints),
                          first_seq=first_seq, last_seq=last_seq,
                          last_checkpoint_seq=max(periodic) if periodic else None)
    if problems:
        bad_seq, text = min(problems, key=lambda p: p[0])
        report.first_bad_seq = bad_seq
        report.problem = text
    return report
