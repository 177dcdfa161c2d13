"""SQLite conversation store: what the shared conformance suite cannot see (schema, migrations, table
prefixes, the SQL it stores, processes). The interface behaviour itself is in tests/conformance."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

from storebridge.adapters.sqlite import conversation as module
from storebridge.adapters.sqlite.conversation import MIGRATIONS, SQLiteConversationStore, async_sqlite_store
from storebridge.conversation import AsyncConversationStore
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    InvalidIdentifierError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)
from storebridge.migrations import Migration
from storebridge.models import ConversationMessage, ConversationSession


def message(content: str = "hi", **fields: Any) -> ConversationMessage:
    return ConversationMessage(role=fields.pop("role", "user"), content=content, **fields)


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "chat.db"


def raw(db: Path) -> sqlite3.Connection:
    return sqlite3.connect(db)


# -- schema and migrations --------------------------------------------------------------------------------


def test_migration_is_recorded(db: Path) -> None:
    SQLiteConversationStore(path=db).close()
    with raw(db) as conn:
        assert conn.execute("SELECT component, version FROM sb_schema_versions").fetchall() == [("conversation", 1)]
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"sb_sessions", "sb_messages", "sb_schema_versions"} <= tables
    assert {"sb_sessions_user_updated", "sb_sessions_agent_updated", "sb_sessions_updated",
            "sb_messages_session_sequence", "sb_messages_session_created"} <= indexes


def test_reopening_runs_no_migration_again(db: Path) -> None:
    store = SQLiteConversationStore(path=db)
    store.add_message("s", message("kept"))
    store.close()
    with raw(db) as conn:
        before = conn.execute("SELECT version, updated_at FROM sb_schema_versions").fetchall()
    store = SQLiteConversationStore(path=db)
    assert [m.content for m in store.get_messages("s")] == ["kept"]
    store.close()
    with raw(db) as conn:
        assert conn.execute("SELECT version, updated_at FROM sb_schema_versions").fetchall() == before


def test_a_later_step_alters_in_place_once(db: Path) -> None:
    """How a future version upgrades: append a step; old data stays, the step runs exactly once."""
    store = SQLiteConversationStore(path=db)
    old = store.add_message("s", message("from v1"))
    store.close()
    calls: list[str] = []

    class V2(SQLiteConversationStore):
        migrations = (*MIGRATIONS, Migration(2, "add a column", ("ALTER TABLE {prefix}messages ADD COLUMN extra TEXT",),
                                             apply=lambda cursor, prefix: calls.append(prefix)))

    with V2(path=db) as upgraded:
        assert [m.id for m in upgraded.get_messages("s")] == [old.id]
        upgraded.add_message("s", message("from v2"))
    with V2(path=db) as reopened:
        assert [m.content for m in reopened.get_messages("s")] == ["from v1", "from v2"]
    assert calls == ["sb_"]
    with raw(db) as conn:
        assert conn.execute("SELECT version FROM sb_schema_versions WHERE component = 'conversation'").fetchone() == (2,)
        assert "extra" in {r[1] for r in conn.execute("PRAGMA table_info(sb_messages)")}


def test_newer_schema_is_refused(db: Path) -> None:
    SQLiteConversationStore(path=db).close()
    with raw(db) as conn:
        conn.execute("UPDATE sb_schema_versions SET version = 99 WHERE component = 'conversation'")
    with pytest.raises(SchemaVersionError, match="99"):
        SQLiteConversationStore(path=db)


def test_table_prefixes_isolate_stores(db: Path) -> None:
    a = SQLiteConversationStore(path=db, table_prefix="app_a_")
    b = SQLiteConversationStore(path=db, table_prefix="")
    a.add_message("shared-id", message("for a"))
    b.add_messages("shared-id", [message("for b"), message("again b")])
    assert [m.content for m in a.get_messages("shared-id")] == ["for a"]
    assert [m.sequence for m in b.get_messages("shared-id")] == [1, 2]
    assert a.delete_session("shared-id") is True
    assert b.count_messages("shared-id") == 2
    a.close()
    b.close()
    with raw(db) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"app_a_sessions", "app_a_messages", "app_a_schema_versions", "sessions", "messages",
            "schema_versions"} <= tables


@pytest.mark.parametrize("prefix", ["1x", "a-b", "x; DROP TABLE y", "é", "a" * 40])
def test_bad_table_prefix_is_refused(db: Path, prefix: str) -> None:
    with pytest.raises(InvalidIdentifierError):
        SQLiteConversationStore(path=db, table_prefix=prefix)
    assert not db.exists(), "nothing may be created for a refused prefix"


# -- configuration ----------------------------------------------------------------------------------------


def test_url_path_and_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with SQLiteConversationStore(f"sqlite:///{tmp_path / 'url.db'}") as store:
        store.add_message("s", message())
    assert (tmp_path / "url.db").exists()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("STOREBRIDGE_DB", raising=False)
    with SQLiteConversationStore() as store:
        store.add_message("s", message())
    assert (tmp_path / ".storebridge" / "storebridge.db").exists()
    with pytest.raises(ConfigurationError):
        SQLiteConversationStore("sqlite:///a.db", path=tmp_path / "b.db")
    with pytest.raises(ConfigurationError):
        SQLiteConversationStore("postgresql://localhost/db")


@pytest.mark.parametrize(("durable", "level"), [(True, 2), (False, 1)])
def test_durable_sets_synchronous(db: Path, durable: bool, level: int) -> None:
    with SQLiteConversationStore(path=db, durable=durable) as store, store._conns.read() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == level
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_memory_store_is_not_persistent() -> None:
    with SQLiteConversationStore("sqlite:///:memory:") as store:
        assert store.capabilities.persistent is False
        store.add_message("s", message("in memory"))
        assert store.count_messages("s") == 1


# -- what is stored ---------------------------------------------------------------------------------------


def test_json_columns_are_plain_unicode_json(db: Path) -> None:
    with SQLiteConversationStore(path=db) as store:
        store.upsert_session(ConversationSession(session_id="s", state={"ü": [1, 2.5]}, metadata={"k": "é"}))
        store.add_message("s", message("x", role="assistant", tool_calls=[{"id": "c1", "args": "naïve"}],
                                       metadata={"emoji": "🚀", "none": None}))
    with raw(db) as conn:
        state, meta = conn.execute("SELECT state, metadata FROM sb_sessions").fetchone()
        tool_calls, mmeta = conn.execute("SELECT tool_calls, metadata FROM sb_messages").fetchone()
        assert conn.execute("SELECT json_valid(tool_calls) AND json_valid(metadata) FROM sb_messages").fetchone() == (1,)
    assert state == '{"ü":[1,2.5]}' and meta == '{"k":"é"}'
    assert json.loads(tool_calls) == [{"id": "c1", "args": "naïve"}] and "naïve" in tool_calls
    assert "🚀" in mmeta


def test_sql_looking_ids_are_data(db: Path) -> None:
    sid = "x'); DROP TABLE sb_messages; --"
    with SQLiteConversationStore(path=db) as store:
        store.add_message(sid, message("safe", id="'; DELETE FROM sb_sessions; --"))
        store.add_message("other", message("untouched"))
        assert [m.content for m in store.get_messages(sid)] == ["safe"]
        assert {s.session_id for s in store.list_sessions(user_id="' OR 1=1 --")} == set()
        assert store.count_messages("other") == 1


@pytest.mark.parametrize("bad", [{"x": float("nan")}, {"x": object()}, {"x": "\ud800"}])
def test_unstorable_metadata_is_a_validation_error(db: Path, bad: dict[str, Any]) -> None:
    with SQLiteConversationStore(path=db) as store:
        with pytest.raises(ValidationError):
            store.add_messages("s", [message("ok"), message("bad", metadata=bad)])
        assert store.count_messages("s") == 0
        assert store.get_session("s") is None, "a refused batch must not create the session"


def test_message_ids_are_unique_per_session(db: Path) -> None:
    """The interface's contract: an id is unique within its session; another session may reuse it."""
    with SQLiteConversationStore(path=db) as store:
        store.add_message("a", message("first", id="m1"))
        with pytest.raises(AlreadyExistsError, match="m1"):
            store.add_messages("a", [message("new"), message("dup", id="m1")])
        assert store.count_messages("a") == 1
        assert store.add_message("b", message("same id elsewhere", id="m1")).session_id == "b"
        assert [m.content for m in store.get_messages("a")] == ["first"]


