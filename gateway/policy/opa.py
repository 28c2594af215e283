"""The OPA policy backend: the same Rego, evaluated by an Open Policy Agent server over its REST API.

``OpaPolicyEngine`` POSTs the policy input to OPA's data API (``POST /v1/data/gateway/authz/decision``
with ``{"input": ...}``) through opa-python-client and validates the answer with ``parse_decision``,
exactly like the embedded backend. It fails closed: a transport error, a timeout, any status other
than 200, a body that is not JSON, or an undefined result (no ``"result"`` key) raise
``PolicyUnavailable`` and no data is released.

In production OPA loads the policy itself from a bundle (``gateway policy bundle DIR``, mounted
read-only into the OPA container: ``opa run --server --bundle DIR``). The gateway computes the version
of its own ``policy_dir`` and, with ``check_revision``, checks that OPA serves exactly that version: it
reads ``GET /v1/data/system/bundles`` (OPA keeps each activated bundle's ``.manifest`` at
``data.system.bundles[<name>].manifest``; a bundle loaded from disk is named by its path) before a
decision at most every ``revision_check_seconds`` and on every ``status()`` (``/healthz``). Unless
exactly one bundle is loaded and its ``revision`` equals the gateway's version, decisions fail closed
with ``policy_version_mismatch`` (503) and ``/healthz`` answers 503 naming both versions.

Policy changes (four-eyes activation, ``check_now``): with ``policy_dir`` the engine *re-pins*. When OPA
serves exactly one bundle whose revision differs from the pinned version, the engine loads its own
``policy_dir`` through the same gate as a reload (``load_candidate``: compiles, decides, passes its Rego
tests); only if that candidate's version equals OPA's revision does it adopt it (``on_activate`` archives
and audits ``policy_activated`` first). Otherwise it keeps failing closed and ``status()`` says why. With
``bundle_dir`` (``opa.bundle_dir``, the directory OPA serves with ``opa run --server --watch --bundle DIR``)
``check_now(force=True)`` first publishes the tested ``policy_dir`` there (``publish_bundle``) and waits
for OPA to serve it.

``push_bundle`` uploads a ``PolicyBundle`` through the policy and data APIs instead (``opa.push_policy``);
it exists for tests and for an OPA without a bundle of its own. It also deletes the modules a previous
push left that the bundle no longer has.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from gateway.errors import PolicyUnavailable
from gateway.policy.decision import Decision, PolicyInput
from gateway.policy.engine import (
    DECISION_PATH,
    ActivationHook,
    PolicyBundle,
    load_bundle,
    parse_decision,
    run_activation_hook,
)

log = logging.getLogger(__name__)


class _GatewayOpaClient(OpaClient):  # type: ignore[misc]  # opa-python-client ships no type hints
    """opa-python-client plus the two calls it does not offer in the form we need.

    ``query_rule`` does not expose the HTTP status (we insist on exactly 200), and
    ``update_or_create_data`` only accepts a mapping and cannot address the data root ``/v1/data``.
    Both reuse the client's session, so retries, TLS, headers and the bearer token stay configured in
    one place.
    """

    def post_data(self, path: str, input_data: dict[str, Any]) -> requests.Response:
        url = f"{self.root_url}/data/{path.strip('/')}"
        response: requests.Response = self._session.post(url, json={"input": input_data}, timeout=self.timeout)
        return response

    def get_data(self, path: str) -> requests.Response:
        response: requests.Response = self._session.get(f"{self.root_url}/data/{path.strip('/')}",
                                                        timeout=self.timeout)
        return response

    def policy_ids(self) -> list[str]:
        """The ids of every module OPA holds (``GET /v1/policies``); raises requests errors or ValueError."""
        response: requests.Response = self._session.get(f"{self.root_url}/policies", timeout=self.timeout)
        if response.status_code != 200:
            raise ValueError(f"GET /v1/policies answered HTTP {response.status_code}")
        result = response.json().get("result") or []
        return [str(entry["id"]) for entry in result if isinstance(entry, dict) and "id" in entry]

    def delete_policy_id(self, policy_id: str) -> requests.Response:
        response: requests.Response = self._session.delete(f"{self.root_url}/policies/{policy_id}",
                                                           timeout=self.timeout)
        return response

    def put_data_root(self, document: dict[str, Any]) -> requests.Response:
        response: requests.Response = self._session.put(
            f"{self.root_url}/data", json=document, timeout=self.timeout
        )
        return response


def _client(url: str, *, timeout_s: float, retries: int, token: str | None = None) -> _GatewayOpaClient:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"the OPA URL must look like http://host:8181, got {url!r}")
    if parts.path not in ("", "/"):
        raise ValueError(f"the OPA URL must not carry a path (the client adds /v1/...), got {url!r}")
    port = parts.port or (443 if parts.scheme == "https" else 8181)
    return _GatewayOpaClient(
        host=parts.hostname,
        port=port,
        ssl=parts.scheme == "https",
        timeout=timeout_s,
        retries=retries,
        token=token,
    )


class OpaPolicyEngine:
    """Policy decisions from an OPA server (``url`` like ``http://opa:8181``).

    ``version`` is the policy version OPA serves (the bundle's content hash); it is stamped into
    every decision. ``retries`` applies to connection failures and 500/502/504 only; every attempt
    is bounded by ``timeout_s``. ``policy_dir`` and ``catalog_path`` (the gateway's own policy) allow
    re-pinning and ``check_now``; ``bundle_dir`` is where ``check_now(force=True)`` publishes the bundle.
    """

    def __init__(self, url: str, *, version: str, timeout_s: float = 2.0, retries: int = 1,
                 token: str | None = None, check_revision: bool = False, revision_check_seconds: float = 5.0,
                 on_activate: ActivationHook | None = None,
                 policy_dir: Path | None = None, catalog_path: Path | None = None, bundle_dir: Path | None = None,
                 publish_wait_seconds: float = 15.0) -> None:
        self._url = url
        self._policy_dir = policy_dir
        self._catalog_path = catalog_path
        self._bundle_dir = bundle_dir
        self._publish_wait_seconds = publish_wait_seconds
        self._refused: dict[str, str] = {}  # OPA revision -> why the local policy was not adopted for it
        self._repin_note: str | None = None
        self._version = version
        self._client = _client(url, timeout_s=timeout_s, retries=retries, token=token)
        self._check_revision = check_revision
        self._revision_check_seconds = revision_check_seconds
        self._on_activate = on_activate
        self._revision_lock = threading.Lock()
        self._revision_ok_at: float | None = None  # time.monotonic() of the last matching check
        self._served: dict[str, str] | None = None
        self._revision_error: str | None = None

    @property
    def version(self) -> str:
        return self._version

    @property
    def url(self) -> str:
        return self._url

    def close(self) -> None:
        self._client.close_connection()

    def install(self, bundle: PolicyBundle, *, rule: str = "opa.push") -> None:
        """Upload ``bundle`` (``push_bundle``) and pin its version; only with ``opa.push_policy``.
        ``on_activate`` (archive, audit; rule ``opa.push``) runs first: a failure there uploads nothing."""
        self._activate(bundle, rule)
        push_bundle(self._url, bundle)
        self._version = bundle.version

    def served_revisions(self) -> dict[str, str]:
        """Bundle name -> manifest ``revision`` of every bundle OPA has activated
        (``GET /v1/data/system/bundles``). Raises PolicyUnavailable when OPA cannot say."""
        try:
            response = self._client.get_data("system/bundles")
        except requests.RequestException as exc:
            raise PolicyUnavailable("the OPA policy server cannot be reached to read its bundle revision; "
                                    "no data is released", code="policy_unreachable") from exc
        try:
            body = response.json() if response.status_code == 200 else None
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise PolicyUnavailable(f"the OPA policy server answered HTTP {response.status_code} for its bundle "
                                    "list (GET /v1/data/system/bundles); no data is released",
                                    code="policy_eval_error")
        bundles = body.get("result") or {}
        if not isinstance(bundles, dict):
            raise PolicyUnavailable("OPA's data.system.bundles is not an object; no data is released",
                                    code="policy_eval_error")
        return {str(name): str((entry or {}).get("manifest", {}).get("revision", ""))
                for name, entry in bundles.items() if isinstance(entry, dict)}

    def verify_revision(self, *, force: bool = False) -> None:
        """With ``check_revision``: fail closed unless OPA serves exactly one bundle of this version.
        A match is trusted for ``revision_check_seconds``; a mismatch is re-checked on every call."""
        if not self._check_revision:
            return
        with self._revision_lock:
            ok_at = self._revision_ok_at
            if not force and ok_at is not None and time.monotonic() - ok_at < self._revision_check_seconds:
                return
            try:
                served = self.served_revisions()
                self._served = served
                if not self._adopt_served(served):
                    self._raise_unless_match(served)
            except PolicyUnavailable as exc:
                self._revision_ok_at = None
                self._revision_error = exc.detail
                raise
            self._revision_ok_at = time.monotonic()
            self._revision_error = None

    def _raise_unless_match(self, served: dict[str, str]) -> None:
        if not served:
            raise PolicyUnavailable(
                f"OPA at {self._url} serves no policy bundle; build one from the gateway's policy directory "
                f"(gateway policy bundle DIR) and start OPA with it (opa run --server --bundle DIR); "
                "no data is released", code="policy_version_mismatch")
        if len(served) != 1 or next(iter(served.values())) != self._version:
            shown = ", ".join(f"{name}: {rev or '(no revision)'}" for name, rev in sorted(served.items()))
            why = f" ({self._repin_note})" if self._repin_note else ""
            raise PolicyUnavailable(
                f"OPA at {self._url} serves bundle revision(s) {shown}, but this gateway runs policy "
                f"{self._version}{why}; rebuild the bundle from the gateway's policy directory "
                "(gateway policy bundle DIR) and restart OPA, or restart the gateway with the bundle's policy; "
                "no data is released", code="policy_version_mismatch")

    # -- re-pinning and activation ----------------------------------------------------------------

    def _adopt_served(self, served: dict[str, str]) -> bool:
        """Adopt OPA's single served revision if the local ``policy_dir`` is exactly that version and passes
        the reload gate. True when the (possibly new) pinned version matches what OPA serves."""
        self._repin_note = None
        if len(served) != 1:
            return False
        revision = next(iter(served.values()))
        if revision == self._version:
            return True
        if self._policy_dir is None or self._catalog_path is None or not revision:
            return False
        if revision in self._refused:
            self._repin_note = self._refused[revision]
            return False
        try:
            local = self._local_version()
        except PolicyUnavailable as exc:
            self._repin_note = f"the policy directory {self._policy_dir} cannot be loaded: {exc.detail}"
            return False
        if local != revision:
            self._repin_note = f"the policy directory {self._policy_dir} holds {local}"
            return False
        try:
            self._activate(self._candidate_bundle(), "opa.bundle_revision")
        except PolicyUnavailable as exc:
            self._refused[revision] = self._repin_note = f"{revision} was not adopted: {exc.detail}"
            return False
        self._version = revision
        log.info("policy %s in force (OPA at %s serves it)", revision, self._url)
        return True

    def _local_version(self) -> str:
        from gateway.catalog import load_catalog

        assert self._policy_dir is not None and self._catalog_path is not None  # checked by the callers
        try:
            return load_bundle(self._policy_dir, load_catalog(self._catalog_path)).version
        except PolicyUnavailable:
            raise
        except Exception as exc:  # missing files, YAML errors, ...
            raise PolicyUnavailable(f"{type(exc).__name__}: {exc}", code="policy_invalid") from exc

    def _candidate_bundle(self) -> PolicyBundle:
        """The local policy through the reload gate (compiles, decides, passes its Rego tests)."""
        from gateway.policy.reload import load_candidate

        assert self._policy_dir is not None and self._catalog_path is not None  # checked by the callers
        return load_candidate(self._policy_dir, self._catalog_path).bundle

    def _activate(self, bundle: PolicyBundle, rule: str) -> None:
        """``on_activate`` (archive, audit) before the version decides; a failure refuses it."""
        run_activation_hook(self._on_activate, bundle, rule)

    def check_now(self, *, force: bool = False) -> bool:
        """Bring the pinned version in line with the policy directory; True when a new version went live.

        Bundle mode: with ``force`` and a ``bundle_dir``, publish the tested ``policy_dir`` as OPA's bundle
        and wait (``publish_wait_seconds``) until OPA serves it; then check OPA's revision and re-pin.
        Push mode (no revision check): with ``force``, push the tested ``policy_dir``. Never raises for a
        refused version: the old one stays in force and ``status()["last_error"]`` says why.
        """
        before = self._version
        try:
            if not self._check_revision:
                if force and self._policy_dir is not None and self._catalog_path is not None:
                    bundle = self._candidate_bundle()
                    if bundle.version != self._version:
                        self.install(bundle)
                return self._version != before
            if force and self._bundle_dir is not None and self._policy_dir is not None:
                self._publish()
            self.verify_revision(force=True)
        except PolicyUnavailable as exc:
            self._revision_error = exc.detail
            log.error("policy check refused (%s), %s stays in force: %s", exc.code, self._version, exc.detail)
        return self._version != before

    def _publish(self) -> None:
        """Write the tested local policy into ``bundle_dir`` and wait until OPA serves its revision."""
        from gateway.policy.bundle import publish_bundle

        assert self._bundle_dir is not None
        bundle = self._candidate_bundle()
        try:
            publish_bundle(bundle, self._bundle_dir)
        except (OSError, ValueError) as exc:
            raise PolicyUnavailable(
                f"the bundle of {bundle.version} cannot be written to opa.bundle_dir {self._bundle_dir} "
                f"({type(exc).__name__}: {exc}); make it writable for the gateway (and mounted read-only "
                "into OPA, which serves it with --watch)", code="policy_not_activated") from exc
        deadline = time.monotonic() + self._publish_wait_seconds
        while True:
            served = self.served_revisions()
            if list(served.values()) == [bundle.version] or time.monotonic() > deadline:
                return
            time.sleep(0.05)

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: where OPA's policy comes from and, for a bundle, whether its revision matches
        (checked now). ``serving`` is False while decisions fail closed."""
        if self._check_revision:
            with contextlib.suppress(PolicyUnavailable):  # the error is kept for the answer below
                self.verify_revision(force=True)
        return {
            "version": self._version,
            "source": "bundle" if self._check_revision else "pushed or pinned (no revision check)",
            "bundle_dir": str(self._bundle_dir) if self._bundle_dir is not None else None,
            "served_revisions": self._served,
            "last_error": self._revision_error,
            "serving": self._revision_error is None,
        }

    def healthy(self) -> bool:
        """OPA's ``GET /health`` (for /healthz); never raises."""
        return bool(self._client.check_health())

    def decide(self, policy_input: PolicyInput) -> Decision:
        self.verify_revision()
        try:
            response = self._client.post_data(DECISION_PATH, policy_input.model_dump(mode="json"))
        except requests.Timeout as exc:
            raise PolicyUnavailable(
                "the OPA policy server did not answer in time; no data is released", code="policy_timeout"
            ) from exc
        except requests.RequestException as exc:
            raise PolicyUnavailable(
                "the OPA policy server cannot be reached; no data is released", code="policy_unreachable"
            ) from exc
        if response.status_code != 200:
            raise PolicyUnavailable(
                f"the OPA policy server answered HTTP {response.status_code}; no data is released",
                code="policy_eval_error",
            )
        try:
            body = response.json()
        except ValueError as exc:
            raise PolicyUnavailable(
                "the OPA policy server answered with something that is not JSON; no data is released",
                code="policy_eval_error",
            ) from exc
        if not isinstance(body, dict) or "result" not in body:
            raise PolicyUnavailable(
                f"the decision data.{DECISION_PATH.replace('/', '.')} is undefined on the OPA server "
                "(policy not loaded?); no data is released",
                code="policy_no_decision",
            )
        return parse_decision(body["result"], self._version)

    def evaluate(self, path: str, document: dict[str, Any]) -> Any:
        """The document ``data.<path>`` for ``document`` as input (e.g. ``gateway/four_eyes/decision``);
        ``None`` when OPA says it is undefined. Any transport or protocol failure raises PolicyUnavailable."""
        try:
            response = self._client.post_data(path, document)
        except requests.RequestException as exc:
            raise PolicyUnavailable("the OPA policy server cannot be reached", code="policy_unreachable") from exc
        if response.status_code != 200:
            raise PolicyUnavailable(f"the OPA policy server answered HTTP {response.status_code}",
                                    code="policy_eval_error")
        try:
            body = response.json()
        except ValueError as exc:
            raise PolicyUnavailable("the OPA policy server answered with something that is not JSON",
                                    code="policy_eval_error") from exc
        return body.get("result") if isinstance(body, dict) else None


def push_bundle(url: str, bundle: PolicyBundle, *, include_tests: bool = False, timeout_s: float = 10.0,
                token: str | None = None) -> None:
    """Upload ``bundle`` to the OPA server at ``url``: each Rego module with ``PUT /v1/policies/{id}``
    (the id is the module's path relative to the policy directory) and the whole data document
    (grants, catalog, ...) with ``PUT /v1/data``. Modules of an earlier push that the bundle no longer
    has are deleted first (``GET /v1/policies``, ``DELETE /v1/policies/{id}``); only ids shaped like the
    gateway's (a relative ``NAME.rego`` path, see ``owned_module_id``) are touched.

    For tests and docker-compose development only. In production OPA reads the mounted policy
    directory / bundle and nothing writes to its policy API. Test modules (``*_test.rego``) are left
    out unless ``include_tests``. Raises ``PolicyUnavailable`` when OPA refuses anything.
    """
    client = _client(url, timeout_s=timeout_s, retries=2, token=token)
    modules = {**bundle.modules, **(bundle.test_modules if include_tests else {})}
    if not include_tests:
        modules = {i: t for i, t in modules.items() if not i.endswith("_test.rego")}
    try:
        _delete_stale_modules(client, url, set(modules))
        for module_id, text in sorted(modules.items()):
            try:
                client.update_policy_from_string(text, module_id, rego_compat=False)
            except Exception as exc:  # RegoParseError, requests errors, ...
                raise PolicyUnavailable(
                    f"OPA at {url} refused policy module {module_id}: {exc}", code="policy_push_failed"
                ) from exc
        try:
            response = client.put_data_root(bundle.data)
        except requests.RequestException as exc:
            raise PolicyUnavailable(
                f"OPA at {url} cannot be reached to upload the data document", code="policy_push_failed"
            ) from exc
        if response.status_code != 204:
            raise PolicyUnavailable(
                f"OPA at {url} refused the data document (HTTP {response.status_code})",
                code="policy_push_failed",
            )
    finally:
        client.close_connection()


#: the module ids ``push_bundle`` uses: paths relative to a policy directory (as proposals name files)
_OWNED_ID_RE = re.compile(r"^(?:[A-Za-z0-9_\-]+/)*[A-Za-z0-9_\-]+\.rego$")


def owned_module_id(module_id: str) -> bool:
    """Whether ``module_id`` is one ``push_bundle`` may have created (``gateway.rego``, ``sub/x.rego``).
    Modules OPA loaded from a bundle or a file have absolute or ``file://`` ids and are never touched."""
    return bool(_OWNED_ID_RE.match(module_id))


def _delete_stale_modules(client: _GatewayOpaClient, url: str, wanted: set[str]) -> None:
    try:
        present = client.policy_ids()
    except (requests.RequestException, ValueError, KeyError) as exc:
        raise PolicyUnavailable(f"OPA at {url} cannot list its policy modules (GET /v1/policies): {exc}",
                                code="policy_push_failed") from exc
    for module_id in sorted(set(present) - wanted):
        if not owned_module_id(module_id):
            continue
        try:
            response = client.delete_policy_id(module_id)
        except requests.RequestException as exc:
            raise PolicyUnavailable(f"OPA at {url} cannot be reached to delete the stale module {module_id}",
                                    code="policy_push_failed") from exc
        if response.status_code not in (200, 404):
            raise PolicyUnavailable(f"OPA at {url} refused to delete the stale module {module_id} "
                                    f"(HTTP {response.status_code})", code="policy_push_failed")
