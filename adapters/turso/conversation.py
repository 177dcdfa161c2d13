"""The ``turso`` conversation store (alias ``libsql``): libSQL / Turso through the ``libsql`` client.

libSQL is SQLite, so this store *is* :class:`~storebridge.adapters.sqlite.conversation.SQLiteConversationStore`
(same schema, same migrations recorded in ``<prefix>schema_versions``, same SQL and row helpers, imported
and not copied) running over libsql connections instead of sqlite3 ones. Only the connection layer is
new:

* :class:`_LibsqlConnection` / :class:`_LibsqlCursor` give the ``libsql`` client the slice of the sqlite3
  API the SQLite store uses, and translate its errors (libsql raises plain ``ValueError`` for every
  engine error, and a ``pyo3_runtime.PanicException`` -- a ``BaseException`` -- on a closed connection)
  into ``sqlite3.IntegrityError`` / ``sqlite3.OperationalError``, so the SQLite store's error mapping
  (``AlreadyExistsError``, ``StoreClosedError``, ...) applies unchanged.
* :class:`LibsqlConnections` mirrors ``SQLiteConnections``: a local file gets one connection per thread
  (WAL; libsql connections are not documented as thread-safe, so none is shared between threads without
  a lock) and every write transaction (``BEGIN IMMEDIATE ... COMMIT``) runs under one in-process writer
  lock per file; other processes are handled by ``busy_timeout``. ``:memory:``, remote databases
  (``libsql://<db>.turso.io``) and embedded replicas (``sync_url=``) use ONE connection behind that lock
  (a remote connection per thread would be a network session per thread; a replica file is synced by
  its one connection).

Where the database is:

* ``turso:///relative.db``, ``libsql:////absolute/x.db``, ``path=...``: a local file (tested here);
  ``libsql:///:memory:`` or ``path=":memory:"``: a private in-memory database.
* ``libsql://<db>-<org>.turso.io`` (or ``turso://...``) with ``auth_token=`` / ``?authToken=`` /
  ``$TURSO_AUTH_TOKEN``: a remote Turso database. Supported in code, NOT verified by the test suite here.
* ``path=`` (the local replica file) plus ``sync_url="libsql://..."``: an embedded replica, synced on
  open and every ``sync_interval`` seconds if given, and by :meth:`TursoConversationStore.sync`.
  Supported in code, NOT verified here.

``delete_session`` deletes the session's messages explicitly in the same transaction instead of relying
on ``ON DELETE CASCADE`` alone, because ``PRAGMA foreign_keys`` is per connection and not guaranteed on a
remote connection.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any

from storebridge.adapters.sqlite._connection import _writer_lock
from storebridge.adapters.sqlite.conversation import COMPONENT, MIGRATIONS, SQLiteConversationStore
from storebridge.conversation import AsyncConversationStore, ConversationCapabilities
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.identifiers import validate_table_prefix
from storebridge.migrations import SQLITE, Migration, migrate
from storebridge.models import validate_session_id
from storebridge.urls import mask_secrets, merge_url_option, parse_url

_SCHEMES = ("libsql", "turso")
_ENV_TOKEN = "TURSO_AUTH_TOKEN"


def _libsql() -> Any:
    try:
        import libsql
    except ImportError as exc:  # pragma: no cover - the registry checks find_spec first
        from storebridge.errors import BackendNotAvailableError

        raise BackendNotAvailableError('the turso store needs the libsql client: pip install "storebridge[turso]"') \
            from exc
    return libsql


def _is_panic(exc: BaseException) -> bool:
    return type(exc).__name__ == "PanicException"


def _has_lone_surrogate(params: Any) -> bool:
    values = params.values() if isinstance(params, dict) else (params or ())
    for value in values:
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
    return False


def _translate(exc: BaseException, params: Any = None) -> BaseException:
    """libsql's error as the sqlite3 exception the SQLite store expects."""
    message = str(exc)
    if "constraint failed" in message:
        return sqlite3.IntegrityError(message)
    if "Unsupported parameter type" in message and _has_lone_surrogate(params):
        return UnicodeEncodeError("utf-8", "", 0, 1, "surrogates not allowed")
    if _is_panic(exc):
        return sqlite3.ProgrammingError(f"libsql connection unusable (closed?): {message}")
    return sqlite3.OperationalError(message)


