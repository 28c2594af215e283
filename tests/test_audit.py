"""Tests of the tamper-evident audit trail (gateway.audit) on SQLite and PostgreSQL.

PostgreSQL cases use a unique schema in database ``test`` on 127.0.0.1:5432 and drop it afterwards; they
fail (never skip) when the server is down.
"""

from __future__ import annotations

import base64
import json
import logging
import multiprocessing
import os
import sqlite3
import stat
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.audit import (
    GENESIS_HASH,
    AuditEvent,
    AuditFilter,
    DecryptionFailed,
    SQLAuditStore,
    canonical_json,
    decrypt_original,
    default_sqlite_url,
    key_id,
    load_fernet_key,
    load_or_create_keys,
    load_public_key,
    load_signing_key,
    make_receipt,
    normalise_sql,
    open_store,
    prune,
    query_hash,
    record_hash,
    sql_fields,
    unparseable_marker,
    verify,
    verify_receipt,
)
from gateway.audit.sql_text import is_marker
from gateway.errors import AuditUnavailable
from gateway.identity.principal import Principal

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"

SIGNING_KEY = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
PUBLIC_KEY = SIGNING_KEY.public_key()
FERNET_KEY = Fernet.generate_key()


def seed_b64(key: Ed25519PrivateKey) -> str:
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                            serialization.NoEncryption())
    return base64.b64encode(raw).decode()


def ev(i: int = 0, **fields: Any) -> AuditEvent:
    data: dict[str, Any] = {
        "request_id": f"req-{i}",
        "event": "query",
        "subject": "u-1",
        "username": "anna",
        "office": "Amt 12",
        "roles": ["analyst"],
        "client_address": "10.0.0.1",
        "purpose": "statistik",
        "datasets": ["einwohner"],
        "columns": ["einwohner.jahrgang"],
        "decision": "allow",
        "rules": ["analyst-aggregate"],
        "masks": {"einwohner.nachname": "redact"},
        "policy_version": "v1",
        "sql_normalised": "SELECT count(*) FROM einwohner WHERE jahrgang > 1990",
        "rows_returned": i,
        "bytes_returned": 100 + i,
        "duration_ms": 1.5,
        "connector": "postgres",
    }
    data.update(fields)
    return AuditEvent(**data)


# --- backends ------------------------------------------------------------------------------------------

@dataclass
class Backend:
    kind: str
    url: str
    sqlite_path: str | None = None
    schema: str | None = None
    stores: list[SQLAuditStore] = field(default_factory=list)

    def open(self, signing_key: Any = SIGNING_KEY, **options: Any) -> SQLAuditStore:
        options.setdefault("checkpoint_on_close", False)
        store = open_store(self.url, signing_key, **options)
        self.stores.append(store)
        return store

    def table(self, name: str) -> str:
        return f'"{self.schema}".{name}' if self.schema else name

    def execute(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL directly against the store's tables (the attacker's view); ``{records}`` and
        ``{checkpoints}`` name the tables, ``%s`` are parameters."""
        sql = sql.format(records=self.table("audit_records"), checkpoints=self.table("audit_checkpoints"))
        if self.kind == "sqlite":
            assert self.sqlite_path is not None
            lite = sqlite3.connect(self.sqlite_path, isolation_level=None, timeout=30)
            try:
                cur = lite.execute(sql.replace("%s", "?"), params)
                return list(cur.fetchall()) if cur.description else []
            finally:
                lite.close()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            cur2 = conn.execute(sql.encode(), params)
            return list(cur2.fetchall()) if cur2.description else []

    def raw_dump(self) -> str:
        """Everything in the store as text (what someone reading the database sees)."""
        rows = self.execute("SELECT seq, time, prev_hash, record_hash, event FROM {records}")
        rows += self.execute("SELECT seq, kind, head_hash, time, key_id, signature FROM {checkpoints}")
        return "\n".join(" ".join(str(v) for v in row) for row in rows)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "sqlite":
        path = tmp_path / "audit.db"
        b = Backend("sqlite", f"sqlite:///{path}", sqlite_path=str(path))
    else:
        schema = f"audit_test_{uuid.uuid4().hex[:12]}"
        b = Backend("postgres", f"{PG_DSN}?schema={schema}", schema=schema)
    try:
        yield b
    finally:
        for store in b.stores:
            if not store.closed:
                store.close()
        if b.schema:
            with psycopg.connect(PG_DSN, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{b.schema}" CASCADE')


def tparam(backend: Backend, iso: str) -> Any:
    """A time value as the backend's ``time`` column takes it."""
    value = datetime.fromisoformat(iso.replace("Z", "+00:00"))
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if backend.kind == "sqlite" else value


