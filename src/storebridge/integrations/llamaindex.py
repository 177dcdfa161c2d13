"""storebridge stores as LlamaIndex classes, over every registered backend.

* :class:`StorebridgeVectorStore` - a ``BasePydanticVectorStore`` over any knowledge store (one collection),
  so ``VectorStoreIndex`` (``from_documents``, ``from_vector_store``) runs on any storebridge backend.
* :class:`StorebridgeChatStore` - a ``BaseChatStore`` over any conversation store (a chat key is a session
  id), for ``ChatMemoryBuffer`` and friends.
* :class:`StorebridgeDBChatStore` - an ``AsyncDBChatStore`` over any conversation store, for LlamaIndex's
  ``Memory`` (active and archived messages).
* :class:`StorebridgeKVStore` - a ``BaseKVStore`` over any state store (collections are key prefixes), so
  ``KVDocumentStore`` and ``KVIndexStore`` run on any state backend; :func:`storebridge_storage_context`
  puts the three together.
* :class:`StorebridgeEmbedding` - any storebridge embedder (``HashEmbedder`` for offline work) as a
  LlamaIndex ``BaseEmbedding``.

Every class takes a store of either flavour. Sync methods use the store's ``as_sync()`` face and the async
twins its ``as_async()`` face, so an async-native store is awaited natively and a sync one runs in
storebridge's thread pool, never on the caller's loop. Each operation is written once, as a coroutine
over one face; the sync method runs it on the sync face, where it never suspends (see :func:`_run`).
A face is made on first use; as with the store itself, drive an async-native store through one object's
sync methods or its async ones, not both (its connections belong to one event loop).

Importing this module imports ``llama_index.core``; ``import storebridge`` does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.indices.query.embedding_utils import get_top_k_mmr_embeddings
from llama_index.core.llms import ChatMessage
from llama_index.core.schema import (
    BaseNode,
    Document,
    ImageDocument,
    ImageNode,
    IndexNode,
    MetadataMode,
    Node,
    NodeRelationship,
    RelatedNodeInfo,
    TextNode,
)
from llama_index.core.storage.chat_store.base import BaseChatStore
from llama_index.core.storage.chat_store.base_db import AsyncDBChatStore, MessageStatus
from llama_index.core.storage.docstore.keyval_docstore import KVDocumentStore
from llama_index.core.storage.index_store.keyval_index_store import KVIndexStore
from llama_index.core.storage.kvstore.types import DEFAULT_BATCH_SIZE, DEFAULT_COLLECTION, BaseKVStore
from llama_index.core.storage.storage_context import StorageContext
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)

from ..embedders import Embedder, aembed_documents, aembed_query, as_embedder
from ..errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    NotSupportedError,
    ValidationError,
)
from ..filters import And, Comparison, Filter, Op, matcher
from ..identifiers import validate_collection_name
from ..models import (
    CollectionInfo,
    ConversationSession,
    Distance,
    KnowledgeDocument,
    SearchHit,
    validate_session_id,
    validate_vector,
)
from ._faces import Face as _Face
from ._faces import Faces
from ._faces import reject_unknown_kwargs as _no_extra
from ._llamaindex_filters import Translated, from_metadata_filters
from ._llamaindex_messages import from_llamaindex, to_llamaindex

T = TypeVar("T")


# ---------------------------------------------------------------------------------------------------------
# Embeddings


class StorebridgeEmbedding(BaseEmbedding):
    """A storebridge :class:`~storebridge.embedders.Embedder` as a LlamaIndex embedding model, e.g.
    ``StorebridgeEmbedding(HashEmbedder(256))`` to build and query indexes offline and deterministically."""

    _embedder: Embedder = PrivateAttr()

    def __init__(self, embedder: Any, **kwargs: Any) -> None:
        adapted = as_embedder(embedder)
        kwargs.setdefault("model_name", repr(adapted))
        super().__init__(**kwargs)
        self._embedder = adapted

    @classmethod
    def class_name(cls) -> str:
        return "StorebridgeEmbedding"

    @property
    def dimension(self) -> int:
        return self._embedder.dimension

    def _get_query_embedding(self, query: str) -> list[float]:
        return list(self._embedder.embed_query(query))

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return await aembed_query(self._embedder, query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> list[float]:
        return (await self._aget_text_embeddings([text]))[0]

    def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return [list(v) for v in self._embedder.embed_documents(list(texts))]

    async def _aget_text_embeddings(self, texts: list[str]) -> list[list[float]]:
        return await aembed_documents(self._embedder, list(texts))


# ---------------------------------------------------------------------------------------------------------
# Nodes as knowledge documents

#: The serialised node (without text, metadata and embedding, which are stored natively).
NODE_CONTENT_KEY = "_node_content"
#: The node's class name, to rebuild the same class.
NODE_TYPE_KEY = "_node_type"
#: The node's ``ref_doc_id``, as metadata so ``delete(ref_doc_id)`` and ``doc_ids`` filter on it everywhere.
REF_DOC_KEY = "_ref_doc_id"
#: Metadata keys StorebridgeVectorStore writes next to the node's own metadata and strips on the way back.
RESERVED_KEYS = frozenset({NODE_CONTENT_KEY, NODE_TYPE_KEY, REF_DOC_KEY})

_NODE_CLASSES: dict[str, type[BaseNode]] = {
    cls.class_name(): cls for cls in (TextNode, Node, Document, ImageNode, ImageDocument, IndexNode)
}


def node_to_document(node: BaseNode) -> KnowledgeDocument:
    """A node (with its embedding) as the document StorebridgeVectorStore stores."""
    if not isinstance(node, BaseNode):
        raise ValidationError(f"expected a LlamaIndex node, got {type(node).__name__}")
    clash = sorted(RESERVED_KEYS & set(node.metadata))
    if clash:
        raise ValidationError(f"node {node.node_id!r} has metadata keys {clash}, which StorebridgeVectorStore "
                              "reserves for the serialised node; rename them")
    if node.embedding is None:
        raise ValidationError(f"node {node.node_id!r} has no embedding; let the index embed it (embed_model) "
                              "before adding it to the vector store")
    data = node.model_dump(mode="json")
    data["metadata"], data["embedding"] = {}, None
    if "text" in data:
        data["text"] = ""
    data.pop("text_resource", None)  # the text is the document's content
    metadata = dict(node.metadata)
    metadata[NODE_CONTENT_KEY] = json.dumps(data, ensure_ascii=False)
    metadata[NODE_TYPE_KEY] = node.class_name()
    if node.ref_doc_id is not None:
        metadata[REF_DOC_KEY] = node.ref_doc_id
    return KnowledgeDocument(id=node.node_id, content=node.get_content(metadata_mode=MetadataMode.NONE),
                             embedding=list(node.embedding), metadata=metadata, source_id=node.ref_doc_id)


def document_to_node(document: KnowledgeDocument) -> BaseNode:
    """The node a document stands for: the serialised one if StorebridgeVectorStore wrote it, else a
    ``TextNode`` (whose source is the document's ``source_id``). The metadata is the caller's, exactly."""
    metadata = {key: value for key, value in document.metadata.items() if key not in RESERVED_KEYS}
    serialised = document.metadata.get(NODE_CONTENT_KEY)
    node: BaseNode
    if isinstance(serialised, str):
        cls = _NODE_CLASSES.get(str(document.metadata.get(NODE_TYPE_KEY)), TextNode)
        node = cls.from_json(serialised)
        node.set_content(document.content)
    else:
        relationships = ({NodeRelationship.SOURCE: RelatedNodeInfo(node_id=document.source_id)}
                         if document.source_id else {})
        node = TextNode(text=document.content, relationships=relationships)
    node.id_ = document.id
    node.metadata = metadata
    node.embedding = document.embedding
    return node


def raw_distances(distance: Distance, vectors: np.ndarray, query: np.ndarray) -> np.ndarray:
    """The raw distance of each row to the query, per the table on :class:`Distance` (exact, float64)."""
    if distance is Distance.COSINE:
        return 1.0 - vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
    if distance is Distance.L2:
        return np.linalg.norm(vectors - query, axis=1)
    return -(vectors @ query)


def _mmr_similarity(distance: Distance) -> Callable[[Any, Any], float]:
    """The similarity LlamaIndex's MMR compares with: the collection's own higher-is-better score."""
    def similarity(a: Any, b: Any) -> float:
        raw = raw_distances(distance, np.asarray([a], dtype=np.float64), np.asarray(b, dtype=np.float64))
        return distance.score(float(raw[0]))

    return similarity


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} must be a positive integer, got {value!r}")
    return value


_QUERY_OPTIONS = ("mmr_threshold", "mmr_prefetch_k", "mmr_prefetch_factor")
#: Up to this many ``node_ids`` are fetched by id and scored here; more (``VectorStoreIndex`` with
#: ``store_nodes_override`` passes all of its nodes) are searched for, keeping the hits among them.
NODE_IDS_BY_GET = 1000
#: Candidates fetched per result for MMR, unless ``mmr_prefetch_k``/``mmr_prefetch_factor`` say otherwise.
DEFAULT_MMR_PREFETCH_FACTOR = 4.0
_PAGE = 256


class StorebridgeVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over one collection of any storebridge knowledge store.

    ``stores_text`` is True: nodes come back whole (text, metadata exactly as given, relationships), so
    ``VectorStoreIndex.from_vector_store`` works and no docstore is needed. The collection is created on
    the first ``add`` with the embeddings' dimension and ``distance`` (default cosine; an existing
    collection is used with whatever distance it has unless ``distance`` is given).

    Layout: node id -> document id, node text -> content, ``ref_doc_id`` -> ``source_id``, node metadata
    -> metadata, plus three reserved keys (:data:`RESERVED_KEYS`: the serialised node, its class, and the
    ``ref_doc_id`` again, so deleting by ``ref_doc_id`` is a metadata filter every backend evaluates).
    Similarities are storebridge scores (cosine similarity for cosine collections). ``MMR`` fetches
    ``mmr_prefetch_k`` (or ``similarity_top_k * mmr_prefetch_factor``) candidates with their vectors and
    reorders them with LlamaIndex's MMR; the similarities returned are the documents' own scores.
    Filters translate as documented in :mod:`storebridge.integrations._llamaindex_filters`.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    collection_name: str
    distance: str | None = None

    _faces: Faces[_Face] = PrivateAttr()

    def __init__(self, store: Any, collection_name: str = "llamaindex", *,
                 distance: Distance | str | None = None) -> None:
        super().__init__(collection_name=validate_collection_name(collection_name),  # type: ignore[call-arg]
                         distance=None if distance is None else Distance.parse(distance).value)
        self._faces = Faces(store)

    @classmethod
    def class_name(cls) -> str:
        return "StorebridgeVectorStore"

    @property
    def client(self) -> Any:
        """The storebridge store, as given."""
        return self._faces.store

    # -- LlamaIndex API: each sync method and its async twin run the same operation --------------------

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        _no_extra(add_kwargs, "add")
        return self._faces.run(lambda io: self._add(io, nodes))

    async def async_add(self, nodes: Sequence[BaseNode], **kwargs: Any) -> list[str]:
        _no_extra(kwargs, "async_add")
        return await self._faces.arun(lambda io: self._add(io, nodes))

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        _no_extra(delete_kwargs, "delete")
        self._faces.run(lambda io: self._delete_ref_doc(io, ref_doc_id))

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        _no_extra(delete_kwargs, "adelete")
        await self._faces.arun(lambda io: self._delete_ref_doc(io, ref_doc_id))

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        _no_extra(kwargs, "query", _QUERY_OPTIONS)
        return self._faces.run(lambda io: self._query(io, query, kwargs))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        _no_extra(kwargs, "aquery", _QUERY_OPTIONS)
        return await self._faces.arun(lambda io: self._query(io, query, kwargs))

    def get_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None) -> list[BaseNode]:
        return self._faces.run(lambda io: self._get_nodes(io, node_ids, filters))

    async def aget_nodes(self, node_ids: list[str] | None = None,
                         filters: MetadataFilters | None = None) -> list[BaseNode]:
        return await self._faces.arun(lambda io: self._get_nodes(io, node_ids, filters))

    def delete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                     **delete_kwargs: Any) -> None:
        _no_extra(delete_kwargs, "delete_nodes")
        self._faces.run(lambda io: self._delete_nodes(io, node_ids, filters))

    async def adelete_nodes(self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None,
                            **delete_kwargs: Any) -> None:
        _no_extra(delete_kwargs, "adelete_nodes")
        await self._faces.arun(lambda io: self._delete_nodes(io, node_ids, filters))

    def clear(self) -> None:
        """Drop the collection; the next ``add`` creates it again."""
        self._faces.run(self._clear)

    async def aclear(self) -> None:
        await self._faces.arun(self._clear)

    # -- operations, written once ------------------------------------------------------------------------

    async def _collection(self, io: _Face, *, create_with: int | None = None) -> CollectionInfo:
        try:
            info: CollectionInfo = await io.call("get_collection", self.collection_name)
        except CollectionNotFoundError:
            if create_with is None:
                raise
            return await io.call("create_collection", self.collection_name, create_with,  # type: ignore[no-any-return]
                                 self.distance or Distance.COSINE, exist_ok=True)
        if self.distance is not None and info.distance.value != self.distance:
            raise ConfigurationError(
                f"collection {self.collection_name!r} exists with distance {info.distance.value!r}, not "
                f"{self.distance!r}; pass distance={info.distance.value!r} or use another collection"
            )
        return info

    async def _add(self, io: _Face, nodes: Sequence[BaseNode]) -> list[str]:
        documents = [node_to_document(node) for node in nodes]
        if not documents:
            return []
        await self._collection(io, create_with=len(documents[0].embedding or ()))
        return await io.call("upsert", self.collection_name, documents)  # type: ignore[no-any-return]

    async def _delete_ref_doc(self, io: _Face, ref_doc_id: str) -> None:
        if not isinstance(ref_doc_id, str):
            raise ValidationError(f"ref_doc_id must be a string, got {type(ref_doc_id).__name__}")
        await self._delete(io, None, Translated(Comparison(REF_DOC_KEY, Op.EQ, ref_doc_id)))

    async def _delete_nodes(self, io: _Face, node_ids: list[str] | None, filters: MetadataFilters | None) -> None:
        if node_ids is None and filters is None:
            raise ValidationError("delete_nodes() needs node_ids or filters; clear() deletes everything")
        await self._delete(io, node_ids, from_metadata_filters(filters))

    async def _delete(self, io: _Face, ids: Sequence[str] | None, where: Translated) -> None:
        """Delete (ids AND filter) on every backend: by filter where the backend declares it, else by the
        ids a scan finds."""
        if where.nothing:
            return
        if where.refine is None and (where.tree is None or io.capabilities.delete_by_filter):
            try:
                await io.call("delete", self.collection_name, None if ids is None else list(ids), filter=where.tree)
            except CollectionNotFoundError:
                pass  # nothing was ever added: nothing to delete
            return
        found = [document.id for document in await self._select(io, ids, where, embeddings=False)]
        if found:
            await io.call("delete", self.collection_name, found)

    async def _select(self, io: _Face, ids: Sequence[str] | None, where: Translated, *,
                      embeddings: bool) -> list[KnowledgeDocument]:
        """Documents among ``ids`` (or all) matching the filter, by ``get`` or by ``scroll``."""
        if where.nothing:
            return []
        try:
            if ids is not None:
                documents = await io.call("get", self.collection_name, list(ids), include_embeddings=embeddings)
                if where.tree is not None:
                    match = matcher(where.tree)
                    documents = [d for d in documents if match(d.metadata)]
            else:
                documents = await self._scroll_all(io, where.tree, embeddings)
        except CollectionNotFoundError:
            return []
        return documents if where.refine is None else [d for d in documents if where.refine(d.metadata)]

    async def _scroll_all(self, io: _Face, tree: Filter | None, embeddings: bool) -> list[KnowledgeDocument]:
        documents: list[KnowledgeDocument] = []
        cursor: str | None = None
        while True:
            page = await io.call("scroll", self.collection_name, limit=_PAGE, cursor=cursor, filter=tree,
                                 include_embeddings=embeddings)
            documents.extend(page.documents)
            cursor = page.next_cursor
            if cursor is None:
                return documents

    async def _get_nodes(self, io: _Face, node_ids: list[str] | None,
                         filters: MetadataFilters | None) -> list[BaseNode]:
        return [document_to_node(d) for d in await self._select(io, node_ids, from_metadata_filters(filters),
                                                                  embeddings=True)]

    async def _clear(self, io: _Face) -> None:
        await io.call("drop_collection", self.collection_name)

    async def _query(self, io: _Face, query: VectorStoreQuery, options: Mapping[str, Any]) -> VectorStoreQueryResult:
        if query.mode not in (VectorStoreQueryMode.DEFAULT, VectorStoreQueryMode.MMR):
            raise NotSupportedError(f"StorebridgeVectorStore searches by vector (modes 'default' and 'mmr'), "
                                    f"not {query.mode.value!r}")
        if query.query_embedding is None:
            raise ValidationError("the query has no query_embedding; query through an index with an embed_model")
        k = _positive_int(query.similarity_top_k, "similarity_top_k")
        where = from_metadata_filters(query.filters)
        if where.nothing:
            return VectorStoreQueryResult(nodes=[], similarities=[], ids=[])
        if query.doc_ids:
            ref = Comparison(REF_DOC_KEY, Op.IN, tuple(query.doc_ids))
            where = Translated(ref if where.tree is None else And((where.tree, ref)), where.refine)
        mmr = query.mode is VectorStoreQueryMode.MMR
        fetch = self._prefetch(k, options) if mmr else k
        try:
            info = await self._collection(io)
            # an empty node_ids means "no restriction": VectorStoreIndex passes its (empty) node list
            if query.node_ids and len(query.node_ids) <= NODE_IDS_BY_GET:
                hits = await self._hits_among(io, info, query.query_embedding, query.node_ids, where, fetch)
            else:
                hits = await self._hits(io, query.query_embedding, fetch, where, query.node_ids, embeddings=mmr)
        except CollectionNotFoundError:
            hits = []
        if mmr and hits:
            threshold = query.mmr_threshold if query.mmr_threshold is not None else options.get("mmr_threshold")
            hits = self._mmr(info.distance, query.query_embedding, hits, k, threshold)
        return VectorStoreQueryResult(nodes=[document_to_node(h.document) for h in hits],
                                      similarities=[h.score for h in hits], ids=[h.id for h in hits])

    @staticmethod
    def _prefetch(k: int, options: Mapping[str, Any]) -> int:
        if options.get("mmr_prefetch_k") is not None:
            return max(k, _positive_int(options["mmr_prefetch_k"], "mmr_prefetch_k"))
        factor = options.get("mmr_prefetch_factor", DEFAULT_MMR_PREFETCH_FACTOR)
        if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not factor >= 1:
            raise ValidationError(f"mmr_prefetch_factor must be a number >= 1, got {factor!r}")
        return max(k, int(k * factor))

    async def _hits(self, io: _Face, vector: Sequence[float], k: int, where: Translated,
                    node_ids: Sequence[str] | None, *, embeddings: bool) -> list[SearchHit]:
        """The k best hits; where the filter needs a client-side refinement, or the hits must be among
        ``node_ids`` (search takes no id list), over-fetch until k of them qualify."""
        allowed = set(node_ids) if node_ids else None
        if where.refine is None and allowed is None:
            return await io.call("search", self.collection_name, list(vector), k=k,  # type: ignore[no-any-return]
                                 filter=where.tree, include_embeddings=embeddings)
        fetch = max(4 * k, k + 16)
        while True:
            hits: list[SearchHit] = await io.call("search", self.collection_name, list(vector), k=fetch,
                                                  filter=where.tree, include_embeddings=embeddings)
            kept = [hit for hit in hits if (allowed is None or hit.id in allowed)
                    and (where.refine is None or where.refine(hit.document.metadata))]
            if len(kept) >= k or len(hits) < fetch:
                return kept[:k]
            fetch *= 4

    async def _hits_among(self, io: _Face, info: CollectionInfo, vector: Sequence[float], node_ids: Sequence[str],
                          where: Translated, k: int) -> list[SearchHit]:
        """The k best among given nodes: fetched by id and scored exactly here (search takes no id list)."""
        query = np.asarray(validate_vector(vector, info.dimension, what="query_embedding"), dtype=np.float64)
        documents = [d for d in await self._select(io, node_ids, where, embeddings=True) if d.embedding]
        if not documents:
            return []
        raw = raw_distances(info.distance, np.asarray([d.embedding for d in documents], dtype=np.float64), query)
        hits = [SearchHit(d, info.distance.score(float(r)), float(r)) for d, r in zip(documents, raw)]
        hits.sort(key=lambda hit: -hit.score)  # stable: ties keep the order asked
        return hits[:k]

    @staticmethod
    def _mmr(distance: Distance, vector: Sequence[float], hits: list[SearchHit], k: int,
             threshold: float | None) -> list[SearchHit]:
        by_id = {hit.id: hit for hit in hits}
        _, ids = get_top_k_mmr_embeddings(list(vector), [list(h.document.embedding or ()) for h in hits],
                                          similarity_fn=_mmr_similarity(distance), similarity_top_k=k,
                                          embedding_ids=[h.id for h in hits], mmr_threshold=threshold)
        return [by_id[i] for i in ids]


# ---------------------------------------------------------------------------------------------------------
# Chat history


def _key(key: Any) -> str:
    """A chat store key is a session id (any non-empty string, up to 512 characters, no NUL)."""
    return validate_session_id(key)


def _chat_messages(messages: Any) -> list[ChatMessage]:
    if isinstance(messages, ChatMessage) or not isinstance(messages, Iterable):
        raise ValidationError(f"messages must be a list of ChatMessage, got {type(messages).__name__}")
    messages = list(messages)
    for message in messages:
        if not isinstance(message, ChatMessage):
            raise ValidationError(f"expected ChatMessage objects, got {type(message).__name__}")
    return messages


async def _ensure_session(io: _Face, session_id: str) -> None:
    """Make an (empty) session exist, so its key is listed; a concurrent creation is fine."""
    if await io.call("get_session", session_id) is None:
        try:
            await io.call("create_session", ConversationSession(session_id=session_id))
        except AlreadyExistsError:
            pass  # created by someone else in between: what we wanted


class StorebridgeChatStore(BaseChatStore):
    """LlamaIndex chat histories in any storebridge conversation store: a chat key is a session id.

    Messages convert as documented in :mod:`storebridge.integrations._llamaindex_messages`. ``set_messages``
    replaces the history (a delete, then one atomic append); ``delete_messages`` deletes the session;
    ``get_keys`` lists every session of the store, most recently updated first. ``add_message(...,
    idx=...)`` (insert in the middle, a ``SimpleChatStore`` extra) raises ``NotSupportedError``: storebridge
    keeps history in append order.
    """

    _faces: Faces[_Face] = PrivateAttr()

    def __init__(self, store: Any) -> None:
        super().__init__()
        self._faces = Faces(store)

    @classmethod
    def class_name(cls) -> str:
        return "StorebridgeChatStore"

    def set_messages(self, key: str, messages: list[ChatMessage]) -> None:
        self._faces.run(lambda io: self._set(io, key, messages))

    async def aset_messages(self, key: str, messages: list[ChatMessage]) -> None:
        await self._faces.arun(lambda io: self._set(io, key, messages))

    def get_messages(self, key: str) -> list[ChatMessage]:
        return self._faces.run(lambda io: self._get(io, key))

    async def aget_messages(self, key: str) -> list[ChatMessage]:
        return await self._faces.arun(lambda io: self._get(io, key))

    def add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        self._faces.run(lambda io: self._add(io, key, message, idx))

    async def async_add_message(self, key: str, message: ChatMessage, idx: int | None = None) -> None:
        await self._faces.arun(lambda io: self._add(io, key, message, idx))

    def delete_messages(self, key: str) -> list[ChatMessage] | None:
        return self._faces.run(lambda io: self._delete_all(io, key))

    async def adelete_messages(self, key: str) -> list[ChatMessage] | None:
        return await self._faces.arun(lambda io: self._delete_all(io, key))

    def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        return self._faces.run(lambda io: self._delete_at(io, key, idx))

    async def adelete_message(self, key: str, idx: int) -> ChatMessage | None:
        return await self._faces.arun(lambda io: self._delete_at(io, key, idx))

    def delete_last_message(self, key: str) -> ChatMessage | None:
        return self._faces.run(lambda io: self._delete_at(io, key, -1))

    async def adelete_last_message(self, key: str) -> ChatMessage | None:
        return await self._faces.arun(lambda io: self._delete_at(io, key, -1))

    def get_keys(self) -> list[str]:
        return self._faces.run(self._keys)

    async def aget_keys(self) -> list[str]:
        return await self._faces.arun(self._keys)

    # -- operations, written once ------------------------------------------------------------------------

    async def _set(self, io: _Face, key: str, messages: list[ChatMessage]) -> None:
        key = _key(key)
        converted = [from_llamaindex(m, session_id=key) for m in _chat_messages(messages)]  # refused before deleting
        await io.call("delete_messages", key)
        if converted:
            await io.call("add_messages", key, converted)
        else:
            await _ensure_session(io, key)  # an empty history is still a key, as in SimpleChatStore

    async def _get(self, io: _Face, key: str) -> list[ChatMessage]:
        return [to_llamaindex(m) for m in await io.call("get_messages", _key(key))]

    async def _add(self, io: _Face, key: str, message: ChatMessage, idx: int | None) -> None:
        key = _key(key)
        if idx is not None:
            raise NotSupportedError("storebridge keeps chat history in append order; add_message(idx=...) "
                                    "cannot insert in the middle (use set_messages with the whole list)")
        [converted] = [from_llamaindex(m, session_id=key) for m in _chat_messages([message])]
        await io.call("add_message", key, converted)

    async def _delete_all(self, io: _Face, key: str) -> list[ChatMessage] | None:
        key = _key(key)
        if await io.call("get_session", key) is None:
            return None
        messages = await io.call("get_messages", key)
        await io.call("delete_session", key)
        return [to_llamaindex(m) for m in messages]

    async def _delete_at(self, io: _Face, key: str, idx: int) -> ChatMessage | None:
        key = _key(key)
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise ValidationError(f"idx must be an int, got {idx!r}")
        messages = await io.call("get_messages", key)
        if not -len(messages) <= idx < len(messages):
            return None
        doomed = messages[idx]
        if not await io.call("delete_messages", key, [doomed.id]):
            return None  # deleted concurrently
        return to_llamaindex(doomed)

    async def _keys(self, io: _Face) -> list[str]:
        return [s.session_id for s in await io.call("list_sessions", limit=None)]


#: Appended to a key for the session holding its archived messages (a control character no key may have).
ARCHIVE_SUFFIX = "\x1farchived"


class StorebridgeDBChatStore(AsyncDBChatStore):
    """The chat store LlamaIndex's ``Memory`` takes, over any storebridge conversation store (async face).

    A key's active messages are the session ``key``; its archived ones the session ``key`` +
    :data:`ARCHIVE_SUFFIX`, so both keep storebridge's order. ``Memory`` archives the *oldest* active
    messages, so "all messages" is the archive followed by the active ones. Archiving is an append to the
    archive and then a delete from the active session (two steps: a crash in between leaves the messages
    in both). ``delete_message(key, idx)`` takes a position in that whole history.
    """

    _faces: Faces[_Face] = PrivateAttr()

    def __init__(self, store: Any) -> None:
        super().__init__()
        self._faces = Faces(store)

    @classmethod
    def class_name(cls) -> str:
        return "StorebridgeDBChatStore"

    @property
    def _io(self) -> _Face:
        return self._faces.get(True)

    @staticmethod
    def _sessions(key: str, status: MessageStatus | None) -> list[str]:
        key = _key(key)
        if ARCHIVE_SUFFIX[0] in key:
            raise ValidationError(f"chat keys must not contain {ARCHIVE_SUFFIX[0]!r} (it marks archives)")
        archived, active = validate_session_id(key + ARCHIVE_SUFFIX), key
        if status is None:
            return [archived, active]
        return [active] if MessageStatus(status) is MessageStatus.ACTIVE else [archived]

    async def _stored(self, key: str, status: MessageStatus | None) -> list[Any]:
        messages: list[Any] = []
        for session_id in self._sessions(key, status):
            messages.extend(await self._io.call("get_messages", session_id))
        return messages

    async def get_messages(self, key: str, status: MessageStatus | None = MessageStatus.ACTIVE,
                           limit: int | None = None, offset: int | None = None) -> list[ChatMessage]:
        messages = await self._stored(key, status)
        start = offset or 0
        end = None if limit is None else start + limit
        return [to_llamaindex(m) for m in messages[start:end]]

    async def count_messages(self, key: str, status: MessageStatus | None = MessageStatus.ACTIVE) -> int:
        return sum([await self._io.call("count_messages", s) for s in self._sessions(key, status)])

    async def add_message(self, key: str, message: ChatMessage,
                          status: MessageStatus = MessageStatus.ACTIVE) -> None:
        await self.add_messages(key, [message], status)

    async def add_messages(self, key: str, messages: list[ChatMessage],
                           status: MessageStatus = MessageStatus.ACTIVE) -> None:
        [session_id] = self._sessions(key, status)
        converted = [from_llamaindex(m, session_id=session_id) for m in _chat_messages(messages)]
        if converted:
            await self._io.call("add_messages", session_id, converted)

    async def set_messages(self, key: str, messages: list[ChatMessage],
                           status: MessageStatus = MessageStatus.ACTIVE) -> None:
        [session_id] = self._sessions(key, status)
        converted = [from_llamaindex(m, session_id=session_id) for m in _chat_messages(messages)]
        await self.delete_messages(key)
        if converted:
            await self._io.call("add_messages", session_id, converted)

    async def delete_message(self, key: str, idx: int) -> ChatMessage | None:
        if isinstance(idx, bool) or not isinstance(idx, int):
            raise ValidationError(f"idx must be an int, got {idx!r}")
        messages = await self._stored(key, None)
        if not -len(messages) <= idx < len(messages):
            return None
        doomed = messages[idx]
        if not await self._io.call("delete_messages", doomed.session_id, [doomed.id]):
            return None
        return to_llamaindex(doomed)

    async def delete_messages(self, key: str, status: MessageStatus | None = None) -> None:
        for session_id in self._sessions(key, status):
            await self._io.call("delete_session", session_id)

    async def delete_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        oldest = await self._oldest_active(key, n)
        if oldest:
            await self._io.call("delete_messages", key, [m.id for m in oldest])
        return [to_llamaindex(m) for m in oldest]

    async def archive_oldest_messages(self, key: str, n: int) -> list[ChatMessage]:
        oldest = await self._oldest_active(key, n)
        if oldest:
            [archive] = self._sessions(key, MessageStatus.ARCHIVED)
            await self._io.call("add_messages", archive,
                                [m.replace(session_id=archive, sequence=None) for m in oldest])
            await self._io.call("delete_messages", key, [m.id for m in oldest])
        return [to_llamaindex(m) for m in oldest]

    async def _oldest_active(self, key: str, n: int) -> list[Any]:
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValidationError(f"n must be a non-negative int, got {n!r}")
        return (await self._stored(key, MessageStatus.ACTIVE))[:n]

    async def get_keys(self) -> list[str]:
        keys: dict[str, None] = {}
        for session in await self._io.call("list_sessions", limit=None):
            keys[session.session_id.removesuffix(ARCHIVE_SUFFIX)] = None
        return list(keys)


# ---------------------------------------------------------------------------------------------------------
# Key-value: LlamaIndex's docstore and index store on any state backend


class StorebridgeKVStore(BaseKVStore):
    """A LlamaIndex ``BaseKVStore`` over any storebridge state store.

    A LlamaIndex collection is a key prefix: ``<prefix><collection>:<key>``, with ``%`` and ``:`` of the
    collection percent-encoded so no two (collection, key) pairs share a state key. Values are dicts,
    stored as JSON by the state store. ``put_all`` writes ``batch_size`` pairs per ``set_many`` call.
    """

    def __init__(self, store: Any, *, prefix: str = "llamaindex/") -> None:
        if not isinstance(prefix, str):
            raise ConfigurationError(f"prefix must be a string, got {type(prefix).__name__}")
        self._faces: Faces[_Face] = Faces(store)
        self.prefix = prefix

    def __repr__(self) -> str:
        return f"StorebridgeKVStore({self._faces.store!r}, prefix={self.prefix!r})"

    def _collection_prefix(self, collection: str) -> str:
        if not isinstance(collection, str):
            raise ValidationError(f"collection must be a string, got {type(collection).__name__}")
        return f"{self.prefix}{quote(collection, safe='/')}:"

    def _key(self, key: str, collection: str) -> str:
        if not isinstance(key, str) or not key:
            raise ValidationError(f"keys must be non-empty strings, got {key!r}")
        return self._collection_prefix(collection) + key

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self._faces.run(lambda io: self._put_all(io, [(key, val)], collection, 1))

    async def aput(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        await self._faces.arun(lambda io: self._put_all(io, [(key, val)], collection, 1))

    def put_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION,
                batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        self._faces.run(lambda io: self._put_all(io, kv_pairs, collection, batch_size))

    async def aput_all(self, kv_pairs: list[tuple[str, dict]], collection: str = DEFAULT_COLLECTION,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> None:
        await self._faces.arun(lambda io: self._put_all(io, kv_pairs, collection, batch_size))

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return self._faces.run(lambda io: self._get(io, key, collection))

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return await self._faces.arun(lambda io: self._get(io, key, collection))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return self._faces.run(lambda io: self._get_all(io, collection))

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return await self._faces.arun(lambda io: self._get_all(io, collection))

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return self._faces.run(lambda io: self._delete(io, key, collection))

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return await self._faces.arun(lambda io: self._delete(io, key, collection))

    async def _put_all(self, io: _Face, pairs: Sequence[tuple[str, dict]], collection: str, batch_size: int) -> None:
        batch_size = _positive_int(batch_size, "batch_size")
        items: dict[str, dict] = {}
        for key, value in pairs:
            if not isinstance(value, Mapping):
                raise ValidationError(f"values are dicts, got {type(value).__name__} for key {key!r}")
            items[self._key(key, collection)] = dict(value)
        entries = list(items.items())
        for start in range(0, len(entries), batch_size):
            await io.call("set_many", dict(entries[start:start + batch_size]))

    async def _get(self, io: _Face, key: str, collection: str) -> dict | None:
        value = await io.call("get", self._key(key, collection))
        return None if value is None else self._checked(value, key)

    async def _get_all(self, io: _Face, collection: str) -> dict[str, dict]:
        prefix = self._collection_prefix(collection)
        keys = await io.call("keys", prefix=prefix)
        values = await io.call("get_many", keys) if keys else {}
        return {key[len(prefix):]: self._checked(value, key) for key, value in values.items()}

    async def _delete(self, io: _Face, key: str, collection: str) -> bool:
        return bool(await io.call("delete", self._key(key, collection)))

    @staticmethod
    def _checked(value: Any, key: str) -> dict:
        if not isinstance(value, dict):
            raise ValidationError(f"state key {key!r} holds a {type(value).__name__}, not a LlamaIndex dict value")
        return value


def storebridge_storage_context(knowledge: Any, state: Any, *, collection_name: str = "llamaindex",
                                distance: Distance | str | None = None, namespace: str | None = None,
                                prefix: str = "llamaindex/") -> StorageContext:
    """A ``StorageContext`` kept entirely in storebridge: the vector store over ``knowledge`` (one
    collection), the docstore and index store over ``state`` (``namespace`` as in LlamaIndex's KV stores).
    Nothing needs ``persist()``: reopen the same stores and call ``load_index_from_storage``."""
    kv = StorebridgeKVStore(state, prefix=prefix)
    return StorageContext.from_defaults(
        vector_store=StorebridgeVectorStore(knowledge, collection_name, distance=distance),
        docstore=KVDocumentStore(kv, namespace=namespace),
        index_store=KVIndexStore(kv, namespace=namespace),
    )


__all__ = [
    "ARCHIVE_SUFFIX",
    "NODE_CONTENT_KEY",
    "NODE_TYPE_KEY",
    "REF_DOC_KEY",
    "RESERVED_KEYS",
    "StorebridgeChatStore",
    "StorebridgeDBChatStore",
    "StorebridgeEmbedding",
    "StorebridgeKVStore",
    "StorebridgeVectorStore",
    "document_to_node",
    "node_to_document",
    "raw_distances",
    "storebridge_storage_context",
]

