"""Upstash Vector knowledge store (sync, on the official ``upstash-vector`` client 0.8; REST API).

    UpstashVectorKnowledgeStore("upstash-vector://my-index-us1-vector.upstash.io?token=...")
    UpstashVectorKnowledgeStore("upstash-vector://:TOKEN@my-index-us1-vector.upstash.io")
    UpstashVectorKnowledgeStore()   # UPSTASH_VECTOR_REST_URL and UPSTASH_VECTOR_REST_TOKEN

``upstash-vector://`` means HTTPS, ``upstash-vector+http://`` plain HTTP (a local proxy); the REST
URL from the console (``https://...``) works too. Option: ``freshness_timeout`` (seconds, default
30; 0 turns waiting off).

**Unverified against a live Upstash here**: no Upstash is reachable from this machine. What is
checked here: the filter strings (exact text, hostile values included, in
tests/unit/test_upstash_vector_knowledge.py) and the whole knowledge conformance suite through this
store against a stand-in of the REST API that parses those filter strings. The live suite runs with
``STOREBRIDGE_TEST_UPSTASH_VECTOR_URL``.

Layout. An Upstash index has one dimension and one similarity function, fixed in the console; the
store reads them with ``info()`` when it opens, and declares that one distance. Collections are
**namespaces**; each holds a catalog record ``~~sb`` with the collection's dimension and distance
(what ``get_collection`` reads, and what marks a namespace as a storebridge collection). A collection
may have any dimension up to the index's: vectors are zero-padded, which changes no cosine, dot or
euclidean value, and come back cut to the collection's dimension.

Records. Vector ids are the document ids when they are printable ASCII not starting with ``~``, else
``~`` + hex(UTF-8). The record's ``data`` (up to 1 MB) holds the content, source id and the user's
metadata as JSON text, so they round-trip exactly; its metadata (up to 48 KB) holds only the filter
tokens and numeric copies of the shared encoding, plus the token of the write that stored it.

Filters: every operator, with FILTERS.md's meaning, as Upstash filter strings over those tokens (see
:mod:`._filters`; no user text enters a filter). Search asks for ``k + 16`` candidates (at most
1,000) and re-scores them in float64. Upstash filters "in and post" with a per-query budget, so a
highly selective filter on a large namespace can return fewer than ``k`` hits (``recall_floor``
0.9). Upstash documents that dot-product indexes need unit-length vectors: other vectors are stored
and re-scored exactly, but which candidates a dot-product index returns for them is Upstash's own
approximation (prefer a cosine index). Deletes by filter run on the server (``delete`` with ``filter``, which reports the count).
Counting and scrolling walk ``range`` (1,000 records a request) and evaluate filters on the stored
metadata with the reference evaluator, so both are exact.

Freshness. Upstash applies writes to ``fetch`` and ``range`` at once but indexes them for queries
asynchronously. After each insert, upsert and delete the store waits (up to ``freshness_timeout``)
until ``info()`` shows no pending vectors in the namespace and, after writes to a cosine or euclidean
index, until a query with the last written vector returns that record with this write's token (a
stored vector is its own nearest neighbour there; under dot products it need not be, so dot-product
indexes rely on ``info()`` alone). Past the timeout an
:class:`~storebridge.errors.OperationFailedError` says so. ``info()`` itself is updated eventually,
so on a dot-product index, or right after a delete, a search may rarely still miss a write.
"""

from __future__ import annotations

import dataclasses
import json
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from storebridge.adapters.pinecone._encoding import (
    DOC_TOKEN,
    TOKENS_FIELD,
    check_index_size,
    decode_id,
    document,
    encode_id,
    index_fields,
    is_reserved_id,
    payload,
    request_batches,
)
from storebridge.engine import Candidate, EngineKnowledgeStore, option, poll, seconds_option, url_options
from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import Filter, evaluate
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import StoreURL, mask_secrets, merge_url_option, parse_url
from storebridge.vectors import batches

from ._filters import upstash_filter

try:  # imported lazily by the registry; the module needs the client
    import httpx
    from upstash_vector import Index as UpstashIndex
    from upstash_vector.errors import ClientError, UpstashError
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the upstash_vector backend needs upstash-vector: pip install \"storebridge[upstash]\"") from exc

#: Waits between freshness polls (a module attribute so tests of the stand-in need not sleep).
_sleep = time.sleep

