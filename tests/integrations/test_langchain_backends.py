"""The conformance suite over the ``langchain`` backends (LangChain stores wrapped as storebridge stores),
each wrapping LangChain's own in-memory store, plus the registry wiring of those backends.

:data:`LANGCHAIN_ENGINES` are rows in the format of ``tests/engines.py`` (where they belong once merged);
the LangChain-facing tests in this folder also run over them, so each direction is tested through the other.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("langchain_core")

from langchain_core.chat_history import InMemoryChatMessageHistory
from langchain_core.embeddings import DeterministicFakeEmbedding
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.stores import InMemoryByteStore
from langchain_core.vectorstores import InMemoryVectorStore

import storebridge
from storebridge import ConversationMessage, KnowledgeDocument
from storebridge.errors import NotSupportedError, UnsupportedFilterError
from storebridge.testing import (
    ConversationStoreSuite,
    KnowledgeStoreSuite,
    StateStoreSuite,
    StoreFacade,
    StoreFactory,
)
from tests.engines import Engine

pytestmark = pytest.mark.filterwarnings("ignore::langchain_core._api.deprecation.LangChainDeprecationWarning")


# -- engines: LangChain's in-memory stores behind the langchain backends ------------------------------------


def shared_vectorstores(embeddings: Any = None) -> Any:
    """A ``vectorstore_factory`` whose stores for one collection name share their documents: each call is a
    new ``InMemoryVectorStore`` object over the same dict (as a new client over the same server would be)."""
    data: dict[str, dict[str, Any]] = {}

    def factory(name: str, passthrough: Any) -> InMemoryVectorStore:
        store = InMemoryVectorStore(passthrough)
        store.store = data.setdefault(name, {})
        return store

    return factory


def shared_histories() -> Any:
    """A ``history_factory`` returning one ``InMemoryChatMessageHistory`` per session id."""
    histories: dict[str, InMemoryChatMessageHistory] = {}

    def factory(session_id: str) -> InMemoryChatMessageHistory:
        if session_id not in histories:
            histories[session_id] = InMemoryChatMessageHistory()
        return histories[session_id]

    return factory


def _langchain_knowledge(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.langchain.knowledge import LangChainKnowledgeStore
    from storebridge.adapters.memory import MemoryStateStore

    catalog, factory = MemoryStateStore.new_backing(), shared_vectorstores()
    return lambda: LangChainKnowledgeStore(factory, catalog=MemoryStateStore(data=catalog), persistent=True)


def _langchain_conversation(tmp_path: Path, request: pytest.FixtureRequest, *,
                            rewrite_on_delete: bool = True) -> StoreFactory:
    from storebridge.adapters.langchain.conversation import LangChainConversationStore
    from storebridge.adapters.memory import MemoryStateStore

    sessions, histories = MemoryStateStore.new_backing(), shared_histories()
    return lambda: LangChainConversationStore(histories, sessions=MemoryStateStore(data=sessions), persistent=True,
                                              rewrite_on_delete=rewrite_on_delete)


def _langchain_conversation_append_only(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    return _langchain_conversation(tmp_path, request, rewrite_on_delete=False)


def _langchain_state(tmp_path: Path, request: pytest.FixtureRequest) -> StoreFactory:
    from storebridge.adapters.langchain.state import LangChainStateStore

    shared = InMemoryByteStore()
    return lambda namespace="": LangChainStateStore(shared, namespace=namespace, persistent=True)


LANGCHAIN_ENGINES: list[Engine] = [
    Engine("knowledge", "langchain", _langchain_knowledge),
    Engine("conversation", "langchain", _langchain_conversation),
    Engine("state", "langchain", _langchain_state),
]


def backends(kind: str) -> list[Engine]:
    """Every engine of ``kind`` the LangChain-facing tests run over: ``tests/engines.py`` (the one list of
    engines, and its server-backed engines that run here) plus the LangChain-backed rows above. Adding an
    engine there adds it here."""
    from tests.engines import ENGINES, SERVER_ENGINES

    return [engine for engine in [*ENGINES, *SERVER_ENGINES, *LANGCHAIN_ENGINES] if engine.kind == kind]


def backend_params(kind: str, faces: tuple[str, ...] = ("sync", "async")) -> list[Any]:
    """``pytest.param((engine, face))`` per engine and face, id ``<engine>-<face>``."""
    return [pytest.param((engine, face), id=f"{engine.id}-{face}", marks=tuple(engine.marks))
            for engine in backends(kind) for face in faces]


def open_backend(request: pytest.FixtureRequest, tmp_path: Path, **options: Any) -> tuple[Any, Any]:
    """``(native store, face)`` for a ``backend_params`` parameter: the face is what the test hands to the
    LangChain class (``as_sync()`` or ``as_async()`` of a new native store)."""
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


def _build(request: pytest.FixtureRequest, tmp_path: Path, build: Any) -> StoreFactory:
    return build(tmp_path, request)  # type: ignore[no-any-return]


# -- the conformance suite ------------------------------------------------------------------------------------


class TestLangChainKnowledge(KnowledgeStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _build(request, tmp_path, _langchain_knowledge)


class TestLangChainConversation(ConversationStoreSuite):
    """``rewrite_on_delete=True``: single messages are deleted by rewriting the history."""

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _build(request, tmp_path, _langchain_conversation)


class TestLangChainAppendOnlyConversation(ConversationStoreSuite):
    """The default configuration: a LangChain history cannot lose single messages; the store declares
    ``delete_messages_by_id=False`` and the suite expects ``NotSupportedError`` for it."""

    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _build(request, tmp_path, _langchain_conversation_append_only)


class TestLangChainState(StateStoreSuite):
    @pytest.fixture
    def store_factory(self, request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
        return _build(request, tmp_path, _langchain_state)


# -- behaviour the suite does not cover -----------------------------------------------------------------------


def test_reembedding_is_warned_once_and_listed() -> None:
    """A wrapped store built with its own embeddings re-embeds text: said once, and listed."""
    from storebridge.adapters.langchain.knowledge import LangChainKnowledgeStore, ReembeddingWarning

    own = InMemoryVectorStore(DeterministicFakeEmbedding(size=4))
    store = LangChainKnowledgeStore(lambda name: own)
    store.create_collection("c", 4)
    docs = [KnowledgeDocument(id=str(i), content=f"text {i}", embedding=[1.0, 0.0, 0.0, float(i)]) for i in range(3)]
    with pytest.warns(ReembeddingWarning, match="embeds document text with its own model"):
        store.upsert("c", docs[:2])
    with warnings.catch_warnings(record=True) as later:
        warnings.simplefilter("always")
        store.upsert("c", docs[2:])
    assert not [w for w in later if issubclass(w.category, ReembeddingWarning)], "warned twice"
    assert store.reembedded_collections == {"c"}
    assert own.store["0"]["vector"] != [1.0, 0.0, 0.0, 0.0]  # the store's own vector, not ours
    assert store.count("c") == 3


def test_vectors_used_as_given_through_add_embeddings() -> None:
    """A FAISS-like store with ``add_embeddings`` receives our vectors directly."""
    from storebridge.adapters.langchain.knowledge import LangChainKnowledgeStore

    class WithAddEmbeddings(InMemoryVectorStore):
        def add_embeddings(self, text_embeddings: Any, metadatas: Any = None, ids: Any = None) -> list[str]:
            for (text, vector), metadata, doc_id in zip(text_embeddings, metadatas, ids):
                self.store[doc_id] = {"id": doc_id, "vector": vector, "text": text, "metadata": metadata}
            return list(ids)

    own = WithAddEmbeddings(DeterministicFakeEmbedding(size=3))
    store = LangChainKnowledgeStore(lambda name: own)
    store.create_collection("c", 3)
    store.insert("c", [KnowledgeDocument(id="a", content="x", embedding=[0.0, 1.0, 0.0], metadata={"k": [1]})])
    assert own.store["a"]["vector"] == [0.0, 1.0, 0.0]
    [hit] = store.search("c", [0.0, 1.0, 0.0], k=1)
    assert hit.id == "a" and abs(hit.score - 1.0) < 1e-9 and hit.document.metadata == {"k": [1]}


def test_wrapped_store_sees_plain_documents() -> None:
    """Nothing of storebridge's leaks into the wrapped store: LangChain code reading it sees plain data."""
    from storebridge.adapters.langchain.knowledge import LangChainKnowledgeStore

    factory = shared_vectorstores()
    store = LangChainKnowledgeStore(factory)
    store.create_collection("c", 2)
    store.insert("c", [KnowledgeDocument(id="a", content="hello", embedding=[1.0, 0.0], metadata={"m": 1},
                                         source_id="src")])
    [doc] = factory("c", None).get_by_ids(["a"])
    assert doc.page_content == "hello" and doc.metadata == {"m": 1} and doc.id == "a"
    assert store.get("c", ["a"])[0].source_id == "src"