def fill(store: SQLAuditStore, n: int, **fields: Any) -> None:
    for i in range(1, n + 1):
        store.append(ev(i, **fields))


# --- append and verify ---------------------------------------------------------------------------------

def test_append_and_verify_ok(backend: Backend) -> None:
    store = backend.open(checkpoint_every=10)
    assert store.head() == (0, GENESIS_HASH)
    first = store.append(ev(1))
    assert first.seq == 1 and first.prev_hash == GENESIS_HASH
    for i in range(2, 31):
        rec = store.append(ev(i))
        assert rec.seq == i
    assert store.head() == (30, rec.record_hash)
    report = verify(store, PUBLIC_KEY)
    assert report.ok, report.problem
    assert report.records_checked == 30
    assert report.checkpoints_checked == 3
    assert report.first_bad_seq is None and report.last_checkpoint_seq == 30

    got = store.get(7)
    assert got is not None and got.event.request_id == "req-7" and got.event.rows_returned == 7
    assert got.record_hash == record_hash(7, got.prev_hash, got.event_data)
    assert store.get(999) is None
    seqs = [r.seq for r in store.iter_records()]
    assert seqs == list(range(1, 31))
    assert [r.seq for r in store.iter_records(25)] == list(range(25, 31))

    # another handle on the same storage (e.g. another worker) sees the same chain
    other = backend.open(signing_key=None)
    assert verify(other, PUBLIC_KEY).ok
    with pytest.raises(AuditUnavailable):
        other.append(ev(99))  # read-only: no signing key


def test_stored_record_is_consistent_with_hash(backend: Backend) -> None:
    store = backend.open()
    event = ev(1, time=datetime(2024, 5, 1, 14, 0, 0, 123456, tzinfo=UTC))
    stored = store.append(event)
    expected = record_hash(1, GENESIS_HASH, event.canonical_dict())
    assert stored.record_hash == expected
    again = store.get(1)
    assert again is not None
    assert again.record_hash == expected and again.time == event.time
    assert again.event == event


def test_query_filters(backend: Backend) -> None:
    store = backend.open()
    t0 = datetime(2024, 1, 1, tzinfo=UTC)
    store.append(ev(1, time=t0, username="anna", office="Amt 12", datasets=["einwohner"], decision="allow"))
    store.append(ev(2, time=t0 + timedelta(hours=1), username="bob", office="Amt 61",
                    datasets=["bauantraege"], decision="deny", rules=["no-names"], purpose="planung"))
    store.append(ev(3, time=t0 + timedelta(hours=2), username="anna", datasets=["einwohner", "bauantraege"],
                    decision="error", event="explain"))

    def seqs(**kw: Any) -> list[int]:
        return [r.seq for r in store.query(AuditFilter(**kw), limit=100, offset=0)]

    assert seqs() == [1, 2, 3]
    assert seqs(username="anna") == [1, 3]
    assert seqs(office="Amt 61") == [2]
    assert seqs(dataset="bauantraege") == [2, 3]
    assert seqs(purpose="planung") == [2]
    assert seqs(decision="deny") == [2]
    assert seqs(rule="no-names") == [2]
    assert seqs(event="explain") == [3]
    assert seqs(request_id="req-2") == [2]
    assert seqs(time_from=t0 + timedelta(minutes=30)) == [2, 3]
    assert seqs(time_from=t0, time_to=t0 + timedelta(hours=1)) == [1]
    assert seqs(username="anna", dataset="bauantraege") == [3]
    assert seqs(newest_first=True) == [3, 2, 1]
    assert [r.seq for r in store.query(AuditFilter(), limit=1, offset=1)] == [2]


# --- tampering -----------------------------------------------------------------------------------------

def test_detects_modified_field(backend: Backend) -> None:
    store = backend.open(checkpoint_every=100)
    fill(store, 20)
    backend.execute("UPDATE {records} SET event = replace(event, '\"rows_returned\":7', "
                    "'\"rows_returned\":700') WHERE seq = 7")
    assert '"rows_returned":700' in backend.execute("SELECT event FROM {records} WHERE seq = 7")[0][0]
    report = verify(store, PUBLIC_KEY)
    assert not report.ok
    assert report.first_bad_seq == 7
    assert "7" in (report.problem or "")


