"""Import conversations from the tables our users are leaving, into any storebridge conversation store.

    from storebridge.importers import import_conversations
    report = import_conversations("postgresql://.../app", store, source_format="praisonai")

Source formats (``source_format=``):

``"praisonai"``
    PraisonAI's ``{prefix}sessions`` (session_id, user_id, agent_id, name, state, metadata, created_at,
    updated_at) and ``{prefix}messages`` (id, session_id, role, content, tool_calls, tool_call_id,
    metadata, created_at); ``table_prefix`` defaults to ``"praison_"``. Times are epoch-float seconds;
    JSON is TEXT (SQLite), JSONB (Postgres) or JSON (MySQL). Older PraisonAI schemas without ``state``,
    ``tool_calls`` or ``tool_call_id`` are read too (those fields are then empty). PraisonAI has no
    sequence: messages are ordered by ``created_at``, then id. Message ids are kept as they are.
``"langchain_sql"``
    LangChain's ``SQLChatMessageHistory`` table (``table``, default ``"message_store"``): id (autoincrement),
    session_id, message (JSON text of ``message_to_dict``). Ordered by id. The table has no timestamps,
    so imported messages get the time of the import.
``"langchain_postgres"``
    langchain-postgres' ``PostgresChatMessageHistory`` table (``table``, default ``"chat_history"``): id
    (serial), session_id (UUID, imported as its text form), message (JSONB of ``message_to_dict``),
    created_at (timestamptz). Ordered by id.

LangChain messages convert through :mod:`storebridge.integrations._langchain_messages` (exact both
ways: tool calls, ids, additional kwargs...), which needs ``langchain-core``.

**Idempotent**: message ids are deterministic (PraisonAI's own ids; ``"<table>:<row id>"`` for the
LangChain tables, the LangChain message's own id kept for the way back), and messages whose id the
destination session already holds are skipped, so running an import again imports nothing twice and an
interrupted import completes. Existing destination sessions are never modified.

``source`` is an open DB-API connection (sqlite3, psycopg, PyMySQL...: it is not closed) or a URL
(``sqlite:///path.db``, ``postgresql://...``, ``mysql://...``: opened and closed here). Table names
are validated identifiers, quoted; no value is ever put into SQL text.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .conversation import AsyncConversationStore, ConversationStore
from .errors import BackendNotAvailableError, ConfigurationError, InvalidIdentifierError
from .identifiers import quote_identifier, validate_table_prefix
from .models import ROLES, ConversationMessage, ConversationSession
from .urls import parse_url

FORMATS = ("praisonai", "langchain_sql", "langchain_postgres")
_DEFAULT_TABLES = {"langchain_sql": "message_store", "langchain_postgres": "chat_history"}
_TABLE_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_MYSQL_MODULES = ("pymysql", "MySQLdb", "mysql", "singlestoredb", "mariadb")
#: Rows fetched from the source at a time, and messages written per ``add_messages``.
BATCH = 500


@dataclass(frozen=True)
class ImportReport:
    sessions_created: int
    messages_imported: int
    messages_skipped: int


@dataclass
class _Message:
    session_id: str
    message: ConversationMessage


def import_conversations(source: Any, dest_store: ConversationStore | AsyncConversationStore, *,
                         source_format: str, table: str | None = None, table_prefix: str = "praison_",
                         batch_size: int = BATCH) -> ImportReport:
    """Copy every session and message of ``source`` into ``dest_store`` (see the module docstring)."""
    if source_format not in FORMATS:
        raise ConfigurationError(f"unknown source_format {source_format!r}; use one of {list(FORMATS)}")
    store: ConversationStore = dest_store.as_sync() if isinstance(dest_store, AsyncConversationStore) else dest_store
    conn, owned = _open(source)
    try:
        quote = "`" if type(conn).__module__.split(".")[0] in _MYSQL_MODULES else '"'
        if source_format == "praisonai":
            prefix = validate_table_prefix(table_prefix)
            sessions = _read_praison_sessions(conn, quote, prefix)
            messages = _read_praison_messages(conn, quote, prefix, batch_size)
        else:
            name = _table_name(table or _DEFAULT_TABLES[source_format])
            sessions = {}
            messages = _read_langchain(conn, quote, name, source_format, batch_size)
        return _write(store, sessions, messages, batch_size)
    finally:
        if owned:
            conn.close()


# -- reading ----------------------------------------------------------------------------------------------


def _open(source: Any) -> tuple[Any, bool]:
    if not isinstance(source, str):
        if not hasattr(source, "cursor"):
            raise ConfigurationError(f"source must be a DB-API connection or a URL, got {type(source).__name__}")
        return source, False
    parsed = parse_url(source)
    if parsed.scheme in ("sqlite", "file"):
        return sqlite3.connect(parsed.file_path), True
    try:
        if parsed.scheme in ("postgresql", "postgres"):
            import psycopg

            return psycopg.connect(parsed.render(reveal=True, scheme="postgresql"), autocommit=True), True
        if parsed.scheme in ("mysql", "mariadb"):
            import pymysql

            return pymysql.connect(host=parsed.host or "localhost", port=parsed.port or 3306,
                                   user=parsed.username or "root", password=parsed.password or "",
                                   database=parsed.database, charset="utf8mb4"), True
    except ImportError as exc:
        raise BackendNotAvailableError(f"reading {parsed.scheme} sources needs its driver: {exc}") from exc
    raise ConfigurationError(f"cannot read conversations from {parsed}: use sqlite://, postgresql:// or mysql://")


def _table_name(name: str) -> str:
    if not isinstance(name, str) or not _TABLE_RE.fullmatch(name):
        raise InvalidIdentifierError(f"invalid table name {name!r}: letters, digits and '_' (not first)")
    return name


def _columns(conn: Any, quoted_table: str) -> list[str]:
    cursor = conn.cursor()
    try:
        cursor.execute(f"SELECT * FROM {quoted_table} WHERE 1 = 0")
        cursor.fetchall()
        return [d[0].lower() for d in cursor.description]
    finally:
        cursor.close()


def _rows(conn: Any, sql: str, batch_size: int) -> Iterator[tuple[Any, ...]]:
    cursor = conn.cursor()
    try:
        cursor.execute(sql)
        while True:
            chunk = cursor.fetchmany(batch_size)
            if not chunk:
                return
            yield from chunk
    finally:
        cursor.close()


def _json(value: Any, default: Any) -> Any:
    """JSON from any driver: text (SQLite, MySQL), already parsed (JSONB through psycopg), or NULL."""
    if value is None or value == "":
        return default
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    return json.loads(value) if isinstance(value, str) else value


def _epoch(value: Any, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, datetime):
        return value.timestamp()
    return float(value)


def _select(conn: Any, quote: str, table: str, wanted: tuple[str, ...], order: str) -> tuple[str, list[str]]:
    """``SELECT`` of the columns of ``wanted`` that the table has (older schemas lack some)."""
    quoted = quote_identifier(table, quote)
    present = set(_columns(conn, quoted))
    columns = [c for c in wanted if c in present]
    return f"SELECT {', '.join(columns)} FROM {quoted} ORDER BY {order}", columns


def _read_praison_sessions(conn: Any, quote: str, prefix: str) -> dict[str, ConversationSession]:
    sql, columns = _select(conn, quote, f"{prefix}sessions", (
        "session_id", "user_id", "agent_id", "name", "state", "metadata", "created_at", "updated_at"), "session_id")
    found: dict[str, ConversationSession] = {}
    stamp = time.time()
    for row in _rows(conn, sql, BATCH):
        r = dict(zip(columns, row))
        created = _epoch(r.get("created_at"), stamp)
        found[str(r["session_id"])] = ConversationSession(
            session_id=str(r["session_id"]), user_id=r.get("user_id"), agent_id=r.get("agent_id"), name=r.get("name"),
            state=_json(r.get("state"), {}) or {}, metadata=_json(r.get("metadata"), {}) or {},
            created_at=created, updated_at=_epoch(r.get("updated_at"), created))
    return found


def _read_praison_messages(conn: Any, quote: str, prefix: str, batch_size: int) -> Iterator[_Message]:
    sql, columns = _select(conn, quote, f"{prefix}messages", (
        "id", "session_id", "role", "content", "tool_calls", "tool_call_id", "metadata", "created_at"),
        "session_id, created_at, id")
    stamp = time.time()
    for row in _rows(conn, sql, batch_size):
        r = dict(zip(columns, row))
        metadata = _json(r.get("metadata"), {}) or {}
        role = r.get("role") or "user"
        if role not in ROLES:  # kept, not lost: the store's roles are the chat-model ones
            metadata = {**metadata, "imported_role": role}
            role = "user"
        session_id = str(r["session_id"])
        yield _Message(session_id, ConversationMessage(
            id=str(r["id"]), session_id=session_id, role=role, content=r.get("content") or "",
            tool_calls=_json(r.get("tool_calls"), None) or None, tool_call_id=r.get("tool_call_id"),
            metadata=metadata, created_at=_epoch(r.get("created_at"), stamp)))


def _read_langchain(conn: Any, quote: str, table: str, source_format: str, batch_size: int) -> Iterator[_Message]:
    try:
        from langchain_core.messages import messages_from_dict

        from .integrations._langchain_messages import LANGCHAIN_KEY, from_langchain
    except ImportError as exc:
        raise BackendNotAvailableError(
            f"importing LangChain histories needs langchain-core: pip install \"storebridge[langchain]\" ({exc})"
        ) from exc
    wanted = ("id", "session_id", "message") + (("created_at",) if source_format == "langchain_postgres" else ())
    sql, columns = _select(conn, quote, table, wanted, "id")
    stamp = time.time()
    for row in _rows(conn, sql, batch_size):
        r = dict(zip(columns, row))
        session_id = str(r["session_id"])
        derived = f"{table}:{r['id']}"
        original = messages_from_dict([_json(r["message"], None)])[0]
        message = from_langchain(original, session_id=session_id, default_id=derived)
        if message.id != derived:  # the LangChain message had its own id: keep it for the way back
            metadata = dict(message.metadata)
            extras: Mapping[str, Any] = metadata.get(LANGCHAIN_KEY, {})
            metadata[LANGCHAIN_KEY] = {**extras, "id": original.id}
            message = message.replace(id=derived, metadata=metadata)
        yield _Message(session_id, message.replace(created_at=_epoch(r.get("created_at"), stamp)))


# -- writing ----------------------------------------------------------------------------------------------


def _write(store: ConversationStore, sessions: dict[str, ConversationSession], messages: Iterator[_Message],
           batch_size: int) -> ImportReport:
    created = imported = skipped = 0
    known: dict[str, set[str]] = {}

    def ensure(session_id: str) -> set[str]:
        """The ids the destination session holds; creates the session from the source's row if missing."""
        nonlocal created
        ids = known.get(session_id)
        if ids is None:
            if store.get_session(session_id) is None:
                source = sessions.get(session_id, ConversationSession(session_id=session_id))
                store.create_session(source)
                created += 1
                ids = set()
            else:
                ids = {m.id for m in store.get_messages(session_id)}
            known[session_id] = ids
        return ids

    pending: list[ConversationMessage] = []
    pending_ids: set[str] = set()
    current: str | None = None

    def flush() -> None:
        nonlocal imported
        if pending and current is not None:
            store.add_messages(current, pending)
            imported += len(pending)
            known[current].update(pending_ids)
            pending.clear()
            pending_ids.clear()

    for item in messages:
        if item.session_id != current:
            flush()
            current = item.session_id
        ids = ensure(item.session_id)
        if item.message.id in ids or item.message.id in pending_ids:
            skipped += 1
            continue
        pending.append(item.message)
        pending_ids.add(item.message.id)
        if len(pending) >= batch_size:
            flush()
    flush()
    for session_id in sessions:  # sessions without messages
        ensure(session_id)
    return ImportReport(created, imported, skipped)


__all__ = ["FORMATS", "ImportReport", "import_conversations"]
