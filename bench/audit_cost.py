"""Audit append cost per request, on the embedded SQLite store and on PostgreSQL, and its share of the
gateway's overhead for a point query (bench/overhead.py measures that overhead end to end).

    python bench/audit_cost.py [--records 500] [--overhead-ms 31]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg

from gateway.audit import AuditEvent, load_or_create_keys, open_store


def event() -> AuditEvent:
    return AuditEvent(request_id=uuid.uuid4().hex, event="query", decision="allow", username="anna",
                      office="Amt für Statistik und Stadtforschung", roles=["analyst"], purpose="statistik",
                      datasets=["einwohner"], columns=["einwohner.vorname", "einwohner.stadtteil"],
                      rules=["einwohner.statistik", "einwohner.pseudonymise_names"],
                      masks={"einwohner.vorname": "pseudonymise"}, policy_version="sha256:bench",
                      sql_normalised="SELECT vorname, stadtteil FROM einwohner WHERE plz = 'x'",
                      rows_returned=10, bytes_returned=1000, duration_ms=5.0, connector="demo")


def measure(url: str, keys_dir: Path, records: int) -> float:
    keys = load_or_create_keys(keys_dir)
    store = open_store(url, keys.signing_key)
    try:
        samples = []
        for _ in range(records):
            item = event()
            started = time.perf_counter()
            store.append(item)
            samples.append((time.perf_counter() - started) * 1000)
        return statistics.median(samples)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--overhead-ms", type=float, default=31.4,
                        help="gateway overhead of a point query from bench/overhead.py")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        keys_dir = Path(tmp) / "keys"
        sqlite_ms = measure(f"sqlite:///{tmp}/audit.sqlite", keys_dir, args.records)
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        dsn = "postgresql://postgres@127.0.0.1:5432/test"
        try:
            pg_ms = measure(f"{dsn}?schema={schema}", keys_dir, args.records)
        finally:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    print(f"audit append, median of {args.records} records (normalise SQL, hash chain, commit):")
    for label, value in (("SQLite (embedded)", sqlite_ms), ("PostgreSQL", pg_ms)):
        print(f"  {label:<18} {value:7.2f} ms  = {value / args.overhead_ms:5.1%} of a {args.overhead_ms} ms "
              "point-query overhead")


if __name__ == "__main__":
    main()
