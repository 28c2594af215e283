"""The reference scenario: synthetic Wiesbaden data, a local OIDC provider, and the demo runner."""
