"""The access-token verifier against the real demo OIDC provider (Node.js ``oidc-provider``).

Valid tokens come only from the provider's real authorization code + PKCE flow over HTTP. Tokens are
minted by hand (with joserfc) ONLY for negative cases a real provider would never issue: no ``exp``,
already expired, ``nbf`` in the future, wrong or missing ``aud``, wrong ``iss``, ``alg: none``, a
foreign key, HS256 keyed with the public key, an unknown ``kid``.
"""

from __future__ import annotations

import base64
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from joserfc.jwk import OctKey, RSAKey

from gateway.demo.oidc_provider import (
    DEMO_USERS,
    OTHER_RESOURCE,
    ProviderError,
    ProviderNotRunning,
    fetch_token,
    read_provider_info,
    start_provider,
)
from gateway.errors import AuthenticationError
from gateway.identity.settings import IdentitySettings
from gateway.identity.verifier import IdentityProviderUnavailable, TokenVerifier
from tests import oidc_support
from tests.oidc_support import base_claims, data_dir_of, free_port, mint, provider_signing_key

# shared fixtures (they can move to conftest.py as they are)
oidc_provider = oidc_support.oidc_provider
identity_settings = oidc_support.identity_settings
token_verifier = oidc_support.token_verifier
access_token = oidc_support.access_token


def _segment(token: str, index: int) -> dict[str, Any]:
    part = token.split(".")[index]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return decoded


def _refused(verifier: TokenVerifier, token: str, code: str) -> AuthenticationError:
    with pytest.raises(AuthenticationError) as info:
        verifier.verify(token)
    error = info.value
    assert error.code == code, error.detail
    assert token not in error.detail
    assert token not in str(error)
    assert all(token not in str(arg) for arg in error.args)
    return error


# ---------------------------------------------------------------------------------------------------
# settings


@pytest.mark.parametrize("algorithms", [["HS256"], ["RS256", "HS512"], ["none"], []])
def test_settings_refuse_symmetric_and_none(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="algorithm"):
        IdentitySettings(issuer="http://127.0.0.1:1", algorithms=algorithms)


def test_settings_defaults() -> None:
    settings = IdentitySettings(issuer="http://127.0.0.1:1")
    assert settings.audience == "urn:wiesbaden:data-gateway"
    assert settings.required_typ == "at+jwt"
    assert settings.claims.username == "preferred_username"
    assert set(settings.algorithms) == {"RS256", "PS256", "ES256", "EdDSA"}


# ---------------------------------------------------------------------------------------------------
# the real flow


def test_access_token_is_rfc9068_jwt(oidc_provider: Any, access_token: Callable[..., str]) -> None:
    token = access_token("anna")
    header, claims = _segment(token, 0), _segment(token, 1)
    assert header["typ"] == "at+jwt"
    assert header["alg"] == "RS256"
    assert header["kid"] in oidc_provider.kids
    assert claims["aud"] == "urn:wiesbaden:data-gateway"
    assert claims["iss"] == oidc_provider.issuer
    assert claims["client_id"] == "gateway-cli"
    for name in ("exp", "iat", "nbf", "jti", "sub"):
        assert name in claims


@pytest.mark.parametrize("user", sorted(DEMO_USERS))
def test_real_tokens_verify_for_every_demo_user(
    user: str, token_verifier: TokenVerifier, access_token: Callable[..., str]
) -> None:
    principal = token_verifier.verify(access_token(user))
    expected = DEMO_USERS[user]
    assert principal.subject == expected["sub"]
    assert principal.username == user
    assert principal.office == expected["office"]
    assert principal.roles == tuple(expected["roles"])  # type: ignore[arg-type]
    assert principal.purposes == tuple(expected["purposes"])  # type: ignore[arg-type]
    assert principal.districts == tuple(expected["districts"])  # type: ignore[arg-type]
    assert principal.clearance == expected["clearance"]
    assert principal.client_id == "gateway-cli"


