"""`gateway query`: a small API client that prints answers as a table, CSV or JSON."""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
from typing import Any

import httpx


def _resolve_url(args: argparse.Namespace) -> str:
    if args.url:
        return str(args.url).rstrip("/")
    if os.environ.get("GATEWAY_URL"):
        return os.environ["GATEWAY_URL"].rstrip("/")
    from gateway.demo.runner import read_demo_info

    return str(read_demo_info(args.data_dir)["url"])


def _resolve_token(args: argparse.Namespace) -> str:
    if args.user:
        from gateway.demo.oidc_provider import fetch_token

        return fetch_token(args.data_dir, args.user)
    token = os.environ.get("GATEWAY_TOKEN")
    if not token:
        raise ValueError("no token: pass --user <demo user> or set GATEWAY_TOKEN")
    return token


def _print_problem(body: dict[str, Any], status: int) -> None:
    code = body.get("code", "error")
    print(f"error {status} ({code}): {body.get('detail', body.get('title', ''))}", file=sys.stderr)
    if body.get("rule"):
        print(f"  rule: {body['rule']}", file=sys.stderr)
    if body.get("request_id"):
        print(f"  reference: {body['request_id']}", file=sys.stderr)


def _print_table(payload: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False)
    for column in payload["columns"]:
        masking = column["masking"]
        header = column["name"] if masking in ("plain", "computed") else f"{column['name']}\n[{masking}]"
        table.add_column(header)
    for row in payload["rows"]:
        table.add_row(*["∅" if v is None else str(v) for v in row])
    console = Console()
    console.print(table)
    note = f"{payload['row_count']} rows" + (" (truncated by the row limit)" if payload["truncated"] else "")
    console.print(f"{note}; query id {payload['query_id']}")


def query_command(args: argparse.Namespace) -> int:
    url = _resolve_url(args)
    token = _resolve_token(args)
    body: dict[str, Any] = {"sql": args.sql, "purpose": args.purpose}
    if args.dialect:
        body["dialect"] = args.dialect
    try:
        response = httpx.post(
            f"{url}/v1/query", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=120
        )
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach the gateway at {url}: {type(exc).__name__}") from None
    payload = response.json()
    if response.status_code >= 400:
        _print_problem(payload, response.status_code)
        return 1
    if args.format == "json":
        json.dump(payload, sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif args.format == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow([c["name"] for c in payload["columns"]])
        writer.writerows(payload["rows"])
    else:
        _print_table(payload)
    return 0
