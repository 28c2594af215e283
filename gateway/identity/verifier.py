"""Verify OIDC access tokens (RFC 9068 JWTs) and turn them into a Principal.

The verifier trusts exactly one issuer. It reads the issuer's discovery document, takes the signing keys
from its ``jwks_uri`` and keeps them; a token signed with a ``kid`` it does not know makes it fetch the
JWKS again (at most every ``jwks_min_refresh_seconds``), so a key rotation at the provider needs no
restart. Without keys it fails closed.

Checks, in this order: a compact JWS at all; ``alg`` in the asymmetric allow-list (so ``none`` and
``HS256`` signed with the public key as HMAC secret fail before any key is touched); header ``typ`` is
``at+jwt`` (so an ID token is refused); the signature with the provider's key for ``kid``; then ``iss``
(exact), ``aud`` (must contain the audience), ``exp`` (required), ``nbf`` and ``iat`` (with leeway) and
``sub`` (required). JOSE work is done by joserfc; all claim checks are explicit and essential where the
gateway relies on them (joserfc, like authlib, checks no claim unless asked to).

Every refusal is an ``AuthenticationError`` with a stable ``code``. The token itself never appears in an
error message or a log line.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import httpx
from joserfc import jws, jwt
from joserfc.errors import (
    BadSignatureError,
    ClaimError,
    ExpiredTokenError,
    InvalidClaimError,
    JoseError,
    MissingClaimError,
)
from joserfc.jwk import ECKey, JWKRegistry, OKPKey, RSAKey

from gateway.errors import AuthenticationError
from gateway.identity.principal import Principal
from gateway.identity.settings import IdentitySettings

logger = logging.getLogger(__name__)

_GET_NEW = "get a new one with `gateway token <user>`"
_PublicKey = RSAKey | ECKey | OKPKey
_KEY_TYPES = {"RSA", "EC", "OKP"}


class IdentityProviderUnavailable(AuthenticationError):
    """The identity provider's discovery document or keys cannot be had: fail closed (503)."""

    status = 503
    code = "identity_provider_unavailable"
    title = "The identity provider is not available"

    def __init__(self, detail: str) -> None:
        super().__init__(detail, code="identity_provider_unavailable")


def _refuse(code: str, detail: str) -> AuthenticationError:
    return AuthenticationError(detail, code=code)


