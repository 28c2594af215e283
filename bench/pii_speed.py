"""Throughput of FreeTextScanner.mask_many on a realistic mix of short notes.

Prints notes/s for: a passthrough baseline (copying the column, no scanning),
a cold run (every note unique, cache disabled) and a warm run with the
repetition typical of real columns (cache enabled).

Usage: python bench/pii_speed.py [--notes 5000]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.pii import FreeTextScanner  # noqa: E402

TARGET = 1000.0


def make_notes(n: int, seed: int = 1) -> list[str | None]:
    """Corpus notes, made unique by varying numbers/words, plus ~10 % None/empty."""
    rng = random.Random(seed)
    base = [
        json.loads(line)["text"]
        for line in (ROOT / "tests" / "pii_corpus" / "de.jsonl").read_text(encoding="utf-8").splitlines()
    ]
    fillers = [
        "Rückruf erfolgt.",
        "Akte an Kollegin.",
        "Keine Auffälligkeiten.",
        "Wiedervorlage in 4 Wochen.",
    ]
    notes: list[str | None] = []
    for i in range(n):
        r = rng.random()
        if r < 0.05:
            notes.append(None)
        elif r < 0.10:
            notes.append("")
        else:
            notes.append(f"{rng.choice(base)} {rng.choice(fillers)} ({i})")
    return notes


def bench(notes: list[str | None], repeat_share: float = 0.5) -> dict[str, float]:
    res: dict[str, float] = {}
    t0 = time.perf_counter()
    copied = [None if t is None else str(t) for t in notes]
    res["baseline_passthrough"] = len(copied) / max(time.perf_counter() - t0, 1e-9)

    cold = FreeTextScanner("de", cache_size=0)
    cold.mask("Herr Müller, Tel. 0611 123456")  # warm-up (lazy loads)
    t0 = time.perf_counter()
    cold.mask_many(notes)
    res["mask_many_unique_nocache"] = len(notes) / (time.perf_counter() - t0)

    rng = random.Random(2)
    pool = notes[: max(1, int(len(notes) * (1 - repeat_share)))]
    mixed = [rng.choice(pool) for _ in notes]
    warm = FreeTextScanner("de")
    warm.mask("Herr Müller, Tel. 0611 123456")
    t0 = time.perf_counter()
    warm.mask_many(mixed)
    res["mask_many_with_repeats_cached"] = len(mixed) / (time.perf_counter() - t0)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--notes", type=int, default=5000)
    args = ap.parse_args(argv)
    notes = make_notes(args.notes)
    res = bench(notes)
    for k, v in res.items():
        print(f"{k:<32} {v:>12,.0f} notes/s")
    ok = res["mask_many_unique_nocache"] >= TARGET
    print(f"target >= {TARGET:,.0f} notes/s (unique, no cache): {'OK' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
