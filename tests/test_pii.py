"""Tests for gateway.pii (German-first offline PII scanner)."""

from __future__ import annotations

import importlib.util
import io
import itertools
import json
import socket
import string
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.pii import FreeTextScanner, Span, analyze_jsonl, get_scanner, merge_spans
from gateway.pii import checksums as cs

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def scanner() -> FreeTextScanner:
    return FreeTextScanner("de")


def types(sc: FreeTextScanner, text: str) -> list[tuple[str, str]]:
    return [(s.type, text[s.start : s.end]) for s in sc.analyze(text)]


def has(sc: FreeTextScanner, text: str, typ: str, value: str) -> bool:
    return (typ, value) in types(sc, text)


# ------------------------------------------------------------------ checksums
@pytest.mark.parametrize("v", ["86095742719", "47036892816", "65929970489", "57549285017", "25768131411"])
def test_steuer_id_valid(v: str) -> None:
    assert cs.is_valid_steuer_id(v)


@pytest.mark.parametrize(
    "v",
    [
        "86095742718",  # wrong check digit
        "06095742719",  # leading zero
        "12345678903",  # all digits distinct in first ten
        "11111111116",  # distribution rule
        "1234567890",  # too short
    ],
)
def test_steuer_id_invalid(v: str) -> None:
    assert not cs.is_valid_steuer_id(v)


def test_steuer_id_triple_digit_rule() -> None:
    body = "1112345678"  # '1' three times in a row -> invalid regardless of check digit
    assert not cs.is_valid_steuer_id(body + str(cs.iso7064_mod11_10_check_digit(body)))
    body = "1121345678"  # three times, not consecutive -> allowed
    v = body[:0] + "1121345678"
    assert cs.is_valid_steuer_id(v + str(cs.iso7064_mod11_10_check_digit(v)))


@pytest.mark.parametrize(
    ("v", "ok"),
    [
        ("DE89 3704 0044 0532 0130 00", True),
        ("DE89370400440532013000", True),
        ("GB82 WEST 1234 5698 7654 32", True),
        ("AT61 1904 3002 3457 3201", True),
        ("DE89 3704 0044 0532 0130 01", False),
        ("DE89 3704 0044 0532 0130", False),
        ("XX89370400440532013000", False),
    ],
)
def test_iban(v: str, ok: bool) -> None:
    assert cs.is_valid_iban(v) is ok


def test_sv_nummer() -> None:
    assert cs.is_valid_sv_nummer("15 070649 C 103")
    assert cs.is_valid_sv_nummer("15070649C103")
    assert not cs.is_valid_sv_nummer("15 070649 C 104")  # check digit
    assert not cs.is_valid_sv_nummer("15 073249 C 103")  # day 32
    assert not cs.is_valid_sv_nummer("15 070649 1 103")


def test_kvnr_and_ust_and_mrz() -> None:
    assert cs.is_valid_kvnr("A123456780")
    assert not cs.is_valid_kvnr("A123456781")
    assert cs.is_valid_ust_id_de("DE136695976")
    assert not cs.is_valid_ust_id_de("DE136695977")
    assert cs.mrz_check_digit("L01X00T47") == 1


# ------------------------------------------------------------------ recognizers
def test_steuer_id_in_text(scanner: FreeTextScanner) -> None:
    assert has(scanner, "Steuer-ID 86095742719 liegt vor", "STEUER_ID", "86095742719")
    assert has(scanner, "IdNr. 86 095 742 719.", "STEUER_ID", "86 095 742 719")
    assert scanner.analyze("Nummer 86095742718 liegt vor") == []


def test_iban_in_text(scanner: FreeTextScanner) -> None:
    t = "Konto DE89 3704 0044 0532 0130 00 1234 Euro"
    assert has(scanner, t, "IBAN", "DE89 3704 0044 0532 0130 00")
    assert has(scanner, "an GB82WEST12345698765432.", "IBAN", "GB82WEST12345698765432")
    assert not any(s.type == "IBAN" for s in scanner.analyze("Konto DE89 3704 0044 0532 0130 01"))


