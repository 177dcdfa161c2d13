"""``storebridge copy``: knowledge, conversations and state between backends (SQLite, JSON files, and
the PostgreSQL server for sqlite -> postgres), resume after an interrupt, verification by counts, and
LangChain/PraisonAI-style tables through the importers."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import storebridge
from storebridge import ConversationMessage, ConversationSession, KnowledgeDocument
from storebridge.adapters.jsonfiles import JSONConversationStore
from storebridge.adapters.sqlite.knowledge import SQLiteKnowledgeStore
from storebridge.errors import ConnectionFailedError
from tests.servers.postgres import PostgresServer, postgres_server, unique_prefix  # noqa: F401

from .conftest import Invoke, assert_error_line


def _vector(i: int, dim: int = 4) -> list[float]:
    return [float((i * 7 + j) % 5) + 0.25 * j + 0.125 for j in range(dim)]


def seed_knowledge(url: str, collections: dict[str, int]) -> None:
    with storebridge.connect(url, kind="knowledge") as kb:
        for name, n in collections.items():
            kb.create_collection(name, 4, "l2" if name.endswith("l2") else "cosine")
            kb.upsert(name, [KnowledgeDocument(id=f"{name}-{i}", content=f"doc {i} \u00e9", embedding=_vector(i),
                                               metadata={"i": i, "tags": ["t", i % 2 == 0]}, source_id=f"src{i % 3}")
                             for i in range(n)])


def knowledge_snapshot(url: str) -> dict[str, Any]:
    with storebridge.connect(url, kind="knowledge") as kb:
        out: dict[str, Any] = {}
        for name in kb.list_collections():
            info = kb.get_collection(name)
            docs, cursor = [], None
            while True:
                page = kb.scroll(name, limit=100, cursor=cursor)
                docs += page.documents
                cursor = page.next_cursor
                if cursor is None:
                    break
            out[name] = (info.dimension, info.distance, sorted(docs, key=lambda d: d.id))
        return out


@pytest.fixture
def urls(workdir: Path) -> tuple[str, str]:
    return f"sqlite:///{workdir}/src.db", f"sqlite:///{workdir}/dst.db"


def test_knowledge_copy_all_collections(invoke: Invoke, urls: tuple[str, str]) -> None:
    src, dst = urls
    seed_knowledge(src, {"alpha": 7, "beta_l2": 5})
    result = invoke("copy", src, dst, "--kind", "knowledge", "--batch-size", "3")
    assert result.exit_code == 0, result.output
    assert "copy complete: counts match" in result.stdout
    assert "documents in alpha" in result.stdout and "collection beta_l2" in result.stderr  # the progress bars
    assert knowledge_snapshot(dst) == knowledge_snapshot(src)
    assert not list(Path().glob(".storebridge-copy-*.json")), "the checkpoint is removed after a complete copy"
    again = invoke("copy", src, dst, "--kind", "knowledge")  # upserts: copying again changes nothing
    assert again.exit_code == 0 and knowledge_snapshot(dst) == knowledge_snapshot(src)


def test_knowledge_copy_one_collection(invoke: Invoke, urls: tuple[str, str]) -> None:
    src, dst = urls
    seed_knowledge(src, {"alpha": 3, "beta": 2})
    assert invoke("copy", src, dst, "--kind", "knowledge", "--collection", "beta").exit_code == 0
    assert list(knowledge_snapshot(dst)) == ["beta"]
    assert_error_line(invoke("copy", src, dst, "--kind", "knowledge", "--collection", "nope"), "nope")


def test_kind_inference_and_refusals(invoke: Invoke, urls: tuple[str, str], workdir: Path) -> None:
    src, dst = urls
    assert_error_line(invoke("copy", src, dst), "several kinds", "--kind")
    assert_error_line(invoke("copy", src, "postgresql://u:pw-secret-x@127.0.0.1:1/db", "--kind", "knowledge"),
                      "is not a knowledge store URL")
    assert_error_line(invoke("copy", src, "nosuch://x"), "no backend of any kind handles")
    assert_error_line(invoke("copy", src, src, "--kind", "state"), "same store")
    assert_error_line(invoke("copy", src, dst, "--kind", "state", "--collection", "c"), "knowledge copies only")
    result = invoke("copy", f"json:///{workdir}/a", "memory://")
    assert_error_line(result, "share no kind")


def test_state_copy_keeps_values_types_and_ttls(invoke: Invoke, urls: tuple[str, str]) -> None:
    src, dst = urls
    with storebridge.connect(src + "?namespace=app", kind="state") as state:
        state.set_many({f"k{i:02d}": {"n": i} for i in range(12)})
        state.set("bytes", b"\x00\x01")
        state.set("text", "t\u00e9xt")
        state.set("ttl", 5, ttl=300)
    with storebridge.connect(src + "?namespace=other", kind="state") as state:
        state.set("not-copied", 1)
    result = invoke("copy", src + "?namespace=app", dst, "--kind", "state", "--batch-size", "5")
    assert result.exit_code == 0, result.output
    with storebridge.connect(src + "?namespace=app", kind="state") as a, storebridge.connect(dst, kind="state") as b:
        assert b.keys() == a.keys()
        assert b.get_many(b.keys()) == a.get_many(a.keys())
        assert b.get("bytes") == b"\x00\x01"
        remaining = b.ttl("ttl")
        assert remaining is not None and 290 < remaining <= 300
        assert b.ttl("k00") is None and not b.exists("not-copied")


def seed_conversations(url: str, sessions: int, per_session: int) -> None:
    with storebridge.connect(url, kind="conversation") as chat:
        for s in range(sessions):
            sid = f"session-{s:02d}"
            chat.create_session(ConversationSession(session_id=sid, user_id=f"u{s % 2}", metadata={"s": s},
                                                    created_at=1000.0 + s, updated_at=1000.5 + s))
            chat.add_messages(sid, [
                ConversationMessage(id=f"{sid}-m{i}", role="assistant" if i % 2 else "user", content=f"message {i}",
                                    tool_calls=[{"id": f"c{i}", "name": "f", "args": {"i": i}}] if i % 2 else None,
                                    created_at=2000.0 + i)
                for i in range(per_session)])


def conversation_snapshot(url: str) -> dict[str, Any]:
    with storebridge.connect(url, kind="conversation") as chat:
        return {s.session_id: (s.replace(updated_at=0), chat.get_messages(s.session_id))
                for s in chat.list_sessions(limit=None)}


def test_conversation_copy_sqlite_to_json(invoke: Invoke, workdir: Path) -> None:
    src, dst = f"sqlite:///{workdir}/src.db", f"json:///{workdir}/chats"
    seed_conversations(src, 4, 5)
    result = invoke("copy", src, dst, "--batch-size", "2")  # kind inferred: json:// is conversation only
    assert result.exit_code == 0, result.output
    assert conversation_snapshot(dst) == conversation_snapshot(src)


def _fail_on_call(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, fail_at: int,
                  error: Callable[[], BaseException]) -> dict[str, int]:
    """Patch ``cls.method`` to raise ``error()`` on call number ``fail_at`` (0: never) and count calls."""
    original = getattr(cls, method)
    calls = {"n": 0}

    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == fail_at:
            raise error()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(cls, method, patched)
    return calls


def test_knowledge_copy_resumes_after_an_interrupt(invoke: Invoke, urls: tuple[str, str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = urls
    seed_knowledge(src, {"alpha": 6, "beta": 10})  # batches of 3: alpha 2 writes, beta 4 writes
    with monkeypatch.context() as patch:
        _fail_on_call(patch, SQLiteKnowledgeStore, "upsert", 5, KeyboardInterrupt)  # beta's 3rd batch
        result = invoke("copy", src, dst, "--kind", "knowledge", "--batch-size", "3")
    assert_error_line(result, "interrupted", "--resume", code=130)
    [checkpoint] = list(Path().glob(".storebridge-copy-*.json"))
    stored = json.loads(checkpoint.read_text())
    assert stored["progress"]["collections"]["alpha"]["done"] is True
    assert stored["progress"]["collections"]["beta"]["copied"] == 6
    assert stored["about"]["source"] == src and stored["about"]["destination"] == dst
    assert {n: len(d) for n, (_, _, d) in knowledge_snapshot(dst).items()} == {"alpha": 6, "beta": 6}

    assert_error_line(invoke("copy", src, dst, "--kind", "knowledge", "--batch-size", "3"), "--resume", "--restart")

    with monkeypatch.context() as patch:
        calls = _fail_on_call(patch, SQLiteKnowledgeStore, "upsert", 0, KeyboardInterrupt)
        resumed = invoke("copy", src, dst, "--kind", "knowledge", "--batch-size", "3", "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert calls["n"] == 2, "only beta's two remaining batches were written"
    assert "resuming from" in resumed.stderr
    assert knowledge_snapshot(dst) == knowledge_snapshot(src)
    assert not checkpoint.exists()


def test_conversation_copy_resumes_after_a_failure(invoke: Invoke, workdir: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = f"sqlite:///{workdir}/src.db", f"json:///{workdir}/chats"
    seed_conversations(src, 5, 4)
    checkpoint = workdir / "cp" / "copy.json"
    with monkeypatch.context() as patch:
        _fail_on_call(patch, JSONConversationStore, "add_messages", 4,
                      lambda: ConnectionFailedError("disk went away (password=hunter2)"))
        result = invoke("copy", src, dst, "--batch-size", "2", "--checkpoint", str(checkpoint))
    line = assert_error_line(result, "the copy stopped", "disk went away", "--resume")
    assert "hunter2" not in line
    done = json.loads(checkpoint.read_text())["progress"]["sessions_done"]
    assert done == ["session-00"]  # session-01's second batch failed: it is redone, skipping what it holds
    with monkeypatch.context() as patch:
        calls = _fail_on_call(patch, JSONConversationStore, "add_messages", 0, KeyboardInterrupt)
        resumed = invoke("copy", src, dst, "--batch-size", "2", "--checkpoint", str(checkpoint), "--resume")
    assert resumed.exit_code == 0, resumed.output
    assert calls["n"] == 1 + 3 * 2, "session-01's missing batch, then two batches for each of the last three"
    assert conversation_snapshot(dst) == conversation_snapshot(src)
    assert not checkpoint.exists()


def test_restart_discards_the_checkpoint(invoke: Invoke, urls: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    src, dst = urls
    seed_knowledge(src, {"alpha": 6})
    with monkeypatch.context() as patch:
        _fail_on_call(patch, SQLiteKnowledgeStore, "upsert", 2, KeyboardInterrupt)
        assert invoke("copy", src, dst, "--kind", "knowledge", "--batch-size", "3").exit_code == 130
    with monkeypatch.context() as patch:
        calls = _fail_on_call(patch, SQLiteKnowledgeStore, "upsert", 0, KeyboardInterrupt)
        result = invoke("copy", src, dst, "--kind", "knowledge", "--batch-size", "3", "--restart")
    assert result.exit_code == 0 and calls["n"] == 2
    assert_error_line(invoke("copy", src, dst, "--kind", "knowledge", "--resume", "--restart"), "contradict")


def test_verification_reports_a_count_mismatch(invoke: Invoke, urls: tuple[str, str]) -> None:
    src, dst = urls
    seed_knowledge(src, {"alpha": 4})
    with storebridge.connect(dst, kind="knowledge") as kb:  # the destination already holds another document
        kb.create_collection("alpha", 4, "cosine")
        kb.upsert("alpha", [KnowledgeDocument(id="extra", content="x", embedding=_vector(99))])
    result = invoke("copy", src, dst, "--kind", "knowledge")
    assert_error_line(result, "verification failed", "documents in alpha: source 4, destination 5")
    assert "MISMATCH" in result.stdout


def test_dimension_conflict_is_an_error(invoke: Invoke, urls: tuple[str, str]) -> None:
    src, dst = urls
    seed_knowledge(src, {"alpha": 2})
    with storebridge.connect(dst, kind="knowledge") as kb:
        kb.create_collection("alpha", 8, "cosine")
    result = invoke("copy", src, dst, "--kind", "knowledge")
    assert_error_line(result, "alpha")
    assert list(Path().glob(".storebridge-copy-*.json")), "a failed copy keeps its checkpoint"


@pytest.fixture
def pg_prefix(postgres_server: PostgresServer) -> Iterator[str]:  # noqa: F811
    prefix = unique_prefix("clicp")
    yield prefix
    postgres_server.drop_prefix(prefix)


def test_conversation_copy_sqlite_to_postgres(invoke: Invoke, workdir: Path, postgres_server: PostgresServer,  # noqa: F811
                                              pg_prefix: str) -> None:
    src = f"sqlite:///{workdir}/src.db"
    seed_conversations(src, 3, 6)
    started = time.time()
    result = invoke("copy", src, postgres_server.url, "--dst-option", f"table_prefix={pg_prefix}",
                    "--dst-option", "min_size=0", "--batch-size", "4")
    assert result.exit_code == 0, result.output
    assert "sessions" in result.stdout and "copy complete" in result.stdout
    with storebridge.connect(postgres_server.url, kind="conversation", table_prefix=pg_prefix) as pg:
        for sid, (session, messages) in conversation_snapshot(src).items():
            copied = pg.get_session(sid)
            assert copied is not None and copied.replace(updated_at=0) == session
            assert copied.updated_at >= started  # appending sets it (documented)
            assert pg.get_messages(sid) == messages
    listed = json.loads(invoke("sessions", "list", "--url", postgres_server.url, "-O", f"table_prefix={pg_prefix}",
                               "--json").stdout)
    assert sorted(r["session_id"] for r in listed) == ["session-00", "session-01", "session-02"]


def _praison_db(path: Path) -> None:
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE praison_sessions (session_id TEXT, user_id TEXT, agent_id TEXT, name TEXT, "
                 "state TEXT, metadata TEXT, created_at REAL, updated_at REAL)")
    conn.execute("CREATE TABLE praison_messages (id TEXT, session_id TEXT, role TEXT, content TEXT, tool_calls TEXT, "
                 "tool_call_id TEXT, metadata TEXT, created_at REAL)")
    conn.execute("INSERT INTO praison_sessions VALUES ('p1', 'ann', 'bot', 'trip', '{}', '{}', 10.0, 11.0)")
    calls = json.dumps([{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}])
    conn.executemany("INSERT INTO praison_messages VALUES (?, ?, ?, ?, ?, ?, ?, ?)", [
        ("x1", "p1", "user", "hi", None, None, "{}", 12.0),
        ("x2", "p1", "assistant", "", calls, None, "{}", 13.0),
        ("x3", "p1", "tool", "done", None, "c1", "{}", 14.0),
        ("x4", "p2", "user", "orphan session", None, None, "{}", 15.0),
    ])
    conn.commit()
    conn.close()


def test_copy_from_praisonai_tables(invoke: Invoke, workdir: Path) -> None:
    _praison_db(workdir / "praison.db")
    src, dst = f"sqlite:///{workdir}/praison.db", f"json:///{workdir}/chats"
    result = invoke("copy", src, dst, "--from-format", "praisonai")
    assert result.exit_code == 0, result.output
    assert "2 session(s) created, 4 message(s) added" in result.stderr
    assert "copy complete" in result.stdout
    with storebridge.connect(dst, kind="conversation") as chat:
        got = chat.get_messages("p1")
        assert [m.id for m in got] == ["x1", "x2", "x3"]
        assert got[1].tool_calls and got[1].tool_calls[0]["id"] == "c1" and got[2].tool_call_id == "c1"
    again = invoke("copy", src, dst, "--from-format", "praisonai")
    assert again.exit_code == 0 and "0 message(s) added, 4 already there" in again.stderr
    assert_error_line(invoke("copy", src, dst, "--from-format", "praisonai", "--resume"), "idempotent")
    assert_error_line(invoke("copy", src, dst, "--from-format", "praisonai", "--kind", "state"), "conversations")


def test_state_copy_into_a_memory_snapshot(invoke: Invoke, urls: tuple[str, str], workdir: Path) -> None:
    src, _ = urls
    with storebridge.connect(src, kind="state") as state:
        state.set_many({"a": 1, "b": [1, 2]})
        state.set("c", "short-lived", ttl=120)
    snapshot = workdir / "snap.json"
    result = invoke("copy", src, "memory://", "--kind", "state", "--dst-option", f"snapshot_path={snapshot}")
    assert result.exit_code == 0, result.output
    restored = storebridge.STATE_STORES.create("memory", snapshot_path=snapshot)
    assert restored.get_many(["a", "b", "c"]) == {"a": 1, "b": [1, 2], "c": "short-lived"}
    ttl = restored.ttl("c")
    assert ttl is not None and 100 < ttl <= 120 and restored.ttl("a") is None


def test_copy_from_a_langchain_sql_history_table(invoke: Invoke, workdir: Path) -> None:
    from langchain_core.messages import AIMessage, HumanMessage, message_to_dict

    conn = sqlite3.connect(workdir / "lc.db")
    conn.execute("CREATE TABLE chats (id INTEGER PRIMARY KEY AUTOINCREMENT, session_id TEXT, message TEXT)")
    history = [HumanMessage(content="hi"), AIMessage(content="", tool_calls=[{"name": "f", "args": {"x": 1},
                                                                              "id": "t1"}])]
    conn.executemany("INSERT INTO chats (session_id, message) VALUES (?, ?)",
                     [(sid, json.dumps(message_to_dict(m))) for sid in ("alice", "bob") for m in history])
    conn.commit()
    conn.close()
    dst = f"json:///{workdir}/chats"
    result = invoke("copy", f"sqlite:///{workdir}/lc.db", dst, "--from-format", "langchain_sql",
                    "--source-table", "chats")
    assert result.exit_code == 0, result.output
    with storebridge.connect(dst, kind="conversation") as chat:
        for sid in ("alice", "bob"):
            got = chat.get_messages(sid)
            assert [m.role for m in got] == ["user", "assistant"]
            assert got[1].tool_calls and got[1].tool_calls[0]["function"]["name"] == "f"
    assert_error_line(invoke("copy", f"sqlite:///{workdir}/lc.db", dst, "--from-format", "langchain_sql"),
                      "message_store")  # the default table name does not exist there
