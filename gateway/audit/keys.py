"""Keys of the audit trail.

* an Ed25519 signing key: signs chain checkpoints and query receipts;
* a Fernet key: encrypts the analyst's original SQL text inside the audit record.

Keys come either from explicit configuration values (:func:`load_signing_key`,
:func:`load_fernet_key`, :func:`keys_from_config`) or, for the demo, from files in a directory that are
created with mode 0600 when missing (:func:`load_or_create_keys`).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

SIGNING_KEY_FILE = "audit-signing.key"
PUBLIC_KEY_FILE = "audit-signing.pub"
FERNET_KEY_FILE = "audit-sql.key"

SigningKeyInput = Ed25519PrivateKey | bytes | str | Path
PublicKeyInput = Ed25519PublicKey | Ed25519PrivateKey | bytes | str | Path
FernetKeyInput = Fernet | bytes | str | Path


class AuditKeyError(ValueError):
    """A configured key could not be loaded (the message never contains key material)."""


@dataclass(frozen=True)
class AuditKeys:
    signing_key: Ed25519PrivateKey
    fernet_key: bytes

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    @property
    def fernet(self) -> Fernet:
        return Fernet(self.fernet_key)


def raw_public_key(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(public_key: Ed25519PublicKey | Ed25519PrivateKey) -> str:
    """First 16 hex characters of the SHA-256 of the raw 32-byte public key."""
    if isinstance(public_key, Ed25519PrivateKey):
        public_key = public_key.public_key()
    return hashlib.sha256(raw_public_key(public_key)).hexdigest()[:16]


def _b64decode(text: str) -> bytes | None:
    cleaned = "".join(text.split())
    padded = cleaned + "=" * (-len(cleaned) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            return decoder(padded.encode("ascii"))
        except (binascii.Error, ValueError):
            continue
    return None


def _looks_like_path(value: str) -> bool:
    if "\n" in value or value.startswith("-----BEGIN"):
        return False
    try:
        return Path(value).expanduser().is_file()
    except OSError:
        return False


def load_signing_key(value: SigningKeyInput) -> Ed25519PrivateKey:
    """Ed25519 private key from a key object, a raw 32-byte seed, its base64 text, PEM text or bytes,
    or the path of a file holding PEM or base64."""
    if isinstance(value, Ed25519PrivateKey):
        return value
    if isinstance(value, Path) or (isinstance(value, str) and _looks_like_path(value)):
        return load_signing_key(Path(value).expanduser().read_bytes())
    data = value.encode("utf-8") if isinstance(value, str) else value
    if data.lstrip().startswith(b"-----BEGIN"):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise AuditKeyError("the audit signing key is not a readable PEM private key") from exc
        if not isinstance(key, Ed25519PrivateKey):
            raise AuditKeyError("the audit signing key must be an Ed25519 key")
        return key
    if len(data) == 32 and not isinstance(value, str):
        return Ed25519PrivateKey.from_private_bytes(data)
    raw = _b64decode(data.decode("ascii", "replace"))
    if raw is None or len(raw) != 32:
        raise AuditKeyError("the audit signing key must be a 32-byte Ed25519 seed (raw or base64), PEM, "
                        "or a path to such a file")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_public_key(value: PublicKeyInput) -> Ed25519PublicKey:
    """Ed25519 public key from a key object (a private key is reduced to its public half), 32 raw
    bytes, base64 text, PEM, or the path of a file holding one of those."""
    if isinstance(value, Ed25519PublicKey):
        return value
    if isinstance(value, Ed25519PrivateKey):
        return value.public_key()
    if isinstance(value, Path) or (isinstance(value, str) and _looks_like_path(value)):
        return load_public_key(Path(value).expanduser().read_bytes())
    data = value.encode("utf-8") if isinstance(value, str) else value
    if data.lstrip().startswith(b"-----BEGIN"):
        if b"PRIVATE KEY" in data:
            return load_signing_key(data).public_key()
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, TypeError) as exc:
            raise AuditKeyError("the audit public key is not a readable PEM public key") from exc
        if not isinstance(key, Ed25519PublicKey):
            raise AuditKeyError("the audit public key must be an Ed25519 key")
        return key
    if len(data) == 32 and not isinstance(value, str):
        return Ed25519PublicKey.from_public_bytes(data)
    raw = _b64decode(data.decode("ascii", "replace"))
    if raw is None or len(raw) != 32:
        raise AuditKeyError("the audit public key must be 32 raw bytes, base64, PEM, "
                            "or a path to such a file")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_fernet_key(value: FernetKeyInput) -> bytes:
    """The url-safe base64 Fernet key (44 characters) from text, bytes or a file path."""
    if isinstance(value, Fernet):
        raise AuditKeyError("pass the Fernet key itself, not a Fernet object")
    if isinstance(value, Path) or (isinstance(value, str) and _looks_like_path(value)):
        return load_fernet_key(Path(value).expanduser().read_bytes())
    data = value.encode("ascii") if isinstance(value, str) else value
    data = data.strip()
    try:
        Fernet(data)
    except (ValueError, TypeError, binascii.Error) as exc:
        raise AuditKeyError("the audit SQL encryption key must be a Fernet key (32 bytes, url-safe base64)") \
            from exc
    return data


def fernet_of(value: FernetKeyInput | AuditKeys) -> Fernet:
    if isinstance(value, AuditKeys):
        return value.fernet
    if isinstance(value, Fernet):
        return value
    return Fernet(load_fernet_key(value))


def keys_from_config(signing_key: SigningKeyInput, fernet_key: FernetKeyInput) -> AuditKeys:
    return AuditKeys(signing_key=load_signing_key(signing_key), fernet_key=load_fernet_key(fernet_key))


def _write_secret(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)
    os.chmod(path, 0o600)


def load_or_create_keys(directory: Path) -> AuditKeys:
    """Load the audit keys from ``directory``, creating missing ones (files with mode 0600).

    Files: ``audit-signing.key`` (PKCS#8 PEM Ed25519 private key), ``audit-signing.pub`` (PEM public
    key, for verifiers) and ``audit-sql.key`` (Fernet key).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    signing_path = directory / SIGNING_KEY_FILE
    if not signing_path.exists():
        private = Ed25519PrivateKey.generate()
        pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        with contextlib.suppress(FileExistsError):  # another process created it first: use theirs
            _write_secret(signing_path, pem)
    signing = load_signing_key(signing_path)
    public_path = directory / PUBLIC_KEY_FILE
    if not public_path.exists():
        public_path.write_bytes(signing.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    fernet_path = directory / FERNET_KEY_FILE
    if not fernet_path.exists():
        with contextlib.suppress(FileExistsError):
            _write_secret(fernet_path, Fernet.generate_key())
    return AuditKeys(signing_key=signing, fernet_key=load_fernet_key(fernet_path))