def test_sv_kvnr_ust_in_text(scanner: FreeTextScanner) -> None:
    assert has(scanner, "RV-Nr. 15 070649 C 103.", "SV_NUMMER", "15 070649 C 103")
    assert not any(s.type == "SV_NUMMER" for s in scanner.analyze("RV-Nr. 15 070649 C 104."))
    assert has(scanner, "KVNR A123456780", "KVNR", "A123456780")
    assert scanner.analyze("Nr A123456781") == []
    assert has(scanner, "USt-IdNr DE136695976", "UST_ID", "DE136695976")
    assert not any(s.type == "UST_ID" for s in scanner.analyze("USt-IdNr DE136695977"))


@pytest.mark.parametrize("doc", ["L01X00T47", "C01X00T47", "L01X00T471"])
def test_ausweis_specimens(scanner: FreeTextScanner, doc: str) -> None:
    assert has(scanner, f"Ausweisnummer {doc} geprüft", "AUSWEIS_NR", doc)
    assert has(scanner, f"Dokument {doc} geprüft", "AUSWEIS_NR", doc)


def test_ausweis_negatives(scanner: FreeTextScanner) -> None:
    assert scanner.analyze("Dokument L01X00T472 geprüft") == []  # wrong MRZ check digit
    assert scanner.analyze("Formular ABCDEFGHI") == []
    assert scanner.analyze("Vorgang T12345678 angelegt") == []  # single letter + digits, no context


@pytest.mark.parametrize(
    "phone",
    [
        "0611 1234567",
        "+49 611 123456",
        "0049 (0)611/12345",
        "0170/1234567",
        "(0611) 12 34 56",
        "0611-12345-0",
        "+49-170-1234567",
        "0151 23456789",
    ],
)
def test_phone_positive(scanner: FreeTextScanner, phone: str) -> None:
    assert has(scanner, f"Bitte Rückruf: {phone}, danke.", "PHONE", phone)
    assert has(scanner, f"Er hat {phone} angegeben", "PHONE", phone)


@pytest.mark.parametrize(
    "text",
    [
        "Termin am 03.04.1971 vereinbart",
        "Termin am 03-04-1971 vereinbart",
        "Az. 50.2-1234/2024",
        "Betrag 1.250,00 EUR überwiesen",
        "Betrag 0,50 EUR",
        "§ 22 Abs. 1 SGB II",
        "Ticket #2024-01872 erledigt",
        "Vorgang 0815/2024 angelegt",
        "Um 10:30 Uhr in Raum 2.14",
        "PLZ 01067 Dresden",
    ],
)
def test_phone_negative(scanner: FreeTextScanner, text: str) -> None:
    assert not any(s.type == "PHONE" for s in scanner.analyze(text))


def test_kfz(scanner: FreeTextScanner) -> None:
    for plate in ("WI-AB 123", "MZ AB 1234E", "F-XY 99H"):
        assert has(scanner, f"Kennzeichen {plate} notiert", "KFZ_KENNZEICHEN", plate)
    assert not any(s.type == "KFZ_KENNZEICHEN" for s in scanner.analyze("nach SGB XII 12 Monate"))


def test_plz_and_address(scanner: FreeTextScanner) -> None:
    t = "wohnhaft Rheinstraße 12, 65183 Wiesbaden"
    assert has(scanner, t, "ADDRESS", "Rheinstraße 12")
    assert has(scanner, t, "PLZ_ORT", "65183 Wiesbaden")
    for addr in ("Wilhelmstr. 7a", "Am Schlosspark 3", "Kaiser-Friedrich-Ring 45", "Schiersteiner Straße 12"):
        assert has(scanner, f"Adresse: {addr}.", "ADDRESS", addr)
    for neg in (
        "siehe Anlage 3",
        "Am Montag 3 Termine",
        "Im Jahr 2023 gab es",
        "Arbeitsplatz 2 ist frei",
        "12345 Euro Schulden",
    ):
        assert scanner.analyze(neg) == [], neg


def test_date_of_birth(scanner: FreeTextScanner) -> None:
    assert has(scanner, "Herr X, geb. 03.04.1971, wohnhaft", "DATE_OF_BIRTH", "03.04.1971")
    assert has(scanner, "geboren am 3. April 1971 in Mainz", "DATE_OF_BIRTH", "3. April 1971")
    assert has(scanner, "Klient *12.05.1980", "DATE_OF_BIRTH", "12.05.1980")
    # plain dates (appointments) are deliberately kept
    assert scanner.analyze("Termin am 03.04.2024 um 10 Uhr") == []
    assert scanner.analyze("geb. 31.13.1971") == []


