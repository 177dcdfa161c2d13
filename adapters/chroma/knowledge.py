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
import math
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    FilterLike,
    Op,
    Or,
    matcher,
    parse_filter,
    require_operators,
)
from storebridge.identifiers import validate_collection_name
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import (
    BATCH_SIZE,
    batches,
    check_documents,
    embedding_matrix,
    exact_scores,
    id_list,
    metadata_json,
    positive_int,
    query_vectors,
    storable_text,
)

_META = "sb:meta"
_SOURCE = "sb:source"
_NAME = "sb:name"
_DIMENSION = "sb:dimension"
_DISTANCE = "sb:distance"
_VECTOR = "sb:vector"
_SPACE = {Distance.COSINE: "cosine", Distance.L2: "l2", Distance.DOT: "ip"}
#: Candidates fetched from HNSW beyond k, re-ranked exactly.
_MARGIN = 32
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


class ChromaKnowledgeStore(KnowledgeStore):
    """Knowledge collections in Chroma (embedded ``PersistentClient`` or a server via ``HttpClient``)."""

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
        self._lock = threading.Lock()
        self._owns_client = client is None
        self._where = "a given client"
        if client is not None:
            if url is not None or path is not None or host is not None:
                raise ConfigurationError("pass either client= or a URL / path= / host=, not both")
            self._client = client
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

    def __repr__(self) -> str:
        return f"ChromaKnowledgeStore({mask_secrets(self._where)!r})"

    def close(self) -> None:
        # The client is shared per path/host by chromadb itself (other store objects may use the same
        # system), so closing drops our reference only.
        self._closed = True

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        if self._closed:
            raise StoreClosedError("the Chroma knowledge store is closed")
        try:
            yield
        except StorebridgeError:
            raise
        except Exception as exc:
            if self._closed:
                raise StoreClosedError("the Chroma knowledge store is closed") from exc
            if type(exc).__name__ in ("ConnectError", "ConnectionError", "ConnectTimeout"):
                raise ConnectionFailedError(f"Chroma at {mask_secrets(self._where)} is unreachable: {exc}") from exc
            raise OperationFailedError(f"Chroma {what} failed: {mask_secrets(exc)}") from exc

    def _handle(self, name: str) -> _Handle:
        """The Chroma collection for our validated name; ``CollectionNotFoundError`` if missing."""
        from chromadb.errors import NotFoundError

        with self._errors("get_collection"):
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

    def _compile(self, filter: FilterLike) -> tuple[Any, dict[str, Any] | None, Callable[[dict[str, Any]], bool] | None]:
        tree = parse_filter(filter)
        require_operators(tree, self.capabilities.filter_operators, backend="chroma",
                          nested_keys=self.capabilities.nested_keys)
        if tree is None:
            return None, None, None
        return tree, _string_prefilter(tree), matcher(tree)

    def _scan(self, handle: _Handle, where: dict[str, Any] | None, check: Callable[[dict[str, Any]], bool] | None,
              include: list[str], start: int = 0) -> Iterator[tuple[int, str, dict[str, Any], Any, Any, Any]]:
        """``(position, id, user metadata, chroma metadata, document, embedding)`` of every document
        matching, in Chroma's stable order, from raw position ``start`` on."""
        fields = sorted(set(include) | {"metadatas"})
        offset = start
        while True:
            with self._errors("get"):
                page = handle.collection.get(where=where, limit=_PAGE, offset=offset, include=fields)
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

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if metric not in self.capabilities.distances:
            raise NotSupportedError(f"the chroma backend does not support the {metric.value!r} distance")
        wanted = CollectionInfo(name, dimension, metric)
        try:
            existing = self._handle(name).info
        except CollectionNotFoundError:
            metadata = {"hnsw:space": _SPACE[metric], "hnsw:search_ef": _EF, "hnsw:construction_ef": _EF,
                        _NAME: name, _DIMENSION: dimension, _DISTANCE: metric.value}
            with self._errors("create_collection"):
                self._client.get_or_create_collection(chroma_collection_name(name), metadata=metadata,
                                                       embedding_function=None)
            existing = self._handle(name).info  # another writer may have won the race
            if existing == wanted:
                return wanted
        if not exist_ok:
            raise AlreadyExistsError(f"knowledge collection {name!r} exists already; pass exist_ok=True to reuse it")
        if existing != wanted:
            raise AlreadyExistsError(
                f"knowledge collection {name!r} exists with dimension {existing.dimension} and distance "
                f"{existing.distance.value!r}, not {dimension} and {metric.value!r}; drop it or use another name"
            )
        return existing

    def get_collection(self, name: str) -> CollectionInfo:
        return self._handle(validate_collection_name(name)).info

    def list_collections(self) -> list[str]:
        with self._errors("list_collections"):
            collections = self._client.list_collections()
        names = []
        for collection in collections:
            meta = getattr(collection, "metadata", None) or {}
            ours = meta.get(_NAME)
            if isinstance(ours, str) and collection.name == chroma_collection_name(ours):
                names.append(ours)
        return sorted(names)

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        try:
            self._handle(name)
        except CollectionNotFoundError:
            return False
        from chromadb.errors import NotFoundError

        with self._errors("delete_collection"):
            try:
                self._client.delete_collection(chroma_collection_name(name))
            except NotFoundError:
                return False
        return True

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _write(self, name: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(name)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        handle = self._handle(name)
        with self._errors("get_max_batch_size"):
            size = max(1, min(BATCH_SIZE, int(self._client.get_max_batch_size())))
        if isinstance(documents, Sequence):
            docs = list(documents)
            prepared = [self._prepare(batch, handle, replace=replace) for batch in batches(docs, size)]
            if not replace:
                self._refuse_existing(handle, docs)
            groups: Iterable[tuple[list[KnowledgeDocument], tuple[Any, ...]]] = zip(batches(docs, size), prepared)
        else:
            groups = ((batch, self._prepare(batch, handle, replace=replace)) for batch in batches(documents, size))
        ids: list[str] = []
        for batch, rows in groups:
            if not replace and not isinstance(documents, Sequence):
                self._refuse_existing(handle, batch)
            with self._errors("upsert" if replace else "add"):
                (handle.collection.upsert if replace else handle.collection.add)(
                    ids=rows[0], embeddings=rows[1], metadatas=rows[2], documents=rows[3])
            ids.extend(doc.id for doc in batch)
        return ids

    @staticmethod
    def _prepare(batch: list[KnowledgeDocument], handle: _Handle, *, replace: bool) -> tuple[Any, ...]:
        check_documents(batch)
        vectors = embedding_matrix(batch, handle.info.dimension, handle.info.distance)
        ids = [storable_text(doc.id, f"document id {doc.id!r}") for doc in batch]
        for doc_id in ids:
            if not doc_id:
                raise ValidationError("Chroma does not accept an empty document id")
        repeated = sorted({i for i in ids if ids.count(i) > 1}) if len(set(ids)) != len(ids) else []
        if repeated:
            if not replace:
                raise AlreadyExistsError(
                    f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")
            # upsert: the last one wins, as with any upsert applied in order
            last = {doc_id: i for i, doc_id in enumerate(ids)}
            keep = sorted(last.values())
            batch = [batch[i] for i in keep]
            vectors = vectors[keep]
            ids = [ids[i] for i in keep]
        cosine = handle.info.distance is Distance.COSINE
        metas = [_index_metadata(doc, vector if cosine else None) for doc, vector in zip(batch, vectors)]
        contents = [storable_text(doc.content, f"content of document {doc.id!r}") for doc in batch]
        return ids, vectors, metas, contents

    def _refuse_existing(self, handle: _Handle, documents: Sequence[KnowledgeDocument]) -> None:
        ids = [doc.id for doc in documents]
        counts: dict[str, int] = {}
        for doc_id in ids:
            counts[doc_id] = counts.get(doc_id, 0) + 1
        repeated = [i for i, n in counts.items() if n > 1]
        if repeated:
            raise AlreadyExistsError(
                f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")
        existing: list[str] = []
        for chunk in batches(list(counts), _PAGE):
            with self._errors("get"):
                existing += handle.collection.get(ids=chunk, include=[])["ids"]
        if existing:
            raise AlreadyExistsError(
                f"document id(s) {existing[:5]} exist already in collection {handle.info.name!r}; use upsert to "
                "replace them. Nothing of this batch was written"
            )

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree, where, check = self._compile(filter)
        wanted = None if ids is None else list(dict.fromkeys(id_list(ids)))
        handle = self._handle(name)
        if wanted is None and tree is None:
            return 0
        doomed: list[str] = []
        if wanted is not None:
            for chunk in batches(wanted, _PAGE):
                with self._errors("get"):
                    page = handle.collection.get(ids=chunk, include=["metadatas"])
                for doc_id, meta in zip(page["ids"], page["metadatas"] or []):
                    if check is None or check(json.loads((meta or {}).get(_META, "{}"))):
                        doomed.append(doc_id)
        else:
            doomed = [row[1] for row in self._scan(handle, where, check, [])]
        for chunk in batches(doomed, _PAGE):
            with self._errors("delete"):
                handle.collection.delete(ids=chunk)
        return len(doomed)

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        tree, where, check = self._compile(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        handle = self._handle(name)
        info = handle.info
        q64, _ = query_vectors(vector, info.dimension, info.distance)
        with self._errors("count"):
            total = handle.collection.count()
        if total == 0:
            return []
        rows: list[tuple[str, str, Any, Any]] = []  # id, content, chroma metadata, embedding
        if tree is not None or k + _MARGIN >= total:
            rows = [(r[1], r[4], r[3], r[5]) for r in self._scan(handle, where, check, ["documents", "embeddings"])]
        else:
            with self._errors("query"):
                result = handle.collection.query(query_embeddings=[q64.astype(np.float32)], n_results=k + _MARGIN,
                                                 include=["documents", "embeddings", "metadatas"])
            rows = list(zip(result["ids"][0], result["documents"][0], result["metadatas"][0],
                            result["embeddings"][0]))
        if not rows:
            return []
        stored = np.stack([self._vector(r[2], r[3]) for r in rows])
        raw, scores = exact_scores(info.distance, stored, q64)
        order = np.lexsort((np.arange(len(rows)), -scores))[:k]
        if score_threshold is not None:
            order = order[scores[order] >= score_threshold]
        return [SearchHit(self._document(rows[i][0], rows[i][1], rows[i][2], rows[i][3],
                                         with_embedding=include_embeddings),
                          float(scores[i]), float(raw[i])) for i in order]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        handle = self._handle(name)
        found: dict[str, KnowledgeDocument] = {}
        include = ["documents", "metadatas"] + (["embeddings"] if include_embeddings else [])
        for chunk in batches(list(dict.fromkeys(wanted)), _PAGE):
            with self._errors("get"):
                page = handle.collection.get(ids=chunk, include=include)
            embs = page.get("embeddings") if include_embeddings else None
            for i, doc_id in enumerate(page["ids"]):
                found[doc_id] = self._document(doc_id, page["documents"][i], page["metadatas"][i],
                                               None if embs is None else embs[i], with_embedding=include_embeddings)
        return [found[doc_id] for doc_id in wanted if doc_id in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        tree, where, check = self._compile(filter)
        handle = self._handle(name)
        if tree is None:
            with self._errors("count"):
                return int(handle.collection.count())
        return sum(1 for _ in self._scan(handle, where, check, []))

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        """Pages in Chroma's storage order; the cursor is the raw position after the page's last document
        (deleting documents between pages may shift positions: Chroma has no stable keyset order)."""
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        if cursor is None:
            start = 0
        elif isinstance(cursor, str) and cursor.isascii() and cursor.isdigit():
            start = int(cursor)
        else:
            raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        _, where, check = self._compile(filter)
        handle = self._handle(name)
        include = ["documents"] + (["embeddings"] if include_embeddings else [])
        documents: list[KnowledgeDocument] = []
        next_cursor: str | None = None
        last = start
        for position, doc_id, _user, meta, content, embedding in self._scan(handle, where, check, include, start):
            if len(documents) == limit:
                next_cursor = str(last)
                break
            documents.append(self._document(doc_id, content, meta, embedding, with_embedding=include_embeddings))
            last = position + 1
        return DocumentPage(documents, next_cursor)


__all__ = ["ChromaKnowledgeStore", "chroma_collection_name"]