def test_detects_modified_username_and_time_column(backend: Backend) -> None:
    store = backend.open()
    fill(store, 10)
    backend.execute("UPDATE {records} SET event = replace(event, 'anna', 'mallory') WHERE seq = 4")
    assert verify(store, PUBLIC_KEY).first_bad_seq == 4

    backend.execute("UPDATE {records} SET event = replace(event, 'mallory', 'anna') WHERE seq = 4")
    assert verify(store, PUBLIC_KEY).ok
    backend.execute("UPDATE {records} SET time = %s WHERE seq = 6",
                    (tparam(backend, "2001-01-01T00:00:00Z"),))
    report = verify(store, PUBLIC_KEY)
    assert report.first_bad_seq == 6 and "time" in (report.problem or "")


def test_detects_deleted_middle_record(backend: Backend) -> None:
    store = backend.open()
    fill(store, 20)
    backend.execute("DELETE FROM {records} WHERE seq = 10")
    report = verify(store, PUBLIC_KEY)
    assert not report.ok
    assert report.first_bad_seq == 10
    assert "missing" in (report.problem or "")


def test_detects_deleted_oldest_records(backend: Backend) -> None:
    store = backend.open()
    fill(store, 10)
    backend.execute("DELETE FROM {records} WHERE seq <= 3")
    report = verify(store, PUBLIC_KEY)
    assert not report.ok and report.first_bad_seq == 1


INSERT_RECORD = ("INSERT INTO {records} (seq, time, prev_hash, record_hash, event) "
                 "VALUES (%s, %s, %s, %s, %s)")


def _shift_up(backend: Backend, from_seq: int) -> None:
    # move records >= from_seq one place up (two steps: unique keys are checked per row)
    backend.execute("UPDATE {records} SET seq = -(seq + 1) WHERE seq >= %s", (from_seq,))
    backend.execute("UPDATE {records} SET seq = -seq WHERE seq < 0")


def test_detects_inserted_forged_record(backend: Backend) -> None:
    store = backend.open()
    fill(store, 20)
    prev = store.get(9)
    assert prev is not None
    forged = ev(999, username="mallory").canonical_dict()
    forged_json = canonical_json(forged).decode()
    _shift_up(backend, 10)
    # the forger knows the algorithm and links the record correctly
    digest = record_hash(10, prev.record_hash, forged)
    backend.execute(INSERT_RECORD,
                    (10, tparam(backend, forged["time"]), prev.record_hash, digest, forged_json))
    report = verify(store, PUBLIC_KEY)
    assert not report.ok
    assert report.first_bad_seq == 10, report.problem
    assert "inserted" in (report.problem or "")


def test_detects_inserted_record_with_bogus_hash(backend: Backend) -> None:
    store = backend.open()
    fill(store, 5)
    forged = canonical_json(ev(6).canonical_dict()).decode()
    backend.execute(INSERT_RECORD,
                    (6, tparam(backend, json.loads(forged)["time"]), "f" * 64, "e" * 64, forged))
    report = verify(store, PUBLIC_KEY)
    assert report.first_bad_seq == 6


def test_detects_reordered_records(backend: Backend) -> None:
    store = backend.open()
    fill(store, 12)
    backend.execute("UPDATE {records} SET seq = -5 WHERE seq = 5")
    backend.execute("UPDATE {records} SET seq = 5 WHERE seq = 6")
    backend.execute("UPDATE {records} SET seq = 6 WHERE seq = -5")
    report = verify(store, PUBLIC_KEY)
    assert not report.ok
    assert report.first_bad_seq == 5


def test_detects_rewritten_chain_via_checkpoint(backend: Backend) -> None:
    """An attacker who recomputes every hash after a modification is caught by the signed checkpoint."""
    store = backend.open(checkpoint_every=10)
    fill(store, 25)
    records = list(store.iter_records(15))
    prev_hash = records[0].prev_hash
    for rec in records:
        data = dict(rec.event_data)
        if rec.seq == 15:
            data["username"] = "mallory"
        digest = record_hash(rec.seq, prev_hash, data)
        backend.execute("UPDATE {records} SET prev_hash = %s, record_hash = %s, event = %s WHERE seq = %s",
                        (prev_hash, digest, canonical_json(data).decode(), rec.seq))
        prev_hash = digest
    report = verify(store, PUBLIC_KEY)
    assert not report.ok
    assert report.first_bad_seq == 20
    assert "between seq 11 and 20" in (report.problem or "")


