"""storebridge stores as LangChain classes, over every registered backend.

* :class:`StorebridgeVectorStore` - a LangChain ``VectorStore`` over any knowledge store.
* :class:`StorebridgeChatMessageHistory` - a ``BaseChatMessageHistory`` over any conversation store.
* :class:`StorebridgeByteStore` - a ``BaseStore[str, bytes]`` over any state store (``CacheBackedEmbeddings``).
* :class:`StorebridgeTranslator` - LangChain structured-query filters (``SelfQueryRetriever``) to ours.

Each class takes a store of either flavour. Sync methods use the store's ``as_sync()`` face and the
async twins its ``as_async()`` face, so an async-native store is awaited natively (no executor hop). Each
operation is written once, as a coroutine over one face; the sync method runs it on the sync face, where
it never suspends (see :func:`_run`). A face is made on first use, so code that only awaits never touches
the sync face of an async store (whose bridge binds the store to storebridge's background loop).

Importing this module imports ``langchain_core``; ``import storebridge`` does not.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
from langchain_core.chat_history import BaseChatMessageHistory
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.messages import BaseMessage
from langchain_core.stores import BaseStore
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from ..conversation import check_limits
from ..errors import (
    CollectionNotFoundError,
    ConfigurationError,
    NotSupportedError,
    OperationFailedError,
    ValidationError,
)
from ..identifiers import validate_collection_name
from ..models import CollectionInfo, Distance, KnowledgeDocument, SearchHit, validate_session_id
from ..state import check_key, check_ttl
from ._faces import Face, Faces
from ._faces import reject_unknown_kwargs as _no_extra
from ._langchain_filters import StorebridgeTranslator, to_filter
from ._langchain_messages import LANGCHAIN_KEY, from_langchain, to_langchain

T = TypeVar("T")


class _Face(Face):
    """One face of a store, plus the embeddings: the shared face with embedding calls of the same flavour."""

    def __init__(self, face: Any, embeddings: Embeddings | None, is_async: bool) -> None:
        super().__init__(face, is_async)
        self.embeddings = embeddings

    async def embed_query(self, text: str) -> list[float]:
        embeddings = self._embeddings()
        vector = await embeddings.aembed_query(text) if self.is_async else embeddings.embed_query(text)
        return list(vector)

    async def embed_documents(self, texts: list[str]) -> list[list[float]]:
        embeddings = self._embeddings()
        vectors = await embeddings.aembed_documents(texts) if self.is_async else embeddings.embed_documents(texts)
        if len(vectors) != len(texts):
            raise OperationFailedError(f"{type(embeddings).__name__} returned {len(vectors)} vectors for "
                                       f"{len(texts)} texts")
        return [list(v) for v in vectors]

    def _embeddings(self) -> Embeddings:
        if self.embeddings is None:
            raise ConfigurationError("this object was made without embeddings, so it cannot embed text")
        return self.embeddings


def _faces(store: Any, embeddings: Embeddings | None = None) -> Faces[_Face]:
    return Faces(store, lambda face, is_async: _Face(face, embeddings, is_async))


# ---------------------------------------------------------------------------------------------------------
# Vector store


def _clip(value: float) -> float:
    return min(1.0, max(0.0, value))


def _cosine_relevance(score: float) -> float:
    """Cosine similarity (LangChain's ``1 - cosine distance``), clipped into [0, 1]."""
    return _clip(score)


def _l2_relevance(score: float) -> float:
    """LangChain's euclidean relevance ``1 - d / sqrt(2)`` (right for unit vectors), clipped into [0, 1];
    ``d`` is recovered from our l2 score ``1 / (1 + d)``."""
    if score <= 0.0:
        return 0.0
    return _clip(1.0 - (1.0 / score - 1.0) / math.sqrt(2.0))


def _dot_relevance(score: float) -> float:
    """The dot product clipped into [0, 1]: equal to cosine relevance for unit vectors (what dot-product
    collections normally hold); unnormalised vectors have no bounded relevance."""
    return _clip(score)


_RELEVANCE: dict[Distance, Callable[[float], float]] = {
    Distance.COSINE: _cosine_relevance,
    Distance.L2: _l2_relevance,
    Distance.DOT: _dot_relevance,
}


def _to_document(doc: KnowledgeDocument) -> Document:
    return Document(id=doc.id, page_content=doc.content, metadata=dict(doc.metadata))


def _open_knowledge_store(store: Any, url: str | None) -> Any:
    """``store=`` as given, ``url=`` through the registry, neither: the embedded SQLite default."""
    if store is not None and url is not None:
        raise ConfigurationError("pass either store= or url=, not both")
    if store is not None:
        return store
    from .. import KNOWLEDGE_STORES

    return KNOWLEDGE_STORES.from_url(url) if url is not None else KNOWLEDGE_STORES.create("sqlite")


class StorebridgeVectorStore(VectorStore):
    """A LangChain ``VectorStore`` over any storebridge knowledge store (sync or async).

    Texts are embedded with the LangChain ``embedding`` and stored in ``collection_name``, which is created
    on the first write with the embedding's dimension and ``distance`` (``"cosine"``, ``"l2"`` or ``"dot"``;
    an existing collection keeps its own). Document text is the document's ``content`` and LangChain
    metadata is its metadata, exactly: nothing is added in either direction, and ``Document.id`` is the id.

    * ``similarity_search_with_score`` returns storebridge's higher-is-better score (cosine similarity,
      ``1 / (1 + l2 distance)``, or the dot product); ``similarity_search_with_relevance_scores`` maps it
      into [0, 1] for the collection's metric (see :meth:`_select_relevance_score_fn`).
    * ``filter=`` takes a storebridge filter dict (``{"year": {"$gte": 2020}}``) or a LangChain structured
      query expression (``Comparison``/``Operation``/``StructuredQuery``, via :class:`StorebridgeTranslator`).
    * ``delete(ids=None)`` deletes everything (drops the collection, re-created on the next write).
    """

    def __init__(self, store: Any, embedding: Embeddings, collection_name: str = "langchain", *,
                 distance: Distance | str = Distance.COSINE) -> None:
        self._faces = _faces(store, embedding)
        self.store = store
        self.embedding = embedding
        self.collection_name = validate_collection_name(collection_name)
        self.distance = Distance.parse(distance)
        self._info: CollectionInfo | None = None

    def __repr__(self) -> str:
        return f"StorebridgeVectorStore({self.store!r}, collection_name={self.collection_name!r})"

    @property
    def embeddings(self) -> Embeddings:
        return self.embedding

    # -- the operations, each written once over a face -----------------------------------------------

    async def _collection(self, io: _Face, *, create_with: int | None = None) -> CollectionInfo | None:
        """The collection's info (cached), creating it when ``create_with`` gives the dimension."""
        if self._info is None:
            try:
                self._info = await io.call("get_collection", self.collection_name)
            except CollectionNotFoundError:
                if create_with is None:
                    return None
                self._info = await io.call("create_collection", self.collection_name, create_with, self.distance,
                                           exist_ok=True)
        return self._info

    async def _add(self, io: _Face, texts: Iterable[str], metadatas: Sequence[dict[str, Any]] | None,
                   ids: Sequence[str | None] | None) -> list[str]:
        texts = list(texts)
        if metadatas is not None and len(metadatas) != len(texts):
            raise ValidationError(f"got {len(metadatas)} metadatas for {len(texts)} texts")
        if ids is not None and len(ids) != len(texts):
            raise ValidationError(f"got {len(ids)} ids for {len(texts)} texts")
        if not texts:
            return []
        new_ids = [doc_id if doc_id is not None else str(uuid.uuid4()) for doc_id in (ids or [None] * len(texts))]
        vectors = await io.embed_documents(texts)
        documents = [KnowledgeDocument(id=doc_id, content=text, embedding=vector,
                                       metadata=dict(metadatas[i]) if metadatas is not None else {})
                     for i, (doc_id, text, vector) in enumerate(zip(new_ids, texts, vectors))]
        await self._collection(io, create_with=len(vectors[0]))
        try:
            await io.call("upsert", self.collection_name, documents)
        except CollectionNotFoundError:  # dropped since we cached its info: create it again, once
            self._info = None
            await self._collection(io, create_with=len(vectors[0]))
            await io.call("upsert", self.collection_name, documents)
        return new_ids

    async def _hits(self, io: _Face, vector: Sequence[float], k: int, filter: Any, *,
                    include_embeddings: bool = False, score_threshold: float | None = None) -> list[SearchHit]:
        tree = to_filter(filter)
        if await self._collection(io) is None:
            return []
        try:
            return await io.call("search", self.collection_name, list(vector), k=k, filter=tree,  # type: ignore[no-any-return]
                                 score_threshold=score_threshold, include_embeddings=include_embeddings)
        except CollectionNotFoundError:
            self._info = None
            return []

    async def _scored(self, io: _Face, query: str, k: int, filter: Any,
                      score_threshold: float | None) -> list[tuple[Document, float]]:
        vector = await io.embed_query(query)
        hits = await self._hits(io, vector, k, filter, score_threshold=score_threshold)
        return [(_to_document(hit.document), hit.score) for hit in hits]

    async def _by_vector(self, io: _Face, vector: Sequence[float], k: int, filter: Any) -> list[Document]:
        return [_to_document(hit.document) for hit in await self._hits(io, vector, k, filter)]

    async def _mmr(self, io: _Face, query: str | None, vector: Sequence[float] | None, k: int, fetch_k: int,
                   lambda_mult: float, filter: Any) -> list[Document]:
        if vector is None:
            vector = await io.embed_query(query or "")
        hits = await self._hits(io, vector, max(k, fetch_k), filter, include_embeddings=True)
        embeddings = [hit.document.embedding for hit in hits]
        if any(embedding is None for embedding in embeddings):
            raise NotSupportedError(
                f"{self.store!r} did not return document embeddings, which maximal marginal relevance needs"
            )
        chosen = maximal_marginal_relevance(np.asarray(vector, dtype=np.float32), embeddings,  # type: ignore[arg-type]
                                            lambda_mult=lambda_mult, k=k)
        return [_to_document(hits[i].document) for i in chosen]

    async def _delete(self, io: _Face, ids: Sequence[str] | None, filter: Any) -> bool:
        tree = to_filter(filter)
        if ids is None and tree is None:  # LangChain's contract: no ids means delete everything
            await io.call("drop_collection", self.collection_name)
            self._info = None
            return True
        try:
            await io.call("delete", self.collection_name, None if ids is None else list(ids), filter=tree)
        except CollectionNotFoundError:
            self._info = None
        return True

    async def _get(self, io: _Face, ids: Sequence[str]) -> list[Document]:
        if await self._collection(io) is None:
            return []
        try:
            documents = await io.call("get", self.collection_name, list(ids), include_embeddings=False)
        except CollectionNotFoundError:
            self._info = None
            return []
        return [_to_document(doc) for doc in documents]

    # -- LangChain's API: sync and async twins -------------------------------------------------------

    def add_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                  ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        """Embed and upsert texts (idempotent by id); ids missing (or None, as ``add_documents`` passes for
        documents without one) are generated as uuid4 strings."""
        _no_extra(kwargs, "add_texts")
        return self._faces.run(lambda io: self._add(io, texts, metadatas, ids))

    async def aadd_texts(self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None = None, *,
                         ids: list[str] | None = None, **kwargs: Any) -> list[str]:
        _no_extra(kwargs, "aadd_texts")
        return await self._faces.arun(lambda io: self._add(io, texts, metadatas, ids))

    def similarity_search_with_score(self, query: str, k: int = 4, *, filter: Any = None,  # type: ignore[override]
                                     score_threshold: float | None = None,
                                     **kwargs: Any) -> list[tuple[Document, float]]:
        """``(document, score)`` pairs, best first; the score is storebridge's higher-is-better score."""
        _no_extra(kwargs, "similarity_search_with_score")
        return self._faces.run(lambda io: self._scored(io, query, k, filter, score_threshold))

    async def asimilarity_search_with_score(self, query: str, k: int = 4, *,  # type: ignore[override]
                                            filter: Any = None, score_threshold: float | None = None,
                                            **kwargs: Any) -> list[tuple[Document, float]]:
        _no_extra(kwargs, "asimilarity_search_with_score")
        return await self._faces.arun(lambda io: self._scored(io, query, k, filter, score_threshold))

    def similarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in self.similarity_search_with_score(query, k, **kwargs)]

    async def asimilarity_search(self, query: str, k: int = 4, **kwargs: Any) -> list[Document]:
        return [doc for doc, _ in await self.asimilarity_search_with_score(query, k, **kwargs)]

    def similarity_search_by_vector(self, embedding: list[float], k: int = 4, *, filter: Any = None,
                                    **kwargs: Any) -> list[Document]:
        _no_extra(kwargs, "similarity_search_by_vector")
        return self._faces.run(lambda io: self._by_vector(io, embedding, k, filter))

    async def asimilarity_search_by_vector(self, embedding: list[float], k: int = 4, *, filter: Any = None,
                                           **kwargs: Any) -> list[Document]:
        _no_extra(kwargs, "asimilarity_search_by_vector")
        return await self._faces.arun(lambda io: self._by_vector(io, embedding, k, filter))

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Relevance in [0, 1] from our score, for the collection's metric: cosine -> the cosine similarity
        (LangChain's ``1 - cosine distance``) clipped at 0; l2 -> LangChain's ``1 - d / sqrt(2)``, clipped;
        dot -> the dot product clipped into [0, 1] (the cosine similarity of unit vectors)."""
        return _RELEVANCE[self._info.distance if self._info is not None else self.distance]

    def _similarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                 **kwargs: Any) -> list[tuple[Document, float]]:
        scored = self.similarity_search_with_score(query, k, **kwargs)
        relevance = self._select_relevance_score_fn()  # after the search, which learnt the collection's metric
        return [(doc, relevance(score)) for doc, score in scored]

    async def _asimilarity_search_with_relevance_scores(self, query: str, k: int = 4,
                                                        **kwargs: Any) -> list[tuple[Document, float]]:
        scored = await self.asimilarity_search_with_score(query, k, **kwargs)
        relevance = self._select_relevance_score_fn()
        return [(doc, relevance(score)) for doc, score in scored]

    def max_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20, lambda_mult: float = 0.5,
                                      *, filter: Any = None, **kwargs: Any) -> list[Document]:
        """Fetch ``fetch_k`` candidates with their vectors, then pick ``k`` diverse ones (LangChain's MMR)."""
        _no_extra(kwargs, "max_marginal_relevance_search")
        return self._faces.run(lambda io: self._mmr(io, query, None, k, fetch_k, lambda_mult, filter))

    async def amax_marginal_relevance_search(self, query: str, k: int = 4, fetch_k: int = 20,
                                             lambda_mult: float = 0.5, *, filter: Any = None,
                                             **kwargs: Any) -> list[Document]:
        _no_extra(kwargs, "amax_marginal_relevance_search")
        return await self._faces.arun(lambda io: self._mmr(io, query, None, k, fetch_k, lambda_mult, filter))

    def max_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4, fetch_k: int = 20,
                                                lambda_mult: float = 0.5, *, filter: Any = None,
                                                **kwargs: Any) -> list[Document]:
        _no_extra(kwargs, "max_marginal_relevance_search_by_vector")
        return self._faces.run(lambda io: self._mmr(io, None, embedding, k, fetch_k, lambda_mult, filter))

    async def amax_marginal_relevance_search_by_vector(self, embedding: list[float], k: int = 4,
                                                       fetch_k: int = 20, lambda_mult: float = 0.5, *,
                                                       filter: Any = None, **kwargs: Any) -> list[Document]:
        _no_extra(kwargs, "amax_marginal_relevance_search_by_vector")
        return await self._faces.arun(lambda io: self._mmr(io, None, embedding, k, fetch_k, lambda_mult, filter))

    def delete(self, ids: list[str] | None = None, *, filter: Any = None, **kwargs: Any) -> bool:
        """Delete by ids and/or ``filter``; with neither, delete everything. Missing ids are no error."""
        _no_extra(kwargs, "delete")
        return self._faces.run(lambda io: self._delete(io, ids, filter))

    async def adelete(self, ids: list[str] | None = None, *, filter: Any = None, **kwargs: Any) -> bool:
        _no_extra(kwargs, "adelete")
        return await self._faces.arun(lambda io: self._delete(io, ids, filter))

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Documents by id, in the order asked; missing ids are skipped."""
        return self._faces.run(lambda io: self._get(io, ids))

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        return await self._faces.arun(lambda io: self._get(io, ids))

    @classmethod
    def from_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None, *,
                   ids: list[str] | None = None, store: Any = None, url: str | None = None,
                   collection_name: str = "langchain", distance: Distance | str = Distance.COSINE,
                   **kwargs: Any) -> StorebridgeVectorStore:
        """A vector store over ``store=`` (any storebridge knowledge store) or ``url=`` (opened through the
        registry; neither: the embedded SQLite default), with ``texts`` added."""
        _no_extra(kwargs, "from_texts")
        vectorstore = cls(_open_knowledge_store(store, url), embedding, collection_name, distance=distance)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore

    @classmethod
    async def afrom_texts(cls, texts: list[str], embedding: Embeddings, metadatas: list[dict[str, Any]] | None = None,
                          *, ids: list[str] | None = None, store: Any = None, url: str | None = None,
                          collection_name: str = "langchain", distance: Distance | str = Distance.COSINE,
                          **kwargs: Any) -> StorebridgeVectorStore:
        _no_extra(kwargs, "afrom_texts")
        vectorstore = cls(_open_knowledge_store(store, url), embedding, collection_name, distance=distance)
        await vectorstore.aadd_texts(texts, metadatas, ids=ids)
        return vectorstore


# ---------------------------------------------------------------------------------------------------------
# Chat message history


class StorebridgeChatMessageHistory(BaseChatMessageHistory):
    """A LangChain chat history over any storebridge conversation store (sync or async), for one
    ``session_id``.

    ``limit`` makes :attr:`messages` the newest ``limit`` messages only (a window read by the store, not
    a load-all); ``add_messages`` is one store call per batch; ``clear`` deletes the messages and keeps
    the session. Messages convert exactly both ways (see ``_langchain_messages``; what a LangChain message
    has beyond role, content, tool calls and ``response_metadata`` is kept under ``metadata["langchain"]``).

    LangChain marks ``BaseChatMessageHistory`` (and ``RunnableWithMessageHistory``) as deprecated in favour
    of LangGraph persistence; for that, see :mod:`storebridge.integrations.langgraph`.
    """

    def __init__(self, store: Any, session_id: str, *, limit: int | None = None) -> None:
        super().__init__()
        check_limits(limit)
        self._faces = _faces(store)
        self.store = store
        self.session_id = validate_session_id(session_id)
        self.limit = limit

    def __repr__(self) -> str:
        return f"StorebridgeChatMessageHistory({self.store!r}, session_id={self.session_id!r})"

    async def _read(self, io: _Face) -> list[BaseMessage]:
        stored = await io.call("get_messages", self.session_id, limit=self.limit)
        return [to_langchain(message) for message in stored]

    async def _write(self, io: _Face, messages: Sequence[BaseMessage]) -> None:
        converted = [from_langchain(message, session_id=self.session_id) for message in messages]
        if converted:
            await io.call("add_messages", self.session_id, converted)

    async def _clear(self, io: _Face) -> None:
        await io.call("delete_messages", self.session_id)

    @property
    def messages(self) -> list[BaseMessage]:  # type: ignore[override]
        """The session's messages, oldest first (only the newest ``limit`` when a limit is set)."""
        return self._faces.run(self._read)

    async def aget_messages(self) -> list[BaseMessage]:
        return await self._faces.arun(self._read)

    def add_messages(self, messages: Sequence[BaseMessage]) -> None:
        self._faces.run(lambda io: self._write(io, messages))

    async def aadd_messages(self, messages: Sequence[BaseMessage]) -> None:
        await self._faces.arun(lambda io: self._write(io, messages))

    def clear(self) -> None:
        self._faces.run(self._clear)

    async def aclear(self) -> None:
        await self._faces.arun(self._clear)


# ---------------------------------------------------------------------------------------------------------
# Byte store


class StorebridgeByteStore(BaseStore[str, bytes]):
    """A LangChain ``BaseStore[str, bytes]`` over any storebridge state store (sync or async), e.g. the
    cache of ``CacheBackedEmbeddings``.

    ``key_prefix`` is prepended to every key (and stripped from ``yield_keys``), to share one state store
    namespace between several uses; ``ttl`` (seconds) makes every value written expire.
    """

    def __init__(self, store: Any, *, key_prefix: str = "", ttl: float | None = None) -> None:
        if not isinstance(key_prefix, str) or "\x00" in key_prefix:
            raise ConfigurationError(f"key_prefix must be a string without NUL, got {key_prefix!r}")
        self._faces = _faces(store)
        self.store = store
        self.key_prefix = key_prefix
        self.ttl = check_ttl(ttl)

    def __repr__(self) -> str:
        return f"StorebridgeByteStore({self.store!r}, key_prefix={self.key_prefix!r})"

    def _key(self, key: str) -> str:
        return self.key_prefix + check_key(key)

    async def _mget(self, io: _Face, keys: Sequence[str]) -> list[bytes | None]:
        full = [self._key(key) for key in keys]
        found = await io.call("get_many", list(dict.fromkeys(full)))
        for key, value in found.items():
            if not isinstance(value, bytes):
                raise ValidationError(f"key {key!r} holds a {type(value).__name__}, not bytes; a byte store "
                                      "reads only values written as bytes")
        return [found.get(key) for key in full]

    async def _mset(self, io: _Face, pairs: Sequence[tuple[str, bytes]]) -> None:
        items: dict[str, bytes] = {}
        for key, value in pairs:
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise ValidationError(f"a byte store holds bytes; the value of {key!r} is {type(value).__name__}")
            items[self._key(key)] = bytes(value)
        if items:
            await io.call("set_many", items, ttl=self.ttl)

    async def _mdelete(self, io: _Face, keys: Sequence[str]) -> None:
        if keys:
            await io.call("delete_many", [self._key(key) for key in keys])

    async def _keys(self, io: _Face, prefix: str | None) -> list[str]:
        found = await io.call("keys", prefix=self.key_prefix + (prefix or ""))
        return [key[len(self.key_prefix):] for key in found]

    def mget(self, keys: Sequence[str]) -> list[bytes | None]:
        return self._faces.run(lambda io: self._mget(io, keys))

    async def amget(self, keys: Sequence[str]) -> list[bytes | None]:
        return await self._faces.arun(lambda io: self._mget(io, keys))

    def mset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        self._faces.run(lambda io: self._mset(io, key_value_pairs))

    async def amset(self, key_value_pairs: Sequence[tuple[str, bytes]]) -> None:
        await self._faces.arun(lambda io: self._mset(io, key_value_pairs))

    def mdelete(self, keys: Sequence[str]) -> None:
        self._faces.run(lambda io: self._mdelete(io, keys))

    async def amdelete(self, keys: Sequence[str]) -> None:
        await self._faces.arun(lambda io: self._mdelete(io, keys))

    def yield_keys(self, *, prefix: str | None = None) -> Iterator[str]:
        """Keys (without ``key_prefix``) starting with ``prefix``, sorted."""
        yield from self._faces.run(lambda io: self._keys(io, prefix))

    async def ayield_keys(self, *, prefix: str | None = None) -> AsyncIterator[str]:
        for key in await self._faces.arun(lambda io: self._keys(io, prefix)):
            yield key


__all__ = [
    "LANGCHAIN_KEY",
    "StorebridgeByteStore",
    "StorebridgeChatMessageHistory",
    "StorebridgeTranslator",
    "StorebridgeVectorStore",
    "from_langchain",
    "to_langchain",
]
