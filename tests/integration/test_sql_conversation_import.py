"""``storebridge.importers.import_conversations`` from the tables our users are leaving, made by hand in
SQLite and PostgreSQL: PraisonAI's ``praison_sessions``/``praison_messages`` (current and older schema),
LangChain's ``SQLChatMessageHistory`` table and langchain-postgres' ``PostgresChatMessageHistory`` table.
Every import is run twice: the second run must import nothing."""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage, message_to_dict

from storebridge.adapters.sqlite.conversation import SQLiteConversationStore
from storebridge.conversation import ConversationStore
from storebridge.errors import ConfigurationError, InvalidIdentifierError
from storebridge.importers import import_conversations
from storebridge.integrations._langchain_messages import to_langchain
from tests.servers.postgres import PostgresServer, postgres_server, unique_prefix  # noqa: F401

pytestmark = pytest.mark.engine("postgres")

PRAISON_SESSIONS = ("CREATE TABLE {t}sessions (session_id TEXT PRIMARY KEY, user_id TEXT, agent_id TEXT, name TEXT, "
                    "state {json}, metadata {json}, created_at {real}, updated_at {real})")
PRAISON_MESSAGES = ("CREATE TABLE {t}messages (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, role TEXT NOT NULL, "
                    "content TEXT, tool_calls {json}, tool_call_id TEXT, metadata {json}, created_at {real})")
#: PraisonAI before tool calls were stored (no state, tool_calls, tool_call_id).
OLD_PRAISON_MESSAGES = ("CREATE TABLE {t}messages (id TEXT PRIMARY KEY, session_id TEXT NOT NULL, role TEXT NOT NULL, "
                        "content TEXT, metadata {json}, created_at {real})")

