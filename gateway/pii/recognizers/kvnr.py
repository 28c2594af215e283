"""Krankenversichertennummer (eGK, unveränderbarer Teil: letter + 9 digits)."""

from __future__ import annotations

from gateway.pii.checksums import is_valid_kvnr
from gateway.pii.recognizers.base import GermanPatternRecognizer


class KvnrRecognizer(GermanPatternRecognizer):
    ENTITY = "KVNR"
    PATTERN_SPECS = (("kvnr", r"(?<![\w])[A-Z]\d{9}(?![\w])", 0.4),)

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_kvnr(pattern_text)