def test_sub_is_stable_across_logins(oidc_provider: Any) -> None:
    first, second = oidc_provider.token("sven"), oidc_provider.token("sven")
    assert first != second
    assert _segment(first, 1)["sub"] == _segment(second, 1)["sub"] == DEMO_USERS["sven"]["sub"]
    assert _segment(first, 1)["jti"] != _segment(second, 1)["jti"]


def test_unknown_demo_user_is_a_value_error(oidc_provider: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="anna, sven, paula, dora, aaron, bea, dirk"):
        oidc_provider.token("mallory")
    with pytest.raises(ValueError, match="demo users"):
        fetch_token(tmp_path, "mallory")


def test_fetch_token_uses_the_running_provider(
    oidc_provider: Any, token_verifier: TokenVerifier
) -> None:
    info = read_provider_info(data_dir_of(oidc_provider))
    assert info["issuer"] == oidc_provider.issuer
    assert info["port"] == oidc_provider.port
    token = fetch_token(data_dir_of(oidc_provider), "dora")
    assert token_verifier.verify(token).roles == ("dpo",)


def test_second_provider_for_the_same_data_dir_is_refused(oidc_provider: Any) -> None:
    with pytest.raises(ProviderError, match="already running"):
        start_provider(data_dir_of(oidc_provider))
    assert read_provider_info(data_dir_of(oidc_provider))["issuer"] == oidc_provider.issuer


def test_fetch_token_without_running_demo(tmp_path: Path) -> None:
    with pytest.raises(ProviderNotRunning, match="not running"):
        fetch_token(tmp_path, "anna")
    state = tmp_path / "oidc"
    state.mkdir()
    (state / "provider.json").write_text(json.dumps({"issuer": f"http://127.0.0.1:{free_port()}"}))
    with pytest.raises(ProviderNotRunning, match="not running"):
        fetch_token(tmp_path, "anna")


# ---------------------------------------------------------------------------------------------------
# refusals


def test_missing_and_malformed(token_verifier: TokenVerifier) -> None:
    for empty in ("", "   "):
        with pytest.raises(AuthenticationError) as info:
            token_verifier.verify(empty)
        assert info.value.code == "token_missing"
    with pytest.raises(AuthenticationError) as info:
        token_verifier.verify(None)
    assert info.value.code == "token_missing"
    for garbage in ("not-a-jwt", "a.b.c", "a.b.c.d.e", "äöü.x.y", "e30.e30.", "....."):
        _refused(token_verifier, garbage, "token_malformed")


def test_id_token_is_refused(oidc_provider: Any, token_verifier: TokenVerifier) -> None:
    id_token = oidc_provider.id_token("anna")
    assert "typ" not in _segment(id_token, 0) or _segment(id_token, 0)["typ"] != "at+jwt"
    error = _refused(token_verifier, id_token, "token_type_invalid")
    assert "ID token" in error.detail


def test_token_for_another_resource_is_refused(
    token_verifier: TokenVerifier, access_token: Callable[..., str]
) -> None:
    token = access_token("anna", OTHER_RESOURCE)
    assert _segment(token, 1)["aud"] == OTHER_RESOURCE
    _refused(token_verifier, token, "token_audience_invalid")


def test_unsigned_token_is_refused(oidc_provider: Any, token_verifier: TokenVerifier) -> None:
    claims = base_claims(oidc_provider)
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "at+jwt"}).encode()).rstrip(b"=")
    payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
    token = f"{header.decode()}.{payload.decode()}."
    _refused(token_verifier, token, "token_algorithm_not_allowed")


def test_unsigned_token_minted_with_joserfc_is_refused(
    oidc_provider: Any, token_verifier: TokenVerifier
) -> None:
    from joserfc import jwt

    with pytest.warns(Warning):
        token = jwt.encode({"alg": "none", "typ": "at+jwt"}, base_claims(oidc_provider), None,  # type: ignore[arg-type]
                           algorithms=["none"], default_type=None)
    _refused(token_verifier, token, "token_algorithm_not_allowed")


