"""The conformance suite over the ``llamaindex`` backends (LlamaIndex stores wrapped as storebridge stores),
each wrapping LlamaIndex's own in-memory stores, plus what the suite does not cover.

:data:`LLAMAINDEX_ENGINES` are rows in the format of ``tests/engines.py`` (where they belong once the
registry rows are wired); the LlamaIndex-facing tests in this folder also run over them (see
:func:`backends`), so each direction is tested through the other.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.llms import ChatMessage
from llama_index.core.schema import TextNode
from llama_index.core.storage.chat_store import SimpleChatStore
from llama_index.core.vector_stores.simple import SimpleVectorStore
from llama_index.core.vector_stores.types import VectorStoreQuery

import storebridge
from storebridge import ConversationMessage, KnowledgeDocument
from storebridge.errors import (
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.registry import StoreRegistry
from storebridge.testing import ConversationStoreSuite, KnowledgeStoreSuite, StoreFactory
from tests.engines import Engine

#: The registry targets to fill in for the ``llamaindex`` rows of ``storebridge/_builtins.py``.
KNOWLEDGE_TARGET = "storebridge.adapters.llamaindex.knowledge:LlamaIndexKnowledgeStore"
CONVERSATION_TARGET = "storebridge.adapters.llamaindex.conversation:LlamaIndexConversationStore"


# -- engines: LlamaIndex's in-memory stores behind the llamaindex backends ----------------------------------


def shared_vector_stores() -> Any:
    """A ``vector_store_factory`` whose stores for one collection name are one ``SimpleVectorStore``, so a
    new storebridge store object sees the same data (as a new client of the same server would)."""
    stores: dict[str, SimpleVectorStore] = {}
    return lambda name: stores.setdefault(name, SimpleVectorStore())


def _llamaindex_knowledge(tmp_path: Path, request: pytest.FixtureRequest, **options: Any) -> StoreFactory:
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore
    from storebridge.adapters.memory import MemoryStateStore

    catalog, factory = MemoryStateStore.new_backing(), shared_vector_stores()
    return lambda: LlamaIndexKnowledgeStore(factory, catalog=MemoryStateStore(data=catalog), persistent=True,
                                            **options)


def _llamaindex_knowledge_no_pushdown(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    return _llamaindex_knowledge(tmp_path, request, pushdown_operators=())


def _llamaindex_conversation(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.llamaindex import LlamaIndexConversationStore
    from storebridge.adapters.memory import MemoryStateStore

    sessions, chat_store = MemoryStateStore.new_backing(), SimpleChatStore()
    return lambda: LlamaIndexConversationStore(chat_store, sessions=MemoryStateStore(data=sessions), persistent=True)


LLAMAINDEX_ENGINES: list[Engine] = [
    Engine("knowledge", "llamaindex", _llamaindex_knowledge),
    Engine("conversation", "llamaindex", _llamaindex_conversation),
]


def backends(kind: str) -> list[Engine]:
    """Every engine of ``kind`` the LlamaIndex-facing tests run over: ``tests/engines.py`` (the one list of
    engines) plus the LlamaIndex-backed rows above. Adding an engine there adds it here."""
    from tests.engines import ENGINES, SERVER_ENGINES

    return [engine for engine in [*ENGINES, *SERVER_ENGINES, *LLAMAINDEX_ENGINES] if engine.kind == kind]


def backend_params(kind: str, faces: tuple[str, ...] = ("sync", "async")) -> list[Any]:
    """``pytest.param((engine, face))`` per engine and face, id ``<engine>-<face>``."""
    return [pytest.param((engine, face), id=f"{engine.id}-{face}", marks=tuple(engine.marks))
            for engine in backends(kind) for face in faces]


def open_backend(request: pytest.FixtureRequest, tmp_path: Path, **options: Any) -> tuple[Any, Any]:
    """``(native store, face)`` for a ``backend_params`` parameter: the face is what the test hands to the
    LlamaIndex class (``as_sync()`` or ``as_async()`` of a new native store)."""
    engine, face = request.param
    native = engine.build(tmp_path, request)(**options)
    return native, native.as_sync() if face == "sync" else native.as_async()


def close_backend(native: Any) -> None:
    from storebridge._base import AsyncStore
    from storebridge.bridge import run_sync

    if isinstance(native, AsyncStore):
        run_sync(native.close())
    else:
        native.close()


# -- the conformance suite ------------------------------------------------------------------------------------


class TestLlamaIndexKnowledge(KnowledgeStoreSuite):
    """Default configuration: ``$eq``/``$in`` pre-filter in ``SimpleVectorStore``, exact refinement after."""

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _llamaindex_knowledge(tmp_path, request)


class TestLlamaIndexKnowledgeNoPushdown(KnowledgeStoreSuite):
    """Every filter evaluated by storebridge only (``pushdown_operators=()``)."""

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _llamaindex_knowledge_no_pushdown(tmp_path, request)


class TestLlamaIndexConversation(ConversationStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _llamaindex_conversation(tmp_path, request)


# -- the registry rows ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("registry", "target", "kind"), [
    (storebridge.KNOWLEDGE_STORES, KNOWLEDGE_TARGET, "knowledge"),
    (storebridge.CONVERSATION_STORES, CONVERSATION_TARGET, "conversation"),
], ids=["knowledge", "conversation"])
def test_registry_targets_load_with_defaults(registry: StoreRegistry, target: str, kind: str) -> None:
    """The declared ``llamaindex`` row (aliases, extra, requirement) with the target proposed for it makes a
    working zero-config store, under its name and its aliases."""
    spec = registry.spec("llamaindex")
    assert spec.aliases == ("llama_index", "llamaindex_adapter") and spec.extra == "llamaindex"
    assert spec.target in (None, target), f"the registry row points elsewhere: {spec.target}"
    wired = StoreRegistry(kind, "storebridge.none", [dataclasses.replace(spec, target=target)])  # type: ignore[arg-type]
    for name in ("llamaindex", "llama_index", "llamaindex-adapter"):
        with wired.create(name) as store:
            assert store.backend_name == "llamaindex"
            assert wired.create_async(name).capabilities == store.capabilities


# -- behaviour the suite does not cover -----------------------------------------------------------------------


def _docs(count: int, **metadata: Any) -> list[KnowledgeDocument]:
    return [KnowledgeDocument(id=f"d{i}", content=f"text {i}", embedding=[1.0, float(i), 0.5],
                              metadata={"i": i, **metadata}) for i in range(count)]


def test_pushdown_narrows_the_wrapped_query() -> None:
    """The declared operators reach ``SimpleVectorStore`` as flat MetadataFilters; the rest stays here."""
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    seen: list[Any] = []
    inner = SimpleVectorStore()
    original = inner.query

    class Spy(SimpleVectorStore):
        def query(self, query: VectorStoreQuery, **kwargs: Any) -> Any:
            seen.append(query.filters)
            return original(query, **kwargs)

    spy = Spy()
    spy.data = inner.data
    store = LlamaIndexKnowledgeStore(lambda name: spy)
    store.create_collection("c", 3)
    store.insert("c", _docs(20))
    hits = store.search("c", [1.0, 3.0, 0.5], k=3, filter={"i": {"$in": [1, 2, 15]}, "$not": {"i": 2}})
    assert sorted(h.id for h in hits) == ["d1", "d15"]
    [pushed] = seen
    assert pushed is not None and [(f.key, f.operator.value, f.value) for f in pushed.filters] == [("i", "in", [1, 2, 15])]
    seen.clear()
    store.search("c", [1.0, 3.0, 0.5], k=3, filter={"flag": True})  # a bool has no MetadataFilter form
    assert seen == [None]


def test_distance_not_ranked_by_the_wrapped_store_is_refused() -> None:
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    store = LlamaIndexKnowledgeStore()
    with pytest.raises(NotSupportedError, match="rank by 'cosine'"):
        store.create_collection("c", 3, "l2")
    dot = LlamaIndexKnowledgeStore(distance="dot")
    assert dot.create_collection("c", 3, "ip").distance is storebridge.Distance.DOT
    assert dot.capabilities.distances == frozenset({storebridge.Distance.DOT})


def test_wrapped_store_failures_are_typed() -> None:
    """A failing wrapped store raises ``OperationFailedError`` with its error as the cause; one lacking an
    operation raises ``NotSupportedError``; nothing reaches the catalog."""
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    class Broken(SimpleVectorStore):
        def add(self, nodes: Any, **kwargs: Any) -> list[str]:
            raise RuntimeError("disk on fire")

        def delete_nodes(self, node_ids: Any = None, filters: Any = None, **kwargs: Any) -> None:
            raise NotImplementedError("no")

    store = LlamaIndexKnowledgeStore(lambda name: Broken())
    store.create_collection("c", 3)
    with pytest.raises(OperationFailedError, match="disk on fire") as failure:
        store.insert("c", _docs(2))
    assert isinstance(failure.value.__cause__, RuntimeError)
    assert store.count("c") == 0

    store = LlamaIndexKnowledgeStore(lambda name: type("NoDelete", (SimpleVectorStore,), {
        "delete_nodes": Broken.delete_nodes})())
    store.create_collection("c", 3)
    store.insert("c", _docs(2))
    with pytest.raises(NotSupportedError, match="delete_nodes"):
        store.delete("c", ["d0"])
    assert store.count("c") == 2


def test_factory_must_return_a_vector_store() -> None:
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    store = LlamaIndexKnowledgeStore(lambda name: object())  # type: ignore[arg-type,return-value]
    with pytest.raises(StorebridgeError, match="not a LlamaIndex vector store"):
        store.create_collection("c", 3)


def test_wrapped_simple_vector_store_holds_plain_nodes() -> None:
    """What LlamaIndex sees in the wrapped store: the caller's metadata and ids, nothing of ours."""
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    inner = SimpleVectorStore()
    store = LlamaIndexKnowledgeStore(lambda name: inner)
    store.create_collection("c", 3)
    store.insert("c", [KnowledgeDocument(id="x", content="t", embedding=[1.0, 0.0, 0.0], metadata={"k": [1, {"a": None}]},
                                         source_id="src")])
    assert inner.data.embedding_dict == {"x": [1.0, 0.0, 0.0]}
    assert inner.data.text_id_to_ref_doc_id == {"x": "src"}
    assert inner.data.metadata_dict["x"]["k"] == [1, {"a": None}]


