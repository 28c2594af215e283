"""Shared fixtures and helpers for tests that need the demo OIDC provider and real access tokens.

Fixtures (import them into a test module, or move them into ``conftest.py``):

* ``oidc_provider`` (session): the real provider (Node.js ``oidc-provider``) running on 127.0.0.1 in a
  temporary data dir; a ``ProviderHandle``.
* ``identity_settings`` (session): ``IdentitySettings`` trusting that provider.
* ``token_verifier`` (function): a ``TokenVerifier`` for those settings, closed afterwards.
* ``access_token`` (session): ``access_token(user, resource=None) -> str``, a real access token from
  the provider's authorization code + PKCE flow, cached per (user, resource) for the session.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import JWKRegistry, RSAKey

from gateway.demo.oidc_provider import DEMO_USERS, ProviderHandle, start_provider
from gateway.identity.settings import IdentitySettings
from gateway.identity.verifier import TokenVerifier

AccessTokenFactory = Callable[..., str]


@pytest.fixture(scope="session")
def oidc_provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProviderHandle]:
    handle = start_provider(tmp_path_factory.mktemp("oidc-data"))
    try:
        yield handle
    finally:
        handle.stop()


@pytest.fixture(scope="session")
def identity_settings(oidc_provider: ProviderHandle) -> IdentitySettings:
    return IdentitySettings(issuer=oidc_provider.issuer, audience=oidc_provider.audience)


@pytest.fixture
def token_verifier(identity_settings: IdentitySettings) -> Iterator[TokenVerifier]:
    verifier = TokenVerifier(identity_settings)
    try:
        yield verifier
    finally:
        verifier.close()


@pytest.fixture(scope="session")
def access_token(oidc_provider: ProviderHandle) -> AccessTokenFactory:
    cache: dict[tuple[str, str | None], str] = {}

    def get(user: str, resource: str | None = None) -> str:
        if (user, resource) not in cache:
            cache[(user, resource)] = oidc_provider.token(user, resource=resource)
        return cache[(user, resource)]

    return get


# ---------------------------------------------------------------------------------------------------
# helpers for hand-minted tokens (negative cases only)


def provider_signing_key(handle: ProviderHandle) -> RSAKey:
    """The provider's own (current) private signing key, read from its state dir."""
    jwks = json.loads((handle.state_dir / "state" / "signing-key.json").read_text("utf-8"))
    key = JWKRegistry.import_key(jwks["keys"][0])
    assert isinstance(key, RSAKey)
    return key


def base_claims(handle: ProviderHandle, user: str = "anna", **overrides: Any) -> dict[str, Any]:
    """Claims shaped like the provider's access tokens; ``name=None`` drops a claim."""
    now = int(time.time())
    info = DEMO_USERS[user]
    claims: dict[str, Any] = {
        "iss": handle.issuer,
        "aud": handle.audience,
        "sub": info["sub"],
        "client_id": "gateway-cli",
        "iat": now,
        "nbf": now,
        "exp": now + 600,
        "jti": uuid.uuid4().hex,
        "scope": "gateway",
        **{k: v for k, v in info.items() if k != "sub"},
    }
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def mint(claims: dict[str, Any], key: RSAKey, *, alg: str = "RS256", typ: str | None = "at+jwt",
         kid: str | None = None, **header: Any) -> str:
    """Sign ``claims`` with joserfc (used only for tokens a real provider would never issue)."""
    fields: dict[str, Any] = {"alg": alg, **header}
    if typ is not None:
        fields["typ"] = typ
    fields["kid"] = kid if kid is not None else key.kid
    return jwt.encode(fields, claims, key, algorithms=[alg], default_type=None)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on (at the moment of the call)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def data_dir_of(handle: ProviderHandle) -> Path:
    """The data dir a provider was started with (its state dir is ``<data_dir>/oidc``)."""
    return handle.state_dir.parent
