"""IBAN (all ISO 13616 countries, mod-97), with or without spaces."""

from __future__ import annotations

from gateway.pii.checksums import IBAN_LENGTHS, is_valid_iban
from gateway.pii.recognizers.base import GermanPatternRecognizer


class IbanRecognizer(GermanPatternRecognizer):
    """Matches a country code, 2 check digits and 11-30 alphanumerics (groups of 4 may be
    space-separated).  The match is cut to the country's IBAN length (so trailing
    digits of the following text are not swallowed) and kept only if mod-97 holds."""

    ENTITY = "IBAN"
    PATTERN_SPECS = (
        (
            "iban",
            r"(?<![\w])[A-Z]{2}\d{2}(?:\x20?[A-Z0-9]{4}){2,7}(?:\x20?[A-Z0-9]{1,4})?(?![\w])",
            0.3,
        ),
    )
    CONTEXT_WORDS = ("IBAN", "Konto", "Bankverbindung")

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        length = IBAN_LENGTHS.get(text[start : start + 2])
        if length is None:
            return None
        seen = 0
        cut = start
        for i in range(start, end):
            if text[i] != " ":
                seen += 1
                if seen == length:
                    cut = i + 1
                    break
        if seen < length:
            return None
        if cut < end and text[cut] != " ":
            return None  # the length boundary falls inside a group: not an IBAN
        if not is_valid_iban(text[start:cut]):
            return None
        return start, cut, 1.0