def test_chat_history_written_by_langchain_is_readable() -> None:
    """Messages other code appended to the wrapped history read back in order, with stable ids."""
    from storebridge.adapters.langchain.conversation import LangChainConversationStore

    histories = shared_histories()
    histories("s").add_messages([HumanMessage("hi"), AIMessage("hello", id="a1")])
    store = LangChainConversationStore(histories)
    got = store.get_messages("s")
    assert [(m.role, m.content, m.sequence) for m in got] == [("user", "hi", 1), ("assistant", "hello", 2)]
    assert [m.id for m in got] == [m.id for m in store.get_messages("s")] and got[1].id == "a1"
    store.add_message("s", ConversationMessage(role="user", content="more", metadata={"x": 1}))
    assert [m.content for m in store.get_messages("s")] == ["hi", "hello", "more"]


def test_unsupported_filter_on_langchain_knowledge_is_typed() -> None:
    from storebridge.adapters.langchain.knowledge import LangChainKnowledgeStore

    store = LangChainKnowledgeStore(shared_vectorstores())
    store.create_collection("c", 2)
    with pytest.raises(NotSupportedError):
        store.create_collection("d", 2, "l2")
    with pytest.raises(UnsupportedFilterError):
        from storebridge.integrations._langchain_filters import to_filter

        to_filter(lambda doc: True)


