"""Which persons a request returned rows about, kept without false negatives (Art. 15 GDPR).

For every answer that carries a dataset's person key (pseudonymised under the request's purpose), the
audit record lists ``dataset:pseudonym`` entries. Up to ``EXPLICIT_LIMIT`` persons are listed one by one;
above that a Bloom filter (no false negatives, about 0.1 % false positives) is stored as a single entry
``bloom:<dataset>:<bits>:<hashes>:<base64>``. A hit in a Bloom filter is a candidate that the DPO confirms by
replaying the request.
"""

from __future__ import annotations

import base64
import hashlib
import math
from collections.abc import Iterable

EXPLICIT_LIMIT = 1000
FALSE_POSITIVE_RATE = 0.001


def _positions(item: str, bits: int, hashes: int) -> list[int]:
    digest = hashlib.sha256(item.encode("utf-8")).digest()
    first = int.from_bytes(digest[:8], "big")
    second = int.from_bytes(digest[8:16], "big") | 1
    return [(first + i * second) % bits for i in range(hashes)]


def encode_person_keys(dataset: str, keys: Iterable[str]) -> list[str]:
    unique = sorted(set(keys))
    if len(unique) <= EXPLICIT_LIMIT:
        return [f"{dataset}:{key}" for key in unique]
    bits = max(64, math.ceil(-len(unique) * math.log(FALSE_POSITIVE_RATE) / (math.log(2) ** 2)))
    hashes = max(1, round(bits / len(unique) * math.log(2)))
    field = bytearray((bits + 7) // 8)
    for key in unique:
        for position in _positions(key, bits, hashes):
            field[position // 8] |= 1 << (position % 8)
    return [f"bloom:{dataset}:{bits}:{hashes}:{base64.b64encode(bytes(field)).decode('ascii')}"]


def may_contain(entries: Iterable[str], dataset: str, key: str) -> bool:
    """True if the entries list ``key`` of ``dataset`` (exactly) or a Bloom filter may hold it."""
    for entry in entries:
        if entry == f"{dataset}:{key}":
            return True
        if entry.startswith(f"bloom:{dataset}:"):
            _, _, bits_text, hashes_text, payload = entry.split(":", 4)
            field = base64.b64decode(payload)
            bits, hashes = int(bits_text), int(hashes_text)
            if all(field[p // 8] & (1 << (p % 8)) for p in _positions(key, bits, hashes)):
                return True
    return False