class _LibsqlCursor:
    __slots__ = ("_cursor",)

    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor

    def execute(self, sql: str, params: Any = ()) -> _LibsqlCursor:
        try:
            self._cursor.execute(sql, tuple(params) if isinstance(params, list) else params)
        except Exception as exc:
            raise _translate(exc, params) from exc
        except BaseException as exc:
            if _is_panic(exc):
                raise _translate(exc) from exc
            raise
        return self

    def executemany(self, sql: str, seq: Sequence[Any]) -> _LibsqlCursor:
        try:
            self._cursor.executemany(sql, [tuple(p) for p in seq])
        except Exception as exc:
            raise _translate(exc, next((p for p in seq if _has_lone_surrogate(p)), None)) from exc
        except BaseException as exc:
            if _is_panic(exc):
                raise _translate(exc) from exc
            raise
        return self

    def fetchone(self) -> Any:
        try:
            return self._cursor.fetchone()
        except Exception as exc:
            raise _translate(exc) from exc

    def fetchall(self) -> list[Any]:
        try:
            rows = self._cursor.fetchall()
        except Exception as exc:
            raise _translate(exc) from exc
        return [] if rows is None else list(rows)

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def close(self) -> None:
        with suppress(Exception):  # closing a cursor of a closed connection
            self._cursor.close()


class _LibsqlConnection:
    """The part of ``sqlite3.Connection`` the SQLite store and the migration runner use."""

    __slots__ = ("raw",)

    def __init__(self, raw: Any) -> None:
        self.raw = raw

    def cursor(self) -> _LibsqlCursor:
        try:
            return _LibsqlCursor(self.raw.cursor())
        except BaseException as exc:
            if isinstance(exc, Exception) or _is_panic(exc):
                raise _translate(exc) from exc
            raise

    def execute(self, sql: str, params: Any = ()) -> _LibsqlCursor:
        return self.cursor().execute(sql, params)

    def executemany(self, sql: str, seq: Sequence[Any]) -> _LibsqlCursor:
        return self.cursor().executemany(sql, seq)

    @property
    def in_transaction(self) -> bool:
        try:
            return bool(self.raw.in_transaction)
        except BaseException:  # noqa: BLE001 - a closed connection (panics in libsql 0.1)
            return False

    def close(self) -> None:
        with suppress(BaseException):  # closing twice panics (PanicException) in libsql 0.1
            self.raw.close()


