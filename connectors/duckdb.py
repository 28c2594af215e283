"""DuckDB (the embedded default): read-only database files and declared Parquet/CSV files, no file or
network access from SQL.

Declared files are loaded at start into a private DuckDB file that is opened read-only and unlinked at
once (the open handle keeps it readable; once it is open, nothing stays on disk, even after a crash).
Views over ``read_parquet``/``read_csv`` cannot serve them: with external access off DuckDB refuses
every file read, views included, and its ``allowed_paths`` exception would also let SQL *write* those
files.
"""

from __future__ import annotations

import contextlib
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import duckdb
import pyarrow as pa

from connectors.base import ConnectorTimeout, ConnectorUnavailable, QueryRejected, QueryResult, StreamResult

#: settings fixed at connection time and locked, so no query can change them
_LOCKED_CONFIG = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
}
#: session settings applied once after connecting, before the configuration is locked
_SESSION_SETTINGS = ("SET enable_progress_bar = false", "SET lock_configuration = true")

_BATCH_ROWS = 65_536
#: the alias the declared files' database is attached under when the connector also has a database file
FILES_ALIAS = "gw_files"
#: ``read_csv`` parameters a declaration may set (DuckDB's names); anything else is refused
CSV_OPTIONS = frozenset({"header", "delim", "quote", "escape", "encoding", "dateformat", "timestampformat",
                         "decimal_separator", "nullstr", "types"})
#: DuckDB memory limit while the declared files are loaded (the load streams; a small limit suffices)
LOAD_MEMORY_LIMIT = "256MB"


class DeclaredFileError(ConnectorUnavailable):
    """A declared file is missing, unreadable or not what its declaration says (the message names the
    table and the file's name, never another file)."""


@dataclass(frozen=True)
class DeclaredFile:
    """A Parquet or CSV file the operator declared as table ``table`` (never a path from analyst SQL).

    ``options``: ``read_csv`` parameters (keys from ``CSV_OPTIONS``); Parquet files take none."""

    table: str
    path: Path
    format: Literal["parquet", "csv"]
    options: Mapping[str, object] = field(default_factory=dict)


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _reader(file: DeclaredFile) -> tuple[str, list[object]]:
    """``read_parquet(?)`` / ``read_csv(?, name := ?, …)``: the path and every option as parameters."""
    if file.format == "parquet":
        if file.options:
            raise DeclaredFileError(f"table {file.table}: Parquet files take no reading options")
        return "read_parquet(?)", [str(file.path)]
    unknown = sorted(set(file.options) - CSV_OPTIONS)
    if unknown:
        raise DeclaredFileError(f"table {file.table}: unknown CSV options {', '.join(unknown)}")
    names = sorted(file.options)
    arguments = "".join(f", {name} := ?" for name in names)
    return f"read_csv(?{arguments})", [str(file.path), *(file.options[name] for name in names)]


def _load_file(con: duckdb.DuckDBPyConnection, file: DeclaredFile, schema: str) -> None:
    if not file.path.is_file():
        raise DeclaredFileError(f"table {file.table}: the declared file {file.path.name} does not exist")
    reader, parameters = _reader(file)
    target = f"{_identifier(schema)}.{_identifier(file.table)}"
    try:
        con.execute(f"CREATE TABLE {target} AS SELECT * FROM {reader}", parameters)
    except duckdb.Error as exc:
        reason = str(exc).splitlines()[0]
        raise DeclaredFileError(
            f"table {file.table}: the declared file {file.path.name} cannot be read as {file.format} ({reason})",
            internal_detail=str(exc),
        ) from exc


def _build_files_database(files: Sequence[DeclaredFile], *, schema: str, work_dir: Path | None,
                          threads: int | None) -> Path:
    """Load the declared files into a new DuckDB file in a private directory (mode 0700); returns it."""
    names = [f.table.lower() for f in files]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DeclaredFileError(f"tables declared twice: {', '.join(duplicates)}")
    directory = Path(tempfile.mkdtemp(prefix=".gw-files-", dir=work_dir))
    target = directory / "files.duckdb"
    try:
        config: dict[str, object] = {"autoinstall_known_extensions": False, "autoload_known_extensions": False,
                                     "memory_limit": LOAD_MEMORY_LIMIT}
        if threads:
            config["threads"] = threads
        with duckdb.connect(str(target), config=config) as con:  # type: ignore[arg-type]
            con.execute("SET enable_progress_bar = false")
            if schema != "main":
                con.execute(f"CREATE SCHEMA {_identifier(schema)}")
            for file in files:
                _load_file(con, file, schema)
            con.execute("CHECKPOINT")
    except BaseException:
        _remove_files_database(target)
        raise
    return target


