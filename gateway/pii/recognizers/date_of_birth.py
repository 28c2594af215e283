"""Dates of birth.

Only dates with a birth context are masked: ``geb. 03.04.1971``, ``geboren am
3. April 1971``, ``*12.05.1980``, ``Geburtsdatum: 1971-04-03``, ``(geb. 1971)``,
``Jahrgang 1971``.  Plain dates (appointments, deadlines, letters) are kept on
purpose: they are not personal data by themselves and masking them would make
the notes useless for analysis.  ``geb. Müller`` (birth name) is handled by the
person recognizer.
"""

from __future__ import annotations

import regex

from gateway.pii.recognizers.base import GermanPatternRecognizer

_MONTHS = (
    r"(?:Januar|Jänner|Februar|März|April|Mai|Juni|Juli|August|September|Oktober|November|Dezember|"
    r"Jan\.|Feb\.|Mär\.|Apr\.|Jun\.|Jul\.|Aug\.|Sep\.|Sept\.|Okt\.|Nov\.|Dez\.|"
    r"January|February|March|May|June|July|October|December)"
)
_DATE = (
    r"(?:\d{1,2}\.\x20?\d{1,2}\.\x20?(?:\d{4}|\d{2})(?!\d)"
    r"|\d{1,2}\.?\x20" + _MONTHS + r"\x20\d{4}"
    r"|(?:19|20)\d{2}-\d{2}-\d{2}"
    r"|\d{1,2}/\d{1,2}/(?:\d{4}|\d{2})(?!\d))"
)
_CONTEXT = (
    r"(?:geb\.|geboren|Geburtsdatum|Geb\.-?Datum|Geb\.|Geburtstag|Geburt|geb\.\x20am|DOB|D\.O\.B\.|"
    r"born|date\x20of\x20birth|birthday)"
)
_DOB_RE = (
    r"(?:" + _CONTEXT + r")\x20?(?:am|on|:)?\x20?:?\x20?(?P<pii>" + _DATE + r")"
    r"|(?<![\w*])\*\x20?(?P<pii>" + _DATE + r")"
)
_YEAR_RE = (
    r"(?:\(geb\.|geb\.|geboren|Jahrgang|Jg\.|born\x20in)\x20?(?:im\x20Jahr\x20|in\x20)?"
    r"(?P<pii>(?:19|20)\d{2})(?!\d)"
)

_PARTS = regex.compile(r"\d+")


class DateOfBirthRecognizer(GermanPatternRecognizer):
    ENTITY = "DATE_OF_BIRTH"
    FLAGS = regex.IGNORECASE
    PATTERN_SPECS = (("dob_date", _DOB_RE, 0.95), ("dob_year", _YEAR_RE, 0.75))

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        nums = [int(x) for x in _PARTS.findall(value)]
        if len(nums) == 3:
            if value[:4].isdigit():  # ISO
                _, month, day = nums
            elif "/" in value:
                a, b, _ = nums
                day, month = (a, b) if a > 12 else (b, a) if b > 12 else (a, b)
            else:
                day, month, _ = nums
            if not (1 <= day <= 31 and 1 <= month <= 12):
                return None
        return start, end, score