def test_aktenzeichen_kassenzeichen_flurstueck(scanner: FreeTextScanner) -> None:
    assert has(scanner, "Az. 50.2-1234/2024 eingegangen", "AKTENZEICHEN", "50.2-1234/2024")
    assert has(scanner, "AZ: 123 C 456/23.", "AKTENZEICHEN", "123 C 456/23")
    assert has(scanner, "Kassenzeichen 1234.5678.9012 angeben", "KASSENZEICHEN", "1234.5678.9012")
    t = "Gemarkung Biebrich, Flur 12, Flurstück 345/6 ist betroffen"
    assert has(scanner, t, "FLURSTUECK", "Gemarkung Biebrich, Flur 12, Flurstück 345/6")
    assert has(scanner, "Kennzeichen 060123-012-00345/006", "FLURSTUECK", "060123-012-00345/006")
    assert scanner.analyze("nach § 22 SGB II und § 27a SGB XII") == []


def test_email(scanner: FreeTextScanner) -> None:
    assert has(scanner, "Mail an anna.schmidt@web.de bitte", "EMAIL", "anna.schmidt@web.de")
    assert scanner.analyze("Mail an anna@localhost bitte") == []


def test_persons(scanner: FreeTextScanner) -> None:
    assert has(scanner, "Gespräch mit Herrn Kowalczyk heute", "PERSON", "Kowalczyk")
    assert has(
        scanner, "Frau Dr. med. Anna Maria Schmidt-Weber rief an", "PERSON", "Anna Maria Schmidt-Weber"
    )
    assert has(scanner, "Sohn Leon kam nicht", "PERSON", "Leon")
    assert has(scanner, "Heute war Anna Kowalczyk da.", "PERSON", "Anna Kowalczyk")
    assert has(scanner, "Familie Öztürk zieht um", "PERSON", "Öztürk")


@pytest.mark.parametrize(
    "text",
    [
        "Amt für Soziale Arbeit, Abteilung Grundsicherung",
        "Jobcenter Wiesbaden hat die Leistungen eingestellt",
        "Die Familie wohnt in Biebrich und sucht in Dotzheim",
        "Mutter Kontakt aufgenommen, Termin vereinbart",
        "Die Steuer wurde im Mai erstattet, das Zimmer ist frei",
        "Eine Frau Anfang 40 sprach vor",
        "Die Schüler der Elly-Heuss-Schule und der Dr. Horst Schmidt Kliniken",
    ],
)
def test_person_negatives(scanner: FreeTextScanner, text: str) -> None:
    assert not any(s.type == "PERSON" for s in scanner.analyze(text)), types(scanner, text)


# ------------------------------------------------------------------ API semantics
def test_span_merge_and_mask(scanner: FreeTextScanner) -> None:
    assert merge_spans([Span(0, 5, "A", 0.6), Span(3, 9, "B", 0.9), Span(12, 14, "C", 0.5)]) == [
        Span(0, 9, "B", 0.9),
        Span(12, 14, "C", 0.5),
    ]
    t = "Herr Müller, Tel. 0611 1234567, IBAN DE89 3704 0044 0532 0130 00."
    assert scanner.mask(t) == "Herr <PERSON>, Tel. <PHONE>, IBAN <IBAN>."
    spans = scanner.analyze(t)
    assert all(a.end <= b.start for a, b in itertools.pairwise(spans))
    assert scanner.mask("kein personenbezug hier") == "kein personenbezug hier"
    assert scanner.mask("") == ""


def test_mask_many_semantics() -> None:
    sc = FreeTextScanner("de", cache_size=2)
    out = sc.mask_many([None, "Herr Müller", "", None, "Herr Müller"])
    assert out == [None, "Herr <PERSON>", "", None, "Herr <PERSON>"]
    assert sc._cache.hits >= 1
    sc.mask_many(["a 1", "b 2", "c 3"])
    assert len(sc._cache) == 2  # bounded
    with pytest.raises(TypeError):
        sc.mask_many([b"bytes"])  # type: ignore[list-item]


