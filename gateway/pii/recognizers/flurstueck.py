"""Flurstückskennzeichen (land parcels - they identify the owner via the land register).

Masked span: from the first cadastral keyword to the end of the parcel number,
e.g. the whole ``Gemarkung Biebrich, Flur 12, Flurstück 345/6`` or
``Flurstück 345/6``; the machine format ``060123-012-00345/006`` (Gemarkung -
Flur - Zähler/Nenner) is recognised without keyword.
"""

from __future__ import annotations

from gateway.pii.recognizers.base import GermanPatternRecognizer

_NUM = r"\d{1,5}(?:/\d{1,4})?"
_PARCEL = (
    r"(?:Flurstücke?|Flurstücksnummer|Flst\.(?:-Nr\.)?|Flst|Flurst\.)\x20?:?\x20?"
    + _NUM
    + (r"(?:\x20?(?:,|und|u\.)\x20?" + _NUM + r"(?![\w.]))*")
)
_FLUR = r"Flur\x20\d{1,3},?\x20"
_GEMARKUNG = r"Gemarkung\x20\p{Lu}[\p{L}-]+(?:\x20\p{Lu}[\p{L}-]+)?,?\x20"


class FlurstueckRecognizer(GermanPatternRecognizer):
    ENTITY = "FLURSTUECK"
    PATTERN_SPECS = (
        ("flurstueck", r"(?<![\w])(?:" + _GEMARKUNG + r")?(?:" + _FLUR + r")?" + _PARCEL, 0.9),
        ("flurstueck_code", r"(?<![\w-])\d{6}-\d{3}-\d{5}(?:/\d{3,4})?(?:\.\d{2,3})?(?![\w])", 0.9),
    )
