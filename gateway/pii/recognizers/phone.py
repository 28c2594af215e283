"""German (and international) telephone numbers.

Accepted spellings: ``0611 1234567``, ``+49 611 123456``, ``0049 (0)611/12345``,
``0170/1234567``, ``(0611) 12 34 56``, ``0611-12345-0``, ``+49-170-1234567``.

Not phone numbers (all rejected structurally, no context needed): dates
(``03.04.1971``, ``03-04-1971``), case numbers (``Az. 50.2-1234/2024`` - no
leading 0 / +), amounts (``1.250,00 EUR``), 5-digit postcodes; dots are never
accepted as separators.  A national number must start with ``0[1-9]`` (trunk
prefix + area code) and contain 6-15 digits in total.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import regex

from gateway.pii.recognizers.base import GermanPatternRecognizer

_DATE_SHAPE = regex.compile(r"^\(?\d{1,2}\)?[\x20/-]+\d{1,2}[\x20/-]+(?:19|20)?\d{2}$")

_PHONE = r"""
(?<![\w+/.,:-])
(?:
    (?:\+|00)[1-9]\d{0,2}                    # country code: +49 / 0049
    (?:[\x20-]?\(0\))?                       # optional (0)
    [\x20/-]?\(?[1-9]\d{0,4}\)?              # area code without trunk 0
  |
    \(0[1-9]\d{0,4}\)                        # (0611)
  |
    0[1-9]\d{0,4}                            # 0611 / 0170
)
(?:\x20?[/-]\x20?|\x20)?
\d{1,8}
(?:(?:\x20?[/-]\x20?|\x20)\d{1,8}){0,5}
(?![\w])
(?![.,]\d)
"""


class PhoneRecognizer(GermanPatternRecognizer):
    ENTITY = "PHONE"
    PATTERN_SPECS: ClassVar[Sequence[tuple[str, str, float]]] = (("phone", _PHONE, 0.6),)
    CONTEXT_WORDS = (
        r"Tel\.?",
        "Telefon",
        "Telefonnummer",
        r"Tel\.-?Nr\.?",
        "Handy",
        "Handynummer",
        "Mobil",
        "Mobilnummer",
        "Mobiltelefon",
        "Festnetz",
        "Fax",
        "Rufnummer",
        "erreichbar",
        "anrufen",
        "Rückruf",
        "phone",
        "mobile",
        "call",
        "WhatsApp",
    )
    NEGATIVE_CONTEXT_WORDS = (
        r"Az\.?",
        "AZ",
        "Aktenzeichen",
        "Geschäftszeichen",
        "Kassenzeichen",
        "Ticket",
        r"Ticket-?Nr\.?",
        "Vorgang",
        "Vorgangsnummer",
        r"Rechnungs-?nr\.?",
        "Rechnungsnummer",
        r"Kunden-?nr\.?",
        "Kundennummer",
        "Flurstück",
        r"Flst\.?",
        "Flur",
        r"§+",
        "Art.",
        "Abs.",
    )

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        # trailing single "-0"/"-12" extensions are fine; strip a dangling separator
        significant = value.replace("(0)", "")
        if significant.startswith("00"):
            significant = significant[2:]
        digits = sum(ch.isdigit() for ch in significant)
        if not 6 <= digits <= 15:
            return None
        if _DATE_SHAPE.match(value):
            return None
        if self.has_negative_context(text, start):
            return None
        compact = value.replace(" ", "")
        if value.startswith(("+", "00")):
            score = 0.7
        elif compact.isdigit() and digits >= 10:
            score = 0.55  # 06111234567: plausible, but also customer numbers
        if self.has_context(text, start, end):
            score = min(1.0, score + self.CONTEXT_BOOST)
        return start, end, score


class EnglishPhoneRecognizer(PhoneRecognizer):
    """Adds North-American ``(555) 123-4567`` / ``555-123-4567`` spellings for ``en``."""

    PATTERN_SPECS = (
        *PhoneRecognizer.PATTERN_SPECS,
        (
            "phone_nanp",
            r"(?<![\w+/.,-])(?:\+1[\x20-]?)?(?:\(\d{3}\)\x20?|\d{3}[-.\x20])\d{3}[-.\x20]\d{4}(?![\w]|[.,]\d)",
            0.65,
        ),
    )

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        if value[:1] not in ("0", "+", "(") or (value.startswith("(") and value[1:2] != "0"):
            # NANP shape
            if self.has_negative_context(text, start):
                return None
            if self.has_context(text, start, end):
                score = min(1.0, score + self.CONTEXT_BOOST)
            return start, end, score
        return super().refine(text, start, end, score)
