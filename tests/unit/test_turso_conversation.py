"""Unit tests of the ``turso`` conversation store beyond the conformance suite: URL handling, the
libsql error translation, interoperability with the ``sqlite`` store on one file."""

from __future__ import annotations

from pathlib import Path

import pytest

from storebridge import ConversationMessage, ConversationSession
from storebridge.adapters.sqlite.conversation import SQLiteConversationStore
from storebridge.adapters.turso import TursoConversationStore
from storebridge.adapters.turso.conversation import resolve_database
from storebridge.errors import AlreadyExistsError, ConfigurationError, StoreClosedError, ValidationError


def test_resolve_database_forms(tmp_path: Path) -> None:
    assert resolve_database(f"turso:///{tmp_path}/a.db", None) == (f"{tmp_path}/a.db", False, {})
    assert resolve_database("libsql:///rel.db", None) == ("rel.db", False, {})
    assert resolve_database(None, tmp_path / "b.db") == (str(tmp_path / "b.db"), False, {})
    assert resolve_database("libsql://db-org.turso.io?authToken=t", None) == (
        "libsql://db-org.turso.io", True, {"authToken": "t"})
    assert resolve_database("turso://db-org.turso.io", None)[:2] == ("libsql://db-org.turso.io", True)
    with pytest.raises(ConfigurationError):
        resolve_database("sqlite:///x.db", None)
    with pytest.raises(ConfigurationError):
        resolve_database("turso:///x.db", "x.db")


def test_auth_token_twice_differently_is_refused_and_masked() -> None:
    with pytest.raises(ConfigurationError) as info:
        TursoConversationStore("libsql://db-org.turso.io?authToken=secret1", auth_token="secret2")
    assert "secret1" not in str(info.value) and "secret2" not in str(info.value)


def test_memory_database_is_not_persistent() -> None:
    with TursoConversationStore("libsql:///:memory:") as store:
        assert not store.capabilities.persistent
        store.add_message("s", ConversationMessage(role="user", content="hi"))
        assert store.count_messages("s") == 1


def test_errors_are_typed(tmp_path: Path) -> None:
    store = TursoConversationStore(path=tmp_path / "c.db")
    store.create_session(ConversationSession(session_id="s"))
    with pytest.raises(AlreadyExistsError):
        store.create_session(ConversationSession(session_id="s"))
    with pytest.raises(ValidationError):
        store.add_message("s", ConversationMessage(role="user", content="lone \ud800 surrogate"))
    store.close()
    store.close()
    with pytest.raises(StoreClosedError):
        store.get_session("s")


def test_same_file_as_the_sqlite_store(tmp_path: Path) -> None:
    db = tmp_path / "shared.db"
    with TursoConversationStore(path=db) as turso:
        turso.add_messages("s", [ConversationMessage(id="a", role="user", content="é 🙂", metadata={"x": 1.0})])
    with SQLiteConversationStore(path=str(db)) as sqlite:
        (message,) = sqlite.get_messages("s")
        assert (message.id, message.content, message.metadata, message.sequence) == ("a", "é 🙂", {"x": 1.0}, 1)
        sqlite.add_message("s", ConversationMessage(id="b", role="assistant", content="ok"))
    with TursoConversationStore(f"turso:///{db}") as turso:
        assert [m.sequence for m in turso.get_messages("s")] == [1, 2]
        assert turso.delete_session("s") and turso.count_messages("s") == 0

