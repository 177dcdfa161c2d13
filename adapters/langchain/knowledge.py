"""A storebridge knowledge store over LangChain vector stores: registry name ``langchain``.

Collections. Each collection is its own wrapped ``VectorStore``, made by ``vectorstore_factory(name)`` or
``vectorstore_factory(name, embeddings)`` (a factory taking two arguments gets the embeddings to build
the store with; see "Vectors"). The factory must return a store over the same data for the same name
every time (a cached ``InMemoryVectorStore``, a persistent Chroma collection...). A companion storebridge
state store (``catalog=``; default: a private in-process one) keeps what LangChain's ``VectorStore`` API
cannot answer: each collection's dimension and distance, and the ids (and ``source_id``) of the documents
written through storebridge, which ``count``, ``scroll``, ``drop_collection`` and filtered deletes use.
The wrapped store's documents carry the caller's metadata exactly, with nothing added.

Vectors. storebridge passes vectors, and they are used as given when the wrapped store can take them:
through ``add_embeddings(text_embeddings, metadatas, ids)`` if it has one (FAISS-like), or, when the store
was built with the embeddings handed to a two-argument factory (``InMemoryVectorStore(embedding=...)``),
by handing it our vectors when it asks to embed the batch. Otherwise the wrapped store re-embeds the text
with its own model: a :class:`ReembeddingWarning` says so once per collection and the collection is listed
in :attr:`LangChainKnowledgeStore.reembedded_collections`. Searches use
``similarity_search_with_score_by_vector`` (or ``similarity_search_by_vector``).

Scores. When the stored vectors can be read back (``InMemoryVectorStore`` built in, or an
``embedding_lookup(vectorstore, ids)`` you pass), scores, distances and returned embeddings are exact,
computed from them. Otherwise the wrapped store's own score is converted per ``score_kind``
(``"similarity"``: higher is better, as our score; ``"distance"``: the raw distance of our metric) and
documents come back without embeddings.

Filters. The storebridge tree is evaluated client-side by the reference evaluator (every operator, nested
keys): as a callable filter where the wrapped store takes one (``InMemoryVectorStore``), else after
over-fetching until enough documents match. The wrapped store ranks by one metric, declared as
``distance=`` (``InMemoryVectorStore``: cosine); other metrics raise ``NotSupportedError``.
"""

from __future__ import annotations

import bisect
import contextvars
import copy
import inspect
import json
import math
import threading
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore, VectorStore

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    NotSupportedError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, FilterLike, matcher, parse_filter
from storebridge.identifiers import validate_collection_name
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import (
    CollectionInfo,
    Distance,
    DocumentPage,
    KnowledgeDocument,
    SearchHit,
    validate_vector,
)
from storebridge.state import StateStore

VectorStoreFactory = Callable[..., VectorStore]
#: ``(vectorstore, ids) -> [vector or None per id]``: how to read stored vectors back from a wrapped store.
EmbeddingLookup = Callable[[VectorStore, Sequence[str]], Sequence[Sequence[float] | None]]

#: Candidates re-scored beyond ``k``, so the wrapped store's float32 ranking cannot reorder the boundary.
_MARGIN = 16
#: Documents fetched per step of ``count``/``scroll``/``delete`` with a filter.
_PAGE = 256


class ReembeddingWarning(UserWarning):
    """The wrapped LangChain store embeds document text with its own model instead of using our vectors."""


#: The batch being written in this thread/task, as ``(text, vector)`` pairs; shared by every passthrough,
#: so a wrapped store built by another store object over the same data takes our vectors too.
_PENDING: contextvars.ContextVar[list[tuple[str, list[float]]] | None] = contextvars.ContextVar(
    "storebridge_pending_vectors", default=None)


