"""The connector contract: SQL in, Arrow out, read-only, bounded in rows and time."""

from __future__ import annotations

import contextlib
import re
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

import pyarrow as pa

#: ``scheme://userinfo@``: everything between ``//`` and the last ``@`` of a run without whitespace, so a
#: password with an unencoded ``/``, ``:`` or ``@`` is covered as well
_URL_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.\-]*://)[^\s]*@")
#: ``password=...`` (also ``sslpassword=``, ``PGPASSWORD=``, ``MYSQL_PWD=``) in libpq key/value form, a URL
#: query or an environment listing: a quoted value or up to a separator
_PASSWORD_PAIR = re.compile(
    r"(?P<key>\b\w*(?:password|passwd|pwd)\s*=\s*)(?:'(?:[^'\\]|\\.)*'?|\"[^\"]*\"?|[^\s&;,]*)",
    re.IGNORECASE,
)


def scrub_credentials(text: str) -> str:
    """``text`` without the credentials of any DSN in it, for logs and ``internal_detail``.

    ``postgresql://gw:secret@db/x`` becomes ``postgresql://***@db/x`` and ``password=secret`` becomes
    ``password=***``. A connector scrubs the password it knows as well; this catches DSN-looking text
    whose password it cannot know (a DSN that did not parse, another connector's DSN).
    """
    text = _URL_USERINFO.sub(lambda m: f"{m.group('scheme')}***@", text)
    return _PASSWORD_PAIR.sub(lambda m: f"{m.group('key')}***", text)


class ConnectorError(Exception):
    """Base class. ``internal_detail`` may contain the database's own text: never show it to callers."""

    def __init__(self, message: str, *, internal_detail: str = "") -> None:
        super().__init__(message)
        self.internal_detail = internal_detail


class QueryRejected(ConnectorError):
    """The database refused the statement (type error, cast error, ...)."""


class ConnectorUnavailable(ConnectorError):
    """The database cannot be reached."""


class ConnectorTimeout(ConnectorError):
    """The statement ran longer than allowed and was cancelled."""


@dataclass(frozen=True)
class QueryResult:
    table: pa.Table
    truncated: bool


@dataclass
class StreamResult:
    """Batches as they come from the database; at most ``max_rows`` rows in all.

    ``truncated`` is known only once the iterator is exhausted. Iterating maps database errors to
    the ConnectorError classes above; ``close()`` releases the session early.
    """

    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    state: dict[str, bool] = field(default_factory=lambda: {"truncated": False})
    closer: Callable[[], None] | None = None

    @property
    def truncated(self) -> bool:
        return self.state["truncated"]

    def close(self) -> None:
        if self.closer is not None:
            self.closer()


class Watchdog:
    """A one-shot timer that stops a running statement, and never after ``disarm()`` has returned.

    A cancel (PostgreSQL's cancel request, MySQL's ``KILL QUERY``) names a session, not a statement: one
    that lands after the session went back to the pool stops the next caller's query. ``disarm()`` waits
    for an action in progress and says whether one ran; a session it ran on must be closed, not pooled.
    ``action`` returns whether it actually sent a cancel.
    """

    def __init__(self, delay_s: float, action: Callable[[], bool]) -> None:
        self._action = action
        self._lock = threading.Lock()
        self._armed = True
        self._fired = False
        self._timer = threading.Timer(max(delay_s, 0.001), self.fire_now)
        self._timer.daemon = True

    def start(self) -> None:
        self._timer.start()

    @property
    def fired(self) -> bool:
        return self._fired

    def fire_now(self) -> None:
        """Run the action now (from the timer, or to stop a statement another thread waits on)."""
        with self._lock:
            if not self._armed:
                return
            sent = False
            with contextlib.suppress(Exception):
                sent = self._action()
            self._fired = self._fired or sent

    def disarm(self) -> bool:
        """Stop the timer, wait for an action in progress; True if a cancel was ever sent."""
        self._timer.cancel()
        with self._lock:
            self._armed = False
            return self._fired


def bounded_stream(
    first: pa.RecordBatch,
    more: bool,
    fetch_next: Callable[[int], tuple[pa.RecordBatch, bool]],
    *,
    max_rows: int,
    batch_rows: int,
    release: Callable[[], None],
    on_truncate: Callable[[], None] | None = None,
) -> StreamResult:
    """A StreamResult over a database cursor (shared by the PostgreSQL and MariaDB connectors).

    ``first`` is the batch fetched before streaming starts (so statement errors surface early) and
    ``more`` whether the cursor may hold more rows; ``fetch_next(n)`` returns the next batch of at most
    ``n`` rows and the same flag. At most ``max_rows`` rows are yielded; ``truncated`` is set if the
    cursor had more, and ``on_truncate`` then runs (e.g. to read the end of the result so the session
    stays clean). ``release`` returns the session: when the batches run out, on ``close()``, or when
    an unread iterator is garbage-collected.
    """
    schema = first.schema
    pending = [first]
    del first
    state = {"truncated": False}

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            sent = 0
            batch: pa.RecordBatch | None = pending.pop()  # not kept alive by this closure
            has_more = more
            while batch is not None and batch.num_rows:
                room = max_rows - sent
                if batch.num_rows > room:
                    state["truncated"] = True
                    if room > 0:
                        yield batch.slice(0, room)
                    if on_truncate is not None:
                        on_truncate()
                    return
                sent += batch.num_rows
                yield batch
                batch = None
                if not has_more:
                    return
                batch, has_more = fetch_next(min(batch_rows, max_rows + 1 - sent))
        finally:
            release()

    iterator = batches()
    # batches dropped unread (e.g. after an error before the consumer started) must not keep the
    # session: a started generator releases it in its finally, an unstarted one here
    weakref.finalize(iterator, release).atexit = False
    return StreamResult(schema=schema, batches=iterator, state=state, closer=release)


def stream_from_result(result: QueryResult, batch_rows: int = 65_536) -> StreamResult:
    """A StreamResult over a fully fetched result (for connectors that do not stream natively)."""
    state = {"truncated": result.truncated}
    return StreamResult(schema=result.table.schema,
                        batches=iter(result.table.to_batches(max_chunksize=batch_rows)), state=state)


class Connector(Protocol):
    #: the sqlglot dialect the connector's SQL must be written in
    dialect: str

    def execute(self, sql: str, *, max_rows: int, timeout_s: float) -> QueryResult:
        """Run one read-only query; return at most ``max_rows`` rows (``truncated`` if there were more)."""
        ...

    def close(self) -> None: ...
