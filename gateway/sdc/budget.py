"""The privacy-budget ledger: epsilon spent per user and dataset, persisted in SQLite.

Epsilon is stored in micro-units (integers), so that repeated charges add up exactly. A charge is atomic
(``BEGIN IMMEDIATE``): two concurrent queries cannot both spend the last share. Every charge is also kept
as a row of ``sdc_budget_charges`` for the DPO.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

MICRO = 1_000_000


class BudgetExhausted(Exception):
    def __init__(self, spent: float, budget: float, epsilon: float) -> None:
        super().__init__(f"spent {spent:g} of {budget:g}; this query needs {epsilon:g}")
        self.spent = spent
        self.budget = budget
        self.epsilon = epsilon


def _micro(value: float) -> int:
    return round(value * MICRO)


class BudgetLedger:
    """``path=None`` keeps the ledger in memory (tests, or an audit store that is not SQLite)."""

    def __init__(self, path: Path | str | None) -> None:
        self.path = str(path) if path is not None else ":memory:"
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS sdc_budget (subject TEXT NOT NULL, dataset TEXT NOT NULL, "
            "spent_micro INTEGER NOT NULL, PRIMARY KEY (subject, dataset))"
        )
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS sdc_budget_charges (at REAL NOT NULL, subject TEXT NOT NULL, "
            "dataset TEXT NOT NULL, epsilon_micro INTEGER NOT NULL, request_id TEXT)"
        )

    def spent(self, subject: str, dataset: str) -> float:
        with self._lock:
            row = self._conn.execute(
                "SELECT spent_micro FROM sdc_budget WHERE subject = ? AND dataset = ?", (subject, dataset)
            ).fetchone()
        return (int(row[0]) if row else 0) / MICRO

    def charge(
        self, subject: str, dataset: str, epsilon: float, budget: float, *, request_id: str | None = None
    ) -> float:
        """Spend ``epsilon`` or raise :class:`BudgetExhausted`; return what is left afterwards."""
        cost, limit = _micro(epsilon), _micro(budget)
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute(
                    "SELECT spent_micro FROM sdc_budget WHERE subject = ? AND dataset = ?", (subject, dataset)
                ).fetchone()
                spent = int(row[0]) if row else 0
                if spent + cost > limit:
                    raise BudgetExhausted(spent / MICRO, budget, epsilon)
                self._conn.execute(
                    "INSERT INTO sdc_budget (subject, dataset, spent_micro) VALUES (?, ?, ?) "
                    "ON CONFLICT (subject, dataset) DO UPDATE SET spent_micro = excluded.spent_micro",
                    (subject, dataset, spent + cost),
                )
                self._conn.execute(
                    "INSERT INTO sdc_budget_charges VALUES (?, ?, ?, ?, ?)",
                    (time.time(), subject, dataset, cost, request_id),
                )
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return (limit - spent - cost) / MICRO

    def close(self) -> None:
        with self._lock:
            self._conn.close()
