"""One SQLite file used the way the store needs it: a writer connection
behind a lock, a query-only reader with a lock of its own, and transactions
that either commit before the call returns or roll back entirely.

In WAL mode a reader never waits for the writer, so a read on the event loop is
never stuck behind an fsync. ``batch()`` makes every write a thread makes inside
it one transaction (one fsync), which ``writer.GroupWriter`` uses to commit the
loop's writes in groups. Every sqlite3 error becomes a StoreError naming the
file and what was being done. The schema and its queries are ``store.py``'s.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

from .errors import StoreError

__all__ = ["BUSY_TIMEOUT_MS", "Database", "connect"]

# WAL readers never block the writer; a second writer or a WAL recovery may.
BUSY_TIMEOUT_MS = 5000


class Database:
    """A writer and a reader connection to one file (the reader may be None: a
    read-only store reads through its one connection)."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        path: Path,
        readonly: bool,
        reader: sqlite3.Connection | None = None,
    ) -> None:
        self._conn: sqlite3.Connection | None = conn
        # Reentrant: a write inside batch() takes it again on the same thread.
        self._lock = threading.RLock()
        # "isolated" or "plain" inside batch(); set only by the thread holding _lock
        self._batching: str | None = None
        # Reads: their own connection and lock (the writer's, for a read-only store).
        self._reader: sqlite3.Connection | None = reader
        self._read_lock = threading.Lock() if reader is not None else self._lock
        self.path = path
        self.readonly = readonly
        # Told the seconds each committed write took (metrics: store write latency).
        self.on_write: Callable[[float], None] | None = None

    @classmethod
    def open_file(
        cls, path: Path, *, readonly: bool, check: Callable[[sqlite3.Connection, Path, bool], None]
    ) -> Self:
        """Connect to ``path`` (SQLite's read-only mode if ``readonly``), and let
        ``check`` vet (or migrate) the file before any query is made; its error
        closes what was opened."""
        if readonly:
            target, uri = path.resolve().as_uri() + "?mode=ro", True
        else:
            target, uri = str(path), False
        conn = connect(target, uri, path)
        reader = None
        try:
            check(conn, path, readonly)
            if not readonly:
                reader = connect(target, uri, path)
                reader.execute("PRAGMA query_only = ON")
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, readonly, reader)

    def close(self) -> None:
        with self._lock, self._read_lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
            if self._reader is not None:
                self._reader.close()
                self._reader = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"{self.path}: the store is closed")
        return self._conn

    def _read(
        self, sql: str, params: tuple[Any, ...] | dict[str, Any] = ()
    ) -> list[tuple[Any, ...]]:
        with self._read_lock:
            conn = self._reader if self._reader is not None else self._connection()
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise StoreError(f"{self.path}: read failed: {exc}") from exc

    @contextmanager
    def batch(self, *, isolated: bool = True) -> Iterator[None]:
        """One transaction for every write this thread makes in the block: it
        commits (one fsync) when the block ends, or rolls back if the block
        raises. ``isolated``: a write that fails inside undoes only itself (a
        savepoint per write), and raises as usual; the others still commit.
        Without it, writes cost two statements less each, and a write that
        fails may leave part of itself in the transaction: the caller must
        then let the block raise, so that all of it rolls back."""
        with self._lock:
            conn = self._writable("write")
            if self._batching:
                raise RuntimeError("Store.batch() does not nest")
            with self._transaction(conn, "commit"):
                self._batching = "isolated" if isolated else "plain"
                try:
                    yield
                finally:
                    self._batching = None  # before the COMMIT, whatever happens

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed before the caller returns (inside
        batch(), a part of the batch's transaction)."""
        with self._lock:
            conn = self._writable(what)
            if self._batching == "isolated":
                with self._savepoint(conn, what):
                    yield conn
            elif self._batching == "plain":
                try:
                    yield conn
                except sqlite3.Error as exc:
                    raise StoreError(f"{self.path}: cannot {what}: {exc}") from exc
            else:
                with self._transaction(conn, what):
                    yield conn

    def _writable(self, what: str) -> sqlite3.Connection:
        conn = self._connection()
        if self.readonly:
            raise StoreError(f"{self.path}: cannot {what}: the store is open read-only")
        return conn

    @contextmanager
    def _transaction(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        """BEGIN IMMEDIATE ... COMMIT, rolled back if the block raises. IMMEDIATE
        takes the write lock first, so the checks made inside hold until COMMIT."""
        started = time.perf_counter()
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot {what}: {exc}") from exc
            raise
        if self.on_write is not None:
            self.on_write(time.perf_counter() - started)

    @contextmanager
    def _savepoint(self, conn: sqlite3.Connection, what: str) -> Iterator[None]:
        """One write inside batch(): undone alone if it fails."""
        conn.execute("SAVEPOINT one_write")
        try:
            yield
        except BaseException as exc:
            conn.execute("ROLLBACK TO one_write")
            conn.execute("RELEASE one_write")
            if isinstance(exc, sqlite3.Error):
                raise StoreError(f"{self.path}: cannot {what}: {exc}") from exc
            raise
        conn.execute("RELEASE one_write")


def connect(target: str, uri: bool, path: Path) -> sqlite3.Connection:
    try:
        return sqlite3.connect(
            target,
            uri=uri,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )
    except sqlite3.Error as exc:
        raise StoreError(f"{path}: cannot open the lease store: {exc}") from exc
