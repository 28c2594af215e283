"""`gateway demo load --target <dsn>`: the reference scenario copied into PostgreSQL and MariaDB.

The command runs as the operator runs it (a subprocess of ``python -m gateway.cli.main``) against the
servers on this machine, into a schema (PostgreSQL) or database (MariaDB) of its own that is dropped
afterwards. Marked ``postgres`` / ``mariadb``: without the servers these tests fail, not skip.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pymysql
import pytest

from gateway.demo.data import generate_demo_database
from gateway.demo.load import TABLES

PG_DSN = "postgresql://postgres@127.0.0.1:5432/test"
MARIA_DSN = "mysql://root@127.0.0.1:3306/test"
MARIA: dict[str, Any] = {"host": "127.0.0.1", "port": 3306, "user": "root", "password": ""}
ROWS = 400


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("demo-cli")
    generate_demo_database(path / "demo.duckdb", rows=ROWS)
    return path


def _source_counts(data_dir: Path) -> dict[str, int]:
    with duckdb.connect(str(data_dir / "demo.duckdb"), read_only=True) as con:
        counts = {}
        for table in TABLES:
            row = con.execute(f'SELECT count(*) FROM "{table}"').fetchone()
            assert row is not None
            counts[table] = int(row[0])
    return counts


def _gateway(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli.main", *args], capture_output=True, text=True,
                          timeout=300, check=False)


def _pg_counts(schema: str) -> dict[str, int]:
    with psycopg.connect(PG_DSN) as conn:
        counts = {}
        for table in TABLES:
            row = conn.execute(f'SELECT count(*) FROM "{schema}"."{table}"').fetchone()
            assert row is not None
            counts[table] = int(row[0])
        return counts


def _maria_counts(database: str) -> dict[str, int]:
    conn = pymysql.connect(**MARIA, database=database)
    try:
        counts = {}
        with conn.cursor() as cur:
            for table in TABLES:
                cur.execute(f"SELECT COUNT(*) FROM `{table}`")
                row = cur.fetchone()
                assert row is not None
                counts[table] = int(row[0])
        return counts
    finally:
        conn.close()


@pytest.fixture
def pg_schema() -> Iterator[str]:
    name = f"gw_cli_{secrets.token_hex(4)}"
    yield name
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def maria_database() -> Iterator[str]:
    name = f"gw_cli_{secrets.token_hex(4)}"
    yield name
    conn = pymysql.connect(**MARIA, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
    finally:
        conn.close()


@pytest.mark.parametrize(("target", "name_fixture", "counts"), [
    pytest.param(PG_DSN, "pg_schema", _pg_counts, marks=pytest.mark.postgres, id="postgres"),
    pytest.param(MARIA_DSN, "maria_database", _maria_counts, marks=pytest.mark.mariadb, id="mariadb"),
])
def test_demo_load_copies_every_table(target: str, name_fixture: str, counts: Callable[[str], dict[str, int]],
                                      data_dir: Path, request: pytest.FixtureRequest) -> None:
    name = request.getfixturevalue(name_fixture)
    result = _gateway("demo", "load", "--target", target, "--schema", name, "--data-dir", str(data_dir))
    assert result.returncode == 0, result.stderr[-2000:]
    expected = _source_counts(data_dir)
    assert expected["einwohner"] == ROWS
    assert result.stdout.strip() == "loaded " + ", ".join(f"{t}: {n:,}" for t, n in expected.items())
    assert counts(name) == expected
    # a second run replaces the tables (drop and recreate), it does not append
    again = _gateway("demo", "load", "--target", target, "--schema", name, "--data-dir", str(data_dir))
    assert again.returncode == 0, again.stderr[-2000:]
    assert counts(name) == expected


def test_demo_load_without_the_demo_file_says_what_to_do(tmp_path: Path) -> None:
    result = _gateway("demo", "load", "--target", PG_DSN, "--data-dir", str(tmp_path))
    assert result.returncode == 2
    assert "demo.duckdb is missing: run `gateway demo` once to generate it" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_load_refuses_an_unknown_target(data_dir: Path) -> None:
    result = _gateway("demo", "load", "--target", "sqlite:///x.db", "--data-dir", str(data_dir))
    assert result.returncode == 2
    assert result.stderr.startswith("gateway: unsupported target database")
    assert "sqlite" in result.stderr and "Traceback" not in result.stderr
