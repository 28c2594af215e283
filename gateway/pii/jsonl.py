"""Batch interface: JSON lines in, detected spans out."""

from __future__ import annotations

import json
from typing import Any, TextIO

from gateway.pii.scanner import get_scanner


def analyze_jsonl(infile: TextIO, outfile: TextIO, language: str = "de") -> int:
    """Read ``{"id", "text"}`` lines, write ``{"id", "spans": [...]}`` lines.

    A malformed line (bad JSON, not an object, ``text`` missing or not a string)
    or a failing analysis yields ``{"id": <id or null>, "error": "..."}`` instead of
    aborting the batch.  Blank lines are skipped.  Returns the number of lines written.
    """
    scanner = get_scanner(language)
    count = 0
    for lineno, raw in enumerate(infile, start=1):
        if not raw.strip():
            continue
        record_id: Any = None
        out: dict[str, Any]
        try:
            record = json.loads(raw)
            if not isinstance(record, dict):
                raise ValueError("line is not a JSON object")
            record_id = record.get("id")
            text = record.get("text")
            if not isinstance(text, str):
                raise ValueError("'text' missing or not a string")
            spans = scanner.analyze(text)
            out = {
                "id": record_id,
                "spans": [
                    {"start": s.start, "end": s.end, "type": s.type, "score": round(s.score, 3)}
                    for s in spans
                ],
            }
        except Exception as exc:  # one bad line must not kill the batch
            out = {"id": record_id, "error": f"line {lineno}: {type(exc).__name__}: {exc}"}
        outfile.write(json.dumps(out, ensure_ascii=False) + "\n")
        count += 1
    return count