def test_detects_forged_checkpoint(backend: Backend) -> None:
    store = backend.open(checkpoint_every=5)
    fill(store, 12)
    backend.execute("UPDATE {checkpoints} SET head_hash = %s WHERE seq = 10", ("a" * 64,))
    report = verify(store, PUBLIC_KEY)
    assert report.first_bad_seq == 10 and "signature" in (report.problem or "")
    # a checkpoint signed by someone else's key is rejected as well
    assert not verify(store, Ed25519PrivateKey.generate().public_key()).ok


def test_detects_truncated_tail_behind_checkpoint(backend: Backend) -> None:
    store = backend.open(checkpoint_every=10)
    fill(store, 25)
    backend.execute("DELETE FROM {records} WHERE seq > 15")
    report = verify(store, PUBLIC_KEY)
    assert not report.ok
    assert report.first_bad_seq == 16
    assert "truncated" in (report.problem or "")


def test_truncation_after_last_checkpoint_is_a_documented_limit(backend: Backend) -> None:
    store = backend.open(checkpoint_every=10)
    fill(store, 25)
    backend.execute("DELETE FROM {records} WHERE seq > 20")
    # records after the last checkpoint (20) are only protected by the next checkpoint
    assert verify(store, PUBLIC_KEY).ok
    # ... which close() writes: after that, truncation is detected
    store2 = backend.open(checkpoint_every=10)
    fill(store2, 3)  # seq 21..23
    store2.checkpoint()
    backend.execute("DELETE FROM {records} WHERE seq > 21")
    assert verify(store, PUBLIC_KEY).first_bad_seq == 22


def test_all_records_deleted_is_detected(backend: Backend) -> None:
    store = backend.open(checkpoint_every=5)
    fill(store, 7)
    backend.execute("DELETE FROM {records}")
    report = verify(store, PUBLIC_KEY)
    assert not report.ok and report.first_bad_seq == 1


def test_checkpoint_by_time_and_on_close(backend: Backend) -> None:
    store = backend.open(checkpoint_every=1000, checkpoint_interval_seconds=0.0)
    fill(store, 3)
    assert [cp.seq for cp in store.iter_checkpoints()] == [1, 2, 3]
    store2 = backend.open(checkpoint_every=1000, checkpoint_interval_seconds=3600, checkpoint_on_close=True)
    fill(store2, 2)
    assert [cp.seq for cp in store2.iter_checkpoints()] == [1, 2, 3]
    store2.close()
    assert [cp.seq for cp in store.iter_checkpoints()] == [1, 2, 3, 5]
    assert verify(store, PUBLIC_KEY).ok


def test_verify_progress_and_from_seq(backend: Backend) -> None:
    store = backend.open(checkpoint_every=10)
    fill(store, 25)
    calls: list[tuple[int, int]] = []
    report = verify(store, PUBLIC_KEY, from_seq=11, progress=lambda n, s: calls.append((n, s)))
    assert report.ok and report.records_checked == 15 and report.first_seq == 11
    assert calls[-1] == (15, 25)
    backend.execute("UPDATE {records} SET event = replace(event, 'anna', 'eve') WHERE seq = 3")
    assert verify(store, PUBLIC_KEY, from_seq=11).ok  # not looked at
    assert verify(store, PUBLIC_KEY).first_bad_seq == 3


# --- concurrency ---------------------------------------------------------------------------------------

def test_concurrent_threads_do_not_fork_the_chain(backend: Backend) -> None:
    shared = backend.open(checkpoint_every=17)
    own_stores = [backend.open(checkpoint_every=17) for _ in range(4)]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        store = shared if t < 4 else own_stores[t - 4]
        try:
            for i in range(25):
                store.append(ev(t * 1000 + i, request_id=f"t{t}-{i}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    seqs = [r.seq for r in shared.iter_records()]
    assert seqs == list(range(1, 201))
    assert len({r.event.request_id for r in shared.iter_records()}) == 200
    report = verify(shared, PUBLIC_KEY)
    assert report.ok, report.problem
    assert report.records_checked == 200
    assert report.checkpoints_checked == 200 // 17


def _append_in_process(url: str, seed: str, prefix: str, n: int) -> None:
    store = open_store(url, seed, checkpoint_every=7, checkpoint_on_close=False)
    try:
        for i in range(n):
            store.append(AuditEvent(request_id=f"{prefix}-{i}", event="query", decision="allow",
                                    username=prefix))
    finally:
        store.close()


def test_concurrent_processes_do_not_fork_the_chain(backend: Backend) -> None:
    store = backend.open(checkpoint_every=7)  # creates the tables
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append_in_process, args=(backend.url, seed_b64(SIGNING_KEY), f"p{i}", 40))
             for i in range(2)]
    for p in procs:
        p.start()
    for i in range(20):
        store.append(ev(i, request_id=f"main-{i}"))
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    assert [r.seq for r in store.iter_records()] == list(range(1, 101))
    report = verify(store, PUBLIC_KEY)
    assert report.ok, report.problem
    assert report.records_checked == 100


