"""Steuerliche Identifikationsnummer (Steuer-ID, 11 digits)."""

from __future__ import annotations

from gateway.pii.checksums import is_valid_steuer_id
from gateway.pii.recognizers.base import GermanPatternRecognizer


class SteuerIdRecognizer(GermanPatternRecognizer):
    """11 digits, optionally grouped ``12 345 678 901``; MOD 11,10 + digit-distribution rule."""

    ENTITY = "STEUER_ID"
    PATTERN_SPECS = (("steuer_id", r"(?<![\w.,/+-])[1-9](?:\x20?\d){10}(?![\w]|[.,/-]\d)", 0.5),)
    CONTEXT_WORDS = (
        r"Steuer-?ID",
        r"Steuer-Identifikationsnummer",
        r"IdNr\.?",
        r"TIN",
        r"Identifikationsnummer",
    )

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_steuer_id(pattern_text)
