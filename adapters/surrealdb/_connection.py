"""The SurrealDB connection shared by the ``surrealdb`` conversation store and the ``surrealdb_vector``
knowledge store (official ``surrealdb`` 2.x client, sync ``Surreal``; its wheel embeds SurrealDB core
2.3.10 for ``mem://`` and ``surrealkv://``). Importing this module imports no client.

Why the sync client: the embedded engines are blocking calls into the Rust extension either way (the async
embedded connection only wraps them), so the sync connection is the native one; the stores' async faces
are derived by the core (calls run in storebridge's thread pool).

Where the database is (``namespace`` / ``database`` default to ``storebridge``; also ``?ns=&db=`` or, for
servers, the URL path ``/ns/db``; any other URL option is refused):

* ``surrealdb+mem://`` (or ``mem://``): a private in-memory engine. Several stores share one in-memory
  database by passing the same connected ``surrealdb.Surreal`` as ``connection=`` (never closed by a store).
* ``surrealkv:///relative/dir``, ``surrealkv:////absolute/dir`` (or ``path=``): an embedded on-disk engine.
  One connection per directory is shared, reference-counted, by every store of the process (the engine
  holds the directory).
* ``surrealdb://host:8000`` (WebSocket), ``surrealdb+ws://``, ``+wss://``, ``+http(s)://``: a server, with
  ``username=``/``password=`` (or URL user info) for a sign-in (``auth_namespace=``/``auth_database=`` for
  namespace/database users) or ``token=``. Supported in code, NOT verified by the tests here.

Calls on one connection are serialised by a lock (one ``use(ns, db)`` per switch); a transaction conflict
(servers, several processes) is retried. Secrets never reach a repr or an error text (``mask_secrets``).

Text: SurrealDB refuses NUL in record ids and index keys ("Key encoding error") and in any string of a
query result ("Serialization error: to be serialized string contained a null byte"), so text that may hold
NUL is stored through :func:`escape_text` (injective and order-preserving) and read back with
:func:`unescape_text`.
"""

from __future__ import annotations

