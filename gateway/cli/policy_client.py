"""`gateway policy propose | proposals | approve | reject`: the four-eyes API from the command line.

The DPO proposes a policy directory (its ``*.rego``, ``data/*.yaml`` and, if present, ``catalog.yaml``);
the answer shows the proposal id, the version and the impact preview. A second DPO approves or rejects
it. Same URL and token resolution as `gateway query` (``--url``/``$GATEWAY_URL`` or the running demo;
``--user`` for a demo token or ``$GATEWAY_TOKEN``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from gateway.cli.client import _print_problem, _resolve_token, _resolve_url


def policy_files(directory: Path) -> dict[str, str]:
    """The files of a policy directory, as the proposal API takes them."""
    if not directory.is_dir():
        raise FileNotFoundError(f"{directory} is not a directory")
    files = {str(p.relative_to(directory)): p.read_text(encoding="utf-8") for p in sorted(directory.rglob("*.rego"))}
    files.update({f"data/{p.name}": p.read_text(encoding="utf-8")
                  for p in sorted((directory / "data").glob("*.yaml"))})
    if (directory / "catalog.yaml").exists():
        files["catalog.yaml"] = (directory / "catalog.yaml").read_text(encoding="utf-8")
    return files


def _call(args: argparse.Namespace, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    url = _resolve_url(args)
    token = _resolve_token(args)
    try:
        # proposing runs the proposal's Rego tests and the impact preview: allow minutes
        response = httpx.request(method, f"{url}{path}", json=body, timeout=600,
                                 headers={"Authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        raise RuntimeError(f"cannot reach the gateway at {url}: {type(exc).__name__}") from None
    payload = response.json()
    if response.status_code >= 400:
        _print_problem(payload, response.status_code)
        return None
    return payload


def _print_proposal(view: dict[str, Any]) -> None:
    proposal = view["proposal"]
    print(f"{proposal['id']}  {proposal['state']}  version {proposal['version']}")
    print(f"  proposed by {proposal['proposed_by_name']} at {proposal['proposed_at']}: {proposal['comment']}")
    if proposal.get("decided_by_name"):
        print(f"  {proposal['state']} by {proposal['decided_by_name']} at {proposal['decided_at']}")
    print(f"  in force now: {view['active_version']}")
    impact = proposal.get("impact") or {}
    if impact:
        print(f"  impact: {impact.get('changed_requests', 0)} of {impact.get('replayed', 0)} audited requests "
              "would change")
        for group in impact.get("changes", []):
            for change in group["changes"]:
                print(f"    {group['user']} / {group['dataset']}: {change['kind']} {change['detail']} "
                      f"({change['requests']})")


def policy_client_command(args: argparse.Namespace) -> int:
    """Dispatch the four-eyes subcommands; exit code 1 when the gateway refused."""
    command = args.policy_command
    if command == "propose":
        payload = _call(args, "POST", "/v1/policy/proposals",
                        {"files": policy_files(args.directory), "comment": args.comment})
    elif command in ("approve", "reject"):
        payload = _call(args, "POST", f"/v1/policy/proposals/{args.proposal_id}/{command}",
                        {"comment": args.comment or ""})
    else:  # proposals
        payload = _call(args, "GET", "/v1/policy/proposals")
    if payload is None:
        return 1
    if args.json:
        json.dump(payload, sys.stdout, ensure_ascii=False, indent=2)
        print()
    elif isinstance(payload, list):
        for proposal in payload:
            print(f"{proposal['id']}  {proposal['state']:<10} {proposal['proposed_by_name']:<10} "
                  f"{proposal['proposed_at'][:16]}  {proposal['comment']}")
        if not payload:
            print("no proposals")
    else:
        _print_proposal(payload)
    return 0
