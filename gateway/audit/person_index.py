"""Which persons a request returned rows about, kept without false negatives (Art. 15 GDPR).

For every answer that carries a dataset's person key (pseudonymised under the request's purpose), the
audit record lists ``dataset:pseudonym`` entries. Up to ``EXPLICIT_LIMIT`` persons are listed one by one;
above that a Bloom filter (no false negatives, about 0.1 % false positives) is stored as a single entry
``bloom:<dataset>:<bits>:<hashes>:<base64>``. A hit in a Bloom filter is a candidate that the DPO confirms by
replaying the request. Streamed answers gather their keys batch by batch (``PersonKeyCollector``,
``fp32`` fingerprint entries, below) into the ``query_completed`` record.
"""

from __future__ import annotations

import base64
import hashlib
import math
import zlib
from collections.abc import Iterable
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
        if entry.startswith(f"fp32:{dataset}:") and _fp32_contains(entry.split(":", 2)[2], key):
            return True
    return False


# --- streamed answers: person keys gathered batch by batch ---------------------------------------------
#
# A streamed answer (CSV, Arrow, Parquet, large JSON) may carry a million persons; hashing each key in a
# Python loop would cost more than the export itself. Beyond ``EXPLICIT_LIMIT`` persons its keys are kept
# as 32-bit fingerprints: the 64-bit FNV-1a hash of the key's UTF-8 bytes (computed over whole Arrow
# arrays with numpy; ``_fnv1a64`` is the same function for one key), cut to its low 32 bits, sorted and
# stored once each as ``fp32:<dataset>:<payload>`` (``_pack_fingerprints``: gaps, byte-transposed, zlib,
# base64). No false negatives; a person not in the answer matches with probability (number of
# fingerprints) / 2**32, about 0.02 % for a million persons. 4 bytes per person in memory, about 1.8 in
# the record.

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK64 = (1 << 64) - 1


def _fnv1a64(key: str) -> int:
    value = _FNV_OFFSET
    for byte in key.encode("utf-8"):
        value = ((value ^ byte) * _FNV_PRIME) & _MASK64
    return value


def _fnv1a64_array(keys: pa.Array) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """``_fnv1a64`` of every string of ``keys`` (no nulls), vectorised over the Arrow buffers."""
    strings = keys if keys.type in (pa.string(), pa.large_string()) else pc.cast(keys, pa.string())
    buffers = strings.buffers()
    offset_type = np.int64 if strings.type == pa.large_string() else np.int32
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[strings.offset:strings.offset + len(strings) + 1]
    offsets = offsets.astype(np.int64)
    data = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    starts, lengths = offsets[:-1], np.diff(offsets)
    hashed = np.full(len(strings), _FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(_FNV_PRIME)
    if not len(lengths):
        return hashed
    with np.errstate(over="ignore"):
        width = int(lengths[0])
        if (lengths == width).all() and int(offsets[-1] - offsets[0]) == width * len(lengths):
            # every key has the same length (pseudonyms): one column of bytes per step, no index arrays,
            # in place (this runs in the web server's worker threads: few temporaries, little memory)
            block = data[int(offsets[0]):int(offsets[-1])].reshape(len(lengths), width)
            column = np.empty(len(lengths), dtype=np.uint64)
            for j in range(width):
                np.copyto(column, block[:, j], casting="unsafe")
                np.bitwise_xor(hashed, column, out=hashed)
                np.multiply(hashed, prime, out=hashed)
            return hashed
        for j in range(int(lengths.max())):
            index = np.nonzero(lengths > j)[0]
            hashed[index] = (hashed[index] ^ data[starts[index] + j].astype(np.uint64)) * prime
    return hashed


def _fingerprint(key: str) -> int:
    return _fnv1a64(key) & 0xFFFFFFFF


class PersonKeyCollector:
    """The person keys of one dataset in a streamed answer, gathered batch by batch in bounded memory:
    listed one by one up to ``EXPLICIT_LIMIT`` persons, beyond that as 32-bit fingerprints (``fp32``)."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self._explicit: set[str] | None = set()
        self._fingerprints: list[np.ndarray[Any, np.dtype[np.uint32]]] = []
        self._pending = 0

    def add(self, values: pa.Array | pa.ChunkedArray) -> None:
        """Add the keys in ``values`` (as returned; nulls are skipped, other types compared as text)."""
        keys = values.drop_null() if values.null_count else values
        if isinstance(keys, pa.ChunkedArray):
            keys = keys.chunk(0) if keys.num_chunks == 1 else keys.combine_chunks()
        if keys.type not in (pa.string(), pa.large_string()):
            keys = pc.cast(keys, pa.string())
        if not len(keys):
            return
        if self._explicit is not None:
            unique = pc.unique(keys)
            if len(self._explicit) + len(unique) <= EXPLICIT_LIMIT:
                self._explicit.update(unique.to_pylist())
                return
            keys = pa.concat_arrays([pa.array(sorted(self._explicit), pa.string()), unique])
            self._explicit = None
        self._fingerprints.append(_fnv1a64_array(keys).astype(np.uint32))  # the low 32 bits
        self._pending += len(keys)
        kept = len(self._fingerprints[0]) if len(self._fingerprints) > 1 else 0
        if self._pending > max(64 * EXPLICIT_LIMIT, kept):  # amortised: compact when the pending part doubles
            self._compact()

    def _compact(self) -> None:
        """Keep each fingerprint once (repeated persons across batches cost no memory)."""
        merged = np.concatenate(self._fingerprints)
        self._fingerprints = []
        merged.sort()  # in place; sort-based dedup: numpy's hash-based unique is slower here
        keep = np.empty(len(merged), dtype=np.bool_)
        keep[:1] = True
        np.not_equal(merged[1:], merged[:-1], out=keep[1:])
        self._fingerprints = [merged[keep]]
        self._pending = 0

    def entries(self) -> list[str]:
        if self._explicit is not None:
            return [f"{self.dataset}:{key}" for key in sorted(self._explicit)]
        self._compact()
        return [f"fp32:{self.dataset}:{_pack_fingerprints(self._fingerprints[0])}"]


def _pack_fingerprints(sorted_unique: np.ndarray[Any, np.dtype[np.uint32]]) -> str:
    """Sorted fingerprints as base64(zlib(byte-transposed little-endian uint32 gaps)): about 14 bits per
    person for a million persons instead of 32."""
    gaps = np.diff(sorted_unique, prepend=np.uint32(0)).astype("<u4")
    transposed = gaps.view(np.uint8).reshape(-1, 4).T.copy()
    return base64.b64encode(zlib.compress(transposed.tobytes(), 6)).decode("ascii")


def _unpack_fingerprints(payload: str) -> np.ndarray[Any, np.dtype[np.uint32]]:
    raw = np.frombuffer(zlib.decompress(base64.b64decode(payload)), dtype=np.uint8)
    gaps = raw.reshape(4, -1).T.copy().view("<u4").ravel()
    return np.cumsum(gaps, dtype=np.uint64).astype(np.uint32)


def _fp32_contains(payload: str, key: str) -> bool:
    fingerprints = _unpack_fingerprints(payload)
    wanted = np.uint32(_fingerprint(key))
    index = int(np.searchsorted(fingerprints, wanted))
    return index < len(fingerprints) and fingerprints[index] == wanted
