"""Rows per second and peak memory of a masked export per answer format (issue: connectors/formats).

For each format (JSON, CSV, Arrow IPC, Parquet) a fresh `gateway serve` process answers
`SELECT * FROM einwohner` for anna (reference masks) over real HTTP; the client streams the body and
counts bytes. The server's peak resident memory (VmHWM) is read from /proc. The baseline is the same
unmasked export straight from DuckDB into the same format, in a fresh process, measured the same way.

    python bench/export_formats.py [--rows 1000000] [--formats json,csv,arrow,parquet]
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import yaml

from gateway.demo.data import generate_demo_database
from gateway.demo.oidc_provider import start_provider

ACCEPT = {"json": "application/json", "csv": "text/csv", "arrow": "application/vnd.apache.arrow.stream",
          "parquet": "application/vnd.apache.parquet"}

BASELINE = r"""
import sys, time, io, json
import duckdb, pyarrow as pa, pyarrow.csv as pacsv, pyarrow.parquet as pq
path, fmt = sys.argv[1], sys.argv[2]
con = duckdb.connect(path, read_only=True)
con.execute("SET enable_progress_bar = false")
started = time.perf_counter()
reader = con.sql("SELECT * FROM einwohner").to_arrow_reader(65536)
sink = open("/dev/null", "wb")
rows = 0
if fmt == "json":
    for batch in reader:
        rows += batch.num_rows
        sink.write(json.dumps(batch.to_pylist(), default=str).encode())
else:
    writer = {"csv": lambda: pacsv.CSVWriter(sink, reader.schema),
              "arrow": lambda: pa.ipc.new_stream(sink, reader.schema),
              "parquet": lambda: pq.ParquetWriter(sink, reader.schema)}[fmt]()
    for batch in reader:
        rows += batch.num_rows
        writer.write_batch(batch)
    writer.close()
elapsed = time.perf_counter() - started
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1]
print(rows, elapsed, int(hwm) // 1024)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def peak_mb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM"):
            return int(line.split()[1]) // 1024
    return -1


def serve(config: Path, port: int) -> subprocess.Popen[bytes]:
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--formats", default=",".join(ACCEPT), help="comma-separated subset of " + ", ".join(ACCEPT))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        print(f"generating {args.rows:,} residents ...", flush=True)
        generate_demo_database(data_dir / "demo.duckdb", rows=args.rows)
        raw = data_dir / "raw.duckdb"
        raw.write_bytes((data_dir / "demo.duckdb").read_bytes())
        provider = start_provider(data_dir)
        try:
            config = data_dir / "gateway.yaml"
            config.write_text(yaml.safe_dump({"data_dir": str(data_dir), "max_rows_cap": args.rows,
                                              "identity": {"issuer": provider.issuer}}))
            # keys and the audit store are created once by an in-process runtime
            from gateway.config import load_settings
            from gateway.runtime import build_runtime
            build_runtime(load_settings(config), create_keys=True, scanner=lambda v: list(v)).close()
            token = provider.token("anna")
            # anna's grant allows at most 100,000 rows: export as the DPO would configure it for bulk use
            policy_dir = data_dir / "policies"
            import shutil
            shutil.copytree(Path(__file__).resolve().parent.parent / "policies", policy_dir)
            grants = policy_dir / "data" / "grants.yaml"
            grants.write_text(grants.read_text().replace("max_rows: 100000", f"max_rows: {args.rows}"))
            # the reference Rego tests pin the 100,000-row limit; this bench policy deliberately differs
            for test_module in policy_dir.glob("*_test.rego"):
                test_module.unlink()
            settings = yaml.safe_load(config.read_text())
            settings.update({"policy_dir": str(policy_dir), "catalog_path": str(policy_dir / "catalog.yaml")})
            config.write_text(yaml.safe_dump(settings))
            print(f"{'format':<9}{'rows':>10}{'gateway rows/s':>16}{'peak MB':>9}"
                  f"{'direct rows/s':>15}{'peak MB':>9}{'direct/gw':>10}")
            for fmt, accept in ((f, ACCEPT[f]) for f in args.formats.split(",")):
                port = free_port()
                process = serve(config, port)
                try:
                    started = time.perf_counter()
                    size = 0
                    with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/query", timeout=600,
                                      json={"sql": "SELECT * FROM einwohner", "purpose": "statistik"},
                                      headers={"Authorization": f"Bearer {token}", "Accept": accept}) as response:
                        if response.status_code != 200:
                            raise SystemExit(f"{fmt}: {response.status_code} {response.read()[:300]!r}")
                        for chunk in response.iter_bytes():
                            size += len(chunk)
                    elapsed = time.perf_counter() - started
                    server_peak = peak_mb(process.pid)
                finally:
                    process.terminate()
                    process.wait(timeout=30)
                out = subprocess.run([sys.executable, "-c", BASELINE, str(raw), fmt], capture_output=True,
                                     text=True, check=True, env={**os.environ}).stdout.split()
                base_rows, base_elapsed, base_peak = int(out[0]), float(out[1]), int(out[2])
                gw_rate = args.rows / elapsed
                base_rate = base_rows / base_elapsed
                print(f"{fmt:<9}{args.rows:>10,}{gw_rate:>16,.0f}{server_peak:>9}{base_rate:>15,.0f}"
                      f"{base_peak:>9}{base_rate / gw_rate:>9.1f}x", flush=True)
        finally:
            provider.stop()


if __name__ == "__main__":
    main()
