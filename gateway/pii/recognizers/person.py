"""Person names without an NER model.

Rules (German; the English variant swaps the word lists):

1. *Strong context* - ``Herr``, ``Frau``, ``Familie``, ``Eheleute``, ``Hr.``,
   ``Fr.``, ``Fam.``, ``Dr.``, ``Prof.``, ``namens``, ``geb.`` (birth name) ...:
   the following capitalised token is a name (titles like ``Dr. med.`` and
   roles like ``Rechtsanwältin`` in between are skipped), unless it is a known
   ordinary word (``Frau Anfang 40``).
2. *Weak context* - family and role words (``Sohn``, ``Tochter``, ``Ehemann``,
   ``Mutter``, ``Vermieter`` ...): the following token must be in the name
   gazetteer (``Sohn Leon``, but not ``Mutter Kontakt``).
3. *Gazetteer* - a known first name followed by a capitalised token
   (``Anna Kowalczyk``), a known first name alone, or a known surname alone.
   Names that are mostly ordinary words (``Mai``, ``Ernst``, ``Zimmer``, ``Steuer``)
   and common nouns are excluded.

A name is extended over further first names/particles (``Anna Maria von der
Heide``).  Spans inside known institution names (``Dr. Horst Schmidt Kliniken``,
``Elly-Heuss-Schule``) are dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources

import regex
from presidio_analyzer import LocalRecognizer, RecognizerResult
from presidio_analyzer.nlp_engine import NlpArtifacts

_TOKEN = regex.compile(r"\p{L}[\p{L}'’]*(?:-\p{L}[\p{L}'’]*)*")
_NOUN_SUFFIX = regex.compile(
    r"(?:ung|ungen|heit|keit|schaft|tion|sion|tät|nis|ment|ismus|ik|ie|ei|age|ium|ität|ür|ten|chen|lein)$"
)
#: a name after a form label such as "Kontoinhaber/in: Beniamin Dumitrescu"
_LABELLED_NAME = regex.compile(
    r"(?:Kontoinhaber|Zahlungsempfänger|Vermieter|Antragsteller|Ansprechpartner|Betreuer|Bevollmächtigte?r?)"
    r"(?:/in|in|\(in\))?\s*:\s*(\p{Lu}[\p{L}'’-]+(?:[ ]\p{Lu}[\p{L}'’.-]*){0,3})"
)
_PARTICLES = frozenset(
    [
        "von",
        "van",
        "der",
        "de",
        "del",
        "della",
        "di",
        "da",
        "zu",
        "vom",
        "zur",
        "ten",
        "ter",
        "el",
        "al",
        "bin",
        "ibn",
        "dos",
        "das",
        "du",
        "le",
        "la",
    ]
)
_TITLES = frozenset(
    ["Dr", "Prof", "med", "Dipl", "Ing", "rer", "nat", "phil", "jur", "dent", "habil", "Mag", "Med", "vet"]
)


@dataclass(frozen=True)
class LanguageConfig:
    strong: frozenset[str]
    strong_abbrev: frozenset[str]  # only when followed by "."
    weak: frozenset[str]
    roles: frozenset[str]
    institutions: tuple[str, ...]
    first_file: str
    last_file: str


DE = LanguageConfig(
    strong=frozenset(
        [
            "Herr",
            "Herrn",
            "Frau",
            "Familie",
            "Eheleute",
            "Geschwister",
            "namens",
            "Rechtsanwalt",
            "Rechtsanwältin",
            "Notar",
            "Notarin",
            "geborene",
            "geborener",
            "verheiratete",
            "verwitwete",
            "Herrn",
        ]
    ),
    strong_abbrev=frozenset(["Hr", "Fr", "Fam", "Dr", "Prof", "geb", "verh", "verw", "gesch", "RA", "RAin"]),
    weak=frozenset(
        [
            "Sohn",
            "Sohnes",
            "Tochter",
            "Ehemann",
            "Ehemannes",
            "Ehefrau",
            "Ehegatte",
            "Ehegattin",
            "Lebensgefährte",
            "Lebensgefährtin",
            "Partner",
            "Partnerin",
            "Mutter",
            "Vater",
            "Kind",
            "Kindes",
            "Bruder",
            "Schwester",
            "Oma",
            "Opa",
            "Großmutter",
            "Großvater",
            "Enkel",
            "Enkelin",
            "Neffe",
            "Nichte",
            "Onkel",
            "Tante",
            "Cousin",
            "Cousine",
            "Betreuer",
            "Betreuerin",
            "Vermieter",
            "Vermieterin",
            "Nachbar",
            "Nachbarin",
            "Klient",
            "Klientin",
            "Antragsteller",
            "Antragstellerin",
            "Kollege",
            "Kollegin",
            "Sachbearbeiter",
            "Sachbearbeiterin",
            "Freund",
            "Freundin",
            "Stiefvater",
            "Stiefmutter",
            "Stiefsohn",
            "Stieftochter",
            "Pflegekind",
            "Pflegemutter",
            "Pflegevater",
            "Schüler",
            "Schülerin",
            "Mitarbeiter",
            "Mitarbeiterin",
            "Vormund",
            "Ansprechpartner",
            "Ansprechpartnerin",
            "Bewohner",
            "Bewohnerin",
            "Patient",
            "Patientin",
            "Kindsvater",
            "Kindsmutter",
            "Kindesvater",
            "Kindesmutter",
            "Mieter",
            "Mieterin",
            "Halter",
            "Halterin",
            "Hausarzt",
            "Hausärztin",
            "Zeuge",
            "Zeugin",
            "Bürger",
            "Bürgerin",
            "Beschwerdeführer",
            "Beschwerdeführerin",
            "Hinweisgeber",
            "Hinweisgeberin",
            "Anrufer",
            "Anruferin",
            "Sohnemann",
            "Baby",
            "Säugling",
            "Geschwisterkind",
            "Lehrer",
            "Lehrerin",
            "Erzieher",
            "Erzieherin",
            "Therapeut",
            "Therapeutin",
            "Schwiegersohn",
            "Schwiegertochter",
            "Schwiegermutter",
            "Schwiegervater",
            "Ex-Mann",
            "Ex-Frau",
            "Exmann",
            "Exfrau",
        ]
    ),
    roles=frozenset(
        [
            "Rechtsanwalt",
            "Rechtsanwältin",
            "Bürgermeister",
            "Bürgermeisterin",
            "Oberbürgermeister",
            "Oberbürgermeisterin",
            "Stadtrat",
            "Stadträtin",
            "Kollege",
            "Kollegin",
            "Doktor",
            "Doktorin",
            "Professor",
            "Professorin",
            "Pfarrer",
            "Pfarrerin",
            "Richterin",
            "Direktor",
            "Direktorin",
            "Kommissar",
            "Kommissarin",
            "Notar",
            "Notarin",
            "Minister",
            "Ministerin",
            "Dezernent",
            "Dezernentin",
            "Amtsleiter",
            "Amtsleiterin",
            "Abteilungsleiter",
            "Abteilungsleiterin",
            "Sachbearbeiter",
            "Sachbearbeiterin",
            "Kriminalkommissar",
            "Polizeioberkommissar",
            "Polizeikommissarin",
            "Polizeihauptkommissar",
            "Obergerichtsvollzieher",
            "Gerichtsvollzieher",
            "Gerichtsvollzieherin",
        ]
    ),
    institutions=(
        r"Amt\x20für\x20Soziale\x20Arbeit",
        r"Jobcenter(?:\x20\p{Lu}\p{Ll}+)?",
        r"(?:Helios\x20)?Dr\.\x20Horst\x20Schmidt\x20Klinik(?:en)?",
        r"Horst-Schmidt-Klinik(?:en)?",
        r"St\.\x20Josefs-Hospital",
        r"Asklepios\x20Paulinen\x20Klinik",
        r"Theodor-Heuss-Schule|Elly-Heuss-Schule|Helene-Lange-Schule|Carl-von-Ossietzky-Schule",
        r"Max-Planck-\p{L}+|Fraunhofer-\p{L}+",
        r"Hans-Böckler-Stiftung|Friedrich-Ebert-Stiftung|Konrad-Adenauer-Stiftung",
    ),
    first_file="first_names_de.txt",
    last_file="last_names_de.txt",
)

EN = LanguageConfig(
    strong=frozenset(
        ["Mr", "Mrs", "Ms", "Miss", "Mister", "Madam", "Mx", "Sir", "Dame", "Lady", "Lord", "named"]
    ),
    strong_abbrev=frozenset(["Mr", "Mrs", "Ms", "Mx", "Dr", "Prof"]),
    weak=frozenset(
        [
            "son",
            "daughter",
            "husband",
            "wife",
            "mother",
            "father",
            "brother",
            "sister",
            "grandmother",
            "grandfather",
            "aunt",
            "uncle",
            "nephew",
            "niece",
            "cousin",
            "partner",
            "boyfriend",
            "girlfriend",
            "landlord",
            "landlady",
            "neighbour",
            "neighbor",
            "tenant",
            "client",
            "applicant",
            "caseworker",
            "colleague",
            "child",
            "friend",
            "patient",
            "resident",
            "teacher",
        ]
    ),
    roles=frozenset(
        [
            "Doctor",
            "Professor",
            "Judge",
            "Officer",
            "Detective",
            "Councillor",
            "Councilor",
            "Mayor",
            "Reverend",
        ]
    ),
    institutions=(r"Social\x20Services", r"Job\x20Centre(?:\x20Plus)?"),
    first_file="first_names_en.txt",
    last_file="last_names_en.txt",
)

_EN_COMMON = frozenset(
    [
        "The",
        "A",
        "An",
        "He",
        "She",
        "It",
        "We",
        "They",
        "I",
        "You",
        "His",
        "Her",
        "Their",
        "Our",
        "My",
        "This",
        "That",
        "These",
        "Those",
        "Today",
        "Yesterday",
        "Tomorrow",
        "Monday",
        "Tuesday",
        "Wednesday",
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
        "Please",
        "Thanks",
        "Thank",
        "Dear",
        "Regards",
        "Council",
        "City",
        "Street",
        "Road",
        "Avenue",
        "Lane",
        "Office",
        "Department",
        "Benefit",
        "Benefits",
        "Housing",
        "Tax",
        "Ticket",
        "Case",
        "Note",
        "Notes",
        "Call",
        "Email",
        "Phone",
        "Park",
        "Road",
        "Hill",
        "Green",
        "Street",
        "Lane",
        "Court",
        "House",
        "Hall",
        "Church",
        "After",
        "Before",
        "During",
        "With",
        "Without",
        "For",
        "From",
        "Into",
        "On",
        "In",
        "At",
        "By",
        "Of",
        "And",
        "Or",
        "But",
        "Also",
        "Not",
        "No",
        "Yes",
        "Client",
    ]
)


def _read_list(name: str) -> frozenset[str]:
    text = resources.files("gateway.pii").joinpath("data", name).read_text(encoding="utf-8")
    words: list[str] = []
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        words.extend(line.split())
    return frozenset(words)


@cache
def _gazetteer(lang: str) -> tuple[frozenset[str], frozenset[str], frozenset[str]]:
    cfg = EN if lang == "en" else DE
    common = _read_list("common_words_de.txt") | _EN_COMMON
    stop_first = _read_list("stop_first_names.txt")
    stop_last = _read_list("stop_last_names.txt")
    first = frozenset(n for n in _read_list(cfg.first_file) if len(n) >= 3) - stop_first - common
    last = frozenset(n for n in _read_list(cfg.last_file) if len(n) >= 3) - stop_last - common - first
    return first, last, common


def _is_name_token(tok: str) -> bool:
    return (tok[0].isupper() and (len(tok) > 1) and not tok.isupper()) or (tok.isupper() and len(tok) >= 3)


class PersonRecognizer(LocalRecognizer):
    """Context + gazetteer person recogniser (no NLP model needed)."""

    def __init__(self, supported_language: str = "de") -> None:
        self._cfg = EN if supported_language == "en" else DE
        super().__init__(
            supported_entities=["PERSON"],
            name="PersonRecognizer",
            supported_language=supported_language,
        )
        self._first, self._last, self._common = _gazetteer(supported_language)
        self._institutions = regex.compile("|".join(self._cfg.institutions))
        self._lang = supported_language

    def load(self) -> None:
        pass

    # -------------------------------------------------------------------------------------
    def _plain(self, tok: str) -> bool:
        """Capitalised token that may be (part of) a name."""
        return _is_name_token(tok) and tok not in self._common

    def _in_gazetteer(self, tok: str) -> bool:
        if tok in self._first or tok in self._last:
            return True
        if "-" in tok:
            parts = tok.split("-")
            return all(p in self._first or p in self._last for p in parts)
        return tok.endswith("s") and tok[:-1] in self._last  # Genitive: Müllers

    def _is_first(self, tok: str) -> bool:
        if tok in self._first:
            return True
        return "-" in tok and all(p in self._first for p in tok.split("-"))

    def analyze(
        self,
        text: str,
        entities: list[str],
        nlp_artifacts: NlpArtifacts | None = None,
    ) -> list[RecognizerResult]:
        toks = [(m.start(), m.end(), m.group()) for m in _TOKEN.finditer(text)]
        spans: list[tuple[int, int, float]] = []
        n = len(toks)
        covered_until = -1

        def adjacent(i: int, j: int, allow_dot: bool = False) -> bool:
            gap = text[toks[i][1] : toks[j][0]]
            if allow_dot:
                gap = gap.replace(".", "", 1)
            if allow_dot and gap in ("-", " -"):  # initial with hyphen: "H.-Dieter"
                return True
            return gap in (" ", "") if not allow_dot else gap.strip(" ") == "" and len(gap) <= 2

        def extend(j: int, strong: bool) -> int:
            """Return index of the last token belonging to the name starting at j."""
            k = j
            while k + 1 < n:
                nxt = toks[k + 1][2]
                if not adjacent(k, k + 1):
                    break
                if nxt in _PARTICLES and k + 2 < n and adjacent(k + 1, k + 2):
                    after = toks[k + 2][2]
                    if after in _PARTICLES and k + 3 < n and adjacent(k + 2, k + 3):
                        if self._plain(toks[k + 3][2]):
                            k += 3
                            continue
                        break
                    if self._plain(after) and (self._is_first(toks[k][2]) or strong):
                        k += 2
                        continue
                    break
                if not self._plain(nxt) or k - j >= 3:
                    break
                cur = toks[k][2]
                # a name goes on over known names, and over capitalised non-nouns after a first name,
                # a known name or a strong context (Herr/Frau ...): "Herr Coluccio Segrè", "Loretta Grein Groth"
                name_like = self._is_first(cur) or self._in_gazetteer(cur) or strong or k > j
                if self._in_gazetteer(nxt) or (name_like and (strong or not _NOUN_SUFFIX.search(nxt))):
                    k += 1
                    continue
                break
            return k

        i = 0
        while i < n:
            s, e, tok = toks[i]
            if s < covered_until:
                i += 1
                continue
            dot = text[e : e + 1] == "."
            is_strong = tok in self._cfg.strong or (dot and tok in self._cfg.strong_abbrev)
            is_weak = tok in self._cfg.weak or tok.lower() in self._cfg.weak
            if (is_strong or is_weak) and i + 1 < n:
                j = i + 1
                # skip titles (Dr. med.), roles (Rechtsanwältin) and further honorifics
                while (
                    j < n
                    and (
                        (toks[j][2] in _TITLES and text[toks[j][1] : toks[j][1] + 1] == ".")
                        or toks[j][2] in self._cfg.roles
                        or (toks[j][2] in self._cfg.strong and j == i + 1)
                        or (len(toks[j][2]) == 1 and toks[j][2].isupper()
                            and text[toks[j][1] : toks[j][1] + 1] == "." and j + 1 < n)
                    )
                    and adjacent(j - 1, j, allow_dot=True)
                ):
                    j += 1
                if j < n and adjacent(j - 1, j, allow_dot=True):
                    cand = toks[j][2]
                    p = j
                    while p + 1 < n and toks[p][2] in _PARTICLES and toks[p + 1][2] in _PARTICLES:
                        p += 1  # "van der", "von und zu"
                    if (
                        cand in _PARTICLES
                        and p + 1 < n
                        and adjacent(p, p + 1)
                        and self._plain(toks[p + 1][2])
                    ):
                        k = extend(p + 1, True)
                        spans.append((toks[j][0], toks[k][1], 0.9 if is_strong else 0.85))
                        covered_until = toks[k][1]
                        i = k + 1
                        continue
                    two_words = (j + 1 < n and adjacent(j, j + 1) and self._plain(toks[j + 1][2])
                                 and not _NOUN_SUFFIX.search(cand))
                    if self._plain(cand) and (is_strong or self._in_gazetteer(cand) or two_words):
                        k = extend(j, is_strong or two_words)
                        spans.append((toks[j][0], toks[k][1], 0.9 if is_strong else 0.85))
                        covered_until = toks[k][1]
                        i = k + 1
                        continue
            if self._plain(tok) and not (tok in self._cfg.strong or is_weak):
                prev_char = text[s - 1 : s]
                if prev_char in ("-", "/") or text[e : e + 1] == "-":
                    i += 1
                    continue
                if self._is_first(tok):
                    k = extend(i, False)
                    if k > i:
                        last_tok = toks[k][2]
                        score = 0.85 if self._in_gazetteer(last_tok) else 0.7
                    else:
                        score = 0.6
                    spans.append((s, toks[k][1], score))
                    covered_until = toks[k][1]
                    i = k + 1
                    continue
                if self._in_gazetteer(tok):
                    spans.append((s, e, 0.55))
            i += 1

        for match in _LABELLED_NAME.finditer(text):
            spans.append((match.start(1), match.end(1), 0.85))
        return list(self._to_results(text, spans))

    def _to_results(self, text: str, spans: list[tuple[int, int, float]]) -> Iterable[RecognizerResult]:
        blocked = [m.span() for m in self._institutions.finditer(text)] if spans else []
        for s, e, score in spans:
            if any(bs < e and s < be for bs, be in blocked):
                continue
            yield RecognizerResult(
                entity_type="PERSON",
                start=s,
                end=e,
                score=score,
                recognition_metadata={
                    RecognizerResult.RECOGNIZER_NAME_KEY: "PersonRecognizer",
                    RecognizerResult.RECOGNIZER_IDENTIFIER_KEY: self.id,
                },
            )
