"""pii stage: German-first, offline detection and masking of personal data in free text.

Public API::

    Span(start, end, type, score)
    FreeTextScanner(language="de", score_threshold=0.5).analyze / mask / mask_many
    get_scanner(language="de")
    analyze_jsonl(infile, outfile, language="de")
"""

from gateway.pii import _offline  # noqa: F401  (first: keeps tldextract offline)
from gateway.pii.jsonl import analyze_jsonl
from gateway.pii.scanner import FreeTextScanner, Span, get_scanner, merge_spans

__all__ = ["FreeTextScanner", "Span", "analyze_jsonl", "get_scanner", "merge_spans"]
