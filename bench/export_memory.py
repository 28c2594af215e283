"""Peak memory of a 1,000,000-row masked export through the real pipeline (Gateway.run_query).

anna's grant (three pseudonyms, a generalisation, four redactions) on a generated ``einwohner`` table,
with the grant's row cap lifted in a temporary copy of the policy so the whole table is exported. The
current pipeline collects the whole Arrow table before masking and answering; the figure to beat is
500 MB peak RSS. Printed: resident set before the query, peak after it, Arrow's own allocation peak,
and the same after encoding the answer as CSV (what the API would send).

    python bench/export_memory.py [--rows 1000000] [--data DIR]

With ``--engine postgres`` the same table is loaded into a scratch schema of a PostgreSQL database
(``--pg-dsn``, default the local test database; the schema is dropped afterwards) and exported through
the streaming path (``Gateway.run_query_stream``, the connector's server-side cursor), encoding each
batch as CSV as the API does; the figure is the peak RSS while the export streams.

    python bench/export_memory.py --engine postgres [--rows 1000000] [--pg-dsn postgresql://...]
"""

from __future__ import annotations

import argparse
import gc
import io
import resource
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from connectors.duckdb import DuckDBConnector  # noqa: E402
from connectors.postgres import PostgresConnector  # noqa: E402
from gateway.audit import load_or_create_keys, open_store  # noqa: E402
from gateway.catalog import load_catalog  # noqa: E402
from gateway.demo.data import generate_demo_database  # noqa: E402
from gateway.identity.principal import Principal  # noqa: E402
from gateway.pipeline import Gateway, QueryRequest, RequestContext  # noqa: E402
from gateway.policy.embedded import EmbeddedPolicyEngine  # noqa: E402
from gateway.policy.engine import load_bundle  # noqa: E402
from gateway.sql.masks import KeyRing  # noqa: E402

#: a client address inside the city's network (the policy's residency rule checks it)
INTERNAL = "127.0.0.1"

ANNA = Principal(subject="anna-sub", username="anna", office="Amt für Statistik und Stadtforschung",
                 roles=("analyst",), purposes=("statistik",), clearance="vertraulich")


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Sampler(threading.Thread):
    """RSS every 5 ms: the peak of one phase (ru_maxrss only ever grows)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak = 0.0
        self.running = True

    def run(self) -> None:
        while self.running:
            self.peak = max(self.peak, rss_mb())
            time.sleep(0.005)

    def stop(self) -> float:
        self.running = False
        self.join()
        return max(self.peak, rss_mb())


def _bench_gateway(catalog: Any, policies: Path, connector: Any, keys: Any, work: Path, rows: int) -> Gateway:
    """A gateway for anna's export: the bench policy, one connector, a scratch audit store, no scanner."""
    return Gateway(
        catalog=catalog,
        policy=EmbeddedPolicyEngine(load_bundle(policies, catalog)),
        connectors={"demo": connector},
        audit=open_store(f"sqlite:///{work / 'audit.sqlite'}", keys.signing_key),
        audit_keys=keys,
        key_ring=KeyRing(master=bytes(range(32)), key_id="bench"),
        scanner=lambda values: list(values),
        max_rows_cap=rows + 10,
        statement_timeout_s=600,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=None)
    parser.add_argument("--engine", choices=("duckdb", "postgres"), default="duckdb")
    parser.add_argument("--pg-dsn", default="postgresql://postgres@127.0.0.1:5432/test")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        data_dir = args.data or work
        database = data_dir / f"einwohner_{args.rows}.duckdb"
        if not database.exists():
            generate_demo_database(database, rows=args.rows)
        policies = work / "policies"
        shutil.copytree(ROOT / "policies", policies)
        grants_path = policies / "data" / "grants.yaml"
        grants = yaml.safe_load(grants_path.read_text(encoding="utf-8"))
        for grant in grants["grants"]:
            if grant["id"] == "einwohner.statistik":
                grant.pop("max_rows", None)
        grants_path.write_text(yaml.safe_dump(grants, allow_unicode=True), encoding="utf-8")
        catalog = load_catalog(policies / "catalog.yaml")
        keys = load_or_create_keys(work / "keys")
        if args.engine == "postgres":
            return _postgres_export(args, database, policies, catalog, work)
        gateway = _bench_gateway(catalog, policies, DuckDBConnector(database), keys, work, args.rows)
        request = QueryRequest(sql="SELECT * FROM einwohner", purpose="statistik", dialect="postgres")
        baseline = rss_mb()
        pa_before = pa.total_allocated_bytes()
        sampler = Sampler()
        sampler.start()
        started = time.perf_counter()
        outcome = gateway.run_query(ANNA, request, RequestContext(client_address=INTERNAL))
        query_s = time.perf_counter() - started
        query_peak = sampler.stop()
        table = outcome.table
        print(f"rows {table.num_rows:,}, columns {table.num_columns}, Arrow table {table.nbytes / 1e6:.0f} MB, "
              f"run_query {query_s:.1f} s")
        print(f"RSS before the query       {baseline:8.0f} MB")
        print(f"peak RSS during run_query  {query_peak:8.0f} MB  (+{query_peak - baseline:.0f} MB)")
        print(f"Arrow allocated after      {(pa.total_allocated_bytes() - pa_before) / 2**20:8.0f} MiB")
        sampler = Sampler()
        sampler.start()
        sink = io.BytesIO()
        pacsv.write_csv(table, sink)
        csv_peak = sampler.stop()
        print(f"peak RSS with CSV encoded  {csv_peak:8.0f} MB  (CSV {sink.tell() / 1e6:.0f} MB)")
        print(f"process peak (ru_maxrss)   {peak_rss_mb():8.0f} MB   target < 500 MB: "
              f"{'met' if peak_rss_mb() < 500 else 'NOT met'}")
        gateway.audit.close()
    return 0


