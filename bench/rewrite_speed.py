"""Parse + rewrite time per query, cold and cached, and its share of the gateway's overhead.

Representative analyst queries as anna (statistik). "cold" = parse, policy decision and rewrite with
empty caches (the rewriter's derived-table templates included); "cached" = the same request again
(parse, decision and plan caches hit). Overhead as in bench/overhead.py: end-to-end through the pipeline
minus the same query run directly on DuckDB.

"overhead" is the gateway's end-to-end overhead with warm caches; "cold share" is parse + rewrite
against the overhead of a request whose plan is not cached (decision included), "warm share" the cached
plan against the warm overhead.

"rewrite" = parse + rewrite for a decision already made (the path of a query the plan cache has not
seen): "parse" is the parse alone, "rewrite" has the derived-table templates of this decision built
(as after the principal's first query under it), "no-tpl" builds them as well (a first query).

    python bench/rewrite_speed.py [--rows 20000] [--repeat 200]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

from gateway.catalog import load_catalog
from gateway.config import DEFAULT_POLICY_DIR
from gateway.demo.data import generate_demo_database
from gateway.identity.principal import Principal
from gateway.pipeline import QueryRequest, RequestContext
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import load_bundle
from gateway.policy.inputs import build_input
from gateway.sql.masks import KeyRing
from gateway.sql.rewrite import clear_template_cache, rewrite
from gateway.sql.statement import parse_query
from gateway.sql.tables import referenced_datasets

#: a client address inside the city's network (the policy's residency rule checks it)
INTERNAL = "127.0.0.1"

ANNA = Principal(subject="anna", username="anna", office="Amt für Statistik und Stadtforschung",
                 roles=("analyst",), purposes=("statistik",), clearance="vertraulich")
QUERIES = {
    "point": "SELECT * FROM einwohner WHERE stadtteil = 'Mitte' AND zuzug_am = DATE '2017-12-09'",
    "group": "SELECT stadtteil, geburtsdatum, count(*) AS n FROM einwohner GROUP BY 1, 2 ORDER BY n DESC",
    "join": "SELECT e.stadtteil, s.flaeche_km2, count(*) FROM einwohner e JOIN stadtteile s "
            "ON s.stadtteil = e.stadtteil GROUP BY 1, 2",
    "cte+window": "WITH t AS (SELECT stadtteil, zuzug_am, vorname FROM einwohner WHERE plz LIKE '651%') "
                  "SELECT stadtteil, vorname, row_number() OVER (PARTITION BY stadtteil ORDER BY zuzug_am) AS rn "
                  "FROM t",
    "union": "SELECT vorname AS n FROM einwohner UNION ALL SELECT nachname FROM einwohner",
}


def micros(fn: object, repeat: int) -> float:
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()  # type: ignore[operator]
        samples.append((time.perf_counter() - started) * 1e6)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()
    catalog = load_catalog(DEFAULT_POLICY_DIR / "catalog.yaml")
    bundle = load_bundle(DEFAULT_POLICY_DIR, catalog)
    keys = KeyRing(master=b"k" * 32, key_id="bench")

    uncached_engine = EmbeddedPolicyEngine(bundle, cache_size=0)

    def cold(sql: str) -> None:
        engine = uncached_engine
        clear_template_cache()
        parsed = parse_query(sql)
        decision = engine.decide(build_input(ANNA, "statistik", referenced_datasets(parsed.ast, catalog)))
        rewrite(parsed, decision, catalog, target_dialect="duckdb", keys=keys, purpose="statistik",
                max_rows_cap=1_000_000)

    def rewrite_only(sql: str, decision: object) -> None:
        rewrite(parse_query(sql), decision, catalog, target_dialect="duckdb", keys=keys,  # type: ignore[arg-type]
                purpose="statistik", max_rows_cap=1_000_000)

    def local() -> RequestContext:
        return RequestContext(client_address=INTERNAL)

    def rewrite_no_templates(sql: str, decision: object) -> None:
        clear_template_cache()
        rewrite_only(sql, decision)

    with tempfile.TemporaryDirectory() as tmp:
        from gateway.config import Settings
        from gateway.identity.settings import IdentitySettings
        from gateway.runtime import build_runtime

        data_dir = Path(tmp)
        generate_demo_database(data_dir / "demo.duckdb", rows=args.rows)
        raw = data_dir / "raw.duckdb"
        raw.write_bytes((data_dir / "demo.duckdb").read_bytes())
        direct = duckdb.connect(str(raw), read_only=True)
        settings = Settings(data_dir=data_dir, identity=IdentitySettings(issuer="http://127.0.0.1:9"))
        runtime = build_runtime(settings, create_keys=True)
        gateway = runtime.gateway
        engine = EmbeddedPolicyEngine(bundle)
        print(f"{'query':<12}{'parse µs':>10}{'rewrite µs':>12}{'no-tpl µs':>11}{'cold plan µs':>14}"
              f"{'cached plan µs':>16}{'overhead ms':>13}{'cold share':>12}{'warm share':>12}")
        for label, sql in QUERIES.items():
            parsed = parse_query(sql)
            decision = engine.decide(build_input(ANNA, "statistik", referenced_datasets(parsed.ast, catalog)))
            parse_us = micros(lambda s=sql: parse_query(s), args.repeat)
            only = micros(lambda s=sql, d=decision: rewrite_only(s, d), args.repeat)
            no_templates = micros(lambda s=sql, d=decision: rewrite_no_templates(s, d), args.repeat)
            cold_us = micros(lambda s=sql: cold(s), max(10, args.repeat // 10))
            request = QueryRequest(sql=sql, purpose="statistik")
            gateway.plan(ANNA, request, local())
            cached_us = micros(lambda r=request: gateway.plan(ANNA, r, local()), args.repeat)
            end_to_end = micros(lambda r=request: gateway.run_query(ANNA, r, local()), 10) / 1000
            base = micros(lambda s=sql: direct.sql(s).to_arrow_table(), 10) / 1000
            overhead = max(end_to_end - base, 1e-9)
            # a request whose plan is not cached pays the cold plan instead of the cached one
            cold_overhead = overhead - cached_us / 1000 + cold_us / 1000
            print(f"{label:<12}{parse_us:>10.0f}{only:>12.0f}{no_templates:>11.0f}{cold_us:>14.0f}"
                  f"{cached_us:>16.1f}{overhead:>13.2f}{only / 1000 / cold_overhead:>11.0%}"
                  f"{cached_us / 1000 / overhead:>11.1%}")
        runtime.close()


if __name__ == "__main__":
    main()
