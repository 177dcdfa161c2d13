"""db() and connect(): zero-config defaults, lazy race-free construction, URLs, masking."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

import pytest

import storebridge
from storebridge import ConversationMessage, KnowledgeDocument
from storebridge.database import infer_kind
from storebridge.errors import ConfigurationError, StoreClosedError


@pytest.fixture(autouse=True)
def _no_env_urls(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("STOREBRIDGE_CONVERSATION_URL", "STOREBRIDGE_KNOWLEDGE_URL", "STOREBRIDGE_STATE_URL"):
        monkeypatch.delenv(name, raising=False)


def test_zero_config_uses_one_file_from_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "nested" / "sb.db"
    monkeypatch.setenv("STOREBRIDGE_DB", str(target))
    with storebridge.db() as database:
        database.conversation.add_message("s", ConversationMessage(role="user", content="hello"))
        database.state.set("k", {"v": 1})
        database.knowledge.create_collection("docs", dimension=3)
        database.knowledge.upsert("docs", [KnowledgeDocument(id="d", content="x", embedding=[1.0, 0.0, 0.0])])
    assert target.exists()
    with storebridge.db() as again:  # resuming is opening the same session_id again
        assert [m.content for m in again.conversation.get_messages("s")] == ["hello"]
        assert again.state.get("k") == {"v": 1}
        assert again.knowledge.count("docs") == 1


def test_stores_are_built_once_under_threads(tmp_path: Path) -> None:
    database = storebridge.db(path=tmp_path / "x.db")
    seen: list[int] = []
    barrier = threading.Barrier(16)

    def grab() -> None:
        barrier.wait()
        seen.append(id(database.conversation))

    threads = [threading.Thread(target=grab) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1
    database.close()
    with pytest.raises(StoreClosedError):
        database.state.get("x")


def test_urls_choose_backends_and_async_faces_work(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/u.db"
    with storebridge.db(url, knowledge_url=url, state_url="memory://") as database:
        assert database.state.backend_name == "memory"
        assert database.conversation.backend_name == "sqlite"

        async def use_async() -> int:
            await database.async_state.set("n", 1)
            return await database.async_state.increment("n", 2)

        assert asyncio.run(use_async()) == 3


def test_env_urls_are_used_and_masked_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STOREBRIDGE_STATE_URL", "redis://user:hunter2@localhost:6379/0")
    text = repr(storebridge.db())
    assert "hunter2" not in text and "redis://user:***@localhost:6379/0" in text


def test_connect_infers_kind_or_asks(tmp_path: Path) -> None:
    assert infer_kind("postgresql+asyncpg://h/db") == "conversation"
    assert infer_kind("chroma+http://h:8000") == "knowledge"
    with pytest.raises(ConfigurationError, match="several kinds"):
        infer_kind("sqlite:///x.db")
    store = storebridge.connect(f"sqlite:///{tmp_path}/c.db", kind="state")
    store.set("a", b"bytes")
    assert store.get("a") == b"bytes"
    store.close()
    astore = storebridge.connect_async("memory://", kind="state")
    assert asyncio.run(astore.exists("nothing")) is False
