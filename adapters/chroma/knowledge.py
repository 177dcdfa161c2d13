"""Chroma knowledge store (``chroma``, alias ``chromadb``), tested with chromadb 1.5.9, both embedded
(``PersistentClient``) and against a ``chroma run`` server (``HttpClient``).

URLs: ``chroma:///relative/dir`` or ``chroma:////abs/dir`` (``chroma+local://`` too) open a
``PersistentClient`` on that directory; ``chroma+http://host:port`` / ``chroma+https://host:port`` an
``HttpClient``. Options: ``path=``, ``host=``, ``port=``, ``ssl=``, ``headers=``, or a ready ``client=``.

Vectors are always ours: collections are created with ``embedding_function=None`` and every write and
query passes embeddings (Chroma's default embedder downloads a model and fails offline).

Collection names. Chroma wants 3-63 characters of ``[a-zA-Z0-9._-]`` starting and ending with a letter or
digit. Our name ``n`` maps deterministically to ``sb-<n[:40]>-<12 hex of sha256(n)>`` (always valid, never
two of ours on one Chroma name); the original name, dimension and distance live in the collection's
metadata (``sb:name``, ``sb:dimension``, ``sb:distance``), and ``list_collections`` returns our names only
(Chroma collections not made by storebridge are not listed).

Distances. ``hnsw:space`` is ``cosine`` / ``l2`` / ``ip``. Chroma's l2 is the *squared* euclidean distance
and its ip is ``1 - dot``; we never report Chroma's numbers: the candidates' stored float32 vectors come
back with the hits and are re-scored exactly (float64, :func:`storebridge.vectors.exact_scores`), so
``score``/``distance`` follow :class:`~storebridge.models.Distance` exactly.

Search. HNSW is approximate: an unfiltered search asks Chroma for ``k + 32`` candidates with
``hnsw:search_ef``/``construction_ef`` raised to 256 and re-ranks them exactly; when ``k + 32`` reaches the
collection's size (and always with a filter) the search is exact over the candidates (all, or all that
match the filter). ``recall_floor`` is 0.95 (measured 1.0 on the conformance suite's ranking data).

Metadata. Chroma holds only flat str/int/float/bool values (no None, no nested objects). The user's
metadata is kept whole as JSON under ``sb:meta`` (round-trips exactly) and ``source_id`` under
``sb:source``; top-level string fields are also indexed under their own key so that string equality
can be pre-filtered by Chroma.

Filters: evaluated client-side (``client_side_filters=True``) with the reference evaluator
(:func:`storebridge.filters.matcher`) over the whole metadata, so every operator has exactly FILTERS.md's
meaning. Chroma's own ``where`` differs (its ``$ne``/``$nin`` do not match documents without the
field, its metadata has no None or nested values), so it is used only as an exact *pre-filter*:
``$eq``/``$in`` on string values (and ``$and`` / ``$or`` of those) narrow what is fetched, and the exact
evaluation runs on what comes back. A filtered search, count, delete or scroll therefore reads every
pre-filtered candidate (their embeddings, for search): exact, but linear in the candidates.

Writes. Chroma's ``add`` silently skips existing ids, so ``insert`` first reads the batch's ids and
raises ``AlreadyExistsError`` if any exists (not atomic against a concurrent writer of the same ids:
Chroma has no transactions). Writes go in batches of at most 1000 (and Chroma's ``max_batch_size``); a
sequence is validated whole before the first batch is written, a generator batch by batch.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore, reconcile_collection
from storebridge.errors import (
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    Filter,
    Op,
    Or,
    matcher,
)
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import (
    BATCH_SIZE,
    batches,
    metadata_json,
    storable_text,
)

_META = "sb:meta"
_SOURCE = "sb:source"
_NAME = "sb:name"
_DIMENSION = "sb:dimension"
_DISTANCE = "sb:distance"
_VECTOR = "sb:vector"
_SPACE = {Distance.COSINE: "cosine", Distance.L2: "l2", Distance.DOT: "ip"}
_EF = 256
#: Rows read per ``get`` page when filtering client-side.
_PAGE = 1000
_PLAIN_KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,63}")


def chroma_collection_name(name: str) -> str:
    """The Chroma collection name for our (validated) collection name: deterministic, always valid."""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    return f"sb-{name[:40]}-{digest}"


def _string_prefilter(node: Any) -> dict[str, Any] | None:
    """A Chroma ``where`` selecting a superset of what ``node`` matches (exact for what it covers), or
    None for no constraint. Only string equality / membership is pushed down: for strings Chroma's
    ``$eq``/``$in`` mean exactly ours, and a document without the field fails both sides."""
    if isinstance(node, Comparison):
        if not _indexed_key(node.field):
            return None
        if node.op is Op.EQ and isinstance(node.value, str):
            return {node.field: {"$eq": node.value}}
        if (node.op is Op.IN and node.value and all(isinstance(v, str) for v in node.value)):
            return {node.field: {"$in": list(node.value)}}
        return None
    if isinstance(node, And):
        parts = [p for p in (_string_prefilter(c) for c in node.children) if p is not None]
        if not parts:
            return None
        return parts[0] if len(parts) == 1 else {"$and": parts}
    if isinstance(node, Or):
        maybe = [_string_prefilter(c) for c in node.children]
        parts = [p for p in maybe if p is not None]
        if len(parts) != len(maybe):
            return None
        return parts[0] if len(parts) == 1 else {"$or": parts}
    return None  # $not: the complement of a superset is not a superset


def _indexed_key(key: Any) -> bool:
    """Top-level keys whose string values are copied into Chroma's metadata (reserved prefixes not)."""
    return (isinstance(key, str) and _PLAIN_KEY.fullmatch(key) is not None
            and not key.startswith(("chroma", "sb")))


