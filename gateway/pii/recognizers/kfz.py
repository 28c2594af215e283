"""Kfz-Kennzeichen (German number plates): ``WI-AB 123``, ``MZ AB 1234E``, ``F-XY 99H``."""

from __future__ import annotations

from gateway.pii.recognizers.base import GermanPatternRecognizer

# district codes that collide with common abbreviations in administrative text
_NOT_DISTRICTS = frozenset(
    [
        "SGB",
        "BGB",
        "ZPO",
        "EUR",
        "USD",
        "GG",
        "AZ",
        "KW",
        "NR",
        "ABS",
        "ART",
        "UST",
        "DIN",
        "ISO",
        "EU",
        "AO",
        "VWGO",
        "STGB",
        "BAB",
        "TEL",
        "FAX",
        "PLZ",
        "KITA",
        "GMBH",
        "AG",
        "KG",
        "UG",
        "EV",
        "ID",
        "PDF",
        "CD",
        "TV",
    ]
)


class KfzRecognizer(GermanPatternRecognizer):
    ENTITY = "KFZ_KENNZEICHEN"
    PATTERN_SPECS = (
        (
            "kfz",
            r"(?<![\w-])(?P<code>[A-ZÄÖÜ]{1,3})[\x20-](?P<letters>[A-Z]{1,2})[\x20-]?"
            r"[1-9]\d{0,3}[EH]?(?![\w-])",
            0.6,
        ),
    )
    CONTEXT_WORDS = (
        "Kennzeichen",
        "Kfz",
        r"Kfz-Kennzeichen",
        "amtliches",
        "Fahrzeug",
        "PKW",
        "Pkw",
        "LKW",
        "Auto",
        "Wagen",
        "Halter",
        "Halterin",
        "Falschparker",
        "geparkt",
        "parkt",
        "abgeschleppt",
        "Parkverstoß",
        "Anwohnerparkausweis",
        "Motorrad",
        "Transporter",
        "licence plate",
        "license plate",
    )

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        code = text[start:end].replace("-", " ").split(" ")[0]
        if code in _NOT_DISTRICTS:
            return None
        # Roman numerals after a code are law citations ("SGB XII 12"), never plates
        rest = text[start + len(code) + 1 : end]
        if rest[:1] in "IVX" and all(ch in "IVX" for ch in rest.split(" ")[0].rstrip("0123456789")):
            return None
        if self.has_context(text, start, end):
            score = min(1.0, score + self.CONTEXT_BOOST)
        return start, end, score
