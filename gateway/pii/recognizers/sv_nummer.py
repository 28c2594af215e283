"""Sozialversicherungsnummer (Rentenversicherungsnummer)."""

from __future__ import annotations

from gateway.pii.checksums import is_valid_sv_nummer
from gateway.pii.recognizers.base import GermanPatternRecognizer


class SvNummerRecognizer(GermanPatternRecognizer):
    """``15 070649 C 103``: area (2), birth date DDMMYY (6), initial of the birth
    name, serial (2), check digit (official weights 2,1,2,5,7,1,2,1,2,1,2,1)."""

    ENTITY = "SV_NUMMER"
    PATTERN_SPECS = (
        (
            "sv_nummer",
            r"(?<![\w])\d{2}\x20?\d{6}\x20?[A-Za-z]\x20?\d{2}\x20?\d(?![\w])",
            0.4,
        ),
    )

    def validate_result(self, pattern_text: str) -> bool:
        return is_valid_sv_nummer(pattern_text)
