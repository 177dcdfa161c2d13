"""Unit tests of the ``surrealdb`` conversation store beyond the conformance suite: URL handling, values
that must stay data (hostile session and message ids), exact JSON round trips, the schema and its
version record, and sharing of embedded engines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storebridge import ConversationMessage, ConversationSession
from storebridge.adapters.surrealdb import SurrealDBConversationStore
from storebridge.adapters.surrealdb.conversation import resolve_url
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    SchemaVersionError,
    StoreClosedError,
    ValidationError,
)

HOSTILE = [
    "a'b", 'a"b', "a`b", "x⟩; DELETE sb_message; --", "⟨y⟩", "t:1", "sb_session:victim", "$sid", "[1, 2]",
    "{ }", "a\\b", "line\nbreak", "emoji 🚀", "   ", "NONE", "NULL", "0", "-1.5", "a..b", "x" * 512,
]


@pytest.fixture
def conn() -> Iterator[Any]:
    import surrealdb

    c = surrealdb.Surreal("mem://")
    c.connect()
    yield c
    c.close()


def test_resolve_url(tmp_path: Path) -> None:
    assert resolve_url("surrealdb+mem://", None)[0] == "mem://"
    assert resolve_url(f"surrealkv:///{tmp_path}/kv", None)[0] == f"surrealkv://{tmp_path}/kv"
    assert resolve_url(None, tmp_path / "kv")[0] == f"surrealkv://{tmp_path}/kv"
    url, query, creds = resolve_url("surrealdb://root:pw@db.example:8000/app/chat", None)
    assert (url, query["ns"], query["db"], creds) == ("ws://db.example:8000", "app", "chat",
                                                     {"username": "root", "password": "pw"})
    assert resolve_url("surrealdb+wss://db.example/rpc", None)[0] == "wss://db.example"
    assert resolve_url("surrealdb+http://db.example:8000?ns=a&db=b", None)[:2] == (
        "http://db.example:8000", {"ns": "a", "db": "b"})
    for bad in ("sqlite:///x.db", "surrealdb://", "surrealkv://"):
        with pytest.raises(ConfigurationError):
            resolve_url(bad, None)
    with pytest.raises(ConfigurationError):
        resolve_url("surrealdb+mem://", "x")


def test_hostile_ids_are_data(conn: Any) -> None:
    store = SurrealDBConversationStore(connection=conn)
    victim = store.add_message("victim", ConversationMessage(role="user", content="keep me"))
    for sid in HOSTILE:
        store.create_session(ConversationSession(session_id=sid, user_id=sid, name=sid, metadata={"sid": sid}))
        written = store.add_messages(sid, [ConversationMessage(id=mid, role="user", content=mid) for mid in HOSTILE])
        assert [m.sequence for m in written] == list(range(1, len(HOSTILE) + 1))
    for sid in HOSTILE:
        got = store.get_messages(sid)
        assert [(m.id, m.content, m.session_id) for m in got] == [(mid, mid, sid) for mid in HOSTILE]
        session = store.get_session(sid)
        assert session is not None and (session.user_id, session.name, session.metadata) == (sid, sid, {"sid": sid})
        assert [s.session_id for s in store.list_sessions(user_id=sid)] == [sid]
        assert store.delete_messages(sid, [HOSTILE[0], HOSTILE[3]]) == 2
    for sid in HOSTILE:
        assert store.delete_session(sid) is True
        assert store.count_messages(sid) == 0
    assert store.get_messages("victim") == [victim]
    store.close()


ROUND_TRIP = [
    {},
    {"none": None, "nested": {"none": None, "list": [None, 1, 1.0, -0.0, 2.5, "é"]}},
    {"float": 1.0, "int": 1, "big": 2**70, "neg": -(2**63), "tiny": 5e-324, "bool": True, "false": False},
    {"unicode": "日本語 🚀 \u200b", "keys ⟩'\"": {"$where": "x", "": ""}, "empty": [], "obj": {}},
]


def test_json_round_trips_exactly(conn: Any) -> None:
    store = SurrealDBConversationStore(connection=conn)
    tool_calls = [{"id": "c1", "function": {"name": "f", "arguments": '{"a": null}'}, "extra": None}]
    for i, meta in enumerate(ROUND_TRIP):
        store.create_session(ConversationSession(session_id=f"s{i}", state=meta, metadata=meta))
        store.add_message(f"s{i}", ConversationMessage(role="assistant", content="x", metadata=meta,
                                                        tool_calls=tool_calls))
        session = store.get_session(f"s{i}")
        assert session is not None and session.state == meta and session.metadata == meta
        [message] = store.get_messages(f"s{i}")
        assert message.metadata == meta and message.tool_calls == tool_calls
        assert repr(message.metadata) == repr(meta)  # 1.0 stays a float, 1 an int, key order kept


def test_typed_errors(conn: Any) -> None:
    store = SurrealDBConversationStore(connection=conn)
    store.create_session(ConversationSession(session_id="s"))
    with pytest.raises(AlreadyExistsError):
        store.create_session(ConversationSession(session_id="s"))
    store.add_message("s", ConversationMessage(id="m", role="user", content="a"))
    with pytest.raises(AlreadyExistsError, match="'m'"):
        store.add_messages("s", [ConversationMessage(id="n", role="user", content="b"),
                                 ConversationMessage(id="m", role="user", content="c")])
    assert [m.id for m in store.get_messages("s")] == ["m"]
    with pytest.raises(ValidationError):
        store.add_message("s", ConversationMessage(role="user", content="lone \ud800"))
    assert store.count_messages("s") == 1
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.get_session("s")
    conn.query("RETURN 1")  # a caller's connection is left open


def test_schema_and_version_record(conn: Any) -> None:
    SurrealDBConversationStore(connection=conn, table_prefix="app_", namespace="n1", database="d1").close()
    conn.use("n1", "d1")
    info = conn.query("INFO FOR TABLE app_message")
    assert "app_message_session_sequence" in str(info["indexes"])
    assert conn.query("SELECT VALUE version FROM app_schema_versions:conversation") == [1]
    conn.query("UPDATE app_schema_versions:conversation SET version = 99")
    with pytest.raises(SchemaVersionError):
        SurrealDBConversationStore(connection=conn, table_prefix="app_", namespace="n1", database="d1")


def test_namespaces_and_prefixes_are_separate(conn: Any) -> None:
    a = SurrealDBConversationStore(connection=conn, namespace="a")
    b = SurrealDBConversationStore(connection=conn, namespace="b")
    c = SurrealDBConversationStore(connection=conn, namespace="a", table_prefix="other_")
    a.add_message("s", ConversationMessage(role="user", content="a"))
    assert b.count_messages("s") == 0 and c.count_messages("s") == 0 and a.count_messages("s") == 1


def test_surrealkv_engine_shared_and_persistent(tmp_path: Path) -> None:
    url = f"surrealkv:///{tmp_path}/kv"
    one, two = SurrealDBConversationStore(url), SurrealDBConversationStore(path=tmp_path / "kv")
    assert one._engine is two._engine
    one.add_message("s", ConversationMessage(role="user", content="hi"))
    assert two.count_messages("s") == 1
    one.close()
    assert two.count_messages("s") == 1
    two.close()
    with SurrealDBConversationStore(url) as three:
        assert three.capabilities.persistent
        assert [m.content for m in three.get_messages("s")] == ["hi"]


def test_private_memory_engine() -> None:
    with SurrealDBConversationStore("surrealdb+mem://") as store:
        assert not store.capabilities.persistent and not store.capabilities.multi_process
        store.add_message("s", ConversationMessage(role="user", content="hi"))
    with SurrealDBConversationStore("surrealdb+mem://") as store:
        assert store.count_messages("s") == 0
