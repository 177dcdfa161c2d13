"""Qdrant knowledge store (sync, on ``qdrant_client.QdrantClient``).

Tested with qdrant-client 1.20.0 in local mode (``QdrantClient(path=...)`` and ``":memory:"``), which
is exact brute-force search; the server (``qdrant://host:6333``, ``qdrant+https://...?api_key=...``)
is supported by the same code but not verified here (no server binary on these machines).

Point ids. Qdrant ids must be UUIDs or integers: each string id becomes
``storebridge.vectors.stable_uuid(id)`` (UUIDv5), so the same id always addresses the same point
(upserts replace) and distinct ids never collide; the original id is kept in the payload.

Payload layout. Internal keys never reach the user:

* ``_sb_id``, ``_sb_content``, ``_sb_source``: the document's id, content and source_id;
* ``_sb_meta``: the user's metadata as JSON text (exact round-trips, 1.0 stays a float, None kept);
* ``_sb_vec``: for cosine collections only, the original float32 vector (base64): Qdrant stores
  cosine vectors normalised, so the original is kept here; the point vector is the unit vector
  (normalised in float64 by this store, so even extreme vectors are scanned correctly);
* indexed copies of the top-level metadata fields whose keys are valid filter keys, one key per
  type, named by the hex of the metadata key (no character of a user key reaches Qdrant's key-path
  parser): ``_sb_s_<hex>`` str, ``_sb_n_<hex>`` number, ``_sb_b_<hex>`` bool, and for list fields
  ``_sb_ls_<hex>`` / ``_sb_ln_<hex>`` / ``_sb_lb_<hex>`` (the list's scalar elements by type);
  ``_sb_keys`` lists the hex of every present, non-None top-level key.

Filters are compiled natively to ``qdrant_client.models.Filter`` with FILTERS.md's meaning, because
the typed keys take Qdrant's own looseness out of play: ``eq`` on a string matches only ``_sb_s_``
(a list field lives under other keys, so Qdrant's "any element" rule for lists cannot make a list
equal a scalar), a number matches ``Range(gte=v, lte=v)`` on ``_sb_n_`` (``1 == 1.0``; bools live
elsewhere, so ``True`` never equals ``1``), ranges only see numbers, ``contains`` looks in the list
keys, ``exists`` in ``_sb_keys``; ``ne``/``nin``/``$not`` are ``must_not`` (so missing fields
match). ``$in []`` is decided before Qdrant sees it (Qdrant treats an empty ``should`` as true).
Every operator is native; nothing is evaluated client-side. Nested (dotted) keys are not declared.

Scores. Qdrant ranks (over-fetching a margin of 16); the candidates are re-scored in float64 from the
original vectors with ``storebridge.vectors.exact_scores``, so ``score``/``distance`` follow
:class:`~storebridge.models.Distance` exactly. Distances: cosine -> Cosine, l2 -> Euclid, dot -> Dot.

Local mode on a path allows one client per directory and process: store objects opened on the same
path share one client (reference counted). A client passed as ``client=`` is never closed by the store.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
import uuid
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
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
    Not,
    Op,
    Or,
    parse_filter,
    require_operators,
)
from storebridge.filters import validate_key as _validate_key
from storebridge.identifiers import validate_collection_name
from storebridge.knowledge import KnowledgeCapabilities, KnowledgeStore, Vector
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument, SearchHit
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import (
    batches,
    check_documents,
    embedding_matrix,
    exact_scores,
    id_list,
    metadata_json,
    positive_int,
    query_vectors,
    stable_uuid,
    storable_text,
)

try:  # imported lazily by the registry; the module needs the client
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the qdrant backend needs qdrant-client: pip install \"storebridge[qdrant]\"") from exc

#: Points written per upsert call.
WRITE_BATCH = 256
#: Candidates fetched beyond k and re-scored exactly, so float32 rounding cannot reorder the boundary.
_RERANK_MARGIN = 16
_ID = "_sb_id"
_CONTENT = "_sb_content"
_SOURCE = "_sb_source"
_META = "_sb_meta"
_VEC = "_sb_vec"
_KEYS = "_sb_keys"
_DISTANCES = {Distance.COSINE: qm.Distance.COSINE, Distance.L2: qm.Distance.EUCLID, Distance.DOT: qm.Distance.DOT}
_FROM_QDRANT = {v: k for k, v in _DISTANCES.items()}

# -- shared local clients ---------------------------------------------------------------------------------

_LOCAL_LOCK = threading.Lock()
#: Local mode (``QdrantLocal``) is plain Python without locking: calls on one local client are serialised.
_CLIENT_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()


def _client_lock(client: Any) -> Any:
    if type(getattr(client, "_client", None)).__name__ != "QdrantLocal":
        return nullcontext()  # a server client is thread-safe
    with _LOCAL_LOCK:
        lock = _CLIENT_LOCKS.get(client)
        if lock is None:
            lock = _CLIENT_LOCKS[client] = threading.RLock()
        return lock
_LOCAL_CLIENTS: dict[str, list[Any]] = {}  # resolved path -> [client, reference count]


def _open_local(path: str) -> QdrantClient:
    with _LOCAL_LOCK:
        entry = _LOCAL_CLIENTS.get(path)
        if entry is None:
            os.makedirs(path, exist_ok=True)
            entry = _LOCAL_CLIENTS[path] = [QdrantClient(path=path), 0]
        entry[1] += 1
        return entry[0]  # type: ignore[no-any-return]


def _release_local(path: str) -> None:
    with _LOCAL_LOCK:
        entry = _LOCAL_CLIENTS.get(path)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] <= 0:
            del _LOCAL_CLIENTS[path]
            entry[0].close()


# -- payload encoding ---------------------------------------------------------------------------------------

def _hex(key: str) -> str:
    return key.encode("utf-8").hex()


def _indexable(key: Any) -> bool:
    try:
        _validate_key(key)
    except StorebridgeError:
        return False
    return True


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _payload(doc: KnowledgeDocument, original: np.ndarray | None) -> dict[str, Any]:
    payload: dict[str, Any] = {_ID: doc.id, _CONTENT: doc.content, _SOURCE: doc.source_id, _META: metadata_json(doc)}
    if original is not None:
        payload[_VEC] = base64.b64encode(np.ascontiguousarray(original, dtype="<f4").tobytes()).decode("ascii")
    present: list[str] = []
    for key, value in doc.metadata.items():
        if value is None or not _indexable(key):
            continue
        h = _hex(key)
        present.append(h)
        if isinstance(value, bool):
            payload[f"_sb_b_{h}"] = value
        elif _is_number(value):
            payload[f"_sb_n_{h}"] = value
        elif isinstance(value, str):
            payload[f"_sb_s_{h}"] = value
        elif isinstance(value, (list, tuple)):
            strs = [v for v in value if isinstance(v, str)]
            nums = [v for v in value if _is_number(v)]
            bools = [v for v in value if isinstance(v, bool)]
            if strs:
                payload[f"_sb_ls_{h}"] = strs
            if nums:
                payload[f"_sb_ln_{h}"] = nums
            if bools:
                payload[f"_sb_lb_{h}"] = bools
    payload[_KEYS] = present
    return payload


# -- filter compilation ------------------------------------------------------------------------------------

class _Const:
    def __init__(self, value: bool) -> None:
        self.value = value


_TRUE, _FALSE = _Const(True), _Const(False)


def _field(key: str, **kwargs: Any) -> Any:
    return qm.FieldCondition(key=key, **kwargs)


def _eq_one(prefix: str, h: str, value: Any) -> Any:
    """Condition: the field (of the given family: '' scalar, 'l' list elements) equals ``value``."""
    if isinstance(value, bool):
        return _field(f"_sb_{prefix}b_{h}", match=qm.MatchValue(value=value))
    if _is_number(value):
        return _field(f"_sb_{prefix}n_{h}", range=qm.Range(gte=value, lte=value))
    return _field(f"_sb_{prefix}s_{h}", match=qm.MatchValue(value=value))


def _any_of(conditions: list[Any]) -> Any:
    if not conditions:
        return _FALSE
    if len(conditions) == 1:
        return conditions[0]
    return qm.Filter(should=conditions)


def _negate(node: Any) -> Any:
    if isinstance(node, _Const):
        return _FALSE if node.value else _TRUE
    return qm.Filter(must_not=[node])


def _in(h: str, values: Sequence[Any]) -> Any:
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    others = [v for v in values if not isinstance(v, str)]
    conditions: list[Any] = []
    if strings:
        conditions.append(_field(f"_sb_s_{h}", match=qm.MatchAny(any=strings)))
    conditions += [_eq_one("", h, v) for v in others]
    return _any_of(conditions)


def _compile(node: Any) -> Any:
    if isinstance(node, Comparison):
        h = _hex(node.field)
        op, value = node.op, node.value
        if op is Op.EXISTS:
            present = _field(_KEYS, match=qm.MatchValue(value=h))
            return present if value else _negate(present)
        if op is Op.EQ:
            return _eq_one("", h, value)
        if op is Op.NE:
            return _negate(_eq_one("", h, value))
        if op is Op.IN:
            return _in(h, value)
        if op is Op.NIN:
            return _negate(_in(h, value))
        if op is Op.CONTAINS:
            return _eq_one("l", h, value)
        bounds = {Op.GT: "gt", Op.GTE: "gte", Op.LT: "lt", Op.LTE: "lte"}
        return _field(f"_sb_n_{h}", range=qm.Range(**{bounds[op]: value}))
    if isinstance(node, And):
        parts = [_compile(c) for c in node.children]
        if any(isinstance(p, _Const) and not p.value for p in parts):
            return _FALSE
        parts = [p for p in parts if not isinstance(p, _Const)]
        if not parts:
            return _TRUE
        return parts[0] if len(parts) == 1 else qm.Filter(must=parts)
    if isinstance(node, Or):
        parts = [_compile(c) for c in node.children]
        if any(isinstance(p, _Const) and p.value for p in parts):
            return _TRUE
        return _any_of([p for p in parts if not isinstance(p, _Const)])
    if isinstance(node, Not):
        return _negate(_compile(node.child))
    raise ValidationError(f"unknown filter node {node!r}")  # pragma: no cover


def compile_filter(spec: FilterLike) -> Any:
    """A ``qm.Filter``, ``None`` (no filter) or ``False`` (matches nothing, Qdrant need not be asked)."""
    tree = parse_filter(spec)
    require_operators(tree, QdrantKnowledgeStore.capabilities.filter_operators, backend="qdrant")
    if tree is None:
        return None
    compiled = _compile(tree)
    if isinstance(compiled, _Const):
        return None if compiled.value else False
    return compiled if isinstance(compiled, qm.Filter) else qm.Filter(must=[compiled])


def _with_ids(compiled: Any, point_ids: list[Any]) -> Any:
    has_id = qm.HasIdCondition(has_id=point_ids)
    if compiled is None:
        return qm.Filter(must=[has_id])
    return qm.Filter(must=[has_id, compiled])


# -- the store ------------------------------------------------------------------------------------------------

class QdrantKnowledgeStore(KnowledgeStore):
    """Knowledge collections in Qdrant: local mode (a directory or ``:memory:``) or a server."""

    backend_name = "qdrant"
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=False,
        client_side_filters=False,
        distances=frozenset(Distance),
        recall_floor=1.0,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=("local mode is exact (brute force); a Qdrant server uses HNSW",
               "filters on top-level metadata keys; every operator is evaluated by Qdrant"),
    )

    def __init__(self, url: str | None = None, *, path: str | os.PathLike[str] | None = None,
                 location: str | None = None, api_key: str | None = None, client: QdrantClient | None = None,
                 **client_options: Any) -> None:
        self._closed = False
        self._owns_client = False
        self._local_path: str | None = None
        self._where = "qdrant"
        given = sum(x is not None for x in (url, path, location, client))
        if given > 1:
            raise ConfigurationError("pass one of url, path, location or client to the qdrant store")
        if client is not None:
            self._client = client
            self._lock = _client_lock(client)
            self._where = "the given Qdrant client"
            memory = getattr(getattr(client, "_client", None), "location", None) == ":memory:"
            if memory:
                self.capabilities = _non_persistent()
            return
        if url is not None:
            parsed = parse_url(url)
            if parsed.scheme != "qdrant":
                raise ConfigurationError(f"not a qdrant URL: {parsed}")
            query = dict(parsed.query)
            api_key = query.pop("api_key", None) or api_key
            if parsed.driver == "local":
                if query:
                    raise ConfigurationError(f"qdrant+local URLs take no options, got {sorted(query)}")
                file_path = (parsed.host or "") + parsed.path if parsed.host else parsed.file_path
                if file_path in ("", ":memory:"):
                    location = ":memory:"
                else:
                    path = file_path
            elif parsed.driver in (None, "http", "https"):
                if not parsed.host:
                    raise ConfigurationError(f"the qdrant URL {parsed} names no host")
                https = parsed.driver == "https"
                scheme = "https" if https else "http"
                location = f"{scheme}://{parsed.host}:{parsed.port or 6333}"
                self._where = mask_secrets(location)
                if query:
                    raise ConfigurationError(f"unknown qdrant URL options {sorted(query)}")
            else:
                raise ConfigurationError(f"unknown qdrant URL scheme {parsed.full_scheme!r}")
        try:
            if path is not None:
                self._local_path = os.path.realpath(os.fspath(path))
                self._where = f"qdrant local {self._local_path!r}"
                if client_options or api_key:
                    raise ConfigurationError("local mode on a path takes no client options")
                self._client = _open_local(self._local_path)
            elif location in (None, ":memory:"):
                self._where = "qdrant local :memory:"
                self._client = QdrantClient(location=":memory:", **client_options)
                self.capabilities = _non_persistent()
            else:
                self._client = QdrantClient(url=location, api_key=api_key, **client_options)
                self._where = mask_secrets(str(location), api_key)
        except StorebridgeError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"cannot open {self._where}: {mask_secrets(exc, api_key)}") from exc
        self._owns_client = self._local_path is None
        self._lock = _client_lock(self._client)

    def __repr__(self) -> str:
        return f"QdrantKnowledgeStore({self._where})"

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._local_path is not None:
            _release_local(self._local_path)
        elif self._owns_client:
            self._client.close()

    # -- plumbing -------------------------------------------------------------------------------------

    @contextmanager
    def _call(self, what: str) -> Iterator[QdrantClient]:
        if self._closed:
            raise StoreClosedError(f"the qdrant knowledge store ({self._where}) is closed")
        try:
            with self._lock:
                yield self._client
        except StorebridgeError:
            raise
        except Exception as exc:
            if self._closed:
                raise StoreClosedError(f"the qdrant knowledge store ({self._where}) is closed") from exc
            raise OperationFailedError(f"qdrant {what} failed on {self._where}: {mask_secrets(exc)}") from exc

    def _info(self, name: str) -> CollectionInfo:
        with self._call("get_collection") as client:
            if not client.collection_exists(name):
                raise CollectionNotFoundError(
                    f"knowledge collection {name!r} does not exist; create it with create_collection")
            params = client.get_collection(name).config.params.vectors
        if not isinstance(params, qm.VectorParams) or params.distance not in _FROM_QDRANT:
            raise OperationFailedError(f"the Qdrant collection {name!r} was not made by storebridge")
        return CollectionInfo(name, int(params.size), _FROM_QDRANT[params.distance])

    def _document(self, point: Any, info: CollectionInfo, with_vector: bool) -> KnowledgeDocument:
        payload = point.payload or {}
        if _ID not in payload:
            raise OperationFailedError(f"a point in {info.name!r} was not written by storebridge (no {_ID})")
        embedding = self._vector(point, info).tolist() if with_vector else None
        return KnowledgeDocument(id=payload[_ID], content=payload.get(_CONTENT, ""),
                                 metadata=json.loads(payload.get(_META, "{}")), source_id=payload.get(_SOURCE),
                                 embedding=embedding)

    @staticmethod
    def _vector(point: Any, info: CollectionInfo) -> np.ndarray:
        payload = point.payload or {}
        if _VEC in payload:
            return np.frombuffer(base64.b64decode(payload[_VEC]), dtype="<f4").astype(np.float32)
        return np.asarray(point.vector, dtype=np.float32)

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str = Distance.COSINE, *,
                          exist_ok: bool = True) -> CollectionInfo:
        name = validate_collection_name(name)
        dimension = positive_int(dimension, "dimension")
        metric = Distance.parse(distance)
        if metric not in self.capabilities.distances:
            raise NotSupportedError(f"the qdrant backend does not support the {metric.value!r} distance")
        wanted = CollectionInfo(name, dimension, metric)
        try:
            existing = self._info(name)
        except CollectionNotFoundError:
            with self._call("create_collection") as client:
                client.create_collection(name, vectors_config=qm.VectorParams(size=dimension,
                                                                              distance=_DISTANCES[metric]))
            return wanted
        if not exist_ok:
            raise AlreadyExistsError(f"knowledge collection {name!r} exists already; pass exist_ok=True to reuse it")
        if existing != wanted:
            raise AlreadyExistsError(
                f"knowledge collection {name!r} exists with dimension {existing.dimension} and distance "
                f"{existing.distance.value!r}, not {dimension} and {metric.value!r}; drop it or use another name")
        return existing

    def get_collection(self, name: str) -> CollectionInfo:
        return self._info(validate_collection_name(name))

    def list_collections(self) -> list[str]:
        with self._call("list_collections") as client:
            return sorted(c.name for c in client.get_collections().collections)

    def drop_collection(self, name: str) -> bool:
        name = validate_collection_name(name)
        with self._call("drop_collection") as client:
            if not client.collection_exists(name):
                return False
            client.delete_collection(name)
        return True

    # -- writes ---------------------------------------------------------------------------------------

    def insert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=False)

    def upsert(self, collection: str, documents: Iterable[KnowledgeDocument]) -> list[str]:
        return self._write(collection, documents, replace=True)

    def _write(self, collection: str, documents: Iterable[KnowledgeDocument], *, replace: bool) -> list[str]:
        name = validate_collection_name(collection)
        if isinstance(documents, (KnowledgeDocument, str, bytes)) or not isinstance(documents, Iterable):
            raise ValidationError(f"documents must be a list of KnowledgeDocument, got {type(documents).__name__}")
        info = self._info(name)
        ids: list[str] = []
        if isinstance(documents, Sequence):
            # all or nothing for a sequence: validate and check every document before the first write
            docs = list(documents)
            prepared = [self._points(group, info) for group in batches(docs, WRITE_BATCH)]
            if not replace:
                self._refuse_duplicates(name, docs)
            for points in prepared:
                self._upsert(name, points)
            return [doc.id for doc in docs]
        for group in batches(documents, WRITE_BATCH):
            points = self._points(group, info)
            if not replace:
                self._refuse_duplicates(name, group)
            self._upsert(name, points)
            ids.extend(doc.id for doc in group)
        return ids

    def _points(self, documents: list[KnowledgeDocument], info: CollectionInfo) -> list[Any]:
        check_documents(documents)
        for doc in documents:
            if not isinstance(doc.id, str):
                raise ValidationError(f"document ids are strings, got {doc.id!r}")
            storable_text(doc.id, f"document id {doc.id!r}")  # JSON payloads are UTF-8 on a server
            storable_text(doc.content, f"content of document {doc.id!r}")
            if doc.source_id is not None:
                storable_text(doc.source_id, f"source_id of document {doc.id!r}")
        matrix = embedding_matrix(documents, info.dimension, info.distance)
        points = []
        for doc, row in zip(documents, matrix):
            if info.distance is Distance.COSINE:
                wide = row.astype(np.float64)
                unit = (wide / np.linalg.norm(wide)).astype(np.float32)
                vector, original = unit.tolist(), row
            else:
                vector, original = row.tolist(), None
            points.append(qm.PointStruct(id=stable_uuid(doc.id), vector=vector, payload=_payload(doc, original)))
        return points

    def _refuse_duplicates(self, name: str, documents: Sequence[KnowledgeDocument]) -> None:
        repeated = [doc_id for doc_id, n in Counter(doc.id for doc in documents).items() if n > 1]
        if repeated:
            raise AlreadyExistsError(
                f"document id(s) {repeated[:5]} appear twice in one insert; nothing of the batch was written")
        existing: list[str] = []
        for group in batches([stable_uuid(doc.id) for doc in documents], WRITE_BATCH):
            with self._call("retrieve") as client:
                points = client.retrieve(name, ids=group, with_payload=[_ID], with_vectors=False)
            existing += [str((p.payload or {}).get(_ID)) for p in points]
        if existing:
            raise AlreadyExistsError(
                f"document id(s) {existing[:5]} exist already in collection {name!r}; use upsert to replace "
                "them. Nothing of this batch was written")

    def _upsert(self, name: str, points: list[Any]) -> None:
        with self._call("upsert") as client:
            client.upsert(name, points=points, wait=True)

    def delete(self, collection: str, ids: Sequence[str] | None = None, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        compiled = compile_filter(filter)
        wanted = None if ids is None else id_list(ids)
        self._info(name)
        if (wanted is None and parse_filter(filter) is None) or compiled is False:
            return 0
        if wanted is not None and not wanted:
            return 0
        selectors: list[Any] = []
        if wanted is None:
            selectors.append(compiled if compiled is not None else qm.Filter())
        else:
            for group in batches(list(dict.fromkeys(stable_uuid(i) for i in wanted)), WRITE_BATCH):
                selectors.append(_with_ids(compiled, group))
        removed = 0
        for selector in selectors:
            with self._call("delete") as client:
                found = client.count(name, count_filter=selector, exact=True).count
                if found:
                    client.delete(name, points_selector=qm.FilterSelector(filter=selector), wait=True)
            removed += found
        return removed

    # -- reads ----------------------------------------------------------------------------------------

    def search(self, collection: str, vector: Vector, *, k: int = 10, filter: FilterLike = None,
               score_threshold: float | None = None, include_embeddings: bool = False) -> list[SearchHit]:
        name = validate_collection_name(collection)
        k = positive_int(k, "k")
        compiled = compile_filter(filter)
        if score_threshold is not None and (isinstance(score_threshold, bool)
                                            or not isinstance(score_threshold, (int, float))
                                            or math.isnan(score_threshold)):
            raise ValidationError(f"score_threshold must be a number or None, got {score_threshold!r}")
        info = self._info(name)
        q64, q32 = query_vectors(vector, info.dimension, info.distance)
        if compiled is False:
            return []
        with self._call("search") as client:
            points = client.query_points(name, query=q32.tolist(), query_filter=compiled, limit=k + _RERANK_MARGIN,
                                         with_payload=True, with_vectors=True).points
        if not points:
            return []
        stored = np.stack([self._vector(p, info) for p in points])
        raw, scores = exact_scores(info.distance, stored, q64)
        ids = [str((p.payload or {}).get(_ID)) for p in points]
        order = sorted(range(len(points)), key=lambda i: (-scores[i], ids[i]))[:k]  # ties: by id
        if score_threshold is not None:
            order = [i for i in order if scores[i] >= score_threshold]
        return [SearchHit(self._document(points[i], info, include_embeddings), float(scores[i]), float(raw[i]))
                for i in order]

    def get(self, collection: str, ids: Sequence[str], *, include_embeddings: bool = True) -> list[KnowledgeDocument]:
        name = validate_collection_name(collection)
        wanted = id_list(ids)
        info = self._info(name)
        found: dict[str, KnowledgeDocument] = {}
        for group in batches(list(dict.fromkeys(stable_uuid(i) for i in wanted)), WRITE_BATCH):
            with self._call("retrieve") as client:
                points = client.retrieve(name, ids=group, with_payload=True, with_vectors=include_embeddings)
            for point in points:
                doc = self._document(point, info, include_embeddings)
                found[doc.id] = doc
        return [found[i] for i in wanted if i in found]

    def count(self, collection: str, *, filter: FilterLike = None) -> int:
        name = validate_collection_name(collection)
        compiled = compile_filter(filter)
        self._info(name)
        if compiled is False:
            return 0
        with self._call("count") as client:
            return int(client.count(name, count_filter=compiled, exact=True).count)

    def scroll(self, collection: str, *, limit: int = 100, cursor: str | None = None, filter: FilterLike = None,
               include_embeddings: bool = True) -> DocumentPage:
        name = validate_collection_name(collection)
        limit = positive_int(limit, "limit")
        compiled = compile_filter(filter)
        offset: str | None = None
        if cursor is not None:
            try:
                offset = str(uuid.UUID(cursor)) if isinstance(cursor, str) else None
            except ValueError:
                offset = None
            if offset is None:
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        info = self._info(name)
        if compiled is False:
            return DocumentPage([], None)
        with self._call("scroll") as client:
            points, next_offset = client.scroll(name, scroll_filter=compiled, limit=limit, offset=offset,
                                                with_payload=True, with_vectors=include_embeddings)
        docs = [self._document(p, info, include_embeddings) for p in points]
        return DocumentPage(docs, None if next_offset is None else str(next_offset))


def _non_persistent() -> KnowledgeCapabilities:
    import dataclasses

    return dataclasses.replace(QdrantKnowledgeStore.capabilities, persistent=False)


__all__ = ["QdrantKnowledgeStore", "compile_filter"]
