"""Rego unit tests (``test_*`` rules in ``*_test.rego``), run with the embedded engine (regopy).

``gateway policy test`` calls ``policy_test_main``. A test passes when its rule evaluates to ``true``;
``false``, undefined or an evaluation error is a failure, as with ``opa test``. The same files run
unchanged under OPA >= 1.0 from a bundle: ``gateway policy bundle /tmp/b && opa test /tmp/b`` (not
``opa test policies/``: OPA's loader would put ``data/*.yaml`` under ``data.data`` and the raw catalog
at the data root; see gateway/policy/bundle.py).

The tests run in a child process (``python -m gateway.policy.testing``) by default: regopy 1.5 can
crash the whole process (SIGSEGV) on some Rego constructs (e.g. ``with input as {...}`` over rules
that call builtins), and neither the CLI nor the reloading gateway may die from a bad test module.
A crash fails the test that was running and the remaining tests run in a fresh child.
Tests are compiled in small groups: the policy modules plus one test module cut down to a few of
its ``test_`` rules (every other statement of the module is kept). regopy's compiled plan grows with
every ``with`` in the module (about 70 MB and 0.14 s per test on the reference policy), so one plan for
all tests needed 4 GB; groups of ``CHUNK_TESTS`` keep a child below half a gigabyte. Each group is
compiled once (regopy ``build`` with its tests as entrypoints) and each test evaluated from that plan.
A test module is therefore compiled without the other test modules: helpers shared between test
modules belong in a policy module.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, TextIO

from regopy import Interpreter

from gateway.catalog import Catalog, load_catalog
from gateway.errors import PolicyUnavailable
from gateway.policy.engine import PolicyBundle, load_bundle

_PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][\w.]*)\s*$", re.MULTILINE)
# a top-level rule head starting with test_: `test_x if {`, `test_x := ...`, `test_x {` (v0)
_TEST_RULE_RE = re.compile(r"^(test_\w+)\s*(?:if\b|:=|=|\{|contains\b)", re.MULTILINE)
_PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: per child process; generous, since compiling a bundle with many tests takes a few seconds
WORKER_TIMEOUT_S = 300.0
#: tests compiled together (see the module docstring)
CHUNK_TESTS = 6
#: child processes running test groups at the same time
PARALLEL_CHILDREN = 2
# the first line of a top-level statement: an identifier, `package`, `import`, `default` or a comment
_STATEMENT_START_RE = re.compile(r"^[A-Za-z_#]")


@dataclass(frozen=True)
class RegoTestResult:
    name: str
    package: str
    passed: bool
    error: str | None = None
    module: str = ""
    duration_ms: float = 0.0


TestId = tuple[str, str, str]  # (module, package, rule)


def discover_tests(modules: dict[str, str]) -> list[TestId]:
    """``(module, package, rule)`` for every ``test_`` rule in the ``*_test.rego`` modules."""
    found: list[TestId] = []
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


def all_modules(bundle: PolicyBundle) -> dict[str, str]:
    """Policy modules plus test modules (``load_bundle`` keeps the tests apart)."""
    return {**bundle.modules, **bundle.test_modules}


def _entrypoint(package: str, rule: str) -> str:
    return package.replace(".", "/") + "/" + rule


def _judge(text: str) -> tuple[bool, str | None]:
    if text == "undefined":
        return False, "undefined (a condition in the test body did not hold)"
    if not text.startswith("{"):
        return False, f"evaluation failed: {text.strip()[:500]}"
    expressions = json.loads(text).get("expressions") or []
    value = expressions[0] if expressions else None
    if value is True:
        return True, None
    return False, f"evaluated to {json.dumps(value, ensure_ascii=False)}, expected true"


def _statements(text: str) -> list[str]:
    """Split a module into top-level statements (each starts in column 0; bodies are indented)."""
    statements: list[list[str]] = []
    for line in text.splitlines(keepends=True):
        if _STATEMENT_START_RE.match(line) or not statements:
            statements.append([line])
        else:
            statements[-1].append(line)
    return ["".join(lines) for lines in statements]


def module_with_only(text: str, keep: set[str]) -> str:
    """``text`` without the ``test_`` rules that are not in ``keep`` (all other statements stay)."""
    out: list[str] = []
    for statement in _statements(text):
        match = _TEST_RULE_RE.match(statement)
        if match is None or match.group(1) in keep:
            out.append(statement)
    return "".join(out)


def _chunks(tests: list[TestId]) -> list[list[TestId]]:
    chunks: list[list[TestId]] = []
    for test in tests:
        if chunks and chunks[-1][0][0] == test[0] and len(chunks[-1]) < CHUNK_TESTS:
            chunks[-1].append(test)
        else:
            chunks.append([test])
    return chunks


def _run_in_process(modules: dict[str, str], data: dict[str, Any], tests: list[TestId],
                    emit: Any = None) -> list[RegoTestResult]:
    """Compile each group of tests, evaluate each test. ``emit`` is called with each result as it lands."""
    results: list[RegoTestResult] = []

    def record(result: RegoTestResult) -> None:
        results.append(result)
        if emit is not None:
            emit(result)

    policy = {n: t for n, t in modules.items() if not n.endswith("_test.rego")}
    # ensure_ascii=False: regopy does not decode \\uXXXX escapes in JSON strings
    data_json = json.dumps(data, ensure_ascii=False)
    for chunk in _chunks(tests):
        module = chunk[0][0]
        compiled = {**policy, module: module_with_only(modules[module], {rule for _, _, rule in chunk})}
        try:
            interpreter = Interpreter()
            for name, text in compiled.items():
                interpreter.add_module(name, text)
            interpreter.add_data_json(data_json)
            interpreter.set_input_term("{}")
            plan = interpreter.build(None, [_entrypoint(p, r) for _, p, r in chunk])
        except Exception as exc:
            message = f"the policy does not compile: {exc}"
            for test_module, package, rule in chunk:
                record(RegoTestResult(rule, package, False, message, test_module))
            continue
        for test_module, package, rule in chunk:
            started = time.perf_counter()
            try:
                passed, error = _judge(str(interpreter.query_bundle_entrypoint(plan, _entrypoint(package, rule))))
            except Exception as exc:
                passed, error = False, f"evaluation failed: {exc}"
            elapsed = round((time.perf_counter() - started) * 1000, 2)
            record(RegoTestResult(rule, package, passed, error, test_module, elapsed))
        del plan, interpreter
    return results


def _child(modules: dict[str, str], data: dict[str, Any],
           tests: list[TestId]) -> tuple[list[RegoTestResult], str | None]:
    """Run ``tests`` in a child process. Returns the results it delivered and, if it died, why."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(_PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    payload = json.dumps({"modules": modules, "data": data, "tests": tests}, ensure_ascii=False)
    try:
        proc = subprocess.run(  # our own interpreter and module, no shell
            [sys.executable, "-m", "gateway.policy.testing", "--worker"],
            input=payload, capture_output=True, text=True, encoding="utf-8",
            timeout=WORKER_TIMEOUT_S, env=env, check=False,
        )
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout
        stdout = out.decode("utf-8", "replace") if isinstance(out, bytes) else (out or "")
        why: str | None = f"the Rego engine did not finish within {WORKER_TIMEOUT_S:.0f} s"
    else:
        stdout = proc.stdout
        if proc.returncode == 0:
            why = None
        elif proc.returncode < 0:
            detail = proc.stderr.strip().splitlines()[-1:] if proc.stderr.strip() else []
            why = f"the Rego engine crashed (signal {-proc.returncode})" + (f": {detail[0]}" if detail else "")
        else:
            why = f"the test runner failed (exit code {proc.returncode}): {proc.stderr.strip()[-300:]}"
    results = [RegoTestResult(**json.loads(line)) for line in stdout.splitlines() if line.startswith("{")]
    if why is None and len(results) < len(tests):
        why = "the test runner stopped early"
    return results, why