def test_conversation_messages_are_natural_llamaindex_messages() -> None:
    """Tool calls sit where LlamaIndex's LLMs read them; storebridge's identity in one extra key."""
    from storebridge.adapters.llamaindex import LlamaIndexConversationStore

    chat_store = SimpleChatStore()
    store = LlamaIndexConversationStore(chat_store)
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    store.add_messages("s", [ConversationMessage(role="assistant", content="", tool_calls=calls, metadata={"m": 1}),
                             ConversationMessage(role="tool", content="42", tool_call_id="c1")])
    first, second = chat_store.get_messages("s")
    assert first.role.value == "assistant" and first.additional_kwargs["tool_calls"] == calls
    assert second.additional_kwargs["tool_call_id"] == "c1" and second.content == "42"
    assert set(first.additional_kwargs) == {"tool_calls", "storebridge"}
    assert first.additional_kwargs["storebridge"]["metadata"] == {"m": 1}


def test_foreign_messages_are_refused_not_guessed() -> None:
    """A message appended to the key by LlamaIndex itself has no storebridge identity: reads and appends
    raise instead of inventing ids and sequences."""
    from storebridge.adapters.llamaindex import LlamaIndexConversationStore

    chat_store = SimpleChatStore()
    store = LlamaIndexConversationStore(chat_store)
    store.add_message("s", ConversationMessage(role="user", content="mine"))
    chat_store.add_message("s", ChatMessage(role="user", content="someone else's"))
    with pytest.raises(OperationFailedError, match="position 1"):
        store.get_messages("s")
    with pytest.raises(OperationFailedError, match="position 1"):
        store.add_message("s", ConversationMessage(role="user", content="more"))
    assert store.count_messages("s") == 2


