"""Defence in depth: even SQL that got past the rewriter cannot read files, write, or change settings."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from connectors.base import ConnectorTimeout, QueryRejected
from connectors.duckdb import DuckDBConnector


@pytest.fixture(scope="module")
def connector(demo_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> DuckDBConnector:
    """A copy of the demo file: DuckDB allows one configuration per file and process, and the session's
    gateway runtime may already hold the original."""
    copy = tmp_path_factory.mktemp("duckdb-connector") / "demo.duckdb"
    shutil.copyfile(demo_dir / "demo.duckdb", copy)
    return DuckDBConnector(copy)


@pytest.mark.parametrize("sql", [
    "SELECT * FROM read_csv('/etc/passwd')",
    "SELECT * FROM '/etc/passwd'",
    "SET enable_external_access = true",
    "SET lock_configuration = false",
    "COPY einwohner TO '/tmp/gateway-leak.csv'",
    "CREATE TABLE x AS SELECT 1",
    "INSTALL httpfs",
    "ATTACH '/tmp/gateway-other.duckdb' AS other",
])
def test_refused_by_the_engine(connector: DuckDBConnector, sql: str) -> None:
    with pytest.raises(QueryRejected) as caught:
        connector.execute(sql, max_rows=10, timeout_s=5)
    assert "passwd" not in str(caught.value)
    assert not Path("/tmp/gateway-leak.csv").exists()


def test_timeout_interrupts(connector: DuckDBConnector) -> None:
    sql = "SELECT count(*) FROM range(100000000000) a"
    with pytest.raises(ConnectorTimeout):
        connector.execute(sql, max_rows=10, timeout_s=0.5)


def test_row_limit_and_truncation(connector: DuckDBConnector) -> None:
    result = connector.execute("SELECT id FROM einwohner", max_rows=100, timeout_s=5)
    assert result.table.num_rows == 100 and result.truncated
    stream = connector.stream("SELECT id FROM einwohner", max_rows=4999, timeout_s=5)
    assert sum(b.num_rows for b in stream.batches) == 4999 and stream.truncated


def test_stream_error_is_a_rejection_not_a_timeout(connector: DuckDBConnector) -> None:
    """A statement the engine refuses while streaming starts is QueryRejected (it once came out as a
    timeout, because the cancelled watchdog looked like a fired one)."""
    with pytest.raises(QueryRejected):
        connector.stream("SELECT CAST(vorname AS INTEGER) FROM einwohner", max_rows=10, timeout_s=30)
