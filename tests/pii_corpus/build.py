"""Build ``<lang>.jsonl`` from ``<lang>.src.txt`` (``⟦TYPE:text⟧`` markup) and verify offsets.

Run: ``python tests/pii_corpus/build.py``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
ALIASES = {
    "P": "PERSON", "E": "EMAIL", "T": "PHONE", "I": "IBAN", "S": "STEUER_ID", "V": "SV_NUMMER",
    "A": "AUSWEIS_NR", "K": "KFZ_KENNZEICHEN", "AD": "ADDRESS", "O": "PLZ_ORT", "G": "DATE_OF_BIRTH",
    "AZ": "AKTENZEICHEN", "KZ": "KASSENZEICHEN", "F": "FLURSTUECK", "U": "UST_ID", "KV": "KVNR",
    "CC": "CREDIT_CARD", "SSN": "US_SSN", "NINO": "UK_NINO",
}  # fmt: skip
MARK = re.compile(r"⟦([A-Z]+):(.*?)⟧")


def parse(line: str) -> dict[str, object]:
    text, pos = "", 0
    spans: list[dict[str, Any]] = []
    for m in MARK.finditer(line):
        text += line[pos : m.start()]
        start = len(text)
        text += m.group(2)
        spans.append({"start": start, "end": len(text), "type": ALIASES[m.group(1)]})
        pos = m.end()
    text += line[pos:]
    for sp, m in zip(spans, MARK.finditer(line), strict=True):
        assert text[sp["start"] : sp["end"]] == m.group(2)
    assert "⟦" not in text and "⟧" not in text, line
    return {"text": text, "spans": spans}


def build(lang: str) -> int:
    src = HERE / f"{lang}.src.txt"
    lines = [
        ln for ln in src.read_text(encoding="utf-8").splitlines() if ln.strip() and not ln.startswith("#")
    ]
    with (HERE / f"{lang}.jsonl").open("w", encoding="utf-8") as fh:
        for ln in lines:
            fh.write(json.dumps(parse(ln), ensure_ascii=False) + "\n")
    return len(lines)


if __name__ == "__main__":
    for lang in ("de", "en"):
        if (HERE / f"{lang}.src.txt").exists():
            print(lang, build(lang))