def _postgres_export(args: argparse.Namespace, database: Path, policies: Path, catalog: Any, work: Path) -> int:
    import psycopg

    from gateway.demo.load import load_into

    schema = f"gw_bench_{uuid.uuid4().hex[:8]}"
    started = time.perf_counter()
    load_into(args.pg_dsn, database, schema=schema)
    print(f"loaded {args.rows:,} rows into PostgreSQL schema {schema} in {time.perf_counter() - started:.0f} s")
    connector = PostgresConnector(args.pg_dsn, schema=schema, pool_max=1)
    gateway = _bench_gateway(catalog, policies, connector, load_or_create_keys(work / "keys"), work, args.rows)
    try:
        request = QueryRequest(sql="SELECT * FROM einwohner", purpose="statistik", dialect="postgres")
        gc.collect()
        baseline = rss_mb()
        sampler = Sampler()
        sampler.start()
        started = time.perf_counter()
        stream = gateway.run_query_stream(ANNA, request, RequestContext(client_address=INTERNAL))
        rows = batches = csv_bytes = 0
        for batch in stream.batches:
            sink = io.BytesIO()
            pacsv.write_csv(pa.Table.from_batches([batch]), sink)
            csv_bytes += sink.tell()
            rows += batch.num_rows
            batches += 1
        export_s = time.perf_counter() - started
        peak = sampler.stop()
        print(f"rows {rows:,} in {batches} batches, CSV {csv_bytes / 1e6:.0f} MB, run_query_stream {export_s:.1f} s")
        print(f"RSS before the export      {baseline:8.0f} MB")
        print(f"peak RSS while streaming   {peak:8.0f} MB  (+{peak - baseline:.0f} MB)")
        print(f"process peak (ru_maxrss)   {peak_rss_mb():8.0f} MB   (includes generating the data)")
    finally:
        gateway.audit.close()
        connector.close()
        with psycopg.connect(args.pg_dsn, autocommit=True) as admin:
            admin.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
    return 0


if __name__ == "__main__":
    sys.exit(main())
