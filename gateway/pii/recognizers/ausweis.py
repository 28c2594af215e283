"""Personalausweis / Reisepass document numbers.

The 9-character document number of German ID cards (since 2010) and passports
uses the alphabet ``[CFGHJKLMNPRTVWXYZ0-9]`` and has *no* check digit (Presidio's
stock recognizers wrongly treat the 9th character as one and reject the official
specimens ``L01X00T47`` / ``C01X00T47``).  In the machine-readable zone a 10th
character is appended: the ICAO 9303 check digit (weights 7-3-1).
"""

from __future__ import annotations

from gateway.pii.checksums import mrz_check_digit
from gateway.pii.recognizers.base import GermanPatternRecognizer

_ALPHABET = "CFGHJKLMNPRTVWXYZ0123456789"


class AusweisRecognizer(GermanPatternRecognizer):
    ENTITY = "AUSWEIS_NR"
    PATTERN_SPECS = (
        (
            "document_number",
            r"(?<![\w<])[CFGHJKLMNPRTVWXYZ][CFGHJKLMNPRTVWXYZ0-9]{8}\d?(?![\w])",
            0.55,
        ),
    )
    CONTEXT_WORDS = (
        "Ausweis",
        "Ausweisnummer",
        r"Ausweis-Nr\.?",
        "Personalausweis",
        r"Personalausweis-?Nr\.?",
        r"Personalausweisnummer",
        r"PA-?Nr\.?",
        "Reisepass",
        r"Reisepass-?Nr\.?",
        r"Pass-?Nr\.?",
        "Passnummer",
        "Dokumentennummer",
        r"Ausweisdokument",
        "passport",
        "ID card",
    )
    CONTEXT_BOOST = 0.4

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        if len(value) == 10:  # MRZ form with check digit
            if mrz_check_digit(value[:9]) != int(value[9]):
                return None
            return start, end, 1.0
        digits = sum(ch.isdigit() for ch in value)
        letters = len(value) - digits
        if digits < 2:
            return None
        if self.has_context(text, start, end):
            return start, end, 0.95
        # without context insist on a mixed letter/digit shape typical of real numbers
        if letters < 2:
            return None
        return start, end, score
