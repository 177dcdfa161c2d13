"""Pinecone knowledge store (sync, on the ``pinecone`` SDK 10.x, API version 2026-07; serverless).

    PineconeKnowledgeStore("pinecone://?api_key=...&cloud=aws&region=us-east-1")
    PineconeKnowledgeStore()        # PINECONE_API_KEY from the environment, aws / us-east-1
    PineconeKnowledgeStore("pinecone+http://localhost:5080?api_key=x")   # another control-plane host

URL options: ``api_key``, ``cloud`` (aws), ``region`` (us-east-1), ``prefix`` (index names,
default ``storebridge``), ``freshness_timeout`` (seconds, default 60; 0 turns waiting off),
``create_timeout`` (seconds an index may take to become ready, default 300).

**Unverified against a live Pinecone here**: no Pinecone is reachable from this machine. What is
checked here: the filter translation (exact JSON, tests/unit/test_pinecone_knowledge.py), and the
whole knowledge conformance suite through this store against a stand-in of the SDK surface that
implements the least favourable filter semantics reported for Pinecone. The live suite runs with
``STOREBRIDGE_TEST_PINECONE_URL``.

Layout. Dimension and metric belong to a Pinecone index, so collections live as **namespaces** of
one serverless index per (metric, dimension): ``<prefix>-<cos|l2|dot>-<dimension>`` (at most 45
characters: the prefix is 1-34 lowercase letters, digits and ``-``), created on first need with the
tag ``storebridge=knowledge-v1`` and waited for until ready. An index of that name without the tag is
refused, never written. ``drop_collection`` deletes the namespace; the (empty) index stays for reuse
(delete it in the console or with the SDK). The collection name is the namespace name.

Records. Vector ids are the document ids when they are printable ASCII not starting with ``~``,
else ``~`` + hex(UTF-8) (Pinecone ids are ASCII, at most 512 characters). Metadata holds the filter
tokens and numeric copies of :mod:`._encoding`, and ``_sb_p``: the content, source id and the
user's metadata as JSON text (exact round trips: ``1.0`` stays a float, None and nesting kept).
Pinecone allows 40 KB of metadata per vector: a larger ``_sb_p`` is split into overflow records
(``~~c<h>.<write>.<i>``, written before the document record, removed after it is replaced or deleted).
Every namespace also holds the marker record ``~~sb`` (see freshness). Reserved records lack the
``doc`` token, so no filter, count or scroll ever returns them.

Filters: every operator, exactly as FILTERS.md says, through the token encoding (see
:mod:`._encoding` and :mod:`._filters`); ranges under ``$or``/``$not`` become separate requests.
Search asks Pinecone for ``k + 16`` candidates (at most 10,000, Pinecone's top_k limit) and
re-scores them exactly in float64 from the stored float32 values. Serverless search is approximate:
``recall_floor`` is 0.9, not measured here. Filtered counts, deletes and scrolls select with
``fetch_by_metadata`` (the filter runs on Pinecone); deletes then go by id, so the count returned is
exact (Pinecone's own delete-by-filter returns no count). Unfiltered counts and scrolls walk ``list``
(ids, 100 a page) and ``fetch``; so does a filtered scroll whose filter needs several requests, with
the filter evaluated on the stored metadata by the reference evaluator (``ids`` plus ``filter`` in
``delete`` likewise). Cursors are Pinecone's pagination tokens, tagged with the walk they belong to.

Freshness. Pinecone is eventually consistent. Every upsert response carries the write's log
sequence number (``x-pinecone-request-lsn``); deletes return none, so after a delete the store
rewrites the namespace's marker record and uses that LSN (LSNs grow per namespace). Each public
write (insert, upsert, delete, create_collection) returns only once a query in the namespace reports
``x-pinecone-max-indexed-lsn`` at or past it, polling up to ``freshness_timeout`` seconds; past
that, :class:`~storebridge.errors.OperationFailedError` says so (and the next read of this store
waits again). Pinecone documents this for queries; ``fetch``, ``list`` and ``fetch_by_metadata`` are
assumed to see at least what queries see. An endpoint that sends no LSN headers (pod indexes,
emulators) makes the wait fail loudly: pass ``freshness_timeout=0`` there to turn it off.

Insert refuses existing ids by fetching them first; two writers racing on one id can both pass.
"""

from __future__ import annotations

