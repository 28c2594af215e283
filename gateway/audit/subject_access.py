"""Data-subject access (Art. 15 GDPR): which requests may have disclosed data about one person?

The question the data-protection officer must answer is "to whom were data about person X disclosed,
when, and for which purpose".  The audit trail answers it in three steps, each narrowing the previous one
without dropping a request that did disclose the person (no false negatives, within the limits below):

1. **Candidates by dataset** - every *allowed* ``query`` record whose ``datasets`` include the dataset
   holding the person.  Denied and failed requests returned no data (the pipeline fails closed) and are
   left out.  This set is a superset by construction: a request that returned a row about the person
   must have read the dataset.
2. **Narrowing by recorded person keys** - the pipeline lists in ``person_keys`` the values of a
   dataset's person-key column that an answer carried, as ``<dataset>:<value as returned>`` or, for many
   persons, one Bloom filter entry ``bloom:<dataset>:...`` (see :mod:`gateway.audit.person_index`).
   A streamed answer (CSV, Arrow, Parquet, large JSON) has them in its ``query_completed`` record
   (explicit, or 32-bit fingerprints ``fp32:<dataset>:...``), looked up by the request id; a stream whose
   completion record is missing stays a ``dataset_read`` candidate.  The
   value as returned is the analyst's pseudonym (``p_`` + 16 hex, per purpose and pseudonym domain) or,
   where the column is released plain, the key itself.  A record with entries *for this dataset* stays a
   candidate only if one of the person's forms matches (exactly: ``person_key_recorded``; in a Bloom
   filter: ``person_key_filter``, about 0.1 % false positives).  A record without entries for this
   dataset - the answer did not carry its person-key column, or the record predates the recording, or
   it only carries another dataset's keys - stays a candidate (``dataset_read``), whatever ``rows_returned``.
3. **Confirmation by replay** (optional) - a caller-supplied :data:`Replay` function re-runs a candidate
   request and says whether the person was in its answer (``True``), certainly was not (``False``) or
   cannot tell (``None``).  It is applied to ``dataset_read`` and ``person_key_filter`` candidates.  A replay
   must answer ``False`` only when it is sure, i.e. against the data as it was at the time of the
   request; replaying against today's data misses persons who have since moved, been deleted or changed.

Limits of step 2: the person's pseudonym is computed with the pseudonym domains of the person-key column
that the caller passes (from the grants in force; ``person`` and ``default`` are always tried).  A
record made under a policy that used another domain for that column would wrongly be excluded: pass the
older domains too.  And the recorded keys must cover every person whose data reached the answer - a
self-join or a scalar subquery can put another person's values into a row identified by someone else's
key; that is for the recording side (see docs/auditor-api.md).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, Field

from .record import AuditFilter, StoredRecord
from .store import AuditStore

if TYPE_CHECKING:
    from gateway.sql.masks import KeyRing

#: as in :mod:`gateway.sql.masks`: ``p_`` + the first 16 hex characters of the keyed SHA-256
PSEUDONYM_PREFIX = "p_"
PSEUDONYM_HEX_CHARS = 16
#: pseudonym domains always tried for a person-key column
DEFAULT_DOMAINS = ("person", "default")

#: Re-runs the request of a record and says whether the person was in its answer (see the module docs).
Replay = Callable[[StoredRecord], bool | None]

Basis = Literal["person_key_recorded", "person_key_filter", "replay_confirmed", "dataset_read"]

LIMITS = (
    "Candidates are all allowed queries that read the dataset in the period. A request is narrowed by the "
    "person keys (person_keys) its audit record lists for this dataset; records without such keys - the "
    "answer did not carry the dataset's person-key column, or the record predates key recording - are "
    "listed as 'dataset_read': they may or may not have returned rows about this person. "
    "'person_key_filter' matches come from a Bloom filter (about 0.1 % false positives)."
)


def analyst_pseudonym(key_ring: KeyRing, purpose: str, domain: str, value: str) -> str:
    """The pseudonym an analyst querying for ``purpose`` saw for ``value`` in a column pseudonymised in
    ``domain``: ``p_`` + 16 hex of SHA-256(pseudonym key + ``|`` + value), as the SQL rewrite computes it
    (``value`` as the database prints it: ``4711`` for the integer 4711)."""
    key = key_ring.pseudonym_key(purpose, domain)
    digest = hashlib.sha256(f"{key}|{value}".encode()).hexdigest()
    return PSEUDONYM_PREFIX + digest[:PSEUDONYM_HEX_CHARS]


def pseudonym_domains(grants: Iterable[Mapping[str, Any]] | None, dataset: str, column: str | None) -> set[str]:
    """The pseudonym domains the grants use for ``dataset.column``, plus :data:`DEFAULT_DOMAINS`."""
    domains = set(DEFAULT_DOMAINS)
    if column is None:
        return domains
    for grant in grants or ():
        if not isinstance(grant, Mapping) or grant.get("dataset") != dataset:
            continue
        columns = grant.get("columns")
        spec = columns.get(column) if isinstance(columns, Mapping) else None
        if isinstance(spec, Mapping) and spec.get("op") == "pseudonymise":
            params = spec.get("params")
            domain = params.get("domain", "default") if isinstance(params, Mapping) else "default"
            domains.add(str(domain))
    return domains


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
        description="person_key_recorded: the record lists this person among those returned; "
        "person_key_filter: the record's Bloom filter may hold the person (about 0.1 % false positives); "
        "replay_confirmed: a replay found the person in the answer; "
        "dataset_read: the request read the dataset, whether it returned this person is not recorded"
    )


class SubjectAccessReport(BaseModel):
    dataset: str
    time_from: datetime | None = None
    time_to: datetime | None = None
    requests: list[SubjectAccessMatch] = Field(default_factory=list)
    records_scanned: int = Field(default=0, description="allowed queries on the dataset in the time range")
    excluded_by_person_keys: int = Field(default=0,
                                         description="records whose recorded person keys omit the person")
    excluded_by_replay: int = Field(default=0, description="records a replay showed not to hold the person")
    confirmed: int = Field(default=0, description="requests known to have returned the person")
    unconfirmed: int = Field(default=0, description="possible requests: dataset_read or person_key_filter")
    narrowed: bool = Field(default=False, description="whether any record was narrowed by keys or replay")
    limits: str = LIMITS


def _entries_for(person_keys: Iterable[str], dataset: str) -> list[str]:
    prefixes = (f"{dataset}:", f"bloom:{dataset}:", f"fp32:{dataset}:")
    return [e for e in person_keys if e.startswith(prefixes)]


def _completion_entries(store: AuditStore, request_id: str, dataset: str) -> list[str]:
    """The person keys a streamed answer's ``query_completed`` record holds for ``dataset`` (none if the
    record is missing: the stream's keys are gathered while it runs and written when it ends)."""
    for record in store.query(AuditFilter(event="query_completed", request_id=request_id), limit=1):
        return _entries_for(record.event.person_keys, dataset)
    return []


