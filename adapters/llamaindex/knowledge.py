"""A storebridge knowledge store over LlamaIndex vector stores: registry name ``llamaindex``.

Collections. Each collection is its own wrapped ``BasePydanticVectorStore``, made by
``vector_store_factory(name)`` and kept for the life of this object. The factory must return a store over
the same data for the same name every time (a persistent Chroma/Qdrant collection, or, in process, the
same ``SimpleVectorStore`` object); the default makes a private ``SimpleVectorStore`` per collection.
A factory fits LlamaIndex, where a vector store object is bound to one collection/namespace at
construction, and keeps storebridge's collection names apart from how each engine names them.

Catalog. LlamaIndex's vector store API cannot list what it holds, fetch by id on every store
(``SimpleVectorStore.get_nodes`` raises), count, or page, and ``SimpleVectorStore`` does not even keep
text. So a companion storebridge state store (``catalog=``; default: a private in-process one) holds each
collection's dimension and distance and each document's record (content, metadata, source id, vector):
it is what LlamaIndex calls the docstore, and the record of truth for ``get``, ``scroll``, ``count`` and
exact scores. The wrapped store is the index: it ranks candidates for ``search``. For persistence, both
the wrapped stores and the catalog must persist (pass ``persistent=True`` then). Keys:
``<prefix>collection:<name>`` and ``<prefix>doc:<name>:<id>`` (collection names have no ``:``).

Writes. Everything is validated before anything is written; then the nodes go to the wrapped store and
the records to the catalog, serialised per store object. LlamaIndex stores differ on whether ``add``
replaces an existing id, so an upsert first deletes the ids it replaces from the wrapped store: if the
``add`` that follows fails, those documents stay in the catalog but out of the index until written
again (the error says what failed).

Filters. Every operator, with nested keys, evaluated exactly by storebridge's reference evaluator on the
catalog's metadata (``client_side_filters``): a search over-fetches from the wrapped store until ``k``
documents match. The wrapped store narrows candidates with a pre-filter made by the inverse translator
(:func:`~storebridge.integrations._llamaindex_filters.to_metadata_filters`) from the operators in
``pushdown_operators``: those it evaluates at least as broadly as storebridge. The default, ``$eq`` and
``$in`` in one flat level, is right for ``SimpleVectorStore``, which uses Python's ``==`` (so ``True ==
1``: broader, never narrower), raises ``TypeError`` for ranges over mixed types, and refuses nested
``MetadataFilters``; ``pushdown_operators=()`` turns pre-filtering off.

Scores. The wrapped store ranks by one metric, declared as ``distance`` (``SimpleVectorStore``: cosine);
other metrics raise ``NotSupportedError``. Returned scores and distances are exact, computed from the
catalog's vectors; the wrapped ranking only chooses candidates (with a margin beyond ``k``).
"""

from __future__ import annotations

import bisect
import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores.simple import SimpleVectorStore
from llama_index.core.vector_stores.types import BasePydanticVectorStore, VectorStoreQuery

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    NotSupportedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, FilterLike, Op, matcher, parse_filter
from storebridge.identifiers import validate_collection_name
from storebridge.integrations._llamaindex_filters import to_metadata_filters
from storebridge.integrations.llamaindex import raw_distances
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import (
    CollectionInfo,
    Distance,
    DocumentPage,
    KnowledgeDocument,
    SearchHit,
    validate_vector,
)

from ._wrapped import call_wrapped

VectorStoreFactory = Callable[[str], BasePydanticVectorStore]

#: Matching candidates re-scored beyond ``k``, so the wrapped store's ranking cannot reorder the boundary.
_MARGIN = 16
#: Catalog records read per ``get_many`` call.
_CHUNK = 500
#: Metadata keys LlamaIndex vector stores write next to a node's own metadata (``node_to_metadata_dict``):
#: a pre-filter on them would see LlamaIndex's values, so they are never pushed down.
LLAMAINDEX_METADATA_KEYS = frozenset({"_node_content", "_node_type", "document_id", "doc_id", "ref_doc_id"})