URL_VARIABLE = "UPSTASH_VECTOR_REST_URL"
TOKEN_VARIABLE = "UPSTASH_VECTOR_REST_TOKEN"
#: Scheme (with its ``+driver``) -> the REST URL's scheme.
_SCHEMES = {"upstash-vector": "https", "upstash-vector+https": "https", "upstash-vector+http": "http",
            "https": "https", "http": "http"}
_QUERY_OPTIONS = frozenset({"token", "freshness_timeout"})
_SIMILARITY = {"COSINE": Distance.COSINE, "EUCLIDEAN": Distance.L2, "DOT_PRODUCT": Distance.DOT}
_AUTH_WORDS = ("unauthorized", "invalid token", "forbidden")

CATALOG_ID = "~~sb"
CATALOG_TOKEN = "catalog"
CATALOG_FIELD = "_sb_k"
WRITE_TOKEN_PREFIX = "w."

#: Documents per write batch and per fetch (bodies are JSON, so no URL limit applies).
WRITE_BATCH = 500
#: Upstash's limits: metadata and data per vector, top_k.
MAX_METADATA_BYTES = 48 * 1024
MAX_DATA_BYTES = 1024 * 1024
MAX_TOP_K = 1000
#: Our margin for one upsert request body, and the page size of range scans.
_REQUEST_BYTES = 5 * 1024 * 1024
_RANGE_PAGE = 1000
#: Neighbours a freshness probe looks at (room for a few exact duplicates of the probed vector).
_PROBE_TOP_K = 10


