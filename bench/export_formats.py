"""Rows per second and peak memory of a masked export per answer format (issue: connectors/formats).

The reference scenario with ``--rows`` residents is generated and served by ``--engine``: the DuckDB file
itself, or a fresh PostgreSQL / MariaDB database it is copied into (``gateway.demo.load.load_into``,
dropped afterwards). For each format (JSON, CSV, Arrow IPC, Parquet) a fresh ``gateway serve`` process
answers ``SELECT * FROM einwohner`` for anna (reference masks) over real HTTP. The client spools the body
to a file while timing; afterwards it parses the file and counts the rows it really received (the rate is
computed from that count). The server's peak resident memory (VmHWM) is read from /proc.

The baseline is the same, unmasked export straight from the database into the same format, in a fresh
process, measured the same way: DuckDB's Arrow reader, a psycopg server-side cursor or a pymysql
unbuffered cursor (SSCursor), in batches of the size the gateway's connectors read (65,536 rows from
DuckDB, 10,000 from PostgreSQL and MariaDB), written to /dev/null. Its JSON is the gateway's
JSON document (``{"columns": [...], "rows": [[...], ...], "row_count": n, "truncated": false}``, written
with the gateway's serialiser a few thousand rows at a time), so both sides produce the same shape. The
baseline does no HTTP: the gap includes policy, rewriting, masking, audit and the HTTP transfer.

    python bench/export_formats.py [--rows 1000000] [--formats json,csv,arrow,parquet]
                                   [--engine duckdb|postgres|mariadb]
"""

from __future__ import annotations

import argparse
import csv
import json
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

ACCEPT = {"json": "application/json", "csv": "text/csv", "arrow": "application/vnd.apache.arrow.stream",
          "parquet": "application/vnd.apache.parquet"}
ENGINES = ("duckdb", "postgres", "mariadb")
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA_SERVER = "mysql://root@127.0.0.1:3306"
SQL = "SELECT * FROM einwohner"
#: rows per batch, as the gateway's connectors read them (DuckDB 65,536; PostgreSQL/MariaDB `batch_rows`)
BATCH_ROWS = {"duckdb": 65_536, "postgres": 10_000, "mariadb": 10_000}
#: rows turned into Python objects at a time for JSON (as the gateway's JSON writer does)
JSON_CHUNK_ROWS = 4096


# --------------------------------------------------------------------------------------------------
# The baseline (runs in a child process: `export_formats.py --baseline ENGINE SOURCE FORMAT`)
# --------------------------------------------------------------------------------------------------


def _duckdb_batches(path: str) -> Iterator[Any]:
    import duckdb

    con = duckdb.connect(path, read_only=True)
    con.execute("SET enable_progress_bar = false")
    yield from con.sql(SQL).to_arrow_reader(BATCH_ROWS["duckdb"])


def _rows_to_batches(names: list[str], chunks: Iterator[list[tuple[Any, ...]]]) -> Iterator[Any]:
    """Arrow batches from row tuples; the types inferred from the first batch are kept for the rest."""
    import pyarrow as pa

    schema: pa.Schema | None = None
    for rows in chunks:
        columns = list(zip(*rows, strict=True))
        if schema is None:
            batch = pa.record_batch([pa.array(c) for c in columns], names=names)
            schema = batch.schema
        else:
            batch = pa.record_batch([pa.array(c, type=t) for c, t in zip(columns, schema.types, strict=True)],
                                    schema=schema)
        yield batch


