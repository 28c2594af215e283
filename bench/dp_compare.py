"""Compare the gateway's differential privacy with SmartNoise SQL on the same queries (docs/sdc.md).

    python bench/dp_compare.py [--rows 5000] [--epsilon 1.0] [--runs 30] [--snsql-python PATH]

Both answer the same grouped count/sum queries on the demo scenario's sozialleistungen with the same
total epsilon per query, the same clamping bounds (betrag_monat in [0, 2500]) and one row per person.
Reported: mean absolute error against the exact answer on the same rows, share of groups released, and
milliseconds per query. SmartNoise SQL pins an older OpenDP than the gateway, so it is usually installed
in a separate virtualenv: pass its interpreter with ``--snsql-python`` (it needs smartnoise-sql and
duckdb). If it cannot be run, only the gateway's figures are printed, saying so.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

#: a client address inside the city's network (the policy's residency rule checks it)
INTERNAL = "127.0.0.1"

REPO = Path(__file__).resolve().parent.parent
BOUNDS = (0.0, 2500.0)
QUERIES = {
    "count by type": "SELECT leistungsart, COUNT(*) AS n FROM {t} GROUP BY leistungsart",
    "sum by type": "SELECT leistungsart, SUM(betrag_monat) AS s FROM {t} GROUP BY leistungsart",
    "count by district": "SELECT stadtteil, COUNT(*) AS n FROM {t} GROUP BY stadtteil",
}


def _retention() -> str:
    import yaml

    catalog = yaml.safe_load((REPO / "policies" / "catalog.yaml").read_text(encoding="utf-8"))
    retention = catalog["datasets"]["sozialleistungen"].get("retention")
    if not retention:
        return "TRUE"
    return f"CAST({retention['column']} AS DATE) >= current_date - INTERVAL {int(retention['days'])} DAY"


def _source_sql() -> str:
    """The rows both systems see: the retention filter, then one row per person (max_ids = 1)."""
    return (
        "SELECT einwohner_id, leistungsart, stadtteil, CAST(betrag_monat AS DOUBLE) AS betrag_monat FROM "
        "(SELECT *, row_number() OVER (PARTITION BY einwohner_id ORDER BY einwohner_id) AS r FROM sozialleistungen "
        f"WHERE {_retention()}) WHERE r <= 1"
    )


def _truth(db: Path) -> dict[str, dict[str, float]]:
    import duckdb

    conn = duckdb.connect(str(db), read_only=True)
    rows = f"({_source_sql()})"
    clamped = (f"(SELECT * REPLACE (least(greatest(betrag_monat, {BOUNDS[0]}), {BOUNDS[1]}) AS betrag_monat) "
               f"FROM {rows})")
    truth = {}
    for name, sql in QUERIES.items():
        truth[name] = {str(k): float(v) for k, v in conn.execute(sql.format(t=clamped)).fetchall()}
    conn.close()
    return truth


def _errors(answers: Sequence[dict[str, float]], truth: dict[str, float]) -> tuple[float, float]:
    errors = [abs(a[k] - v) for a in answers for k, v in truth.items() if k in a]
    released = statistics.mean(len([k for k in truth if k in a]) / len(truth) for a in answers)
    return (statistics.mean(errors) if errors else float("nan")), released


def run_gateway(db: Path, epsilon: float, runs: int) -> dict[str, dict[str, Any]]:
    import yaml

    from gateway.config import Settings
    from gateway.identity.principal import Principal
    from gateway.identity.settings import IdentitySettings
    from gateway.pipeline import QueryRequest, RequestContext
    from gateway.runtime import build_runtime

    work = Path(tempfile.mkdtemp(prefix="dp-bench-"))
    policies = work / "policies"
    shutil.copytree(REPO / "policies", policies)
    shutil.copyfile(db, work / "demo.duckdb")
    grants_file = policies / "data" / "grants.yaml"
    grants = yaml.safe_load(grants_file.read_text(encoding="utf-8"))
    for grant in grants["grants"]:
        if grant["id"] == "sozialleistungen.sozialplanung":
            grant["aggregate_only"] = {
                "min_cell": 1, "rule": "bench.dp",
                "dp": {"epsilon_per_query": epsilon, "budget": 1e9, "bounds": {"betrag_monat": list(BOUNDS)}},
            }
            grant["columns"]["bemerkung"] = {"op": "deny", "rule": "bench.no_free_text"}
    grants_file.write_text(yaml.safe_dump(grants, allow_unicode=True, sort_keys=False), encoding="utf-8")
    settings = Settings(data_dir=work, catalog_path=policies / "catalog.yaml", policy_dir=policies,
                        identity=IdentitySettings(issuer="http://127.0.0.1:9/bench", audience="gateway"))
    runtime = build_runtime(settings, create_keys=True, scanner=lambda values: list(values))
    import duckdb

    districts = tuple(r[0] for r in duckdb.connect(str(db), read_only=True).execute(
        "SELECT DISTINCT stadtteil FROM stadtteile").fetchall())
    principal = Principal(subject="bench", username="bench", office="Amt für Soziale Arbeit", roles=("analyst",),
                          purposes=("sozialplanung",), districts=districts, clearance="streng_vertraulich")
    results: dict[str, dict[str, Any]] = {}
    try:
        for name, sql in QUERIES.items():
            answers, started = [], time.perf_counter()
            for _ in range(runs):
                outcome = runtime.gateway.run_query(
                    principal, QueryRequest(sql.format(t="sozialleistungen"), "sozialplanung"),
                    RequestContext(client_address=INTERNAL),
                )
                table = outcome.table.to_pylist()
                key, value = outcome.table.column_names[:2]
                answers.append({str(r[key]): float(r[value]) for r in table if not r["_suppressed"]})
            results[name] = {"answers": answers, "ms": (time.perf_counter() - started) * 1000 / runs}
    finally:
        runtime.close()
        shutil.rmtree(work, ignore_errors=True)
    return results


def snsql_worker(db: str, epsilon: float, runs: int, source_sql: str) -> None:
    """Runs inside an interpreter that has smartnoise-sql; prints JSON."""
    import duckdb
    import snsql
    from snsql import Privacy

    df = duckdb.connect(db, read_only=True).execute(source_sql).df()
    meta = {"Database": {"soz": {"sozialleistungen": {
        "row_privacy": False, "rows": len(df), "max_ids": 1,
        "einwohner_id": {"type": "int", "private_id": True},
        "leistungsart": {"type": "string"}, "stadtteil": {"type": "string"},
        "betrag_monat": {"type": "float", "lower": BOUNDS[0], "upper": BOUNDS[1]},
    }}}}
    out: dict[str, Any] = {}
    for name, sql in QUERIES.items():
        query = sql.format(t="soz.sozialleistungen")
        probe = snsql.from_df(df, privacy=Privacy(epsilon=1.0, delta=1e-5), metadata=meta)
        factor = float(probe.get_privacy_cost([query])[0])  # SmartNoise charges epsilon per aggregate
        reader = snsql.from_df(df, privacy=Privacy(epsilon=epsilon / factor, delta=1e-5), metadata=meta)
        answers, started = [], time.perf_counter()
        for _ in range(runs):
            rows = reader.execute(query)
            answers.append({str(r[0]): float(r[1]) for r in rows[1:] if r[1] is not None})
        out[name] = {"answers": answers, "ms": (time.perf_counter() - started) * 1000 / runs, "cost_factor": factor}
    print(json.dumps(out))


def run_snsql(python: str | None, db: Path, epsilon: float, runs: int) -> tuple[dict[str, Any] | None, str]:
    interpreter = python or sys.executable
    try:
        completed = subprocess.run(
            [interpreter, __file__, "--worker", str(db), "--epsilon", str(epsilon), "--runs", str(runs),
             "--source-sql", _source_sql()],
            capture_output=True, text=True, timeout=1800, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return None, f"could not start {interpreter}: {exc}"
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["no output"])[-1]
        return None, f"{interpreter}: {last}"
    return json.loads(completed.stdout.strip().splitlines()[-1]), ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--epsilon", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--snsql-python", default=None, help="interpreter with smartnoise-sql installed")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--source-sql", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        snsql_worker(args.worker, args.epsilon, args.runs, args.source_sql)
        return
    sys.path.insert(0, str(REPO))
    from gateway.demo.data import generate_demo_database

    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "demo.duckdb"
        generate_demo_database(db, rows=args.rows)
        truth = _truth(db)
        ours = run_gateway(db, args.epsilon, args.runs)
        theirs, why = run_snsql(args.snsql_python, db, args.epsilon, args.runs)
    print(f"epsilon per query {args.epsilon}, {args.runs} runs per query, {args.rows} residents, bounds {BOUNDS}")
    header = f"{'query':<20} {'system':<16} {'MAE':>10} {'released':>9} {'ms/query':>9}"
    print(header)
    print("-" * len(header))
    for name in QUERIES:
        mae, released = _errors(ours[name]["answers"], truth[name])
        print(f"{name:<20} {'gateway (OpenDP)':<16} {mae:>10.2f} {released:>9.0%} {ours[name]['ms']:>9.1f}")
        if theirs is not None:
            mae, released = _errors(theirs[name]["answers"], truth[name])
            print(f"{'':<20} {'SmartNoise SQL':<16} {mae:>10.2f} {released:>9.0%} {theirs[name]['ms']:>9.1f}")
    if theirs is None:
        print(f"\nSmartNoise SQL was unavailable ({why}); pass --snsql-python with an interpreter that has it.")
    else:
        print("\nBoth spend the same total epsilon per query (SmartNoise's per-aggregate epsilon divided by its "
              "cost factor). Released = share of groups in the answer (SmartNoise drops groups below its tau "
              "threshold; the gateway suppresses cells whose noisy person count is below min_cell = 1 here).")


if __name__ == "__main__":
    main()
