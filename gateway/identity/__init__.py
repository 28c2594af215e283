"""Stage 1: who is asking. Validates OIDC access tokens and maps claims to a Principal."""

from gateway.identity.principal import Principal

__all__ = ["Principal"]
