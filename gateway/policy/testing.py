"""Rego unit tests (``test_*`` rules in ``*_test.rego``), run with the embedded engine (regopy).

``gateway policy test`` calls ``policy_test_main``. A test passes when its rule evaluates to ``true``;
``false``, undefined or an evaluation error is a failure, as with ``opa test``. The same files run
unchanged under ``opa test policies/`` (OPA >= 1.0).
"""

from __future__ import annotations

import json
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from regopy import Interpreter

from gateway.catalog import Catalog, load_catalog
from gateway.errors import PolicyUnavailable
from gateway.policy.engine import PolicyBundle, load_bundle

_PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
# a top-level rule head starting with test_: `test_x if {`, `test_x := ...`, `test_x {` (v0)
_TEST_RULE_RE = re.compile(r"^(test_\w+)\s*(?:if\b|:=|=|\{|contains\b)", re.MULTILINE)


@dataclass(frozen=True)
class RegoTestResult:
    name: str
    package: str
    passed: bool
    error: str | None = None
    module: str = ""
    duration_ms: float = 0.0


def discover_tests(modules: dict[str, str]) -> list[tuple[str, str, str]]:
    """``(module, package, rule)`` for every ``test_`` rule in the ``*_test.rego`` modules."""
    found: list[tuple[str, str, str]] = []
    for module, text in sorted(modules.items()):
        if not module.endswith("_test.rego"):
            continue
        match = _PACKAGE_RE.search(text)
        if match is None:
            continue
        package = match.group(1)
        seen: set[str] = set()
        for rule in _TEST_RULE_RE.findall(text):
            if rule not in seen:  # incremental definitions of one test name run as one test
                seen.add(rule)
                found.append((module, package, rule))
    return found


def _all_modules(bundle: PolicyBundle) -> dict[str, str]:
    return {**bundle.modules, **bundle.test_modules}


def _interpreter(bundle: PolicyBundle) -> Interpreter:
    interpreter = Interpreter()
    for name, text in _all_modules(bundle).items():
        interpreter.add_module(name, text)
    interpreter.add_data_json(json.dumps(bundle.data, ensure_ascii=False))
    interpreter.set_input_term("{}")
    return interpreter


def run_bundle_tests(bundle: PolicyBundle) -> list[RegoTestResult]:
    """Run every test of ``bundle``. A bundle that does not compile fails every test with that error."""
    tests = discover_tests(_all_modules(bundle))
    try:
        interpreter = _interpreter(bundle)
    except Exception as exc:
        message = f"the policy does not compile: {exc}"
        return [RegoTestResult(rule, package, False, message, module) for module, package, rule in tests]
    results: list[RegoTestResult] = []
    for module, package, rule in tests:
        started = time.perf_counter()
        error: str | None = None
        try:
            text = str(interpreter.query(f"data.{package}.{rule}"))
        except Exception as exc:
            text, error = "", f"evaluation failed: {exc}"
        passed = False
        if error is None:
            if text == "undefined":
                error = "undefined (a condition in the test body did not hold)"
            elif text.startswith("{"):
                expressions = json.loads(text).get("expressions") or []
                value = expressions[0] if expressions else None
                passed = value is True
                if not passed:
                    error = f"evaluated to {json.dumps(value)}, expected true"
            else:
                error = f"evaluation failed: {text.strip()[:500]}"
        elapsed = (time.perf_counter() - started) * 1000
        results.append(RegoTestResult(rule, package, passed, error, module, round(elapsed, 2)))
    return results


def run_rego_tests(policy_dir: Path, catalog: Catalog) -> list[RegoTestResult]:
    """Load ``policy_dir`` (modules, data, and ``catalog`` as ``data.catalog``) and run its Rego tests."""
    return run_bundle_tests(load_bundle(policy_dir, catalog))


def policy_test_main(policy_dir: Path, catalog_path: Path, *, out: TextIO | None = None) -> int:
    """``gateway policy test``: print one line per test and a summary.

    Exit code 0 when every test passed, 1 when any failed or none were found, 2 when the policy or
    the catalog cannot be loaded.
    """
    stream = out if out is not None else sys.stdout
    try:
        catalog = load_catalog(catalog_path)
    except Exception as exc:
        print(f"ERROR  cannot load the catalog {catalog_path}: {exc}", file=stream)
        return 2
    try:
        bundle = load_bundle(policy_dir, catalog)
    except PolicyUnavailable as exc:
        print(f"ERROR  cannot load the policy in {policy_dir}: {exc.detail}", file=stream)
        return 2
    results = run_bundle_tests(bundle)
    print(f"policy {bundle.version} from {policy_dir}", file=stream)
    for r in results:
        status = "PASS" if r.passed else "FAIL"
        print(f"{status}  {r.package}.{r.name}  ({r.module}, {r.duration_ms:.1f} ms)", file=stream)
        if r.error:
            print(f"      {r.error}", file=stream)
    failed = [r for r in results if not r.passed]
    if not results:
        print("FAIL  no test_ rules found in *_test.rego", file=stream)
        return 1
    print(f"{len(results) - len(failed)}/{len(results)} passed, {len(failed)} failed", file=stream)
    return 1 if failed else 0
