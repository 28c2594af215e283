"""Synthetic Wiesbaden demo data: the four catalog tables in one DuckDB file.

`generate_demo_database` writes `stadtteile`, `einwohner`, `sozialleistungen` and `anliegen` exactly as
`policies/catalog.yaml` declares them. Everything is derived from one seed: a `random.Random(seed)` for
all per-row decisions and seeded Faker instances that fill small pools of names and street names which
the generator then samples from (calling Faker per row would be far too slow for a million rows).

The data is meant to exercise the gateway, so it is deliberately awkward:

* district sizes are skewed like the real Ortsbezirke (Biebrich is ~50 times Heßloch), and rare
  nationalities and the sex 'd' produce nationality x district x sex cells of one or two persons;
* `sozialleistungen.bemerkung` and `anliegen.text` are German free text which often carries personal
  data (names with Herr/Frau, phone numbers, addresses, IBANs, dates of birth, Aktenzeichen, e-mail
  addresses, Kfz-Kennzeichen) and sometimes only look-alikes (amounts, paragraphs, office numbers);
* every `steuer_id` satisfies the Steuer-IdNr rules and every IBAN the ISO 13616 mod-97 check.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import unicodedata
from bisect import bisect
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from itertools import accumulate
from pathlib import Path
from typing import Any, TypeVar

import duckdb
import pyarrow as pa
from faker import Faker

__all__ = [
    "DISTRICTS",
    "STICHTAG",
    "generate_demo_database",
    "iban_is_valid",
    "make_iban",
    "make_steuer_id",
    "steuer_id_is_valid",
]

T = TypeVar("T")

#: Reference date of the register extract: ages, move-in dates and case dates are relative to it.
STICHTAG = date(2025, 12, 31)
_STICHTAG_ORD = STICHTAG.toordinal()
_EPOCH_ORD = date(1970, 1, 1).toordinal()


# --------------------------------------------------------------------------------------------------
# Check digits
# --------------------------------------------------------------------------------------------------

# ISO 7064 MOD 11,10 as used by the Steuer-IdNr: _MOD11_10[product][digit] -> next product.
_MOD11_10: tuple[tuple[int, ...], ...] = tuple(
    tuple(((((d + p) % 10) or 10) * 2) % 11 for d in range(10)) for p in range(11)
)


def _steuer_check_digit(digits: Sequence[int]) -> int:
    product = 10
    for d in digits:
        product = _MOD11_10[product][d]
    check = 11 - product
    return 0 if check == 10 else check


def steuer_id_is_valid(s: str) -> bool:
    """True if `s` is a formally valid German Steuerliche Identifikationsnummer (11 digits).

    Rules (BZSt, valid since 2016): the first digit is not 0; among the first ten digits exactly one
    digit occurs twice or three times (a triple must not stand in three adjacent positions), every
    other digit at most once; the eleventh digit is the ISO 7064 MOD 11,10 check digit.
    """
    if len(s) != 11 or not s.isascii() or not s.isdigit() or s[0] == "0":
        return False
    digits = [ord(c) - 48 for c in s]
    head = digits[:10]
    counts = [0] * 10
    for d in head:
        counts[d] += 1
    repeated = [d for d in range(10) if counts[d] > 1]
    if len(repeated) != 1 or counts[repeated[0]] > 3:
        return False
    if counts[repeated[0]] == 3:
        r = repeated[0]
        if any(head[i] == head[i + 1] == head[i + 2] == r for i in range(8)):
            return False
    return _steuer_check_digit(head) == digits[10]


def make_steuer_id(rng: random.Random) -> str:
    """A random, formally valid Steuer-IdNr (see `steuer_id_is_valid`)."""
    rep = rng.randrange(10)
    count = 2 if rng.random() < 0.7 else 3
    others = rng.sample([d for d in range(10) if d != rep], 10 - count)
    digits = [*others, *([rep] * count)]
    while True:
        rng.shuffle(digits)
        if digits[0] == 0:
            continue
        if count == 3 and any(digits[i] == digits[i + 1] == digits[i + 2] for i in range(8)):
            continue
        break
    digits.append(_steuer_check_digit(digits))
    return "".join(map(str, digits))


_IBAN_RE = re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}")


def iban_is_valid(s: str) -> bool:
    """True if `s` is an IBAN with a correct ISO 13616 mod-97 checksum (spaces allowed).

    German IBANs must in addition have 22 characters, all digits after the country code.
    """
    iban = s.replace(" ", "").upper()
    if not _IBAN_RE.fullmatch(iban):
        return False
    if iban.startswith("DE") and (len(iban) != 22 or not iban[2:].isdigit()):
        return False
    rearranged = iban[4:] + iban[:4]
    numeric = "".join(str(int(c, 36)) for c in rearranged)
    return int(numeric) % 97 == 1


# Bankleitzahlen of banks with a presence in Wiesbaden (Naspa, Volksbank, Commerzbank, Deutsche Bank,
# Postbank, ING, DKB, Sparda, Mainzer Volksbank, Frankfurter Sparkasse).
_BLZ = (
    "51050015", "51050015", "51050015", "51090000", "51090000", "51080060", "51070021",
    "50010060", "50010517", "12030000", "50090500", "55190000", "50050201",
)  # fmt: skip


def make_iban(rng: random.Random) -> str:
    """A random German IBAN (compact, 22 characters) with a valid mod-97 checksum."""
    blz = _BLZ[rng.randrange(len(_BLZ))]
    konto = f"{rng.randrange(10**10):010d}"
    check = 98 - int(blz + konto + "131400") % 97  # "DE00" -> D=13, E=14
    return f"DE{check:02d}{blz}{konto}"


def _group_iban(iban: str) -> str:
    return " ".join(iban[i : i + 4] for i in range(0, len(iban), 4))


# --------------------------------------------------------------------------------------------------
# Wiesbaden
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _District:
    name: str
    nr: int
    area_km2: float
    weight: float  # roughly the real population in thousands
    plz: tuple[str, ...]
    foreign_share: float
    area_code: str
    ort: str
    streets: tuple[str, ...]


# The 26 Ortsbezirke in official order. PLZ: Kastel and Kostheim (AKK) have Mainz postcodes.
_DISTRICT_DATA: tuple[_District, ...] = (
    _District("Mitte", 1, 3.04, 22.0, ("65183", "65185"), 0.33, "0611", "Wiesbaden",
              ("Kirchgasse", "Langgasse", "Marktstraße", "Wilhelmstraße", "Luisenstraße", "Rheinstraße",
               "Friedrichstraße", "Schwalbacher Straße", "Mauritiusstraße", "Webergasse", "Neugasse",
               "Moritzstraße", "Adelheidstraße", "Oranienstraße", "Karlstraße")),
    _District("Nordost", 2, 10.79, 22.5, ("65193", "65195"), 0.17, "0611", "Wiesbaden",
              ("Taunusstraße", "Nerobergstraße", "Kapellenstraße", "Lanzstraße", "Nerotal",
               "Sonnenberger Straße", "Dambachtal", "Geisbergstraße", "Bingertstraße")),
    _District("Südost", 3, 6.4, 18.5, ("65187", "65189", "65191"), 0.2, "0611", "Wiesbaden",
              ("Frankfurter Straße", "Bierstadter Straße", "Gustav-Freytag-Straße", "Lessingstraße",
               "Paulinenstraße", "Mainzer Straße", "Viktoriastraße", "Humboldtstraße")),
    _District("Rheingauviertel", 4, 2.76, 21.0, ("65195", "65197"), 0.24, "0611", "Wiesbaden",
              ("Niederwaldstraße", "Eltviller Straße", "Rüdesheimer Straße", "Johannisberger Straße",
               "Hallgarter Straße", "Kiedricher Straße", "Erbacher Straße", "Geisenheimer Straße")),
    _District("Westend", 5, 1.34, 17.5, ("65195", "65183"), 0.38, "0611", "Wiesbaden",
              ("Bleichstraße", "Wellritzstraße", "Westendstraße", "Scharnhorststraße", "Blücherstraße",
               "Gneisenaustraße", "Yorckstraße", "Hellmundstraße", "Emser Straße", "Walramstraße",
               "Seerobenstraße", "Bismarckring")),
    _District("Klarenthal", 6, 3.4, 10.5, ("65197",), 0.25, "0611", "Wiesbaden",
              ("Klarenthaler Straße", "Hermann-Brill-Straße", "Goerdelerstraße",
               "Carl-von-Ossietzky-Straße")),
    _District("Frauenstein", 7, 8.1, 2.4, ("65201",), 0.09, "0611", "Wiesbaden",
              ("Herrnbergstraße", "Quellbornstraße", "Spitzer Weg")),
    _District("Schierstein", 8, 7.75, 10.5, ("65201",), 0.18, "0611", "Wiesbaden",
              ("Reichsapfelstraße", "Karl-Lehr-Straße", "Bernhard-Schwarz-Straße", "Rheingaustraße",
               "Am Hafen")),
    _District("Dotzheim", 9, 26.75, 27.5, ("65199",), 0.22, "0611", "Wiesbaden",
              ("Wiesbadener Straße", "Kohlheckstraße", "Schelmengraben", "Rheingauer Straße",
               "Stegerwaldstraße", "Märchenland")),
    _District("Biebrich", 10, 12.08, 38.5, ("65203",), 0.27, "0611", "Wiesbaden",
              ("Rathausstraße", "Straße der Republik", "Äppelallee", "Kasteler Straße", "Galatea-Anlage",
               "Gibber Straße", "Biebricher Allee", "Wiesbadener Allee", "Gaugasse")),
    _District("Amöneburg", 11, 3.22, 1.6, ("65203",), 0.36, "0611", "Wiesbaden",
              ("Dyckerhoffstraße", "Wiesbadener Landstraße", "Kurt-Schumacher-Ring")),
    _District("Kastel", 12, 8.35, 13.5, ("55252",), 0.27, "06134", "Mainz-Kastel",
              ("Eleonorenstraße", "Zehnthofstraße", "Otto-Suhr-Ring", "Wiesbadener Straße",
               "Boelckestraße")),
    _District("Kostheim", 13, 7.09, 14.5, ("55246",), 0.2, "06134", "Mainz-Kostheim",
              ("Hauptstraße", "Hochheimer Straße", "Winterstraße", "Steinern Straße", "Maaraue")),
    _District("Erbenheim", 14, 12.73, 9.6, ("65205",), 0.19, "0611", "Wiesbaden",
              ("Wandersmannstraße", "Kreuzberger Ring", "Egerstraße", "Berliner Straße")),
    _District("Bierstadt", 15, 9.31, 12.5, ("65191",), 0.13, "0611", "Wiesbaden",
              ("Poststraße", "Venatorstraße", "Rathausstraße", "Wiesbadener Straße", "Heiligenborn")),
    _District("Sonnenberg", 16, 8.67, 8.0, ("65191", "65193"), 0.11, "0611", "Wiesbaden",
              ("Kreuzweg", "Danziger Straße", "Talstraße", "Rambacher Straße")),
    _District("Rambach", 17, 8.47, 2.1, ("65207",), 0.07, "0611", "Wiesbaden",
              ("Ostpreußenstraße", "Kitzelbergstraße", "Trompeterstraße")),
    _District("Heßloch", 18, 2.36, 0.7, ("65207",), 0.05, "0611", "Wiesbaden",
              ("Kloppenheimer Straße", "Heßlocher Straße")),
    _District("Kloppenheim", 19, 5.57, 1.0, ("65207",), 0.06, "0611", "Wiesbaden",
              ("Oberpfortstraße", "Hintergasse")),
    _District("Igstadt", 20, 5.87, 2.3, ("65207",), 0.08, "0611", "Wiesbaden",
              ("Bahnhofstraße", "Igstadter Straße", "Hainweg")),
    _District("Nordenstadt", 21, 7.76, 8.0, ("65205",), 0.15, "06122", "Wiesbaden",
              ("Stolberger Straße", "Heerstraße", "Ernst-Moritz-Arndt-Straße")),
    _District("Delkenheim", 22, 9.43, 5.3, ("65205",), 0.12, "06145", "Wiesbaden",
              ("Münchener Straße", "Lindenstraße", "Hinter der Kirche")),
    _District("Naurod", 23, 15.18, 4.3, ("65207",), 0.07, "06127", "Wiesbaden",
              ("Obergasse", "Fischbacher Straße", "Kellerskopfweg")),
    _District("Auringen", 24, 3.72, 3.3, ("65207",), 0.08, "06127", "Wiesbaden",
              ("Auringer Straße", "Lorcher Straße")),
    _District("Medenbach", 25, 6.43, 0.9, ("65207",), 0.05, "06122", "Wiesbaden",
              ("Wildsachsener Straße", "Alte Schulstraße")),
    _District("Breckenheim", 26, 7.33, 3.3, ("65207",), 0.08, "06122", "Wiesbaden",
              ("Wallauer Straße", "Langgasse")),
)  # fmt: skip

#: The 26 Ortsbezirke of Wiesbaden in the order of their official numbers (1..26).
DISTRICTS: tuple[str, ...] = tuple(d.name for d in _DISTRICT_DATA)

# Foreign nationalities with weights among non-Germans; the last ones are rare on purpose.
_FOREIGN: tuple[tuple[str, float], ...] = (
    ("türkisch", 20.0), ("polnisch", 8.0), ("italienisch", 7.0), ("syrisch", 7.0),
    ("kroatisch", 6.0), ("rumänisch", 6.0), ("griechisch", 5.0), ("ukrainisch", 6.0),
    ("bulgarisch", 4.0), ("afghanisch", 3.0), ("marokkanisch", 3.0), ("serbisch", 2.5),
    ("spanisch", 2.0), ("portugiesisch", 2.0), ("irakisch", 2.0), ("kosovarisch", 2.0),
    ("französisch", 1.2), ("US-amerikanisch", 1.0), ("eritreisch", 0.5), ("vietnamesisch", 0.5),
    ("isländisch", 0.03), ("bhutanisch", 0.01),
)  # fmt: skip

# Which name pool a nationality draws from: a Faker locale or a hand-written list below.
_NAME_SOURCE: dict[str, str] = {
    "deutsch": "de_DE", "türkisch": "tr_TR", "polnisch": "pl_PL", "italienisch": "it_IT",
    "kroatisch": "hr_HR", "rumänisch": "ro_RO", "spanisch": "es_ES", "portugiesisch": "pt_PT",
    "französisch": "fr_FR", "US-amerikanisch": "en_US", "isländisch": "is_IS",
    "vietnamesisch": "vi_VN", "syrisch": "arab", "irakisch": "arab", "marokkanisch": "arab",
    "afghanisch": "arab", "griechisch": "greek", "ukrainisch": "slav", "bulgarisch": "slav",
    "serbisch": "slav", "kosovarisch": "alban", "eritreisch": "eritrea", "bhutanisch": "bhutan",
}  # fmt: skip

# (male first names, female first names, last names), transliterated to Latin script.
_HAND_NAMES: dict[str, tuple[tuple[str, ...], tuple[str, ...], tuple[str, ...]]] = {
    "arab": (
        ("Mohammad", "Ahmad", "Ali", "Omar", "Khaled", "Mahmoud", "Hassan", "Youssef", "Ibrahim",
         "Mustafa", "Karim", "Samer", "Bilal", "Hamza", "Tarek", "Walid", "Rami", "Ahmadullah"),
        ("Fatima", "Aisha", "Mariam", "Noor", "Layla", "Rania", "Huda", "Amal", "Yasmin", "Salma",
         "Zainab", "Hiba", "Lina", "Rasha", "Samira", "Farida"),
        ("Al-Hassan", "Khalil", "Haddad", "Mansour", "Saleh", "Ibrahim", "Hamdan", "Darwish",
         "Al-Ahmad", "Nasser", "Habibi", "Rahimi", "Ahmadi", "Karimi", "El Amrani", "Benali",
         "Othman", "Aziz", "Suleiman", "Jaber"),
    ),
    "greek": (
        ("Georgios", "Dimitrios", "Konstantinos", "Ioannis", "Nikolaos", "Panagiotis", "Christos",
         "Vasileios", "Athanasios", "Evangelos"),
        ("Maria", "Eleni", "Aikaterini", "Vasiliki", "Sofia", "Angeliki", "Georgia", "Dimitra",
         "Konstantina", "Paraskevi"),
        ("Papadopoulos", "Papadopoulou", "Georgiou", "Nikolaidis", "Oikonomou", "Karagiannis",
         "Vlachos", "Dimitriou", "Alexiou", "Makris", "Antoniou", "Christodoulou"),
    ),
    "slav": (
        ("Oleksandr", "Andrij", "Dmytro", "Serhij", "Mykola", "Ivan", "Georgi", "Dimitar", "Nikola",
         "Milan", "Dragan", "Stefan", "Bogdan", "Taras"),
        ("Olena", "Natalija", "Iryna", "Tetjana", "Oksana", "Julija", "Marija", "Desislava", "Jelena",
         "Milica", "Snežana", "Ivanka", "Kateryna"),
        ("Kovalenko", "Shevchenko", "Bondarenko", "Tkachenko", "Melnyk", "Kravchenko", "Ivanova",
         "Petrov", "Georgieva", "Dimitrov", "Jovanović", "Petrović", "Nikolić", "Marković",
         "Đorđević", "Hrytsenko"),
    ),
    "alban": (
        ("Arben", "Besnik", "Driton", "Fatmir", "Ilir", "Valon", "Agron", "Blerim", "Liridon"),
        ("Arta", "Blerta", "Donika", "Fjolla", "Liridona", "Vjosa", "Shqipe", "Teuta"),
        ("Krasniqi", "Gashi", "Berisha", "Morina", "Hoxha", "Shala", "Bytyqi", "Kelmendi", "Rexhepi"),
    ),
    "eritrea": (
        ("Tesfay", "Yonas", "Dawit", "Filmon", "Merhawi", "Samuel", "Tekle"),
        ("Senait", "Helen", "Selam", "Mebrat", "Rahel", "Yordanos"),
        ("Tesfamariam", "Ghebremedhin", "Haile", "Kidane", "Woldemichael", "Berhane", "Tekeste"),
    ),
    "bhutan": (
        ("Tshering", "Karma", "Sonam", "Ugyen"),
        ("Pema", "Dechen", "Choden", "Yangchen"),
        ("Dorji", "Wangchuk", "Tshering", "Namgyel"),
    ),
}  # fmt: skip

_MOBILE_PREFIXES = (
    "0151", "0152", "0157", "0159", "0160", "0162", "0163", "0170", "0171", "0172", "0173",
    "0174", "0175", "0176", "0177", "0178", "0179",
)  # fmt: skip
_MAIL_DOMAINS = (
    "web.de", "gmx.de", "gmx.net", "t-online.de", "gmail.com", "outlook.de", "yahoo.de", "posteo.de",
    "freenet.de", "icloud.com", "online.de",
)  # fmt: skip

# Age pyramid (share per 5-year band 0-4 .. 95-99, then exactly 100), shaped like Wiesbaden's.
_AGE_BANDS = (
    4.9, 4.6, 4.4, 4.6, 5.6, 7.0, 7.3, 7.0, 6.5, 6.1, 6.5, 7.4, 7.1, 6.0, 4.8, 4.2, 3.6, 2.0, 0.9,
    0.28, 0.02,
)  # fmt: skip

LEISTUNGSARTEN: tuple[str, ...] = (
    "Bürgergeld",
    "Wohngeld",
    "Grundsicherung im Alter",
    "Hilfe zur Pflege",
    "Eingliederungshilfe",
    "Kinderzuschlag",
)
# (min, mode, max) monthly amount in EUR, earliest start date, legal basis
_LEISTUNG_INFO: dict[str, tuple[float, float, float, date, str]] = {
    "Bürgergeld": (250.0, 900.0, 1900.0, date(2023, 1, 1), "§ 19 SGB II"),
    "Wohngeld": (30.0, 220.0, 700.0, date(2012, 1, 1), "§ 1 WoGG"),
    "Grundsicherung im Alter": (90.0, 480.0, 1250.0, date(2008, 1, 1), "§ 41 SGB XII"),
    "Hilfe zur Pflege": (180.0, 1200.0, 3900.0, date(2010, 1, 1), "§ 61 SGB XII"),
    "Eingliederungshilfe": (120.0, 900.0, 4500.0, date(2010, 1, 1), "§ 99 SGB IX"),
    "Kinderzuschlag": (40.0, 292.0, 1100.0, date(2012, 1, 1), "§ 6a BKGG"),
}

KATEGORIEN: tuple[str, ...] = (
    "Straßenschaden", "Müll", "Lärm", "Beleuchtung", "Grünpflege", "Parken", "Sonstiges",
)  # fmt: skip
_KATEGORIE_WEIGHTS = (18.0, 22.0, 10.0, 9.0, 11.0, 17.0, 13.0)


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _picker(rng: random.Random, items: Sequence[T], weights: Sequence[float]) -> Callable[[], T]:
    """A closure drawing one of `items` with the given weights (faster than rng.choices)."""
    cum = list(accumulate(weights))
    total = cum[-1]
    rnd = rng.random
    seq = tuple(items)

    def pick() -> T:
        return seq[bisect(cum, rnd() * total)]

    return pick


_TRANSLIT = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue", "ß": "ss", "Ä": "ae", "Ö": "oe", "Ü": "ue"})
_NOT_MAIL = re.compile(r"[^a-z0-9-]")


def _mail_part(name: str, cache: dict[str, str]) -> str:
    part = cache.get(name)
    if part is None:
        ascii_ = unicodedata.normalize("NFKD", name.translate(_TRANSLIT)).encode("ascii", "ignore")
        part = _NOT_MAIL.sub("", ascii_.decode().lower()) or "kontakt"
        cache[name] = part
    return part


def _de_date(ordinal: int) -> str:
    return date.fromordinal(ordinal).strftime("%d.%m.%Y")


def _de_amount(cents: int) -> str:
    euros, ct = divmod(cents, 100)
    return f"{euros:,}".replace(",", ".") + f",{ct:02d}"


def _phone(rng: random.Random, area_code: str) -> str:
    r = rng.random()
    if r < 0.45:  # landline
        local_len = 7 if area_code == "0611" else rng.choice((5, 6))
        local = str(rng.randrange(2 * 10 ** (local_len - 1), 10**local_len))
        area = area_code[1:]
        fmt = rng.randrange(7)
        if fmt == 0:
            return f"{area_code} {local}"
        if fmt == 1:
            return f"+49 {area} {local}"
        if fmt == 2:
            return f"{area_code}/{local}"
        if fmt == 3:
            pairs = " ".join(local[max(0, i - 2) : i] for i in range(len(local), 0, -2)[::-1])
            return f"({area_code}) {pairs}"
        if fmt == 4:
            return f"{area_code}-{local}"
        if fmt == 5:
            return f"+49 (0){area} {local}"
        return f"{area_code} {local[:3]} {local[3:]}"
    prefix = _MOBILE_PREFIXES[rng.randrange(len(_MOBILE_PREFIXES))]
    number = str(rng.randrange(10**6, 10**8))
    fmt = rng.randrange(5)
    if fmt == 0:
        return f"{prefix} {number}"
    if fmt == 1:
        return f"{prefix}/{number}"
    if fmt == 2:
        return f"+49 {prefix[1:]} {number}"
    if fmt == 3:
        return f"+49{prefix[1:]}{number}"
    return f"{prefix} {number[:3]} {number[3:]}"


def _email(rng: random.Random, vorname: str, nachname: str, birth_year: int, cache: dict[str, str]) -> str:
    v = _mail_part(vorname, cache)
    n = _mail_part(nachname, cache)
    dom = _MAIL_DOMAINS[rng.randrange(len(_MAIL_DOMAINS))]
    fmt = rng.randrange(6)
    if fmt == 0:
        return f"{v}.{n}@{dom}"
    if fmt == 1:
        return f"{v[0]}.{n}@{dom}"
    if fmt == 2:
        return f"{n}.{v}{birth_year % 100:02d}@{dom}"
    if fmt == 3:
        return f"{v}{n}{rng.randrange(1, 100)}@{dom}"
    if fmt == 4:
        return f"{v}_{n}@{dom}"
    return f"{v}.{n}{birth_year}@{dom}"


def _in_street(street: str, motion: bool = False) -> str:
    """German preposition + article for a street name: 'in der Taunusstraße', 'im Nerotal', ..."""
    low = street.lower()
    if low.startswith(("am ", "an der ", "auf der ", "hinter der ", "im ")):
        return f"in die Straße {street}" if motion else street
    if low.endswith(("weg", "ring", "platz", "pfad", "damm", "graben", "born", "tal", "land")):
        return f"{'in den' if motion else 'im'} {street}"
    if low.endswith(("anlage", "str.", "straße", "gasse", "allee", "chaussee", "steige", "aue")):
        return f"{'in die' if motion else 'in der'} {street}"
    return f"{'nach' if motion else 'in'} {street}"


def _kfz(rng: random.Random) -> str:
    letters = "ABCDEFGHIJKLMNOPRSTUVWXYZ"
    area = rng.choice(("WI", "WI", "WI", "WI", "MZ", "RÜD", "MTK", "F", "LM"))
    ident = "".join(rng.choice(letters) for _ in range(rng.choice((1, 2, 2))))
    num = rng.randrange(1, 10000 if len(area) + len(ident) < 5 else 1000)
    sep = "-" if rng.random() < 0.8 else " "
    suffix = "E" if rng.random() < 0.05 else ""
    return f"{area}{sep}{ident} {num}{suffix}"


@dataclass
class _Pools:
    male: dict[str, tuple[str, ...]]
    female: dict[str, tuple[str, ...]]
    last: dict[str, tuple[str, ...]]
    streets: dict[str, tuple[tuple[str, ...], tuple[str, ...]]]  # district -> (streets, plz per street)


def _build_pools(seed: int, rng: random.Random) -> _Pools:
    male: dict[str, tuple[str, ...]] = {}
    female: dict[str, tuple[str, ...]] = {}
    last: dict[str, tuple[str, ...]] = {}
    for i, source in enumerate(sorted(set(_NAME_SOURCE.values()))):
        if source in _HAND_NAMES:
            male[source], female[source], last[source] = _HAND_NAMES[source]
            continue
        fake = Faker(source)
        fake.seed_instance(seed * 31 + i)
        n = 3000 if source == "de_DE" else 300
        male[source] = tuple(fake.first_name_male() for _ in range(n))
        female[source] = tuple(fake.first_name_female() for _ in range(n))
        last[source] = tuple(fake.last_name() for _ in range(2 * n))

    fake = Faker("de_DE")
    fake.seed_instance(seed)
    streets: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
    used: set[str] = set()
    for d in _DISTRICT_DATA:
        names = list(d.streets)
        target = max(len(names) + 3, round(d.weight * 4.5))
        while len(names) < target:
            s = fake.street_name()
            if s not in used and s not in names:
                names.append(s)
        used.update(names)
        plz = tuple(d.plz[rng.randrange(len(d.plz))] for _ in names)
        streets[d.name] = (tuple(names), plz)
    return _Pools(male, female, last, streets)


# --------------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------------

_DDL: dict[str, str] = {
    "stadtteile": """CREATE TABLE stadtteile (
        stadtteil VARCHAR, ortsbezirk_nr INTEGER, flaeche_km2 DOUBLE, einwohner_gesamt INTEGER)""",
    "einwohner": """CREATE TABLE einwohner (
        id BIGINT, vorname VARCHAR, nachname VARCHAR, geburtsdatum DATE, geschlecht VARCHAR,
        strasse VARCHAR, hausnummer VARCHAR, plz VARCHAR, stadtteil VARCHAR,
        staatsangehoerigkeit VARCHAR, steuer_id VARCHAR, telefon VARCHAR, email VARCHAR,
        zuzug_am DATE)""",
    "sozialleistungen": """CREATE TABLE sozialleistungen (
        fall_id BIGINT, einwohner_id BIGINT, leistungsart VARCHAR, betrag_monat DECIMAL(10,2),
        beginn DATE, ende DATE, stadtteil VARCHAR, bemerkung VARCHAR, iban VARCHAR)""",
    "anliegen": """CREATE TABLE anliegen (
        ticket_id BIGINT, eingegangen_am TIMESTAMP, kategorie VARCHAR, stadtteil VARCHAR,
        text VARCHAR, status VARCHAR)""",
}
TABLES: tuple[str, ...] = ("stadtteile", "einwohner", "sozialleistungen", "anliegen")


def _dates(ordinals: Sequence[int | None]) -> pa.Array:
    days = [None if o is None else o - _EPOCH_ORD for o in ordinals]
    return pa.array(days, type=pa.int32()).cast(pa.date32())


@dataclass
class _Person:
    """What the social-case generator needs to know about a resident (kept only for case holders)."""

    id: int
    vorname: str
    nachname: str
    geburt: int
    geschlecht: str
    strasse: str
    hausnummer: str
    plz: str
    district: _District
    nationality: str
    telefon: str | None
    email: str | None
    zuzug: int


def _generate_einwohner(
    rows: int, rng: random.Random, pools: _Pools
) -> tuple[pa.Table, list[_Person], list[int]]:
    pick_district = _picker(rng, _DISTRICT_DATA, [d.weight for d in _DISTRICT_DATA])
    pick_band = _picker(rng, range(len(_AGE_BANDS)), _AGE_BANDS)
    pick_foreign = _picker(rng, [n for n, _ in _FOREIGN], [w for _, w in _FOREIGN])
    street_pickers: dict[str, Callable[[], int]] = {}
    for d in _DISTRICT_DATA:
        n_streets = len(pools.streets[d.name][0])
        street_weights = [1.0 / (1 + i) ** 0.6 for i in range(n_streets)]
        street_pickers[d.name] = _picker(rng, range(n_streets), street_weights)

    rnd = rng.random
    randrange = rng.randrange
    mail_cache: dict[str, str] = {}
    seen_tax_ids: set[str] = set()
    district_counts = {d.name: 0 for d in _DISTRICT_DATA}

    col_id: list[int] = []
    col_vorname: list[str] = []
    col_nachname: list[str] = []
    col_geburt: list[int] = []
    col_geschlecht: list[str] = []
    col_strasse: list[str] = []
    col_hausnummer: list[str] = []
    col_plz: list[str] = []
    col_stadtteil: list[str] = []
    col_nat: list[str] = []
    col_steuer: list[str] = []
    col_tel: list[str | None] = []
    col_mail: list[str | None] = []
    col_zuzug: list[int] = []
    case_holders: list[_Person] = []

    for pid in range(1, rows + 1):
        d = pick_district()
        district_counts[d.name] += 1
        band = pick_band()
        age_years = 100.0 + rnd() * 0.99 if band == 20 else band * 5 + rnd() * 5
        geburt = _STICHTAG_ORD - int(age_years * 365.2425)
        r = rnd()
        if r < 0.0006:
            sex = "d"
        elif r < (0.58 if age_years >= 75 else 0.505):
            sex = "w"
        else:
            sex = "m"

        foreign_share = d.foreign_share * (0.45 if age_years >= 65 else 1.0)
        nat = pick_foreign() if rnd() < foreign_share else "deutsch"
        source = _NAME_SOURCE[nat]
        if nat != "deutsch" and rnd() < 0.12:
            source = "de_DE"
        elif nat == "deutsch" and rnd() < 0.1:  # naturalised or second generation
            source = _NAME_SOURCE[pick_foreign()]
        if sex == "d":
            first_pool = pools.male[source] if rnd() < 0.5 else pools.female[source]
        else:
            first_pool = pools.male[source] if sex == "m" else pools.female[source]
        vorname = first_pool[randrange(len(first_pool))]
        last_pool = pools.last[source]
        nachname = last_pool[randrange(len(last_pool))]

        names, plzs = pools.streets[d.name]
        si = street_pickers[d.name]()
        strasse = names[si]
        plz = plzs[si]
        hnr = int(1 + rnd() ** 1.8 * 140)
        hausnummer = f"{hnr}{'abcd'[randrange(4)]}" if rnd() < 0.07 else str(hnr)

        while True:
            steuer = make_steuer_id(rng)
            if steuer not in seen_tax_ids:
                seen_tax_ids.add(steuer)
                break

        telefon = _phone(rng, d.area_code) if age_years >= 14 and rnd() < 0.82 else None
        birth_year = date.fromordinal(geburt).year
        email = (
            _email(rng, vorname, nachname, birth_year, mail_cache)
            if age_years >= 14 and rnd() < (0.8 if age_years < 70 else 0.35)
            else None
        )

        born_here = rnd() < (0.75 if age_years < 6 else 0.3 if nat == "deutsch" else 0.1)
        if born_here:
            zuzug = geburt
        else:
            span = _STICHTAG_ORD - geburt
            zuzug = _STICHTAG_ORD - int(rnd() ** 1.6 * span)

        col_id.append(pid)
        col_vorname.append(vorname)
        col_nachname.append(nachname)
        col_geburt.append(geburt)
        col_geschlecht.append(sex)
        col_strasse.append(strasse)
        col_hausnummer.append(hausnummer)
        col_plz.append(plz)
        col_stadtteil.append(d.name)
        col_nat.append(nat)
        col_steuer.append(steuer)
        col_tel.append(telefon)
        col_mail.append(email)
        col_zuzug.append(zuzug)

        # Roughly 8 % of residents are social-benefit cases (fewer children, more adults/elderly).
        if rnd() < (0.02 if age_years < 18 else 0.09 if age_years < 65 else 0.105):
            case_holders.append(
                _Person(
                    pid,
                    vorname,
                    nachname,
                    geburt,
                    sex,
                    strasse,
                    hausnummer,
                    plz,
                    d,
                    nat,
                    telefon,
                    email,
                    zuzug,
                )
            )

    table = pa.table(
        {
            "id": pa.array(col_id, type=pa.int64()),
            "vorname": pa.array(col_vorname, type=pa.string()),
            "nachname": pa.array(col_nachname, type=pa.string()),
            "geburtsdatum": _dates(col_geburt),
            "geschlecht": pa.array(col_geschlecht, type=pa.string()),
            "strasse": pa.array(col_strasse, type=pa.string()),
            "hausnummer": pa.array(col_hausnummer, type=pa.string()),
            "plz": pa.array(col_plz, type=pa.string()),
            "stadtteil": pa.array(col_stadtteil, type=pa.string()),
            "staatsangehoerigkeit": pa.array(col_nat, type=pa.string()),
            "steuer_id": pa.array(col_steuer, type=pa.string()),
            "telefon": pa.array(col_tel, type=pa.string()),
            "email": pa.array(col_mail, type=pa.string()),
            "zuzug_am": _dates(col_zuzug),
        }
    )
    counts = [district_counts[d.name] for d in _DISTRICT_DATA]
    return table, case_holders, counts


_RELATIONS_M = ("Sohn", "Ehemann", "Vater", "Bruder", "Lebensgefährte", "Enkel")
_RELATIONS_W = ("Tochter", "Ehefrau", "Mutter", "Schwester", "Lebensgefährtin", "Enkelin")
_OFFICES = (
    "Amt für Soziale Arbeit, Konradinerallee 11, 65189 Wiesbaden",
    "Kommunales Jobcenter Wiesbaden",
    "Sozialrathaus Biebrich",
    "Sozialrathaus Mitte",
    "Wohngeldstelle",
    "Familienkasse Hessen",
    "Pflegestützpunkt Wiesbaden",
    "Deutsche Rentenversicherung Hessen",
)


def _anrede(sex: str, vorname: str, nachname: str, rng: random.Random) -> str:
    if sex == "d":
        return f"{vorname} {nachname}"
    title = "Herr" if sex == "m" else "Frau"
    return f"{title} {nachname}" if rng.random() < 0.6 else f"{title} {vorname} {nachname}"


def _bemerkung(
    rng: random.Random,
    p: _Person,
    art: str,
    cents: int,
    beginn: int,
    iban: str,
    pools: _Pools,
    mail_cache: dict[str, str],
) -> str | None:
    if rng.random() < 0.04:
        return None
    paragraph = _LEISTUNG_INFO[art][4]
    neutral = [
        f"Bescheid über {_de_amount(cents)} EUR monatlich erlassen.",
        f"Anspruch nach {paragraph} geprüft, Voraussetzungen liegen vor.",
        f"Unterlagen an {rng.choice(_OFFICES)} weitergeleitet.",
        "Nachweise (Mietvertrag, Kontoauszüge der letzten 3 Monate) fehlen noch, Frist 4 Wochen.",
        f"Weiterbewilligung für {rng.choice((6, 12))} Monate ab {_de_date(beginn)}.",
        "Mehrbedarf wegen kostenaufwändiger Ernährung anerkannt (Regelbedarfsstufe 1).",
        f"Überzahlung von {_de_amount(rng.randrange(5000, 250000))} EUR wird in Raten verrechnet.",
        "Hausbesuch durchgeführt, keine Auffälligkeiten.",
        "Sprechzeiten Mo-Fr 8-12 Uhr, Zentrale 0611 31-0.",
        f"Kosten der Unterkunft nach § 22 SGB II in Höhe von {_de_amount(rng.randrange(30000, 110000))} EUR "
        "angemessen.",
        "Antrag vollständig, Bearbeitung im Team 3.",
        f"Widerspruch vom {_de_date(beginn + rng.randrange(10, 200))} zurückgewiesen.",
    ]
    if rng.random() < 0.28:
        k = 1 if rng.random() < 0.6 else 2
        return " ".join(rng.sample(neutral, k))

    person = _anrede(p.geschlecht, p.vorname, p.nachname, rng)
    src = _NAME_SOURCE[p.nationality]
    rel_is_m = rng.random() < 0.5
    rel_pool = pools.male[src] if rel_is_m else pools.female[src]
    rel_first = rel_pool[rng.randrange(len(rel_pool))]
    relation = rng.choice(_RELATIONS_M if rel_is_m else _RELATIONS_W)
    other_last = pools.last["de_DE"][rng.randrange(len(pools.last["de_DE"]))]
    other_first = pools.male["de_DE"][rng.randrange(len(pools.male["de_DE"]))]
    phone = p.telefon or _phone(rng, p.district.area_code)
    email = p.email or _email(rng, p.vorname, p.nachname, 1990, mail_cache)
    az_year = date.fromordinal(beginn).year
    personal = [
        f"{person} hat am {_de_date(beginn - rng.randrange(3, 40))} persönlich vorgesprochen.",
        f"{person}, geb. {_de_date(p.geburt)}, beantragt Weiterbewilligung.",
        f"Rückruf erbeten unter {phone}.",
        f"Tel.: {phone}",
        f"Neue Anschrift: {p.strasse} {p.hausnummer}, {p.plz} {p.district.ort}.",
        f"Umzug {_in_street(p.strasse, True)} {p.hausnummer} zum "
        f"{_de_date(beginn + rng.randrange(0, 90))} gemeldet.",
        f"Bankverbindung geändert auf {_group_iban(iban) if rng.random() < 0.6 else iban}.",
        f"Zahlung bitte auf Konto {_group_iban(make_iban(rng))} (Kontoinhaber/in: {rel_first} {p.nachname}).",
        f"{relation} {rel_first} {p.nachname} (geb. "
        f"{_de_date(p.geburt + rng.randrange(-4000, 12000))}) lebt mit im Haushalt.",
        f"Kontakt per E-Mail: {email}",
        f"Betreuer: Herr {other_first} {other_last}, Tel. {_phone(rng, '0611')}.",
        f"Az. 50.{rng.randrange(1, 6)}-{rng.randrange(1000, 10000)}/{az_year}",
        f"Vermieter {other_first} {other_last} bestätigt Mietrückstand für die Wohnung {p.strasse} "
        f"{p.hausnummer}.",
        f"{person} ({p.plz} {p.district.ort}) ist telefonisch schwer erreichbar, bitte schriftlich.",
        f"Steuer-ID des Haushaltsvorstands liegt vor, {person} hat Lohnabrechnung nachgereicht.",
    ]
    parts = rng.sample(personal, 1 if rng.random() < 0.45 else 2)
    if rng.random() < 0.5:
        parts.insert(rng.randrange(len(parts) + 1), rng.choice(neutral))
    return " ".join(parts)


def _generate_sozialleistungen(holders: list[_Person], rng: random.Random, pools: _Pools) -> pa.Table:
    rnd = rng.random
    mail_cache: dict[str, str] = {}
    col_fall: list[int] = []
    col_ew: list[int] = []
    col_art: list[str] = []
    col_betrag: list[Decimal] = []
    col_beginn: list[int] = []
    col_ende: list[int | None] = []
    col_st: list[str] = []
    col_bem: list[str | None] = []
    col_iban: list[str] = []
    min_start = _STICHTAG_ORD - 30

    fall_id = 0
    for p in holders:
        age = (_STICHTAG_ORD - p.geburt) / 365.2425
        if age < 18:
            weights = (0.0, 0.0, 0.0, 0.2, 1.0, 0.0)
        elif age < 25:
            weights = (6.0, 2.0, 0.0, 0.05, 1.5, 0.5)
        elif age < 65:
            weights = (6.0, 3.0, 0.0, 0.3, 1.0, 1.6)
        else:
            weights = (0.3, 3.0, 5.0, 2.5, 0.3, 0.0)
        r = rnd()
        n_cases = 1 if r < 0.8 else 2 if r < 0.96 else 3
        arten: list[str] = []
        while len(arten) < n_cases:
            art = rng.choices(LEISTUNGSARTEN, weights)[0]
            if art not in arten:
                arten.append(art)
            elif sum(1 for w in weights if w > 0) <= len(arten):
                break
        iban = make_iban(rng)
        for art in arten:
            lo, mode, hi, earliest, _ = _LEISTUNG_INFO[art]
            cents = round(rng.triangular(lo, hi, mode) * 100)
            start_lo = max(earliest.toordinal(), p.zuzug, p.geburt + (int(18 * 365.25) if age >= 18 else 0))
            start_lo = min(start_lo, min_start)
            beginn = start_lo + int(rnd() ** 0.7 * (_STICHTAG_ORD - start_lo))
            ende: int | None = None
            if rnd() < 0.45:
                candidate = beginn + rng.randrange(30, 36 * 30)
                if candidate < _STICHTAG_ORD:
                    ende = candidate
            fall_id += 1
            col_fall.append(fall_id)
            col_ew.append(p.id)
            col_art.append(art)
            col_betrag.append(Decimal(cents).scaleb(-2))
            col_beginn.append(beginn)
            col_ende.append(ende)
            col_st.append(p.district.name)
            col_bem.append(_bemerkung(rng, p, art, cents, beginn, iban, pools, mail_cache))
            col_iban.append(iban)

    return pa.table(
        {
            "fall_id": pa.array(col_fall, type=pa.int64()),
            "einwohner_id": pa.array(col_ew, type=pa.int64()),
            "leistungsart": pa.array(col_art, type=pa.string()),
            "betrag_monat": pa.array(col_betrag, type=pa.decimal128(10, 2)),
            "beginn": _dates(col_beginn),
            "ende": _dates(col_ende),
            "stadtteil": pa.array(col_st, type=pa.string()),
            "bemerkung": pa.array(col_bem, type=pa.string()),
            "iban": pa.array(col_iban, type=pa.string()),
        }
    )


_ANLIEGEN_TEMPLATES: dict[str, tuple[str, ...]] = {
    "Straßenschaden": (
        "Großes Schlagloch {in_street} auf Höhe Hausnummer {nr}.",
        "Gehweg {in_street} abgesackt, Stolpergefahr für Fußgänger.",
        "Gullydeckel vor {street} {nr} klappert bei jeder Überfahrt.",
        "Fahrbahnmarkierung am Zebrastreifen {in_street} kaum noch sichtbar.",
    ),
    "Müll": (
        "Sperrmüll vor {street} {nr} seit über einer Woche nicht abgeholt.",
        "Wilde Müllablagerung am Glascontainer {in_street}.",
        "Mülleimer an der Bushaltestelle {street} quillt über.",
        "Gelbe Säcke {in_street} wurden nicht mitgenommen.",
    ),
    "Lärm": (
        "Nächtliche Ruhestörung durch Baustelle {in_street}, Arbeiten ab 5 Uhr.",
        "Laute Musik aus dem Haus {street} {nr} jeden Abend bis nach Mitternacht.",
        "Laubbläser am Sonntag {in_street}.",
    ),
    "Beleuchtung": (
        "Straßenlaterne vor {street} {nr} ist seit Tagen defekt.",
        "Beleuchtung im Fußweg zwischen {street} und Spielplatz fällt aus.",
        "Laterne {in_street} flackert ständig.",
    ),
    "Grünpflege": (
        "Hecke {in_street} ragt weit auf den Gehweg.",
        "Baum vor {street} {nr} hat einen abgebrochenen Ast, droht herunterzufallen.",
        "Grünstreifen {in_street} seit Monaten nicht gemäht.",
    ),
    "Parken": (
        "Fahrzeug {kfz} parkt seit Wochen im Halteverbot {in_street}.",
        "Gehwegparken vor {street} {nr}, Kinderwagen kommt nicht durch. Kennzeichen {kfz}.",
        "Einfahrt {street} {nr} regelmäßig zugeparkt ({kfz}).",
        "Abgemeldetes Auto ohne Kennzeichen steht {in_street}.",
    ),
    "Sonstiges": (
        "Frage zur Ummeldung nach Umzug innerhalb von {district}.",
        "Bitte um Auskunft zur Hundesteuer.",
        "Verschmutzte Sitzbank am Spielplatz {street}.",
        "Taubenplage am Haus {street} {nr}.",
        "Wann wird der Wochenmarkt in {district} wieder aufgebaut?",
    ),
}


def _generate_anliegen(count: int, rng: random.Random, pools: _Pools) -> pa.Table:
    rnd = rng.random
    pick_district = _picker(rng, _DISTRICT_DATA, [d.weight for d in _DISTRICT_DATA])
    pick_kat = _picker(rng, KATEGORIEN, _KATEGORIE_WEIGHTS)
    start = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp())
    end = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
    span_days = (end - start) // 86400
    hours = list(range(24))
    hour_weights = [0.2, 0.1, 0.1, 0.1, 0.1, 0.3, 1, 3, 6, 8, 8, 7, 6, 6, 7, 7, 6, 5, 4, 3, 2, 1.5, 1, 0.5]
    pick_hour = _picker(rng, hours, hour_weights)
    mail_cache: dict[str, str] = {}
    de_first = pools.male["de_DE"] + pools.female["de_DE"]
    de_last = pools.last["de_DE"]

    tickets: list[tuple[int, str, str, str, str]] = []
    for _ in range(count):
        ts = start + rng.randrange(span_days) * 86400 + pick_hour() * 3600 + rng.randrange(3600)
        d = pick_district()
        kat = pick_kat()
        names, plzs = pools.streets[d.name]
        si = rng.randrange(len(names))
        text = rng.choice(_ANLIEGEN_TEMPLATES[kat]).format(
            street=names[si],
            in_street=_in_street(names[si]),
            nr=int(1 + rnd() ** 1.8 * 120),
            kfz=_kfz(rng),
            district=d.name,
        )
        r = rnd()
        if r < 0.5:
            vorname = de_first[rng.randrange(len(de_first))]
            nachname = de_last[rng.randrange(len(de_last))]
            kind = rng.randrange(6)
            if kind == 0:
                text += f" Bitte Rückmeldung an {vorname} {nachname}, Tel. {_phone(rng, d.area_code)}."
            elif kind == 1:
                other = rng.randrange(len(names))
                text += (
                    f" Meldende Person: {vorname} {nachname}, {names[other]} "
                    f"{int(1 + rnd() * 80)}, {plzs[other]} {d.ort}."
                )
            elif kind == 2:
                text += f" Kontakt: {_email(rng, vorname, nachname, 1980, mail_cache)}"
            elif kind == 3:
                text += f" Mit freundlichen Grüßen {vorname} {nachname}"
            elif kind == 4:
                text += f" Erreichbar unter {_phone(rng, d.area_code)}."
            else:
                text += f" Der Nachbar Herr {nachname} wurde bereits angesprochen."
        elif r < 0.6:
            text += " Bitte um Rückmeldung an das Ortsbeiratsbüro, Tel. 0611 31-0."
        tickets.append((ts, kat, d.name, text, ""))

    tickets.sort(key=lambda t: t[0])
    status_col: list[str] = []
    for ts, *_ in tickets:
        age_days = (end - ts) / 86400
        r = rnd()
        if age_days > 60:
            status_col.append("erledigt" if r < 0.86 else "in Bearbeitung" if r < 0.96 else "offen")
        else:
            status_col.append("offen" if r < 0.45 else "in Bearbeitung" if r < 0.8 else "erledigt")

    return pa.table(
        {
            "ticket_id": pa.array(range(1, len(tickets) + 1), type=pa.int64()),
            "eingegangen_am": pa.array([t[0] for t in tickets], type=pa.int64()).cast(pa.timestamp("s")),
            "kategorie": pa.array([t[1] for t in tickets], type=pa.string()),
            "stadtteil": pa.array([t[2] for t in tickets], type=pa.string()),
            "text": pa.array([t[3] for t in tickets], type=pa.string()),
            "status": pa.array(status_col, type=pa.string()),
        }
    )


def _build_tables(rows: int, seed: int) -> dict[str, pa.Table]:
    rng = random.Random(seed)  # noqa: S311 - synthetic data, reproducibility wanted
    pools = _build_pools(seed, rng)
    einwohner, holders, counts = _generate_einwohner(rows, rng, pools)
    sozial = _generate_sozialleistungen(holders, rng, pools)
    anliegen = _generate_anliegen(max(1, rows // 10), rng, pools)
    stadtteile = pa.table(
        {
            "stadtteil": pa.array(DISTRICTS, type=pa.string()),
            "ortsbezirk_nr": pa.array([d.nr for d in _DISTRICT_DATA], type=pa.int32()),
            "flaeche_km2": pa.array([d.area_km2 for d in _DISTRICT_DATA], type=pa.float64()),
            "einwohner_gesamt": pa.array(counts, type=pa.int32()),
        }
    )
    return {
        "stadtteile": stadtteile,
        "einwohner": einwohner,
        "sozialleistungen": sozial,
        "anliegen": anliegen,
    }


def generate_demo_database(path: Path, rows: int = 100_000, seed: int = 20261124) -> dict[str, int]:
    """Create the demo DuckDB file at `path` with `rows` residents; returns the row count per table.

    Same `seed` and `rows` give identical table contents. The file is written under a temporary name
    next to `path` and renamed into place, so readers never see a half-written database.
    """
    if rows < 1:
        raise ValueError("rows must be at least 1")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tables = _build_tables(rows, seed)

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    wal = tmp.with_name(tmp.name + ".wal")
    for leftover in (tmp, wal):
        leftover.unlink(missing_ok=True)
    try:
        con = duckdb.connect(str(tmp))
        try:
            for name in TABLES:
                con.execute(_DDL[name])
                con.register("_src", tables[name])
                con.execute(f"INSERT INTO {name} SELECT * FROM _src")
                con.unregister("_src")
            con.execute("CHECKPOINT")
        finally:
            con.close()
        wal.unlink(missing_ok=True)
        os.replace(tmp, path)
        with contextlib.suppress(FileNotFoundError):
            path.with_name(path.name + ".wal").unlink()
    except BaseException:
        tmp.unlink(missing_ok=True)
        wal.unlink(missing_ok=True)
        raise
    return {name: tables[name].num_rows for name in TABLES}


def _main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience entry point
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Generate the Wiesbaden demo DuckDB file.")
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=20261124)
    args: Any = parser.parse_args(argv)
    t0 = time.perf_counter()
    counts = generate_demo_database(args.path, rows=args.rows, seed=args.seed)
    print(counts, f"{time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