# --- fail closed ---------------------------------------------------------------------------------------

def test_append_on_closed_store_raises(backend: Backend) -> None:
    store = backend.open()
    store.append(ev(1))
    store.close()
    with pytest.raises(AuditUnavailable):
        store.append(ev(2))
    with pytest.raises(AuditUnavailable):
        store.head()
    with pytest.raises(AuditUnavailable):
        list(store.iter_records())


def test_append_on_broken_store_raises(backend: Backend) -> None:
    store = backend.open()
    store.append(ev(1))
    backend.execute("DROP TABLE {records}")
    with pytest.raises(AuditUnavailable) as info:
        store.append(ev(2))
    assert info.value.status == 503
    assert "audit_records" not in info.value.detail  # no database text in the detail
    with pytest.raises(AuditUnavailable):
        store.query(AuditFilter())


def test_append_rejected_by_database_raises(backend: Backend) -> None:
    store = backend.open(checkpoint_every=1)
    store.append(ev(1))
    # the database refuses the checkpoint the next append must write: the whole append fails
    if backend.kind == "sqlite":
        backend.execute("CREATE TRIGGER refuse BEFORE INSERT ON {checkpoints} "
                        "BEGIN SELECT RAISE(ABORT, 'no'); END")
    else:
        backend.execute(f'CREATE FUNCTION "{backend.schema}".refuse() RETURNS trigger LANGUAGE plpgsql AS '
                        "$$ BEGIN RAISE EXCEPTION 'no'; END $$")
        backend.execute(f'CREATE TRIGGER refuse BEFORE INSERT ON {{checkpoints}} FOR EACH ROW '
                        f'EXECUTE FUNCTION "{backend.schema}".refuse()')
    with pytest.raises(AuditUnavailable):
        store.append(ev(2))
    # ... and left nothing behind
    assert store.head()[0] == 1


def test_unreachable_postgres_raises() -> None:
    with pytest.raises(AuditUnavailable):
        open_store("postgresql://postgres@127.0.0.1:1/test", SIGNING_KEY, connect_timeout_seconds=2)


def test_unwritable_sqlite_raises(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(AuditUnavailable):
        open_store(f"sqlite:///{blocker}/audit.db", SIGNING_KEY)


# --- SQL normalisation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("sql, forbidden", [
    ("SELECT * FROM einwohner WHERE nachname = 'Müller'", ["Müller"]),
    ("SELECT * FROM einwohner WHERE jahre > 42 AND plz = 65183", ["42", "65183"]),
    ("SELECT * FROM einwohner WHERE id IN (1001, 1002, 1003) OR name IN ('Anna', 'Bernd')",
     ["1001", "1002", "1003", "Anna", "Bernd"]),
    ("SELECT * FROM t WHERE d > now() - INTERVAL '37 days'", ["37"]),
    ("SELECT * FROM t WHERE geb = '1980-03-04'::date AND x = CAST('Schmidt' AS TEXT)", ["1980", "Schmidt"]),
    ("SELECT * FROM t WHERE geb = DATE '1980-03-04'", ["1980"]),
    ("SELECT * FROM t WHERE name LIKE '%Müll%' ESCAPE '!'", ["Müll"]),
    ("SELECT * FROM t WHERE name = 'Müller' -- Kommentar Meier\n", ["Müller", "Meier"]),
    ("SELECT /* Meier */ * FROM t WHERE name = $$Müller$$", ["Müller", "Meier"]),
    ("SELECT * FROM t WHERE name = E'M\\u00fcller' OR n = x'ff00'", ["ller", "ff00"]),
    ("SELECT data->>'vorname' FROM t WHERE data->>'nachname' = 'Weber'", ["vorname", "nachname", "Weber"]),
    ("SELECT * FROM t WHERE a = -12.75e3", ["12.75"]),
    ("SELECT 1; SELECT * FROM t WHERE n = 'Becker'", ["Becker"]),
])
def test_normalise_sql_strips_literals(sql: str, forbidden: list[str]) -> None:
    out = normalise_sql(sql)
    for text in forbidden:
        assert text not in out
    assert "?" in out
    assert normalise_sql(out) == out  # idempotent


