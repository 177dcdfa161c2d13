"""The ``surrealdb`` conversation store, on the official ``surrealdb`` 2.x client (sync ``Surreal``).

Why the sync client: the embedded engines (``mem://``, ``surrealkv://``) are blocking calls into the
Rust extension either way (the async embedded connection only wraps them), so the sync connection is
the native one; the async face is derived by the core (calls run in storebridge's thread pool).

Where the database is (``namespace`` / ``database`` default to ``storebridge``; also ``?ns=&db=`` or, for
servers, the URL path ``/ns/db``):

* ``surrealdb+mem://`` (or ``mem://``): a private in-memory engine (``persistent=False``). Several store
  objects share one in-memory database by passing the same connected ``surrealdb.Surreal`` as
  ``connection=`` (never closed by the store; ``persistent=True`` then, since the data outlives the store
  object).
* ``surrealkv:///relative/dir``, ``surrealkv:////absolute/dir`` (or ``path=`` with ``surrealkv://``
  semantics): an embedded on-disk engine. One connection per directory is shared, reference-counted, by
  every store of the process (the engine holds the directory).
* ``surrealdb://host:8000`` (WebSocket), ``surrealdb+ws://``, ``surrealdb+wss://``, ``surrealdb+http(s)://``:
  a server, with ``username=``/``password=`` (or URL user info) for a root sign-in (plus
  ``auth_namespace=``/``auth_database=`` for namespace/database users) or ``token=``. Supported in code,
  NOT verified by the tests here.

Data model (tables ``<prefix>session`` and ``<prefix>message``, schemaless, created with ``DEFINE ... IF
NOT EXISTS`` and the schema version recorded in ``<prefix>schema_versions:conversation``):

* a session is the record ``type::thing('<prefix>session', $session_id)``; ``last_sequence`` is its message
  counter;
* a message is the record ``type::thing('<prefix>message', [$session_id, $message_id])``: the array record
  id makes message ids unique per session by construction; the UNIQUE index ``(session, sequence)``
  serves the ordered reads.

Every value, session id and message id is a bound ``$variable``; table names come only from the
validated table prefix. Metadata, state and tool calls are stored as JSON text (the SQLite store's
encoder): SurrealDB drops object keys whose value is ``None`` (NONE) and would change nothing else,
but text round-trips every JSON document exactly.

An append is one query: ``BEGIN; UPSERT`` the session adding ``n`` to its counter, ``CREATE`` each message
(an existing id fails the transaction, so nothing of the batch is written), ``RETURN`` the counter;
``COMMIT``. Calls on one connection are serialised by a lock; a transaction conflict (servers, several
processes) is retried.
"""

from __future__ import annotations

import os
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from storebridge.adapters.sqlite.conversation import (
    check_message_ids,
    check_time_bound,
    dump_json,
    dump_optional_json,
    load_json,
)
from storebridge.conversation import (
    AsyncConversationStore,
    ConversationCapabilities,
    ConversationStore,
    bind_messages,
    check_limits,
)
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    SchemaVersionError,
    SessionNotFoundError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.identifiers import validate_table_prefix
from storebridge.models import ConversationMessage, ConversationSession, now, validate_session_id
from storebridge.urls import mask_secrets, merge_url_option, parse_url