def _run_isolated(modules: dict[str, str], data: dict[str, Any], tests: list[TestId]) -> list[RegoTestResult]:
    """The tests in up to ``PARALLEL_CHILDREN`` children at once, each taking every other group of tests
    (compiling is CPU-bound and single-threaded in regopy)."""
    groups = _chunks(tests)
    workers = max(1, min(PARALLEL_CHILDREN, os.cpu_count() or 1, len(groups)))
    if workers == 1:
        return _run_isolated_serial(modules, data, tests)
    shares = [[t for g in groups[i::workers] for t in g] for i in range(workers)]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(lambda share: _run_isolated_serial(modules, data, share), shares))
    order = {test: i for i, test in enumerate(tests)}
    results = [r for part in parts for r in part]
    results.sort(key=lambda r: order.get((r.module, r.package, r.name), len(order)))
    return results


def _run_isolated_serial(modules: dict[str, str], data: dict[str, Any],
                         tests: list[TestId]) -> list[RegoTestResult]:
    """All tests in one child; after a crash, the rest in fresh children.

    A crash before the first result means compiling failed: then each test module is retried on its
    own (with the policy modules), so one bad test module cannot fail the others.
    """
    policy = {n: t for n, t in modules.items() if not n.endswith("_test.rego")}
    results: list[RegoTestResult] = []
    pending: list[tuple[dict[str, str], list[TestId], bool]] = [(modules, list(tests), True)]
    while pending:
        mods, remaining, may_split = pending.pop(0)
        while remaining:
            got, why = _child(mods, data, remaining)
            results.extend(got)
            remaining = remaining[len(got):]
            if not remaining or why is None:
                break
            if not got and may_split:
                by_module: dict[str, list[TestId]] = {}
                for test in remaining:
                    by_module.setdefault(test[0], []).append(test)
                if len(by_module) > 1:
                    pending.extend(({**policy, m: modules[m]}, ts, False) for m, ts in by_module.items())
                    break
            if not got:  # cannot even compile this set: every test of it fails with the reason
                results.extend(RegoTestResult(r, p, False, f"{why} while compiling {m}", m) for m, p, r in remaining)
                break
            module, package, rule = remaining.pop(0)
            results.append(RegoTestResult(rule, package, False, f"{why} evaluating this test", module))
    order = {test: i for i, test in enumerate(tests)}
    results.sort(key=lambda r: order.get((r.module, r.package, r.name), len(order)))
    return results