def test_normalise_sql_keeps_structure() -> None:
    out = normalise_sql("select nachname, count(*) from einwohner where ortsbezirk = 'Mitte' "
                        "group by nachname having count(*) > 10 limit 5")
    assert out == ("SELECT nachname, COUNT(*) FROM einwohner WHERE ortsbezirk = ? GROUP BY nachname "
                   "HAVING COUNT(*) > ? LIMIT ?")
    assert normalise_sql("SELECT * FROM t WHERE id = $1") == "SELECT * FROM t WHERE id = $1"
    assert normalise_sql("SELECT `x` FROM t WHERE a = 'y'", dialect="mysql") == \
        "SELECT `x` FROM t WHERE a = ?"


@pytest.mark.parametrize("sql", [
    "SELEKT name FROM t WHERE nachname = 'Müller'",
    "SELECT * FROM t WHERE nachname = 'Müller",
    "FOOBAR 'Müller'",
    "SELECT * FROM WHERE 'Müller'",
])
def test_unparseable_sql_is_never_stored_raw(sql: str) -> None:
    out = normalise_sql(sql)
    assert "Müller" not in out
    assert out == unparseable_marker(sql) and is_marker(out)
    assert out.startswith(f"<unparseable SQL: {len(sql)} chars, sha256 ")
    assert normalise_sql(out) == out


def test_normalise_sql_keeps_raw_sql_out_of_the_application_log(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        out = normalise_sql("VACUUM 'Müller'")
    assert is_marker(out)
    assert "Müller" not in caplog.text


def test_event_normalises_sql_given_raw() -> None:
    event = AuditEvent(request_id="r", event="query", decision="deny",
                       sql_normalised="SELECT * FROM einwohner WHERE nachname = 'Müller'",
                       sql_rewritten="SELECT * FROM `einwohner` WHERE `nachname` = 'Müller' LIMIT 1000",
                       rewritten_dialect="mysql")
    assert event.sql_normalised == "SELECT * FROM einwohner WHERE nachname = ?"
    assert event.sql_rewritten == "SELECT * FROM `einwohner` WHERE `nachname` = ? LIMIT ?"
    assert "Müller" not in event.model_dump_json()


def test_append_normalises_an_event_changed_by_model_copy(backend: Backend) -> None:
    store = backend.open()
    event = ev(1).model_copy(update={"sql_normalised": "SELECT * FROM t WHERE nachname = 'Müller'"})
    stored = store.append(event)
    assert stored.event.sql_normalised == "SELECT * FROM t WHERE nachname = ?"
    assert "Müller" not in backend.raw_dump()
    receipt = make_receipt(stored, event, SIGNING_KEY)
    assert receipt["query_hash"] == query_hash("SELECT * FROM t WHERE nachname = ?")
    with pytest.raises(ValueError):
        make_receipt(stored, ev(2), SIGNING_KEY)


def test_default_sqlite_url(tmp_path: Path) -> None:
    url = default_sqlite_url(tmp_path)
    assert url == f"sqlite:///{tmp_path.resolve()}/audit.db"
    store = open_store(url, SIGNING_KEY)
    store.append(ev(1))
    store.close()
    assert (tmp_path / "audit.db").exists()
    reopened = open_store(url, None)
    assert verify(reopened, PUBLIC_KEY).ok and reopened.head()[0] == 1
    assert len(list(reopened.iter_checkpoints())) == 1  # written on close
    reopened.close()


def test_event_from_principal_and_time_is_utc() -> None:
    principal = Principal(subject="s-1", username="anna", office="Amt 12", roles=("analyst", "planner"))
    event = AuditEvent.for_principal(principal, request_id="r", event="datasets", decision="allow",
                                     time=datetime(2024, 5, 1, 12, 0))
    assert event.username == "anna" and event.roles == ["analyst", "planner"]
    assert event.canonical_dict()["time"] == "2024-05-01T12:00:00.000000Z"
    unauth = AuditEvent.for_principal(None, request_id="r", event="login_failed", decision="deny",
                                      client_address="10.1.1.1", error_code="unauthenticated")
    assert unauth.username is None


LEAK = "§LEAK§"
_literal_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
                        min_size=0, max_size=25)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=_literal_text, number=st.integers(min_value=10**7, max_value=10**12),
       where=st.sampled_from(["nachname = {s}", "nachname IN ('a', {s})", "upper(nachname) LIKE {s}",
                              "nachname = {s} AND jahre > {n}", "{s} = nachname OR id = {n}"]))