def test_sequence_counter_survives_deletes(db: Path) -> None:
    with SQLiteConversationStore(path=db) as store:
        written = store.add_messages("s", [message(str(i)) for i in range(3)])
        assert store.delete_messages("s", [written[-1].id]) == 1
        assert store.add_message("s", message("next")).sequence == 4, "sequences are never re-used"
        assert store.delete_messages("s") == 3
        assert store.add_message("s", message("after clear")).sequence == 5


def test_delete_messages_refuses_a_bare_string(db: Path) -> None:
    with SQLiteConversationStore(path=db) as store:
        store.add_message("s", message(id="abc"))
        with pytest.raises(ValidationError):
            store.delete_messages("s", "abc")  # type: ignore[arg-type]
        assert store.delete_messages("s", ["abc", "abc"]) == 1


def test_fast_row_constructors_match_the_checked_ones() -> None:
    row = ("id1", "s", "tool", "c", '[{"a":1}]', "call", '{"k":[1,null]}', 12.5, 7)
    assert module._message_from_row(row) == module._checked_message_from_row(row)
    assert module._message_from_row(row[:6] + ("{}",) + row[7:]).metadata == {}
    m = message("x", tool_calls=[{"f": 1}], tool_call_id="t", metadata={"a": 1})
    assert module._sequenced(m, "s", 3) == m.replace(session_id="s", sequence=3)