def _positive_int(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValidationError(f"{what} must be a positive integer, got {value!r}")
    return value


def _id_list(ids: Any) -> list[str]:
    if isinstance(ids, (str, bytes)) or not isinstance(ids, Iterable):
        raise ValidationError(f"ids must be a list of strings, got {type(ids).__name__}")
    out = list(ids)
    if not all(isinstance(i, str) for i in out):
        raise ValidationError("document ids are strings")
    return out


def _json_copy(value: Any, what: str) -> Any:
    """A private copy through JSON, refused unless the value is JSON (so every catalog keeps it exactly)."""
    try:
        return json.loads(json.dumps(value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"{what} is not JSON-serialisable ({exc})") from None


class LlamaIndexKnowledgeStore(KnowledgeStore):
    """Knowledge collections kept in LlamaIndex vector stores (one per collection); see the module doc.

    ``catalog`` is a storebridge state store (either flavour) for the companion records, ``catalog_prefix``
    its key prefix; ``distance`` the metric the wrapped stores rank by; ``pushdown_operators`` and
    ``nested_pushdown`` what the wrapped stores may pre-filter; ``persistent`` whether the wrapped stores
    and the catalog outlive this object; ``recall_floor`` what the wrapped stores guarantee against exact
    search.
    """

    backend_name = "llamaindex"

    def __init__(self, vector_store_factory: VectorStoreFactory | None = None, *, catalog: Any = None,
                 catalog_prefix: str = "llamaindex:", distance: Distance | str = Distance.COSINE,
                 pushdown_operators: Iterable[Op | str] = (Op.EQ, Op.IN), nested_pushdown: bool = False,
                 persistent: bool = False, recall_floor: float = 1.0) -> None:
        if vector_store_factory is not None and not callable(vector_store_factory):
            raise ConfigurationError("vector_store_factory must be a callable collection_name -> vector store")
        if not isinstance(catalog_prefix, str):
            raise ConfigurationError("catalog_prefix must be a string")
        self.vector_store_factory: VectorStoreFactory = vector_store_factory or (lambda name: SimpleVectorStore())
        self.distance = Distance.parse(distance)
        try:
            self.pushdown_operators = frozenset(Op(op) for op in pushdown_operators)
        except ValueError as exc:
            raise ConfigurationError(f"pushdown_operators: {exc}") from None
        self.nested_pushdown = bool(nested_pushdown)
        if catalog is None:
            from storebridge.adapters.memory import MemoryStateStore

            catalog, self._owns_catalog = MemoryStateStore(), True
        else:
            self._owns_catalog = False
        if not callable(getattr(catalog, "as_sync", None)):
            raise ConfigurationError(f"catalog must be a storebridge state store, got {type(catalog).__name__}")
        self.catalog = catalog.as_sync()
        self.prefix = catalog_prefix
        self.capabilities = KnowledgeCapabilities(
            filter_operators=ALL_OPS, nested_keys=True, client_side_filters=True,
            distances=frozenset({self.distance}), recall_floor=recall_floor, persistent=persistent,
            notes=("filters are evaluated by storebridge after over-fetching from the wrapped store",),
        )
        self._stores: dict[str, BasePydanticVectorStore] = {}
        self._lock = threading.RLock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LlamaIndexKnowledgeStore(distance={self.distance.value!r}, catalog={self.catalog!r})"

    # -- plumbing --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this LlamaIndexKnowledgeStore was closed; open a new one")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._owns_catalog:
            self.catalog.close()

    def _collection_key(self, name: str) -> str:
        return f"{self.prefix}collection:{name}"

    def _doc_prefix(self, name: str) -> str:
        return f"{self.prefix}doc:{name}:"

    def _vector_store(self, name: str) -> BasePydanticVectorStore:
        with self._lock:
            store = self._stores.get(name)
            if store is None:
                store = self._wrapped("vector_store_factory", self.vector_store_factory, name)
                if not isinstance(store, BasePydanticVectorStore):
                    raise ConfigurationError(
                        f"vector_store_factory({name!r}) returned {type(store).__name__}, not a LlamaIndex vector store"
                    )
                self._stores[name] = store
            return store

    @staticmethod
    def _wrapped(what: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return call_wrapped("LlamaIndex vector store", what, call, *args, **kwargs)

    def _info(self, name: str) -> CollectionInfo:
        self._check_open()
        name = validate_collection_name(name)
        record = self.catalog.get(self._collection_key(name))
        if record is None:
            raise CollectionNotFoundError(f"knowledge collection {name!r} does not exist; create it first")
        return CollectionInfo(name, int(record["dimension"]), Distance.parse(record["distance"]))

    def _doc_ids(self, name: str) -> list[str]:
        prefix = self._doc_prefix(name)
        return [key[len(prefix):] for key in self.catalog.keys(prefix=prefix)]  # keys() is sorted

    def _records(self, name: str, ids: Sequence[str], *, embeddings: bool = True) -> dict[str, KnowledgeDocument]:
        prefix = self._doc_prefix(name)
        found: dict[str, KnowledgeDocument] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start:start + _CHUNK]
            for key, record in self.catalog.get_many([prefix + i for i in chunk]).items():
                doc_id = key[len(prefix):]
                found[doc_id] = KnowledgeDocument(id=doc_id, content=record["content"], metadata=record["metadata"],
                                                  source_id=record["source_id"],
                                                  embedding=record["embedding"] if embeddings else None)
        return found

    # -- collections -----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        self._check_open()
        name = validate_collection_name(name)
        dimension = _positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if metric is not self.distance:
            raise NotSupportedError(
                f"the wrapped LlamaIndex vector stores rank by {self.distance.value!r}, not {metric.value!r}; "
                f"pass distance={metric.value!r} to LlamaIndexKnowledgeStore if they rank by that"
            )
        with self._lock:
            record = self.catalog.get(self._collection_key(name))
            if record is not None:
                existing = CollectionInfo(name, int(record["dimension"]), Distance.parse(record["distance"]))
                if not exist_ok or existing != CollectionInfo(name, dimension, metric):
                    raise AlreadyExistsError(
                        f"collection {name!r} exists with dimension {existing.dimension} and distance "
                        f"{existing.distance.value!r}" + ("" if exist_ok else " (exist_ok=False)")
                    )
                return existing
            self._vector_store(name)
            self.catalog.set(self._collection_key(name), {"dimension": dimension, "distance": metric.value})
        return CollectionInfo(name, dimension, metric)

    def get_collection(self, name: str) -> CollectionInfo:
        return self._info(name)

    def list_collections(self) -> list[str]:
        self._check_open()
        prefix = self._collection_key("")
        return sorted(key[len(prefix):] for key in self.catalog.keys(prefix=prefix))

    def drop_collection(self, name: str) -> bool:
        with self._lock:
            try:
                info = self._info(name)
            except CollectionNotFoundError:
                return False
            ids = self._doc_ids(info.name)
            store = self._vector_store(info.name)
            try:
                self._wrapped("clear", store.clear)
            except NotSupportedError:
                if ids:
                    self._wrapped("delete_nodes", store.delete_nodes, node_ids=ids)
            self.catalog.delete_many([self._doc_prefix(info.name) + i for i in ids])
            self.catalog.delete(self._collection_key(info.name))
        return True

    # -- writes ----------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _write(self, collection: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        info = self._info(collection)
        batch = list(documents)
        records = {doc.id: self._record(doc, info) for doc in self._checked(batch)}  # refused before writing
        if not replace:
            repeated = [i for i, n in Counter(doc.id for doc in batch).items() if n > 1]
            if repeated:
                raise AlreadyExistsError(f"document id(s) {repeated[:5]} appear twice in one insert; nothing written")
        if not records:
            return []
        with self._lock:
            info = self._info(collection)  # still there
            existing = list(self._records(info.name, list(records), embeddings=False))
            if existing and not replace:
                raise AlreadyExistsError(f"document id(s) {existing[:5]} exist already in collection {info.name!r}; "
                                         "use upsert to replace them. Nothing of this batch was written")
            store = self._vector_store(info.name)
            if existing:  # LlamaIndex stores differ on whether add() replaces: remove the old nodes first
                self._wrapped("delete_nodes", store.delete_nodes, node_ids=existing)
            nodes = [self._node(doc_id, record) for doc_id, record in records.items()]
            self._wrapped("add", store.add, nodes)
            self.catalog.set_many({self._doc_prefix(info.name) + doc_id: record for doc_id, record in records.items()})
        return [doc.id for doc in batch]

    @staticmethod
    def _checked(documents: list[Any]) -> list[KnowledgeDocument]:
        for doc in documents:
            if not isinstance(doc, KnowledgeDocument):
                raise ValidationError(f"expected KnowledgeDocument objects, got {type(doc).__name__}")
            if doc.embedding is None:
                raise ValidationError(f"document {doc.id!r} has no embedding; compute one before writing")
            if doc.source_id is not None and not isinstance(doc.source_id, str):
                raise ValidationError(f"source_id of document {doc.id!r} must be a string or None")
        return documents

    def _record(self, doc: KnowledgeDocument, info: CollectionInfo) -> dict[str, Any]:
        vector = validate_vector(doc.embedding, info.dimension, what=f"embedding of document {doc.id!r}")
        if info.distance is Distance.COSINE and not any(vector):
            raise ValidationError(f"document {doc.id!r} has a zero embedding, which has no cosine similarity")
        return {"content": doc.content, "metadata": _json_copy(dict(doc.metadata), f"metadata of document {doc.id!r}"),
                "source_id": doc.source_id, "embedding": vector}

    @staticmethod
    def _node(doc_id: str, record: dict[str, Any]) -> TextNode:
        relationships = ({NodeRelationship.SOURCE: RelatedNodeInfo(node_id=record["source_id"])}
                         if record["source_id"] else {})
        return TextNode(id_=doc_id, text=record["content"], metadata=_json_copy(record["metadata"], "metadata"),
                        embedding=record["embedding"], relationships=relationships)

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        tree = parse_filter(filter)
        wanted = None if ids is None else _id_list(ids)
        with self._lock:
            info = self._info(collection)
            if wanted is None and tree is None:
                return 0
            candidates = self._doc_ids(info.name) if wanted is None else list(dict.fromkeys(wanted))
            found = self._records(info.name, candidates, embeddings=False)
            match = matcher(tree)
            doomed = [doc_id for doc_id in candidates if doc_id in found and match(found[doc_id].metadata)]
            if doomed:
                self._wrapped("delete_nodes", self._vector_store(info.name).delete_nodes, node_ids=doomed)
                self.catalog.delete_many([self._doc_prefix(info.name) + doc_id for doc_id in doomed])
        return len(doomed)

    # -- reads -----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        k = _positive_int(k, "k")
        tree = parse_filter(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        info = self._info(collection)
        query = validate_vector(vector, info.dimension, what="query vector")
        if info.distance is Distance.COSINE and not any(query):
            raise ValidationError("the query vector is all zeros, which has no cosine similarity to anything")
        total = len(self._doc_ids(info.name))
        if not total:
            return []
        pushed = to_metadata_filters(tree, operators=self.pushdown_operators, nested=self.nested_pushdown,
                                     skip_keys=LLAMAINDEX_METADATA_KEYS)
        match = matcher(tree)
        wanted = k + _MARGIN
        fetch = min(total, wanted if tree is None else 4 * wanted)
        store = self._vector_store(info.name)
        while True:
            with self._lock:  # in-process stores (SimpleVectorStore) are not safe to read while written
                result = self._wrapped("query", store.query,
                                       VectorStoreQuery(query_embedding=query, similarity_top_k=fetch, filters=pushed))
            ids = list(result.ids if result.ids is not None else [node.node_id for node in result.nodes or []])
            found = self._records(info.name, list(dict.fromkeys(ids)))
            kept = [found[i] for i in dict.fromkeys(ids) if i in found and match(found[i].metadata)]
            if len(kept) >= wanted or fetch >= total or len(ids) < fetch:
                break
            fetch = min(total, fetch * 4)
        return self._ranked(info.distance, kept, query, k, score_threshold, include_embeddings)

    @staticmethod
    def _ranked(distance: Distance, documents: list[KnowledgeDocument], query: list[float], k: int,
                threshold: float | None, include_embeddings: bool) -> list[SearchHit]:
        """Exact scores from the stored vectors, best first (ties: the wrapped store's order)."""
        if not documents:
            return []
        raw = raw_distances(distance, np.asarray([d.embedding for d in documents], dtype=np.float64),
                            np.asarray(query, dtype=np.float64))
        hits = [SearchHit(d if include_embeddings else d.replace(embedding=None), distance.score(float(r)), float(r))
                for d, r in zip(documents, raw)]
        hits.sort(key=lambda hit: -hit.score)
        hits = hits[:k]
        return hits if threshold is None else [hit for hit in hits if hit.score >= threshold]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        wanted = _id_list(ids)
        info = self._info(collection)
        found = self._records(info.name, list(dict.fromkeys(wanted)), embeddings=include_embeddings)
        return [found[i] for i in wanted if i in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        tree = parse_filter(filter)
        info = self._info(collection)
        ids = self._doc_ids(info.name)
        if tree is None:
            return len(ids)
        match = matcher(tree)
        return sum(match(d.metadata) for d in self._records(info.name, ids, embeddings=False).values())

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        limit = _positive_int(limit, "limit")
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        tree = parse_filter(filter)
        info = self._info(collection)
        ids = self._doc_ids(info.name)  # sorted: the cursor is the last id returned
        start = 0 if cursor is None else bisect.bisect_right(ids, cursor)
        match = matcher(tree)
        page: list[KnowledgeDocument] = []
        step = limit + 1 if tree is None else max(limit + 1, _CHUNK)  # one lookahead tells if there is more
        while start < len(ids) and len(page) <= limit:
            chunk = ids[start:start + step]
            found = self._records(info.name, chunk, embeddings=include_embeddings)
            page += [found[i] for i in chunk if i in found and match(found[i].metadata)]
            start += len(chunk)
        more = len(page) > limit
        page = page[:limit]
        return DocumentPage(page, page[-1].id if more else None)


__all__ = ["LLAMAINDEX_METADATA_KEYS", "LlamaIndexKnowledgeStore", "VectorStoreFactory"]