def test_random_literal_never_appears_in_store(backend: Backend, text: str, number: int, where: str) -> None:
    if not backend.stores:
        backend.open()
    store = backend.stores[0]
    literal = LEAK + text
    quoted = "'" + literal.replace("'", "''") + "'"
    sql = "SELECT vorname FROM einwohner WHERE " + where.format(s=quoted, n=number)
    event = AuditEvent(request_id=str(uuid.uuid4()), event="query", decision="allow",
                       **sql_fields(sql, rewritten_sql=sql + " LIMIT 10", key=FERNET_KEY))
    stored = store.append(event)
    dump = backend.raw_dump()
    for form in (literal, json.dumps(literal)[1:-1], json.dumps(literal, ensure_ascii=False)[1:-1]):
        assert form not in dump
    loaded = store.get(stored.seq)
    assert loaded is not None
    for value in (loaded.event.sql_normalised, loaded.event.sql_rewritten):
        assert value is not None and LEAK not in value and str(number) not in value
    assert decrypt_original(loaded, FERNET_KEY, reason="hypothesis test") == sql


# --- encrypted original SQL ----------------------------------------------------------------------------

def test_encrypted_original_decrypts_and_is_not_plaintext(backend: Backend) -> None:
    store = backend.open()
    original = "SELECT vorname FROM einwohner WHERE nachname = 'Müller' AND geburtsjahr = 1961"
    event = ev(1, **sql_fields(original, key=FERNET_KEY))
    stored = store.append(event)
    assert event.sql_original_encrypted and "Müller" not in event.sql_original_encrypted
    dump = backend.raw_dump()
    assert "Müller" not in dump and "nachname = 'M" not in dump
    assert "= ?" in dump
    loaded = store.get(stored.seq)
    assert loaded is not None
    assert decrypt_original(loaded, FERNET_KEY, reason="DSB-Anfrage 2024-17") == original
    with pytest.raises(ValueError):
        decrypt_original(loaded, FERNET_KEY, reason="  ")
    with pytest.raises(DecryptionFailed):
        decrypt_original(loaded, Fernet.generate_key(), reason="wrong key")
    assert verify(store, PUBLIC_KEY).ok


# --- receipts ------------------------------------------------------------------------------------------

def test_receipts(backend: Backend) -> None:
    store = backend.open()
    fill(store, 3)
    event = ev(4, sql_normalised="SELECT count(*) FROM einwohner WHERE plz = '65183'")
    stored = store.append(event)
    receipt = make_receipt(stored, event, SIGNING_KEY)
    assert receipt["seq"] == 4 and receipt["audit_record_hash"] == stored.record_hash
    assert receipt["query_hash"] == query_hash("SELECT COUNT(*) FROM einwohner WHERE plz = ?")
    assert receipt["key_id"] == key_id(PUBLIC_KEY)
    assert "=" not in receipt["signature"]
    assert verify_receipt(receipt, PUBLIC_KEY) == (True, "ok")
    assert verify_receipt(json.loads(json.dumps(receipt)), PUBLIC_KEY, store) == (True, "ok")

    for name, value in [("decision", "deny"), ("seq", 3), ("policy_version", "v2"), ("request_id", "x"),
                        ("audit_record_hash", "0" * 64), ("time", "2030-01-01T00:00:00.000000Z")]:
        forged = dict(receipt, **{name: value})
        ok, reason = verify_receipt(forged, PUBLIC_KEY)
        assert not ok and "signature" in reason
    ok, _ = verify_receipt(receipt, Ed25519PrivateKey.generate().public_key())
    assert not ok
    ok, _ = verify_receipt({k: v for k, v in receipt.items() if k != "signature"}, PUBLIC_KEY)
    assert not ok

    # the record behind the receipt was changed in the store
    backend.execute("UPDATE {records} SET record_hash = %s WHERE seq = 4", ("b" * 64,))
    ok, reason = verify_receipt(receipt, PUBLIC_KEY, store)
    assert not ok and "hash" in reason
    backend.execute("DELETE FROM {records} WHERE seq = 4")
    assert not verify_receipt(receipt, PUBLIC_KEY, store)[0]


# --- retention -----------------------------------------------------------------------------------------