def test_foreign_rsa_key_with_the_providers_kid_is_refused(
    oidc_provider: Any, token_verifier: TokenVerifier
) -> None:
    foreign = RSAKey.generate_key(2048)
    token = mint(base_claims(oidc_provider), foreign, kid=oidc_provider.kids[0])
    error = _refused(token_verifier, token, "token_signature_invalid")
    assert "signature" in error.detail


def test_hs256_keyed_with_the_public_key_is_refused(
    oidc_provider: Any, token_verifier: TokenVerifier
) -> None:
    public_pem = provider_signing_key(oidc_provider).as_pem(private=False)
    # joserfc refuses to import a public key as an HMAC secret; an attacker would not care
    attacker_key = OctKey(public_pem, public_pem)
    token = mint(base_claims(oidc_provider), attacker_key, alg="HS256",  # type: ignore[arg-type]
                 kid=oidc_provider.kids[0])
    _refused(token_verifier, token, "token_algorithm_not_allowed")


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"exp": None}, "token_claims_missing"),
        ({"aud": None}, "token_claims_missing"),
        ({"iss": None}, "token_claims_missing"),
        ({"sub": None}, "token_claims_missing"),
        ({"exp": "never"}, "token_claims_invalid"),
        ({"sub": ""}, "token_claims_invalid"),
        ({"roles": [1, 2]}, "token_claims_invalid"),
        ({"exp": int(time.time()) - 120, "iat": int(time.time()) - 900, "nbf": int(time.time()) - 900},
         "token_expired"),
        ({"nbf": int(time.time()) + 3600}, "token_not_yet_valid"),
        ({"iat": int(time.time()) + 3600}, "token_not_yet_valid"),
        ({"aud": "urn:wiesbaden:other-service"}, "token_audience_invalid"),
        ({"aud": ["urn:a", "urn:b"]}, "token_audience_invalid"),
        ({"iss": "http://127.0.0.1:1"}, "token_issuer_invalid"),
        ({"iss": "evil"}, "token_issuer_invalid"),
    ],
)
def test_bad_claims_signed_by_the_real_key_are_refused(
    oidc_provider: Any, token_verifier: TokenVerifier, overrides: dict[str, Any], code: str
) -> None:
    token = mint(base_claims(oidc_provider, **overrides), provider_signing_key(oidc_provider))
    _refused(token_verifier, token, code)


def test_expired_detail_tells_what_to_do(oidc_provider: Any, token_verifier: TokenVerifier) -> None:
    now = int(time.time())
    token = mint(base_claims(oidc_provider, exp=now - 60, iat=now - 700, nbf=now - 700),
                 provider_signing_key(oidc_provider))
    error = _refused(token_verifier, token, "token_expired")
    assert error.detail == "The access token has expired; get a new one with `gateway token <user>`."
    assert error.status == 401


@pytest.mark.parametrize("typ", ["JWT", None, "jwt", "at+jwt+x"])
def test_wrong_typ_is_refused(oidc_provider: Any, token_verifier: TokenVerifier, typ: str | None) -> None:
    token = mint(base_claims(oidc_provider), provider_signing_key(oidc_provider), typ=typ)
    _refused(token_verifier, token, "token_type_invalid")


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"])
def test_typ_spellings_accepted(oidc_provider: Any, token_verifier: TokenVerifier, typ: str) -> None:
    token = mint(base_claims(oidc_provider), provider_signing_key(oidc_provider), typ=typ)
    assert token_verifier.verify(token).username == "anna"


def test_leeway_and_audience_lists(oidc_provider: Any, token_verifier: TokenVerifier) -> None:
    now = int(time.time())
    key = provider_signing_key(oidc_provider)
    within = mint(base_claims(oidc_provider, nbf=now + 10, iat=now + 10, exp=now - 10), key)
    assert token_verifier.verify(within).subject == DEMO_USERS["anna"]["sub"]
    listed = mint(base_claims(oidc_provider, aud=["urn:other", oidc_provider.audience]), key)
    assert token_verifier.verify(listed).username == "anna"