# -- lifecycle, faces, processes --------------------------------------------------------------------------


def _open_handles(db: Path) -> int:
    """How many file descriptors of this process point at the database or its WAL files."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{fd}").startswith(str(db))
        except OSError:
            continue
    return count


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts open files through /proc")
def test_close_closes_every_thread_connection(db: Path) -> None:
    store = SQLiteConversationStore(path=db)
    opened, release = threading.Barrier(5), threading.Event()

    def use() -> None:
        store.count_messages("s")
        opened.wait()
        release.wait()
        with pytest.raises(StoreClosedError):  # a thread that still holds its connection
            store.count_messages("s")

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    opened.wait()  # four live threads, each with its own connection
    assert _open_handles(db) >= 4
    store.close()
    assert _open_handles(db) == 0
    release.set()
    for thread in threads:
        thread.join()
    with pytest.raises(StoreClosedError):
        store.add_message("s", message())
    store.close()


def test_async_sqlite_store_is_the_derived_face(db: Path) -> None:
    store = async_sqlite_store(path=db)
    assert isinstance(store, AsyncConversationStore)
    assert isinstance(store.as_sync(), SQLiteConversationStore)

    async def use() -> list[str]:
        await store.add_messages("s", [message("a"), message("b")])
        got = [m.content for m in await store.get_messages("s", limit=1)]
        await store.close()
        return got

    assert asyncio.run(use()) == ["b"]


_WRITER = textwrap.dedent("""
    import sys
    from storebridge.adapters.sqlite.conversation import SQLiteConversationStore
    from storebridge.models import ConversationMessage
    store = SQLiteConversationStore(path=sys.argv[1])
    for n in range(int(sys.argv[3])):
        store.add_message("shared", ConversationMessage(role="user", content=f"{sys.argv[2]}:{n}"))
    store.close()
""")


def test_several_processes_append_to_one_session(db: Path) -> None:
    SQLiteConversationStore(path=db).close()  # migrate once, before the writers race
    writers, per_writer = 4, 25
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, str(db), str(w), str(per_writer)])
             for w in range(writers)]
    assert [p.wait(timeout=120) for p in procs] == [0] * writers
    with SQLiteConversationStore(path=db) as store:
        got = store.get_messages("shared")
    assert [m.sequence for m in got] == list(range(1, writers * per_writer + 1))
    for w in range(writers):
        assert [m.content for m in got if m.content.startswith(f"{w}:")] == [f"{w}:{n}" for n in range(per_writer)]
