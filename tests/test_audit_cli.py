"""`gateway audit prune` keeps the remaining chain verifiable; `gateway audit verify` agrees."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gateway.audit import AuditEvent, load_or_create_keys, open_store
from gateway.cli.main import main


def test_prune_then_verify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = load_or_create_keys(tmp_path / "keys")
    store = open_store(f"sqlite:///{tmp_path / 'audit.sqlite'}", keys.signing_key, checkpoint_every=5)
    old = datetime.now(UTC) - timedelta(days=400)
    for index in range(12):
        when = old if index < 7 else datetime.now(UTC)
        store.append(AuditEvent(time=when, request_id=f"r{index}", event="query", decision="allow"))
    store.close()
    cutoff = (datetime.now(UTC) - timedelta(days=30)).date().isoformat()
    assert main(["audit", "prune", "--before", cutoff, "--data-dir", str(tmp_path)]) == 0
    assert "pruned 7 records" in capsys.readouterr().out
    assert main(["audit", "verify", "--data-dir", str(tmp_path)]) == 0
    assert "audit chain OK" in capsys.readouterr().out