class LibsqlConnections:
    """libsql connections to one database, all closed by :meth:`close` (same interface as
    ``SQLiteConnections``: ``read()``, ``write()``, ``migrate()``, ``closed``, ``close()``)."""

    def __init__(self, database: str, *, remote: bool = False, auth_token: str | None = None,
                 sync_url: str | None = None, sync_interval: float | None = None,
                 encryption_key: str | None = None, durable: bool = True, timeout: float = 30.0,
                 display: str | None = None) -> None:
        self.database = database
        self.display = display or database
        self.remote = remote
        self.auth_token = auth_token
        self.sync_url = sync_url
        self.sync_interval = sync_interval
        self.encryption_key = encryption_key
        self.durable = durable
        self.timeout = timeout
        self.memory = not remote and (database == ":memory:" or database.startswith("file::memory:"))
        #: One connection behind the lock (memory, remote, replica) instead of one per thread.
        self.shared = self.memory or remote or sync_url is not None
        if not self.memory and not remote:
            directory = os.path.dirname(os.path.abspath(database))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise ConnectionFailedError(f"cannot create the directory for libSQL database {database!r}: {exc}") \
                    from exc
        if self.memory or remote:
            key = f"libsql:{id(self)}"
        else:
            # The same key as SQLiteConnections for this file: a sqlite and a turso store on one file share
            # the writer lock.
            key = os.path.realpath(database)
        self._write_lock = _writer_lock(key)
        self._local = threading.local()
        self._all: list[tuple[threading.Thread, _LibsqlConnection]] = []
        self._guard = threading.Lock()
        self._shared: _LibsqlConnection | None = None
        self._closed = False

    def _open(self) -> _LibsqlConnection:
        libsql = _libsql()
        kwargs: dict[str, Any] = {"isolation_level": None, "timeout": self.timeout}
        if self.auth_token:
            kwargs["auth_token"] = self.auth_token
        if self.sync_url is not None:
            kwargs["sync_url"] = self.sync_url
            if self.sync_interval is not None:
                kwargs["sync_interval"] = self.sync_interval
        if self.encryption_key is not None:
            kwargs["encryption_key"] = self.encryption_key
        try:
            raw = libsql.connect(self.database, **kwargs)
        except Exception as exc:  # noqa: BLE001 - libsql raises ValueError, libsql.Error or transport errors
            raise ConnectionFailedError(
                f"cannot open libSQL database {self.display!r}: {mask_secrets(exc, self.auth_token)}"
            ) from None
        conn = _LibsqlConnection(raw)
        try:
            if self.sync_url is not None:
                raw.sync()
            if not self.remote:
                conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}").fetchall()
                if not self.memory:
                    conn.execute("PRAGMA journal_mode = WAL").fetchall()
                conn.execute(f"PRAGMA synchronous = {'FULL' if self.durable else 'NORMAL'}").fetchall()
            conn.execute("PRAGMA foreign_keys = ON").fetchall()
        except Exception as exc:  # noqa: BLE001 - sqlite3 errors from the wrapper, or sync() errors
            conn.close()
            raise ConnectionFailedError(
                f"cannot set up libSQL database {self.display!r}: {mask_secrets(exc, self.auth_token)}"
            ) from None
        owner = threading.current_thread()
        with self._guard:
            alive = []
            for thread, old in self._all:
                if thread.is_alive() or old is conn:
                    alive.append((thread, old))
                else:
                    old.close()
            alive.append((owner, conn))
            self._all = alive
        return conn

    def connection(self) -> _LibsqlConnection:
        """This thread's connection (or the shared one; hold the writer lock to use it)."""
        if self._closed:
            raise StoreClosedError(f"the turso store on {self.display!r} is closed")
        if self.shared:
            if self._shared is None:
                with self._write_lock:
                    if self._shared is None:
                        self._shared = self._open()
            return self._shared
        conn: _LibsqlConnection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    @contextmanager
    def read(self) -> Iterator[_LibsqlConnection]:
        if self.shared:
            with self._write_lock:
                yield self.connection()
        else:
            yield self.connection()

    @contextmanager
    def write(self) -> Iterator[_LibsqlConnection]:
        """A write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back if the block raises."""
        with self._write_lock:
            conn = self.connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    try:
                        conn.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the original error is the one to raise
                raise

    def migrate(self, component: str, migrations: Sequence[Migration], *, prefix: str = "") -> int:
        with self._write_lock:
            return migrate(self.connection(), component, migrations, prefix=prefix, dialect=SQLITE)

    def sync(self) -> None:
        """Pull the primary's changes into an embedded replica (a no-op for other databases)."""
        if self.sync_url is None:
            return
        with self._write_lock:
            self.connection().raw.sync()

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


def resolve_database(url: str | None, path: str | os.PathLike[str] | None) -> tuple[str, bool, dict[str, str]]:
    """``(database, remote, url query)`` from ``url`` / ``path``. A URL with a host is a remote database
    (``turso://`` is rewritten to ``libsql://``, which the client understands)."""
    if path is not None and url is not None:
        raise ConfigurationError("give either url or path, not both")
    if url is None:
        if path is None:
            raise ConfigurationError("the turso store needs a URL (libsql://..., turso:///file.db) or path=")
        return os.fspath(path), False, {}
    parsed = parse_url(url)
    if parsed.scheme not in _SCHEMES:
        raise ConfigurationError(f"not a libSQL/Turso URL: {parsed}; use libsql://<db>.turso.io or turso:///file.db")
    if parsed.host:
        transport = parsed.driver or "libsql"
        if transport not in ("libsql", "https", "http", "ws", "wss"):
            raise ConfigurationError(f"unknown libSQL transport {transport!r} in {parsed}")
        netloc = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
        return f"{transport}://{netloc}{parsed.path}", True, dict(parsed.query)
    return parsed.file_path or ":memory:", False, dict(parsed.query)


