"""The SQLite state store: keys to values with TTL in one table, shared with other namespaces and stores.

SQLite has no native expiry, so a TTL is stored as an absolute wall-clock ``expires_at`` (comparable
across processes) and every read filters on it; expired rows are only garbage, purged now and then
on writes. ``increment`` runs read-modify-write inside one ``BEGIN IMMEDIATE`` transaction, which
SQLite serialises across threads and processes alike.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from storebridge.errors import (
    ConfigurationError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.identifiers import validate_table_prefix
from storebridge.migrations import Migration
from storebridge.state import (
    StateCapabilities,
    StateStore,
    check_amount,
    check_key,
    check_keys,
    check_namespace,
    check_ttl,
    decode_value,
    encode_value,
    incremented,
    key_matches,
    scan_prefix,
)
from storebridge.urls import parse_url

from ._connection import SQLiteConnections, resolve_path

COMPONENT = "state"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "create the state table and its expiry index",
        (
            (
                "CREATE TABLE IF NOT EXISTS {prefix}state ("
                "namespace TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL, expires_at REAL NULL, "
                "PRIMARY KEY (namespace, key)) WITHOUT ROWID"
            ),
            # Partial: only rows with a TTL can ever be purged, so keys without one cost nothing here.
            (
                "CREATE INDEX IF NOT EXISTS {prefix}state_expires_at ON {prefix}state (expires_at) "
                "WHERE expires_at IS NOT NULL"
            ),
        ),
    ),
)

#: Keys per ``IN (...)`` statement, well under SQLite's oldest default limit of 999 bound variables.
_CHUNK = 500
_URL_OPTIONS = frozenset({"namespace"})


def _text(value: Any, what: str) -> str:
    """A str that SQLite can store: UTF-8 encodable (Python strings may hold lone surrogates)."""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be a string, got {value!r}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {value!r} is not valid Unicode: it has a lone surrogate") from None
    return value


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start:start + _CHUNK]


def _placeholders(count: int) -> str:
    return ", ".join("?" * count)


def _successor(prefix: str) -> str | None:
    """The smallest string greater than every string starting with ``prefix`` (None: no upper bound).

    SQLite compares TEXT with memcmp on UTF-8, which orders like Python's code-point comparison, so
    ``prefix <= key < successor`` is exactly ``key.startswith(prefix)`` and can use the primary key.
    """
    chars = list(prefix)
    while chars:
        code = ord(chars.pop()) + 1
        if code == 0xD800:  # skip the surrogates, which cannot be encoded
            code = 0xE000
        if code <= 0x10FFFF:
            return "".join(chars) + chr(code)
    return None


class SQLiteStateStore(StateStore):
    """Key-value state with TTL in a SQLite file (or ``:memory:``), one namespace per store object."""

    backend_name = "sqlite"
    capabilities = StateCapabilities(persistent=True, native_ttl=False, atomic_increment=True)
    #: Seconds between opportunistic purges of expired rows (run inside a write transaction).
    purge_interval: float = 60.0

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 namespace: str = "", table_prefix: str = "sb_", durable: bool = True) -> None:
        if url is not None:
            namespace = self._namespace_from_url(url, namespace)
        try:
            db_path = resolve_path(url, path)
        except StorebridgeError:
            raise
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        self.namespace = check_namespace(namespace)
        self.table_prefix = validate_table_prefix(table_prefix)
        self._table = f"{self.table_prefix}state"
        self._conns = SQLiteConnections(db_path, durable=durable)
        self.path = self._conns.path
        self.capabilities = StateCapabilities(persistent=not self._conns.memory, native_ttl=False,
                                              atomic_increment=True)
        self._last_purge = float("-inf")
        try:
            with self._errors():
                self._conns.migrate(COMPONENT, MIGRATIONS, prefix=self.table_prefix)
        except BaseException:
            self._conns.close()
            raise

    @staticmethod
    def _namespace_from_url(url: str, namespace: str) -> str:
        query = parse_url(url).query
        unknown = sorted(set(query) - _URL_OPTIONS)
        if unknown:
            raise ConfigurationError(
                f"unknown SQLite state store URL option(s) {unknown}; accepted: {sorted(_URL_OPTIONS)}"
            )
        from_url = query.get("namespace")
        if from_url is None:
            return namespace
        if namespace and namespace != from_url:
            raise ConfigurationError(
                f"namespace given twice with different values: {namespace!r} and {from_url!r} in the URL"
            )
        return from_url

    def __repr__(self) -> str:
        return (f"SQLiteStateStore(path={self.path!r}, namespace={self.namespace!r}, "
                f"table_prefix={self.table_prefix!r})")

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """Turn driver errors into storebridge's typed errors (the driver's stays as ``__cause__``)."""
        try:
            yield
        except sqlite3.Error as exc:
            if self._conns.closed:  # another thread closed the store under this call
                raise self._closed_error() from exc
            raise OperationFailedError(f"SQLite state operation on {self.path!r} failed: {exc}") from exc

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        with self._errors(), self._conns.read() as conn:
            yield conn

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """A write transaction that also purges expired rows when the purge interval has passed."""
        purge_due = time.monotonic() - self._last_purge >= self.purge_interval
        with self._errors(), self._conns.write() as conn:
            if purge_due:
                self._purge(conn)
            yield conn
        if purge_due:  # only once the purge was committed with the write
            self._last_purge = time.monotonic()

    def _closed_error(self) -> StoreClosedError:
        return StoreClosedError(f"the SQLite state store on {self.path!r} is closed; open a new one")

    def _check_open(self) -> None:
        """For calls that may not touch the database (empty batches) but must still refuse a closed store."""
        if self._conns.closed:
            raise self._closed_error()

    def _purge(self, conn: sqlite3.Connection) -> int:
        # Global: an expired row is garbage whichever namespace it is in; unexpired rows are never touched.
        cursor = conn.execute(
            f"DELETE FROM {self._table} WHERE expires_at IS NOT NULL AND expires_at <= ?", (time.time(),)
        )
        return cursor.rowcount

    def purge_expired(self) -> int:
        """Delete every expired row in the table now (all namespaces); returns how many.
        Never needed for correctness (reads skip expired keys); it only reclaims space."""
        with self._errors(), self._conns.write() as conn:
            removed = self._purge(conn)
        self._last_purge = time.monotonic()
        return removed

    # The live-row condition; the first bound parameter is the namespace, the second ``time.time()``.
    _LIVE = "namespace = ? AND (expires_at IS NULL OR expires_at > ?)"

    def _select_live(self, conn: sqlite3.Connection, columns: str,
                     keys: Sequence[str]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = []
        now = time.time()
        for chunk in _chunks(keys):
            rows += conn.execute(
                f"SELECT {columns} FROM {self._table} "
                f"WHERE {self._LIVE} AND key IN ({_placeholders(len(chunk))})",
                (self.namespace, now, *chunk),
            ).fetchall()
        return rows

    def _delete_live(self, conn: sqlite3.Connection, keys: Sequence[str]) -> int:
        """Delete keys, counting only the live ones (an expired leftover is the purge's business)."""
        removed = 0
        now = time.time()
        for chunk in _chunks(keys):
            removed += conn.execute(
                f"DELETE FROM {self._table} WHERE {self._LIVE} AND key IN ({_placeholders(len(chunk))})",
                (self.namespace, now, *chunk),
            ).rowcount
        return removed

    @staticmethod
    def _expires_at(ttl: float | None) -> float | None:
        ttl = check_ttl(ttl)
        return None if ttl is None else time.time() + ttl

    def _upsert(self, conn: sqlite3.Connection, rows: Iterable[tuple[str, bytes, float | None]]) -> None:
        conn.executemany(
            f"INSERT OR REPLACE INTO {self._table} (namespace, key, value, expires_at) VALUES (?, ?, ?, ?)",
            ((self.namespace, key, value, expires_at) for key, value, expires_at in rows),
        )

    # -- the interface --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        rows = self.get_many([key])
        return rows[key] if rows else default

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self.set_many({key: value}, ttl=ttl)

    def delete(self, key: str) -> bool:
        return self.delete_many([key]) > 0

    def exists(self, key: str) -> bool:
        keys = [check_key(key)]
        with self._read() as conn:
            return bool(self._select_live(conn, "1", keys))

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = check_keys(keys)
        with self._read() as conn:  # refuses a closed store even for an empty list
            rows = dict(self._select_live(conn, "key, value", wanted))
        return {key: decode_value(rows[key]) for key in wanted if key in rows}

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        expires_at = self._expires_at(ttl)
        # Validate and encode everything first, so a bad item means nothing was written.
        rows = [(check_key(key), encode_value(value), expires_at) for key, value in items.items()]
        self._check_open()
        if rows:
            with self._write() as conn:
                self._upsert(conn, rows)

    def delete_many(self, keys: Iterable[str]) -> int:
        doomed = check_keys(keys)
        self._check_open()
        if not doomed:
            return 0
        with self._write() as conn:
            return self._delete_live(conn, doomed)

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        if pattern is not None:
            _text(pattern, "key pattern")
        if prefix is not None:
            _text(prefix, "key prefix")
        # Narrow in SQL by the longest prefix every match must have; the glob is then checked with the
        # one shared definition, key_matches, so this store cannot disagree with the others.
        sql_prefix = scan_prefix(pattern, prefix)
        sql = f"SELECT key FROM {self._table} WHERE {self._LIVE}"
        params: list[Any] = [self.namespace, time.time()]
        if sql_prefix:
            sql += " AND key >= ?"
            params.append(sql_prefix)
            upper = _successor(sql_prefix)
            if upper is not None:
                sql += " AND key < ?"
                params.append(upper)
        with self._read() as conn:
            found = [row[0] for row in conn.execute(sql + " ORDER BY key", params)]
        return [key for key in found if key_matches(key, pattern, prefix)]

    def ttl(self, key: str) -> float | None:
        keys = [check_key(key)]
        with self._read() as conn:
            rows = self._select_live(conn, "expires_at", keys)
        if not rows or rows[0][0] is None:
            return None
        return max(0.0, rows[0][0] - time.time())

    def expire(self, key: str, ttl: float | None) -> bool:
        key = check_key(key)
        expires_at = self._expires_at(ttl)
        with self._write() as conn:
            cursor = conn.execute(
                f"UPDATE {self._table} SET expires_at = ? WHERE {self._LIVE} AND key = ?",
                (expires_at, self.namespace, time.time(), key),
            )
            return cursor.rowcount > 0

    def increment(self, key: str, amount: int | float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        with self._write() as conn:  # BEGIN IMMEDIATE: no other thread or process writes in between
            rows = self._select_live(conn, "value, expires_at", [key])
            current, expires_at = (decode_value(rows[0][0]), rows[0][1]) if rows else (0, None)
            result = incremented(key, current, amount)  # a refusal rolls the transaction back
            self._upsert(conn, [(key, encode_value(result), expires_at)])
        return result

    def clear(self) -> int:
        with self._write() as conn:
            live = conn.execute(
                f"SELECT COUNT(*) FROM {self._table} WHERE {self._LIVE}", (self.namespace, time.time())
            ).fetchone()[0]
            conn.execute(f"DELETE FROM {self._table} WHERE namespace = ?", (self.namespace,))
        return int(live)

    def close(self) -> None:
        self._conns.close()


__all__ = ["MIGRATIONS", "SQLiteStateStore"]
