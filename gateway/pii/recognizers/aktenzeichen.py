"""Aktenzeichen / Geschäftszeichen (file and court case numbers).

With a label (``Az. 50.2-1234/2024``, ``AZ: 123 C 456/23``, ``Aktenzeichen
51-2023-0456``) only the number is masked, the label stays.  Court numbers
without a label are recognised by their shape ``<chamber> <register> <no>/<yy>``.
Ticket/Vorgang numbers and paragraph citations are *not* Aktenzeichen.
"""

from __future__ import annotations

from gateway.pii.recognizers.base import GermanPatternRecognizer

_AZ_PART = r"[\p{L}\d][\p{L}\d./-]*\d(?:[\p{L}\d./-]*[\p{L}\d])?|\d"
_REGISTER = r"[A-Z][A-Za-z]{0,3}"
_BODY = r"(?:" + _AZ_PART + r")(?:\x20(?:" + _REGISTER + r"\x20)?(?:" + _AZ_PART + r"))*"
_LABEL = (
    r"(?:Az\.?|AZ|Aktenzeichen|Geschäftszeichen|Gz\.|GZ|Gesch\.-Z\.|Unser\x20Zeichen|unser\x20Zeichen|"
    r"Ihr\x20Zeichen|Ihr\x20Az\.|file\x20no\.|case\x20no\.)"
)


class AktenzeichenRecognizer(GermanPatternRecognizer):
    ENTITY = "AKTENZEICHEN"
    PATTERN_SPECS = (
        ("az_labelled", r"(?<![\w])" + _LABEL + r"\x20?[:.]?\x20?(?P<pii>" + _BODY + r")", 0.9),
        (
            "court_number",
            r"(?<![\w./§-])(?:[1-9]\d{0,3}|[A-Z])\x20" + _REGISTER + r"\x20(?:[A-Z]{1,3}\x20)?"
            r"\d{1,6}/\d{2,4}(?![\w/])",
            0.75,
        ),
    )

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        if not any(ch.isdigit() for ch in value):
            return None
        if "§" in text[max(0, start - 3) : start]:
            return None
        return start, end, score
