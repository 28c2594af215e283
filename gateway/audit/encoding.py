"""Small encoding helpers shared by the audit modules."""

from __future__ import annotations

import base64


def b64url_encode(data: bytes) -> str:
    """Unpadded base64url text."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url_encode` (padding optional); raises ``ValueError`` on bad input."""
    if not isinstance(text, str):
        raise ValueError("expected base64url text")
    padded = text + "=" * (-len(text) % 4)
    try:
        return base64.urlsafe_b64decode(padded.encode("ascii"))
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError("invalid base64url text") from exc