def _match(entries: list[str], dataset: str, forms: set[str]) -> Basis | None:
    """``person_key_recorded`` for an exact entry, ``person_key_filter`` for a Bloom hit, else None."""
    if any(f"{dataset}:{form}" in entries for form in forms):
        return "person_key_recorded"
    blooms = [e for e in entries if e.startswith((f"bloom:{dataset}:", f"fp32:{dataset}:"))]
    if not blooms:
        return None
    try:
        from .person_index import may_contain
    except ImportError:  # the recording side is not installed: a filter we cannot read may hold anyone
        return "person_key_filter"
    try:
        hit = any(may_contain(blooms, dataset, form) for form in forms)
    except (ValueError, IndexError, ZeroDivisionError):  # an unreadable filter: keep the candidate
        return "person_key_filter"
    return "person_key_filter" if hit else None


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
    domains: Iterable[str] = DEFAULT_DOMAINS,
    time_from: datetime | None = None,
    time_to: datetime | None = None,
    replay: Replay | None = None,
    batch_size: int = 1000,
) -> SubjectAccessReport:
    """The requests that may have disclosed data about the person ``person_key`` of ``dataset``.

    ``person_key`` is the raw value of the dataset's person-key column (e.g. ``4711``) or a pseudonym an
    analyst saw (``p_...``; then only records of that purpose and domain can match it).  With
    ``key_ring`` the raw key is turned into the pseudonym of each record's purpose in each of
    ``domains``; without it only records that hold the key in plain (or that pseudonym) can be narrowed,
    others with keys for this dataset are then kept as ``dataset_read`` rather than excluded.  See the
    module docs for the steps and their limits.  The result never contains the person key in any form.
    """
    if not dataset.strip():
        raise ValueError("the dataset is empty")
    value = person_key.strip()
    if not value:
        raise ValueError("the person key is empty")
    domain_list = sorted(set(domains))
    filters = AuditFilter(dataset=dataset, event="query", decision="allow", time_from=time_from,
                          time_to=time_to)
    report = SubjectAccessReport(dataset=dataset, time_from=time_from, time_to=time_to)
    for record in _candidate_records(store, filters, max(1, batch_size)):
        report.records_scanned += 1
        event = record.event
        if dataset not in event.datasets or event.decision != "allow" or event.event != "query":
            continue  # defensive: the store's filter already ensures this
        basis: Basis = "dataset_read"
        entries = _entries_for(event.person_keys, dataset)
        if not entries and event.rows_returned is None and event.request_id:
            # a streamed answer: its query record was written before the first row, its keys after the last
            entries = _completion_entries(store, event.request_id, dataset)
        if entries:
            forms = {value}
            if key_ring is not None and event.purpose:
                forms.update(analyst_pseudonym(key_ring, event.purpose, d, value) for d in domain_list)
            matched = _match(entries, dataset, forms)
            if matched is not None:
                basis = matched
            elif key_ring is None and not value.startswith(PSEUDONYM_PREFIX):
                basis = "dataset_read"  # cannot compute the pseudonyms: do not exclude
            else:
                report.excluded_by_person_keys += 1
                continue
        if basis in ("dataset_read", "person_key_filter") and replay is not None:
            verdict = replay(record)
            if verdict is False:
                report.excluded_by_replay += 1
                continue
            if verdict:
                basis = "replay_confirmed"
        report.requests.append(SubjectAccessMatch(
            seq=record.seq, time=record.time, request_id=event.request_id, username=event.username,
            office=event.office, purpose=event.purpose, policy_version=event.policy_version,
            columns=[c for c in event.columns if c.startswith(dataset + ".")],
            rows_returned=event.rows_returned, basis=basis,
        ))
    report.confirmed = sum(1 for m in report.requests if m.basis in ("person_key_recorded", "replay_confirmed"))
    report.unconfirmed = len(report.requests) - report.confirmed
    report.narrowed = bool(report.confirmed or report.excluded_by_person_keys or report.excluded_by_replay
                           or any(m.basis == "person_key_filter" for m in report.requests))
    return report
