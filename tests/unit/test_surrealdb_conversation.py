"""Unit tests of the ``surrealdb`` conversation store beyond the conformance suite: URL handling, values
that must stay data (hostile session and message ids), exact JSON round trips, the schema and its
version record, and sharing of embedded engines."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from storebridge import ConversationMessage, ConversationSession
from storebridge.adapters.surrealdb import SurrealDBConversationStore
from storebridge.adapters.surrealdb._connection import resolve_url
from storebridge.adapters.surrealdb.conversation import SCHEMA_VERSION
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

    c: Any = surrealdb.Surreal("mem://")  # embedded: the stubs only know ws/http
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
    for bad in ("sqlite:///x.db", "surrealdb://", "surrealkv://", "surrealdb+mem://?nss=x", "surrealkv:///d?token=t&x=1"):
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
    assert conn.query("SELECT VALUE version FROM app_schema_versions:conversation") == [SCHEMA_VERSION]
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
    assert one._conn.engine is two._conn.engine
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


NUL_TEXTS = ["a\x00b", "\x00", "\x00\x01", "\x01\x01", "\x01\x02", "\x01", "end\x00", "plain"]


def test_nul_in_ids_and_text_round_trips(conn: Any) -> None:
    """SurrealDB refuses NUL in record ids, index keys and results: the store escapes message ids, content,
    tool call ids, user/agent ids and names, injectively (the texts above stay apart)."""
    store = SurrealDBConversationStore(connection=conn)
    for i, text in enumerate(NUL_TEXTS):
        sid = f"s{i}"
        session = store.create_session(ConversationSession(session_id=sid, user_id=text, agent_id=text, name=text,
                                                           metadata={"k": text}))
        got = store.get_session(sid)
        assert got is not None and (got.user_id, got.agent_id, got.name, got.metadata) == (text, text, text, {"k": text})
        assert [s.session_id for s in store.list_sessions(user_id=text)] == [sid]
        assert [s.session_id for s in store.list_sessions(agent_id=text)] == [sid]
        assert session.user_id == text
    messages = [ConversationMessage(id=text, role="tool", content=text, tool_call_id=text, metadata={text: text})
                for text in NUL_TEXTS]
    store.add_messages("m", messages)
    got = store.get_messages("m")
    assert [(m.id, m.content, m.tool_call_id, m.metadata) for m in got] == \
        [(t, t, t, {t: t}) for t in NUL_TEXTS]
    with pytest.raises(AlreadyExistsError, match=re.escape(repr("a\x00b"))):
        store.add_messages("m", [ConversationMessage(id="a\x00b", role="user", content="again")])
    assert store.delete_messages("m", ["a\x00b", "\x01", "missing"]) == 2
    assert [m.id for m in store.get_messages("m")] == [t for t in NUL_TEXTS if t not in ("a\x00b", "\x01")]
    assert store.count_messages("m") == len(NUL_TEXTS) - 2
    store.close()


def test_version_1_tables_are_reencoded(conn: Any) -> None:
    """Version 1 stored text raw (NUL impossible); version 2 escapes ``\\x01``: an old database is upgraded
    in place, record ids included, and reads back what was written."""
    conn.use("storebridge", "storebridge")
    conn.query("CREATE sb_schema_versions:conversation SET version = 1")
    conn.query("CREATE type::thing('sb_session', 's') SET session_id = 's', user_id = $t, agent_id = $t, name = $t, "
               "state = '{}', metadata = '{}', created_at = 1.0, updated_at = 2.0, last_sequence = 2",
               {"t": "u\x01v"})
    for seq, (mid, text) in enumerate([("m\x01", "c\x01\x02"), ("plain", "plain")], start=1):
        conn.query("CREATE type::thing('sb_message', ['s', $mid]) SET session = 's', message_id = $mid, role = 'tool', "
                   "content = $text, tool_calls = NONE, tool_call_id = $text, metadata = '{}', created_at = 1.0, "
                   "sequence = $seq", {"mid": mid, "text": text, "seq": seq})
    store = SurrealDBConversationStore(connection=conn)
    assert conn.query("SELECT VALUE version FROM sb_schema_versions:conversation") == [SCHEMA_VERSION]
    session = store.get_session("s")
    assert session is not None and (session.user_id, session.agent_id, session.name) == ("u\x01v",) * 3
    assert [s.session_id for s in store.list_sessions(user_id="u\x01v")] == ["s"]
    got = store.get_messages("s")
    assert [(m.id, m.content, m.tool_call_id, m.sequence) for m in got] == [
        ("m\x01", "c\x01\x02", "c\x01\x02", 1), ("plain", "plain", "plain", 2)]
    with pytest.raises(AlreadyExistsError):
        store.add_messages("s", [ConversationMessage(id="m\x01", role="user", content="x")])
    assert store.delete_messages("s", ["m\x01"]) == 1
    store.close()
    SurrealDBConversationStore(connection=conn).close()  # already at version 2: nothing re-encoded twice
    assert SurrealDBConversationStore(connection=conn).get_messages("s")[0].content == "plain"
    reopened = SurrealDBConversationStore(connection=conn).get_session("s")
    assert reopened is not None and reopened.user_id == "u\x01v"