def test_allowed_client_ids(oidc_provider: Any, access_token: Callable[..., str]) -> None:
    token = access_token("paula")
    ok = IdentitySettings(issuer=oidc_provider.issuer, allowed_client_ids=["gateway-cli"])
    with TokenVerifier(ok) as verifier:
        assert verifier.verify(token).roles == ("planner",)
    other = IdentitySettings(issuer=oidc_provider.issuer, allowed_client_ids=["somebody-else"])
    with TokenVerifier(other) as verifier:
        _refused(verifier, token, "token_client_not_allowed")


def test_claim_mapping_is_configurable(oidc_provider: Any) -> None:
    settings = IdentitySettings.model_validate({
        "issuer": oidc_provider.issuer,
        "claims": {"username": "login", "roles": "realm_access.roles", "office": "dept"},
    })
    claims = base_claims(oidc_provider, login="a.nna", realm_access={"roles": ["analyst", "x"]},
                         dept="Amt 12")
    token = mint(claims, provider_signing_key(oidc_provider))
    with TokenVerifier(settings) as verifier:
        principal = verifier.verify(token)
    assert (principal.username, principal.roles, principal.office) == ("a.nna", ("analyst", "x"), "Amt 12")


# ---------------------------------------------------------------------------------------------------
# keys: unknown kid, rotation, provider down


class _CountingClient(httpx.Client):
    def __init__(self) -> None:
        super().__init__(timeout=5)
        self.jwks_fetches = 0
        self.discovery_fetches = 0

    def send(self, request: httpx.Request, **kwargs: Any) -> httpx.Response:
        if request.url.path.endswith("/jwks"):
            self.jwks_fetches += 1
        elif request.url.path.endswith("/openid-configuration"):
            self.discovery_fetches += 1
        return super().send(request, **kwargs)


@pytest.fixture
def counting_http() -> Iterator[_CountingClient]:
    client = _CountingClient()
    try:
        yield client
    finally:
        client.close()


def test_truly_unknown_kid_refetches_once_then_fails(
    oidc_provider: Any, access_token: Callable[..., str], counting_http: _CountingClient
) -> None:
    settings = IdentitySettings(issuer=oidc_provider.issuer, jwks_min_refresh_seconds=0)
    verifier = TokenVerifier(settings, http=counting_http)
    verifier.verify(access_token("anna"))
    assert (counting_http.discovery_fetches, counting_http.jwks_fetches) == (1, 1)
    verifier.verify(access_token("sven"))
    assert counting_http.jwks_fetches == 1  # cached

    stranger = RSAKey.generate_key(2048, parameters={"kid": "no-such-kid"})
    token = mint(base_claims(oidc_provider), stranger)
    error = _refused(verifier, token, "token_signature_invalid")
    assert "unknown `kid`" in error.detail
    assert counting_http.jwks_fetches == 2
    assert counting_http.discovery_fetches == 1


def test_unknown_kid_refetch_is_rate_limited(
    oidc_provider: Any, access_token: Callable[..., str], counting_http: _CountingClient
) -> None:
    settings = IdentitySettings(issuer=oidc_provider.issuer, jwks_min_refresh_seconds=3600)
    verifier = TokenVerifier(settings, http=counting_http)
    verifier.verify(access_token("anna"))
    stranger = RSAKey.generate_key(2048, parameters={"kid": "no-such-kid"})
    for _ in range(5):
        _refused(verifier, mint(base_claims(oidc_provider), stranger), "token_signature_invalid")
    assert counting_http.jwks_fetches == 1


