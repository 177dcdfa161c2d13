"""SQLite connections shared by the three embedded stores.

A file database gets one connection per thread (WAL lets readers run beside the writer) and one
in-process writer lock per file, so threads queue on a cheap lock instead of SQLite's busy-retry
sleeps; other processes are still handled by ``busy_timeout``. ``:memory:`` databases use a single
connection behind that lock, since each connection would otherwise see its own empty database.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from storebridge.errors import ConfigurationError, ConnectionFailedError, StoreClosedError
from storebridge.migrations import SQLITE, Migration, migrate
from storebridge.urls import parse_url

DEFAULT_FILENAME = "storebridge.db"
_ENV_PATH = "STOREBRIDGE_DB"

_writer_locks: weakref.WeakValueDictionary[str, threading.RLock] = weakref.WeakValueDictionary()
_writer_locks_guard = threading.Lock()


def default_path() -> str:
    """The zero-config database file: ``$STOREBRIDGE_DB`` if set, else ``./.storebridge/storebridge.db``."""
    return os.environ.get(_ENV_PATH) or str(Path(".storebridge") / DEFAULT_FILENAME)


def resolve_path(url: str | None, path: str | os.PathLike[str] | None) -> str:
    """The database file from ``path``, a ``sqlite:///...`` URL, or the default."""
    if path is not None and url is not None:
        raise ConfigurationError("give either url or path, not both")
    if path is not None:
        return os.fspath(path)
    if url is None:
        return default_path()
    parsed = parse_url(url)
    if parsed.scheme not in ("sqlite", "file"):
        raise ConfigurationError(f"not a SQLite URL: {parsed}; use sqlite:///relative.db or sqlite:////absolute.db")
    return parsed.file_path or ":memory:"


def _writer_lock(key: str) -> threading.RLock:
    with _writer_locks_guard:
        lock = _writer_locks.get(key)
        if lock is None:
            lock = threading.RLock()
            _writer_locks[key] = lock
        return lock


class SQLiteConnections:
    """Per-thread connections to one SQLite database, all closed by :meth:`close`."""

    def __init__(self, path: str, *, durable: bool = True, timeout: float = 30.0) -> None:
        self.path = path
        self.memory = path == ":memory:" or path.startswith("file::memory:")
        self.durable = durable
        self.timeout = timeout
        if not self.memory:
            directory = os.path.dirname(os.path.abspath(path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise ConnectionFailedError(f"cannot create the directory for SQLite database {path!r}: {exc}") from exc
        key = f"memory:{id(self)}" if self.memory else os.path.realpath(path)
        self._write_lock = _writer_lock(key)
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._guard = threading.Lock()
        self._shared: sqlite3.Connection | None = None
        self._closed = False

    def _open(self) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as exc:
            raise ConnectionFailedError(f"cannot open SQLite database {self.path!r}: {exc}") from exc
        conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        if not self.memory:
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}")
        conn.execute("PRAGMA foreign_keys = ON")
        owner = threading.current_thread()
        with self._guard:
            # Connections of threads that have ended are unreachable: close them now rather than at
            # close(), so apps that start a thread per request do not pile up file handles.
            alive = []
            for thread, old in self._all:
                if thread.is_alive():
                    alive.append((thread, old))
                else:
                    old.close()
            alive.append((owner, conn))
            self._all = alive
        return conn

    def connection(self) -> sqlite3.Connection:
        """This thread's connection (or the shared one for ``:memory:``; hold :meth:`lock` to use it)."""
        if self._closed:
            raise StoreClosedError(f"the SQLite store on {self.path!r} is closed")
        if self.memory:
            if self._shared is None:
                with self._write_lock:
                    if self._shared is None:
                        self._shared = self._open()
            return self._shared
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    @contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A connection for reads (serialised only for ``:memory:``)."""
        if self.memory:
            with self._write_lock:
                yield self.connection()
        else:
            yield self.connection()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back if the block raises."""
        with self._write_lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                # SQLite may already have rolled back by itself (SQLITE_FULL, IOERR, BUSY): only roll back
                # an open transaction, so the original error is the one raised.
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def migrate(self, component: str, migrations: Sequence[Migration], *, prefix: str = "") -> int:
        """Run ``component``'s migrations under the writer lock (see :mod:`storebridge.migrations`)."""
        with self._write_lock:
            return migrate(self.connection(), component, migrations, prefix=prefix, dialect=SQLITE)

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        with self._write_lock:
            self._closed = True
            with self._guard:
                conns, self._all = self._all, []
                self._shared = None
            for _, conn in conns:
                conn.close()
            self._local = threading.local()


__all__ = ["SQLiteConnections", "default_path", "resolve_path"]