def _postgres_batches(dsn: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(dsn) as conn, conn.cursor(name="bench_export") as cur:
        cur.execute(SQL)
        first = cur.fetchmany(BATCH_ROWS["postgres"])
        names = [d.name for d in cur.description or ()]

        def chunks() -> Iterator[list[tuple[Any, ...]]]:
            rows = first
            while rows:
                yield rows
                rows = cur.fetchmany(BATCH_ROWS["postgres"])

        yield from _rows_to_batches(names, chunks())


def _mariadb_batches(dsn: str) -> Iterator[Any]:
    import pymysql
    import pymysql.cursors

    from gateway.demo.load import _parse_mysql_dsn

    target = _parse_mysql_dsn(dsn)
    conn = pymysql.connect(host=target.host, port=target.port, user=target.user, password=target.password,
                           database=target.database, charset="utf8mb4", cursorclass=pymysql.cursors.SSCursor)
    try:
        with conn.cursor() as cur:
            cur.execute(SQL)
            names = [d[0] for d in cur.description or ()]

            def chunks() -> Iterator[list[tuple[Any, ...]]]:
                while rows := cur.fetchmany(BATCH_ROWS["mariadb"]):
                    yield list(rows)

            yield from _rows_to_batches(names, chunks())
    finally:
        conn.close()


def _write_json(sink: IO[bytes], batches: Iterator[Any]) -> int:
    """The gateway's JSON document (same keys, same serialiser), written batch by batch."""
    import pyarrow as pa

    from gateway.api.serialize import dumps, rows_of

    rows = 0
    for batch in batches:
        if rows == 0:
            columns = [{"name": f.name, "type": str(f.type), "masking": "none"} for f in batch.schema]
            sink.write(b'{"columns":' + dumps(columns) + b',"rows":[')
        for offset in range(0, batch.num_rows, JSON_CHUNK_ROWS):
            chunk = rows_of(pa.Table.from_batches([batch.slice(offset, JSON_CHUNK_ROWS)]))
            sink.write((b"," if rows else b"") + dumps(chunk)[1:-1])
            rows += len(chunk)
    sink.write(b"]," + dumps({"row_count": rows, "truncated": False})[1:])
    return rows


def _write_arrow_format(sink: IO[bytes], fmt: str, batches: Iterator[Any]) -> int:
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    rows = 0
    writer: Any = None
    for batch in batches:
        if writer is None:
            writer = {"csv": pacsv.CSVWriter, "arrow": pa.ipc.new_stream, "parquet": pq.ParquetWriter}[fmt](
                sink, batch.schema)
        writer.write_batch(batch)
        rows += batch.num_rows
    if writer is not None:
        writer.close()
    return rows


def baseline(engine: str, source: str, fmt: str) -> None:
    """Print rows, seconds and peak MB of the unmasked export straight from the database."""
    import importlib

    driver = {"duckdb": "duckdb", "postgres": "psycopg", "mariadb": "gateway.demo.load"}[engine]
    for module in ("pyarrow", "pyarrow.csv", "pyarrow.parquet", "gateway.api.serialize", driver):
        importlib.import_module(module)  # imported before the clock starts, as the server has them loaded
    started = time.perf_counter()
    batches = {"duckdb": _duckdb_batches, "postgres": _postgres_batches, "mariadb": _mariadb_batches}[engine](
        source)
    with open("/dev/null", "wb") as sink:
        rows = _write_json(sink, batches) if fmt == "json" else _write_arrow_format(sink, fmt, batches)
    elapsed = time.perf_counter() - started
    print(rows, elapsed, peak_mb("self"))


# --------------------------------------------------------------------------------------------------
# Counting the rows the gateway really sent
# --------------------------------------------------------------------------------------------------


class _JsonTokens:
    """Reads one JSON value at a time from a large file (the rows of an answer are never all in memory)."""

    def __init__(self, fh: IO[str]) -> None:
        self._fh = fh
        self._buffer = ""
        self._pos = 0
        self._decoder = json.JSONDecoder()

    def _more(self) -> bool:
        chunk = self._fh.read(1 << 20)
        if not chunk:
            return False
        self._buffer = self._buffer[self._pos:] + chunk
        self._pos = 0
        return True

    def expect(self, literal: str) -> None:
        while len(self._buffer) - self._pos < len(literal) and self._more():
            pass
        if not self._buffer.startswith(literal, self._pos):
            raise ValueError(f"expected {literal!r} at {self._buffer[self._pos:self._pos + 40]!r}")
        self._pos += len(literal)

    def peek(self) -> str:
        while self._pos >= len(self._buffer) and self._more():
            pass
        return self._buffer[self._pos:self._pos + 1]

    def value(self) -> Any:
        while True:
            try:
                value, end = self._decoder.raw_decode(self._buffer, self._pos)
            except json.JSONDecodeError:
                if not self._more():
                    raise
                continue
            if end < len(self._buffer) or not self._more():  # a number at the end may continue
                self._pos = end
                return value

    def rest(self) -> str:
        while self._more():
            pass
        return self._buffer[self._pos:]


def _json_rows(path: Path) -> int:
    with path.open(encoding="utf-8") as fh:
        tokens = _JsonTokens(fh)
        tokens.expect('{"columns":')
        width = len(tokens.value())
        tokens.expect(',"rows":[')
        count = 0
        while tokens.peek() != "]":
            if count:
                tokens.expect(",")
            row = tokens.value()
            if not isinstance(row, list) or len(row) != width:
                raise ValueError(f"row {count} is not a list of {width} values")
            count += 1
        tokens.expect("],")
        tail = json.loads("{" + tokens.rest())
    if tail["row_count"] != count:
        raise ValueError(f"the answer says {tail['row_count']} rows but holds {count}")
    return count


def received_rows(fmt: str, path: Path) -> int:
    """Parse the spooled answer and count its rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if fmt == "json":
        return _json_rows(path)
    if fmt == "arrow":
        with pa.OSFile(str(path), "rb") as source:
            return sum(batch.num_rows for batch in pa.ipc.open_stream(source))
    if fmt == "parquet":
        return int(pq.ParquetFile(str(path)).metadata.num_rows)
    with path.open(encoding="utf-8", newline="") as fh:
        return sum(1 for _ in csv.reader(fh)) - 1  # quoted line breaks stay inside their record


# --------------------------------------------------------------------------------------------------
# The gateway side
# --------------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_mb(pid: int | str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
    import httpx

    process = subprocess.Popen([sys.executable, "-m", "gateway.cli.main", "serve", "--config", str(config),
                                "--port", str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit("the gateway did not start")


@contextmanager
def database(engine: str, source: Path) -> Iterator[str]:
    """The DSN (or DuckDB file) the scenario is served from; a loaded database is dropped afterwards."""
    from gateway.demo.load import load_into

    if engine == "duckdb":
        yield str(source)
        return
    name = f"gw_bench_{secrets.token_hex(4)}"
    if engine == "postgres":
        import psycopg

        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{name}" ENCODING UTF8 TEMPLATE template0')
        dsn = PG_ADMIN_DSN.rsplit("/", 1)[0] + f"/{name}"
        try:
            load_into(dsn, source)
            yield dsn
        finally:
            with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return
    import pymysql

    dsn = f"{MARIA_SERVER}/{name}"
    try:
        load_into(dsn, source, schema=name)
        yield dsn
    finally:
        conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", autocommit=True)
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            conn.close()


def write_config(data_dir: Path, engine: str, dsn: str, rows: int, issuer: str) -> Path:
    """The gateway config and a bench copy of the policy: anna's 100,000-row grant raised to ``rows`` (as
    the DPO would configure it for bulk use), the `demo` connector pointed at the engine."""
    import yaml

    policy_dir = data_dir / "policies"
    shutil.copytree(Path(__file__).resolve().parent.parent / "policies", policy_dir)
    grants = policy_dir / "data" / "grants.yaml"
    grants.write_text(grants.read_text().replace("max_rows: 100000", f"max_rows: {rows}"))
    # the reference Rego tests pin the 100,000-row limit; this bench policy deliberately differs
    for test_module in policy_dir.glob("*_test.rego"):
        test_module.unlink()
    if engine != "duckdb":
        dsn_file = data_dir / "demo.dsn"
        dsn_file.write_text(dsn)
        dsn_file.chmod(0o600)
        catalog_path = policy_dir / "catalog.yaml"
        catalog = yaml.safe_load(catalog_path.read_text(encoding="utf-8"))
        catalog["connectors"]["demo"] = {"kind": "postgres" if engine == "postgres" else "mysql",
                                         "dsn_file": str(dsn_file)}
        catalog_path.write_text(yaml.safe_dump(catalog, allow_unicode=True), encoding="utf-8")
    config = data_dir / "gateway.yaml"
    config.write_text(yaml.safe_dump({
        "data_dir": str(data_dir), "max_rows_cap": rows, "identity": {"issuer": issuer},
        "policy_dir": str(policy_dir), "catalog_path": str(policy_dir / "catalog.yaml"),
        "policy_reload_seconds": 0}))
    return config


def export(port: int, token: str, fmt: str, spool: Path) -> float:
    """Seconds to receive the whole answer; the body is written to ``spool``."""
    import httpx

    started = time.perf_counter()
    with spool.open("wb") as out, httpx.stream(
            "POST", f"http://127.0.0.1:{port}/v1/query", timeout=600, json={"sql": SQL, "purpose": "statistik"},
            headers={"Authorization": f"Bearer {token}", "Accept": ACCEPT[fmt]}) as response:
        if response.status_code != 200:
            raise SystemExit(f"{fmt}: {response.status_code} {response.read()[:300]!r}")
        for chunk in response.iter_bytes():
            out.write(chunk)
    return time.perf_counter() - started


def run(args: argparse.Namespace) -> int:
    from gateway.config import load_settings
    from gateway.demo.data import generate_demo_database
    from gateway.demo.oidc_provider import start_provider
    from gateway.runtime import build_runtime

    status = 0
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        print(f"generating {args.rows:,} residents ...", flush=True)
        generate_demo_database(data_dir / "demo.duckdb", rows=args.rows)
        raw = data_dir / "raw.duckdb"  # the baseline's own copy (the gateway holds demo.duckdb open)
        shutil.copyfile(data_dir / "demo.duckdb", raw)
        if args.engine != "duckdb":
            print(f"loading them into {args.engine} ...", flush=True)
        with database(args.engine, data_dir / "demo.duckdb") as dsn:
            provider = start_provider(data_dir)
            try:
                config = write_config(data_dir, args.engine, dsn, args.rows, provider.issuer)
                # keys, the audit store and the pseudonym replica are created once by an in-process runtime
                build_runtime(load_settings(config), create_keys=True, scanner=lambda v: list(v)).close()
                token = provider.token("anna")
                source = str(raw) if args.engine == "duckdb" else dsn
                print(f"engine {args.engine}: gateway (masked, over HTTP) vs. direct (unmasked, no HTTP)")
                print(f"{'format':<9}{'rows':>10}{'body MB':>8}{'gateway rows/s':>16}{'peak MB':>9}"
                      f"{'direct rows/s':>15}{'peak MB':>9}{'direct/gw':>10}")
                for fmt in args.formats.split(","):
                    port = free_port()
                    process = serve(config, port)
                    spool = data_dir / f"answer.{fmt}"
                    try:
                        elapsed = export(port, token, fmt, spool)
                        server_peak = peak_mb(process.pid)
                    finally:
                        process.terminate()
                        process.wait(timeout=30)
                    rows = received_rows(fmt, spool)
                    size_mb = spool.stat().st_size / 1e6
                    spool.unlink()
                    if rows != args.rows:
                        print(f"{fmt}: received {rows:,} rows, expected {args.rows:,}", file=sys.stderr)
                        status = 1
                    out = subprocess.run([sys.executable, __file__, "--baseline", args.engine, source, fmt],
                                         capture_output=True, text=True, check=True).stdout.split()
                    base_rows, base_elapsed, base_peak = int(out[0]), float(out[1]), int(out[2])
                    gw_rate = rows / elapsed
                    base_rate = base_rows / base_elapsed
                    print(f"{fmt:<9}{rows:>10,}{size_mb:>8.0f}{gw_rate:>16,.0f}{server_peak:>9}{base_rate:>15,.0f}"
                          f"{base_peak:>9}{base_rate / gw_rate:>9.1f}x", flush=True)
            finally:
                provider.stop()
    return status


def main() -> int:
    if len(sys.argv) == 5 and sys.argv[1] == "--baseline":
        baseline(sys.argv[2], sys.argv[3], sys.argv[4])
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(ACCEPT), help="comma-separated subset of " + ", ".join(ACCEPT))
    parser.add_argument("--engine", choices=ENGINES, default="duckdb",
                        help="where the scenario is served from (PostgreSQL/MariaDB: the local servers)")
    args = parser.parse_args()
    unknown = set(args.formats.split(",")) - set(ACCEPT)
    if unknown:
        parser.error(f"unknown formats: {', '.join(sorted(unknown))}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
