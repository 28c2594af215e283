"""Tests for the synthetic Wiesbaden demo data (gateway.demo.data) and its loader (gateway.demo.load)."""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.demo.data import (
    DISTRICTS,
    STICHTAG,
    generate_demo_database,
    iban_is_valid,
    make_iban,
    make_steuer_id,
    steuer_id_is_valid,
)
from gateway.demo.load import load_into

ROOT = Path(__file__).resolve().parents[1]
ROWS = 2_000
TABLES = ("stadtteile", "einwohner", "sozialleistungen", "anliegen")
PKS = {"stadtteile": "stadtteil", "einwohner": "id", "sozialleistungen": "fall_id", "anliegen": "ticket_id"}
PG_ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
PG_DSN_TEMPLATE = "postgresql://postgres@127.0.0.1:5432/{db}"
MARIADB_DSN_TEMPLATE = "mysql://root@127.0.0.1:3306/{db}"

# Patterns for personal data in free text (deliberately simple - this is a property of the data set,
# not a PII detector).
PERSONAL_PATTERNS = [
    re.compile(r"\b(Herr|Frau)\s+[A-ZÄÖÜ]"),
    re.compile(r"\bDE\d{2}(?: ?\d{4}){4} ?\d{2}\b"),
    re.compile(r"geb\. \d{2}\.\d{2}\.\d{4}"),
    re.compile(r"\bAz\. \d{2}\.\d-\d{4}/\d{4}"),
    re.compile(r"[\w.+-]+@[\w-]+\.[a-z]{2,}"),
    re.compile(r"(?:\+49|\(0\d{2,4}\)|\b0\d{2,4})[ /-]?(?:\(0\))?\d{2,4}[ /-]?\d{2,}"),
    re.compile(r"\b\d{5} (Wiesbaden|Mainz-Kastel|Mainz-Kostheim)\b"),
    re.compile(r"\b(Sohn|Tochter|Ehemann|Ehefrau|Vater|Mutter|Bruder|Schwester|Enkel|Enkelin|Lebensgefährte|"
               r"Lebensgefährtin|Betreuer:|Vermieter|Kontoinhaber/in:) [A-ZÄÖÜ]"),
]  # fmt: skip
OFFICE_PHONE = "0611 31-0"
PHONE_RE = re.compile(
    r"(0\d{3,4} \d{5,8}|\+49 \d{3,4} \d{5,8}|0\d{3,4}/\d{5,8}|\(0\d{3,4}\)( \d{1,2})+|0\d{3,4}-\d{5,7}"
    r"|\+49 \(0\)\d{3,4} \d{5,7}|0\d{3,4} \d{3} \d{2,5}|\+49\d{9,12})"
)
KFZ_RE = re.compile(r"\b(WI|MZ|RÜD|MTK|F|LM)[- ][A-Z]{1,2} \d{1,4}E?\b")


def _has_personal_data(text: str) -> bool:
    return any(p.search(text) for p in PERSONAL_PATTERNS)


def _fetch(con: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    return con.execute(sql).fetchall()


def _table_rows(con: duckdb.DuckDBPyConnection, table: str) -> list[tuple[Any, ...]]:
    return _fetch(con, f"SELECT * FROM {table} ORDER BY {PKS[table]}")


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    path = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    counts = generate_demo_database(path, rows=ROWS)
    return path, counts


@pytest.fixture()
def con(demo_db: tuple[Path, dict[str, int]]) -> Iterator[duckdb.DuckDBPyConnection]:
    c = duckdb.connect(str(demo_db[0]), read_only=True)
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------------
# Check digits
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "tax_id", ["86095742719", "47036892816", "65929970489", "57549285017", "25768131411"]
)
def test_known_valid_steuer_ids(tax_id: str) -> None:
    assert steuer_id_is_valid(tax_id)


