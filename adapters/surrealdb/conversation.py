"""The ``surrealdb`` conversation store, on the official ``surrealdb`` 2.x client (sync ``Surreal``).

Connections (URLs, ``connection=``, credentials, sharing of embedded engines, the sync client, locking
and conflict retries) are :mod:`._connection`'s, shared with the ``surrealdb_vector`` knowledge store.
``surrealdb+mem://`` is private to the store (``persistent=False``) unless a caller's connection is given.

Data model (tables ``<prefix>session`` and ``<prefix>message``, schemaless, created with ``DEFINE ... IF
NOT EXISTS`` and the schema version recorded in ``<prefix>schema_versions:conversation``):

* a session is the record ``type::thing('<prefix>session', $session_id)``; ``last_sequence`` is its message
  counter;
* a message is the record ``type::thing('<prefix>message', [$session_id, $message_id])``: the array record
  id makes message ids unique per session by construction; the UNIQUE index ``(session, sequence)``
  serves the ordered reads.

Every value, session id and message id is a bound ``$variable``; table names come only from the
validated table prefix. SurrealDB refuses NUL in record ids, index keys and query results, so message ids,
content, tool call ids, user and agent ids and session names are stored through
:func:`~._connection.escape_text` (injective, order-preserving) and read back unescaped (session ids cannot
hold NUL). Schema version 2 introduced that escaping; a version 1 database is re-encoded in place on
connect (its text holds no NUL, so only ``\\x01`` changes). Metadata, state and tool calls are stored as
JSON text (the SQLite store's encoder): SurrealDB drops object keys whose value is ``None`` (NONE) and
would change nothing else, but text round-trips every JSON document exactly.

An append is one query: ``BEGIN; UPSERT`` the session adding ``n`` to its counter, ``CREATE`` each message
(an existing id fails the transaction, so nothing of the batch is written), ``RETURN`` the counter;
``COMMIT``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
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
    OperationFailedError,
    SchemaVersionError,
    SessionNotFoundError,
)
from storebridge.identifiers import validate_table_prefix
from storebridge.models import ConversationMessage, ConversationSession, now, validate_session_id

from ._connection import (
    SurrealDBConnection,
    escape_optional,
    escape_text,
    resolve_url,
    unescape_optional,
    unescape_text,
)

SCHEMA_VERSION = 2


def _message_from_row(row: Mapping[str, Any]) -> ConversationMessage:
    tool_calls = row.get("tool_calls")
    return ConversationMessage(
        id=unescape_text(row["message_id"]), session_id=row["session"], role=row["role"],
        content=unescape_text(row["content"]), tool_calls=load_json(tool_calls),
        tool_call_id=unescape_optional(row.get("tool_call_id")),
        metadata=load_json(row.get("metadata", "{}")), created_at=row["created_at"], sequence=row["sequence"],
    )


def _session_from_row(row: Mapping[str, Any]) -> ConversationSession:
    return ConversationSession(
        session_id=row["session_id"], user_id=unescape_optional(row.get("user_id")),
        agent_id=unescape_optional(row.get("agent_id")), name=unescape_optional(row.get("name")), state=load_json(row.get("state", "{}")), metadata=load_json(row.get("metadata", "{}")),
        created_at=row["created_at"], updated_at=row["updated_at"],
    )


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
        self._conn = SurrealDBConnection(
            url, path=path, connection=connection, namespace=namespace, database=database, username=username,
            password=password, token=token, auth_namespace=auth_namespace, auth_database=auth_database,
            label="surrealdb")
        self.capabilities = ConversationCapabilities(
            persistent=self._conn.external or not self._conn.memory,
            multi_process=not self._conn.memory and not self.url.startswith("surrealkv://"),
        )
        try:
            self._migrate()
        except BaseException:
            self._conn.close()
            raise
        self._build_sql()

    @property
    def url(self) -> str:
        return self._conn.url

    @property
    def namespace(self) -> str:
        return self._conn.namespace

    @property
    def database(self) -> str:
        return self._conn.database

    def _call(self, action: str, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        return self._conn.query(action, sql, params)

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
        reencode = ""
        if current == 1:  # version 2 escapes text (NUL could not be stored before, so only \x01 changes)
            changed = "WHERE type::is::string({0}) AND string::contains({0}, $one)"
            # Fields first: a scan in a transaction does not see records created earlier in it (2.3.10).
            reencode = "".join(
                f"UPDATE {table} SET {column} = string::replace({column}, $one, $escaped) "
                f"{changed.format(column)} RETURN NONE;"
                for table, column in ((m, "content"), (m, "tool_call_id"), (s, "user_id"), (s, "agent_id"),
                                      (s, "name"))
            ) + (
                f"FOR $r IN (SELECT * FROM {m} {changed.format('message_id')}) {{"
                " DELETE $r.id;"
                f" CREATE type::thing('{m}', [$r.session, string::replace($r.message_id, $one, $escaped)]) SET"
                " session = $r.session, message_id = string::replace($r.message_id, $one, $escaped), role = $r.role,"
                " content = $r.content, tool_calls = $r.tool_calls, tool_call_id = $r.tool_call_id,"
                " metadata = $r.metadata, created_at = $r.created_at, sequence = $r.sequence RETURN NONE; };"
            )
        self._call("migrate", (
            "BEGIN TRANSACTION;"
            f"DEFINE TABLE IF NOT EXISTS {s} SCHEMALESS;"
            f"DEFINE TABLE IF NOT EXISTS {m} SCHEMALESS;"
            f"DEFINE TABLE IF NOT EXISTS {versions} SCHEMALESS;"
            f"DEFINE INDEX IF NOT EXISTS {m}_session_sequence ON TABLE {m} FIELDS session, sequence UNIQUE;"
            f"DEFINE INDEX IF NOT EXISTS {s}_user_updated ON TABLE {s} FIELDS user_id, updated_at;"
            f"DEFINE INDEX IF NOT EXISTS {s}_agent_updated ON TABLE {s} FIELDS agent_id, updated_at;"
            f"DEFINE INDEX IF NOT EXISTS {s}_updated ON TABLE {s} FIELDS updated_at;"
            + reencode +
            f"UPSERT type::thing('{versions}', 'conversation') SET version = $version, applied_at = $now "
            "RETURN NONE;"
            "COMMIT TRANSACTION;"
        ), {"version": SCHEMA_VERSION, "now": now(), "one": "\x01", "escaped": "\x01\x02"})

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
        return {"sid": session.session_id, "user_id": escape_optional(session.user_id),
                "agent_id": escape_optional(session.agent_id), "name": escape_optional(session.name), "state": dump_json(session.state, "session state"),
                "metadata": dump_json(session.metadata, "session metadata")}

    def create_session(self, session: ConversationSession) -> ConversationSession:
        values = self._session_values(session)
        doc = {"session_id": session.session_id, "user_id": values["user_id"], "agent_id": values["agent_id"],
               "name": values["name"], "state": values["state"], "metadata": values["metadata"],
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
            params["user_id"] = escape_text(user_id)
        if agent_id is not None:
            params["agent_id"] = escape_text(agent_id)
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
            {"message_id": escape_text(m.id), "role": m.role, "content": escape_text(m.content),
             "tool_calls": dump_optional_json(m.tool_calls, "tool_calls"), "tool_call_id": escape_optional(m.tool_call_id),
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
                (found,) = self._conn.run(self._sql_message_exists, {"sid": session_id, "mid": escape_text(message.id)})
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
            results = self._call("delete_messages", self._sql_delete_some,
                                 {"sid": session_id, "ids": [escape_text(i) for i in ids]})
        return int(results[-1])

    def count_messages(self, session_id: str) -> int:
        validate_session_id(session_id)
        (rows,) = self._call("count_messages", self._sql_count, {"sid": session_id})
        return int(rows[0]["n"]) if rows else 0

    def close(self) -> None:
        self._conn.close()


def async_surrealdb_store(url: str | None = None, **kwargs: Any) -> AsyncConversationStore:
    """The async face of :class:`SurrealDBConversationStore`."""
    return SurrealDBConversationStore(url, **kwargs).as_async()


__all__ = ["SurrealDBConversationStore", "async_surrealdb_store", "resolve_url"]
