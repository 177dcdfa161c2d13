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
import os
import threading
import uuid
import weakref
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from typing import Any

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore
from storebridge.errors import (
    ConfigurationError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import (
    ALL_OPS,
    And,
    Comparison,
    Filter,
    FilterLike,
    Not,
    Op,
    Or,
    parse_filter,
    require_operators,
)
from storebridge.filters import validate_key as _validate_key
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, parse_url
from storebridge.vectors import (
    metadata_json,
    stable_uuid,
)

try:  # imported lazily by the registry; the module needs the client
    from qdrant_client import QdrantClient
    from qdrant_client import models as qm
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the qdrant backend needs qdrant-client: pip install \"storebridge[qdrant]\"") from exc

#: Points written per upsert call.
WRITE_BATCH = 256
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
    return compile_tree(tree)


def compile_tree(tree: Filter | None) -> Any:
    """:func:`compile_filter` of a parsed tree whose operators are checked."""
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

class QdrantKnowledgeStore(EngineKnowledgeStore):
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
    write_batch = WRITE_BATCH

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
                self._secrets = (api_key,)
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
    def _call(self, what: str) -> Iterator[None]:
        with super()._call(what), self._lock:  # local mode is not thread-safe: one call at a time
            yield

    def _document(self, point: Any, info: CollectionInfo, with_vector: bool) -> KnowledgeDocument:
        payload = point.payload or {}
        if _ID not in payload:
            raise OperationFailedError(f"a point in {info.name!r} was not written by storebridge (no {_ID})")
        embedding = self._vector(point).tolist() if with_vector else None
        return KnowledgeDocument(id=payload[_ID], content=payload.get(_CONTENT, ""),
                                 metadata=json.loads(payload.get(_META, "{}")), source_id=payload.get(_SOURCE),
                                 embedding=embedding)

    @staticmethod
    def _vector(point: Any) -> np.ndarray:
        payload = point.payload or {}
        if _VEC in payload:
            return np.frombuffer(base64.b64decode(payload[_VEC]), dtype="<f4").astype(np.float32)
        return np.asarray(point.vector, dtype=np.float32)

    # -- engine primitives ------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        if not self._client.collection_exists(name):
            return None
        params = self._client.get_collection(name).config.params.vectors
        if not isinstance(params, qm.VectorParams) or params.distance not in _FROM_QDRANT:
            raise OperationFailedError(f"the Qdrant collection {name!r} was not made by storebridge")
        return CollectionInfo(name, int(params.size), _FROM_QDRANT[params.distance])

    def _engine_create(self, info: CollectionInfo) -> None:
        self._client.create_collection(info.name, vectors_config=qm.VectorParams(
            size=info.dimension, distance=_DISTANCES[info.distance]))

    def _engine_drop(self, name: str) -> None:
        self._client.delete_collection(name)

    def _engine_names(self) -> list[str]:
        return [c.name for c in self._client.get_collections().collections]

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        points = self._client.retrieve(info.name, ids=[stable_uuid(i) for i in ids], with_payload=[_ID],
                                       with_vectors=False)
        return [str((p.payload or {}).get(_ID)) for p in points]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        points = []
        for doc, row in zip(documents, vectors, strict=True):
            if info.distance is Distance.COSINE:  # Qdrant keeps cosine vectors normalised: keep the original too
                wide = row.astype(np.float64)
                vector, original = (wide / np.linalg.norm(wide)).astype(np.float32).tolist(), row
            else:
                vector, original = row.tolist(), None
            points.append(qm.PointStruct(id=stable_uuid(doc.id), vector=vector, payload=_payload(doc, original)))
        self._client.upsert(info.name, points=points, wait=True)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        compiled = compile_tree(where)
        if compiled is False:
            return 0
        selector = qm.Filter() if compiled is None else compiled
        if ids is not None:
            selector = _with_ids(compiled, [stable_uuid(i) for i in ids])
        found = self._client.count(info.name, count_filter=selector, exact=True).count
        if found:
            self._client.delete(info.name, points_selector=qm.FilterSelector(filter=selector), wait=True)
        return int(found)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        compiled = compile_tree(where)
        if compiled is False:
            return []
        points = self._client.query_points(info.name, query=query.tolist(), query_filter=compiled, limit=limit,
                                           with_payload=True, with_vectors=True).points
        return [Candidate(self._document(p, info, False), self._vector(p)) for p in points]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        points = self._client.retrieve(info.name, ids=[stable_uuid(i) for i in ids], with_payload=True,
                                       with_vectors=with_vectors)
        return [self._document(p, info, with_vectors) for p in points]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        compiled = compile_tree(where)
        if compiled is False:
            return 0
        return int(self._client.count(info.name, count_filter=compiled, exact=True).count)

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        offset: str | None = None
        if cursor is not None:
            try:
                offset = str(uuid.UUID(cursor))
            except ValueError:
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        compiled = compile_tree(where)
        if compiled is False:
            return DocumentPage([], None)
        points, next_offset = self._client.scroll(info.name, scroll_filter=compiled, limit=limit, offset=offset,
                                                  with_payload=True, with_vectors=with_vectors)
        docs = [self._document(p, info, with_vectors) for p in points]
        return DocumentPage(docs, None if next_offset is None else str(next_offset))


def _non_persistent() -> KnowledgeCapabilities:
    import dataclasses

    return dataclasses.replace(QdrantKnowledgeStore.capabilities, persistent=False)


__all__ = ["QdrantKnowledgeStore", "compile_filter"]
