"""Street + house number.

``Rheinstraße 12``, ``Wilhelmstr. 7a``, ``Schiersteiner Straße 12 a``,
``Am Schlosspark 3``, ``An der Ringkirche 5-7``, ``Kaiser-Friedrich-Ring 45``.
Street names without a house number are not matched (a street alone is not
personal), nor are look-alikes such as ``Anlage 3`` / ``Arbeitsplatz 2`` /
``Am Montag 3 Termine``.
"""

from __future__ import annotations

from gateway.pii.recognizers.base import GermanPatternRecognizer

_SUFFIX = (
    r"(?:straße|strasse|str\.|gasse|weg|allee|platz|ring|damm|ufer|pfad|steig|chaussee|markt|"
    r"graben|wall|kamp|stieg|promenade|anlage|anlagen|passage|brücke|gäßchen|pforte|tor)"
)
_WORD_SUFFIX = (
    r"(?:Straße|Strasse|Str\.|Gasse|Weg|Allee|Platz|Ring|Damm|Ufer|Pfad|Steig|Chaussee|Markt|"
    r"Graben|Wall|Kamp|Stieg|Promenade|Anlage|Anlagen|Brücke|Tor)"
)
_HOUSE_NO = (
    r"\x20?(?P<no>[1-9]\d{0,3})(?:\x20?[a-zA-Z](?![\w]))?(?:\x20?[-/]\x20?[1-9]\d{0,3}[a-z]?)?(?![\w]|[.,]\d)"
)
_CAP = r"\p{Lu}[\p{Ll}ß]+"

_SUFFIX_FORM = r"(?<![\w-])(?:" + _CAP + r"-)*\p{Lu}[\p{L}]*?" + _SUFFIX + r"(?:(?<=\.)|(?![\w]))" + _HOUSE_NO
_TWO_WORD_FORM = (
    r"(?<![\w-])(?:" + _CAP + r"-)*" + _CAP + r"\x20" + _WORD_SUFFIX + r"(?:(?<=\.)|(?![\w]))" + _HOUSE_NO
)
_HYPHEN_FORM = r"(?<![\w-])(?:" + _CAP + r"-)+" + _WORD_SUFFIX + r"(?:(?<=\.)|(?![\w]))" + _HOUSE_NO
_PREFIX_FORM = (
    r"(?<![\w-])(?:Am|An\x20der|An\x20den|Auf\x20der|Auf\x20dem|Auf\x20den|Im|In\x20der|In\x20den|Zum|Zur|"
    r"Unter\x20den|Hinter\x20der|Hinter\x20dem|Vor\x20dem|Bei\x20der|Alte|Alter|Neue|Neuer|Große|Kleine)"
    r"\x20(?P<name>(?:" + _CAP + r"-)*" + _CAP + r")\x20(?P<no>[1-9]\d{0,2})(?:\x20?[a-zA-Z](?![\w]))?"
    r"(?:\x20?[-/]\x20?[1-9]\d{0,2}[a-z]?)?(?![\w]|[.,]\d)"
)

# compounds with a street suffix that are ordinary nouns
_NOT_STREETS = frozenset(
    [
        "Arbeitsplatz",
        "Kitaplatz",
        "Parkplatz",
        "Stellplatz",
        "Ausbildungsplatz",
        "Studienplatz",
        "Schulplatz",
        "Betreuungsplatz",
        "Krippenplatz",
        "Sitzplatz",
        "Spielplatz",
        "Wohnplatz",
        "Therapieplatz",
        "Pflegeplatz",
        "Heimplatz",
        "Wohnheimplatz",
        "Kindergartenplatz",
        "Praktikumsplatz",
        "Rechtsweg",
        "Lösungsweg",
        "Umweg",
        "Ausweg",
        "Rückweg",
        "Heimweg",
        "Schulweg",
        "Arbeitsweg",
        "Fußweg",
        "Radweg",
        "Postweg",
        "Dienstweg",
        "Anlage",
        "Anlagen",
        "Beilage",
        "Zulage",
        "Grundlage",
        "Vorlage",
        "Stadtmarkt",
        "Arbeitsmarkt",
        "Wohnungsmarkt",
        "Flohmarkt",
        "Supermarkt",
        "Tor",
        "Stor",
        "Ring",
        "Anhang",
    ]
)
_NOT_PREFIX_NAMES = frozenset(
    [
        "Montag",
        "Dienstag",
        "Mittwoch",
        "Donnerstag",
        "Freitag",
        "Samstag",
        "Sonntag",
        "Januar",
        "Februar",
        "März",
        "April",
        "Mai",
        "Juni",
        "Juli",
        "August",
        "September",
        "Oktober",
        "November",
        "Dezember",
        "Jahr",
        "Jahre",
        "Monat",
        "Monate",
        "Woche",
        "Wochen",
        "Tag",
        "Tage",
        "Ende",
        "Anfang",
        "Mitte",
        "Wochenende",
        "Morgen",
        "Abend",
        "Vormittag",
        "Nachmittag",
        "Termin",
        "Stück",
        "Quartal",
        "Rahmen",
        "Fall",
        "Fälle",
        "Moment",
        "Punkt",
        "Ort",
        "Telefon",
        "Gespräch",
        "Schreiben",
        "Bescheid",
        "Antrag",
        "Haushalt",
        "Alter",
        "Zeitraum",
        "Anlage",
        "Sache",
        "Regel",
        "Summe",
        "Höhe",
        "Folge",
        "Zeit",
        "Akte",
        "Liste",
        "Schnitt",
        "Durchschnitt",
        "Gesamten",
        "Übrigen",
        "Vorfeld",
        "Rückblick",
        "Einzelfall",
        "Anschluss",
        "Auftrag",
        "Namen",
        "Hinblick",
        "Zuge",
        "Laufe",
        "Verlauf",
        "Prinzip",
        "Grunde",
        "Bereich",
        "Schuljahr",
        "Semester",
        "Kalender",
        "Frühjahr",
        "Sommer",
        "Herbst",
        "Winter",
        "Dezember",
        "Alltag",
        "Haus",
        "Kreis",
        "Vergleich",
        "Vorjahr",
        "Stadtteil",
        "Gebiet",
    ]
)


class AddressRecognizer(GermanPatternRecognizer):
    ENTITY = "ADDRESS"
    PATTERN_SPECS = (
        ("street_suffix", _SUFFIX_FORM, 0.85),
        ("street_two_words", _TWO_WORD_FORM, 0.85),
        ("street_hyphenated", _HYPHEN_FORM, 0.85),
        ("street_prefix", _PREFIX_FORM, 0.7),
    )
    CONTEXT_WORDS = ("wohnhaft", "wohnt", "Adresse", "Anschrift", "verzogen", "Meldeadresse", "Wohnung")

    def refine(self, text: str, start: int, end: int, score: float) -> tuple[int, int, float] | None:
        value = text[start:end]
        first = value.split(" ")[0]
        if first in _NOT_STREETS:
            return None
        if value.startswith(
            (
                "Am ",
                "An ",
                "Auf ",
                "Im ",
                "In ",
                "Zum ",
                "Zur ",
                "Unter ",
                "Hinter ",
                "Vor ",
                "Bei ",
                "Alte",
                "Neue",
                "Große ",
                "Kleine ",
            )
        ):
            words = value.split(" ")
            name = words[2] if words[0] in ("An", "Auf", "In", "Unter", "Hinter", "Vor", "Bei") else words[1]
            if name in _NOT_PREFIX_NAMES:
                return None
        return super().refine(text, start, end, score)
