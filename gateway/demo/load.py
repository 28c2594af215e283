"""Copy the demo tables from the DuckDB file into PostgreSQL or MariaDB/MySQL.

`load_into("postgresql://postgres@127.0.0.1:5432/test", Path("demo.duckdb"))` drops and recreates the
four tables (`stadtteile`, `einwohner`, `sozialleistungen`, `anliegen`) with the same types and contents:

* PostgreSQL: psycopg 3, `COPY ... FROM STDIN`, everything in one transaction (readers see either the
  old or the new tables); types VARCHAR, BIGINT, INTEGER, DOUBLE PRECISION, NUMERIC(p,s), DATE, TIMESTAMP.
* MariaDB/MySQL (`mysql://user:pass@host:port/db`): pymysql `executemany` in batches (pymysql folds them
  into multi-row INSERTs); utf8mb4 with the binary collation `utf8mb4_bin` so that comparisons, GROUP BY
  and ORDER BY behave like DuckDB's; TIMESTAMP becomes DATETIME(6) (MariaDB's TIMESTAMP is time-zone
  converted and limited to 1970-2038), VARCHAR becomes VARCHAR(255) or TEXT depending on the data.

Each table gets a primary key on its natural key column (id, fall_id, ticket_id, stadtteil).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import duckdb

__all__ = ["TABLES", "load_into"]

#: The tables copied, in load order.
TABLES: tuple[str, ...] = ("stadtteile", "einwohner", "sozialleistungen", "anliegen")
_PRIMARY_KEYS: dict[str, str] = {
    "stadtteile": "stadtteil",
    "einwohner": "id",
    "sozialleistungen": "fall_id",
    "anliegen": "ticket_id",
}
# Free-text columns are TEXT in MariaDB whatever their current longest value.
_LONG_TEXT: frozenset[tuple[str, str]] = frozenset({("sozialleistungen", "bemerkung"), ("anliegen", "text")})
_BATCH_ROWS = 5_000
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_DECIMAL_RE = re.compile(r"DECIMAL\((\d+),\s*(\d+)\)")

_PG_TYPES: dict[str, str] = {
    "BIGINT": "BIGINT",
    "INTEGER": "INTEGER",
    "SMALLINT": "SMALLINT",
    "DOUBLE": "DOUBLE PRECISION",
    "FLOAT": "REAL",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "TIMESTAMP",
    "TIMESTAMP WITH TIME ZONE": "TIMESTAMPTZ",
    "VARCHAR": "VARCHAR",
}
_MYSQL_TYPES: dict[str, str] = {
    "BIGINT": "BIGINT",
    "INTEGER": "INT",
    "SMALLINT": "SMALLINT",
    "DOUBLE": "DOUBLE",
    "FLOAT": "FLOAT",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIMESTAMP": "DATETIME(6)",
}


@dataclass(frozen=True)
class _Column:
    name: str
    duck_type: str  # as DuckDB reports it, e.g. "DECIMAL(10,2)"
    max_chars: int  # longest value for VARCHAR columns, else 0


def _ident(name: str) -> str:
    if not _IDENT_RE.fullmatch(name):
        raise ValueError(f"unsupported identifier: {name!r}")
    return name


def _columns(con: duckdb.DuckDBPyConnection, table: str) -> list[_Column]:
    rows = con.execute(
        "SELECT column_name, data_type FROM information_schema.columns "
        "WHERE table_name = ? AND table_schema = 'main' ORDER BY ordinal_position",
        [table],
    ).fetchall()
    if not rows:
        raise ValueError(f"table {table!r} not found in the DuckDB source")
    cols: list[_Column] = []
    for name, dtype in rows:
        max_chars = 0
        if str(dtype).upper() == "VARCHAR":
            found = con.execute(f'SELECT max(length("{_ident(name)}")) FROM "{table}"').fetchone()
            max_chars = int(found[0] or 0) if found else 0
        cols.append(_Column(_ident(str(name)), str(dtype).upper(), max_chars))
    return cols


def _rows(con: duckdb.DuckDBPyConnection, table: str) -> Iterator[list[tuple[Any, ...]]]:
    cur = con.execute(f'SELECT * FROM "{table}"')
    while True:
        batch = cur.fetchmany(_BATCH_ROWS)
        if not batch:
            return
        yield batch


def _pg_type(col: _Column) -> str:
    m = _DECIMAL_RE.fullmatch(col.duck_type)
    if m:
        return f"NUMERIC({m.group(1)},{m.group(2)})"
    try:
        return _PG_TYPES[col.duck_type]
    except KeyError:
        raise ValueError(f"no PostgreSQL type for {col.name} {col.duck_type}") from None


def _mysql_type(table: str, col: _Column) -> str:
    m = _DECIMAL_RE.fullmatch(col.duck_type)
    if m:
        return f"DECIMAL({m.group(1)},{m.group(2)})"
    if col.duck_type == "VARCHAR":
        if col.max_chars <= 255 and (table, col.name) not in _LONG_TEXT:
            return "VARCHAR(255)"
        return "TEXT" if col.max_chars <= 16_000 else "MEDIUMTEXT"
    try:
        return _MYSQL_TYPES[col.duck_type]
    except KeyError:
        raise ValueError(f"no MariaDB type for {col.name} {col.duck_type}") from None


def _load_postgres(dsn: str, src: duckdb.DuckDBPyConnection, schema: str | None) -> dict[str, int]:
    import psycopg
    from psycopg import sql

    if dsn.startswith("postgresql+psycopg://"):
        dsn = "postgresql://" + dsn.removeprefix("postgresql+psycopg://")
    counts: dict[str, int] = {}
    with psycopg.connect(dsn) as conn, conn.cursor() as cur:
        if schema is not None:
            cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(_ident(schema))))
        for table in TABLES:
            cols = _columns(src, table)
            target = sql.Identifier(schema, table) if schema is not None else sql.Identifier(table)
            col_defs = sql.SQL(", ").join(
                sql.SQL("{} {}").format(sql.Identifier(c.name), sql.SQL(_pg_type(c))) for c in cols
            )
            col_names = sql.SQL(", ").join(sql.Identifier(c.name) for c in cols)
            cur.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(target))
            cur.execute(sql.SQL("CREATE TABLE {} ({})").format(target, col_defs))
            written = 0
            with cur.copy(sql.SQL("COPY {} ({}) FROM STDIN").format(target, col_names)) as copy:
                for batch in _rows(src, table):
                    for row in batch:
                        copy.write_row(row)
                    written += len(batch)
            pk = _PRIMARY_KEYS.get(table)
            if pk is not None and any(c.name == pk for c in cols):
                cur.execute(sql.SQL("ALTER TABLE {} ADD PRIMARY KEY ({})").format(target, sql.Identifier(pk)))
            cur.execute(sql.SQL("ANALYZE {}").format(target))
            cur.execute(sql.SQL("SELECT count(*) FROM {}").format(target))
            found = cur.fetchone()
            if found is None or found[0] != written:
                raise RuntimeError(f"{table}: wrote {written} rows but the target holds {found}")
            counts[table] = written
        conn.commit()
    return counts


@dataclass(frozen=True)
class _MySQLTarget:
    host: str
    port: int
    user: str
    password: str
    database: str


def _parse_mysql_dsn(dsn: str) -> _MySQLTarget:
    parts = urlsplit(dsn)
    if parts.scheme not in ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"):
        raise ValueError("not a MySQL/MariaDB DSN: it must start with mysql:// or mariadb://")
    database = unquote(parts.path.lstrip("/"))
    return _MySQLTarget(
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 3306,
        user=unquote(parts.username or "root"),
        password=unquote(parts.password or ""),
        database=database,
    )


def _load_mysql(dsn: str, src: duckdb.DuckDBPyConnection, schema: str | None) -> dict[str, int]:
    import pymysql

    target = _parse_mysql_dsn(dsn)
    database = schema if schema is not None else target.database
    if not database:
        raise ValueError("the MySQL/MariaDB DSN names no database and no schema was given")
    _ident(database)
    conn = pymysql.connect(
        host=target.host,
        port=target.port,
        user=target.user,
        password=target.password,
        charset="utf8mb4",
        autocommit=False,
    )
    counts: dict[str, int] = {}
    try:
        with conn.cursor() as cur:
            if schema is not None:
                cur.execute(
                    f"CREATE DATABASE IF NOT EXISTS `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin"
                )
            cur.execute(f"USE `{database}`")
            cur.execute("SET SESSION foreign_key_checks = 0, unique_checks = 0")
            for table in TABLES:
                cols = _columns(src, table)
                pk = _PRIMARY_KEYS.get(table)
                defs = [
                    f"`{c.name}` {_mysql_type(table, c)}" + (" NOT NULL" if c.name == pk else "")
                    for c in cols
                ]
                if pk is not None and any(c.name == pk for c in cols):
                    defs.append(f"PRIMARY KEY (`{pk}`)")
                cur.execute(f"DROP TABLE IF EXISTS `{table}`")
                cur.execute(
                    f"CREATE TABLE `{table}` ({', '.join(defs)}) "
                    "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
                )
                insert = (
                    f"INSERT INTO `{table}` ({', '.join(f'`{c.name}`' for c in cols)}) "
                    f"VALUES ({', '.join(['%s'] * len(cols))})"
                )
                written = 0
                for batch in _rows(src, table):
                    cur.executemany(insert, batch)
                    written += len(batch)
                conn.commit()
                cur.execute(f"SELECT COUNT(*) FROM `{table}`")
                found = cur.fetchone()
                if found is None or found[0] != written:
                    raise RuntimeError(f"{table}: wrote {written} rows but the target holds {found}")
                counts[table] = written
    finally:
        conn.close()
    return counts


def load_into(target_dsn: str, source: Path, *, schema: str | None = None) -> dict[str, int]:
    """Copy the four demo tables from the DuckDB file `source` into the database at `target_dsn`.

    Existing tables of the same names are dropped. `schema` is a PostgreSQL schema (created if
    missing) or, for MariaDB/MySQL, the database to use instead of the DSN's (created if missing).
    Returns the number of rows copied per table.
    """
    source = Path(source)
    if not source.is_file():
        raise FileNotFoundError(source)
    scheme = urlsplit(target_dsn).scheme.lower()
    src = duckdb.connect(str(source), read_only=True)
    try:
        if scheme in ("postgresql", "postgres", "postgresql+psycopg"):
            return _load_postgres(target_dsn, src, schema)
        if scheme in ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql"):
            return _load_mysql(target_dsn, src, schema)
        raise ValueError(f"unsupported target database {scheme!r}: use a postgresql:// or mysql:// DSN")
    finally:
        src.close()


def _main(argv: Sequence[str] | None = None) -> int:  # pragma: no cover - convenience entry point
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Load the demo DuckDB file into PostgreSQL or MariaDB.")
    parser.add_argument("dsn")
    parser.add_argument("source", type=Path)
    parser.add_argument("--schema")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    counts = load_into(args.dsn, args.source, schema=args.schema)
    print(counts, f"{time.perf_counter() - t0:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(_main())
