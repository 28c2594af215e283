"""Run the demo's local OpenID Connect provider (``gateway/demo/oidc/server.mjs``) and get tokens from it.

DEMO ONLY. The provider is panva's ``oidc-provider`` on Node.js, listening on 127.0.0.1. Its login page
accepts a demo username without a password. Tokens come from a real OAuth 2.0 authorization code flow
with PKCE over HTTP: this module plays the browser (it follows the redirects, fills in the provider's
own login and consent forms) and the public client ``gateway-cli`` (it reads the code from the redirect
to the loopback redirect URI and redeems it at the token endpoint). The access token is an RFC 9068 JWT
(``typ: at+jwt``, RS256) for the resource indicator ``urn:wiesbaden:data-gateway``.

The provider keeps its signing key in ``<data_dir>/oidc/state`` so restarts keep the ``kid``;
``extra_key=True`` adds a rotated key (a new ``kid``, which then signs) while the old key stays published.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx

#: The folder with ``server.mjs``, ``package.json`` and ``package-lock.json``.
OIDC_DIR = Path(__file__).resolve().parent / "oidc"

DEFAULT_AUDIENCE = "urn:wiesbaden:data-gateway"
#: A second resource the provider also serves, so tests can get a real token for the wrong audience.
OTHER_RESOURCE = "urn:wiesbaden:other-service"
CLIENT_ID = "gateway-cli"
REDIRECT_URI = "http://127.0.0.1/callback"
SCOPE = "openid profile gateway"

#: The demo users and the claims the provider puts into their access tokens. ``sub`` is a fixed UUIDv5 per
#: user, so it stays the same across restarts and machines.
DEMO_USERS: dict[str, dict[str, object]] = {
    "anna": {
        "sub": "9564eb2e-befd-5fed-806f-335064d37bf3",
        "preferred_username": "anna",
        "office": "Amt für Statistik und Stadtforschung",
        "roles": ["analyst"],
        "purposes": ["statistik"],
        "districts": [],
        "clearance": "vertraulich",
    },
    "sven": {
        "sub": "2a171fde-d28c-57e9-8688-b41ecb8930f1",
        "preferred_username": "sven",
        "office": "Amt für Soziale Arbeit",
        "roles": ["analyst"],
        "purposes": ["sozialplanung"],
        "districts": ["Biebrich", "Dotzheim"],
        "clearance": "streng_vertraulich",
    },
    "paula": {
        "sub": "767f9c7b-90eb-533b-9669-78a1c0d104e9",
        "preferred_username": "paula",
        "office": "Stadtplanungsamt",
        "roles": ["planner"],
        "purposes": ["stadtplanung"],
        "districts": [],
        "clearance": "vertraulich",
    },
    "dora": {
        "sub": "b6c7d622-90c1-5c00-9928-658d56971a8a",
        "preferred_username": "dora",
        "office": "Datenschutz",
        "roles": ["dpo"],
        "purposes": ["datenschutzkontrolle"],
        "districts": [],
        "clearance": "intern",
    },
    "aaron": {
        "sub": "68554b18-592a-5232-9285-8979e6c848d9",
        "preferred_username": "aaron",
        "office": "Revision",
        "roles": ["auditor"],
        "purposes": ["revision"],
        "districts": [],
        "clearance": "intern",
    },
    "bea": {
        "sub": "25cd707f-0a13-5650-afa3-f404a27f7f02",
        "preferred_username": "bea",
        "office": "Bürgerreferat",
        "roles": ["analyst"],
        "purposes": ["buergerservice"],
        "districts": [],
        "clearance": "intern",
    },
    "dirk": {
        "sub": "efa36171-0562-5d0f-ba50-aa7c2dd1d52f",
        "preferred_username": "dirk",
        "office": "Datenschutz",
        "roles": ["dpo"],
        "purposes": ["datenschutzkontrolle"],
        "districts": [],
        "clearance": "intern",
    },
}

_START_TIMEOUT_SECONDS = 30.0
_HTTP_TIMEOUT_SECONDS = 10.0


class ProviderError(RuntimeError):
    """The demo identity provider could not be started, reached or asked for a token."""


class ProviderNotRunning(ProviderError):
    """No running demo identity provider was found for the data dir."""


def _check_user(user: str) -> dict[str, object]:
    try:
        return DEMO_USERS[user]
    except KeyError:
        raise ValueError(
            f"Unknown demo user {user!r}; the demo users are: {', '.join(DEMO_USERS)}."
        ) from None


def _state_dir(data_dir: Path) -> Path:
    return data_dir / "oidc"


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        raise ProviderError(
            "Node.js is not installed (no `node` on PATH); "
            "the demo identity provider needs Node.js 20 or newer."
        )
    return node


def ensure_node_modules(quiet: bool = False) -> None:
    """Install the provider's npm packages (``npm ci`` from package-lock.json) unless already installed."""
    if (OIDC_DIR / "node_modules" / "oidc-provider" / "package.json").is_file():
        return
    _node()
    npm = shutil.which("npm")
    if npm is None:
        raise ProviderError(
            "npm is not installed (no `npm` on PATH); it is needed once to install the demo identity "
            f"provider's packages in {OIDC_DIR}."
        )
    result = subprocess.run(  # noqa: S603 - fixed argument list, no shell
        [npm, "ci", "--no-audit", "--no-fund"],
        cwd=OIDC_DIR,
        capture_output=quiet,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        tail = (result.stderr or "")[-2000:] if quiet else ""
        raise ProviderError(f"`npm ci` failed in {OIDC_DIR} (exit code {result.returncode}). {tail}".strip())


# ---------------------------------------------------------------------------------------------------
# the authorization code flow with PKCE, driven over HTTP


class _FormParser(HTMLParser):
    """Collects the first ``<form>``'s action and its named inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.action: str | None = None
        self.inputs: dict[str, str] = {}
        self._in_form = False
        self._done = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {name: value or "" for name, value in attrs}
        if tag == "form" and not self._done and self.action is None:
            self.action = attributes.get("action", "")
            self._in_form = True
        elif tag == "input" and self._in_form and attributes.get("name"):
            self.inputs[attributes["name"]] = attributes.get("value", "")

    def handle_endtag(self, tag: str) -> None:
        if tag == "form" and self._in_form:
            self._in_form = False
            self._done = True


def _pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=")
    return verifier, challenge.decode("ascii")


def _login_flow(issuer: str, user: str, resource: str, *, client_id: str = CLIENT_ID,
                redirect_uri: str = REDIRECT_URI, scope: str = SCOPE) -> dict[str, Any]:
    """Log ``user`` in at the provider and return its token endpoint response (access and ID token)."""
    _check_user(user)
    with httpx.Client(timeout=_HTTP_TIMEOUT_SECONDS, follow_redirects=False) as http:
        try:
            discovery = http.get(f"{issuer}/.well-known/openid-configuration")
            discovery.raise_for_status()
            metadata = discovery.json()
            verifier, challenge = _pkce_pair()
            state = secrets.token_urlsafe(16)
            nonce = secrets.token_urlsafe(16)
            response = http.get(metadata["authorization_endpoint"], params={
                "client_id": client_id,
                "response_type": "code",
                "redirect_uri": redirect_uri,
                "scope": scope,
                "resource": resource,
                "state": state,
                "nonce": nonce,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            })
            code = _drive_interaction(http, response, user, redirect_uri, state, issuer)
            token_response = http.post(metadata["token_endpoint"], data={
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": redirect_uri,
                "client_id": client_id,
                "code_verifier": verifier,
                "resource": resource,
            })
        except httpx.TransportError as exc:
            raise ProviderNotRunning(
                f"The demo identity provider at {issuer} cannot be reached ({type(exc).__name__})."
            ) from exc
        if token_response.status_code != 200:
            raise ProviderError(
                f"The token endpoint refused the code: HTTP {token_response.status_code} "
                f"{_oauth_error(token_response)}"
            )
        tokens: dict[str, Any] = token_response.json()
        return tokens


def _oauth_error(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    if isinstance(body, dict):
        return f"{body.get('error', '')}: {body.get('error_description', '')}"
    return ""


def _drive_interaction(http: httpx.Client, response: httpx.Response, user: str, redirect_uri: str,
                       state: str, issuer: str) -> str:
    """Follow redirects and fill in the login and consent forms until the provider redirects back."""
    for _ in range(20):
        if response.is_redirect:
            location = urljoin(str(response.url), response.headers["location"])
            if location.startswith(redirect_uri):
                return _code_from_redirect(location, state, issuer)
            response = http.get(location)
            continue
        if response.status_code != 200:
            raise ProviderError(
                f"The provider answered HTTP {response.status_code} during the demo login for {user!r}."
            )
        form = _FormParser()
        form.feed(response.text)
        if form.action is None:
            raise ProviderError("The provider's interaction page has no form to fill in.")
        data = dict(form.inputs)
        if "username" in data:
            data["username"] = user
        response = http.post(urljoin(str(response.url), form.action), data=data)
    raise ProviderError("The demo login did not finish after 20 steps.")


def _code_from_redirect(location: str, state: str, issuer: str) -> str:
    query = parse_qs(urlsplit(location).query)
    if "error" in query:
        raise ProviderError(
            f"The provider refused the authorization request: {query['error'][0]}: "
            f"{query.get('error_description', [''])[0]}"
        )
    if query.get("state") != [state]:
        raise ProviderError("The authorization response carries the wrong `state`.")
    if query.get("iss") not in (None, [issuer]):
        raise ProviderError("The authorization response comes from another issuer (RFC 9207 `iss`).")
    codes = query.get("code")
    if not codes:
        raise ProviderError("The authorization response carries no code.")
    return codes[0]


# ---------------------------------------------------------------------------------------------------
# the process


@dataclass
class ProviderHandle:
    """A running demo provider (a Node.js child process)."""

    issuer: str
    port: int
    process: subprocess.Popen[bytes] | None
    state_dir: Path
    audience: str = DEFAULT_AUDIENCE
    kids: list[str] = field(default_factory=list)
    _log: IO[bytes] | None = field(default=None, repr=False)

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    def token(self, user: str, *, resource: str | None = None) -> str:
        """An access token for ``user`` (for ``resource``, default the gateway's audience)."""
        tokens = _login_flow(self.issuer, user, resource or self.audience)
        return str(tokens["access_token"])

    def id_token(self, user: str) -> str:
        """The ID token of a fresh login by ``user`` (never to be accepted as an access token)."""
        tokens = _login_flow(self.issuer, user, self.audience)
        return str(tokens["id_token"])

    def tokens(self, user: str, *, resource: str | None = None) -> dict[str, Any]:
        """The whole token endpoint response of a fresh login by ``user``."""
        return _login_flow(self.issuer, user, resource or self.audience)

    def stop(self) -> None:
        """Stop the provider (SIGTERM, then SIGKILL after 5 s) and remove ``provider.json``."""
        process = self.process
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        if self._log is not None:
            self._log.close()
            self._log = None
        info = self.state_dir / "provider.json"
        try:
            if process is not None and json.loads(info.read_text("utf-8")).get("pid") == process.pid:
                info.unlink()
        except (OSError, ValueError):
            pass

    def __enter__(self) -> ProviderHandle:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def start_provider(data_dir: Path, port: int = 0, *, audience: str = DEFAULT_AUDIENCE,
                   extra_key: bool = False) -> ProviderHandle:
    """Start the demo provider on 127.0.0.1 and wait until its discovery document answers.

    ``port=0`` lets the provider pick a free port. Writes ``data_dir/oidc/provider.json`` (issuer, port,
    pid, client and audience) so ``fetch_token`` in another process can find it.
    """
    ensure_node_modules(quiet=True)
    node = _node()
    state_dir = _state_dir(Path(data_dir).resolve())  # node runs with another working directory
    _refuse_if_running(state_dir)
    keys_dir = state_dir / "state"
    keys_dir.mkdir(parents=True, exist_ok=True)
    users_file = keys_dir / "users.json"
    users_file.write_text(json.dumps(DEMO_USERS, ensure_ascii=False, indent=2) + "\n", "utf-8")
    listening = keys_dir / "listening.json"
    listening.unlink(missing_ok=True)

    command = [
        node, str(OIDC_DIR / "server.mjs"),
        "--port", str(port),
        "--state-dir", str(keys_dir),
        "--users", str(users_file),
        "--audience", audience,
        "--extra-resource", OTHER_RESOURCE,
    ]
    if extra_key:
        command.append("--extra-key")
    log = (state_dir / "provider.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OIDC_")}
    process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
        command, cwd=OIDC_DIR, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env,
    )
    handle = ProviderHandle(issuer="", port=0, process=process, state_dir=state_dir, audience=audience,
                            _log=log)
    try:
        info = _wait_until_ready(process, listening, state_dir / "provider.log")
        handle.issuer = str(info["issuer"])
        handle.port = int(info["port"])
        handle.kids = [str(kid) for kid in info.get("kids", [])]
        provider_info = {
            "issuer": handle.issuer,
            "port": handle.port,
            "pid": process.pid,
            "audience": audience,
            "client_id": CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": SCOPE,
            "jwks_uri": handle.jwks_uri,
        }
        tmp = state_dir / "provider.json.tmp"
        tmp.write_text(json.dumps(provider_info, indent=2) + "\n", "utf-8")
        tmp.replace(state_dir / "provider.json")
    except BaseException:
        handle.stop()
        raise
    return handle