def test_mask_many_errors_propagate(monkeypatch: pytest.MonkeyPatch) -> None:
    sc = FreeTextScanner("de")

    def boom(*args: object, **kwargs: object) -> object:
        raise RuntimeError("recognizer failed")

    monkeypatch.setattr(sc._analyzer, "analyze", boom)
    with pytest.raises(RuntimeError):
        sc.mask_many(["Herr Müller, Tel. 0611 1234567"])
    with pytest.raises(RuntimeError):
        sc.mask("Herr Müller")
    assert len(sc._cache) == 0  # failures are never cached


def test_get_scanner_shared_and_threadsafe() -> None:
    got: list[FreeTextScanner] = []
    results: list[list[str | None]] = []

    def work() -> None:
        s = get_scanner("de")
        got.append(s)
        results.append(s.mask_many([f"Herr Müller {i} Tel. 0611 1234567" for i in range(50)]))

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(s is got[0] for s in got)
    assert all(r == results[0] for r in results)
    assert "<PHONE>" in str(results[0][0])


def test_analyze_jsonl() -> None:
    src = io.StringIO(
        '{"id": 1, "text": "Frau Schmidt, Tel. 0611 1234567"}\n'
        "not json\n"
        '{"id": 3}\n'
        "\n"
        '{"id": "x", "text": "nichts"}\n'
    )
    dst = io.StringIO()
    assert analyze_jsonl(src, dst) == 4
    lines = [json.loads(x) for x in dst.getvalue().splitlines()]
    assert lines[0]["id"] == 1 and {s["type"] for s in lines[0]["spans"]} == {"PERSON", "PHONE"}
    assert "error" in lines[1] and lines[1]["id"] is None
    assert lines[2]["id"] == 3 and "error" in lines[2]
    assert lines[3] == {"id": "x", "spans": []}


def test_unsupported_language_and_ner_not_downloaded() -> None:
    with pytest.raises(ValueError):
        FreeTextScanner("fr")
    import spacy.util

    if not spacy.util.is_package("de_core_news_sm") and not spacy.util.is_package("de_core_news_md"):
        with pytest.raises(RuntimeError):
            FreeTextScanner("de", use_ner=True)


def test_english_scanner() -> None:
    sc = FreeTextScanner("en")
    assert sc.mask("Mr David Miller, phone (555) 123-4567, mail d.miller@example.com") == (
        "Mr <PERSON>, phone <PHONE>, mail <EMAIL>"
    )


# ------------------------------------------------------------------ offline
def test_offline_env_set() -> None:
    import os

    assert os.environ["TLDEXTRACT_PUBLIC_SUFFIX_LIST_URLS"] == ""


def test_runs_with_network_blocked(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_net(*args: object, **kwargs: object) -> None:
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", no_net)
    monkeypatch.setattr(socket.socket, "connect_ex", no_net)
    monkeypatch.setattr(socket, "create_connection", no_net)
    sc = FreeTextScanner("de")
    assert sc.mask("Mail an info@stadt.wiesbaden.de oder x@beispiel.co.uk") == "Mail an <EMAIL> oder <EMAIL>"
    assert FreeTextScanner("en").mask("mail a@b.com") == "mail <EMAIL>"


def test_fresh_process_import_is_offline(tmp_path: Path) -> None:
    """Import + first e-mail scan in a fresh interpreter with sockets disabled."""
    code = (
        "import socket\n"
        "def no(*a, **k): raise SystemExit('network access attempted')\n"
        "socket.socket.connect = no\nsocket.create_connection = no\n"
        "from gateway.pii import FreeTextScanner\n"
        "import tldextract\n"
        "print(FreeTextScanner('de').mask('an a.b@web.de'), tldextract.extract('x.co.uk').suffix)\n"
    )
    env = {"PATH": "", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["an", "<EMAIL>", "co.uk"]


# ------------------------------------------------------------------ properties
_filler_words = st.sampled_from(
    [
        "der",
        "die",
        "das",
        "und",
        "mit",
        "bei",
        "Antrag",
        "Termin",
        "wurde",
        "heute",
        "Bescheid",
        "Miete",
        "Wohnung",
        "liegt",
        "vor",
        "ist",
        "bitte",
        "Rückruf",
        "erfolgt",
        "geprüft",
        "danach",
        "Unterlagen",
        "vollständig",
        "Auszahlung",
    ]
)
_filler = st.lists(_filler_words, min_size=0, max_size=8).map(" ".join)


@st.composite
def _iban_de(draw: st.DrawFn) -> str:
    bban = "".join(draw(st.lists(st.sampled_from(string.digits), min_size=18, max_size=18)))
    check = 98 - cs.iban_mod97(f"DE00{bban}")
    compact = f"DE{check:02d}{bban}"
    assert cs.is_valid_iban(compact)
    if draw(st.booleans()):
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))
    return compact


