"""Postcode + town: ``65183 Wiesbaden``, ``60311 Frankfurt am Main``, ``65189 Wiesbaden-Biebrich``.

Design decision: every German postcode followed by a town name is masked, also
when it belongs to an office - the scanner cannot know whose address it is, and
postcode + town narrows a person's residence considerably.
"""

from __future__ import annotations

from gateway.pii.recognizers.base import GermanPatternRecognizer

_TOWN = r"\p{Lu}[\p{Ll}ß]+(?:-\p{Lu}[\p{Ll}ß]+)*"
_NOT_TOWNS = frozenset(
    [
        "Euro",
        "EUR",
        "Einwohner",
        "Einwohnerinnen",
        "Personen",
        "Menschen",
        "Besucher",
        "Fälle",
        "Anträge",
        "Haushalte",
        "Stück",
        "Mal",
        "Kinder",
        "Bürger",
        "Bürgerinnen",
        "Stunden",
        "Tage",
        "Jahre",
        "Meter",
        "Kilometer",
        "Exemplare",
        "Seiten",
        "Zeichen",
    ]
)


class PlzOrtRecognizer(GermanPatternRecognizer):
    ENTITY = "PLZ_ORT"
    PATTERN_SPECS = (
        (
            "plz_ort",
            r"(?<![\w.,/-])(?:D-)?(?P<plz>\d{5})\x20+(?:Bad\x20)?(?P<town>" + _TOWN + r")"
            r"(?:\x20(?:am|an\x20der|im|in\x20der|ob\x20der|vor\x20der|bei)\x20" + _TOWN + r")?"
            r"(?:\x20\(\p{Lu}[\p{Ll}ß.]*\))?",
            0.7,
        ),
    )
    CONTEXT_WORDS = ("wohnhaft", "wohnt", "Adresse", "Anschrift", "verzogen", "Meldeadresse", "in")

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        plz = value[2:7] if value.startswith("D-") else value[:5]
        if not 1001 <= int(plz) <= 99998:
            return None
        town = value[len(plz) + (2 if value.startswith("D-") else 0) :].strip().split(" ")[0]
        if town in _NOT_TOWNS:
            return None
        return super().refine(text, start, end, score)