def test_prune_keeps_verification_green(backend: Backend) -> None:
    store = backend.open(checkpoint_every=7)
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    for i in range(30):
        store.append(ev(i, time=t0 + timedelta(days=i)))
    assert prune(store, t0 + timedelta(days=10), SIGNING_KEY) == 10
    report = verify(store, PUBLIC_KEY)
    assert report.ok, report.problem
    assert report.first_seq == 11 and report.records_checked == 20
    assert next(r.seq for r in store.iter_records()) == 11
    # nothing more to prune
    assert prune(store, t0 + timedelta(days=10), SIGNING_KEY) == 0
    # the chain continues
    store.append(ev(100))
    assert verify(store, PUBLIC_KEY).ok
    # prune again
    assert prune(store, t0 + timedelta(days=20), SIGNING_KEY) == 10
    assert verify(store, PUBLIC_KEY).ok
    # deleting the first kept record after pruning is still detected
    backend.execute("DELETE FROM {records} WHERE seq = 21")
    report = verify(store, PUBLIC_KEY)
    assert not report.ok and report.first_bad_seq == 21


def test_prune_everything_then_continue(backend: Backend) -> None:
    store = backend.open(checkpoint_every=4)
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    for i in range(10):
        store.append(ev(i, time=t0))
    head = store.head()
    assert prune(store, t0 + timedelta(days=1), SIGNING_KEY) == 10
    assert store.head() == head
    assert verify(store, PUBLIC_KEY).ok
    rec = store.append(ev(11))
    assert rec.seq == 11 and rec.prev_hash == head[1]
    assert verify(store, PUBLIC_KEY).ok


def test_prune_refuses_a_damaged_chain(backend: Backend) -> None:
    store = backend.open()
    t0 = datetime(2023, 1, 1, tzinfo=UTC)
    for i in range(10):
        store.append(ev(i, time=t0 + timedelta(days=i)))
    backend.execute("UPDATE {records} SET event = replace(event, 'anna', 'eve') WHERE seq = 2")
    with pytest.raises(AuditUnavailable):
        prune(store, t0 + timedelta(days=5), SIGNING_KEY)
    assert store.get(1) is not None


def test_forged_anchor_is_rejected(backend: Backend) -> None:
    store = backend.open()
    fill(store, 10)
    rec = store.get(6)
    assert rec is not None
    backend.execute("DELETE FROM {records} WHERE seq < 6")
    backend.execute("INSERT INTO {checkpoints} (seq, kind, head_hash, time, key_id, signature) "
                    "VALUES (6, 'anchor', %s, %s, %s, %s)",
                    (rec.prev_hash, tparam(backend, "2024-01-01T00:00:00Z"), key_id(PUBLIC_KEY), "AAAA"))
    report = verify(store, PUBLIC_KEY)
    assert not report.ok and report.first_bad_seq == 1


# --- keys ----------------------------------------------------------------------------------------------

def test_load_or_create_keys(tmp_path: Path) -> None:
    keys = load_or_create_keys(tmp_path / "keys")
    files = sorted(p.name for p in (tmp_path / "keys").iterdir())
    assert files == ["audit-signing.key", "audit-signing.pub", "audit-sql.key"]
    for name in ("audit-signing.key", "audit-sql.key"):
        mode = stat.S_IMODE(os.stat(tmp_path / "keys" / name).st_mode)
        assert mode == 0o600
    again = load_or_create_keys(tmp_path / "keys")
    assert again.key_id == keys.key_id and again.fernet_key == keys.fernet_key
    assert len(keys.key_id) == 16 and int(keys.key_id, 16) >= 0
    assert load_public_key(tmp_path / "keys" / "audit-signing.pub").public_bytes_raw() == \
        keys.public_key.public_bytes_raw()


def test_key_loading_variants(tmp_path: Path) -> None:
    seed = seed_b64(SIGNING_KEY)
    raw = base64.b64decode(seed)
    pem = SIGNING_KEY.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    pem_path = tmp_path / "k.pem"
    pem_path.write_bytes(pem)
    for value in (seed, raw, pem, pem.decode(), pem_path, str(pem_path), SIGNING_KEY):
        assert key_id(load_signing_key(value)) == key_id(PUBLIC_KEY)
    pub_raw = PUBLIC_KEY.public_bytes_raw()
    assert key_id(load_public_key(base64.b64encode(pub_raw).decode())) == key_id(PUBLIC_KEY)
    assert key_id(load_public_key(SIGNING_KEY)) == key_id(PUBLIC_KEY)
    assert load_fernet_key(FERNET_KEY.decode()) == FERNET_KEY
    with pytest.raises(ValueError):
        load_signing_key("not a key")
    with pytest.raises(ValueError):
        load_fernet_key("short")
