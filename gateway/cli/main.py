"""The `gateway` command: demo, token, query, audit, policy, pii, serve."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

DEFAULT_DATA_DIR = Path(".gateway-demo")


def _data_dir_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA_DIR,
        help="demo state directory (default: .gateway-demo)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gateway", description="Privacy-preserving data access gateway")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the reference scenario on localhost")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--rows", type=int, default=100_000, help="residents to generate (default 100000)")
    _data_dir_arg(demo)
    demo_sub = demo.add_subparsers(dest="demo_command")
    load = demo_sub.add_parser("load", help="copy the demo tables into PostgreSQL or MariaDB")
    load.add_argument("--target", required=True, help="postgresql://... or mysql://... DSN")
    load.add_argument("--schema", default=None)
    _data_dir_arg(load)

    token = sub.add_parser("token", help="print an access token for a demo user (demo only)")
    token.add_argument("user")
    _data_dir_arg(token)

    query = sub.add_parser("query", help="send SQL to the gateway and print the answer")
    query.add_argument("sql")
    query.add_argument("--purpose", required=True)
    query.add_argument("--dialect", choices=["postgres", "duckdb", "mysql", "trino"], default=None)
    query.add_argument("--user", help="demo user to fetch a token for (else $GATEWAY_TOKEN)")
    query.add_argument("--url", help="gateway URL (default: the running demo's, or $GATEWAY_URL)")
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    _data_dir_arg(query)

    audit = sub.add_parser("audit", help="audit trail tools")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True)
    verify = audit_sub.add_parser("verify", help="check the hash chain and signed checkpoints")
    verify.add_argument("--from", dest="from_seq", type=int, default=None)
    verify.add_argument("--config", type=Path, default=None)
    _data_dir_arg(verify)
    prune = audit_sub.add_parser("prune", help="retention: delete records older than a date, keeping a signed "
                                               "anchor so the rest of the chain still verifies")
    prune.add_argument("--before", required=True, help="ISO date or time (UTC), e.g. 2025-01-01")
    prune.add_argument("--config", type=Path, default=None)
    _data_dir_arg(prune)
    from gateway.cli.audit_commands import register_audit_commands

    register_audit_commands(audit_sub)

    policy = sub.add_parser("policy", help="policy tools for the DPO")
    policy_sub = policy.add_subparsers(dest="policy_command", required=True)
    for name, text in (("test", "run the Rego unit tests"), ("check", "lint policy and catalog")):
        p = policy_sub.add_parser(name, help=text)
        p.add_argument("--policy-dir", type=Path, default=None)
        p.add_argument("--catalog", type=Path, default=None)
    diff = policy_sub.add_parser(
        "diff", help="impact preview: replay recent audited queries under a proposed policy and report changes")
    diff.add_argument("proposed_dir", type=Path, help="the proposed policy directory (its catalog.yaml, "
                                                      "if present, is the proposed catalog)")
    diff.add_argument("--policy-dir", type=Path, default=None, help="the policy in force (default: config)")
    diff.add_argument("--catalog", type=Path, default=None, help="the catalog in force (default: config)")
    diff.add_argument("--since", default=None, help="replay requests since this ISO date/time (default: 30 days)")
    diff.add_argument("--limit", type=int, default=2_000, help="at most this many recent requests (default 2,000)")
    diff.add_argument("--json", action="store_true", help="print the report as JSON")
    diff.add_argument("--config", type=Path, default=None)
    _data_dir_arg(diff)
    propose = policy_sub.add_parser("propose", help="four-eyes: propose a policy directory (tested, previewed)")
    propose.add_argument("directory", type=Path)
    propose.add_argument("--comment", required=True, help="what changes and why")
    approve = policy_sub.add_parser("approve", help="four-eyes: approve someone else's proposal (goes live)")
    approve.add_argument("proposal_id")
    approve.add_argument("--comment", default="")
    reject = policy_sub.add_parser("reject", help="four-eyes: reject a proposal (or withdraw your own)")
    reject.add_argument("proposal_id")
    reject.add_argument("--comment", default="")
    proposals = policy_sub.add_parser("proposals", help="four-eyes: list the proposals")
    bundle = policy_sub.add_parser("bundle", help="write the tested policy as an OPA bundle (for opa run --bundle, "
                                                  "opa test)")
    bundle.add_argument("out_dir", type=Path, help="the bundle directory (created; a previous bundle is replaced)")
    bundle.add_argument("--policy-dir", type=Path, default=None)
    bundle.add_argument("--catalog", type=Path, default=None)
    show_version = policy_sub.add_parser("show-version", help="the archived rules of a policy version "
                                                              "(the policy_version of an audit record)")
    show_version.add_argument("version", help="e.g. sha256:0123456789abcdef")
    show_version.add_argument("--out", type=Path, default=None, help="also write its files to this directory")
    show_version.add_argument("--config", type=Path, default=None)
    _data_dir_arg(show_version)
    for p in (propose, approve, reject, proposals):
        p.add_argument("--user", help="demo user to fetch a token for (else $GATEWAY_TOKEN)")
        p.add_argument("--url", help="gateway URL (default: the running demo's, or $GATEWAY_URL)")
        p.add_argument("--json", action="store_true", help="print the API's answer as JSON")
        _data_dir_arg(p)

    pii = sub.add_parser("pii", help="personal-data detection tools")
    pii_sub = pii.add_subparsers(dest="pii_command", required=True)
    analyze = pii_sub.add_parser("analyze", help='read JSON lines {"id","text"} on stdin, write spans')
    analyze.add_argument("--language", choices=["de", "en"], default="de")

    catalog = sub.add_parser("catalog", help="catalog tools for the DPO")
    catalog_sub = catalog.add_subparsers(dest="catalog_command", required=True)
    scan = catalog_sub.add_parser("scan", help="sample a dataset; propose personal-data classes and masks")
    scan.add_argument("dataset")
    scan.add_argument("--sample-rows", type=int, default=1000)
    scan.add_argument("--config", type=Path, default=None)
    _data_dir_arg(scan)

    serve = sub.add_parser("serve", help="run the gateway with a config file")
    serve.add_argument("--config", type=Path, required=True)
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        return 130
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "demo":
        if args.demo_command == "load":
            from gateway.cli.commands import demo_load

            return demo_load(args.data_dir, args.target, args.schema)
        from gateway.demo.runner import run_demo

        return run_demo(port=args.port, data_dir=args.data_dir, rows=args.rows)
    if args.command == "token":
        from gateway.demo.oidc_provider import fetch_token

        print(fetch_token(args.data_dir, args.user))
        return 0
    if args.command == "query":
        from gateway.cli.client import query_command

        return query_command(args)
    if args.command == "audit":
        if args.audit_command == "prune":
            from gateway.cli.commands import audit_prune

            return audit_prune(args.data_dir, args.config, args.before)
        if args.audit_command != "verify":
            from gateway.cli.audit_commands import run_audit_command

            return run_audit_command(args)
        from gateway.cli.commands import audit_verify

        return audit_verify(args.data_dir, args.config, args.from_seq)
    if args.command == "policy":
        if args.policy_command in ("bundle", "show-version"):
            from gateway.cli.commands import policy_bundle, policy_show_version

            return policy_bundle(args) if args.policy_command == "bundle" else policy_show_version(args)
        if args.policy_command == "diff":
            from gateway.cli.commands import policy_diff

            return policy_diff(args)
        if args.policy_command in ("propose", "approve", "reject", "proposals"):
            from gateway.cli.policy_client import policy_client_command

            return policy_client_command(args)
        from gateway.cli.commands import policy_command

        return policy_command(args.policy_command, args.policy_dir, args.catalog)
    if args.command == "pii":
        from gateway.pii import analyze_jsonl

        analyze_jsonl(sys.stdin, sys.stdout, language=args.language)
        return 0
    if args.command == "catalog":
        from gateway.catalog_scan import catalog_scan_main
        from gateway.cli.commands import settings_for

        return catalog_scan_main(settings_for(args.data_dir, args.config), args.dataset,
                                 sample_rows=args.sample_rows)
    if args.command == "serve":
        from gateway.cli.commands import serve

        return serve(args.config, args.host, args.port)
    return 2


if __name__ == "__main__":
    sys.exit(main())