class _VectorPassthrough(Embeddings):
    """The embeddings a wrapped store is built with: for a batch storebridge is writing, they return the
    vectors storebridge was given (in order, checked against the texts); otherwise they delegate to the
    real embeddings, if any."""

    def __init__(self, embeddings: Embeddings | None) -> None:
        self.embeddings = embeddings

    @staticmethod
    @contextmanager
    def vectors(texts: Sequence[str], vectors: Sequence[list[float]]) -> Iterator[None]:
        token = _PENDING.set(list(zip(texts, vectors)))
        try:
            yield
        finally:
            left = _PENDING.get()
            _PENDING.reset(token)
        if left:
            raise OperationFailedError(f"the wrapped store embedded {len(texts) - len(left)} of {len(texts)} "
                                       "texts; the rest of the batch was not written as given")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        pending = _PENDING.get()
        if pending is None:
            return self._real().embed_documents(texts)
        batch, rest = pending[:len(texts)], pending[len(texts):]
        if [text for text, _ in batch] != list(texts):
            raise OperationFailedError("the wrapped store asked to embed texts other than the batch being "
                                       "written, in another order; its vectors would not match the documents")
        _PENDING.set(rest)
        return [vector for _, vector in batch]

    def embed_query(self, text: str) -> list[float]:
        return self._real().embed_query(text)

    def _real(self) -> Embeddings:
        if self.embeddings is None:
            raise NotSupportedError("the wrapped store needs text embedded, and LangChainKnowledgeStore was made "
                                    "without embeddings=; pass the LangChain Embeddings of your documents")
        return self.embeddings


def _in_memory_vectors(store: VectorStore, ids: Sequence[str]) -> list[list[float] | None]:
    """Stored vectors of an ``InMemoryVectorStore`` (its public ``store`` dict, as its dump() writes)."""
    rows = store.store  # type: ignore[attr-defined]
    return [list(rows[i]["vector"]) if i in rows else None for i in ids]


def _exact(distance: Distance, vectors: np.ndarray, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(raw distance, score)`` of each row against the query, per the table on :class:`Distance`."""
    if distance is Distance.COSINE:
        similarity = vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query))
        return 1.0 - similarity, similarity
    if distance is Distance.L2:
        raw = np.linalg.norm(vectors - query, axis=1)
        return raw, 1.0 / (1.0 + raw)
    dot = vectors @ query
    return -dot, dot


def _from_reported(distance: Distance, kind: str, value: float) -> tuple[float, float]:
    """``(score, distance)`` from the wrapped store's own number, read as ``kind``."""
    if kind == "distance":
        return distance.score(value), value
    if distance is Distance.COSINE:
        return value, 1.0 - value
    if distance is Distance.DOT:
        return value, -value
    return value, (1.0 / value - 1.0) if value > 0 else math.inf


def _string_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _string_keys(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_string_keys(v) for v in value)
    return True


def _json_metadata(doc: KnowledgeDocument) -> dict[str, Any]:
    """A private JSON copy of the metadata (tuples become lists, as every other backend returns them),
    refused unless it is JSON with string keys, so it round-trips through any wrapped store."""
    if not _string_keys(dict(doc.metadata)):
        raise ValidationError(f"metadata of document {doc.id!r} has a non-string key; use string keys")
    try:
        return json.loads(json.dumps(dict(doc.metadata), allow_nan=False))  # type: ignore[no-any-return]
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"metadata of document {doc.id!r} is not JSON-serialisable ({exc})") from None


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


