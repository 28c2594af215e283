"""Data-subject access (Art. 15 GDPR): which requests may have disclosed data about one person?

The question the data-protection officer must answer is "to whom were data about person X disclosed,
when, and for which purpose".  The audit trail answers it in three steps, each narrowing the previous one
without ever dropping a request that did disclose the person (no false negatives):

1. **Candidates by dataset** - every *allowed* ``query`` record whose ``datasets`` include the dataset
   holding the person.  Denied and failed requests returned no data (the pipeline fails closed) and are
   left out.  This set is a superset by construction: a request that returned a row about the person
   must have read the dataset.
2. **Narrowing by recorded person keys** - a record whose ``person_keys`` list is *not empty* names the
   persons it returned; it stays a candidate only if the person's key is in the list.  A record with an
   empty list stays a candidate (the pipeline did not record keys for it; today it never does).
3. **Confirmation by replay** (optional) - a caller-supplied :data:`Replay` function re-runs a candidate
   request and says whether the person was in its answer (``True``), certainly was not (``False``) or
   cannot tell (``None``).  Only records without recorded person keys are replayed.  A replay must
   answer ``False`` only when it is sure, i.e. against the data as it was at the time of the request;
   replaying against today's data can miss persons who have since moved, been deleted or changed.

Person keys are recorded - once the pipeline records them - as *audit person keys*
(:func:`audit_person_key`): ``ak_`` followed by 32 hex characters of an HMAC-SHA-256 under the gateway's
pseudonym master key over the dataset name and the key's text.  They are stable across purposes (unlike
the ``p_...`` pseudonyms analysts see, which differ per purpose) and reveal nothing without the master
key.  :func:`requests_touching_person` accepts either such a key or the raw person key (the value of the
dataset's ``person_key`` column, e.g. ``4711``); the raw key is derived with the key ring and never stored
or returned.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from .record import AuditFilter, StoredRecord
from .store import AuditStore

if TYPE_CHECKING:
    from gateway.sql.masks import KeyRing

AUDIT_PERSON_KEY_PREFIX = "ak_"
_AUDIT_PERSON_KEY_HEX = 32
_AUDIT_PERSON_KEY_RE = re.compile(r"^ak_[0-9a-f]{32}$")

#: Re-runs the request of a record and says whether the person was in its answer (see the module docs).
Replay = Callable[[StoredRecord], bool | None]

Basis = Literal["person_key_recorded", "replay_confirmed", "dataset_read"]

LIMITS = (
    "Candidates are all allowed queries that read the dataset. Records without recorded person keys "
    "(person_keys) cannot be narrowed: the gateway does not yet record which persons a query returned, so "
    "each such request is listed as 'dataset_read' - it may or may not have returned rows about this person."
)


def audit_person_key(key_ring: KeyRing, dataset: str, raw_key: object) -> str:
    """The audit person key of ``raw_key`` in ``dataset``: ``ak_`` + 32 hex characters of
    HMAC-SHA-256(master, ``"audit-person-key\\0" + dataset + "\\0" + text``).

    ``text`` is the key as the database prints it (``CAST(value AS VARCHAR)``), surrounding blanks
    removed: ``4711`` for the integer 4711.  The message prefix separates these keys from the analysts'
    ``p_...`` pseudonyms, which use the same master key.
    """
    text = str(raw_key).strip()
    if not text:
        raise ValueError("the person key is empty")
    message = b"audit-person-key\0" + dataset.encode("utf-8") + b"\0" + text.encode("utf-8")
    digest = hmac.new(key_ring.master, message, hashlib.sha256).hexdigest()
    return AUDIT_PERSON_KEY_PREFIX + digest[:_AUDIT_PERSON_KEY_HEX]


def is_audit_person_key(value: str) -> bool:
    return bool(_AUDIT_PERSON_KEY_RE.match(value.strip()))


class SubjectAccessMatch(BaseModel):
    """One request that may have disclosed data about the person."""

    seq: int
    time: datetime
    request_id: str
    username: str | None = None
    office: str | None = None
    purpose: str | None = None
    policy_version: str | None = None
    columns: list[str] = Field(default_factory=list)
    rows_returned: int | None = None
    basis: Basis = Field(
        description="person_key_recorded: the record names this person among those returned; "
        "replay_confirmed: a replay found the person in the answer; "
        "dataset_read: the request read the dataset, whether it returned this person is not recorded"
    )


class SubjectAccessReport(BaseModel):
    dataset: str
    time_from: datetime | None = None
    time_to: datetime | None = None
    requests: list[SubjectAccessMatch] = Field(default_factory=list)
    records_scanned: int = Field(default=0, description="allowed queries on the dataset in the time range")
    excluded_by_person_keys: int = Field(default=0, description="records whose recorded person keys omit the person")
    excluded_by_replay: int = Field(default=0, description="records a replay showed not to contain the person")
    confirmed: int = Field(default=0, description="requests known to have returned the person")
    unconfirmed: int = Field(default=0, description="requests that read the dataset; not narrowed further")
    narrowed: bool = Field(default=False, description="whether any record could be narrowed by keys or replay")
    limits: str = LIMITS


def _keys_to_match(dataset: str, person_key: str, key_ring: KeyRing | None) -> set[str]:
    """The forms of the person's key a record's ``person_keys`` may hold."""
    value = person_key.strip()
    if not value:
        raise ValueError("the person key is empty")
    if is_audit_person_key(value):
        return {value}
    if key_ring is None:
        raise ValueError("a raw person key needs the pseudonym key ring to derive its audit person key; "
                         "pass key_ring or an audit person key (ak_...)")
    return {audit_person_key(key_ring, dataset, value)}


def _candidate_records(store: AuditStore, filters: AuditFilter, batch_size: int) -> Iterator[StoredRecord]:
    offset = 0
    while True:
        batch = store.query(filters, limit=batch_size, offset=offset)
        yield from batch
        if len(batch) < batch_size:
            return
        offset += len(batch)


def requests_touching_person(
    store: AuditStore,
    dataset: str,
    person_key: str,
    *,
    key_ring: KeyRing | None = None,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    replay: Replay | None = None,
    batch_size: int = 1000,
) -> SubjectAccessReport:
    """The requests that may have disclosed data about the person ``person_key`` of ``dataset``.

    ``person_key`` is an audit person key (``ak_...``) or the raw value of the dataset's person-key
    column (then ``key_ring`` is required).  See the module docs for the three steps and their limits.
    The result never contains the person key in any form.
    """
    if not dataset.strip():
        raise ValueError("the dataset is empty")
    wanted = _keys_to_match(dataset, person_key, key_ring)
    filters = AuditFilter(dataset=dataset, event="query", decision="allow", time_from=time_from,
                          time_to=time_to)
    report = SubjectAccessReport(dataset=dataset, time_from=time_from, time_to=time_to)
    for record in _candidate_records(store, filters, max(1, batch_size)):
        report.records_scanned += 1
        event = record.event
        if dataset not in event.datasets or event.decision != "allow" or event.event != "query":
            continue  # defensive: the store's filter already ensures this
        basis: Basis
        if event.person_keys:
            if wanted.isdisjoint(event.person_keys):
                report.excluded_by_person_keys += 1
                continue
            basis = "person_key_recorded"
        else:
            verdict = replay(record) if replay is not None else None
            if verdict is False:
                report.excluded_by_replay += 1
                continue
            basis = "replay_confirmed" if verdict else "dataset_read"
        report.requests.append(SubjectAccessMatch(
            seq=record.seq, time=record.time, request_id=event.request_id, username=event.username,
            office=event.office, purpose=event.purpose, policy_version=event.policy_version,
            columns=[c for c in event.columns if c.startswith(dataset + ".")],
            rows_returned=event.rows_returned, basis=basis,
        ))
    report.confirmed = sum(1 for m in report.requests if m.basis != "dataset_read")
    report.unconfirmed = len(report.requests) - report.confirmed
    report.narrowed = bool(report.confirmed or report.excluded_by_person_keys or report.excluded_by_replay)
    return report