@st.composite
def _steuer_id(draw: st.DrawFn) -> str:
    digits = draw(st.permutations(list(string.digits)))
    if digits[0] == "0":
        digits = digits[1:] + digits[:1]
    body = list(digits[:9])
    pos = draw(st.integers(min_value=1, max_value=9))
    body.insert(pos, body[pos - 1] if pos > 1 else body[1])
    b = "".join(body)
    v = b + str(cs.iso7064_mod11_10_check_digit(b))
    assert cs.is_valid_steuer_id(v), v
    return v


@st.composite
def _phone(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from(["611", "6122", "170", "151", "30", "69", "6131"]))
    sub = "".join(draw(st.lists(st.sampled_from(string.digits), min_size=5, max_size=8)))
    sub = str(draw(st.integers(1, 9))) + sub[1:]
    style = draw(st.integers(0, 5))
    return [
        f"0{area} {sub}",
        f"0{area}/{sub}",
        f"+49 {area} {sub}",
        f"0049 (0){area}/{sub}",
        f"(0{area}) {sub}",
        f"0{area}-{sub}",
    ][style]


@st.composite
def _email(draw: st.DrawFn) -> str:
    local = draw(st.text(alphabet=string.ascii_lowercase + string.digits, min_size=1, max_size=10))
    sep = draw(st.sampled_from(["", ".", "_", "-"]))
    local2 = draw(st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=8))
    dom = draw(st.sampled_from(["web.de", "gmx.de", "t-online.de", "wiesbaden.de", "example.co.uk"]))
    return f"{local}{sep}{local2}@{dom}"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    value=st.one_of(_iban_de(), _steuer_id(), _phone(), _email()),
    before=_filler,
    after=_filler,
)
def test_property_embedded_identifiers_are_masked(
    scanner: FreeTextScanner, value: str, before: str, after: str
) -> None:
    text = f"{before} {value} {after}".strip()
    start = text.index(value)
    masked: set[int] = set()
    for s in scanner.analyze(text):
        masked.update(range(s.start, s.end))
    assert all(i in masked for i in range(start, start + len(value))), (text, scanner.analyze(text))
    assert value not in scanner.mask(text)


# ------------------------------------------------------------------ quality gate
def _load_quality_module() -> object:
    spec = importlib.util.spec_from_file_location("pii_quality", ROOT / "bench" / "pii_quality.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    sys.modules["pii_quality"] = mod
    spec.loader.exec_module(mod)
    return mod


def test_corpus_is_well_formed() -> None:
    for lang, minimum in (("de", 150), ("en", 20)):
        lines = (ROOT / "tests" / "pii_corpus" / f"{lang}.jsonl").read_text(encoding="utf-8").splitlines()
        assert len(lines) >= minimum
        for line in lines:
            rec = json.loads(line)
            for sp in rec["spans"]:
                assert 0 <= sp["start"] < sp["end"] <= len(rec["text"])
                frag = rec["text"][sp["start"] : sp["end"]]
                assert frag == frag.strip() and frag


@pytest.mark.parametrize("lang", ["de", "en"])
def test_quality_targets(lang: str) -> None:
    mod = _load_quality_module()
    rep = mod.evaluate(lang)  # type: ignore[attr-defined]
    assert rep.coverage >= 0.95, mod.format_report(rep, lang)  # type: ignore[attr-defined]
    assert rep.precision >= 0.90, mod.format_report(rep, lang)  # type: ignore[attr-defined]