LANGCHAIN_HISTORY = [
    SystemMessage(content="be brief"),
    HumanMessage(content="weather in Paris? 🌧"),
    AIMessage(content="", id="run-abc", tool_calls=[{"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}],
              response_metadata={"model_name": "m"}),
    ToolMessage(content='{"temp": 12}', tool_call_id="call_1"),
    AIMessage(content="12°C and rain", additional_kwargs={"refusal": None}),
]


def praison_rows() -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    sessions = [("s-1", "u1", "a1", "first", json.dumps({"step": 2}), json.dumps({"m": [1]}), 1000.0, 1010.0),
                ("s-empty", None, None, None, None, None, 1100.0, 1100.0)]
    messages = [
        ("m-3", "s-1", "assistant", "", json.dumps([{"id": "c1", "type": "function",
                                                     "function": {"name": "f", "arguments": "{}"}}]),
         None, "{}", 1003.0),
        ("m-1", "s-1", "system", "sys", None, None, None, 1001.0),
        ("m-2", "s-1", "user", "hello ✓", None, None, json.dumps({"k": "v"}), 1002.0),
        ("m-4", "s-1", "tool", "result", None, "c1", "{}", 1004.0),
        ("m-5", "s-2", "user", "no session row", None, None, "{}", 1200.5),
    ]
    return sessions, messages


def fill_praison(conn: Any, mark: str, prefix: str, *, json_type: str, real: str, old: bool = False) -> None:
    cursor = conn.cursor()
    cursor.execute(PRAISON_SESSIONS.format(t=prefix, json=json_type, real=real))
    cursor.execute((OLD_PRAISON_MESSAGES if old else PRAISON_MESSAGES).format(t=prefix, json=json_type, real=real))
    sessions, messages = praison_rows()
    cursor.executemany(f"INSERT INTO {prefix}sessions VALUES ({', '.join([mark] * 8)})", sessions)
    if old:
        messages = [(m[0], m[1], m[2], m[3], m[6], m[7]) for m in messages]
    cursor.executemany(f"INSERT INTO {prefix}messages VALUES ({', '.join([mark] * len(messages[0]))})", messages)
    conn.commit()


def check_praison(store: ConversationStore, *, old: bool = False) -> None:
    got = store.get_messages("s-1")
    assert [m.id for m in got] == ["m-1", "m-2", "m-3", "m-4"], "ordered by created_at"
    assert [m.sequence for m in got] == [1, 2, 3, 4]
    assert got[1].content == "hello ✓" and got[1].metadata == {"k": "v"} and got[1].created_at == 1002.0
    if not old:
        assert got[2].tool_calls is not None and got[2].tool_calls[0]["id"] == "c1"
        assert got[3].tool_call_id == "c1"
    session = store.get_session("s-1")
    assert session is not None and session.user_id == "u1" and session.name == "first"
    assert session.state == {"step": 2} and session.metadata == {"m": [1]} and session.created_at == 1000.0
    assert store.get_session("s-empty") is not None, "a session without messages is imported too"
    assert [m.content for m in store.get_messages("s-2")] == ["no session row"]


def fill_langchain(conn: Any, mark: str, table: str, *, postgres: bool) -> dict[str, list[Any]]:
    """Two sessions of LangChain messages, interleaved, in the table layout of SQLChatMessageHistory
    (``postgres=False``) or PostgresChatMessageHistory (UUID session ids, JSONB, created_at)."""
    cursor = conn.cursor()
    if postgres:
        cursor.execute(f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, session_id UUID NOT NULL, "
                       "message JSONB NOT NULL, created_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT NOW())")
        sessions = [str(uuid.uuid4()), str(uuid.uuid4())]
    else:
        cursor.execute(f"CREATE TABLE {table} (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT, message TEXT)")
        sessions = ["alice", "bob"]
    history: dict[str, list[Any]] = {sid: [] for sid in sessions}
    for i, message in enumerate(LANGCHAIN_HISTORY):
        for sid in sessions:
            cursor.execute(f"INSERT INTO {table} (session_id, message) VALUES ({mark}, {mark})",
                           (sid, json.dumps(message_to_dict(message), ensure_ascii=False)))
            history[sid].append(message)
    conn.commit()
    return history


def check_langchain(store: ConversationStore, history: dict[str, list[Any]], table: str) -> None:
    for sid, originals in history.items():
        got = store.get_messages(sid)
        assert [to_langchain(m) for m in got] == originals, "exact LangChain messages back"
        assert all(m.id.startswith(f"{table}:") for m in got), "ids derived from the source rows"
        assert [m.role for m in got] == ["system", "user", "assistant", "tool", "assistant"]
        assert got[2].tool_calls and got[2].tool_calls[0]["function"]["name"] == "weather"


@pytest.fixture
def sqlite_dest(tmp_path: Path) -> Iterator[ConversationStore]:
    store = SQLiteConversationStore(path=tmp_path / "dest.db")
    yield store
    store.close()


@pytest.fixture
def pg_dest(postgres_server: PostgresServer) -> Iterator[ConversationStore]:  # noqa: F811
    from storebridge.adapters.postgres import PostgresConversationStore

    prefix = unique_prefix("sbm")
    store = PostgresConversationStore(postgres_server.url, table_prefix=prefix, max_size=2)
    yield store
    store.close()
    postgres_server.drop_prefix(prefix)


def twice(source: Any, dest: ConversationStore, **kwargs: Any) -> None:
    first = import_conversations(source, dest, **kwargs)
    assert first.messages_imported > 0 and first.messages_skipped == 0
    again = import_conversations(source, dest, **kwargs)
    assert (again.messages_imported, again.sessions_created) == (0, 0), "re-running imports nothing twice"
    assert again.messages_skipped == first.messages_imported


# -- SQLite sources ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("old", [False, True])
def test_praisonai_from_sqlite(tmp_path: Path, sqlite_dest: ConversationStore, pg_dest: ConversationStore,
                               old: bool) -> None:
    path = tmp_path / "praison.db"
    with sqlite3.connect(path) as conn:
        fill_praison(conn, "?", "praison_", json_type="TEXT", real="REAL", old=old)
    twice(f"sqlite:///{path}", sqlite_dest, source_format="praisonai")  # by URL
    check_praison(sqlite_dest, old=old)
    conn = sqlite3.connect(path)
    try:
        twice(conn, pg_dest, source_format="praisonai")  # by connection, into Postgres
    finally:
        conn.close()
    check_praison(pg_dest, old=old)


def test_langchain_sql_from_sqlite(tmp_path: Path, sqlite_dest: ConversationStore) -> None:
    path = tmp_path / "lc.db"
    with sqlite3.connect(path) as conn:
        history = fill_langchain(conn, "?", "message_store", postgres=False)
    twice(f"sqlite:///{path}", sqlite_dest, source_format="langchain_sql")
    check_langchain(sqlite_dest, history, "message_store")


def test_interrupted_import_completes(tmp_path: Path, sqlite_dest: ConversationStore) -> None:
    path = tmp_path / "lc.db"
    with sqlite3.connect(path) as conn:
        history = fill_langchain(conn, "?", "message_store", postgres=False)
    import_conversations(f"sqlite:///{path}", sqlite_dest, source_format="langchain_sql")
    sid = next(iter(history))
    written = sqlite_dest.get_messages(sid)
    sqlite_dest.delete_messages(sid, [m.id for m in written[2:]])  # as if it had stopped half-way
    report = import_conversations(f"sqlite:///{path}", sqlite_dest, source_format="langchain_sql")
    assert report.messages_imported == 3
    assert [m.id for m in sqlite_dest.get_messages(sid)] == [m.id for m in written]


def test_bad_arguments(tmp_path: Path, sqlite_dest: ConversationStore) -> None:
    with pytest.raises(ConfigurationError):
        import_conversations(f"sqlite:///{tmp_path / 'x.db'}", sqlite_dest, source_format="nope")
    with pytest.raises(InvalidIdentifierError):
        import_conversations(f"sqlite:///{tmp_path / 'x.db'}", sqlite_dest, source_format="langchain_sql",
                             table="x; DROP TABLE y")
    with pytest.raises(InvalidIdentifierError):
        import_conversations(f"sqlite:///{tmp_path / 'x.db'}", sqlite_dest, source_format="praisonai",
                             table_prefix="a'b")


# -- PostgreSQL sources -----------------------------------------------------------------------------------


def test_praisonai_from_postgres(postgres_server: PostgresServer,  # noqa: F811
                                 sqlite_dest: ConversationStore, pg_dest: ConversationStore) -> None:
    prefix = unique_prefix("praison")
    with postgres_server.connect() as conn:
        conn.autocommit = False
        fill_praison(conn, "%s", prefix, json_type="JSONB", real="DOUBLE PRECISION")
    try:
        twice(postgres_server.url, sqlite_dest, source_format="praisonai", table_prefix=prefix)
        check_praison(sqlite_dest)
        with postgres_server.connect() as conn:
            twice(conn, pg_dest, source_format="praisonai", table_prefix=prefix)
        check_praison(pg_dest)
    finally:
        postgres_server.drop_prefix(prefix, ("messages", "sessions"))


@pytest.mark.parametrize("source_format", ["langchain_postgres", "langchain_sql"])
def test_langchain_tables_from_postgres(postgres_server: PostgresServer,  # noqa: F811
                                        pg_dest: ConversationStore, source_format: str) -> None:
    table = unique_prefix("lc").rstrip("_")
    with postgres_server.connect() as conn:
        conn.autocommit = False
        if source_format == "langchain_postgres":
            history = fill_langchain(conn, "%s", table, postgres=True)
        else:  # SQLChatMessageHistory's table on Postgres (SERIAL id, TEXT message)
            conn.execute(f"CREATE TABLE {table} (id SERIAL PRIMARY KEY, session_id TEXT, message TEXT)")
            history = {"carol": []}
            for message in LANGCHAIN_HISTORY:
                conn.execute(f"INSERT INTO {table} (session_id, message) VALUES (%s, %s)",
                             ("carol", json.dumps(message_to_dict(message))))
                history["carol"].append(message)
            conn.commit()
    try:
        twice(postgres_server.url, pg_dest, source_format=source_format, table=table)
        check_langchain(pg_dest, history, table)
        if source_format == "langchain_postgres":
            stamps = [m.created_at for m in pg_dest.get_messages(next(iter(history)))]
            assert stamps == sorted(stamps) and abs(stamps[0] - __import__("time").time()) < 600
    finally:
        postgres_server.execute(f'DROP TABLE IF EXISTS "{table}"')
