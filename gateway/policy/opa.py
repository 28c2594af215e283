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
``push_bundle`` uploads a ``PolicyBundle`` through the policy and data APIs instead (``opa.push_policy``);
it exists for tests and for an OPA without a bundle of its own.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import requests
from opa_client import OpaClient

from gateway.errors import PolicyUnavailable
from gateway.policy.decision import Decision, PolicyInput
from gateway.policy.engine import DECISION_PATH, PolicyBundle, parse_decision


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
    is bounded by ``timeout_s``.
    """

    def __init__(self, url: str, *, version: str, timeout_s: float = 2.0, retries: int = 1,
                 token: str | None = None, check_revision: bool = False, revision_check_seconds: float = 5.0,
                 on_activate: Callable[[PolicyBundle, str], None] | None = None) -> None:
        self._url = url
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
        if self._on_activate is not None:
            self._on_activate(bundle, rule)
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
            raise PolicyUnavailable(
                f"OPA at {self._url} serves bundle revision(s) {shown}, but this gateway runs policy "
                f"{self._version}; rebuild the bundle from the gateway's policy directory "
                "(gateway policy bundle DIR) and restart OPA, or restart the gateway with the bundle's policy; "
                "no data is released", code="policy_version_mismatch")

    def status(self) -> dict[str, Any]:
        """For ``/healthz``: where OPA's policy comes from and, for a bundle, whether its revision matches
        (checked now). ``serving`` is False while decisions fail closed."""
        if self._check_revision:
            with contextlib.suppress(PolicyUnavailable):  # the error is kept for the answer below
                self.verify_revision(force=True)
        return {
            "version": self._version,
            "source": "bundle" if self._check_revision else "pushed or pinned (no revision check)",
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
    (grants, catalog, ...) with ``PUT /v1/data``.

    For tests and docker-compose development only. In production OPA reads the mounted policy
    directory / bundle and nothing writes to its policy API. Test modules (``*_test.rego``) are left
    out unless ``include_tests``. Raises ``PolicyUnavailable`` when OPA refuses anything.
    """
    client = _client(url, timeout_s=timeout_s, retries=2, token=token)
    try:
        for module_id, text in sorted(bundle.modules.items()):
            if module_id.endswith("_test.rego") and not include_tests:
                continue
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