class TokenVerifier:
    """Checks access tokens from one trusted issuer. Thread-safe; keep one per process."""

    def __init__(self, settings: IdentitySettings, http: httpx.Client | None = None) -> None:
        self.settings = settings
        self._own_http = http is None
        self._http = http if http is not None else httpx.Client(
            timeout=settings.http_timeout_seconds, follow_redirects=False)
        self._registry = jws.JWSRegistry(algorithms=list(settings.algorithms), strict_check_header=False)
        self._lock = threading.Lock()
        self._jwks_uri: str | None = None
        self._keys: dict[str, _PublicKey] = {}
        self._jwks_fetched_at: float | None = None
        typ = settings.required_typ.lower()
        self._accepted_typ = {typ, typ if typ.startswith("application/") else f"application/{typ}"}

    # -- public ------------------------------------------------------------------------------------

    def verify(self, token: str | None) -> Principal:
        """Check ``token`` and return the caller it names; raise AuthenticationError otherwise."""
        try:
            return self._verify(token)
        except AuthenticationError as exc:
            logger.info("access token refused: %s", exc.code)
            raise

    def close(self) -> None:
        if self._own_http:
            self._http.close()

    def __enter__(self) -> TokenVerifier:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- the checks --------------------------------------------------------------------------------

    def _verify(self, token: str | None) -> Principal:
        if token is None or not token.strip():
            raise _refuse(
                "token_missing",
                f"No access token was sent; send `Authorization: Bearer <token>` ({_GET_NEW}).",
            )
        header = self._header(token.strip())
        value = token.strip()

        alg = header.get("alg")
        if not isinstance(alg, str) or alg not in self.settings.algorithms:
            raise _refuse(
                "token_algorithm_not_allowed",
                f"The access token is signed with an algorithm the gateway does not accept; allowed: "
                f"{', '.join(self.settings.algorithms)}.",
            )
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in self._accepted_typ:
            raise _refuse(
                "token_type_invalid",
                f"This is not an access token (JOSE header `typ` must be `{self.settings.required_typ}`); "
                "an ID token cannot be used to call the gateway. Send the access token.",
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise _refuse("token_signature_invalid",
                          "The access token names no signing key (`kid`); it cannot be checked.")

        key = self._key_for(kid)
        if key is None:
            raise _refuse(
                "token_signature_invalid",
                "The access token is signed with a key the identity provider does not publish "
                f"(unknown `kid`); {_GET_NEW}.",
            )
        if key.alg is not None and key.alg != alg:
            raise _refuse("token_signature_invalid",
                          "The access token's `alg` does not match the algorithm of its signing key.")

        try:
            decoded = jwt.decode(value, key, algorithms=[alg], registry=self._registry)
        except BadSignatureError:
            raise _refuse("token_signature_invalid",
                          "The access token's signature is not valid; it was not issued by the trusted "
                          "identity provider or it was changed.") from None
        except JoseError as exc:
            logger.debug("access token decode failed: %s", type(exc).__name__)
            if exc.error in {"invalid_payload", "decode_error"}:
                raise _refuse("token_malformed",
                              "The access token's payload is not a JSON object.") from None
            raise _refuse("token_signature_invalid",
                          "The access token's signature cannot be checked with the provider's key.") from None

        claims = decoded.claims
        self._check_claims(claims)
        return self._principal(claims)

    def _header(self, value: str) -> dict[str, Any]:
        malformed = _refuse(
            "token_malformed",
            "The access token is not a signed JWT (three base64url parts separated by dots); "
            f"{_GET_NEW}.",
        )
        if value.count(".") == 4:
            raise _refuse("token_malformed", "Encrypted tokens (JWE) are not accepted; send a signed JWT.")
        if value.count(".") != 2:
            raise malformed
        try:
            obj = jws.extract_compact(value.encode("ascii"), registry=self._registry)
            header: dict[str, Any] = dict(obj.headers())
        except (JoseError, ValueError, UnicodeError, TypeError) as exc:
            logger.debug("access token header unreadable: %s", type(exc).__name__)
            raise malformed from None
        if header.get("crit"):
            raise _refuse("token_malformed", "The access token has critical header parameters the gateway "
                                             "does not understand.")
        return header

    def _check_claims(self, claims: Mapping[str, Any]) -> None:
        s = self.settings
        registry = jwt.JWTClaimsRegistry(
            leeway=s.leeway_seconds,
            iss={"essential": True, "value": s.issuer},
            aud={"essential": True, "value": s.audience},
            exp={"essential": True},
            sub={"essential": True},
        )
        # joserfc checks claims in the order of the dict it is given: make that order fixed
        ordered = {name: claims[name] for name in ("iss", "aud", "exp", "nbf", "iat", "sub", "jti")
                   if name in claims}
        try:
            registry.validate({**ordered, **{k: v for k, v in claims.items() if k not in ordered}})
        except MissingClaimError as exc:
            missing = ", ".join(f"`{name}`" for name in exc.claim.split(","))
            raise _refuse(
                "token_claims_missing", f"The access token lacks the required claim(s) {missing}; {_GET_NEW}."
            ) from None
        except ExpiredTokenError:
            raise _refuse("token_expired", f"The access token has expired; {_GET_NEW}.") from None
        except InvalidClaimError as exc:
            raise self._invalid_claim(exc.claim) from None
        except ClaimError as exc:  # any other claim problem joserfc may add
            raise self._invalid_claim(exc.claim) from None

        client_claim = s.claims.client_id
        if s.allowed_client_ids is not None:
            client_id = claims.get(client_claim)
            if not isinstance(client_id, str) or client_id not in s.allowed_client_ids:
                raise _refuse("token_client_not_allowed",
                              "The access token was issued to an OAuth client the gateway does not accept.")

    def _invalid_claim(self, claim: str) -> AuthenticationError:
        s = self.settings
        if claim == "iss":
            return _refuse("token_issuer_invalid",
                           f"The access token was not issued by the trusted identity provider ({s.issuer}).")
        if claim == "aud":
            return _refuse("token_audience_invalid",
                           f"The access token is not meant for the gateway (its `aud` must contain "
                           f"`{s.audience}`); request a token for that resource.")
        if claim == "nbf":
            return _refuse("token_not_yet_valid",
                           "The access token is not valid yet (`nbf` is in the future); check the clocks.")
        if claim == "iat":
            return _refuse("token_not_yet_valid",
                           "The access token claims to be issued in the future (`iat`); check the clocks.")
        if claim == "exp":
            return _refuse("token_claims_invalid", "The access token's `exp` is not a NumericDate.")
        return _refuse("token_claims_invalid", f"The access token's `{claim}` claim has an invalid value.")

    # -- claims to Principal -----------------------------------------------------------------------

    def _principal(self, claims: Mapping[str, Any]) -> Principal:
        names = self.settings.claims
        subject = claims["sub"]
        username = _lookup(claims, names.username)
        if username is None:
            username = subject
        if not isinstance(username, str) or not username:
            raise _refuse("token_claims_invalid", f"The access token's `{names.username}` must be a string.")
        return Principal(
            subject=subject,
            username=username,
            office=_optional_str(claims, names.office),
            roles=_str_tuple(claims, names.roles),
            purposes=_str_tuple(claims, names.purposes),
            districts=_str_tuple(claims, names.districts),
            clearance=_optional_str(claims, names.clearance),
            client_id=_optional_str(claims, names.client_id),
        )

    # -- keys --------------------------------------------------------------------------------------

    def _key_for(self, kid: str) -> _PublicKey | None:
        with self._lock:
            if self._jwks_fetched_at is None:
                self._refresh_keys()
            key = self._keys.get(kid)
            if key is not None:
                return key
            assert self._jwks_fetched_at is not None
            age = time.monotonic() - self._jwks_fetched_at
            if age < self.settings.jwks_min_refresh_seconds:
                logger.info("unknown kid; JWKS was fetched %.1f s ago, not refetching yet", age)
                return None
            logger.info("unknown kid; refetching the JWKS")
            self._refresh_keys()
            return self._keys.get(kid)

    def _refresh_keys(self) -> None:
        if self._jwks_uri is None:
            self._jwks_uri = self._discover()
        jwks = self._get_json(self._jwks_uri, "JWKS")
        raw_keys = jwks.get("keys")
        if not isinstance(raw_keys, list):
            raise IdentityProviderUnavailable("The identity provider's JWKS has no `keys` list.")
        keys: dict[str, _PublicKey] = {}
        for raw in raw_keys:
            key = _import_public_key(raw)
            if key is not None and key.kid:
                keys[key.kid] = key
        self._keys = keys
        self._jwks_fetched_at = time.monotonic()
        logger.info("loaded %d signing key(s) from the identity provider", len(keys))

    def _discover(self) -> str:
        url = f"{self.settings.issuer.rstrip('/')}/.well-known/openid-configuration"
        metadata = self._get_json(url, "discovery document")
        if metadata.get("issuer") != self.settings.issuer:
            raise IdentityProviderUnavailable(
                f"The discovery document at {url} names another issuer than the configured "
                f"{self.settings.issuer}; refusing to trust it."
            )
        jwks_uri = metadata.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise IdentityProviderUnavailable(f"The discovery document at {url} has no usable `jwks_uri`.")
        return jwks_uri

    def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            response = self._http.get(url, headers={"Accept": "application/json"},
                                      timeout=self.settings.http_timeout_seconds)
        except httpx.HTTPError as exc:
            logger.warning("identity provider %s unreachable: %s", what, type(exc).__name__)
            raise IdentityProviderUnavailable(
                f"The identity provider ({self.settings.issuer}) cannot be reached to fetch its {what}; "
                "no token can be checked until it is back."
            ) from None
        if response.status_code != 200:
            raise IdentityProviderUnavailable(
                f"The identity provider answered HTTP {response.status_code} for its {what}.")
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise IdentityProviderUnavailable(f"The identity provider's {what} is not a JSON object.")
        return body


def _import_public_key(raw: object) -> _PublicKey | None:
    """A signature-verification key from a JWKS entry; symmetric, encryption and broken keys are skipped."""
    if not isinstance(raw, dict) or raw.get("kty") not in _KEY_TYPES:
        return None
    if raw.get("use", "sig") != "sig":
        return None
    key_ops = raw.get("key_ops")
    if isinstance(key_ops, list) and "verify" not in key_ops:
        return None
    public = {k: v for k, v in raw.items() if k not in {"d", "p", "q", "dp", "dq", "qi", "oth", "key_ops"}}
    try:
        key = JWKRegistry.import_key(public)
    except (JoseError, ValueError, TypeError) as exc:
        logger.warning("skipping a JWKS entry that cannot be imported: %s", type(exc).__name__)
        return None
    if isinstance(key, RSAKey | ECKey | OKPKey):
        return key
    return None


def _lookup(claims: Mapping[str, Any], name: str) -> Any:
    if name in claims:
        return claims[name]
    if "." not in name:
        return None
    value: Any = claims
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return None
        value = value[part]
    return value


def _optional_str(claims: Mapping[str, Any], name: str) -> str | None:
    value = _lookup(claims, name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise _refuse("token_claims_invalid", f"The access token's `{name}` claim must be a string.")
    return value


def _str_tuple(claims: Mapping[str, Any], name: str) -> tuple[str, ...]:
    value = _lookup(claims, name)
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    raise _refuse("token_claims_invalid", f"The access token's `{name}` claim must be a list of strings.")
