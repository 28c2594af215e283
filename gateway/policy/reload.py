"""Hot reload of the embedded policy: a new policy version goes live only if it compiles and its tests pass.

``ReloadingPolicyEngine`` watches the policy directory (``*.rego``, ``data/*.yaml``) and the catalog
file. A background thread (``start()``; or call ``check_now()`` yourself) compares file mtimes and
sizes every ``poll_seconds``; when they change it hashes the contents, and for a real change it

1. loads the new bundle (``load_bundle``),
2. compiles it (a fresh ``EmbeddedPolicyEngine``) and evaluates the decision once for an empty
   request (the decision must be defined),
3. runs its Rego unit tests (``run_bundle_tests``, in a child process),

and only if all of that succeeds swaps the active engine (one reference assignment, so every
``decide`` sees either the old or the new version, never a mix). Otherwise the last good version
keeps serving and ``last_error`` / ``last_attempt_version`` say what was tried and why it was refused
(for ``/healthz``, see ``status()``).

Every refused reload is logged as an error with its reason; every version that goes live is logged and
handed to ``on_activate`` (the gateway archives it and writes a ``policy_activated`` audit record, see
``gateway.policy.versions``) with the rule ``startup``, ``reload.file_change`` (the poller saw a change)
or ``reload.requested`` (``check_now(force=True)``, e.g. a four-eyes approval). If ``on_activate``
fails, the version does not go live.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gateway.catalog import Catalog, load_catalog
from gateway.errors import PolicyUnavailable
from gateway.policy.decision import Decision, PolicyInput
from gateway.policy.embedded import EmbeddedPolicyEngine
from gateway.policy.engine import ActivationHook, PolicyBundle, load_bundle, run_activation_hook
from gateway.policy.proposals import require_four_eyes_rule
from gateway.policy.rego_syntax import modules_v1_problems
from gateway.policy.testing import run_bundle_tests

log = logging.getLogger("gateway.policy.reload")

#: called with the bundle about to go live and the rule that made it go live (see the module docstring)

_PROBE = PolicyInput(identity={}, action={"operation": "SelectFromColumns", "purpose": ""},
                     resource={"datasets": []}, context={"time": "1970-01-01T00:00:00Z"})


@dataclass(frozen=True)
class _Active:
    engine: EmbeddedPolicyEngine
    catalog: Catalog
    content_digest: str


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ReloadingPolicyEngine:
    """A ``PolicyEngine`` that follows the files on disk, refusing versions that fail compile or tests."""

    def __init__(self, policy_dir: Path, catalog_path: Path, *, poll_seconds: float = 2,
                 run_tests: bool = True, on_activate: ActivationHook | None = None) -> None:
        self._on_activate = on_activate
        self._policy_dir = policy_dir
        self._catalog_path = catalog_path
        self._poll_seconds = poll_seconds
        self._run_tests = run_tests
        self._check_lock = threading.Lock()  # one reload attempt at a time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_error: str | None = None
        self._last_attempt_version: str | None = None
        self._last_attempt_at: str | None = None
        self._last_reload_at: str | None = None
        self._fingerprint = self._stat_fingerprint()
        digest = self._content_digest()
        # the first version must pass the same gate; without it there is nothing to serve (fail closed)
        try:
            active = self._build(digest)
            self._activate(active, "startup")
        except PolicyUnavailable as exc:
            log.error("policy in %s refused at start, nothing to serve: %s", policy_dir, exc.detail)
            raise
        self._active: _Active = active
        self._last_attempt_version = self._active.engine.version
        self._last_reload_at = self._last_attempt_at = _now()

    # -- PolicyEngine ---------------------------------------------------------------------------

    @property
    def version(self) -> str:
        return self._active.engine.version

    def decide(self, policy_input: PolicyInput) -> Decision:
        return self._active.engine.decide(policy_input)

    def evaluate(self, path: str, document: dict[str, Any]) -> Any:
        """Another document of the active policy (e.g. the four-eyes rule); see EmbeddedPolicyEngine."""
        return self._active.engine.evaluate(path, document)

    # -- state for /healthz and callers -----------------------------------------------------------

    @property
    def catalog(self) -> Catalog:
        """The catalog of the active policy version."""
        return self._active.catalog

    @property
    def bundle(self) -> PolicyBundle:
        return self._active.engine.bundle

    @property
    def last_error(self) -> str | None:
        """Why the most recent reload attempt was refused; ``None`` once a later attempt succeeded."""
        return self._last_error

    @property
    def last_attempt_version(self) -> str | None:
        """Version (or file digest, if it did not even load) of the most recent reload attempt."""
        return self._last_attempt_version

    def status(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "last_reload_at": self._last_reload_at,
            "last_attempt_version": self._last_attempt_version,
            "last_attempt_at": self._last_attempt_at,
            "last_error": self._last_error,
            "polling": self._thread is not None and self._thread.is_alive(),
            "poll_seconds": self._poll_seconds,
        }

    # -- polling ----------------------------------------------------------------------------------

    def start(self) -> ReloadingPolicyEngine:
        """Start the background poller (a daemon thread). Idempotent."""
        if self._thread is None or not self._thread.is_alive():
            self._stop.clear()
            self._thread = threading.Thread(target=self._loop, name="policy-reload", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=max(5.0, self._poll_seconds * 2))
            self._thread = None

    def __enter__(self) -> ReloadingPolicyEngine:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self._poll_seconds):
            try:
                self.check_now()
            except Exception as exc:  # never let the poller die
                self._last_error = f"the policy reload check failed: {exc}"
                log.error("policy reload check failed (%s); %s stays in force", type(exc).__name__, self.version)

    def check_now(self, *, force: bool = False) -> bool:
        """One poll. Returns True when a new version went live."""
        with self._check_lock:
            fingerprint = self._stat_fingerprint()
            if fingerprint == self._fingerprint and not force:
                return False
            self._fingerprint = fingerprint
            digest = self._content_digest()
            if digest == self._active.content_digest:
                return False  # touched, not changed
            self._last_attempt_at = _now()
            try:
                candidate = self._build(digest)
                self._activate(candidate, "reload.requested" if force else "reload.file_change")
            except PolicyUnavailable as exc:
                self._last_error = exc.detail
                log.error("policy reload refused (%s), %s stays in force: %s", exc.code, self.version, exc.detail)
                return False
            self._active = candidate  # the atomic swap
            self._last_error = None
            self._last_reload_at = self._last_attempt_at
            return True

    # -- internals --------------------------------------------------------------------------------

    def _files(self) -> list[Path]:
        files = sorted(self._policy_dir.rglob("*.rego"))
        files.extend(sorted((self._policy_dir / "data").glob("*.yaml")))
        files.append(self._catalog_path)
        return files

    def _stat_fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        out: list[tuple[str, int, int]] = []
        for path in self._files():
            try:
                st = path.stat()
            except OSError:
                out.append((str(path), -1, -1))
                continue
            out.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(out)

    def _content_digest(self) -> str:
        digest = hashlib.sha256()
        for path in self._files():
            digest.update(str(path).encode() + b"\0")
            try:
                digest.update(path.read_bytes())
            except OSError:
                digest.update(b"<missing>")
            digest.update(b"\0")
        return "files:sha256:" + digest.hexdigest()[:16]

    def _build(self, content_digest: str) -> _Active:
        """Load, compile, probe and test one candidate; raise PolicyUnavailable if it may not go live."""
        self._last_attempt_version = content_digest
        candidate = load_candidate(self._policy_dir, self._catalog_path, run_tests=self._run_tests,
                                   on_version=self._note_version)
        return _Active(engine=candidate.engine, catalog=candidate.catalog, content_digest=content_digest)

    def _activate(self, candidate: _Active, rule: str) -> None:
        """Hand the version to ``on_activate`` (archive, audit) before it serves; a failure refuses it."""
        bundle = candidate.engine.bundle
        run_activation_hook(self._on_activate, bundle, rule)
        log.info("policy %s in force (%s; from %s)", bundle.version, rule, self._policy_dir)

    def _note_version(self, version: str) -> None:
        self._last_attempt_version = version


#: bundles (policy, data, catalog AND test modules) whose Rego tests passed in this process: the same
#: content gives the same results, so a second runtime or a re-check does not run them again
_PASSED: set[str] = set()


def _tests_key(bundle: PolicyBundle) -> str:
    digest = hashlib.sha256(bundle.version.encode())
    for name, text in sorted(bundle.test_modules.items()):
        digest.update(name.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


@dataclass(frozen=True)
class Candidate:
    """A policy version that compiled, gave a valid decision and (if asked) passed its Rego tests."""

    bundle: PolicyBundle
    catalog: Catalog
    engine: EmbeddedPolicyEngine


def load_candidate(policy_dir: Path, catalog_path: Path, *, run_tests: bool = True,
                   on_version: Callable[[str], None] | None = None) -> Candidate:
    """Load, compile, probe and test the policy in ``policy_dir``; raise PolicyUnavailable if it may not go
    live. Used by the reloader, by four-eyes activation and by the impact preview."""
    try:
        catalog = load_catalog(catalog_path)
    except Exception as exc:
        raise PolicyUnavailable(f"the catalog {catalog_path} cannot be loaded: {exc}",
                                code="policy_invalid") from exc
    try:
        bundle = load_bundle(policy_dir, catalog)
    except PolicyUnavailable:
        raise
    except Exception as exc:  # YAML errors and the like
        raise PolicyUnavailable(f"the policy in {policy_dir} cannot be loaded: {exc}",
                                code="policy_invalid") from exc
    if on_version is not None:
        on_version(bundle.version)
    v0 = modules_v1_problems({**bundle.modules, **bundle.test_modules})
    if v0:  # regopy would accept it, OPA >= 1.0 would not: the two backends must read the same policy
        more = f" (and {len(v0) - 3} more)" if len(v0) > 3 else ""
        raise PolicyUnavailable(f"policy {bundle.version} is not Rego v1 syntax: {'; '.join(v0[:3])}{more}",
                                code="policy_invalid")
    engine = EmbeddedPolicyEngine(bundle)  # raises PolicyUnavailable(policy_compile_error)
    try:
        engine.decide(_PROBE)
    except PolicyUnavailable as exc:
        raise PolicyUnavailable(f"policy {bundle.version} compiles but gives no valid decision: {exc.detail}",
                                code="policy_invalid") from exc
    require_four_eyes_rule(engine, bundle.version)
    if run_tests and _tests_key(bundle) not in _PASSED:
        results = run_bundle_tests(bundle)
        failed = [r for r in results if not r.passed]
        if failed:
            shown = "; ".join(f"{r.package}.{r.name}: {r.error}" for r in failed[:5])
            more = f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
            raise PolicyUnavailable(
                f"policy {bundle.version}: {len(failed)} of {len(results)} Rego tests failed: {shown}{more}",
                code="policy_tests_failed",
            )
        _PASSED.add(_tests_key(bundle))
    return Candidate(bundle=bundle, catalog=catalog, engine=engine)
