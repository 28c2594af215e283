"""A stand-in for an OPA server, for tests only - NOT Open Policy Agent.

No OPA binary can be installed on this machine, so the tests of ``OpaPolicyEngine`` and
``push_bundle`` talk to this small HTTP server instead. It speaks the subset of OPA's documented REST
API (https://www.openpolicyagent.org/docs/rest-api) that opa-python-client and the gateway use:

* ``PUT/GET/DELETE /v1/policies/{id}``, ``GET /v1/policies`` - the policy API (Rego text in, ``{}`` or
  ``{"result": {"id": ..., "raw": ...}}`` out; a module that does not compile gets 400 with OPA's
  ``invalid_parameter`` error shape),
* ``PUT /v1/data`` and ``PUT /v1/data/{path}`` (204), ``GET /v1/data/{path}``, ``DELETE /v1/data/{path}``,
* ``POST /v1/data/{path}`` with ``{"input": ...}`` - returns ``{"result": ...}``, and omits ``"result"``
  when the document is undefined, as OPA does,
* ``GET /health``,
* a bundle loaded from disk at start (``run_compat_server(bundle_dir=DIR)``, like ``opa run --server
  --bundle DIR``): its ``data.json`` becomes the data document, its Rego modules the policies, and its
  ``.manifest`` is served at ``data.system.bundles[DIR].manifest`` (``GET /v1/data/system/bundles``), where
  OPA keeps the manifest of every activated bundle, a bundle from disk being named by its path. As in
  OPA, the policy and data write APIs refuse paths under the bundle's ``roots`` (400
  ``invalid_parameter``). Unlike OPA, ``*_test.rego`` modules of the bundle are not loaded (regopy
  crashes evaluating decisions with test modules loaded); the decision never depends on them.
* with ``watch=True`` (like ``opa run --server --watch --bundle DIR``) the bundle directory is re-read
  when its files change: before each request the server compares the files' size and mtime with those of
  the last load and, if they changed, activates the bundle anew (its new ``.manifest`` revision
  included). A bundle that cannot be loaded leaves the previous one active, as OPA does.

The Rego is evaluated by regopy (the Rego engine the gateway embeds), i.e. by a *different* Rego
engine than OPA. What this proves is that ``OpaPolicyEngine`` speaks OPA's wire protocol correctly and
fails closed; it does not prove that OPA itself evaluates ``policies/gateway.rego`` identically. To
run the conformance tests against a real OPA (in docker-compose its port is not published), start one
locally with the reference policy as its bundle::

    gateway policy bundle /tmp/b && opa run --server -b /tmp/b
    GATEWAY_TEST_OPA_URL=http://127.0.0.1:8181 pytest tests/test_policy.py -k "opa or conformance"
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from regopy import Interpreter

_PACKAGE_RE = re.compile(r"^package\s+([A-Za-z_][\w.]*)", re.MULTILINE)
_IDENT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _ref(path: str) -> str:
    """``a/b/c`` -> ``data.a.b.c`` (non-identifier segments as ``data.a["x-y"]``)."""
    ref = "data"
    for seg in (s for s in path.strip("/").split("/") if s):
        if seg[0].isdigit() or not set(seg) <= _IDENT_CHARS:
            ref += "[" + json.dumps(seg) + "]"
        else:
            ref += "." + seg
    return ref


def _error(status: int, code: str, message: str, errors: list[dict[str, Any]] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    return JSONResponse(body, status_code=status)


class _State:
    """Policies and the data document; one regopy interpreter built from them (rebuilt on change)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.modules: dict[str, str] = {}
        self.data: dict[str, Any] = {}
        self.roots: list[str] = []  # of the loaded bundle; writes under them are refused
        self.bundle_name = ""
        self.bundle_dir: Path | None = None
        self.watch = False
        self._fingerprint: tuple[tuple[str, int, int], ...] = ()
        self._interpreter: Interpreter | None = None

    def fingerprint(self) -> tuple[tuple[str, int, int], ...]:
        if self.bundle_dir is None:
            return ()
        found = []
        for path in sorted(self.bundle_dir.rglob("*")):
            if path.is_file() and not path.name.endswith(".tmp"):
                st = path.stat()
                found.append((str(path), st.st_mtime_ns, st.st_size))
        return tuple(found)

    def refresh(self) -> None:
        """With ``watch``: re-activate the bundle if its files changed; keep the old one if it fails."""
        if not self.watch or self.bundle_dir is None:
            return
        try:
            current = self.fingerprint()
            if current != self._fingerprint:
                self.load_bundle(self.bundle_dir)
                self._fingerprint = current
        except (OSError, ValueError, RuntimeError):
            pass  # like OPA: an unloadable bundle leaves the active one in place; retried on the next request

    def load_bundle(self, bundle_dir: Path) -> None:
        """Activate the bundle in ``bundle_dir`` (replacing everything), as ``opa run --bundle`` does."""
        manifest = json.loads((bundle_dir / ".manifest").read_text(encoding="utf-8"))
        data = json.loads((bundle_dir / "data.json").read_text(encoding="utf-8"))
        modules = {str(p.relative_to(bundle_dir)): p.read_text(encoding="utf-8")
                   for p in sorted(bundle_dir.rglob("*.rego")) if not p.name.endswith("_test.rego")}
        name = str(bundle_dir)
        data["system"] = {"bundles": {name: {"manifest": manifest}}}
        self.bundle_dir = bundle_dir
        with self.lock:
            self.modules, self.data = modules, data
            self.roots, self.bundle_name = [str(r) for r in manifest.get("roots", [""])], name
            self._interpreter = self.build(modules, data)

    def owned_by_bundle(self, path: str) -> bool:
        """Whether ``path`` (``a/b``) overlaps a root of the loaded bundle (OPA refuses such writes)."""
        segments = [s for s in path.strip("/").split("/") if s]
        for root in self.roots:
            root_segments = [s for s in root.split("/") if s]
            common = min(len(segments), len(root_segments))
            if segments[:common] == root_segments[:common]:
                return True
        return False

    def build(self, modules: dict[str, str], data: dict[str, Any]) -> Interpreter:
        interpreter = Interpreter()
        for module_id, text in modules.items():
            interpreter.add_module(module_id, text)
        interpreter.add_data_json(json.dumps(data, ensure_ascii=False))
        return interpreter

    def interpreter(self) -> Interpreter:
        if self._interpreter is None:
            self._interpreter = self.build(self.modules, self.data)
        return self._interpreter

    def invalidate(self) -> None:
        self._interpreter = None

    def evaluate(self, path: str, input_doc: Any | None) -> tuple[bool, Any]:
        interpreter = self.interpreter()
        # regopy keeps the last input; always set one so requests cannot see each other's input
        interpreter.set_input_term(json.dumps(input_doc if input_doc is not None else {}, ensure_ascii=False))
        text = str(interpreter.query(_ref(path)))
        if text == "undefined":
            return False, None
        if not text.startswith("{"):
            raise RuntimeError(text)
        expressions = json.loads(text).get("expressions") or []
        if not expressions:
            return False, None
        return True, expressions[0]