def _json_size(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8"))


@dataclass(frozen=True)
class UpstashVectorSettings:
    rest_url: str
    token: str = field(repr=False)
    freshness_timeout: float = 30.0


def resolve_settings(url: str | StoreURL | None, token: str | None,
                     freshness_timeout: float | None) -> UpstashVectorSettings:
    """REST URL, token and options from a URL, arguments and the environment."""
    if url is None:
        url = os.environ.get(URL_VARIABLE)
        if not url:
            raise ConfigurationError(
                f"no Upstash Vector index given: pass url= (upstash-vector://host?token=...) or set {URL_VARIABLE} "
                f"and {TOKEN_VARIABLE}")
    parsed = parse_url(url)
    rest_scheme = _SCHEMES.get(parsed.full_scheme)
    if rest_scheme is None:
        raise ConfigurationError(
            f"an Upstash Vector URL starts with one of {sorted(_SCHEMES)}://, got {parsed.full_scheme}:// "
            f"({mask_secrets(parsed)})")
    query = url_options(parsed.query, _QUERY_OPTIONS, "Upstash Vector")
    if not parsed.host:
        raise ConfigurationError(f"an Upstash Vector URL needs the index's host ({mask_secrets(parsed)})")
    url_token = merge_url_option("token", parsed.password or None, query.get("token") or None)
    token = merge_url_option("token", token, url_token) or os.environ.get(TOKEN_VARIABLE) or None
    if not token:
        raise ConfigurationError(
            f"no Upstash Vector token: pass token=, put it in the URL (?token=... or upstash-vector://:TOKEN@host) "
            f"or set {TOKEN_VARIABLE}")
    seconds = seconds_option("freshness_timeout", option("freshness_timeout", freshness_timeout,
                                                         query.get("freshness_timeout")), 30.0)
    rest_url = StoreURL(rest_scheme, host=parsed.host, port=parsed.port, path=parsed.path.rstrip("/")).render()
    return UpstashVectorSettings(rest_url, token, seconds)


@dataclass
class _Probe:
    """What shows that the last write to a namespace is visible to queries."""

    engine_id: str | None = None
    vector: list[float] | None = None
    write_token: str | None = None


class UpstashVectorKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections as namespaces of one Upstash Vector index."""

    backend_name = "upstash_vector"
    write_batch = WRITE_BATCH
    capabilities = KnowledgeCapabilities(  # every operator, top-level keys
        distances=frozenset(Distance),  # narrowed to the index's one function when the store opens
        recall_floor=0.9,
        max_batch=WRITE_BATCH,
        notes=(
            "collections are namespaces of one Upstash index; its dimension and similarity are fixed in the console",
            "collections may have any dimension up to the index's (vectors are zero-padded)",
            "search filters run on Upstash through typed tokens (exact FILTERS.md meaning)",
            "a very selective filter may return fewer than k hits (Upstash's filtering budget)",
            "count and scroll walk range() and evaluate filters on the stored metadata",
            "Upstash documents that DOT_PRODUCT indexes need unit-length vectors; prefer COSINE",
            "writes wait until queries see them (freshness_timeout, default 30 s)",
        ),
    )

    def __init__(self, url: str | StoreURL | None = None, *, token: str | None = None,
                 freshness_timeout: float | None = None, client: Any = None, **client_options: Any) -> None:
        self._closed = False
        self._lock = threading.RLock()
        self._pending: dict[str, _Probe] = {}
        if client is not None:
            if url is not None or token is not None:
                raise ConfigurationError("pass either client= or a URL and token to the upstash_vector store")
            self._settings = UpstashVectorSettings("client", "", seconds_option("freshness_timeout",
                                                                                freshness_timeout, 30.0))
            self._client = client
            self._where = "the given Upstash Vector client"
        else:
            self._settings = resolve_settings(url, token, freshness_timeout)
            self._where = f"Upstash Vector {self._settings.rest_url}"
            try:
                self._client = UpstashIndex(url=self._settings.rest_url, token=self._settings.token,
                                            **client_options)
                self._owned_client = self._client
            except Exception as exc:
                raise ConfigurationError(f"cannot open {self._where}: {mask_secrets(exc, self._settings.token)}") from exc
        self._secrets = (self._settings.token or None,)
        try:
            info = self._client.info()
        except Exception as exc:
            error = self._translate_error(exc, "info")
            self.close()
            raise error from exc
        self._read_info(info)

    def _read_info(self, info: Any) -> None:
        dense = getattr(info, "dense_index", None)
        if getattr(info, "sparse_index", None) is not None:
            raise ConfigurationError(
                f"{self._where} is a sparse or hybrid index; the knowledge store needs a dense index")
        dimension = dense.dimension if dense is not None else info.dimension
        similarity = dense.similarity_function if dense is not None else info.similarity_function
        distance = _SIMILARITY.get(str(similarity).upper())
        if distance is None or not dimension:
            raise ConfigurationError(
                f"{self._where} reports similarity {similarity!r} and dimension {dimension!r}; expected a dense "
                f"index with one of {sorted(_SIMILARITY)}")
        self._dimension = int(dimension)
        self._distance = distance
        self.capabilities = dataclasses.replace(type(self).capabilities, distances=frozenset({distance}))

    def __repr__(self) -> str:
        return f"UpstashVectorKnowledgeStore({self._where})"

    def _engine_close(self) -> None:
        http = getattr(self._owned_client, "_client", None)  # the client has no close(); its httpx.Client does
        if isinstance(http, httpx.Client):
            http.close()

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        text = mask_secrets(exc, *self._secrets)
        if isinstance(exc, UpstashError) and any(word in str(exc).lower() for word in _AUTH_WORDS):
            return ConfigurationError(f"Upstash refused {what} on {self._where} (check the token): {text}")
        if isinstance(exc, (httpx.TransportError, ConnectionError, TimeoutError)):
            return ConnectionFailedError(f"upstash_vector {what} failed: cannot reach {self._where}: {text}")
        if isinstance(exc, (UpstashError, ClientError)):
            return OperationFailedError(f"upstash_vector {what} failed on {self._where}: {text}")
        return OperationFailedError(f"upstash_vector {what} failed on {self._where}: "
                                    f"{type(exc).__name__}: {text}")

    # -- collections ----------------------------------------------------------------------------------

    def create_collection(self, name: str, dimension: int, distance: Distance | str | None = None, *,
                          exist_ok: bool = True) -> CollectionInfo:
        """As everywhere, except that ``distance`` defaults to the index's own (and only) function."""
        return super().create_collection(name, dimension, self._distance if distance is None else distance,
                                         exist_ok=exist_ok)

    def _pad(self, rows: np.ndarray) -> list[list[float]]:
        padded = np.zeros((len(rows), self._dimension), dtype=np.float32)
        padded[:, : rows.shape[1]] = rows
        return padded.tolist()  # type: ignore[no-any-return]

    def _catalog(self, namespace: str) -> CollectionInfo | None:
        [record] = self._client.fetch(ids=[CATALOG_ID], include_metadata=True, namespace=namespace)
        if record is None:
            return None
        entry: Any = (record.metadata or {}).get(CATALOG_FIELD)
        try:
            return CollectionInfo(namespace, int(entry["dimension"]), Distance(entry["distance"]))
        except (TypeError, KeyError, ValueError):
            raise OperationFailedError(
                f"the catalog record of namespace {namespace!r} on {self._where} is not storebridge's: "
                f"{record.metadata!r}") from None

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        # list first: reading a namespace that does not exist would create it (Upstash creates on use)
        if name not in self._client.list_namespaces():
            return None
        return self._catalog(name)

    def _engine_create(self, info: CollectionInfo) -> None:
        if info.dimension > self._dimension:
            raise ValidationError(
                f"{self._where} has dimension {self._dimension}; a collection there can have at most "
                f"{self._dimension} dimensions (shorter vectors are zero-padded), not {info.dimension}")
        vector = [1.0] + [0.0] * (self._dimension - 1)
        record = {"id": CATALOG_ID, "vector": vector,
                  "metadata": {TOKENS_FIELD: [CATALOG_TOKEN],
                               CATALOG_FIELD: {"v": 1, "dimension": info.dimension, "distance": info.distance.value}}}
        self._client.upsert(vectors=[record], namespace=info.name)

    def _engine_drop(self, name: str) -> None:
        self._client.delete_namespace(name)
        with self._lock:
            self._pending.pop(name, None)

    def _engine_names(self) -> list[str]:
        return [ns for ns in self._client.list_namespaces() if ns and self._catalog(ns) is not None]

    # -- freshness ------------------------------------------------------------------------------------

    def _settle(self, namespace: str) -> None:
        """Wait until queries see the last write this store made to the namespace."""
        with self._lock:
            probe = self._pending.pop(namespace, None)
        if probe is None or self._settings.freshness_timeout == 0:
            return
        for _ in poll(self._settings.freshness_timeout, sleep=_sleep):
            visible = True
            if probe.engine_id is not None and self._distance is not Distance.DOT:
                # A stored vector is its own nearest neighbour under cosine and euclidean (not under dot
                # products): once indexed, the last record written comes back, with this write's token.
                hits = self._client.query(vector=probe.vector, top_k=_PROBE_TOP_K, include_metadata=True,
                                          namespace=namespace)
                visible = any(hit.id == probe.engine_id and probe.write_token in (hit.metadata or {}).get(
                    TOKENS_FIELD, ()) for hit in hits)
            if visible:
                state = self._client.info().namespaces.get(namespace)
                if state is None or state.pending_vector_count == 0:
                    return
        with self._lock:
            self._pending.setdefault(namespace, probe)  # the next search waits again
        raise OperationFailedError(
            f"Upstash had not indexed a write to namespace {namespace!r} after "
            f"{self._settings.freshness_timeout:g} s; the write succeeded (fetch sees it), searches may not "
            "yet. Retry, or raise freshness_timeout")

    def _engine_settle(self, name: str) -> None:
        """After each insert, upsert and delete."""
        self._settle(name)

    # -- records --------------------------------------------------------------------------------------

    def _engine_validate(self, info: CollectionInfo, documents: list[KnowledgeDocument]) -> None:
        """Upstash's 48 KB of metadata and 1 MB of data per vector."""
        for doc in documents:
            check_index_size(doc, _json_size, MAX_METADATA_BYTES - 1024, "Upstash's 48 KB of metadata")
            size = len(payload(doc).encode("utf-8"))
            if size > MAX_DATA_BYTES:
                raise ValidationError(
                    f"document {doc.id!r} is too large for Upstash: content, source id and metadata take {size} "
                    f"bytes as JSON, the limit is {MAX_DATA_BYTES} per vector")

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        write_token = WRITE_TOKEN_PREFIX + uuid.uuid4().hex
        records = []
        for doc, padded in zip(documents, self._pad(vectors), strict=True):
            metadata = index_fields(doc.metadata)
            metadata[TOKENS_FIELD].append(write_token)
            records.append({"id": encode_id(doc.id), "vector": padded, "metadata": metadata, "data": payload(doc)})
        for request in request_batches(records, _json_size, _REQUEST_BYTES):
            self._client.upsert(vectors=request, namespace=info.name)
        with self._lock:
            self._pending[info.name] = _Probe(records[-1]["id"], records[-1]["vector"], write_token)

    def _deleted(self, namespace: str) -> None:
        with self._lock:
            if namespace not in self._pending:
                self._pending[namespace] = _Probe()

    def _document(self, record: Any, namespace: str, dimension: int, with_vectors: bool) -> KnowledgeDocument:
        metadata = record.metadata or {}
        if DOC_TOKEN not in (metadata.get(TOKENS_FIELD) or ()) or not record.data:
            raise OperationFailedError(
                f"the Upstash record {record.id!r} in namespace {namespace!r} was not written by storebridge")
        return document(record.id, record.data,
                        [float(v) for v in record.vector[:dimension]] if with_vectors else None)

    def _fetch(self, namespace: str, engine_ids: list[str], with_vectors: bool) -> list[Any]:
        found: list[Any] = []
        for group in batches(list(dict.fromkeys(engine_ids)), WRITE_BATCH):
            found += [r for r in self._client.fetch(ids=group, include_vectors=with_vectors, include_metadata=True,
                                                    include_data=True, namespace=namespace) if r is not None]
        return found

    # -- reads ----------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return [decode_id(r.id) for r in self._fetch(info.name, [encode_id(i) for i in ids], with_vectors=False)]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        records = self._fetch(info.name, [encode_id(i) for i in ids], with_vectors)
        return [self._document(r, info.name, info.dimension, with_vectors) for r in records]

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        spec = upstash_filter(where)
        self._settle(info.name)
        if spec is None:
            return []
        [padded] = self._pad(query[np.newaxis, :])
        hits = self._client.query(vector=padded, top_k=min(limit, MAX_TOP_K), include_vectors=True,
                                  include_metadata=True, include_data=True, filter=spec, namespace=info.name)
        return [Candidate(self._document(hit, info.name, info.dimension, with_vectors=False),
                          np.asarray(hit.vector[: info.dimension], dtype=np.float32)) for hit in hits]

    def _scan(self, namespace: str, cursor: str, limit: int, with_vectors: bool,
              with_data: bool) -> tuple[list[Any], str]:
        page = self._client.range(cursor=cursor, limit=limit, include_vectors=with_vectors,
                                  include_metadata=with_data, include_data=with_data, namespace=namespace)
        return [r for r in page.vectors if not is_reserved_id(r.id)], page.next_cursor or ""

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        total, cursor = 0, ""
        while True:
            records, cursor = self._scan(info.name, cursor, _RANGE_PAGE, False, with_data=where is not None)
            if where is None:
                total += len(records)
            else:
                total += sum(evaluate(where, self._document(r, info.name, info.dimension, False).metadata)
                             for r in records)
            if not cursor:
                return total

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        if ids is None:
            spec = upstash_filter(where)
            if spec is None:
                return 0
            self._settle(info.name)  # the server selects with its index: let it see our writes first
            removed = int(self._client.delete(filter=spec, namespace=info.name).deleted)
        else:
            engine_ids = [encode_id(i) for i in ids]
            if where is not None:  # ids AND filter: evaluate the filter on what the ids hold, exactly
                records = self._fetch(info.name, engine_ids, with_vectors=False)
                engine_ids = [r.id for r in records
                              if evaluate(where, self._document(r, info.name, info.dimension, False).metadata)]
            if not engine_ids:
                return 0
            removed = int(self._client.delete(ids=engine_ids, namespace=info.name).deleted)
        if removed:
            self._deleted(info.name)
        return removed

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        position = ""
        if cursor is not None:
            if not cursor.startswith("u:") or len(cursor) < 3:
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
            position = cursor[2:]
        documents: list[KnowledgeDocument] = []
        while len(documents) < limit:
            # never more than fits: every record scanned is either returned or does not match
            records, position = self._scan(info.name, position, min(_RANGE_PAGE, limit - len(documents)),
                                           with_vectors, with_data=True)
            page = [self._document(r, info.name, info.dimension, with_vectors) for r in records]
            documents += [d for d in page if where is None or evaluate(where, d.metadata)]
            if not position:
                break
        return DocumentPage(documents, f"u:{position}" if position else None)


__all__ = ["UpstashVectorKnowledgeStore", "UpstashVectorSettings", "resolve_settings"]