def run_bundle_tests(bundle: PolicyBundle, *, isolated: bool = True) -> list[RegoTestResult]:
    """Run every Rego test of ``bundle``.

    A bundle that does not compile fails every test with that error. ``isolated`` runs regopy in a
    child process so that an engine crash fails tests instead of killing the caller.
    """
    modules = all_modules(bundle)
    tests = discover_tests(modules)
    if isolated:
        return _run_isolated(modules, bundle.data, tests)
    return _run_in_process(modules, bundle.data, tests)


def run_rego_tests(policy_dir: Path, catalog: Catalog, *, isolated: bool = True) -> list[RegoTestResult]:
    """Load ``policy_dir`` (modules, data, and ``catalog`` as ``data.catalog``) and run its Rego tests."""
    return run_bundle_tests(load_bundle(policy_dir, catalog), isolated=isolated)


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
    except Exception as exc:  # YAML errors and the like
        print(f"ERROR  cannot load the policy in {policy_dir}: {exc}", file=stream)
        return 2
    results = run_bundle_tests(bundle)
    print(f"policy {bundle.version} from {policy_dir}", file=stream)
    for r in results:
        status = "PASS" if r.passed else "FAIL"
        print(f"{status}  {r.package}.{r.name}  ({r.module}, {r.duration_ms:.1f} ms)", file=stream)
        if r.error:
            print(f"      {r.error}", file=stream)
    if not results:
        print("FAIL  no test_ rules found in *_test.rego", file=stream)
        return 1
    failed = [r for r in results if not r.passed]
    print(f"{len(results) - len(failed)}/{len(results)} passed, {len(failed)} failed", file=stream)
    return 1 if failed else 0


def _worker() -> int:
    """Child side of ``_run_isolated``: bundle JSON on stdin, one JSON result per line on stdout."""
    request = json.loads(sys.stdin.read())
    tests = [(m, p, r) for m, p, r in request["tests"]]

    def emit(result: RegoTestResult) -> None:
        sys.stdout.write(json.dumps(asdict(result), ensure_ascii=False) + "\n")
        sys.stdout.flush()

    _run_in_process(request["modules"], request["data"], tests, emit)
    return 0


if __name__ == "__main__":
    if sys.argv[1:] == ["--worker"]:
        raise SystemExit(_worker())
    if len(sys.argv) == 3:
        raise SystemExit(policy_test_main(Path(sys.argv[1]), Path(sys.argv[2])))
    print("usage: python -m gateway.policy.testing POLICY_DIR CATALOG_YAML", file=sys.stderr)
    raise SystemExit(2)