class LangChainKnowledgeStore(KnowledgeStore):
    """Knowledge collections kept in LangChain vector stores (one per collection); see the module doc.

    ``distance`` is the metric the wrapped stores rank by; ``score_kind`` what their ``*_with_score``
    returns when vectors cannot be read back; ``callable_filter`` whether they take ``filter=callable``
    (default: True for ``InMemoryVectorStore``); ``persistent`` whether the wrapped stores and the catalog
    outlive this object; ``recall_floor`` what they guarantee against exact search.
    """

    backend_name = "langchain"

    def __init__(self, vectorstore_factory: VectorStoreFactory, *, embeddings: Embeddings | None = None,
                 distance: Distance | str = Distance.COSINE, score_kind: Literal["similarity", "distance"] = "similarity",
                 catalog: StateStore | Any | None = None, embedding_lookup: EmbeddingLookup | None = None,
                 callable_filter: bool | None = None, persistent: bool = False, recall_floor: float = 1.0) -> None:
        if not callable(vectorstore_factory):
            raise ConfigurationError("vectorstore_factory must be a callable collection_name -> VectorStore")
        if score_kind not in ("similarity", "distance"):
            raise ConfigurationError(f"score_kind must be 'similarity' or 'distance', got {score_kind!r}")
        self.vectorstore_factory = vectorstore_factory
        self._passthrough = _VectorPassthrough(embeddings)
        self._factory_takes_embeddings = _takes_two_arguments(vectorstore_factory)
        self.distance = Distance.parse(distance)
        self.score_kind = score_kind
        self.embedding_lookup = embedding_lookup
        self.callable_filter = callable_filter
        if catalog is None:
            from storebridge.adapters.memory import MemoryStateStore

            catalog, self._owns_catalog = MemoryStateStore(), True
        else:
            self._owns_catalog = False
        self.catalog = catalog.as_sync()
        #: Collections whose wrapped store re-embeds text instead of taking our vectors.
        self.reembedded_collections: set[str] = set()
        self.capabilities = KnowledgeCapabilities(
            filter_operators=ALL_OPS, nested_keys=True, client_side_filters=True,
            distances=frozenset({self.distance}), recall_floor=recall_floor, get_by_id=True, scroll=True,
            delete_by_filter=True, count_with_filter=True, insert_rejects_duplicates=True, persistent=persistent,
            notes=(
                "filters are evaluated client-side (callable filter or over-fetching)",
                ("vectors are used as given when the wrapped store takes them (add_embeddings, or built with the "
                 "embeddings a two-argument factory receives); otherwise it re-embeds text and a "
                 "ReembeddingWarning is issued"),
                "count, scroll and filtered deletes see the documents written through storebridge",
            ),
        )
        self._stores: dict[str, VectorStore] = {}
        self._lock = threading.RLock()
        self._closed = False

    def __repr__(self) -> str:
        return f"LangChainKnowledgeStore({self.vectorstore_factory!r}, distance={self.distance.value!r})"

    # -- plumbing -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this LangChain knowledge store was closed; open a new one")

    def _vectorstore(self, name: str) -> VectorStore:
        store = self._stores.get(name)
        if store is None:
            made = (self.vectorstore_factory(name, self._passthrough) if self._factory_takes_embeddings
                    else self.vectorstore_factory(name))
            if not isinstance(made, VectorStore):
                raise ConfigurationError(f"vectorstore_factory returned {type(made).__name__}, not a LangChain VectorStore")
            store = self._stores.setdefault(name, made)
        return store

    def _info(self, name: str) -> CollectionInfo:
        self._check_open()
        record = self.catalog.get(f"collection:{validate_collection_name(name)}")
        if record is None:
            raise CollectionNotFoundError(f"knowledge collection {name!r} does not exist; create it first")
        return CollectionInfo(name, record["dimension"], Distance(record["distance"]))

    @staticmethod
    def _doc_prefix(name: str) -> str:
        return f"doc:{name}:"

    def _ids(self, name: str) -> list[str]:
        """Ids written through storebridge, sorted (collection names hold no ':', so the prefix is exact)."""
        prefix = self._doc_prefix(name)
        return [key[len(prefix):] for key in self.catalog.keys(prefix=prefix)]

    def _sources(self, name: str, ids: Sequence[str]) -> dict[str, str | None]:
        """``id -> source_id`` of the given ids that are in the catalog."""
        prefix = self._doc_prefix(name)
        found = self.catalog.get_many([prefix + i for i in ids])
        return {key[len(prefix):]: value.get("source_id") for key, value in found.items()}

    def _vectors(self, store: VectorStore, ids: Sequence[str]) -> list[list[float] | None] | None:
        if self.embedding_lookup is not None:
            return [None if v is None else [float(x) for x in v] for v in self.embedding_lookup(store, ids)]
        if isinstance(store, InMemoryVectorStore):
            return _in_memory_vectors(store, ids)
        return None

    def _documents(self, name: str, store: VectorStore, found: Sequence[Document], *,
                   include_embeddings: bool) -> list[KnowledgeDocument]:
        ids = [self._document_id(doc) for doc in found]
        sources = self._sources(name, ids)
        vectors = self._vectors(store, ids) if include_embeddings else None
        return [KnowledgeDocument(id=doc_id, content=doc.page_content, metadata=copy.deepcopy(dict(doc.metadata)),
                                  source_id=sources.get(doc_id), embedding=vectors[i] if vectors else None)
                for i, (doc_id, doc) in enumerate(zip(ids, found))]

    @staticmethod
    def _document_id(doc: Document) -> str:
        if not doc.id:
            raise OperationFailedError("the wrapped vector store returned a document without an id")
        return doc.id

    def _fetch(self, name: str, store: VectorStore, ids: Sequence[str], *,
               include_embeddings: bool) -> list[KnowledgeDocument]:
        """Documents by id in the order asked (missing skipped)."""
        if not ids:
            return []
        try:
            found = store.get_by_ids(list(dict.fromkeys(ids)))
        except NotImplementedError as exc:
            raise NotSupportedError(f"{type(store).__name__} cannot get documents by id (get_by_ids)") from exc
        by_id = {doc.id: doc for doc in self._documents(name, store, found, include_embeddings=include_embeddings)}
        return [by_id[i] for i in ids if i in by_id]

    def _matching(self, name: str, store: VectorStore, ids: Sequence[str], match: Callable[[Any], bool], *,
                  include_embeddings: bool = False, limit: int | None = None) -> list[KnowledgeDocument]:
        """Documents of ``ids`` (in that order) whose metadata match, fetched page by page."""
        out: list[KnowledgeDocument] = []
        for start in range(0, len(ids), _PAGE):
            page = self._fetch(name, store, ids[start:start + _PAGE], include_embeddings=include_embeddings)
            out += [doc for doc in page if match(doc.metadata)]
            if limit is not None and len(out) >= limit:
                return out[:limit]
        return out

    def _validated(self, documents: Iterable[KnowledgeDocument], info: CollectionInfo) -> list[KnowledgeDocument]:
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        docs = list(documents)
        for doc in docs:
            if not isinstance(doc, KnowledgeDocument):
                raise ValidationError(f"expected KnowledgeDocument objects, got {type(doc).__name__}")
            if doc.embedding is None:
                raise ValidationError(f"document {doc.id!r} has no embedding; compute one before writing")
            vector = validate_vector(doc.embedding, info.dimension, what=f"embedding of document {doc.id!r}")
            if info.distance is Distance.COSINE and not any(vector):
                raise ValidationError(f"document {doc.id!r} has a zero embedding, which has no cosine similarity")
            if doc.source_id is not None and not isinstance(doc.source_id, str):
                raise ValidationError(f"source_id of document {doc.id!r} must be a string or None")
            _json_metadata(doc)
        return docs

    def _add(self, name: str, store: VectorStore, docs: Sequence[KnowledgeDocument]) -> None:
        """Write to the wrapped store, with our vectors wherever it takes them."""
        texts = [doc.content for doc in docs]
        vectors = [[float(x) for x in doc.embedding or ()] for doc in docs]
        metadatas = [_json_metadata(doc) for doc in docs]
        ids = [doc.id for doc in docs]
        add_embeddings = getattr(store, "add_embeddings", None)
        if callable(add_embeddings):
            add_embeddings(list(zip(texts, vectors)), metadatas=metadatas, ids=ids)
            return
        documents = [Document(id=doc.id, page_content=text, metadata=meta) for doc, text, meta in zip(docs, texts, metadatas)]
        if isinstance(store.embeddings, _VectorPassthrough):
            with _VectorPassthrough.vectors(texts, vectors):
                store.add_documents(documents, ids=ids)
            return
        if name not in self.reembedded_collections:
            self.reembedded_collections.add(name)
            warnings.warn(
                f"the {type(store).__name__} of collection {name!r} embeds document text with its own model, not "
                "the vectors storebridge was given; give vectorstore_factory a second parameter and build the "
                "store with the embeddings it receives to keep the vectors as given",
                ReembeddingWarning, stacklevel=4,
            )
        store.add_documents(documents, ids=ids)

    def _write(self, collection: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(collection)
        with self._lock:
            info = self._info(name)
            docs = self._validated(documents, info)
            if not docs:
                return []
            ids = [doc.id for doc in docs]
            if not replace and len(set(ids)) != len(ids):
                raise AlreadyExistsError("a document id appears twice in one insert; nothing was written")
            latest = list({doc.id: doc for doc in docs}.values())  # upsert: the last of a repeated id wins
            existing = list(self._sources(name, [doc.id for doc in latest]))
            if existing and not replace:
                raise AlreadyExistsError(f"document id(s) {existing[:5]} exist already in collection {name!r}; "
                                         "use upsert to replace them. Nothing of this batch was written")
            store = self._vectorstore(name)
            if existing:  # some wrapped stores refuse (FAISS) or duplicate existing ids: replace explicitly
                store.delete(existing)
            self._add(name, store, latest)
            self.catalog.set_many({self._doc_prefix(name) + doc.id: {"source_id": doc.source_id} for doc in latest})
        return ids

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        if isinstance(dimension, bool) or not isinstance(dimension, int) or dimension < 1:
            raise ValidationError(f"dimension must be a positive integer, got {dimension!r}")
        distance = Distance.parse(distance)
        if distance not in self.capabilities.distances:
            raise NotSupportedError(f"the wrapped vector stores rank by {self.distance.value} only, not {distance.value}; "
                                    "pass distance= to LangChainKnowledgeStore to declare another metric")
        info = CollectionInfo(name, dimension, distance)
        with self._lock:
            self._check_open()
            try:
                existing = self._info(name)
            except CollectionNotFoundError:
                self.catalog.set(f"collection:{name}", {"dimension": dimension, "distance": distance.value})
                return info
        if existing != info:
            raise AlreadyExistsError(f"collection {name!r} exists with dimension {existing.dimension} and distance "
                                     f"{existing.distance.value}")
        if not exist_ok:
            raise AlreadyExistsError(f"collection {name!r} exists already")
        return existing

    def get_collection(self, name: str) -> CollectionInfo:
        return self._info(name)

    def list_collections(self) -> list[str]:
        self._check_open()
        return sorted(key.removeprefix("collection:") for key in self.catalog.keys(prefix="collection:"))

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        with self._lock:
            try:
                self._info(name)
            except CollectionNotFoundError:
                return False
            ids = self._ids(name)
            if ids:
                self._vectorstore(name).delete(ids)
            self.catalog.delete_many([f"collection:{name}", *(self._doc_prefix(name) + i for i in ids)])
            self._stores.pop(name, None)
        return True

    # -- documents ------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = _positive_int(k, "k")
        tree = parse_filter(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        info = self._info(name)
        query = validate_vector(vector, info.dimension, what="query vector")
        if info.distance is Distance.COSINE and not any(query):
            raise ValidationError("the query vector is all zeros, which has no cosine similarity to anything")
        store = self._vectorstore(name)
        found = self._candidates(name, store, query, k, tree)
        hits = self._scored(name, store, info.distance, query, found, include_embeddings)
        if score_threshold is not None:
            hits = [hit for hit in hits if hit.score >= score_threshold]
        return hits[:k]

    def _candidates(self, name: str, store: VectorStore, query: list[float], k: int,
                    tree: Any) -> list[tuple[Document, float | None]]:
        """At least ``k + margin`` matching candidates (or all there are), as ``(document, reported score)``."""
        match = matcher(tree)
        pushed = tree is not None and (self.callable_filter if self.callable_filter is not None
                                       else isinstance(store, InMemoryVectorStore))
        want = k + _MARGIN
        fetch = want if tree is None or pushed else max(4 * want, 64)
        total: int | None = None
        while True:
            raw = self._raw_search(store, query, fetch, (lambda doc: match(doc.metadata)) if pushed else None)
            matched = raw if pushed or tree is None else [(d, s) for d, s in raw if match(d.metadata)]
            if len(matched) >= want or len(raw) < fetch:
                return matched
            total = len(self._ids(name)) if total is None else total
            if fetch >= total:
                return matched
            fetch = min(total, fetch * 4)

    @staticmethod
    def _raw_search(store: VectorStore, query: list[float], fetch: int,
                    predicate: Callable[[Document], bool] | None) -> list[tuple[Document, float | None]]:
        options = {} if predicate is None else {"filter": predicate}
        with_score = getattr(store, "similarity_search_with_score_by_vector", None)
        if callable(with_score):
            return list(with_score(query, k=fetch, **options))
        return [(doc, None) for doc in store.similarity_search_by_vector(query, k=fetch, **options)]

    def _scored(self, name: str, store: VectorStore, distance: Distance, query: list[float],
                found: Sequence[tuple[Document, float | None]], include_embeddings: bool) -> list[SearchHit]:
        """Hits best first: exact scores from the stored vectors when they can be read, else the reported ones."""
        docs = self._documents(name, store, [doc for doc, _ in found], include_embeddings=True)
        vectors = [doc.embedding for doc in docs]
        if docs and all(v is not None for v in vectors):
            raw, scores = _exact(distance, np.asarray(vectors, dtype=np.float64), np.asarray(query, dtype=np.float64))
            pairs = list(zip(scores.tolist(), raw.tolist()))
        elif all(reported is not None for _, reported in found):
            pairs = [_from_reported(distance, self.score_kind, float(reported)) for _, reported in found]  # type: ignore[arg-type]
        else:
            raise NotSupportedError(f"{type(store).__name__} returns no scores and its vectors cannot be read back; "
                                    "pass embedding_lookup= to LangChainKnowledgeStore")
        order = sorted(range(len(docs)), key=lambda i: -pairs[i][0])  # stable: ties keep the wrapped order
        return [SearchHit(docs[i] if include_embeddings else docs[i].replace(embedding=None), pairs[i][0], pairs[i][1])
                for i in order]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = _id_list(ids)
        self._info(name)
        return self._fetch(name, self._vectorstore(name), wanted, include_embeddings=include_embeddings)

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree = parse_filter(filter)
        wanted = None if ids is None else _id_list(ids)
        with self._lock:
            self._info(name)
            if wanted is None and tree is None:
                return 0
            candidates = self._ids(name) if wanted is None else list(self._sources(name, list(dict.fromkeys(wanted))))
            store = self._vectorstore(name)
            if tree is not None:
                candidates = [doc.id for doc in self._matching(name, store, candidates, matcher(tree))]
            if candidates:
                store.delete(candidates)
                self.catalog.delete_many([self._doc_prefix(name) + i for i in candidates])
        return len(candidates)

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree = parse_filter(filter)
        self._info(name)
        ids = self._ids(name)
        if tree is None:
            return len(ids)
        return len(self._matching(name, self._vectorstore(name), ids, matcher(tree)))

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        """Pages in id order; the cursor is the last id of the previous page."""
        name = validate_collection_name(collection)
        limit = _positive_int(limit, "limit")
        tree = parse_filter(filter)
        if cursor is not None and not isinstance(cursor, str):
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        self._info(name)
        ids = self._ids(name)
        if cursor is not None:
            ids = ids[bisect.bisect_right(ids, cursor):]
        page = self._matching(name, self._vectorstore(name), ids, matcher(tree), include_embeddings=include_embeddings,
                              limit=limit + 1)
        return DocumentPage(page[:limit], page[limit - 1].id if len(page) > limit else None)

    def close(self) -> None:
        """Mark this object closed (closing the catalog only if this object made it); the wrapped vector
        stores are the caller's."""
        if self._closed:
            return
        self._closed = True
        self._stores.clear()
        if self._owns_catalog:
            self.catalog.close()


def _takes_two_arguments(factory: Callable[..., Any]) -> bool:
    """Whether ``factory(name, embeddings)`` is a valid call (else it is called as ``factory(name)``)."""
    try:
        inspect.signature(factory).bind("name", None)
    except TypeError:
        return False
    except ValueError:  # no signature (some builtins): call it the documented one-argument way
        return False
    return True


__all__ = ["EmbeddingLookup", "LangChainKnowledgeStore", "ReembeddingWarning", "VectorStoreFactory"]