def test_rotated_key_is_picked_up_and_provider_down_fails_closed(
    tmp_path: Path, counting_http: _CountingClient
) -> None:
    """Restart the provider on the same port with a rotated key: an unknown kid makes the verifier
    refetch the JWKS; while the provider is down, that refetch fails closed."""
    first = start_provider(tmp_path)
    try:
        settings = IdentitySettings(issuer=first.issuer, jwks_min_refresh_seconds=0)
        verifier = TokenVerifier(settings, http=counting_http)
        old_token = first.token("aaron")
        assert verifier.verify(old_token).roles == ("auditor",)
        old_kid = _segment(old_token, 0)["kid"]
    finally:
        first.stop()

    assert not (tmp_path / "oidc" / "provider.json").exists()
    # down: a token with a kid the verifier has cached still verifies (keys are cached) ...
    assert verifier.verify(old_token).username == "aaron"
    # ... but nothing with an unknown kid does: fail closed, no key, no access
    stranger = RSAKey.generate_key(2048, parameters={"kid": "rotated-but-unseen"})
    with pytest.raises(IdentityProviderUnavailable) as info:
        verifier.verify(mint(base_claims(first), stranger))
    assert info.value.status == 503
    assert info.value.code == "identity_provider_unavailable"
    assert isinstance(info.value, AuthenticationError)

    second = start_provider(tmp_path, port=first.port, extra_key=True)
    try:
        assert second.issuer == first.issuer
        assert len(second.kids) == 2 and second.kids[1] == old_kid and second.kids[0] != old_kid
        new_token = second.token("aaron")
        assert _segment(new_token, 0)["kid"] == second.kids[0]
        fetches = counting_http.jwks_fetches
        assert verifier.verify(new_token).username == "aaron"
        assert counting_http.jwks_fetches == fetches + 1
        # the old key is still published, so tokens already out keep working
        assert verifier.verify(old_token).username == "aaron"
    finally:
        second.stop()

    # a plain restart keeps the original key (kept in the data dir)
    third = start_provider(tmp_path, port=first.port)
    try:
        assert third.kids == [old_kid]
    finally:
        third.stop()


def test_provider_unreachable_fails_closed(access_token: Callable[..., str]) -> None:
    settings = IdentitySettings(issuer=f"http://127.0.0.1:{free_port()}", http_timeout_seconds=2)
    with TokenVerifier(settings) as verifier:
        token = access_token("anna")
        with pytest.raises(IdentityProviderUnavailable) as info:
            verifier.verify(token)
        assert token not in info.value.detail
        # stays closed on the next call too
        with pytest.raises(IdentityProviderUnavailable):
            verifier.verify(token)


def test_discovery_issuer_must_match(oidc_provider: Any, access_token: Callable[..., str]) -> None:
    lookalike = oidc_provider.issuer.replace("127.0.0.1", "localhost")
    with TokenVerifier(IdentitySettings(issuer=lookalike)) as verifier, \
            pytest.raises(IdentityProviderUnavailable, match="another issuer"):
        verifier.verify(access_token("anna"))


# ---------------------------------------------------------------------------------------------------
# the token never leaks


def test_token_never_in_details_or_logs(
    oidc_provider: Any, token_verifier: TokenVerifier, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = provider_signing_key(oidc_provider)
    now = int(time.time())
    bad_tokens = [
        oidc_provider.id_token("sven"),
        mint(base_claims(oidc_provider, exp=now - 100, iat=now - 900, nbf=now - 900), key),
        mint(base_claims(oidc_provider, aud="urn:x"), key),
        mint(base_claims(oidc_provider), RSAKey.generate_key(2048), kid=oidc_provider.kids[0]),
        mint(base_claims(oidc_provider, exp=None), key),
        mint(base_claims(oidc_provider), key)[:-5] + "AAAAA",
        "eyJhbGciOiJSUzI1NiJ9.not-base64!.sig",
    ]
    for token in bad_tokens:
        with pytest.raises(AuthenticationError) as info:
            token_verifier.verify(token)
        for text in (info.value.detail, str(info.value), repr(info.value), caplog.text):
            assert token not in text
            assert token.split(".")[1] not in text