def _set_path(doc: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    segments = [s for s in path.strip("/").split("/") if s]
    if not segments:
        if not isinstance(value, dict):
            raise ValueError("the root data document must be an object")
        return value
    node = doc
    for seg in segments[:-1]:
        child = node.get(seg)
        if not isinstance(child, dict):
            child = {}
            node[seg] = child
        node = child
    node[segments[-1]] = value
    return doc


def _delete_path(doc: dict[str, Any], path: str) -> bool:
    segments = [s for s in path.strip("/").split("/") if s]
    node: Any = doc
    for seg in segments[:-1]:
        node = node.get(seg) if isinstance(node, dict) else None
    if not segments or not isinstance(node, dict) or segments[-1] not in node:
        return False
    del node[segments[-1]]
    return True


def create_app(bundle_dir: Path | None = None, *, watch: bool = False) -> FastAPI:
    app = FastAPI(title="OPA REST API stand-in (regopy)", docs_url=None, redoc_url=None, openapi_url=None)
    state = _State()
    if bundle_dir is not None:
        state.load_bundle(bundle_dir)
        state.watch = watch
        state.refresh()  # records the fingerprint of what was loaded
    app.state.opa = state

    @app.middleware("http")
    async def watch_bundle(request: Request, call_next: Any) -> Response:
        state.refresh()
        response: Response = await call_next(request)
        return response

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {}

    @app.get("/v1/policies")
    @app.get("/v1/policies/")
    def list_policies() -> dict[str, Any]:
        with state.lock:
            return {"result": [{"id": i, "raw": t} for i, t in sorted(state.modules.items())]}

    @app.put("/v1/policies/{policy_id:path}")
    async def put_policy(policy_id: str, request: Request) -> Response:
        text = (await request.body()).decode("utf-8")
        package = _PACKAGE_RE.search(text)
        if package is not None and state.owned_by_bundle(package.group(1).replace(".", "/")):
            return _error(400, "invalid_parameter",
                          f"path {package.group(1)!r} is owned by bundle {state.bundle_name!r}")
        with state.lock:
            modules = {**state.modules, policy_id: text}
            try:
                interpreter = state.build(modules, state.data)
            except Exception as exc:
                return _error(400, "invalid_parameter", "error(s) occurred while compiling module(s)",
                              [{"code": "rego_parse_error", "message": str(exc), "location": {"file": policy_id}}])
            state.modules = modules
            state._interpreter = interpreter
        return JSONResponse({})

    @app.get("/v1/policies/{policy_id:path}")
    def get_policy(policy_id: str) -> Response:
        with state.lock:
            if policy_id not in state.modules:
                return _error(404, "resource_not_found", f"storage_not_found_error: policy id {policy_id!r}")
            return JSONResponse({"result": {"id": policy_id, "raw": state.modules[policy_id]}})

    @app.delete("/v1/policies/{policy_id:path}")
    def delete_policy(policy_id: str) -> Response:
        with state.lock:
            if policy_id not in state.modules:
                return _error(404, "resource_not_found", f"storage_not_found_error: policy id {policy_id!r}")
            del state.modules[policy_id]
            state.invalidate()
        return JSONResponse({})

    async def _put_data(path: str, request: Request) -> Response:
        try:
            value = json.loads(await request.body())
        except ValueError:
            return _error(400, "invalid_parameter", "body must be JSON")
        if state.roots and state.owned_by_bundle(path):
            return _error(400, "invalid_parameter", f"path {path!r} is owned by bundle {state.bundle_name!r}")
        with state.lock:
            try:
                state.data = _set_path(state.data, path, value)
            except ValueError as exc:
                return _error(400, "invalid_parameter", str(exc))
            state.invalidate()
        return Response(status_code=204)

    @app.put("/v1/data")
    async def put_data_root(request: Request) -> Response:
        return await _put_data("", request)

    @app.put("/v1/data/{path:path}")
    async def put_data(path: str, request: Request) -> Response:
        return await _put_data(path, request)

    @app.delete("/v1/data/{path:path}")
    def delete_data(path: str) -> Response:
        with state.lock:
            if not _delete_path(state.data, path):
                return _error(404, "resource_not_found", f"storage_not_found_error: {path}")
            state.invalidate()
        return Response(status_code=204)

    def _query(path: str, input_doc: Any | None) -> Response:
        with state.lock:
            try:
                defined, value = state.evaluate(path, input_doc)
            except Exception as exc:
                return _error(500, "internal_error", f"evaluation failed: {exc}")
        return JSONResponse({"result": value} if defined else {})

    @app.get("/v1/data")
    @app.get("/v1/data/{path:path}")
    def get_data(path: str = "") -> Response:
        return _query(path, None)

    @app.post("/v1/data")
    @app.post("/v1/data/{path:path}")
    async def post_data(request: Request, path: str = "") -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return _error(400, "invalid_parameter", "body must be JSON")
        if not isinstance(body, dict):
            return _error(400, "invalid_parameter", "body must be an object")
        return _query(path, body.get("input"))

    return app


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def run_compat_server(start_timeout_s: float = 10.0, *, bundle_dir: Path | None = None,
                      watch: bool = False) -> Iterator[str]:
    """Serve the stand-in on 127.0.0.1 (free port) in a background thread; yield its base URL.
    With ``bundle_dir`` it starts with that bundle loaded, like ``opa run --server --bundle DIR``; with
    ``watch`` it also follows changes of that directory, like ``--watch``."""
    port = _free_port()
    config = uvicorn.Config(create_app(bundle_dir, watch=watch), host="127.0.0.1", port=port, log_level="warning",
                            lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="opa-compat-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the OPA compat server did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