#: The ``target`` of each ``langchain`` row of ``storebridge/_builtins.py`` (the rows exist, target=None).
BUILTIN_TARGETS = {
    "knowledge": "storebridge.adapters.langchain.knowledge:LangChainKnowledgeStore",
    "conversation": "storebridge.adapters.langchain.conversation:LangChainConversationStore",
    "state": "storebridge.adapters.langchain.state:LangChainStateStore",
}
OPTIONS = {
    "knowledge": lambda: {"vectorstore_factory": shared_vectorstores()},
    "conversation": lambda: {"history_factory": shared_histories()},
    "state": lambda: {"store": InMemoryByteStore()},
}


@pytest.mark.parametrize("kind", sorted(BUILTIN_TARGETS))
def test_builtin_rows_create_langchain_backends(kind: str) -> None:
    """The declared ``langchain`` row (name, alias, requirement), with its target filled in, creates the
    backend by name and alias; once ``_builtins.py`` has the target, it must be this one."""
    from dataclasses import replace

    from storebridge.registry import StoreRegistry

    declared = storebridge.registries()[kind].spec("langchain")  # type: ignore[index]
    assert declared.target in (None, BUILTIN_TARGETS[kind])
    assert "langchain_adapter" in declared.aliases and declared.requires == ("langchain_core",)
    registry = StoreRegistry(kind, f"storebridge.test.{kind}", [replace(declared, target=BUILTIN_TARGETS[kind])])  # type: ignore[arg-type]
    for name in ("langchain", "langchain_adapter"):
        store = registry.create(name, **OPTIONS[kind]())
        try:
            assert store.backend_name == "langchain"
            assert store.as_async().as_sync() is store
        finally:
            store.close()