def test_conversation_refuses_what_it_cannot_store() -> None:
    from storebridge.adapters.llamaindex import LlamaIndexConversationStore

    store = LlamaIndexConversationStore()
    with pytest.raises(ValidationError):
        store.add_message("s", ConversationMessage(role="user", content="x", metadata={"bad": float("nan")}))
    assert store.count_messages("s") == 0 and store.get_session("s") is None


def test_knowledge_nodes_given_to_the_wrapped_store_are_text_nodes() -> None:
    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    seen: list[Any] = []

    class Spy(SimpleVectorStore):
        def add(self, nodes: Any, **kwargs: Any) -> list[str]:
            seen.extend(nodes)
            return super().add(nodes, **kwargs)

    store = LlamaIndexKnowledgeStore(lambda name: Spy())
    store.create_collection("c", 3)
    store.insert("c", _docs(1))
    [node] = seen
    assert isinstance(node, TextNode) and node.node_id == "d0" and node.text == "text 0" and node.metadata == {"i": 0}


def test_concurrent_writes_and_searches() -> None:
    """Threads writing and searching one store object (as the async face's thread pool does) never see a
    half-written ``SimpleVectorStore``."""
    from concurrent.futures import ThreadPoolExecutor

    from storebridge.adapters.llamaindex import LlamaIndexKnowledgeStore

    store = LlamaIndexKnowledgeStore()
    store.create_collection("c", 3)

    def work(worker: int) -> None:
        for step in range(30):
            doc = KnowledgeDocument(id=f"{worker}-{step}", embedding=[1.0, float(step), float(worker)],
                                    metadata={"w": worker})
            store.upsert("c", [doc])
            assert store.search("c", [1.0, 1.0, 1.0], k=5, filter={"w": worker})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(work, range(8)))
    assert store.count("c") == 240