@pytest.mark.parametrize(
    "tax_id",
    [
        "86095742718",  # wrong check digit
        "47036892815",  # wrong check digit
        "06095742719",  # leading zero
        "1234567890",  # too short
        "123456789012",  # too long
        "8609574271a",  # not a digit
        "12345678901",  # no repeated digit among the first ten
        "11223456789",  # two digits repeated
        "11112345678",  # a digit four times
        "11123456780",  # three identical adjacent digits (check digit would be irrelevant)
        "",
    ],
)
def test_invalid_steuer_ids(tax_id: str) -> None:
    assert not steuer_id_is_valid(tax_id)


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_make_steuer_id_is_valid_and_single_digit_errors_are_caught(seed: int) -> None:
    rng = random.Random(seed)
    tax_id = make_steuer_id(rng)
    assert steuer_id_is_valid(tax_id)
    pos = rng.randrange(11)
    wrong = str((int(tax_id[pos]) + rng.randrange(1, 10)) % 10)
    assert not steuer_id_is_valid(tax_id[:pos] + wrong + tax_id[pos + 1 :])


def test_iban_known_examples() -> None:
    assert iban_is_valid("DE89370400440532013000")
    assert iban_is_valid("DE89 3704 0044 0532 0130 00")
    assert iban_is_valid("de89 3704 0044 0532 0130 00")
    assert iban_is_valid("GB82WEST12345698765432")
    assert not iban_is_valid("DE89370400440532013001")
    assert not iban_is_valid("DE8937040044053201300")  # 21 characters
    assert not iban_is_valid("DE88370400440532013000")
    assert not iban_is_valid("350,00 EUR")
    assert not iban_is_valid("")


@settings(max_examples=300, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32))
def test_make_iban_is_valid_and_single_digit_errors_are_caught(seed: int) -> None:
    rng = random.Random(seed)
    iban = make_iban(rng)
    assert len(iban) == 22 and iban.startswith("DE") and iban[2:].isdigit()
    assert iban_is_valid(iban)
    pos = rng.randrange(2, 22)
    wrong = str((int(iban[pos]) + rng.randrange(1, 10)) % 10)
    assert not iban_is_valid(iban[:pos] + wrong + iban[pos + 1 :])


# ---------------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------------


def test_districts_constant() -> None:
    assert len(DISTRICTS) == 26 == len(set(DISTRICTS))
    assert DISTRICTS[0] == "Mitte" and DISTRICTS[-1] == "Breckenheim"
    for name in ("Südost", "Amöneburg", "Heßloch", "Kastel", "Kostheim", "Rheingauviertel"):
        assert name in DISTRICTS


def test_schema_matches_catalog(con: duckdb.DuckDBPyConnection) -> None:
    catalog = yaml.safe_load((ROOT / "policies" / "catalog.yaml").read_text(encoding="utf-8"))
    for name, dataset in catalog["datasets"].items():
        described = [(r[0], r[1]) for r in _fetch(con, f"DESCRIBE {dataset['table']}")]
        expected = [(col, spec["type"]) for col, spec in dataset["columns"].items()]
        assert described == expected, name


def test_row_counts(demo_db: tuple[Path, dict[str, int]], con: duckdb.DuckDBPyConnection) -> None:
    _, counts = demo_db
    assert list(counts) == list(TABLES)
    for table in TABLES:
        assert _fetch(con, f"SELECT count(*) FROM {table}")[0][0] == counts[table]
    assert counts["einwohner"] == ROWS
    assert counts["stadtteile"] == 26
    assert counts["anliegen"] == ROWS // 10
    holders = _fetch(con, "SELECT count(DISTINCT einwohner_id) FROM sozialleistungen")[0][0]
    assert 0.05 * ROWS <= holders <= 0.11 * ROWS
    assert counts["sozialleistungen"] >= holders


def test_determinism_and_seed_sensitivity(tmp_path: Path, demo_db: tuple[Path, dict[str, int]]) -> None:
    again = tmp_path / "again.duckdb"
    other = tmp_path / "other.duckdb"
    assert generate_demo_database(again, rows=ROWS) == demo_db[1]
    generate_demo_database(other, rows=ROWS, seed=7)
    a = duckdb.connect(str(demo_db[0]), read_only=True)
    b = duckdb.connect(str(again), read_only=True)
    c = duckdb.connect(str(other), read_only=True)
    try:
        for table in TABLES:
            assert _table_rows(a, table) == _table_rows(b, table), table
        assert _table_rows(a, "einwohner") != _table_rows(c, "einwohner")
    finally:
        for x in (a, b, c):
            x.close()


