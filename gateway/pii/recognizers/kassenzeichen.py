"""Kassenzeichen (payment reference of the city treasury) - only with a label."""

from __future__ import annotations

from gateway.pii.recognizers.base import GermanPatternRecognizer


class KassenzeichenRecognizer(GermanPatternRecognizer):
    ENTITY = "KASSENZEICHEN"
    PATTERN_SPECS = (
        (
            "kassenzeichen",
            r"(?<![\w])(?:Kassenzeichen|Kassenz\.|Kassen-Nr\.?|Kassenzeichens|Buchungszeichen)"
            r"\x20?[:.]?\x20?(?P<pii>(?:[A-Z]{1,3}-?)?\d+(?:[./-]\d+|\x20\d{3,})*)",
            0.9,
        ),
    )