import os
import re
import threading
import time
import weakref
from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from storebridge.errors import (
    BackendNotAvailableError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.urls import mask_secrets, merge_url_option, parse_url

_REMOTE = {"surrealdb": "ws", "ws": "ws", "wss": "wss", "http": "http", "https": "https"}
_URL_OPTIONS = frozenset({"ns", "namespace", "db", "database", "token"})
#: What SurrealDB answers for the other statements of a transaction that failed.
FAILED_TXN = "The query was not executed due to a failed transaction"
_RETRIES = 10
_ESCAPED = re.compile("\x01([\x01\x02])")


def escape_text(text: str) -> str:
    """``text`` without NUL, for SurrealDB: NUL becomes ``\\x01\\x01`` and ``\\x01`` becomes ``\\x01\\x02``.
    Injective (equality is kept, so bound comparisons work on escaped values) and order-preserving (keys
    sort as the originals do)."""
    return text.replace("\x01", "\x01\x02").replace("\x00", "\x01\x01") if "\x00" in text or "\x01" in text \
        else text


def unescape_text(text: str) -> str:
    """The inverse of :func:`escape_text`."""
    return _ESCAPED.sub(lambda m: "\x00" if m.group(1) == "\x01" else "\x01", text) if "\x01" in text else text


def unescape_optional(text: str | None) -> str | None:
    return None if text is None else unescape_text(text)


def escape_optional(text: str | None) -> str | None:
    return None if text is None else escape_text(text)


class QueryFailed(Exception):
    """A statement of a query returned status ERR (the engine's message)."""


class _Engine:
    """One client connection, the lock that serialises its use, and the namespace/database it is on."""

    def __init__(self, conn: Any, *, owned: bool, key: str | None = None) -> None:
        self.conn = conn
        self.owned = owned
        self.key = key
        self.lock = threading.RLock()
        self.current: tuple[str, str] | None = None
        self.refs = 0


_shared_engines: dict[str, _Engine] = {}  # embedded on-disk engines, by directory
_shared_guard = threading.Lock()
_external: weakref.WeakKeyDictionary[Any, _Engine] = weakref.WeakKeyDictionary()  # connection= objects


def _surrealdb() -> Any:
    try:
        import surrealdb
    except ImportError as exc:  # pragma: no cover - the registry checks find_spec first
        raise BackendNotAvailableError('the surrealdb stores need the SurrealDB client: '
                                       'pip install "storebridge[surrealdb]"') from exc
    return surrealdb


def resolve_url(url: str | None, path: str | os.PathLike[str] | None) -> tuple[str, dict[str, str], dict[str, Any]]:
    """``(client URL, query options, URL credentials)`` for ``url`` / ``path``."""
    if url is not None and path is not None:
        raise ConfigurationError("give either url or path, not both")
    if url is None:
        if path is None:
            raise ConfigurationError("the surrealdb store needs a URL (surrealdb+mem://, surrealkv:///dir, "
                                     "surrealdb://host:8000) or path=")
        return "surrealkv://" + os.path.abspath(os.fspath(path)), {}, {}
    parsed = parse_url(url)
    scheme, driver = parsed.scheme, parsed.driver
    query = dict(parsed.query)
    unknown = set(query) - _URL_OPTIONS
    if unknown:
        raise ConfigurationError(f"unknown SurrealDB URL options {sorted(unknown)} in {parsed}; "
                                 f"known: {sorted(_URL_OPTIONS)}")
    creds = {"username": parsed.username, "password": parsed.password}
    if (scheme == "surrealdb" and driver == "mem") or scheme in ("mem", "memory"):
        return "mem://", query, {}
    if scheme == "surrealkv" or (scheme == "surrealdb" and driver == "surrealkv"):
        raw = (parsed.host or "") + parsed.path if parsed.host else parsed.file_path
        if not raw:
            raise ConfigurationError(f"{parsed}: surrealkv needs a directory, e.g. surrealkv:///data/conversations")
        return "surrealkv://" + os.path.abspath(raw), query, {}
    transport = _REMOTE.get(driver or scheme) if scheme in ("surrealdb", "ws", "wss", "http", "https") else None
    if transport is None or not parsed.host:
        raise ConfigurationError(f"not a SurrealDB URL: {parsed}; use surrealdb+mem://, surrealkv:///dir or "
                                 "surrealdb://host:8000/namespace/database")
    netloc = parsed.host if parsed.port is None else f"{parsed.host}:{parsed.port}"
    segments = [s for s in parsed.path.split("/") if s and s != "rpc"]
    if segments:
        query.setdefault("ns", segments[0])
    if len(segments) > 1:
        query.setdefault("db", segments[1])
    return f"{transport}://{netloc}", query, creds


class SurrealDBConnection:
    """A store's handle on a SurrealDB database: the options of the URL merged with the arguments, the
    (possibly shared) client connection, and query execution. ``label`` names the store in messages."""

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 connection: Any = None, namespace: str | None = None, database: str | None = None,
                 username: str | None = None, password: str | None = None, token: str | None = None,
                 auth_namespace: str | None = None, auth_database: str | None = None,
                 label: str = "surrealdb") -> None:
        self.label = label
        if connection is not None:
            if url is not None or path is not None:
                raise ConfigurationError("give url/path or connection=, not both")
            client_url = str(getattr(connection, "raw_url", "mem://"))
            query: dict[str, str] = {}
            creds: dict[str, Any] = {}
        else:
            client_url, query, creds = resolve_url(url, path)
        self.namespace: str = merge_url_option("namespace", namespace, query.get("ns") or query.get("namespace")) \
            or "storebridge"
        self.database: str = merge_url_option("database", database, query.get("db") or query.get("database")) \
            or "storebridge"
        self._username = merge_url_option("username", username, creds.get("username"))
        self._password = merge_url_option("password", password, creds.get("password"))
        self._token = merge_url_option("token", token, query.get("token"))
        self._auth_namespace = auth_namespace
        self._auth_database = auth_database
        self.url = client_url
        #: A caller's connection outlives the store, so its data survives close() even in memory.
        self.external = connection is not None
        self.memory = client_url.startswith(("mem://", "memory://"))
        self.closed = False
        self.engine = self._attach(client_url, connection)

    def secrets(self) -> tuple[str | None, ...]:
        return (self._password, self._token)

    def mask(self, text: Any) -> str:
        return mask_secrets(text, *self.secrets())

    # -- the client connection ---------------------------------------------------------------------------

    def _open(self, client_url: str) -> Any:
        surrealdb = _surrealdb()
        try:
            conn = surrealdb.Surreal(client_url)
            conn.connect()
            if self._token:
                conn.authenticate(self._token)
            elif self._username is not None:
                creds: dict[str, Any] = {"username": self._username, "password": self._password or ""}
                if self._auth_namespace:
                    creds["namespace"] = self._auth_namespace
                if self._auth_database:
                    creds["database"] = self._auth_database
                conn.signin(creds)
        except Exception as exc:  # noqa: BLE001 - the client raises many types (transport, auth, engine)
            raise ConnectionFailedError(
                f"cannot connect to SurrealDB at {client_url!r}: {self.mask(exc)}; check the URL and credentials"
            ) from None
        return conn

    def _attach(self, client_url: str, connection: Any) -> _Engine:
        if connection is not None:
            with _shared_guard:
                engine = _external.get(connection)
                if engine is None:
                    engine = _Engine(connection, owned=False)
                    _external[connection] = engine
                engine.refs += 1
            return engine
        if client_url.startswith("surrealkv://"):
            with _shared_guard:
                engine = _shared_engines.get(client_url)
                if engine is None:
                    engine = _Engine(self._open(client_url), owned=True, key=client_url)
                    _shared_engines[client_url] = engine
                engine.refs += 1
            return engine
        engine = _Engine(self._open(client_url), owned=True)
        engine.refs = 1
        return engine

    def close(self) -> None:
        """Detach from the engine (closing the client when this was its last user and it is ours)."""
        engine = self.engine
        with engine.lock:
            if self.closed:
                return
            self.closed = True
        with _shared_guard:
            engine.refs -= 1
            last = engine.refs <= 0
            if last and engine.key is not None:
                _shared_engines.pop(engine.key, None)
        if last and engine.owned:
            with engine.lock, suppress(Exception):  # best effort; the store is closed either way
                engine.conn.close()

    # -- queries ------------------------------------------------------------------------------------------

    def run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run one query; the result of each statement, or :class:`QueryFailed` (retried on conflicts)."""
        engine = self.engine
        for attempt in range(_RETRIES):
            with engine.lock:
                if self.closed:
                    raise StoreClosedError(f"the {self.label} store on {self.url!r} is closed")
                if engine.current != (self.namespace, self.database):
                    engine.conn.use(self.namespace, self.database)
                    engine.current = (self.namespace, self.database)
                response = engine.conn.query_raw(sql, dict(params) if params else None)
            results = response.get("result") if isinstance(response, dict) else None
            if results is None:
                error = response.get("error") if isinstance(response, dict) else response
                raise QueryFailed(str(error))
            errors = [str(r.get("result")) for r in results if r.get("status") == "ERR"]
            if not errors:
                return [r.get("result") for r in results]
            real = [e for e in errors if e != FAILED_TXN] or errors
            message = "; ".join(real)
            if "conflict" in message.lower() and attempt < _RETRIES - 1:
                time.sleep(0.005 * (attempt + 1))
                continue
            raise QueryFailed(message)
        raise AssertionError("unreachable")  # pragma: no cover

    def translate(self, exc: Exception, action: str) -> StorebridgeError:
        """The typed storebridge error for a failure of :meth:`run` (secrets masked)."""
        if isinstance(exc, StorebridgeError):
            return exc
        if isinstance(exc, UnicodeEncodeError):
            return ValidationError(f"text must be valid Unicode (no lone surrogates): {exc}")
        if self.closed:
            return StoreClosedError(f"the {self.label} store on {self.url!r} is closed")
        text = self.mask(exc)
        kind = type(exc).__name__
        if isinstance(exc, (ConnectionError, OSError, TimeoutError)) or kind == "ConnectionUnavailableError":
            return ConnectionFailedError(f"SurrealDB {action} on {self.url!r}: the connection failed: {text}")
        if kind == "NotAllowedError":
            return ConnectionFailedError(f"SurrealDB {action} on {self.url!r} was refused: {text}; check the "
                                         "credentials (username/password or token) and their access")
        return OperationFailedError(f"SurrealDB {action} on {self.url!r} failed: {text}")

    def query(self, action: str, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """:meth:`run` with every failure mapped to a typed storebridge error."""
        try:
            return self.run(sql, params)
        except StorebridgeError:
            raise
        except Exception as exc:
            raise self.translate(exc, action) from exc


__all__ = [
    "FAILED_TXN",
    "QueryFailed",
    "SurrealDBConnection",
    "escape_optional",
    "escape_text",
    "resolve_url",
    "unescape_optional",
    "unescape_text",
]