def test_atomic_replace_leaves_no_temp_files(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "demo.duckdb"
    assert generate_demo_database(path, rows=300)["einwohner"] == 300
    assert generate_demo_database(path, rows=200)["einwohner"] == 200
    assert sorted(p.name for p in path.parent.iterdir()) == ["demo.duckdb"]
    c = duckdb.connect(str(path), read_only=True)
    try:
        assert _fetch(c, "SELECT count(*) FROM einwohner")[0][0] == 200
    finally:
        c.close()
    with pytest.raises(ValueError):
        generate_demo_database(tmp_path / "x.duckdb", rows=0)
    assert not (tmp_path / "x.duckdb").exists()


def test_checksums_and_uniqueness(con: duckdb.DuckDBPyConnection) -> None:
    tax_ids = [r[0] for r in _fetch(con, "SELECT steuer_id FROM einwohner")]
    assert len(tax_ids) == ROWS == len(set(tax_ids))
    assert all(steuer_id_is_valid(t) for t in tax_ids)
    ibans = _fetch(con, "SELECT einwohner_id, iban FROM sozialleistungen")
    assert all(iban_is_valid(i) and len(i) == 22 for _, i in ibans)
    # one account per person
    per_person: dict[int, set[str]] = {}
    for pid, iban in ibans:
        per_person.setdefault(pid, set()).add(iban)
    assert all(len(v) == 1 for v in per_person.values())
    # IBANs quoted in the free text are valid too
    quoted = 0
    for (text,) in _fetch(con, "SELECT bemerkung FROM sozialleistungen WHERE bemerkung LIKE '%DE%'"):
        for m in re.finditer(r"\bDE\d{2}(?: ?\d{4}){4} ?\d{2}\b", text):
            quoted += 1
            assert iban_is_valid(m.group(0)), m.group(0)
    assert quoted > 0


def test_referential_integrity(con: duckdb.DuckDBPyConnection) -> None:
    orphans = _fetch(
        con,
        "SELECT count(*) FROM sozialleistungen s LEFT JOIN einwohner e ON e.id = s.einwohner_id "
        "WHERE e.id IS NULL OR e.stadtteil <> s.stadtteil OR s.beginn < e.geburtsdatum",
    )
    assert orphans == [(0,)]
    bad_dates = con.execute(
        "SELECT count(*) FROM sozialleistungen WHERE ende < beginn OR beginn > ? OR ende > ?",
        [STICHTAG, STICHTAG],
    ).fetchall()
    assert bad_dates == [(0,)]
    ids = _fetch(con, "SELECT min(id), max(id), count(DISTINCT id) FROM einwohner")
    assert ids == [(1, ROWS, ROWS)]
    fall = _fetch(con, "SELECT count(*), count(DISTINCT fall_id) FROM sozialleistungen")[0]
    assert fall[0] == fall[1]
    tickets = _fetch(con, "SELECT count(*), count(DISTINCT ticket_id) FROM anliegen")[0]
    assert tickets[0] == tickets[1]
    # stadtteile.einwohner_gesamt is the real count
    mismatch = _fetch(
        con,
        "SELECT count(*) FROM stadtteile s "
        "LEFT JOIN (SELECT stadtteil, count(*) n FROM einwohner GROUP BY 1) e "
        "USING (stadtteil) WHERE coalesce(e.n, 0) <> s.einwohner_gesamt",
    )
    assert mismatch == [(0,)]
    for table in ("sozialleistungen", "anliegen"):
        unknown = _fetch(
            con, f"SELECT count(*) FROM {table} WHERE stadtteil NOT IN (SELECT stadtteil FROM stadtteile)"
        )
        assert unknown == [(0,)], table


def test_districts_and_sizes(con: duckdb.DuckDBPyConnection) -> None:
    rows = _fetch(
        con, "SELECT stadtteil, ortsbezirk_nr, flaeche_km2, einwohner_gesamt FROM stadtteile ORDER BY 2"
    )
    assert tuple(r[0] for r in rows) == DISTRICTS
    assert [r[1] for r in rows] == list(range(1, 27))
    assert 195 < sum(r[2] for r in rows) < 210  # Wiesbaden: ~204 km²
    sizes = {r[0]: r[3] for r in rows}
    assert all(n > 0 for n in sizes.values())
    for big in ("Mitte", "Biebrich", "Dotzheim", "Westend"):
        for tiny in ("Heßloch", "Kloppenheim", "Medenbach"):
            assert sizes[big] > 5 * sizes[tiny]
    assert max(sizes, key=lambda k: sizes[k]) == "Biebrich"


def test_small_groups_exist(con: duckdb.DuckDBPyConnection) -> None:
    groups = _fetch(
        con,
        "SELECT stadtteil, staatsangehoerigkeit, geschlecht, count(*) n FROM einwohner "
        "GROUP BY ALL HAVING n <= 2",
    )
    assert len(groups) >= 10
    nats = dict(_fetch(con, "SELECT staatsangehoerigkeit, count(*) FROM einwohner GROUP BY 1"))
    assert nats["deutsch"] > 0.7 * ROWS
    for n in ("türkisch", "polnisch", "italienisch", "syrisch"):
        assert n in nats
    sexes = dict(_fetch(con, "SELECT geschlecht, count(*) FROM einwohner GROUP BY 1"))
    assert set(sexes) <= {"m", "w", "d"}
    assert sexes["m"] + sexes["w"] > 0.99 * ROWS


def test_einwohner_values_are_plausible(con: duckdb.DuckDBPyConnection) -> None:
    rows = _fetch(
        con,
        "SELECT geburtsdatum, zuzug_am, plz, stadtteil, hausnummer, telefon, email, vorname, nachname, "
        "strasse FROM einwohner",
    )
    ages = []
    phones = 0
    for geb, zuzug, plz, stadtteil, hnr, tel, email, vorname, nachname, strasse in rows:
        age = (STICHTAG - geb).days / 365.2425
        ages.append(age)
        assert 0 <= age <= 101
        assert geb <= zuzug <= STICHTAG
        assert re.fullmatch(r"\d{5}", plz)
        if stadtteil == "Kastel":
            assert plz == "55252"
        elif stadtteil == "Kostheim":
            assert plz == "55246"
        else:
            assert 65183 <= int(plz) <= 65207
        assert re.fullmatch(r"[1-9]\d{0,2}[a-d]?", hnr)
        if tel is not None:
            phones += 1
            assert PHONE_RE.fullmatch(tel), tel
        if email is not None:
            assert re.fullmatch(r"[a-z0-9._-]+@[a-z0-9.-]+\.[a-z]{2,}", email), email
        assert vorname and nachname and strasse
    assert phones > 0.5 * ROWS
    assert min(ages) < 5 and max(ages) > 85
    assert 35 < sum(ages) / len(ages) < 50
    # streets are consistent with the district (same street -> same district, same postcode)
    clashes = _fetch(
        con,
        "SELECT strasse, stadtteil FROM einwohner GROUP BY 1, 2 HAVING count(DISTINCT plz) > 1",
    )
    assert clashes == []
    assert _fetch(con, "SELECT count(*) FROM einwohner WHERE stadtteil = 'Heßloch'")[0][0] > 0


def test_sozialleistungen_values(con: duckdb.DuckDBPyConnection) -> None:
    arten = dict(_fetch(con, "SELECT leistungsart, min(betrag_monat) FROM sozialleistungen GROUP BY 1"))
    assert set(arten) <= {
        "Bürgergeld",
        "Wohngeld",
        "Grundsicherung im Alter",
        "Hilfe zur Pflege",
        "Eingliederungshilfe",
        "Kinderzuschlag",
    }
    assert {"Bürgergeld", "Wohngeld", "Grundsicherung im Alter"} <= set(arten)
    assert all(v > 0 for v in arten.values())
    assert _fetch(
        con, "SELECT max(betrag_monat) < 10000, count(*) FILTER (ende IS NULL) > 0 FROM sozialleistungen"
    )[0] == (True, True)
    young_pensioners = _fetch(
        con,
        "SELECT count(*) FROM sozialleistungen s JOIN einwohner e ON e.id = s.einwohner_id "
        "WHERE s.leistungsart = 'Grundsicherung im Alter' AND e.geburtsdatum > DATE '1970-01-01'",
    )
    assert young_pensioners == [(0,)]


def test_bemerkung_contains_personal_data_often(con: duckdb.DuckDBPyConnection) -> None:
    texts = [r[0] for r in _fetch(con, "SELECT bemerkung FROM sozialleistungen WHERE bemerkung IS NOT NULL")]
    assert len(texts) > 100
    personal = [t for t in texts if _has_personal_data(t)]
    share = len(personal) / len(texts)
    assert 0.5 <= share <= 0.9, share
    clean = [t for t in texts if not _has_personal_data(t)]
    # the clean ones still contain look-alikes
    assert any(re.search(r"\d+,\d{2} EUR", t) for t in clean)
    assert any("§" in t for t in clean)
    joined = "\n".join(texts)
    for pattern in (
        r"geb\. \d{2}\.\d{2}\.\d{4}",
        r"Az\. 50\.\d-\d{4}/\d{4}",
        r"@",
        r"\b(Herr|Frau) ",
        r"DE\d{2}",
    ):
        assert re.search(pattern, joined), pattern
    # the case holder's own name shows up in a good share of the texts
    own = _fetch(
        con,
        "SELECT avg(CASE WHEN contains(s.bemerkung, e.nachname) THEN 1 ELSE 0 END) FROM sozialleistungen s "
        "JOIN einwohner e ON e.id = s.einwohner_id WHERE s.bemerkung IS NOT NULL",
    )[0][0]
    assert own > 0.2


def test_anliegen_values(con: duckdb.DuckDBPyConnection) -> None:
    rows = _fetch(con, "SELECT ticket_id, eingegangen_am, kategorie, stadtteil, text, status FROM anliegen")
    assert {r[2] for r in rows} <= {
        "Straßenschaden",
        "Müll",
        "Lärm",
        "Beleuchtung",
        "Grünpflege",
        "Parken",
        "Sonstiges",
    }
    assert {r[5] for r in rows} == {"offen", "in Bearbeitung", "erledigt"}
    assert all(date(2024, 1, 1) <= r[1].date() <= STICHTAG for r in rows)
    texts = [r[4] for r in rows]
    assert sum(1 for t in texts if KFZ_RE.search(t)) > 5
    assert sum(1 for t in texts if _has_personal_data(t)) > 0.2 * len(texts)
    assert sum(1 for t in texts if "@" in t) > 0
    # ticket ids follow arrival time
    ordered = sorted(rows, key=lambda r: r[0])
    assert [r[1] for r in ordered] == sorted(r[1] for r in ordered)


# ---------------------------------------------------------------------------------------------------
# Loading into PostgreSQL and MariaDB
# ---------------------------------------------------------------------------------------------------


@pytest.fixture()
def pg_database() -> Iterator[str]:
    name = f"gw_test_load_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN_DSN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture()
def mariadb_database() -> Iterator[str]:
    name = f"gw_test_load_{uuid.uuid4().hex[:12]}"
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
        yield name
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        conn.close()


def _assert_same_contents(
    expected: duckdb.DuckDBPyConnection, fetch: Any, counts: dict[str, int], demo_counts: dict[str, int]
) -> None:
    assert counts == demo_counts
    for table in TABLES:
        want = _table_rows(expected, table)
        got = [tuple(r) for r in fetch(f"SELECT * FROM {table} ORDER BY {PKS[table]}")]
        assert len(got) == len(want), table
        for g, w in zip(got, want, strict=True):
            assert g == w, (table, g, w)
            assert [type(x) for x in g] == [type(x) for x in w], table


@pytest.mark.postgres
def test_load_into_postgres(
    pg_database: str, demo_db: tuple[Path, dict[str, int]], con: duckdb.DuckDBPyConnection
) -> None:
    dsn = PG_DSN_TEMPLATE.format(db=pg_database)
    path, demo_counts = demo_db
    load_into(dsn, path)  # load twice: the second run must drop and recreate
    counts = load_into(dsn, path)
    with psycopg.connect(dsn) as pg:

        def fetch(sql: str) -> list[tuple[Any, ...]]:
            return pg.execute(sql).fetchall()

        _assert_same_contents(con, fetch, counts, demo_counts)
        types = dict(
            fetch(
                "SELECT table_name || '.' || column_name, "
                "CASE WHEN data_type = 'numeric' "
                "THEN format('numeric(%s,%s)', numeric_precision, numeric_scale) ELSE data_type END "
                "FROM information_schema.columns WHERE table_schema = 'public'"
            )
        )
        assert types["sozialleistungen.betrag_monat"] == "numeric(10,2)"
        assert types["anliegen.eingegangen_am"] == "timestamp without time zone"
        assert types["einwohner.geburtsdatum"] == "date"
        assert types["einwohner.id"] == "bigint"
        assert types["stadtteile.flaeche_km2"] == "double precision"
        assert types["stadtteile.ortsbezirk_nr"] == "integer"
        assert types["einwohner.vorname"] == "character varying"
        assert fetch("SELECT count(*) FROM einwohner WHERE stadtteil = 'Heßloch'")[0][0] > 0


@pytest.mark.postgres
def test_load_into_postgres_schema(
    pg_database: str, demo_db: tuple[Path, dict[str, int]], con: duckdb.DuckDBPyConnection
) -> None:
    dsn = PG_DSN_TEMPLATE.format(db=pg_database)
    counts = load_into(dsn, demo_db[0], schema="demo")
    with psycopg.connect(dsn) as pg:
        pg.execute("SET search_path TO demo")

        def fetch(sql: str) -> list[tuple[Any, ...]]:
            return pg.execute(sql).fetchall()

        _assert_same_contents(con, fetch, counts, demo_db[1])
        assert pg.execute("SELECT to_regclass('public.einwohner')").fetchone() == (None,)


@pytest.mark.mariadb
def test_load_into_mariadb(
    mariadb_database: str, demo_db: tuple[Path, dict[str, int]], con: duckdb.DuckDBPyConnection
) -> None:
    dsn = MARIADB_DSN_TEMPLATE.format(db=mariadb_database)
    path, demo_counts = demo_db
    load_into(dsn, path)
    counts = load_into(dsn, path)
    conn = pymysql.connect(
        host="127.0.0.1", port=3306, user="root", password="", database=mariadb_database, charset="utf8mb4"
    )
    try:
        with conn.cursor() as cur:

            def fetch(sql: str) -> list[tuple[Any, ...]]:
                cur.execute(sql)
                return list(cur.fetchall())

            _assert_same_contents(con, fetch, counts, demo_counts)
            cols = {
                f"{t}.{c}": (ct, coll)
                for t, c, ct, coll in fetch(
                    "SELECT table_name, column_name, column_type, collation_name "
                    f"FROM information_schema.columns WHERE table_schema = '{mariadb_database}'"
                )
            }
            assert cols["sozialleistungen.betrag_monat"][0] == "decimal(10,2)"
            assert cols["anliegen.eingegangen_am"][0].startswith("datetime")
            assert cols["einwohner.geburtsdatum"][0] == "date"
            assert cols["einwohner.id"][0].startswith("bigint")
            assert cols["stadtteile.flaeche_km2"][0] == "double"
            assert cols["sozialleistungen.bemerkung"][0] == "text"
            assert cols["einwohner.vorname"][1] == "utf8mb4_bin"
            assert fetch("SELECT count(*) FROM einwohner WHERE stadtteil = 'Heßloch'")[0][0] > 0
    finally:
        conn.close()


@pytest.mark.mariadb
def test_load_into_mariadb_schema_parameter(
    mariadb_database: str, demo_db: tuple[Path, dict[str, int]]
) -> None:
    # the DSN points at `test`, the schema parameter redirects to the fresh database
    counts = load_into(MARIADB_DSN_TEMPLATE.format(db="test"), demo_db[0], schema=mariadb_database)
    assert counts == demo_db[1]
    conn = pymysql.connect(host="127.0.0.1", port=3306, user="root", password="", database=mariadb_database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM einwohner")
            assert cur.fetchone() == (ROWS,)
    finally:
        conn.close()


def test_load_into_rejects_unknown_targets(demo_db: tuple[Path, dict[str, int]], tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_into("sqlite:///x.db", demo_db[0])
    with pytest.raises(FileNotFoundError):
        load_into("postgresql://postgres@127.0.0.1:5432/test", tmp_path / "missing.duckdb")
