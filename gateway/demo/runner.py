"""`gateway demo`: the reference scenario on the embedded default, end to end on localhost.

Generates the data (if missing), creates keys, starts the demo OIDC provider and the gateway, prints
how to get a token and a ready-to-paste query, and stops everything cleanly on Ctrl-C.
"""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path
from typing import Any

import yaml

from gateway.config import load_settings
from gateway.demo.data import generate_demo_database
from gateway.demo.oidc_provider import DEFAULT_AUDIENCE, ProviderHandle, ensure_node_modules, start_provider
from gateway.identity.settings import IdentitySettings

DEMO_DB = "demo.duckdb"
DEMO_INFO = "demo.json"


def ensure_demo_data(data_dir: Path, rows: int) -> Path:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEMO_DB
    if not path.exists():
        print(f"Generating the reference scenario ({rows:,} residents) in {path} ...", flush=True)
        counts = generate_demo_database(path, rows=rows)
        print("  " + ", ".join(f"{name}: {count:,}" for name, count in counts.items()), flush=True)
    return path


def write_demo_config(data_dir: Path, issuer: str, port: int) -> Path:
    """The demo gateway's config file; also what `gateway query` reads to find the running demo."""
    config = {
        "data_dir": str(data_dir.resolve()),
        "identity": {"issuer": issuer, "audience": DEFAULT_AUDIENCE},
    }
    path = data_dir / "gateway.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    (data_dir / DEMO_INFO).write_text(
        json.dumps({"url": f"http://127.0.0.1:{port}", "issuer": issuer}), encoding="utf-8"
    )
    return path


def read_demo_info(data_dir: Path) -> dict[str, Any]:
    path = data_dir / DEMO_INFO
    if not path.exists():
        raise FileNotFoundError(
            f"no demo found in {data_dir}: start it with `gateway demo --data-dir {data_dir}`"
        )
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} is damaged")
    return data


def _port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _banner(port: int, data_dir: Path) -> str:
    dd = "" if str(data_dir) == ".gateway-demo" else f" --data-dir {data_dir}"
    url = f"http://127.0.0.1:{port}"
    return f"""
The gateway runs at {url}  (API docs: {url}/docs)

Get a token for a demo user (anna, sven, paula, bea, dora, dirk, aaron) in another terminal:
    TOKEN=$(gateway token anna{dd})

Ask a question as anna (statistics office), with the CLI ...
    gateway query "SELECT vorname, nachname, geburtsdatum, stadtteil FROM einwohner LIMIT 5" \\
        --purpose statistik --user anna{dd}

... or with curl:
    curl -s {url}/v1/query -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \\
        -d '{{"sql": "SELECT * FROM einwohner LIMIT 3", "purpose": "statistik"}}'

sven (social services) sees only Biebrich and Dotzheim, with personal data in notes masked:
    gateway query "SELECT fall_id, stadtteil, bemerkung FROM sozialleistungen LIMIT 5" \\
        --purpose sozialplanung --user sven{dd}

Check the audit trail:  gateway audit verify{dd}
Stop with Ctrl-C.
"""


def run_demo(*, port: int, data_dir: Path, rows: int) -> int:
    import uvicorn

    from gateway.api.app import create_app
    from gateway.runtime import build_runtime

    if not _port_free(port):
        print(f"port {port} is in use; choose another with --port", file=sys.stderr)
        return 2
    ensure_demo_data(data_dir, rows)
    ensure_node_modules()
    provider: ProviderHandle = start_provider(data_dir)
    try:
        config_path = write_demo_config(data_dir, provider.issuer, port)
        settings = load_settings(config_path)
        settings = settings.model_copy(update={"identity": IdentitySettings(issuer=provider.issuer)})
        print("Loading the policy, keys and the free-text scanner ...", flush=True)
        runtime = build_runtime(settings, create_keys=True)
        app = create_app(runtime)
        print(_banner(port, data_dir), flush=True)
        uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning")
    finally:
        provider.stop()
        (data_dir / DEMO_INFO).unlink(missing_ok=True)
        print("Demo stopped.", flush=True)
    return 0
