"""Gateway overhead against the same query run directly on DuckDB (issue: walking skeleton).

Measures, in one run, a point query and a 100,000-row scan as `anna` (purpose statistik):
- baseline: the analyst's SQL straight on the DuckDB file, fetched as Arrow (no masking);
- gateway:  POST /v1/query through the ASGI app with a real access token from the demo provider
            (token check, policy, rewrite, masked execution, audit append, JSON serialisation).
Prints milliseconds (median of N runs) and the ratio gateway/baseline.

    python bench/overhead.py [--rows 100000] [--runs 7]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
from fastapi.testclient import TestClient

from gateway.api.app import create_app
from gateway.config import Settings
from gateway.demo.data import generate_demo_database
from gateway.demo.oidc_provider import start_provider
from gateway.identity.settings import IdentitySettings
from gateway.runtime import build_runtime

POINT = "SELECT * FROM einwohner WHERE stadtteil = 'Erbenheim' AND zuzug_am = DATE '2017-12-09'"
SCAN = "SELECT * FROM einwohner"


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm-up
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp)
        generate_demo_database(data_dir / "demo.duckdb", rows=args.rows)
        raw = data_dir / "raw.duckdb"
        raw.write_bytes((data_dir / "demo.duckdb").read_bytes())
        direct = duckdb.connect(str(raw), read_only=True)
        provider = start_provider(data_dir)
        try:
            settings = Settings(data_dir=data_dir, identity=IdentitySettings(issuer=provider.issuer))
            runtime = build_runtime(settings, create_keys=True)
            token = provider.token("anna")
            with TestClient(create_app(runtime)) as client:
                def through_gateway(sql: str) -> Callable[[], object]:
                    def call() -> object:
                        response = client.post("/v1/query", json={"sql": sql, "purpose": "statistik"},
                                               headers={"Authorization": f"Bearer {token}"})
                        if response.status_code != 200:
                            raise SystemExit(f"gateway answered {response.status_code}: {response.text[:300]}")
                        return response.json()["row_count"]
                    return call

                print(f"rows in einwohner: {args.rows:,}; median of {args.runs} runs")
                print(f"{'query':<12}{'direct ms':>12}{'gateway ms':>12}{'overhead ms':>13}{'ratio':>8}")
                for label, sql in (("point", POINT), ("scan 100k", SCAN)):
                    base = median_ms(lambda s=sql: direct.execute(s).to_arrow_table(), args.runs)
                    gw = median_ms(through_gateway(sql), args.runs)
                    print(f"{label:<12}{base:>12.2f}{gw:>12.2f}{gw - base:>13.2f}{gw / base:>8.1f}x")
        finally:
            provider.stop()


if __name__ == "__main__":
    main()
