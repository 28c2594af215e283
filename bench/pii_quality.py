"""PII detection quality on the labelled corpora in tests/pii_corpus/.

Matching rule (documented): spans are compared by *character overlap*.

* A predicted span is a true positive if it overlaps at least one gold span
  (of any type - what matters for masking is that personal data is hidden);
  headline precision = TP predictions / all predictions.
* A gold span is found if at least one predicted span overlaps it.
* Per-type figures are type-aware: precision_T counts predictions of type T
  that overlap a gold span of type T; recall_T counts gold spans of type T
  overlapped by a prediction of type T.  ``recall_any`` ignores the type.
* Character coverage = share of gold (personal) characters inside some
  predicted span - the figure that matters for privacy.

Targets: coverage >= 0.95 and headline precision >= 0.90 (German corpus);
exits with status 1 if a target is missed.

Usage: python bench/pii_quality.py [--lang de|en] [--show-errors]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from gateway.pii import FreeTextScanner  # noqa: E402

CORPUS_DIR = ROOT / "tests" / "pii_corpus"
TARGET_COVERAGE = 0.95
TARGET_PRECISION = 0.90


@dataclass
class Report:
    notes: int = 0
    predicted: int = 0
    predicted_tp: int = 0
    gold: int = 0
    gold_found: int = 0
    gold_chars: int = 0
    gold_chars_masked: int = 0
    per_type: dict[str, Counter[str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.predicted_tp / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.gold_found / self.gold if self.gold else 1.0

    @property
    def coverage(self) -> float:
        return self.gold_chars_masked / self.gold_chars if self.gold_chars else 1.0

    def ok(self) -> bool:
        return self.coverage >= TARGET_COVERAGE and self.precision >= TARGET_PRECISION


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def evaluate(lang: str = "de", scanner: FreeTextScanner | None = None) -> Report:
    scanner = scanner or FreeTextScanner(lang)
    rep = Report()
    path = CORPUS_DIR / f"{lang}.jsonl"
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        rec = json.loads(line)
        text: str = rec["text"]
        gold = [(g["start"], g["end"], g["type"]) for g in rec["spans"]]
        pred = [(s.start, s.end, s.type) for s in scanner.analyze(text)]
        rep.notes += 1
        masked = [False] * len(text)
        for s, e, _ in pred:
            for i in range(s, e):
                masked[i] = True
        for s, e, t in pred:
            c = rep.per_type.setdefault(t, Counter())
            c["pred"] += 1
            rep.predicted += 1
            if any(_overlap((s, e), (gs, ge)) for gs, ge, _ in gold):
                rep.predicted_tp += 1
            else:
                rep.errors.append(f"FP  {t:<16} {text[s:e]!r:<32} | {text}")
            if any(_overlap((s, e), (gs, ge)) and gt == t for gs, ge, gt in gold):
                c["pred_tp"] += 1
        for s, e, t in gold:
            c = rep.per_type.setdefault(t, Counter())
            c["gold"] += 1
            rep.gold += 1
            rep.gold_chars += e - s
            rep.gold_chars_masked += sum(masked[s:e])
            if any(_overlap((s, e), (ps, pe)) for ps, pe, _ in pred):
                rep.gold_found += 1
                c["found_any"] += 1
            else:
                rep.errors.append(f"FN  {t:<16} {text[s:e]!r:<32} | {text}")
            if any(_overlap((s, e), (ps, pe)) and pt == t for ps, pe, pt in pred):
                c["found"] += 1
    return rep


def format_report(rep: Report, lang: str) -> str:
    lines = [f"PII quality ({lang}): {rep.notes} notes, {rep.gold} gold spans, {rep.predicted} predicted"]
    lines.append(f"{'type':<18}{'gold':>6}{'pred':>6}{'prec':>8}{'recall':>8}{'rec_any':>9}")
    for t in sorted(rep.per_type):
        c = rep.per_type[t]
        prec = c["pred_tp"] / c["pred"] if c["pred"] else float("nan")
        rec = c["found"] / c["gold"] if c["gold"] else float("nan")
        rany = c["found_any"] / c["gold"] if c["gold"] else float("nan")
        lines.append(f"{t:<18}{c['gold']:>6}{c['pred']:>6}{prec:>8.3f}{rec:>8.3f}{rany:>9.3f}")
    lines.append(
        f"precision (overlap, any type) {rep.precision:.3f}  span recall {rep.recall:.3f}  "
        f"personal characters masked {rep.coverage:.3f}"
    )
    lines.append(
        f"targets: masked >= {TARGET_COVERAGE}, precision >= {TARGET_PRECISION} -> "
        + ("OK" if rep.ok() else "MISSED")
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--lang", default="de", choices=["de", "en"])
    ap.add_argument("--show-errors", action="store_true")
    args = ap.parse_args(argv)
    rep = evaluate(args.lang)
    print(format_report(rep, args.lang))
    if args.show_errors:
        print("\n".join(rep.errors))
    return 0 if rep.ok() else 1


if __name__ == "__main__":
    raise SystemExit(main())
