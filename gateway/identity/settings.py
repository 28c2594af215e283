"""Settings of the access-token verifier: which issuer to trust, for which audience, and which claims."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: Asymmetric JWS algorithms the verifier can be told to accept. Symmetric (HS*) and ``none`` never:
#: a gateway that shares an HMAC secret with the provider could mint its own tokens, and an HMAC check
#: keyed with a public key is the classic algorithm-confusion hole.
ASYMMETRIC_ALGORITHMS: frozenset[str] = frozenset({
    "RS256", "RS384", "RS512",
    "PS256", "PS384", "PS512",
    "ES256", "ES384", "ES512", "ES256K",
    "EdDSA", "Ed25519", "Ed448",
})


class ClaimNames(BaseModel):
    """Which access-token claim carries which Principal attribute.

    A name is looked up as a top-level claim first; a dotted name (``realm_access.roles``) that is not a
    top-level claim is then followed into nested objects.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    username: str = Field(default="preferred_username", description="Login name; falls back to `sub`.")
    office: str = "office"
    roles: str = "roles"
    purposes: str = "purposes"
    districts: str = "districts"
    clearance: str = "clearance"
    client_id: str = Field(default="client_id", description="RFC 9068 `client_id` of the OAuth client.")


class IdentitySettings(BaseModel):
    """How the gateway checks OIDC access tokens (RFC 9068 JWTs)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    issuer: str = Field(description="Exact `iss` of the trusted provider; discovery is fetched below it.")
    audience: str = Field(default="urn:wiesbaden:data-gateway",
                          description="Resource indicator the token's `aud` must contain.")
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "PS256", "ES256", "EdDSA"],
                                  description="Accepted JWS algorithms (asymmetric only).")
    leeway_seconds: int = Field(default=30, ge=0, le=300, description="Clock skew allowed for exp/nbf/iat.")
    jwks_min_refresh_seconds: float = Field(
        default=10, ge=0, description="Refetch the JWKS for an unknown `kid` at most this often.")
    required_typ: str = Field(default="at+jwt",
                              description="Required JOSE `typ` header (also accepted as application/<typ>).")
    allowed_client_ids: list[str] | None = Field(
        default=None, description="If set, only tokens issued to these OAuth clients are accepted.")
    http_timeout_seconds: float = Field(default=5.0, gt=0, description="Timeout for discovery and JWKS.")
    claims: ClaimNames = Field(default_factory=ClaimNames)

    @field_validator("issuer")
    @classmethod
    def _issuer_is_url(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")) or value != value.strip():
            raise ValueError("issuer must be an http(s) URL without surrounding whitespace")
        return value

    @field_validator("audience", "required_typ")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @field_validator("algorithms")
    @classmethod
    def _asymmetric_only(cls, value: list[str]) -> list[str]:
        if not value:
            raise ValueError("at least one algorithm is needed")
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(
                f"only asymmetric JWS algorithms are allowed ({', '.join(sorted(ASYMMETRIC_ALGORITHMS))}); "
                f"refused: {', '.join(refused)}"
            )
        return list(dict.fromkeys(value))
