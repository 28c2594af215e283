"""``gateway audit list | show | verify-receipt``: the audit trail from the command line.

These commands read the audit store directly (read-only, no signing key) and are meant for operators and
auditors with access to the gateway host or the store's database; unlike the HTTP API
(docs/auditor-api.md) they do not check roles and are not themselves recorded in the trail - access to
the store is controlled by file and database permissions.  The original SQL stays encrypted here; it is
decrypted only through the API by the data-protection officer.

Wire-up (see :func:`register_audit_commands` and :func:`run_audit_command`)::

    gateway audit list [--from T] [--to T] [--user U] [--office O] [--dataset D] [--purpose P]
                       [--decision allow|deny|error] [--rule R] [--event E] [--request-id ID]
                       [--limit N] [--offset N] [--newest-first] [--format table|csv|jsonl]
    gateway audit show SEQ
    gateway audit verify-receipt FILE    # a receipt, or a saved query answer holding one; - for stdin
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from gateway.audit import AuditFilter, SQLAuditStore
    from gateway.config import Settings

DEFAULT_DATA_DIR = Path(".gateway-demo")
TABLE_DEFAULT_LIMIT = 100


# --- argparse ---------------------------------------------------------------------------------------

def _store_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, default=None, help="gateway config file (else the demo's)")
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR,
                        help="demo state directory (default: .gateway-demo)")


def _time(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO-8601 time: {text!r}") from exc


def register_audit_commands(audit_sub: Any) -> None:
    """Add ``list``, ``show`` and ``verify-receipt`` to the ``gateway audit`` subparsers."""
    listing = audit_sub.add_parser("list", help="search the audit trail (table, CSV or JSON lines)")
    listing.add_argument("--from", dest="time_from", type=_time, default=None,
                         help="records at or after this time (ISO-8601; UTC if no offset)")
    listing.add_argument("--to", dest="time_to", type=_time, default=None, help="records before this time")
    listing.add_argument("--user", default=None)
    listing.add_argument("--office", default=None)
    listing.add_argument("--dataset", default=None)
    listing.add_argument("--purpose", default=None)
    listing.add_argument("--decision", choices=["allow", "deny", "error"], default=None)
    listing.add_argument("--rule", default=None)
    listing.add_argument("--event", default=None, help="query, unauthenticated, audit_read, ...")
    listing.add_argument("--request-id", default=None)
    listing.add_argument("--limit", type=int, default=None,
                         help=f"at most N records (table default {TABLE_DEFAULT_LIMIT}; csv/jsonl: all)")
    listing.add_argument("--offset", type=int, default=0)
    listing.add_argument("--newest-first", action="store_true")
    listing.add_argument("--format", dest="fmt", choices=["table", "csv", "jsonl"], default="table")
    _store_args(listing)

    show = audit_sub.add_parser("show", help="print one audit record as JSON")
    show.add_argument("seq", type=int)
    _store_args(show)

    receipt = audit_sub.add_parser("verify-receipt", help="check a query receipt offline (and against the "
                                                          "store if it is reachable)")
    receipt.add_argument("receipt", type=Path, help="receipt JSON file, a saved answer holding one, or -")
    _store_args(receipt)


def filter_from_args(args: argparse.Namespace) -> AuditFilter:
    from gateway.audit import AuditFilter

    return AuditFilter(time_from=args.time_from, time_to=args.time_to, username=args.user, office=args.office,
                       dataset=args.dataset, purpose=args.purpose, decision=args.decision, rule=args.rule,
                       event=args.event, request_id=args.request_id, newest_first=args.newest_first)


def settings_from_args(data_dir: Path, config: Path | None) -> Settings:
    from gateway.cli.commands import settings_for

    return settings_for(data_dir, config)


def run_audit_command(args: argparse.Namespace) -> int:
    """Dispatch ``gateway audit list|show|verify-receipt``; an unavailable store is exit code 2."""
    from gateway.errors import GatewayError

    settings = settings_from_args(args.data_dir, args.config)
    try:
        if args.audit_command == "list":
            return audit_list(settings, filter_from_args(args), args.fmt, limit=args.limit, offset=args.offset)
        if args.audit_command == "show":
            return audit_show(settings, args.seq)
        if args.audit_command == "verify-receipt":
            return audit_verify_receipt(settings, args.receipt)
    except GatewayError as exc:
        print(f"gateway: {exc.detail}", file=sys.stderr)
        return 2
    raise ValueError(f"unknown audit command {args.audit_command!r}")


# --- the store ----------------------------------------------------------------------------------------

def _sqlite_path(url: str) -> Path | None:
    if not url.startswith("sqlite://"):
        return None
    path = url[len("sqlite://"):]
    return Path(path[1:] if path.startswith("/") else path)


def open_existing_store(settings: Settings) -> SQLAuditStore:
    """The configured audit store, read-only; a missing SQLite file is an error (it is not created)."""
    from gateway.audit import open_store

    url = settings.resolved_audit_url()
    path = _sqlite_path(url)
    if path is not None and not path.exists():
        raise FileNotFoundError(f"there is no audit store at {path}")
    return open_store(url, None, checkpoint_on_close=False)


# --- commands -----------------------------------------------------------------------------------------

def audit_list(settings: Settings, filters: AuditFilter, fmt: str = "table", *, limit: int | None = None,
               offset: int = 0, out: TextIO | None = None) -> int:
    """Print the matching records: a rich table, CSV (same columns as the API's export) or JSON lines."""
    import csv

    import orjson

    from gateway.api.audit_routes import CSV_COLUMNS, EXPORT_BATCH, csv_row, iter_matching, record_view

    if fmt not in ("table", "csv", "jsonl"):
        raise ValueError(f"unknown format {fmt!r} (table, csv or jsonl)")
    if limit is not None and limit < 1:
        raise ValueError("--limit must be at least 1")
    if offset < 0:
        raise ValueError("--offset must not be negative")
    stream = out or sys.stdout
    store = open_existing_store(settings)
    try:
        head_seq, _ = store.head()
        if fmt == "table" and limit is None:
            limit = TABLE_DEFAULT_LIMIT

        def query(f: AuditFilter, n: int, o: int) -> list[Any]:
            return store.query(f, limit=n, offset=o)

        records = iter_matching(query, filters, offset=offset, limit=limit, head_seq=head_seq,
                                batch_size=min(limit or EXPORT_BATCH, EXPORT_BATCH))
        if fmt == "jsonl":
            for record in records:
                stream.write(orjson.dumps(record_view(record)).decode("utf-8") + "\n")
            return 0
        if fmt == "csv":
            writer = csv.writer(stream, lineterminator="\n")
            writer.writerow(CSV_COLUMNS)
            for record in records:
                writer.writerow(csv_row(record_view(record)))
            return 0
        views = [record_view(record) for record in records]
    finally:
        store.close()
    _print_table(views, stream, limit)
    return 0


def _print_table(views: list[dict[str, Any]], stream: TextIO, limit: int | None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(show_lines=False, header_style="bold")
    for name in ("seq", "time (UTC)", "user", "event", "purpose", "datasets", "decision", "rules / error",
                 "rows"):
        table.add_column(name, overflow="fold")
    for view in views:
        decision = str(view.get("decision") or "")
        style = {"deny": "red", "error": "yellow"}.get(decision)
        detail = view.get("error_code") or ""
        rules = ", ".join(view.get("rules") or [])
        table.add_row(
            str(view["seq"]),
            str(view.get("time") or "")[:19].replace("T", " "),
            str(view.get("username") or "-"),
            str(view.get("event") or ""),
            str(view.get("purpose") or ""),
            ", ".join(view.get("datasets") or []),
            decision,
            f"{detail}: {rules}" if detail else rules,
            "" if view.get("rows_returned") is None else str(view["rows_returned"]),
            style=style,
        )
    console = Console(file=stream, width=max(Console(file=stream).width, 160))
    console.print(table)
    more = " (more may match: raise --limit or use --offset)" if limit is not None and len(views) >= limit else ""
    console.print(f"{len(views)} records{more}")


def audit_show(settings: Settings, seq: int) -> int:
    """Print record ``seq`` as JSON; 1 if there is none."""
    from gateway.api.audit_routes import record_view

    store = open_existing_store(settings)
    try:
        record = store.get(seq)
    finally:
        store.close()
    if record is None:
        print(f"there is no audit record {seq}", file=sys.stderr)
        return 1
    print(json.dumps(record_view(record), ensure_ascii=False, indent=2))
    return 0


def _read_receipt(path: Path) -> dict[str, Any]:
    text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    data = json.loads(text)
    if isinstance(data, dict) and isinstance(data.get("receipt"), dict):
        data = data["receipt"]  # a saved query answer
    if not isinstance(data, dict):
        raise ValueError("the file holds no receipt (a JSON object)")
    return data


def audit_verify_receipt(settings: Settings, receipt_path: Path) -> int:
    """Check a receipt's signature with ``<keys_dir>/audit-signing.pub`` and, if the audit store can be
    opened, that it still holds the record with that hash.  0 valid, 1 invalid."""
    from gateway.audit import load_public_key, verify_receipt
    from gateway.audit.keys import PUBLIC_KEY_FILE
    from gateway.errors import AuditUnavailable

    receipt = _read_receipt(receipt_path)
    public_key_path = settings.resolved_keys_dir() / PUBLIC_KEY_FILE
    if not public_key_path.exists():
        raise FileNotFoundError(f"audit public key {public_key_path} is missing")
    public_key = load_public_key(public_key_path)
    valid, reason = verify_receipt(receipt, public_key)
    if not valid:
        print(f"receipt INVALID: {reason}")
        return 1
    try:
        store = open_existing_store(settings)
    except (AuditUnavailable, FileNotFoundError, ValueError) as exc:
        print(f"receipt signature valid (request {receipt['request_id']}, record {receipt['seq']}); the audit "
              f"store is not reachable ({exc}), so whether it still holds the record was not checked")
        return 0
    try:
        valid, reason = verify_receipt(receipt, public_key, store)
    finally:
        store.close()
    if not valid:
        print(f"receipt INVALID against the audit store: {reason}")
        return 1
    print(f"receipt valid: signed by key {receipt['key_id']}, and audit record {receipt['seq']} of request "
          f"{receipt['request_id']} still has hash {receipt['audit_record_hash']}")
    return 0
