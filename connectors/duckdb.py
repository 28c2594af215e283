"""DuckDB (the embedded default): a read-only database file, no file or network access from SQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

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


def _sql_text(text: str) -> str:
    return text.replace("'", "''")


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBConnector:
    dialect = "duckdb"

    def __init__(self, database: Path, *, threads: int | None = None,
                 attach: Mapping[str, Path] | None = None) -> None:
        """``attach``: further database files (alias -> file), attached read-only before file access is
        switched off and the configuration locked (the gateway's pseudonym replica)."""
        if not database.exists():
            raise ConnectorUnavailable(f"DuckDB database file {database.name} does not exist")
        config: dict[str, object] = dict(_LOCKED_CONFIG)
        if attach:
            config.pop("enable_external_access")  # switched off below, once the files are attached
        if threads:
            config["threads"] = threads
        try:
            self._conn = duckdb.connect(str(database), read_only=True, config=config)  # type: ignore[arg-type]
        except duckdb.Error as exc:
            raise ConnectorUnavailable("cannot open the DuckDB database", internal_detail=str(exc)) from exc
        try:
            for alias, path in (attach or {}).items():
                self._conn.execute(f"ATTACH '{_sql_text(str(path))}' AS {_identifier(alias)} (READ_ONLY)")
            if attach:
                self._conn.execute("SET enable_external_access = false")
            for statement in _SESSION_SETTINGS:
                self._conn.execute(statement)
        except duckdb.Error as exc:
            self._conn.close()  # a half-configured session is never used (and would block a retry)
            raise ConnectorUnavailable("cannot open the DuckDB database", internal_detail=str(exc)) from exc
        self._local = threading.local()

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        cursor = getattr(self._local, "cursor", None)
        if cursor is None:
            cursor = self._conn.cursor()
            self._local.cursor = cursor
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
        cursor = self._conn.cursor()
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
        self._conn.close()