class TursoConversationStore(SQLiteConversationStore):
    """Conversation store on libSQL: a local file, a remote Turso database or an embedded replica.

    The same schema and SQL as the ``sqlite`` store (a local file written by one is readable by the
    other). Thread-safe: local files use a connection per thread and one writer lock per file; remote
    databases and replicas one connection behind a lock.
    """

    backend_name = "turso"
    migrations: tuple[Migration, ...] = MIGRATIONS

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 auth_token: str | None = None, sync_url: str | None = None, sync_interval: float | None = None,
                 encryption_key: str | None = None, table_prefix: str = "sb_", durable: bool = True,
                 timeout: float = 30.0) -> None:
        self.table_prefix = validate_table_prefix(table_prefix)
        database, remote, query = resolve_database(url, path)
        from_url = query.get("authToken") or query.get("auth_token") or query.get("token")
        token = merge_url_option("auth_token", auth_token, from_url)
        if token is None and (remote or sync_url is not None):
            token = os.environ.get(_ENV_TOKEN) or None
        if sync_url is not None and remote:
            raise ConfigurationError("an embedded replica needs a local path (path= or turso:///file.db) plus "
                                     "sync_url=; the URL given is remote")
        self.path = database
        self.remote = remote
        self._conns = LibsqlConnections(  # type: ignore[assignment]
            database, remote=remote, auth_token=token, sync_url=sync_url, sync_interval=sync_interval,
            encryption_key=encryption_key, durable=durable, timeout=timeout,
        )
        memory = self._conns.memory
        self.capabilities = ConversationCapabilities(persistent=not memory, multi_process=not memory)
        try:
            self._conns.migrate(COMPONENT, self.migrations, prefix=self.table_prefix)
        except BaseException:
            self._conns.close()
            raise
        self._build_sql()
        self._sql_delete_session_messages = f"DELETE FROM {self.table_prefix}messages WHERE session_id = ?"

    def __repr__(self) -> str:
        return f"TursoConversationStore(database={self.path!r}, table_prefix={self.table_prefix!r})"

    def _failed(self, exc: BaseException, action: str) -> StorebridgeError:
        if self._conns.closed:
            return StoreClosedError(f"the turso store on {self.path!r} is closed")
        if isinstance(exc, UnicodeEncodeError):
            return ValidationError(f"text must be valid Unicode (no lone surrogates): {exc}")
        return OperationFailedError(
            f"libSQL {action} on {self.path!r} failed: {mask_secrets(exc, self._conns.auth_token)}"
        )

    def delete_session(self, session_id: str) -> bool:
        validate_session_id(session_id)
        try:
            with self._conns.write() as conn:
                conn.execute(self._sql_delete_session_messages, (session_id,))
                deleted = conn.execute(self._sql_delete_session, (session_id,)).rowcount
        except (sqlite3.Error, UnicodeEncodeError) as exc:
            raise self._failed(exc, "delete_session") from exc
        return deleted > 0

    def sync(self) -> None:
        """Embedded replica: pull the primary's latest changes now (a no-op otherwise)."""
        try:
            self._conns.sync()
        except Exception as exc:
            raise self._failed(exc, "sync") from exc


def async_turso_store(url: str | None = None, **kwargs: Any) -> AsyncConversationStore:
    """The async face of :class:`TursoConversationStore` (libsql's Python client is sync-only)."""
    return TursoConversationStore(url, **kwargs).as_async()


__all__ = ["LibsqlConnections", "TursoConversationStore", "async_turso_store", "resolve_database"]
