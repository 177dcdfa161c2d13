"""``StorebridgeLangGraphStore`` with LangGraph's own usage patterns (put/get/search/list_namespaces/delete,
semantic search, TTL, a compiled graph whose nodes use the store), over every state backend (and every
knowledge backend for semantic search)."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TypedDict

import pytest

pytest.importorskip("langgraph")

from langchain_core.embeddings import Embeddings
from langgraph.store.base import BaseStore, GetOp, InvalidNamespaceError, PutOp

from storebridge.errors import UnsupportedFilterError
from storebridge.integrations.langgraph import StorebridgeLangGraphStore
from storebridge.testing import unique
from tests.integrations.test_langchain_backends import backend_params, close_backend, open_backend

pytestmark = pytest.mark.asyncio


class WordEmbeddings(Embeddings):
    WORDS = ("pizza", "pasta", "python", "rust", "hiking", "music")

    def embed_query(self, text: str) -> list[float]:
        vector = [float(text.lower().count(word)) for word in self.WORDS] + [0.01]
        norm = math.sqrt(sum(x * x for x in vector))
        return [x / norm for x in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.embed_query(t) for t in texts]


INDEX = {"dims": len(WordEmbeddings.WORDS) + 1, "embed": WordEmbeddings(), "fields": ["text"]}


@pytest.fixture(params=backend_params("state"))
def state(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    native, face = open_backend(request, tmp_path, namespace=unique("lg", 8))
    try:
        yield face
    finally:
        close_backend(native)


@pytest.fixture(params=backend_params("knowledge"))
def knowledge(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    native, face = open_backend(request, tmp_path)
    try:
        yield face
    finally:
        close_backend(native)


@pytest.fixture
def semantic_state(tmp_path: Path) -> Iterator[Any]:
    from storebridge.adapters.sqlite.state import SQLiteStateStore

    with SQLiteStateStore(path=str(tmp_path / "items.db")) as store:
        yield store


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_key_value_and_filters(state: Any, flavour: str) -> None:
    store = StorebridgeLangGraphStore(state)

    async def do(method: str, *args: Any, **kwargs: Any) -> Any:
        if flavour == "sync":
            return getattr(store, method)(*args, **kwargs)
        return await getattr(store, "a" + method)(*args, **kwargs)

    await do("put", ("users", "u1", "memories"), "m1", {"text": "likes pizza", "score": 5, "meta": {"src": "chat"}})
    await do("put", ("users", "u1", "memories"), "m.2", {"text": "writes rust", "score": 2, "tags": ["dev"]})
    await do("put", ("users", "u2", "memories"), "m1", {"text": "hiking", "score": 9})
    await do("put", ("users", "u1"), "profile", {"name": "Ann"})
    item = await do("get", ("users", "u1", "memories"), "m1")
    assert item.value == {"text": "likes pizza", "score": 5, "meta": {"src": "chat"}}
    assert (item.key, item.namespace) == ("m1", ("users", "u1", "memories"))
    assert item.created_at.tzinfo is not None and item.created_at <= item.updated_at
    assert await do("get", ("users", "u1", "memories"), "missing") is None

    everything = await do("search", ("users",))
    assert {(i.namespace, i.key) for i in everything} == {
        (("users", "u1", "memories"), "m1"), (("users", "u1", "memories"), "m.2"),
        (("users", "u2", "memories"), "m1"), (("users", "u1"), "profile")}
    assert all(i.score is None for i in everything)
    assert [i.key for i in await do("search", ("users", "u1", "memories"), filter={"score": {"$gte": 3}})] == ["m1"]
    assert [i.key for i in await do("search", ("users",), filter={"meta": {"src": "chat"}})] == ["m1"]
    assert [i.key for i in await do("search", ("users",), filter={"tags": {"$contains": "dev"}})] == ["m.2"]
    page = await do("search", ("users",), limit=2, offset=1)
    assert [(i.namespace, i.key) for i in page] == [(i.namespace, i.key) for i in everything[1:3]]
    assert await do("search", ("user",)) == []  # a label prefix is not a namespace prefix
    with pytest.raises(UnsupportedFilterError):
        await do("search", ("users",), filter={"tags": ["dev"]})

    assert await do("list_namespaces") == [("users", "u1"), ("users", "u1", "memories"), ("users", "u2", "memories")]
    assert await do("list_namespaces", prefix=("users", "u1")) == [("users", "u1"), ("users", "u1", "memories")]
    assert await do("list_namespaces", suffix=("memories",)) == [("users", "u1", "memories"),
                                                                  ("users", "u2", "memories")]
    assert await do("list_namespaces", prefix=("users", "*", "memories")) == [("users", "u1", "memories"),
                                                                               ("users", "u2", "memories")]
    assert await do("list_namespaces", max_depth=2) == [("users", "u1"), ("users", "u2")]
    assert await do("list_namespaces", limit=1, offset=1) == [("users", "u1", "memories")]

    created = item.created_at
    await do("put", ("users", "u1", "memories"), "m1", {"text": "likes pasta"})
    updated = await do("get", ("users", "u1", "memories"), "m1")
    assert updated.value == {"text": "likes pasta"} and updated.created_at == created < updated.updated_at
    await do("delete", ("users", "u1", "memories"), "m1")
    assert await do("get", ("users", "u1", "memories"), "m1") is None
    with pytest.raises(InvalidNamespaceError):
        await do("put", ("bad.label",), "k", {"v": 1})


async def test_batch_runs_in_order(state: Any) -> None:
    store = StorebridgeLangGraphStore(state)
    ns = ("batch",)
    results = store.batch([PutOp(ns, "k", {"v": 1}), GetOp(ns, "k"), PutOp(ns, "k", None), GetOp(ns, "k")])
    assert results[0] is None and results[1].value == {"v": 1} and results[2] is None and results[3] is None
    results = await store.abatch([PutOp(ns, "k", {"v": 2}), GetOp(ns, "k")])
    assert results[1].value == {"v": 2}


async def test_ttl_in_minutes_expires_items(state: Any) -> None:
    store = StorebridgeLangGraphStore(state)
    ttl = 1.0  # seconds: long enough for the checks below on a server-backed store (moto: ~5-20 ms per request)
    store.put(("t",), "short", {"v": 1}, ttl=ttl / 60)  # LangGraph TTLs are minutes
    expires = time.monotonic() + ttl
    store.put(("t",), "kept", {"v": 2})
    assert store.get(("t",), "short") is not None
    await asyncio.sleep(max(0.0, expires - time.monotonic()) + 0.3)
    assert store.get(("t",), "short") is None
    assert [i.key for i in store.search(("t",))] == ["kept"]


@pytest.mark.parametrize("flavour", ["sync", "async"])
async def test_semantic_search(semantic_state: Any, knowledge: Any, flavour: str) -> None:
    store = StorebridgeLangGraphStore(semantic_state, knowledge=knowledge, index=INDEX, collection=unique("lg_"))
    put = store.put if flavour == "sync" else None
    items = [
        (("u1", "memories"), "a", {"text": "loves pizza and pasta", "kind": "food"}),
        (("u1", "memories"), "b", {"text": "codes python", "kind": "work"}),
        (("u1", "memories"), "c", {"text": "goes hiking", "kind": "hobby"}),
        (("u2", "memories"), "d", {"text": "pizza every day", "kind": "food"}),
        (("u1", "memories"), "e", {"text": "pizza notes, not indexed", "kind": "food"}),
    ]
    for namespace, key, value in items:
        index = False if key == "e" else None
        if put is not None:
            put(namespace, key, value, index=index)
        else:
            await store.aput(namespace, key, value, index=index)

    async def search(*args: Any, **kwargs: Any) -> list[Any]:
        if flavour == "sync":
            return store.search(*args, **kwargs)
        return await store.asearch(*args, **kwargs)

    ranked = await search(("u1",), query="pizza", limit=2)
    assert len(ranked) == 2 and ranked[0].key == "a"  # the second is a tie at ~0 (no shared word)
    query, text = WordEmbeddings().embed_query("pizza"), WordEmbeddings().embed_query("loves pizza and pasta")
    assert ranked[0].score == pytest.approx(sum(a * b for a, b in zip(query, text)))  # cosine of unit vectors
    assert [i.key for i in await search(("u2",), query="pizza")] == ["d"]
    python = await search(("u1",), query="python", filter={"kind": "work"})
    assert [i.key for i in python] == ["b"]
    with_unindexed = await search(("u1",), query="pizza", limit=10)
    assert [i.key for i in with_unindexed][-1] == "e" and with_unindexed[-1].score is None
    # re-indexing a different field replaces the item's vectors
    store.put(("u1", "memories"), "c", {"text": "now into music", "kind": "hobby"})
    assert [i.key for i in await search(("u1",), query="music", limit=1)] == ["c"]
    store.delete(("u1", "memories"), "a")
    assert "a" not in [i.key for i in await search(("u1",), query="pizza", limit=10)]


class Memory(TypedDict):
    user: str
    note: str
    recalled: list[str]


async def test_compiled_graph_uses_the_store(state: Any) -> None:
    """A LangGraph graph whose node writes and reads long-term memory through ``get_store()``."""
    from langgraph.config import get_store
    from langgraph.graph import END, START, StateGraph

    def remember(data: Memory) -> dict[str, Any]:
        memory: BaseStore = get_store()
        memory.put(("memories", data["user"]), unique("m"), {"note": data["note"]})
        return {"recalled": sorted(i.value["note"] for i in memory.search(("memories", data["user"])))}

    graph = StateGraph(Memory)
    graph.add_node("remember", remember)  # type: ignore[call-overload]
    graph.add_edge(START, "remember")
    graph.add_edge("remember", END)
    app = graph.compile(store=StorebridgeLangGraphStore(state))
    app.invoke({"user": "ann", "note": "likes tea", "recalled": []})
    result = app.invoke({"user": "ann", "note": "hates rain", "recalled": []})
    assert result["recalled"] == ["hates rain", "likes tea"]
    other = await app.ainvoke({"user": "bob", "note": "plays chess", "recalled": []})
    assert other["recalled"] == ["plays chess"]
