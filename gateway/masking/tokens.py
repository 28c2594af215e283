"""Reversible tokens: deterministic encryption (AES-256-SIV) of released values, and their reversal.

``tokenise`` releases ``t_<key id>.<base64url(SIV || ciphertext)>``: equal values give equal tokens (so
they can be counted and joined in the analyst's own tools), nothing about the value can be read without
the key, and a role with re-identification rights can turn a token back into the value, stating a reason
that is audited before the value is returned.

The key is derived per purpose and domain from the gateway's key ring (``KeyRing.token_key``); the key
id in the token names the master key, so tokens stay reversible after a key rotation. Purpose and
domain are also bound as associated data: a token released for one purpose does not decrypt under
another.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESSIV

from gateway.errors import AccessDenied, InvalidQuery
from gateway.sql.masks import KeyRing

TOKEN_PREFIX = "t_"  # noqa: S105 - the visible token marker, not a secret
#: the role a principal needs to detokenise (granted by the DPO, per office)
REIDENTIFY_ROLE = "reidentification"
#: a reason must say something: at least this many characters (a case number and a few words)
MIN_REASON_CHARS = 20
_TOKEN = re.compile(r"^t_([A-Za-z0-9_-]{1,32})\.([A-Za-z0-9_-]{22,})$")


def _associated_data(purpose: str, domain: str) -> list[bytes]:
    return [b"gateway-token-v1", purpose.encode(), domain.encode()]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Tokeniser:
    """Tokenises values for one purpose with the ring's active key (one cipher per domain)."""

    def __init__(self, keys: KeyRing, purpose: str) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,32}", keys.key_id):
            raise ValueError(f"key id {keys.key_id!r} cannot be embedded in tokens (use [A-Za-z0-9_-]{{1,32}})")
        self.keys = keys
        self.purpose = purpose
        self._ciphers: dict[tuple[str, str], AESSIV] = {}

    def _cipher(self, domain: str, key_id: str | None = None) -> AESSIV:
        kid = key_id or self.keys.key_id
        cipher = self._ciphers.get((kid, domain))
        if cipher is None:
            cipher = AESSIV(self.keys.token_key(self.purpose, domain, kid))
            self._ciphers[(kid, domain)] = cipher
        return cipher

    def tokenise(self, values: Iterable[str | None], domain: str) -> list[str | None]:
        """One token per value (NULL stays NULL); equal values give equal tokens."""
        cipher = self._cipher(domain)
        ad = _associated_data(self.purpose, domain)
        prefix = f"{TOKEN_PREFIX}{self.keys.key_id}."
        return [None if v is None else prefix + _b64(cipher.encrypt(v.encode("utf-8"), ad)) for v in values]

    def _reveal(self, tokens: Sequence[str | None], domain: str) -> tuple[list[str | None], set[str]]:
        ad = _associated_data(self.purpose, domain)
        values: list[str | None] = []
        key_ids: set[str] = set()
        for index, token in enumerate(tokens):
            if token is None:
                values.append(None)
                continue
            match = _TOKEN.match(token)
            if match is None:
                raise InvalidQuery(f"token {index} is not a gateway token (t_<key id>.<text>)",
                                   code="token_invalid")
            kid, body = match.groups()
            try:
                cipher = self._cipher(domain, kid)
            except KeyError:
                raise InvalidQuery(f"token {index} was made with key {kid!r}, which this gateway no longer "
                                   "holds", code="token_invalid") from None
            try:
                plain = cipher.decrypt(_unb64(body), ad)
            except (InvalidTag, binascii.Error, ValueError):
                raise InvalidQuery(
                    f"token {index} does not decrypt for purpose {self.purpose!r} and domain {domain!r}: it "
                    "was altered, or released for another purpose or column",
                    code="token_invalid",
                ) from None
            values.append(plain.decode("utf-8"))
            key_ids.add(kid)
        return values, key_ids


@dataclass(frozen=True)
class DetokeniseRecord:
    """What the audit must hold before a re-identification is answered (never the values)."""

    subject: str
    roles: tuple[str, ...]
    purpose: str
    domain: str
    reason: str
    tokens: int
    key_ids: tuple[str, ...]


def check_reason(reason: str | None) -> str:
    text = " ".join((reason or "").split())
    if len(text) < MIN_REASON_CHARS or len(set(text.replace(" ", ""))) < 5:
        raise AccessDenied(
            f"re-identification needs a reason of at least {MIN_REASON_CHARS} characters (for example the "
            f"case number and why the person must be identified); got {len(text)} characters",
            code="reidentification_reason_required",
            rule="tokenise.reason_required",
        )
    return text


def detokenise(
    keys: KeyRing,
    tokens: Sequence[str | None],
    *,
    subject: str,
    roles: Sequence[str],
    purpose: str,
    domain: str,
    reason: str | None,
    record: Callable[[DetokeniseRecord], None],
) -> list[str | None]:
    """The values behind ``tokens``, for a principal holding ``REIDENTIFY_ROLE`` and giving a reason.

    ``record`` is called (audit) after every token decrypted and before anything is returned; if it
    raises, nothing is returned (fail closed). Invalid or foreign tokens fail the whole request.
    """
    if REIDENTIFY_ROLE not in roles:
        raise AccessDenied(
            f"re-identification needs the role {REIDENTIFY_ROLE!r}, which {subject!r} does not hold; ask the "
            "data protection officer",
            code="reidentification_not_permitted",
            rule="tokenise.role_required",
        )
    text = check_reason(reason)
    values, key_ids = Tokeniser(keys, purpose)._reveal(tokens, domain)
    record(DetokeniseRecord(subject=subject, roles=tuple(roles), purpose=purpose, domain=domain, reason=text,
                            tokens=sum(t is not None for t in tokens), key_ids=tuple(sorted(key_ids))))
    return values
