"""Implementations of the operator and auditor subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from gateway.config import DEFAULT_POLICY_DIR, Settings, load_settings


def settings_for(data_dir: Path, config: Path | None) -> Settings:
    """Settings from ``--config``, else the demo's config in the data dir, else defaults."""
    if config is not None:
        return load_settings(config)
    demo_config = data_dir / "gateway.yaml"
    if demo_config.exists():
        return load_settings(demo_config)
    return Settings(data_dir=data_dir)


def audit_verify(data_dir: Path, config: Path | None, from_seq: int | None) -> int:
    from rich.progress import Progress

    from gateway.audit import load_public_key, open_store, verify
    from gateway.audit.keys import PUBLIC_KEY_FILE

    settings = settings_for(data_dir, config)
    public_key_path = settings.resolved_keys_dir() / PUBLIC_KEY_FILE
    if not public_key_path.exists():
        raise FileNotFoundError(f"audit public key {public_key_path} is missing")
    store = open_store(settings.resolved_audit_url(), None)
    try:
        total, _ = store.head()
        with Progress(transient=True) as progress:
            task = progress.add_task("verifying the audit chain", total=max(total, 1))

            def advance(seq: int, *_: object) -> None:
                progress.update(task, completed=seq)

            report = verify(store, load_public_key(public_key_path), from_seq=from_seq, progress=advance)
    finally:
        store.close()
    if report.ok:
        print(
            f"audit chain OK: {report.records_checked} records, {report.checkpoints_checked} signed "
            f"checkpoints (last checkpoint at seq {report.last_checkpoint_seq})"
        )
        return 0
    print(f"audit chain BROKEN at seq {report.first_bad_seq}: {report.problem}")
    return 1


def audit_prune(data_dir: Path, config: Path | None, before: str) -> int:
    """Delete records older than ``before`` through gateway.audit.prune (verifies first, signs an anchor)."""
    from datetime import UTC, datetime

    from gateway.audit import load_or_create_keys, open_store, prune, verify

    cutoff = datetime.fromisoformat(before)
    cutoff = cutoff.replace(tzinfo=UTC) if cutoff.tzinfo is None else cutoff
    settings = settings_for(data_dir, config)
    keys_dir = settings.resolved_keys_dir()
    if not keys_dir.exists():
        raise FileNotFoundError(f"audit keys directory {keys_dir} is missing")
    keys = load_or_create_keys(keys_dir)
    store = open_store(settings.resolved_audit_url(), keys.signing_key)
    try:
        deleted = prune(store, cutoff, keys.signing_key)
        report = verify(store, keys.public_key)
    finally:
        store.close()
    print(f"pruned {deleted} records older than {cutoff.isoformat()}; the remaining chain "
          f"{'verifies' if report.ok else 'DOES NOT verify: ' + str(report.problem)}")
    return 0 if report.ok else 1


def policy_command(command: str, policy_dir: Path | None, catalog: Path | None) -> int:
    policy_dir = policy_dir or DEFAULT_POLICY_DIR
    catalog = catalog or policy_dir / "catalog.yaml"
    if command == "test":
        from gateway.policy.testing import policy_test_main

        return int(policy_test_main(policy_dir, catalog))
    from gateway.policy.lint import policy_check_main

    return int(policy_check_main(policy_dir, catalog))


def policy_bundle(args: argparse.Namespace) -> int:
    """``gateway policy bundle OUT_DIR``: 0 when written, 1 when the policy fails its gate."""
    from gateway.policy.bundle import bundle_main

    policy_dir: Path = args.policy_dir or DEFAULT_POLICY_DIR
    return bundle_main(args.out_dir, policy_dir, args.catalog or policy_dir / "catalog.yaml")


def policy_show_version(args: argparse.Namespace) -> int:
    """``gateway policy show-version HASH``: list an archived version's files; 0 if its hash verifies."""
    from gateway.errors import NotFound
    from gateway.policy.bundle import read_bundle, write_bundle
    from gateway.policy.versions import VERSIONS_DIR, PolicyVersionArchive

    archive = PolicyVersionArchive(settings_for(args.data_dir, args.config).data_dir / VERSIONS_DIR)
    try:
        found = archive.get(args.version)
    except NotFound as exc:
        print(f"ERROR  {exc.detail}", file=sys.stderr)
        return 2
    print(f"policy {found.version} ({archive.path(found.version)}): content hash "
          f"{'verified' if found.verified else 'DOES NOT match the version (altered?)'}")
    for name, text in sorted(found.files.items()):
        print(f"  {name}  ({len(text.encode('utf-8')):,} bytes)")
    if args.out is not None:
        write_bundle(read_bundle(archive.path(found.version)), args.out)
        print(f"written to {args.out}")
    return 0 if found.verified else 1


def policy_diff(args: argparse.Namespace) -> int:
    """``gateway policy diff NEW_DIR``: 0 when nothing would change, 1 when something would, 2 on errors."""
    from datetime import UTC, datetime, timedelta

    from gateway.audit.record import AuditFilter
    from gateway.cli.audit_commands import open_existing_store
    from gateway.errors import PolicyUnavailable
    from gateway.policy.impact import replay
    from gateway.policy.reload import load_candidate

    settings = settings_for(args.data_dir, args.config)
    current_dir = args.policy_dir or settings.policy_dir
    current_catalog = args.catalog or settings.catalog_path
    proposed_dir: Path = args.proposed_dir
    proposed_catalog = proposed_dir / "catalog.yaml"
    if not proposed_catalog.exists():
        proposed_catalog = current_catalog
    since = (datetime.fromisoformat(args.since) if args.since else datetime.now(UTC) - timedelta(days=30))
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    try:
        current = load_candidate(current_dir, current_catalog, run_tests=False)
        # the proposal must pass the same gate as a reload: compile, decide, its own Rego tests
        proposed = load_candidate(proposed_dir, proposed_catalog, run_tests=True)
    except PolicyUnavailable as exc:
        print(f"ERROR  {exc.detail}", file=sys.stderr)
        return 2
    store = open_existing_store(settings)
    try:
        records = store.query(AuditFilter(time_from=since, newest_first=True), limit=args.limit)
    finally:
        store.close()
    from rich.progress import Progress

    with Progress(transient=True, disable=args.json) as bar:
        task = bar.add_task("replaying audited requests", total=len(records))
        report = replay(reversed(records), current.engine, proposed.engine,
                        progress=lambda: bar.advance(task), current_catalog=current.catalog,
                        proposed_catalog=proposed.catalog)
    if args.json:
        print(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))
    else:
        print(report.render())
    return 1 if report.changes else 0


def demo_load(data_dir: Path, target: str, schema: str | None) -> int:
    from gateway.demo.load import load_into
    from gateway.demo.runner import DEMO_DB

    source = data_dir / DEMO_DB
    if not source.exists():
        raise FileNotFoundError(f"{source} is missing: run `gateway demo` once to generate it")
    counts = load_into(target, source, schema=schema)
    print("loaded " + ", ".join(f"{name}: {count:,}" for name, count in counts.items()))
    return 0


def serve(config: Path, host: str, port: int) -> int:
    import uvicorn

    from gateway.api.app import create_app
    from gateway.runtime import build_runtime

    runtime = build_runtime(load_settings(config))
    uvicorn.run(create_app(runtime), host=host, port=port, log_level="info")
    return 0