def _index_metadata(doc: KnowledgeDocument, vector: np.ndarray | None) -> dict[str, Any]:
    """Chroma metadata for one document: the whole JSON, the source id, top-level strings indexed, and
    (cosine collections) the vector as given, since Chroma stores cosine vectors normalised."""
    meta: dict[str, Any] = {_META: metadata_json(doc)}
    if vector is not None:
        meta[_VECTOR] = base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    if doc.source_id is not None:
        meta[_SOURCE] = storable_text(doc.source_id, f"source_id of {doc.id!r}")
    for key, value in doc.metadata.items():
        if _indexed_key(key) and isinstance(value, str):
            meta[key] = value
    return meta


class _Handle:
    """One Chroma collection as we know it."""

    __slots__ = ("collection", "info")

    def __init__(self, collection: Any, info: CollectionInfo) -> None:
        self.collection = collection
        self.info = info


class ChromaKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections in Chroma (embedded ``PersistentClient`` or a server via ``HttpClient``)."""

    #: Candidates fetched from HNSW beyond k, re-ranked exactly.
    rerank_margin = 32

    backend_name = "chroma"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=True,
        client_side_filters=True,
        distances=frozenset(Distance),
        recall_floor=0.95,
        persistent=True,
        max_batch=BATCH_SIZE,
        notes=(
            "HNSW (approximate) for unfiltered searches, exactly re-ranked; filtered searches are exact",
            "filters evaluated client-side after a string-equality pre-filter in Chroma",
            "insert checks ids first: not atomic against concurrent writers of the same ids",
        ),
    )

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 host: str | None = None, port: int | None = None, ssl: bool | None = None,
                 headers: dict[str, str] | None = None, client: Any = None) -> None:
        self._closed = False
        self._handles: dict[str, _Handle] = {}
        self._owns_client = client is None
        self._where = "a given client"
        if client is not None:
            if url is not None or path is not None or host is not None:
                raise ConfigurationError("pass either client= or a URL / path= / host=, not both")
            self._client = client
            self._size_batches()
            return
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme != "chroma" or parsed.driver not in (None, "local", "http", "https"):
                raise ConfigurationError(f"not a Chroma URL: {mask_secrets(url)!r}; use chroma:///dir or "
                                         "chroma+http://host:port")
            unknown = set(parsed.query) - {"ssl"}
            if unknown:
                raise ConfigurationError(f"unknown Chroma URL options {sorted(unknown)}")
            if parsed.driver in ("http", "https"):
                host = host or parsed.host
                port = port or parsed.port
                ssl = parsed.driver == "https" if ssl is None else ssl
            else:
                if parsed.host:
                    raise ConfigurationError("a local Chroma URL has no host: use chroma:///relative/dir or "
                                             "chroma:////absolute/dir")
                path = path or parsed.file_path
        try:
            import chromadb
            from chromadb.config import Settings
        except ImportError as exc:  # pragma: no cover - the registry checks first
            raise ConfigurationError("chromadb is not installed: pip install 'storebridge[chroma]'") from exc
        settings = Settings(anonymized_telemetry=False, allow_reset=False)
        try:
            if host is not None:
                if path is not None:
                    raise ConfigurationError("pass either path= (embedded) or host= (server), not both")
                port = int(port or 8000)
                self._where = f"{'https' if ssl else 'http'}://{host}:{port}"
                self._client = chromadb.HttpClient(host=host, port=port, ssl=bool(ssl), headers=headers,
                                                   settings=settings)
            else:
                if not path:
                    raise ConfigurationError("the Chroma store needs a path= (embedded) or a host= (server)")
                self._where = os.fspath(path)
                self._client = chromadb.PersistentClient(path=self._where, settings=settings)
        except StorebridgeError:
            raise
        except Exception as exc:
            raise ConnectionFailedError(f"cannot open Chroma at {mask_secrets(self._where)}: {mask_secrets(exc)}") from exc
        self._size_batches()

    def _size_batches(self) -> None:
        """Writes go in batches of at most 1000 and of the client's ``max_batch_size``."""
        with self._call("get_max_batch_size"):
            self.write_batch = max(1, min(BATCH_SIZE, int(self._client.get_max_batch_size())))

    def __repr__(self) -> str:
        return f"ChromaKnowledgeStore({mask_secrets(self._where)!r})"

    def close(self) -> None:
        # The client is shared per path/host by chromadb itself (other store objects may use the same
        # system), so closing drops our reference only.
        self._closed = True

    # -- plumbing -------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        if type(exc).__name__ in ("ConnectError", "ConnectionError", "ConnectTimeout"):
            return ConnectionFailedError(f"Chroma at {mask_secrets(self._where)} is unreachable: {mask_secrets(exc)}")
        return OperationFailedError(f"Chroma {what} failed: {mask_secrets(exc)}")

    def _handle(self, name: str) -> _Handle:
        """The Chroma collection for our validated name; ``CollectionNotFoundError`` if missing."""
        from chromadb.errors import NotFoundError

        try:
            collection = self._client.get_collection(chroma_collection_name(name), embedding_function=None)
        except (NotFoundError, ValueError) as exc:
            if isinstance(exc, NotFoundError) or "does not exist" in str(exc):
                raise CollectionNotFoundError(
                    f"knowledge collection {name!r} does not exist; create it with create_collection"
                ) from None
            raise
        meta = collection.metadata or {}
        if meta.get(_NAME) != name:
            raise OperationFailedError(f"the Chroma collection {collection.name!r} was not made by storebridge "
                                       f"for {name!r}")
        return _Handle(collection, CollectionInfo(name, int(meta[_DIMENSION]), Distance(meta[_DISTANCE])))

    @staticmethod
    def _vector(meta: dict[str, Any] | None, embedding: Any) -> np.ndarray:
        """The vector as written: from ``sb:vector`` (cosine collections), else Chroma's own copy."""
        packed = (meta or {}).get(_VECTOR)
        if isinstance(packed, str):
            return np.frombuffer(base64.b64decode(packed), dtype="<f4").astype(np.float32)
        return np.asarray(embedding, dtype=np.float32)

    @classmethod
    def _document(cls, doc_id: str, content: Any, meta: dict[str, Any] | None, embedding: Any, *,
                  with_embedding: bool = True) -> KnowledgeDocument:
        meta = meta or {}
        return KnowledgeDocument(
            id=doc_id, content=content or "", metadata=json.loads(meta.get(_META, "{}")),
            source_id=meta.get(_SOURCE),
            embedding=cls._vector(meta, embedding).tolist() if with_embedding else None,
        )

    def _scan(self, collection: Any, where: Filter | None, include: list[str],
              start: int = 0) -> Iterator[tuple[int, str, dict[str, Any], Any, Any, Any]]:
        """``(position, id, user metadata, chroma metadata, document, embedding)`` of every document
        matching ``where`` (exactly, by the reference evaluator, after Chroma's string pre-filter), in
        Chroma's stable order, from raw position ``start`` on."""
        prefilter = None if where is None else _string_prefilter(where)
        check = None if where is None else matcher(where)
        fields = sorted(set(include) | {"metadatas"})
        offset = start
        while True:
            page = collection.get(where=prefilter, limit=_PAGE, offset=offset, include=fields)
            ids = page["ids"]
            if not ids:
                return
            metas = page.get("metadatas") or [None] * len(ids)
            docs = page.get("documents") if "documents" in include else None
            embs = page.get("embeddings") if "embeddings" in include else None
            for i, doc_id in enumerate(ids):
                meta = metas[i] or {}
                user = json.loads(meta.get(_META, "{}"))
                if check is None or check(user):
                    yield (offset + i, doc_id, user, meta, None if docs is None else docs[i],
                           None if embs is None else embs[i])
            if len(ids) < _PAGE:
                return
            offset += len(ids)

    def _collection(self, info: CollectionInfo) -> Any:
        """The Chroma collection object the last describe of ``info.name`` found."""
        handle = self._handles.get(info.name)
        if handle is None:  # pragma: no cover - every public method describes first
            raise CollectionNotFoundError(f"knowledge collection {info.name!r} does not exist")
        return handle.collection

    # -- engine primitives ------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        try:
            handle = self._handle(name)
        except CollectionNotFoundError:
            self._handles.pop(name, None)
            return None
        self._handles[name] = handle
        return handle.info

    def _engine_create(self, info: CollectionInfo) -> None:
        metadata = {"hnsw:space": _SPACE[info.distance], "hnsw:search_ef": _EF, "hnsw:construction_ef": _EF,
                    _NAME: info.name, _DIMENSION: info.dimension, _DISTANCE: info.distance.value}
        self._client.get_or_create_collection(chroma_collection_name(info.name), metadata=metadata,
                                              embedding_function=None)
        existing = self._engine_describe(info.name)  # another writer may have won the race
        if existing is not None and existing != info:
            reconcile_collection(existing, info, exist_ok=True)

    def _engine_drop(self, name: str) -> None:
        from chromadb.errors import NotFoundError

        try:
            self._client.delete_collection(chroma_collection_name(name))
        except NotFoundError:
            pass  # dropped by another writer since we looked: the outcome is the same
        self._handles.pop(name, None)

    def _engine_names(self) -> list[str]:
        names = []
        for collection in self._client.list_collections():
            meta = getattr(collection, "metadata", None) or {}
            ours = meta.get(_NAME)
            if isinstance(ours, str) and collection.name == chroma_collection_name(ours):
                names.append(ours)
        return names

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return list(self._collection(info).get(ids=ids, include=[])["ids"])

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        cosine = info.distance is Distance.COSINE
        self._collection(info).upsert(
            ids=[doc.id for doc in documents], embeddings=vectors, documents=[doc.content for doc in documents],
            metadatas=[_index_metadata(doc, vector if cosine else None) for doc, vector in zip(documents, vectors)])

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        collection = self._collection(info)
        check = None if where is None else matcher(where)
        if ids is not None:
            page = collection.get(ids=ids, include=["metadatas"])
            doomed = [doc_id for doc_id, meta in zip(page["ids"], page["metadatas"] or [])
                      if check is None or check(json.loads((meta or {}).get(_META, "{}")))]
        else:
            doomed = [row[1] for row in self._scan(collection, where, [])]
        for chunk in batches(doomed, _PAGE):
            collection.delete(ids=chunk)
        return len(doomed)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        collection = self._collection(info)
        total = collection.count()
        if total == 0:
            return []
        if where is not None or limit >= total:  # exact over every (matching) document
            rows = [(r[1], r[4], r[3], r[5]) for r in self._scan(collection, where, ["documents", "embeddings"])]
        else:
            result = collection.query(query_embeddings=[query], n_results=limit,
                                      include=["documents", "embeddings", "metadatas"])
            rows = list(zip(result["ids"][0], result["documents"][0], result["metadatas"][0],
                            result["embeddings"][0]))
        return [Candidate(self._document(doc_id, content, meta, None, with_embedding=False),
                          self._vector(meta, embedding)) for doc_id, content, meta, embedding in rows]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        include = ["documents", "metadatas"] + (["embeddings"] if with_vectors else [])
        page = self._collection(info).get(ids=ids, include=include)
        embs = page.get("embeddings") if with_vectors else None
        return [self._document(doc_id, page["documents"][i], page["metadatas"][i], None if embs is None else embs[i],
                               with_embedding=with_vectors) for i, doc_id in enumerate(page["ids"])]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        collection = self._collection(info)
        if where is None:
            return int(collection.count())
        return sum(1 for _ in self._scan(collection, where, []))

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        """Pages in Chroma's storage order; the cursor is the raw position after the page's last document
        (deleting documents between pages may shift positions: Chroma has no stable keyset order)."""
        if cursor is None:
            start = 0
        elif cursor.isascii() and cursor.isdigit():
            start = int(cursor)
        else:
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        include = ["documents"] + (["embeddings"] if with_vectors else [])
        documents: list[KnowledgeDocument] = []
        next_cursor: str | None = None
        last = start
        for position, doc_id, _user, meta, content, embedding in self._scan(self._collection(info), where, include,
                                                                              start):
            if len(documents) == limit:
                next_cursor = str(last)
                break
            documents.append(self._document(doc_id, content, meta, embedding, with_embedding=with_vectors))
            last = position + 1
        return DocumentPage(documents, next_cursor)


__all__ = ["ChromaKnowledgeStore", "chroma_collection_name"]