import json
import math
import os
import re
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

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
from storebridge.urls import mask_secrets, merge_url_option, parse_url
from storebridge.vectors import batches

from ._encoding import (
    DOC_TOKEN,
    TOKENS_FIELD,
    check_index_size,
    decode_id,
    digest,
    document,
    encode_id,
    index_fields,
    is_reserved_id,
    payload,
    request_batches,
)
from ._filters import pinecone_filters

try:  # imported lazily by the registry; the module needs the client
    from pinecone import Pinecone
    from pinecone.errors.exceptions import (
        ConflictError,
        ForbiddenError,
        PineconeConnectionError,
        PineconeTimeoutError,
        UnauthorizedError,
    )
    from pinecone.errors.exceptions import NotFoundError as PineconeNotFoundError
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the pinecone backend needs the pinecone SDK: pip install \"storebridge[pinecone]\"") from exc

#: Waits between freshness polls (a module attribute so tests of the stand-in need not sleep).
_sleep = time.sleep

API_KEY_VARIABLE = "PINECONE_API_KEY"
#: URL scheme -> scheme of the control-plane host it names (None: Pinecone's public API).
_SCHEMES = {"pinecone": "https", "pinecone+https": "https", "pinecone+http": "http"}
_QUERY_OPTIONS = frozenset({"api_key", "cloud", "region", "prefix", "freshness_timeout", "create_timeout"})
_PREFIX_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,32}[a-z0-9])?$")
DEFAULT_PREFIX = "storebridge"
TAG_KEY, TAG_VALUE = "storebridge", "knowledge-v1"
#: The dense field Pinecone's vector API addresses (an index declaring it is a vector index).
DENSE_FIELD = "_values"
_METRICS = {Distance.COSINE: "cosine", Distance.L2: "euclidean", Distance.DOT: "dotproduct"}
_SHORT = {Distance.COSINE: "cos", Distance.L2: "l2", Distance.DOT: "dot"}
_FROM_SHORT = {v: k for k, v in _SHORT.items()}
DEFAULT_NAMESPACE = "__default__"

MARKER_ID = "~~sb"
MARKER_TOKEN = "marker"
CHUNK_TOKEN = "chunk"
CHUNK_PREFIX = "~~c"
PAYLOAD_FIELD = "_sb_p"
OVERFLOW_FIELD = "_sb_o"
WRITE_FIELD = "_sb_w"

#: Documents per write batch, per fetch and per existence check (fetch takes ids in the URL).
WRITE_BATCH = 100
#: Pinecone's limits: metadata per vector, vectors and bytes per upsert request, query top_k, id length.
MAX_METADATA_BYTES = 40 * 1024
MAX_REQUEST_VECTORS = 1000
MAX_REQUEST_BYTES = 2 * 1024 * 1024
MAX_TOP_K = 10_000
MAX_ID_LENGTH = 512
#: Our own margins under those limits.
_INLINE_BYTES = MAX_METADATA_BYTES - 1024
_CHUNK_BYTES = 36 * 1024
_REQUEST_BYTES = 1_800_000
#: Matches per query that come back with values and metadata inline (more: fetched by id, 4 MB cap).
_INLINE_MATCHES = 100
_PAGE = 100


@dataclass(frozen=True)
class _Index:
    name: str
    dimension: int
    distance: Distance


def index_name(prefix: str, distance: Distance, dimension: int) -> str:
    return f"{prefix}-{_SHORT[distance]}-{dimension}"


def _json_size(value: Any) -> int:
    """Bytes of ``value`` as ASCII-escaped JSON: the largest way a server may count it (``é`` is 6)."""
    return len(json.dumps(value, separators=(",", ":")))


def _split_text(text: str, size: int) -> list[str]:
    """``text`` in pieces of at most ``size`` bytes each as ASCII-escaped JSON strings."""
    pieces: list[str] = []
    start, used = 0, 0
    for i, char in enumerate(text):
        cost = 1 if " " <= char <= "~" and char not in '"\\' else len(json.dumps(char)) - 2
        if used + cost > size:
            pieces.append(text[start:i])
            start, used = i, 0
        used += cost
    pieces.append(text[start:])
    return pieces


def _chunk_ids(engine_id: str, overflow: str) -> list[str]:
    write, _, count = overflow.partition(".")
    return [f"{CHUNK_PREFIX}{digest(engine_id)}.{write}.{i}" for i in range(int(count))]


class PineconeKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections as namespaces of serverless Pinecone indexes (one per metric and dimension)."""

    backend_name = "pinecone"
    write_batch = WRITE_BATCH
    capabilities = KnowledgeCapabilities(  # every operator, top-level keys, every distance
        recall_floor=0.9,
        max_batch=WRITE_BATCH,
        notes=(
            "collections are namespaces of one serverless index per (metric, dimension), created on demand",
            "every filter operator is evaluated by Pinecone through typed tokens (exact FILTERS.md meaning)",
            "range comparisons under $or/$not become separate requests (at most 32 per filter)",
            "serverless search is approximate; k is capped at Pinecone's top_k limit of 10,000",
            "writes return once Pinecone's LSN shows queries see them (freshness_timeout, default 60 s)",
            "unfiltered count and scroll walk the id list (100 ids a request)",
        ),
    )

    def __init__(self, url: str | None = None, *, api_key: str | None = None, host: str | None = None,
                 cloud: str | None = None, region: str | None = None, index_prefix: str | None = None,
                 freshness_timeout: float | None = None, create_timeout: float | None = None,
                 client: Any = None, **client_options: Any) -> None:
        self._closed = False
        query: dict[str, str] = {}
        if url is not None:
            parsed = parse_url(url)
            if parsed.full_scheme not in _SCHEMES:
                raise ConfigurationError(
                    f"a Pinecone URL starts with one of {sorted(_SCHEMES)}://, got {parsed.full_scheme}:// "
                    f"({parsed})")
            query = url_options(parsed.query, _QUERY_OPTIONS, "Pinecone")
            if parsed.path not in ("", "/"):
                raise ConfigurationError(f"a Pinecone URL takes no path, got {parsed.path!r} ({parsed})")
            if parsed.host:
                port = f":{parsed.port}" if parsed.port else ""
                host = merge_url_option("host", host, f"{_SCHEMES[parsed.full_scheme]}://{parsed.host}{port}")
        api_key = merge_url_option("api_key", api_key, query.get("api_key") or None)
        if api_key is None and client is None:
            api_key = os.environ.get(API_KEY_VARIABLE) or None
            if api_key is None:
                raise ConfigurationError(
                    f"no Pinecone API key: pass api_key=, put it in the URL (pinecone://?api_key=...) or set "
                    f"{API_KEY_VARIABLE}")
        self._secrets = (api_key,)
        self._cloud = merge_url_option("cloud", cloud, query.get("cloud") or None) or "aws"
        self._region = merge_url_option("region", region, query.get("region") or None) or "us-east-1"
        prefix = merge_url_option("prefix", index_prefix, query.get("prefix") or None) or DEFAULT_PREFIX
        if not isinstance(prefix, str) or not _PREFIX_RE.fullmatch(prefix):
            raise ConfigurationError(
                f"invalid Pinecone index prefix {prefix!r}: use 1-34 lowercase letters, digits and '-' "
                "(not first or last)")
        self._prefix = prefix
        self._freshness_timeout = seconds_option(
            "freshness_timeout", option("freshness_timeout", freshness_timeout, query.get("freshness_timeout")), 60.0)
        self._create_timeout = seconds_option(
            "create_timeout", option("create_timeout", create_timeout, query.get("create_timeout")), 300.0)
        self._where = f"Pinecone {mask_secrets(host or 'api.pinecone.io', api_key)} (indexes {prefix}-*)"
        self._lock = threading.RLock()
        self._indexes: dict[str, _Index] | None = None
        self._handles: dict[str, Any] = {}
        #: (index, namespace) -> LSN a query must reach before a read sees our writes (None: unknown).
        self._pending: dict[tuple[str, str], int | None] = {}
        #: Namespaces known to hold overflow records.
        self._chunked: set[tuple[str, str]] = set()
        if client is not None:
            self._client = client
            return
        try:
            self._client = self._owned_client = Pinecone(api_key=api_key, host=host, **client_options)
        except StorebridgeError:
            raise
        except Exception as exc:
            raise ConfigurationError(f"cannot open {self._where}: {mask_secrets(exc, api_key)}") from exc

    def __repr__(self) -> str:
        return f"PineconeKnowledgeStore({self._where})"

    def close(self) -> None:
        """Wait for the pending writes' freshness, then close (the handles and client only if made here)."""
        if self._closed:
            return
        try:
            for index, namespace in list(self._pending):
                with self._call("wait for freshness"):
                    self._settle(index, namespace)
        finally:
            super().close()

    def _engine_close(self) -> None:
        if self._owned_client is not None:
            for handle in self._handles.values():
                handle.close()
            self._owned_client.close()

    # -- errors ---------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        text = mask_secrets(exc, *self._secrets)
        if isinstance(exc, (UnauthorizedError, ForbiddenError)):
            return ConfigurationError(f"Pinecone refused {what} on {self._where} (check the API key and its "
                                      f"project): {text}")
        if isinstance(exc, (PineconeConnectionError, PineconeTimeoutError, ConnectionError, TimeoutError)):
            return ConnectionFailedError(f"pinecone {what} failed: cannot reach {self._where}: {text}")
        return OperationFailedError(f"pinecone {what} failed on {self._where}: {text}")

    # -- indexes and namespaces -----------------------------------------------------------------------

    def _parse_index_name(self, name: str) -> tuple[Distance, int] | None:
        match = re.fullmatch(re.escape(self._prefix) + r"-(cos|l2|dot)-([1-9][0-9]{0,5})", name)
        if match is None:
            return None
        return _FROM_SHORT[match.group(1)], int(match.group(2))

    def _load_indexes(self) -> dict[str, _Index]:
        found: dict[str, _Index] = {}
        for model in self._client.indexes.list():
            parsed = self._parse_index_name(model.name)
            if parsed is None or (model.tags or {}).get(TAG_KEY) != TAG_VALUE:
                continue  # not ours
            if (model.dimension, model.metric) == (parsed[1], _METRICS[parsed[0]]):
                found[model.name] = _Index(model.name, parsed[1], parsed[0])
            # else: a damaged index; _ensure_index refuses it by name if a collection needs it
        with self._lock:
            self._indexes = found
        return found

    def _handle(self, name: str) -> Any:
        with self._lock:
            handle = self._handles.get(name)
        if handle is None:
            handle = self._client.index(name=name)
            with self._lock:
                handle = self._handles.setdefault(name, handle)
        return handle

    def _index_of(self, info: CollectionInfo) -> tuple[Any, str]:
        name = index_name(self._prefix, info.distance, info.dimension)
        return self._handle(name), name

    def _has_namespace(self, index: _Index, namespace: str) -> bool:
        handle = self._handle(index.name)
        token: str | None = None
        while True:
            page = handle.list_namespaces_paginated(prefix=namespace, limit=100, pagination_token=token)
            if any(ns.name == namespace for ns in page.namespaces):
                return True
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                return False

    def _locate(self, name: str) -> _Index | None:
        with self._lock:
            cached = self._indexes
        fresh = cached is None
        indexes = self._load_indexes() if cached is None else cached
        while True:
            hits = [index for index in indexes.values() if self._has_namespace(index, name)]
            if len(hits) > 1:
                raise OperationFailedError(
                    f"collection {name!r} exists as a namespace of several Pinecone indexes "
                    f"({sorted(h.name for h in hits)}); drop the extra ones")
            if hits or fresh:
                return hits[0] if hits else None
            indexes, fresh = self._load_indexes(), True

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        index = self._locate(name)
        return None if index is None else CollectionInfo(name, index.dimension, index.distance)

    def _ensure_index(self, info: CollectionInfo) -> str:
        name = index_name(self._prefix, info.distance, info.dimension)
        with self._lock:
            if self._indexes is not None and name in self._indexes:
                return name
        try:
            model = self._client.indexes.describe(name)
        except PineconeNotFoundError:
            schema = {"fields": {DENSE_FIELD: {"type": "dense_vector", "dimension": info.dimension,
                                               "metric": _METRICS[info.distance]}}}
            deployment = {"deployment_type": "managed", "cloud": self._cloud, "region": self._region}
            try:
                model = self._client.indexes.create(name=name, schema=schema, deployment=deployment,
                                                    tags={TAG_KEY: TAG_VALUE},
                                                    timeout=max(1, math.ceil(self._create_timeout)))
            except ConflictError:  # made meanwhile by another store
                model = self._client.indexes.describe(name)
        if (model.tags or {}).get(TAG_KEY) != TAG_VALUE:
            raise ConfigurationError(
                f"the Pinecone index {name!r} exists but was not made by storebridge (no tag "
                f"{TAG_KEY}={TAG_VALUE}); use another index prefix (prefix=) or remove that index")
        if model.dimension != info.dimension or model.metric != _METRICS[info.distance]:
            raise ConfigurationError(
                f"the Pinecone index {name!r} has dimension {model.dimension} and metric {model.metric!r}, not "
                f"{info.dimension} and {_METRICS[info.distance]!r}; remove it or use another index prefix")
        self._wait_ready(name, model)
        with self._lock:
            if self._indexes is None:
                self._indexes = {}
            self._indexes[name] = _Index(name, info.dimension, info.distance)
        return name

    def _wait_ready(self, name: str, model: Any) -> None:
        for attempt in poll(self._create_timeout, delay=2.0, most=2.0, sleep=_sleep):
            if attempt:
                model = self._client.indexes.describe(name)
            if model.status.ready:
                return
        raise OperationFailedError(
            f"the Pinecone index {name!r} was not ready after {self._create_timeout:g} s "
            f"(state {model.status.state!r}); retry later or raise create_timeout")

    def _wait_listed(self, index: _Index, namespace: str, present: bool) -> None:
        for _ in poll(max(self._freshness_timeout, 5.0), sleep=_sleep):
            if self._has_namespace(index, namespace) == present:
                return
        raise OperationFailedError(
            f"the namespace {namespace!r} of Pinecone index {index.name!r} was not "
            f"{'listed' if present else 'gone'} after {max(self._freshness_timeout, 5.0):g} s")

    def _engine_create(self, info: CollectionInfo) -> None:
        name = self._ensure_index(info)
        handle = self._handle(name)
        try:
            handle.create_namespace(name=info.name)
        except ConflictError:
            pass  # created meanwhile (describe said no): the marker write below makes it usable either way
        self._touch(handle, name, info)
        self._wait_listed(_Index(name, info.dimension, info.distance), info.name, present=True)
        self._settle(name, info.name)

    def _engine_drop(self, name: str) -> None:
        index = self._locate(name)
        if index is None:
            return
        self._handle(index.name).delete_namespace(name=name)
        with self._lock:
            self._pending.pop((index.name, name), None)
            self._chunked.discard((index.name, name))
        self._wait_listed(index, name, present=False)

    def _engine_names(self) -> list[str]:
        names: list[str] = []
        for index in self._load_indexes().values():
            for page in self._handle(index.name).list_namespaces():
                names += [ns.name for ns in page.namespaces if ns.name != DEFAULT_NAMESPACE]
        return names

    # -- freshness ------------------------------------------------------------------------------------

    def _note(self, index: str, namespace: str, response: Any) -> None:
        """Remember the LSN a write committed at, so reads (and the end of the write call) wait for it."""
        info = getattr(response, "response_info", None)
        lsn = None if info is None else info.lsn_committed
        with self._lock:
            key = (index, namespace)
            if lsn is None or key in self._pending and self._pending[key] is None:
                self._pending[key] = None
            else:
                self._pending[key] = max(lsn, self._pending.get(key) or 0)

    def _touch(self, handle: Any, index: str, info: CollectionInfo) -> None:
        """Rewrite the marker record: its LSN is at or past every earlier write to the namespace."""
        marker = {"id": MARKER_ID, "values": self._probe(info.dimension),
                  "metadata": {TOKENS_FIELD: [MARKER_TOKEN], WRITE_FIELD: uuid.uuid4().hex}}
        self._note(index, info.name, handle.upsert(vectors=[marker], namespace=info.name))

    @staticmethod
    def _probe(dimension: int) -> list[float]:
        return [1.0] + [0.0] * (dimension - 1)

    def _settle(self, index: str, namespace: str) -> None:
        """Wait until queries in the namespace see every write this store made there."""
        with self._lock:
            if (index, namespace) not in self._pending:
                return
            target = self._pending.pop((index, namespace))
        if self._freshness_timeout == 0:
            return
        if target is None:
            raise OperationFailedError(
                f"Pinecone sent no LSN header (x-pinecone-request-lsn) for a write to namespace {namespace!r} of "
                f"{index!r}, so its visibility cannot be confirmed (the write itself succeeded). Pod indexes and "
                "emulators do not send it: pass freshness_timeout=0 to stop waiting for writes")
        handle = self._handle(index)
        dimension = self._dimension(index)
        reached = None
        for _ in poll(self._freshness_timeout, sleep=_sleep):
            response = handle.query(top_k=1, vector=self._probe(dimension), namespace=namespace,
                                    filter={TOKENS_FIELD: {"$in": [MARKER_TOKEN]}}, include_values=False,
                                    include_metadata=False)
            info = getattr(response, "response_info", None)
            reached = None if info is None else info.lsn_reconciled
            if reached is None:
                break  # no LSN header: waiting longer cannot tell
            if reached >= target:
                return
        with self._lock:  # the next read waits again
            self._pending[(index, namespace)] = max(target, self._pending.get((index, namespace)) or 0)
        if reached is None:
            raise OperationFailedError(
                f"Pinecone sent no x-pinecone-max-indexed-lsn header for a query of {index!r}, so the "
                "visibility of writes cannot be confirmed; pass freshness_timeout=0 to stop waiting")
        raise OperationFailedError(
            f"Pinecone had not made a write to namespace {namespace!r} of {index!r} visible to queries "
            f"after {self._freshness_timeout:g} s (write LSN {target}, index at {reached}); the write "
            "succeeded, reads may not see it yet. Retry, or raise freshness_timeout")

    def _dimension(self, index: str) -> int:
        with self._lock:
            known = self._indexes.get(index) if self._indexes is not None else None
        if known is not None:
            return known.dimension
        parsed = self._parse_index_name(index)
        assert parsed is not None
        return parsed[1]

    def _engine_settle(self, name: str) -> None:
        """After each insert, upsert and delete: wait for the collection's pending writes (in any index)."""
        with self._lock:
            keys = [key for key in self._pending if key[1] == name]
        for index, _ in keys:
            self._settle(index, name)

    def _fresh(self, info: CollectionInfo) -> tuple[Any, str]:
        handle, index = self._index_of(info)
        self._settle(index, info.name)
        return handle, index

    # -- records --------------------------------------------------------------------------------------

    def _engine_validate(self, info: CollectionInfo, documents: list[KnowledgeDocument]) -> None:
        """What Pinecone cannot take: long ids, oversized filter fields."""
        for doc in documents:
            engine_id = encode_id(doc.id)
            if len(engine_id) > MAX_ID_LENGTH:
                raise ValidationError(
                    f"document id {doc.id[:40]!r}... is too long for Pinecone: its vector id has {len(engine_id)} "
                    f"characters, the limit is {MAX_ID_LENGTH} (ids that are not printable ASCII take 2 per byte)")
            check_index_size(doc, _json_size, _INLINE_BYTES - 128, "Pinecone's 40 KB of metadata")

    def _records(self, info: CollectionInfo, documents: list[KnowledgeDocument],
                 vectors: np.ndarray) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(document records, overflow records) for a batch."""
        main: list[dict[str, Any]] = []
        chunks: list[dict[str, Any]] = []
        write = uuid.uuid4().hex[:8]
        probe = self._probe(info.dimension)
        for doc, row in zip(documents, vectors, strict=True):
            engine_id = encode_id(doc.id)
            metadata = index_fields(doc.metadata)
            text = payload(doc)
            if _json_size(metadata) + _json_size(text) + 16 <= _INLINE_BYTES:
                metadata[PAYLOAD_FIELD] = text
            else:
                pieces = _split_text(text, _CHUNK_BYTES)
                overflow = f"{write}.{len(pieces)}"
                metadata[OVERFLOW_FIELD] = overflow
                for chunk_id, piece in zip(_chunk_ids(engine_id, overflow), pieces, strict=True):
                    chunks.append({"id": chunk_id, "values": probe,
                                   "metadata": {TOKENS_FIELD: [CHUNK_TOKEN], PAYLOAD_FIELD: piece}})
            main.append({"id": engine_id, "values": row.tolist(), "metadata": metadata})
        return main, chunks

    def _upsert(self, handle: Any, index: str, namespace: str, records: list[dict[str, Any]]) -> None:
        """Records in upsert requests under Pinecone's 1000 vectors / 2 MB."""
        for request in request_batches(records, _json_size, _REQUEST_BYTES, MAX_REQUEST_VECTORS):
            self._note(index, namespace, handle.upsert(vectors=request, namespace=namespace))

    def _may_have_chunks(self, handle: Any, index: str, namespace: str) -> bool:
        with self._lock:
            if (index, namespace) in self._chunked:
                return True
        page = handle.list_paginated(prefix=CHUNK_PREFIX, limit=1, namespace=namespace)
        if page.vectors:
            with self._lock:
                self._chunked.add((index, namespace))
            return True
        return False

    def _fetch(self, handle: Any, namespace: str, engine_ids: list[str]) -> dict[str, Any]:
        """Stored vectors by engine id (missing ones left out), fetched 100 ids at a time."""
        found: dict[str, Any] = {}
        for group in batches(list(dict.fromkeys(engine_ids)), _PAGE):
            found.update(handle.fetch(ids=group, namespace=namespace).vectors)
        return found

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        handle, index = self._index_of(info)
        main, chunks = self._records(info, documents, vectors)
        stale: list[str] = []
        if chunks or self._may_have_chunks(handle, index, info.name):
            self._settle(index, info.name)
            for engine_id, old in self._fetch(handle, info.name, [r["id"] for r in main]).items():
                overflow = (old.metadata or {}).get(OVERFLOW_FIELD)
                if overflow:
                    stale += _chunk_ids(engine_id, overflow)
        if chunks:
            with self._lock:
                self._chunked.add((index, info.name))
            self._upsert(handle, index, info.name, chunks)  # before the records that point at them
        self._upsert(handle, index, info.name, main)
        if stale:
            self._delete_ids(handle, index, info, stale)

    def _delete_ids(self, handle: Any, index: str, info: CollectionInfo, engine_ids: list[str]) -> None:
        for group in batches(engine_ids, MAX_REQUEST_VECTORS):
            handle.delete(ids=group, namespace=info.name)
        self._touch(handle, index, info)

    def _documents(self, handle: Any, namespace: str, records: list[tuple[str, Any, Any]],
                   with_vectors: bool) -> list[KnowledgeDocument]:
        """Documents from (engine id, values, metadata) of stored records, overflow resolved."""
        wanted = [cid for eid, _, md in records if (md or {}).get(OVERFLOW_FIELD)
                  for cid in _chunk_ids(eid, md[OVERFLOW_FIELD])]
        chunks = self._fetch(handle, namespace, wanted) if wanted else {}
        documents = []
        for engine_id, values, metadata in records:
            metadata = metadata or {}
            if DOC_TOKEN not in (metadata.get(TOKENS_FIELD) or ()):
                raise OperationFailedError(
                    f"the Pinecone record {engine_id!r} in namespace {namespace!r} was not written by storebridge")
            text = metadata.get(PAYLOAD_FIELD)
            if text is None:
                pieces = []
                for chunk_id in _chunk_ids(engine_id, metadata[OVERFLOW_FIELD]):
                    if chunk_id not in chunks:
                        raise OperationFailedError(
                            f"document {decode_id(engine_id)!r} in {namespace!r} misses its overflow record "
                            f"{chunk_id!r} (written concurrently?); read it again")
                    pieces.append((chunks[chunk_id].metadata or {})[PAYLOAD_FIELD])
                text = "".join(pieces)
            documents.append(document(engine_id, text, [float(v) for v in values] if with_vectors else None))
        return documents

    # -- reads ----------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        handle, _ = self._fresh(info)
        wanted = {encode_id(i): i for i in ids}
        found = self._fetch(handle, info.name, [e for e in wanted if len(e) <= MAX_ID_LENGTH])
        return [wanted[e] for e in found]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        handle, _ = self._fresh(info)
        engine_ids = [e for e in (encode_id(i) for i in ids) if len(e) <= MAX_ID_LENGTH]
        found = self._fetch(handle, info.name, engine_ids)
        records = [(e, v.values, v.metadata) for e, v in found.items()]
        return self._documents(handle, info.name, records, with_vectors)

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        filters = pinecone_filters(where)
        handle, _ = self._fresh(info)
        top_k = min(limit, MAX_TOP_K)
        inline = top_k <= _INLINE_MATCHES
        matches: dict[str, Any] = {}
        for spec in filters:
            response = handle.query(top_k=top_k, vector=query.tolist(), namespace=info.name, filter=spec,
                                    include_values=inline, include_metadata=inline)
            for match in response.matches:
                matches.setdefault(match.id, match)
        if inline:
            records = [(e, m.values, m.metadata) for e, m in matches.items()]
        else:
            found = self._fetch(handle, info.name, list(matches))
            records = [(e, found[e].values, found[e].metadata) for e in matches if e in found]
        documents = self._documents(handle, info.name, records, with_vectors=False)
        return [Candidate(doc, np.asarray(values, dtype=np.float32))
                for doc, (_, values, _) in zip(documents, records, strict=True)]

    def _selected(self, handle: Any, namespace: str, spec: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """Every (engine id, stored vector) a Pinecone filter selects, page by page."""
        token: str | None = None
        while True:
            page = handle.fetch_by_metadata(filter=spec, namespace=namespace, limit=_PAGE, pagination_token=token)
            yield from page.vectors.items()
            token = page.pagination.next if page.pagination is not None else None
            if not token:
                return

    def _listed(self, handle: Any, namespace: str, limit: int, token: str | None) -> tuple[list[str], str | None]:
        """One page of document ids (reserved records skipped) and the next token."""
        page = handle.list_paginated(limit=limit, pagination_token=token, namespace=namespace)
        ids = [item.id for item in page.vectors if item.id and not is_reserved_id(item.id)]
        return ids, (page.pagination.next if page.pagination is not None else None) or None

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        filters = pinecone_filters(where)
        handle, _ = self._fresh(info)
        if where is None:
            total, token = 0, None
            while True:
                ids, token = self._listed(handle, info.name, _PAGE, token)
                total += len(ids)
                if token is None:
                    return total
        selected: set[str] = set()
        for spec in filters:
            selected.update(engine_id for engine_id, _ in self._selected(handle, info.name, spec))
        return len(selected)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        filters = pinecone_filters(where)
        handle, index = self._fresh(info)
        if ids is not None:
            engine_ids = [e for e in (encode_id(i) for i in ids) if len(e) <= MAX_ID_LENGTH]
            found = self._fetch(handle, info.name, engine_ids)
            if where is not None:  # ids AND filter: evaluate the filter on what the ids hold, exactly
                records = [(e, v.values, v.metadata) for e, v in found.items()]
                keep = {encode_id(d.id) for d in self._documents(handle, info.name, records, with_vectors=False)
                        if evaluate(where, d.metadata)}
                found = {e: v for e, v in found.items() if e in keep}
        else:
            found = {}
            for spec in filters:
                found.update(self._selected(handle, info.name, spec))
        if not found:
            return 0
        doomed = list(found)
        for engine_id, vector in found.items():
            overflow = (vector.metadata or {}).get(OVERFLOW_FIELD)
            if overflow:
                doomed += _chunk_ids(engine_id, overflow)
        self._delete_ids(handle, index, info, doomed)
        return len(found)

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        filters = pinecone_filters(where)
        server_side = where is not None and len(filters) == 1
        kind = "f" if server_side else "l"
        token: str | None = None
        if cursor is not None:
            if not cursor.startswith(kind + ":") or len(cursor) < 3:
                raise ValidationError(f"invalid scroll cursor {cursor!r} for this filter; pass the next_cursor of "
                                      "the previous page of the same scroll")
            token = cursor[2:]
        handle, _ = self._fresh(info)
        if where is not None and not filters:
            return DocumentPage([], None)
        documents: list[KnowledgeDocument] = []
        while len(documents) < limit:
            wanted = min(_PAGE, limit - len(documents))  # never more than fits: nothing is skipped
            if server_side:
                page = handle.fetch_by_metadata(filter=filters[0], namespace=info.name, limit=wanted,
                                                pagination_token=token)
                records = [(e, v.values, v.metadata) for e, v in page.vectors.items()]
                token = (page.pagination.next if page.pagination is not None else None) or None
                documents += self._documents(handle, info.name, records, with_vectors)
            else:
                ids, token = self._listed(handle, info.name, wanted, token)
                found = self._fetch(handle, info.name, ids)
                records = [(e, found[e].values, found[e].metadata) for e in ids if e in found]
                page_docs = self._documents(handle, info.name, records, with_vectors)
                documents += [d for d in page_docs if where is None or evaluate(where, d.metadata)]
            if token is None:
                break
        return DocumentPage(documents, None if token is None else f"{kind}:{token}")


__all__ = ["PineconeKnowledgeStore", "index_name"]