SCHEMA_VERSION = 1
_REMOTE = {"surrealdb": "ws", "ws": "ws", "wss": "wss", "http": "http", "https": "https"}
_FAILED_TXN = "The query was not executed due to a failed transaction"
_RETRIES = 10


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
        from storebridge.errors import BackendNotAvailableError

        raise BackendNotAvailableError('the surrealdb store needs the SurrealDB client: '
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


def _message_from_row(row: Mapping[str, Any]) -> ConversationMessage:
    tool_calls = row.get("tool_calls")
    return ConversationMessage(
        id=row["message_id"], session_id=row["session"], role=row["role"], content=row["content"],
        tool_calls=load_json(tool_calls), tool_call_id=row.get("tool_call_id"),
        metadata=load_json(row.get("metadata", "{}")), created_at=row["created_at"], sequence=row["sequence"],
    )


def _session_from_row(row: Mapping[str, Any]) -> ConversationSession:
    return ConversationSession(
        session_id=row["session_id"], user_id=row.get("user_id"), agent_id=row.get("agent_id"),
        name=row.get("name"), state=load_json(row.get("state", "{}")), metadata=load_json(row.get("metadata", "{}")),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


class _QueryFailed(Exception):
    """A statement of a query returned status ERR (the engine's message)."""


class SurrealDBConversationStore(ConversationStore):
    """Conversation store on SurrealDB: embedded (``mem://``, ``surrealkv://``) or a server.

    Thread-safe (one connection per store, or per on-disk engine, behind a lock).
    """

    backend_name = "surrealdb"

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 connection: Any = None, namespace: str | None = None, database: str | None = None,
                 username: str | None = None, password: str | None = None, token: str | None = None,
                 auth_namespace: str | None = None, auth_database: str | None = None,
                 table_prefix: str = "sb_") -> None:
        self.table_prefix = validate_table_prefix(table_prefix)
        if connection is not None:
            if url is not None or path is not None:
                raise ConfigurationError("give url/path or connection=, not both")
            client_url = str(getattr(connection, "raw_url", "mem://"))
            query: dict[str, str] = {}
            creds: dict[str, Any] = {}
        else:
            client_url, query, creds = resolve_url(url, path)
        self.namespace = merge_url_option("namespace", namespace, query.get("ns") or query.get("namespace")) \
            or "storebridge"
        self.database = merge_url_option("database", database, query.get("db") or query.get("database")) \
            or "storebridge"
        self._username = merge_url_option("username", username, creds.get("username"))
        self._password = merge_url_option("password", password, creds.get("password"))
        self._token = merge_url_option("token", token, query.get("token"))
        self._auth_namespace = auth_namespace
        self._auth_database = auth_database
        self.url = client_url
        memory = client_url.startswith(("mem://", "memory://"))
        # A caller's connection outlives this store object, so its data survives close() even in memory.
        self.capabilities = ConversationCapabilities(
            persistent=connection is not None or not memory,
            multi_process=not memory and not client_url.startswith("surrealkv://"),
        )
        self._closed = False
        self._engine = self._attach(client_url, connection)
        try:
            self._migrate()
        except BaseException:
            self._detach()
            raise
        self._build_sql()

    # -- connection ------------------------------------------------------------------------------------

    def _secrets(self) -> tuple[str | None, ...]:
        return (self._password, self._token)

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
                f"cannot connect to SurrealDB at {client_url!r}: {mask_secrets(exc, *self._secrets())}"
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
            key = client_url
            with _shared_guard:
                engine = _shared_engines.get(key)
                if engine is None:
                    engine = _Engine(self._open(client_url), owned=True, key=key)
                    _shared_engines[key] = engine
                engine.refs += 1
            return engine
        engine = _Engine(self._open(client_url), owned=True)
        engine.refs = 1
        return engine

    def _detach(self) -> None:
        engine = self._engine
        with _shared_guard:
            engine.refs -= 1
            last = engine.refs <= 0
            if last and engine.key is not None:
                _shared_engines.pop(engine.key, None)
        if last and engine.owned:
            with engine.lock, suppress(Exception):  # best effort; the store is closed either way
                engine.conn.close()

    def _run(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run one query; the result of each statement, or :class:`_QueryFailed` (retried on conflicts)."""
        engine = self._engine
        for attempt in range(_RETRIES):
            with engine.lock:
                if self._closed:
                    raise StoreClosedError(f"the surrealdb store on {self.url!r} is closed")
                if engine.current != (self.namespace, self.database):
                    engine.conn.use(self.namespace, self.database)
                    engine.current = (self.namespace, self.database)
                response = engine.conn.query_raw(sql, dict(params) if params else None)
            results = response.get("result") if isinstance(response, dict) else None
            if results is None:
                error = response.get("error") if isinstance(response, dict) else response
                raise _QueryFailed(str(error))
            errors = [str(r.get("result")) for r in results if r.get("status") == "ERR"]
            if not errors:
                return [r.get("result") for r in results]
            real = [e for e in errors if e != _FAILED_TXN] or errors
            message = "; ".join(real)
            if "conflict" in message.lower() and attempt < _RETRIES - 1:
                time.sleep(0.005 * (attempt + 1))
                continue
            raise _QueryFailed(message)
        raise AssertionError("unreachable")  # pragma: no cover

    def _call(self, action: str, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """:meth:`_run` with every failure mapped to a typed storebridge error."""
        try:
            return self._run(sql, params)
        except StorebridgeError:
            raise
        except UnicodeEncodeError as exc:
            raise ValidationError(f"text must be valid Unicode (no lone surrogates): {exc}") from exc
        except Exception as exc:
            if self._closed:
                raise StoreClosedError(f"the surrealdb store on {self.url!r} is closed") from exc
            raise OperationFailedError(
                f"SurrealDB {action} on {self.url!r} failed: {mask_secrets(exc, *self._secrets())}"
            ) from exc

    # -- schema ----------------------------------------------------------------------------------------

    def _migrate(self) -> None:
        p = self.table_prefix
        versions = f"{p}schema_versions"
        got = self._call("migrate", f"SELECT VALUE version FROM type::thing('{versions}', 'conversation')")
        current = (got[0] or [0])[0] if got else 0
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the conversation tables with prefix {p!r} are at schema version {current}, newer than this "
                f"storebridge ({SCHEMA_VERSION}); upgrade storebridge"
            )
        if current == SCHEMA_VERSION:
            return
        s, m = f"{p}session", f"{p}message"
        self._call("migrate", (
            "BEGIN TRANSACTION;"
            f"DEFINE TABLE IF NOT EXISTS {s} SCHEMALESS;"
            f"DEFINE TABLE IF NOT EXISTS {m} SCHEMALESS;"
            f"DEFINE TABLE IF NOT EXISTS {versions} SCHEMALESS;"
            f"DEFINE INDEX IF NOT EXISTS {m}_session_sequence ON TABLE {m} FIELDS session, sequence UNIQUE;"
            f"DEFINE INDEX IF NOT EXISTS {s}_user_updated ON TABLE {s} FIELDS user_id, updated_at;"
            f"DEFINE INDEX IF NOT EXISTS {s}_agent_updated ON TABLE {s} FIELDS agent_id, updated_at;"
            f"DEFINE INDEX IF NOT EXISTS {s}_updated ON TABLE {s} FIELDS updated_at;"
            f"UPSERT type::thing('{versions}', 'conversation') SET version = $version, applied_at = $now "
            "RETURN NONE;"
            "COMMIT TRANSACTION;"
        ), {"version": SCHEMA_VERSION, "now": now()})

    def _build_sql(self) -> None:
        p = self.table_prefix
        s, m = f"{p}session", f"{p}message"
        session = f"type::thing('{s}', $sid)"
        self._sql_create_session = f"CREATE {session} CONTENT $doc RETURN NONE"
        self._sql_get_session = (
            f"SELECT session_id, user_id, agent_id, name, state, metadata, created_at, updated_at FROM {session}"
        )
        self._sql_update_session = (
            f"UPDATE {session} SET user_id = $user_id, agent_id = $agent_id, name = $name, state = $state, "
            "metadata = $metadata, updated_at = $now RETURN created_at"
        )
        # updated_at first: it must see whether the record existed before this statement.
        self._sql_upsert_session = (
            f"UPSERT {session} SET updated_at = IF created_at != NONE THEN $now ELSE $updated_at END, "
            "created_at = created_at ?? $created_at, session_id = $sid, user_id = $user_id, agent_id = $agent_id, "
            "name = $name, state = $state, metadata = $metadata, last_sequence = last_sequence ?? 0 "
            "RETURN created_at, updated_at"
        )
        self._sql_delete_session = (
            "BEGIN TRANSACTION;"
            f"DELETE {m} WHERE session = $sid;"
            f"LET $existed = (SELECT VALUE id FROM {session});"
            f"DELETE {session};"
            "RETURN array::len($existed) > 0;"
            "COMMIT TRANSACTION;"
        )
        self._sql_append = (
            "BEGIN TRANSACTION;"
            f"LET $last = (UPSERT {session} SET session_id = $sid, last_sequence = (last_sequence ?? 0) + $n, "
            "updated_at = $now, created_at = created_at ?? $now, state = state ?? $empty, "
            "metadata = metadata ?? $empty RETURN last_sequence)[0].last_sequence;"
            f"FOR $r IN $rows {{ CREATE type::thing('{m}', [$sid, $r.message_id]) SET session = $sid, "
            "message_id = $r.message_id, role = $r.role, content = $r.content, tool_calls = $r.tool_calls, "
            "tool_call_id = $r.tool_call_id, metadata = $r.metadata, created_at = $r.created_at, "
            "sequence = $last - $n + $r.offset RETURN NONE; };"
            "RETURN $last;"
            "COMMIT TRANSACTION;"
        )
        self._sql_message_exists = f"SELECT VALUE message_id FROM type::thing('{m}', [$sid, $mid])"
        columns = "message_id, session, role, content, tool_calls, tool_call_id, metadata, created_at, sequence"
        self._sql_messages: dict[tuple[bool, bool, bool], str] = {}
        for before in (False, True):
            for after in (False, True):
                where = "session = $sid" + (" AND created_at < $before" if before else "") + (
                    " AND created_at > $after" if after else "")
                for limited in (False, True):
                    order = "sequence DESC LIMIT $limit" if limited else "sequence"
                    self._sql_messages[(before, after, limited)] = f"SELECT {columns} FROM {m} WHERE {where} ORDER BY {order}"
        self._sql_count = f"SELECT count() AS n FROM {m} WHERE session = $sid GROUP ALL"
        self._sql_delete_all = (
            "BEGIN TRANSACTION;"
            f"LET $gone = (SELECT VALUE id FROM {m} WHERE session = $sid);"
            "DELETE $gone;"
            "RETURN array::len($gone);"
            "COMMIT TRANSACTION;"
        )
        self._sql_delete_some = (
            "BEGIN TRANSACTION;"
            f"LET $gone = (SELECT VALUE id FROM {m} WHERE session = $sid AND message_id IN $ids);"
            "DELETE $gone;"
            "RETURN array::len($gone);"
            "COMMIT TRANSACTION;"
        )
        self._sql_list: dict[tuple[bool, bool, bool], str] = {}
        for by_user in (False, True):
            for by_agent in (False, True):
                conditions = [c for c, on in (("user_id = $user_id", by_user), ("agent_id = $agent_id", by_agent))
                              if on]
                where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
                for limited in (False, True):
                    self._sql_list[(by_user, by_agent, limited)] = (
                        f"SELECT session_id, user_id, agent_id, name, state, metadata, created_at, updated_at "
                        f"FROM {s}{where} ORDER BY updated_at DESC, created_at DESC, session_id ASC"
                        + (" LIMIT $limit" if limited else "") + " START $offset"
                    )

    def __repr__(self) -> str:
        return (f"SurrealDBConversationStore(url={self.url!r}, namespace={self.namespace!r}, "
                f"database={self.database!r}, table_prefix={self.table_prefix!r})")

    # -- sessions --------------------------------------------------------------------------------------

    @staticmethod
    def _session_values(session: ConversationSession) -> dict[str, Any]:
        return {"sid": session.session_id, "user_id": session.user_id, "agent_id": session.agent_id,
                "name": session.name, "state": dump_json(session.state, "session state"),
                "metadata": dump_json(session.metadata, "session metadata")}

    def create_session(self, session: ConversationSession) -> ConversationSession:
        values = self._session_values(session)
        doc = {"session_id": session.session_id, "user_id": session.user_id, "agent_id": session.agent_id,
               "name": session.name, "state": values["state"], "metadata": values["metadata"],
               "created_at": session.created_at, "updated_at": session.updated_at, "last_sequence": 0}
        try:
            self._call("create_session", self._sql_create_session, {"sid": session.session_id, "doc": doc})
        except OperationFailedError as exc:
            if "already exists" in str(exc):
                raise AlreadyExistsError(f"session {session.session_id!r} already exists") from exc
            raise
        return session

    def get_session(self, session_id: str) -> ConversationSession | None:
        validate_session_id(session_id)
        (rows,) = self._call("get_session", self._sql_get_session, {"sid": session_id})
        return _session_from_row(rows[0]) if rows else None

    def update_session(self, session: ConversationSession) -> ConversationSession:
        values = self._session_values(session)
        stamp = now()
        (rows,) = self._call("update_session", self._sql_update_session, {**values, "now": stamp})
        if not rows:
            raise SessionNotFoundError(f"session {session.session_id!r} does not exist")
        return session.replace(created_at=rows[0]["created_at"], updated_at=stamp)

    def upsert_session(self, session: ConversationSession) -> ConversationSession:
        values = self._session_values(session)
        (rows,) = self._call("upsert_session", self._sql_upsert_session, {
            **values, "now": now(), "created_at": session.created_at, "updated_at": session.updated_at})
        return session.replace(created_at=rows[0]["created_at"], updated_at=rows[0]["updated_at"])

    def delete_session(self, session_id: str) -> bool:
        validate_session_id(session_id)
        results = self._call("delete_session", self._sql_delete_session, {"sid": session_id})
        return bool(results[-1])

    def list_sessions(self, *, user_id: str | None = None, agent_id: str | None = None, limit: int | None = 100,
                      offset: int = 0) -> list[ConversationSession]:
        check_limits(limit, offset)
        if limit == 0:
            return []
        params: dict[str, Any] = {"offset": offset}
        if user_id is not None:
            params["user_id"] = user_id
        if agent_id is not None:
            params["agent_id"] = agent_id
        if limit is not None:
            params["limit"] = limit
        sql = self._sql_list[(user_id is not None, agent_id is not None, limit is not None)]
        (rows,) = self._call("list_sessions", sql, params)
        return [_session_from_row(row) for row in rows]

    # -- messages --------------------------------------------------------------------------------------

    def add_messages(self, session_id: str, messages: Sequence[ConversationMessage]) -> list[ConversationMessage]:
        bound = bind_messages(session_id, messages)
        if not bound:
            return []
        rows = [
            {"message_id": m.id, "role": m.role, "content": m.content,
             "tool_calls": dump_optional_json(m.tool_calls, "tool_calls"), "tool_call_id": m.tool_call_id,
             "metadata": dump_json(m.metadata, "message metadata"), "created_at": m.created_at, "offset": i + 1}
            for i, m in enumerate(bound)
        ]
        n = len(rows)
        params = {"sid": session_id, "n": n, "now": now(), "empty": "{}", "rows": rows}
        try:
            results = self._call("add_messages", self._sql_append, params)
        except OperationFailedError as exc:
            if "already exists" in str(exc):
                raise AlreadyExistsError(
                    f"message id {self._first_existing_id(session_id, bound)!r} already exists; nothing was written"
                ) from exc
            raise
        first = int(results[-1]) - n + 1
        return [m.replace(session_id=session_id, sequence=first + i) for i, m in enumerate(bound)]

    def _first_existing_id(self, session_id: str, messages: Sequence[ConversationMessage]) -> str | None:
        try:
            for message in messages:
                (found,) = self._run(self._sql_message_exists, {"sid": session_id, "mid": message.id})
                if found:
                    return message.id
        except Exception:  # noqa: BLE001 - error path only: the id is then just unknown
            return None
        return None

    def get_messages(self, session_id: str, *, limit: int | None = None, before: float | None = None,
                     after: float | None = None) -> list[ConversationMessage]:
        validate_session_id(session_id)
        check_limits(limit)
        check_time_bound(before, "before")
        check_time_bound(after, "after")
        if limit == 0:
            return []
        params: dict[str, Any] = {"sid": session_id}
        if before is not None:
            params["before"] = before
        if after is not None:
            params["after"] = after
        if limit is not None:
            params["limit"] = limit
        sql = self._sql_messages[(before is not None, after is not None, limit is not None)]
        (rows,) = self._call("get_messages", sql, params)
        if limit is not None:
            rows = rows[::-1]
        return [_message_from_row(row) for row in rows]

    def delete_messages(self, session_id: str, message_ids: Sequence[str] | None = None) -> int:
        validate_session_id(session_id)
        ids = check_message_ids(message_ids)
        if ids is None:
            results = self._call("delete_messages", self._sql_delete_all, {"sid": session_id})
        elif not ids:
            return 0
        else:
            results = self._call("delete_messages", self._sql_delete_some, {"sid": session_id, "ids": ids})
        return int(results[-1])

    def count_messages(self, session_id: str) -> int:
        validate_session_id(session_id)
        (rows,) = self._call("count_messages", self._sql_count, {"sid": session_id})
        return int(rows[0]["n"]) if rows else 0

    def close(self) -> None:
        with self._engine.lock:
            if self._closed:
                return
            self._closed = True
        self._detach()


def async_surrealdb_store(url: str | None = None, **kwargs: Any) -> AsyncConversationStore:
    """The async face of :class:`SurrealDBConversationStore`."""
    return SurrealDBConversationStore(url, **kwargs).as_async()


__all__ = ["SurrealDBConversationStore", "async_surrealdb_store", "resolve_url"]