def _refuse_if_running(state_dir: Path) -> None:
    """Refuse to start a second provider for the same data dir while the first one still answers."""
    try:
        info = json.loads((state_dir / "provider.json").read_text("utf-8"))
        issuer = str(info["issuer"])
    except (OSError, ValueError, KeyError, TypeError):
        return
    try:
        response = httpx.get(f"{issuer}/.well-known/openid-configuration", timeout=2.0)
    except httpx.HTTPError:
        return  # a stale file from a provider that is gone
    if response.status_code == 200:
        raise ProviderError(
            f"A demo identity provider for this data dir is already running at {issuer}; stop it first."
        )


def _wait_until_ready(process: subprocess.Popen[bytes], listening: Path, log_file: Path) -> dict[str, Any]:
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    info: dict[str, Any] | None = None
    delay = 0.02
    with httpx.Client(timeout=2.0) as http:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise ProviderError(
                    f"The demo identity provider exited with code {process.returncode} while starting; "
                    f"see {log_file}:\n{_tail(log_file)}"
                )
            if info is None and listening.is_file():
                try:
                    info = json.loads(listening.read_text("utf-8"))
                except ValueError:
                    info = None
            if info is not None:
                try:
                    response = http.get(f"{info['issuer']}/.well-known/openid-configuration")
                    if response.status_code == 200 and response.json().get("issuer") == info["issuer"]:
                        return info
                except (httpx.TransportError, ValueError):
                    pass
            time.sleep(delay)
            delay = min(delay * 2, 0.25)
    raise ProviderError(
        f"The demo identity provider did not answer within {_START_TIMEOUT_SECONDS:.0f} s; see {log_file}."
    )


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text("utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def read_provider_info(data_dir: Path) -> dict[str, Any]:
    """The running provider's ``provider.json`` (raises ProviderNotRunning when there is none)."""
    info_file = _state_dir(Path(data_dir)) / "provider.json"
    try:
        info: dict[str, Any] = json.loads(info_file.read_text("utf-8"))
    except FileNotFoundError:
        raise ProviderNotRunning(
            f"The demo identity provider is not running (no {info_file}); start the demo first."
        ) from None
    except ValueError:
        raise ProviderNotRunning(f"{info_file} is not valid JSON; restart the demo.") from None
    return info


def fetch_token(data_dir: Path, user: str) -> str:
    """An access token for ``user`` from the demo's running provider for ``data_dir`` (``gateway token``)."""
    _check_user(user)
    info = read_provider_info(data_dir)
    issuer = str(info["issuer"])
    try:
        tokens = _login_flow(
            issuer, user, str(info.get("audience", DEFAULT_AUDIENCE)),
            client_id=str(info.get("client_id", CLIENT_ID)),
            redirect_uri=str(info.get("redirect_uri", REDIRECT_URI)),
            scope=str(info.get("scope", SCOPE)),
        )
    except ProviderNotRunning:
        raise ProviderNotRunning(
            f"The demo identity provider at {issuer} is not running; start the demo first."
        ) from None
    return str(tokens["access_token"])
