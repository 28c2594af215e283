"""Masked vs unmasked scan of 1,000,000 ``einwohner`` rows on DuckDB, plus the Arrow-to-output cost.

Masked twice: with the pseudonyms hashed in SQL, and as the gateway runs it by default, reading the
pseudonym replica (pseudonyms computed ahead once per source version; gateway.sql.pseudonym_replica);
the replica's build time is printed too.

The masked query is what the rewriter puts in the derived table for anna's grant (statistik): three
pseudonyms, one generalisation, four redactions, steuer_id left out. The unmasked query selects the
same columns raw. Both run on the same DuckDB file in the same process; figures are medians of
``--repeat`` runs and ratios are within this run. Also timed: the keyed hash alone in several forms
(why the pseudonym costs what it costs) and writing the masked result as CSV, JSON, Arrow IPC, Parquet.

    python bench/masking_speed.py [--rows 1000000] [--data DIR] [--repeat 7]
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import orjson
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import yaml
from sqlglot import exp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.catalog import load_catalog  # noqa: E402
from gateway.demo.data import generate_demo_database  # noqa: E402
from gateway.identity.principal import Principal  # noqa: E402
from gateway.policy.decision import ColumnRule  # noqa: E402
from gateway.policy.embedded import EmbeddedPolicyEngine  # noqa: E402
from gateway.policy.engine import load_bundle  # noqa: E402
from gateway.policy.inputs import build_input  # noqa: E402
from gateway.sql.masks import KeyRing, mask_expression  # noqa: E402
from gateway.sql.pseudonym_replica import REPLICA_ALIAS, build_replicas, specs_from_policy_data  # noqa: E402
from gateway.sql.rewrite import derived_table_sql  # noqa: E402

KEYS = KeyRing(master=bytes(range(32)), key_id="bench")


def median_s(fn: Callable[[], object], repeat: int) -> float:
    fn()  # warm-up (file cache, plan)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def anna_queries() -> tuple[str, str]:
    catalog = load_catalog(ROOT / "policies" / "catalog.yaml")
    grants = yaml.safe_load((ROOT / "policies" / "data" / "grants.yaml").read_text(encoding="utf-8"))
    grant = next(g for g in grants["grants"] if g["id"] == "einwohner.statistik")
    masked, raw = [], []
    for name, spec in grant["columns"].items():
        rule = ColumnRule(**spec)
        if rule.op == "deny":
            continue
        column = exp.column(name, table="s", quoted=True)
        column_type = catalog.datasets["einwohner"].columns[name].type
        expression = mask_expression(column, rule, column_type=column_type, dialect="duckdb", keys=KEYS,
                                     purpose="statistik")
        masked.append(exp.alias_(expression, name, quoted=True).sql("duckdb"))
        raw.append(column.sql("duckdb"))
    return (f"SELECT {', '.join(raw)} FROM einwohner AS s", f"SELECT {', '.join(masked)} FROM einwohner AS s")


def replica_query(database: Path, data_dir: Path) -> tuple[str, float]:
    """anna's derived table as the rewriter writes it when the pseudonym replica is in force, and the
    time the replica took to build (gateway.sql.pseudonym_replica)."""
    catalog = load_catalog(ROOT / "policies" / "catalog.yaml")
    connector = catalog.datasets["einwohner"].connector
    bundle = load_bundle(ROOT / "policies", catalog)
    started = time.perf_counter()
    replicas = build_replicas(catalog, data_dir, KEYS, specs_from_policy_data(bundle.data, catalog),
                              source_files={connector: database}, force=True)
    build_s = time.perf_counter() - started
    (data_dir / "pseudonyms" / f"{connector}.duckdb").replace(data_dir / "pseudonyms" / "bench.duckdb")
    anna = Principal(subject="anna", username="anna", office="Amt für Statistik und Stadtforschung",
                     roles=("analyst",), purposes=("statistik",), clearance="vertraulich")
    decision = EmbeddedPolicyEngine(bundle).decide(
        build_input(anna, "statistik", ["einwohner"], client_address="127.0.0.1"))
    sql = derived_table_sql("einwohner", decision, catalog, dialect="duckdb", keys=KEYS, purpose="statistik",
                            replicas=replicas)
    if REPLICA_ALIAS not in sql:
        raise SystemExit("the rewriter did not use the replica")
    return sql, build_s


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--data", type=Path, default=None, help="directory to keep the generated database in")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.data or Path(tmp)
        database = data_dir / f"einwohner_{args.rows}.duckdb"
        if not database.exists():
            started = time.perf_counter()
            generate_demo_database(database, rows=args.rows)
            print(f"generated {args.rows:,} residents in {time.perf_counter() - started:.1f} s")
        con = duckdb.connect(str(database), read_only=True)
        threads = con.sql("SELECT current_setting('threads') AS t").fetchall()[0][0]
        print(f"DuckDB {duckdb.__version__}, threads={threads}, rows={args.rows:,}")
        unmasked_sql, masked_sql = anna_queries()

        def run(sql: str) -> Callable[[], pa.Table]:
            return lambda: con.sql(sql).to_arrow_table()

        unmasked = median_s(run(unmasked_sql), args.repeat)
        masked = median_s(run(masked_sql), args.repeat)
        replica_sql, build_s = replica_query(database, data_dir)
        con.close()
        con = duckdb.connect(str(database), read_only=True)
        con.execute(f"ATTACH '{data_dir / 'pseudonyms' / 'bench.duckdb'}' AS {REPLICA_ALIAS} (READ_ONLY)")
        unmasked_again = median_s(run(unmasked_sql), args.repeat)
        from_replica = median_s(run(replica_sql), args.repeat)
        print("\nscan to Arrow (median)")
        print(f"  unmasked                 {unmasked * 1000:8.1f} ms")
        print(f"  masked, hashed in SQL    {masked * 1000:8.1f} ms   ratio {masked / unmasked:.2f}x")
        print(f"  unmasked (again)         {unmasked_again * 1000:8.1f} ms")
        print(f"  masked, pseudonym replica{from_replica * 1000:8.1f} ms   ratio "
              f"{from_replica / unmasked_again:.2f}x (target 1.3x; the gateway's default for DuckDB)")
        print(f"  replica build (once per source version and key): {build_s:.2f} s")

        print("\nthe keyed hash alone, over the unique id column (median)")
        key128, key256 = "0" * 32 + "|", "0" * 64 + "|"
        variants = {
            "raw id": "id",
            "CAST(id AS VARCHAR)": "CAST(id AS VARCHAR)",
            "sha256, 256-bit key (before)": f"'p_' || left(sha256('{key256}' || CAST(id AS VARCHAR)), 16)",
            "sha256, 128-bit key (now)": f"'p_' || left(sha256('{key128}' || CAST(id AS VARCHAR)), 16)",
            "md5, 128-bit key": f"'p_' || left(md5('{key128}' || CAST(id AS VARCHAR)), 16)",
            "sha1, 128-bit key": f"'p_' || left(sha1('{key128}' || CAST(id AS VARCHAR)), 16)",
            "hash() (not keyed, not portable)": f"hash('{key128}' || CAST(id AS VARCHAR))",
        }
        base = None
        for label, expression in variants.items():
            seconds = median_s(run(f"SELECT {expression} FROM einwohner"), args.repeat)
            base = base or seconds
            per_value = seconds / args.rows * 1e9
            print(f"  {label:34s} {seconds * 1000:8.1f} ms  {per_value:6.0f} ns/value")

        table = con.sql(masked_sql).to_arrow_table()
        print(f"\nArrow to output, masked result ({table.num_rows:,} rows, {table.nbytes / 1e6:.0f} MB in Arrow)")

        def to_csv() -> int:
            sink = io.BytesIO()
            pacsv.write_csv(table, sink)
            return sink.tell()

        def to_ipc() -> int:
            sink = pa.BufferOutputStream()
            with pa.ipc.new_stream(sink, table.schema) as writer:
                writer.write_table(table)
            return int(sink.getvalue().size)

        def to_parquet() -> int:
            sink = io.BytesIO()
            pq.write_table(table, sink)
            return sink.tell()

        def to_json() -> int:
            return len(orjson.dumps(table.to_pylist(), default=str))

        for label, fn in (("Arrow IPC", to_ipc), ("Parquet", to_parquet), ("CSV", to_csv), ("JSON (rows)", to_json)):
            size = fn()
            seconds = median_s(fn, max(1, args.repeat // 3))
            share = seconds / masked
            print(f"  {label:12s} {seconds * 1000:8.1f} ms  {size / 1e6:7.1f} MB  ({share:.2f}x the masked scan)")
        con.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