def _remove_files_database(target: Path) -> None:
    """Unlink the loaded copy and its private directory (an open read-only handle keeps reading it)."""
    for leftover in (target, target.with_name(target.name + ".wal")):
        with contextlib.suppress(FileNotFoundError):
            leftover.unlink()
    with contextlib.suppress(OSError):
        target.parent.rmdir()


class DuckDBConnector:
    dialect = "duckdb"

    def __init__(self, database: Path | None, *, threads: int | None = None, memory_limit: str | None = None,
                 attach: Mapping[str, Path] | None = None, files: Sequence[DeclaredFile] = (),
                 schema: str | None = None, work_dir: Path | None = None) -> None:
        """``database``: a DuckDB file, opened read-only; ``None`` when the connector serves only ``files``.
        ``attach``: further database files (alias -> file), attached read-only before file access is
        switched off and the configuration locked (the gateway's pseudonym replica).
        ``files``: Parquet/CSV files loaded at start into a private read-only copy (see the module doc), as
        tables in ``schema`` (default ``main``); the copy is built in ``work_dir`` (default: the system's
        temporary directory) and unlinked as soon as it is open."""
        if database is not None and not database.exists():
            raise ConnectorUnavailable(f"DuckDB database file {database.name} does not exist")
        self._search_path: str | None = None
        loaded = (_build_files_database(files, schema=schema or "main", work_dir=work_dir, threads=threads)
                  if files else None)
        try:
            main = database if database is not None else loaded
            if main is None:
                raise ConnectorUnavailable("a DuckDB connector needs a database file or declared files")
            extra = dict(attach or {})
            if main != loaded and loaded is not None:
                extra[FILES_ALIAS] = loaded
            self._open(main, extra, schema=schema or "main", tables=[f.table for f in files],
                       threads=threads, memory_limit=memory_limit)
        finally:
            if loaded is not None:
                _remove_files_database(loaded)
        self._local = threading.local()
        #: every thread's cursor, closed with the connector (an open cursor keeps the file's database
        #: instance, with its locked configuration, alive in this process)
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        self._cursors_lock = threading.Lock()

    def _open(self, main: Path, extra: Mapping[str, Path], *, schema: str, tables: Sequence[str],
              threads: int | None, memory_limit: str | None) -> None:
        config: dict[str, object] = dict(_LOCKED_CONFIG)
        if extra:
            config.pop("enable_external_access")  # switched off below, once the files are attached
        if threads:
            config["threads"] = threads
        if memory_limit:
            config["memory_limit"] = memory_limit
        try:
            self._conn = duckdb.connect(str(main), read_only=True, config=config)  # type: ignore[arg-type]
        except duckdb.Error as exc:
            raise ConnectorUnavailable("cannot open the DuckDB database", internal_detail=str(exc)) from exc
        try:
            for alias, path in extra.items():
                self._conn.execute(f"ATTACH '{_sql_text(str(path))}' AS {_identifier(alias)} (READ_ONLY)")
            if extra:
                self._conn.execute("SET enable_external_access = false")
            if FILES_ALIAS in extra:
                self._search_path = self._files_search_path(schema, tables)
            for statement in _SESSION_SETTINGS:
                self._conn.execute(statement)
        except (duckdb.Error, ConnectorUnavailable) as exc:
            self._conn.close()  # a half-configured session is never used (and would block a retry)
            if isinstance(exc, ConnectorUnavailable):
                raise
            raise ConnectorUnavailable("cannot open the DuckDB database", internal_detail=str(exc)) from exc

    def _files_search_path(self, schema: str, tables: Sequence[str]) -> str:
        """Database first, then the declared files: both resolve by name, as in one database. A declared
        table that the database also has is refused (it would be shadowed)."""
        row = self._conn.execute("SELECT current_database()").fetchone()
        database = str(row[0]) if row else "main"
        present = {str(r[0]) for r in self._conn.execute(
            "SELECT schema_name FROM information_schema.schemata WHERE catalog_name = ?", [database]).fetchall()}
        schemas = ["main"] + ([schema] if schema != "main" and schema in present else [])
        clashes = self._conn.execute(
            "SELECT DISTINCT table_name FROM information_schema.tables WHERE table_catalog = ? "
            "AND table_schema IN (SELECT unnest(?)) AND lower(table_name) IN (SELECT unnest(?)) ORDER BY 1",
            [database, schemas, [t.lower() for t in tables]]).fetchall()
        if clashes:
            names = ", ".join(str(r[0]) for r in clashes)
            raise DeclaredFileError(f"declared files name tables the database file already has: {names}")
        entries = [(database, s) for s in schemas] + [(FILES_ALIAS, schema)]
        return ",".join(f"{_identifier(c)}.{_identifier(s)}" for c, s in entries)

    def _new_cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = self._conn.cursor()
        if self._search_path is not None:  # a session setting: every cursor is a session of its own
            cursor.execute(f"SET search_path = '{_sql_text(self._search_path)}'")
        return cursor

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._new_cursor()
            self._local.cursor = cursor
            with self._cursors_lock:
                self._cursors.append(cursor)
        return cursor

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        cursor = self._cursor()
        timer = threading.Timer(timeout_s, cursor.interrupt)
        timer.start()
        try:
            reader: pa.RecordBatchReader = cursor.sql(sql).to_arrow_reader(_BATCH_ROWS)
            batches: list[pa.RecordBatch] = []
            rows = 0
            for batch in reader:
                batches.append(batch)
                rows += batch.num_rows
                if rows > max_rows:
                    break
            table = pa.Table.from_batches(batches, schema=reader.schema)
        except duckdb.InterruptException as exc:
            raise ConnectorTimeout(
                f"the query ran longer than {timeout_s:g} s", internal_detail=str(exc)
            ) from exc
        except duckdb.Error as exc:
            if not timer.is_alive():
                raise ConnectorTimeout(
                    f"the query ran longer than {timeout_s:g} s", internal_detail=str(exc)
                ) from exc
            raise QueryRejected("the database rejected the query", internal_detail=str(exc)) from exc
        finally:
            timer.cancel()
        truncated = table.num_rows > max_rows
        return QueryResult(table=table.slice(0, max_rows) if truncated else table, truncated=truncated)

    def stream(self, sql: str, *, max_rows: int, timeout_s: float) -> StreamResult:
        """Stream record batches; the first batch is fetched here so that errors surface before any
        data is handed on. A fresh cursor per stream: the consumer may iterate from another thread."""
        cursor = self._new_cursor()
        timer = threading.Timer(timeout_s, cursor.interrupt)
        timer.start()

        def fail(exc: duckdb.Error) -> Exception:
            if isinstance(exc, duckdb.InterruptException) or not timer.is_alive():
                return ConnectorTimeout(f"the query ran longer than {timeout_s:g} s", internal_detail=str(exc))
            return QueryRejected("the database rejected the query", internal_detail=str(exc))

        def finish() -> None:
            timer.cancel()
            cursor.close()

        try:
            reader: pa.RecordBatchReader = cursor.sql(sql).to_arrow_reader(_BATCH_ROWS)
            first = next(iter(reader), None)
        except duckdb.Error as exc:
            error = fail(exc)  # before finish(): a cancelled timer would look like a fired one
            finish()
            raise error from exc
        state = {"truncated": False}

        def batches() -> Iterator[pa.RecordBatch]:
            sent = 0
            try:
                pending = first
                iterator = iter(reader)
                while pending is not None:
                    room = max_rows - sent
                    if pending.num_rows > room:
                        state["truncated"] = True
                        if room > 0:
                            yield pending.slice(0, room)
                        return
                    sent += pending.num_rows
                    yield pending
                    try:
                        pending = next(iterator, None)
                    except duckdb.Error as exc:
                        raise fail(exc) from exc
            finally:
                finish()

        return StreamResult(schema=reader.schema, batches=batches(), state=state, closer=finish)

    def close(self) -> None:
        with self._cursors_lock:
            cursors, self._cursors = self._cursors, []
        for cursor in cursors:
            cursor.close()
        self._conn.close()
