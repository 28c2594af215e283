"""Umsatzsteuer-Identifikationsnummer (USt-IdNr, DE + 9 digits)."""

from __future__ import annotations

from gateway.pii.checksums import is_valid_ust_id_de
from gateway.pii.recognizers.base import GermanPatternRecognizer


class UstIdRecognizer(GermanPatternRecognizer):
    """``DE123456789`` / ``DE 123 456 789`` with the MOD 11,10 check digit."""

    ENTITY = "UST_ID"
    PATTERN_SPECS = (("ust_id", r"(?<![\w])DE\x20?\d{3}\x20?\d{3}\x20?\d{3}(?![\w])", 0.4),)

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_ust_id_de(pattern_text)
