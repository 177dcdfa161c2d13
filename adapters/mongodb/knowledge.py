"""MongoDB vector knowledge store (``mongodb_vector``): Atlas Vector Search (``$vectorSearch``) on
pymongo, sync; the async face is the generic bridge.

    MongoDBVectorKnowledgeStore("mongodb+srv://user:pw@cluster.example.net/rag?prefix=kb_")
    MongoDBVectorKnowledgeStore("mongodb://127.0.0.1:27017/?directConnection=true", database="rag")  # Atlas Local
    MongoDBVectorKnowledgeStore(client=my_mongo_client, database="rag")   # yours: never closed by the store

Engine versions. Written for MongoDB Atlas clusters (MongoDB 7.0.10+ / 8.x, where ``$vectorSearch``
has both approximate and exact search), Atlas Local deployments (the ``mongodb/mongodb-atlas-local``
image) and MongoDB 8.2+ with ``mongot``: anything that answers ``createSearchIndexes`` and
``$vectorSearch``. A MongoDB without search raises :class:`NotSupportedError` saying so when a
collection is created or searched. pymongo 4.9+ (``SearchIndexModel(type="vectorSearch")``).

UNVERIFIED AGAINST A LIVE ATLAS: none can run where this was written. The documents, index definition,
filters and pipelines are unit-tested as data, the filters also against mongomock's MQL matcher, and
the whole conformance suite passes on a stand-in (mongomock plus a brute-force ``$vectorSearch`` that
enforces the documented filter limits and lags like ``mongot``). That the vector index gives ``$ne`` /
``$nin`` / ``$nor`` on an array field MQL's meaning (no element equals; Atlas's own examples filter
array fields this way) is taken from the documentation. The conformance suite runs against the real
thing when ``STOREBRIDGE_TEST_MONGODB_VECTOR_URL`` names a deployment with vector search.

Layout. Each knowledge collection is the MongoDB collection ``<prefix><name>`` (``prefix`` defaults
to ``sbk_``) with a ``vectorSearch`` index named ``storebridge_vector``; ``<prefix>.registry`` holds
one document per collection (dimension, distance, state, and the numeric-key -> slot map). A
document is ``{_id: <id>, content, source, meta: <metadata as JSON text, for exact round trips>,
vec: [doubles], orig: <float32 bytes, cosine only>, _sb_t: [tags], _sb_n<k>: <number>, _sb_w: <write
token>}``; ``_vector_query`` says how the tags and slots encode the metadata.

Filters have FILTERS.md's exact meaning in ``$vectorSearch.filter`` and in plain MQL alike (one
compiled document serves search, count, scroll and delete); every operator is declared and runs in
the engine. Ranges use the collection's numeric slots: ``numeric_slots`` (default 64, fixed when the
collection is created) distinct numeric keys per collection; a write that needs one more is refused
with :class:`ValidationError` before anything is written. Nested (dotted) keys are not declared.

Search is approximate (HNSW) with ``numCandidates = min(10000, max(10 * limit, 100))`` and
``limit = k + 16`` candidates re-scored exactly in float64 (``recall_floor`` 0.9), or exact (ENN) with
``exact=True`` and whenever ``limit`` exceeds 10,000. Distances: cosine, euclidean, dotProduct.

Consistency. The search index is eventually consistent (``mongot`` follows the change stream).
``create_collection`` waits until the index is queryable (``index_timeout``, default 300 s). Every
write then waits until the search index holds what it wrote (an exact ``$vectorSearch`` on the write
token or on the deleted ids, polled; ``sync_timeout``, default 60 s; 0 turns the wait off). If the index
has not caught up in time, the write stands (it is durable) and a :class:`SearchIndexLagWarning` says
so. ``get``, ``count`` and ``scroll`` read the collection itself and see every write at once. An
empty search over a collection whose documents match is checked against the index status, so a
missing or broken index is an error, never an empty answer.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
from pymongo import MongoClient, ReadPreference, ReplaceOne
from pymongo import errors as mongo_errors
from pymongo.operations import SearchIndexModel

from storebridge.engine import (
    Candidate,
    EngineKnowledgeStore,
    count_option,
    flag_option,
    option,
    poll,
    seconds_option,
)
from storebridge.errors import (
    AlreadyExistsError,
    ConfigurationError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.filters import Filter
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, Distance, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets
from storebridge.vectors import metadata_json

from . import _vector_query as v
from ._documents import DEFAULT_COLLECTION, MongoOptions, resolve_options, translate_error
from .state import _hosts_of

#: Documents per bulk write, per ``$in`` lookup and per delete round.
WRITE_BATCH = 500
_OUR_URL_OPTIONS = ("prefix", "index_timeout", "sync_timeout", "exact", "numeric_slots")
_NO_SEARCH = ("this MongoDB deployment has no vector search (createSearchIndexes / $vectorSearch); use MongoDB "
              "Atlas, an Atlas Local deployment, or MongoDB 8.2+ with mongot")
#: Server error codes of a deployment without search: CommandNotFound, and the search-not-enabled codes.
_NO_SEARCH_CODES = frozenset({59, 115, 31082, 6047401})
#: Reads go to the primary whatever the URL says, so a write is seen by the next read of any store object.
_PRIMARY = ReadPreference.PRIMARY


class SearchIndexLagWarning(RuntimeWarning):
    """A write is durable but the search index had not caught up with it within ``sync_timeout``."""


def _capabilities(exact: bool) -> KnowledgeCapabilities:
    return KnowledgeCapabilities(  # every operator, top-level keys, every distance
        recall_floor=1.0 if exact else 0.9,
        max_batch=WRITE_BATCH,
        notes=(
            "Atlas Vector Search ($vectorSearch); verified live only where STOREBRIDGE_TEST_MONGODB_VECTOR_URL is set",
            "exact (ENN) search" if exact else "approximate (HNSW) search, numCandidates = min(10000, max(10*limit, 100))",
            "every filter operator runs in the engine; ranges compare as float64 on up to numeric_slots numeric keys",
            "writes wait until the search index has them (sync_timeout), else warn",
        ),
    )


class MongoDBVectorKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections in MongoDB with Atlas Vector Search (see the module docstring)."""

    backend_name = "mongodb_vector"
    capabilities = _capabilities(False)
    write_batch = WRITE_BATCH

    def __init__(self, url: str | None = None, *, database: str | None = None, prefix: str | None = None,
                 numeric_slots: int | None = None, exact: bool | None = None, index_timeout: float | None = None,
                 sync_timeout: float | None = None, client: MongoClient[Any] | None = None) -> None:
        self._closed = False
        self._registries: dict[str, dict[str, Any]] = {}
        ours: dict[str, str] = {}
        if url is not None:
            if client is not None:
                raise ConfigurationError("pass a URL or a client to the mongodb_vector store, not both; with a "
                                         "client, name the database with database=")
            url, ours = _split_our_options(url)
        options = resolve_options(url, database=database, collection=None, namespace=None)
        if options.collection != DEFAULT_COLLECTION or options.namespace:
            raise ConfigurationError("the mongodb_vector store takes prefix= (collection names are <prefix><name>), "
                                     "not collection= or namespace=")
        self.prefix = v.check_prefix(option("prefix", prefix, ours.get("prefix")) or "sbk_")
        self.numeric_slots = count_option("numeric_slots", option("numeric_slots", numeric_slots,
                                                                  ours.get("numeric_slots")), 64, low=0, high=1000)
        self.exact = flag_option("exact", option("exact", exact, ours.get("exact")), False)
        self.index_timeout = seconds_option("index_timeout", option("index_timeout", index_timeout,
                                                                    ours.get("index_timeout")), 300.0, zero_ok=False)
        self.sync_timeout = seconds_option("sync_timeout", option("sync_timeout", sync_timeout, ours.get("sync_timeout")),
                                           60.0)
        if self.exact:
            self.capabilities = _capabilities(True)
        if client is None:
            try:
                client = MongoClient(options.driver_uri)
            except mongo_errors.PyMongoError as exc:
                raise translate_error(exc, "connect", self._message_options(options)) from exc
            self._owned_client = client
        else:
            options = dataclasses.replace(options, hosts=_hosts_of(client))
        self._options = self._message_options(options)
        self._secrets = (options.password,)
        self._where = f"MongoDB at {options.hosts} ({options.database}.{self.prefix}*)"
        self._client = client
        self._database = client.get_database(options.database)
        self._registry = self._database.get_collection(v.registry_name(self.prefix), read_preference=_PRIMARY)

    def _message_options(self, options: MongoOptions) -> MongoOptions:
        return dataclasses.replace(options, collection=f"{self.prefix}*")

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return (f"MongoDBVectorKnowledgeStore(hosts={self._options.hosts!r}, database={self._options.database!r}, "
                f"prefix={self.prefix!r}{closed})")

    # -- plumbing -------------------------------------------------------------------------------------------

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        if self._closed:
            return StoreClosedError(f"the mongodb_vector knowledge store ({self._where}) is closed")
        if _no_search(exc):
            return NotSupportedError(f"{_NO_SEARCH} ({self._where} answered: {mask_secrets(exc, *self._secrets)})")
        return translate_error(exc, f"mongodb_vector {what}", self._options)

    def _collection(self, name: str) -> Any:
        return self._database.get_collection(self.prefix + name, read_preference=_PRIMARY)

    def _slots(self, name: str) -> dict[str, int]:
        return dict(self._registries.get(name, {}).get("slots") or {})

    def _compile(self, info: CollectionInfo, where: Filter | None) -> v.CompiledFilter:
        return v.compile_filter(where, self._slots(info.name))

    # -- collections ----------------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        record = self._registry.find_one({"_id": name})
        if record is None or record.get("state") != "ready":
            self._registries.pop(name, None)
            return None
        self._registries[name] = record
        try:
            return CollectionInfo(name, int(record["dimension"]), Distance(record["distance"]))
        except (KeyError, ValueError) as exc:
            raise OperationFailedError(f"the registry entry of {name!r} in {self._where} is not storebridge's "
                                       f"({exc})") from None

    def _engine_create(self, info: CollectionInfo) -> None:
        """Record the collection as being created, make the MongoDB collection and its search index, wait
        until the index is queryable, then mark it ready. Every step is idempotent, so an interrupted or
        concurrent create of the same collection is resumed, not duplicated."""
        record: dict[str, Any] = {"_id": info.name, "state": "creating", "dimension": info.dimension,
                  "distance": info.distance.value, "numeric_slots": self.numeric_slots, "slots": {}, "nslots": 0}
        try:
            self._registry.insert_one(record)
        except mongo_errors.DuplicateKeyError:
            existing = self._registry.find_one({"_id": info.name}) or {}
            if (existing.get("dimension"), existing.get("distance")) != (info.dimension, info.distance.value):
                raise AlreadyExistsError(
                    f"knowledge collection {info.name!r} is being created with dimension "
                    f"{existing.get('dimension')} and distance {existing.get('distance')!r}; wait, then use it or "
                    "drop it") from None
            record = existing
        collection = self._collection(info.name)
        try:
            self._database.create_collection(self.prefix + info.name)
        except mongo_errors.CollectionInvalid:
            pass  # it exists (a resumed create)
        model = SearchIndexModel(
            definition=v.index_definition(info.dimension, info.distance, int(record["numeric_slots"])),
            name=v.INDEX_NAME, type="vectorSearch")
        self._wait_queryable(collection, info.name, model)
        self._registry.update_one({"_id": info.name}, {"$set": {"state": "ready"}})

    def _wait_queryable(self, collection: Any, name: str, model: SearchIndexModel) -> None:
        """Create the search index if it is not there (or is still being deleted: a collection dropped
        and made again), then poll until it is queryable."""
        deadline = time.monotonic() + self.index_timeout
        delay = 0.2
        created = False
        while True:
            indexes = list(collection.list_search_indexes(v.INDEX_NAME))
            status = indexes[0] if indexes else {}
            state = status.get("status", "DOES_NOT_EXIST")
            if state == "FAILED":
                raise OperationFailedError(f"building the vector search index of {name!r} in {self._where} failed: "
                                           f"{mask_secrets(status.get('message') or status, *self._secrets)}")
            if status.get("queryable") is True and state not in ("DELETING", "DOES_NOT_EXIST"):
                return
            if state == "DOES_NOT_EXIST" and not created:
                try:
                    collection.create_search_index(model)
                    created = True
                    continue
                except mongo_errors.OperationFailure as exc:
                    text = str(exc).lower()
                    if "already exists" not in text and "duplicate" not in text:
                        raise  # (one still being deleted is polled until it is gone, then made again)
            if time.monotonic() > deadline:
                raise OperationFailedError(
                    f"the vector search index of {name!r} in {self._where} was not queryable after "
                    f"{self.index_timeout:g} s (status {state}); it may still be building: call create_collection "
                    "again later to resume")
            time.sleep(delay)
            delay = min(delay * 1.5, 5.0)

    def _engine_drop(self, name: str) -> None:
        self._collection(name).drop()  # its search indexes go with it
        self._registry.delete_one({"_id": name})
        self._registries.pop(name, None)

    def _engine_names(self) -> list[str]:
        return [str(record["_id"]) for record in self._registry.find({"state": "ready"}, {"_id": 1})]

    # -- writes ---------------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        return [str(d["_id"]) for d in self._collection(info.name).find({"_id": {"$in": ids}}, {"_id": 1})]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        slots = self._ensure_slots(info, {v.field_id(k) for doc in documents for k in v.numeric_keys(doc)})
        token = uuid.uuid4().hex
        requests = []
        for doc, row in zip(documents, vectors):
            original: bytes | None = None
            scanned = row
            if info.distance is Distance.COSINE:
                wide = row.astype(np.float64)
                scanned = (wide / np.linalg.norm(wide)).astype(np.float32)
                original = np.ascontiguousarray(row, dtype="<f4").tobytes()
            stored = v.document(doc, metadata_json(doc), scanned.tolist(), original, slots, token)
            requests.append(ReplaceOne({"_id": doc.id}, stored, upsert=True))
        collection = self._collection(info.name)
        collection.bulk_write(requests, ordered=False)
        if self.sync_timeout > 0:
            self._await_index(info, collection, {v.WRITE: token}, expected=None, stacklevel=5)

    def _ensure_slots(self, info: CollectionInfo, needed: set[str]) -> dict[str, int]:
        """The slot of every numeric key in ``needed``, assigning free slots in the registry first: a
        compare-and-set on the slot count, so concurrent writers never share or lose a slot."""
        for attempt in range(100):
            record = self._registries.get(info.name, {})
            slots = dict(record.get("slots") or {})
            missing = sorted(needed - set(slots))
            if not missing:
                return slots
            used = int(record.get("nslots", len(slots)))
            limit = int(record.get("numeric_slots", self.numeric_slots))
            if used + len(missing) > limit:
                raise ValidationError(
                    f"collection {info.name!r} has numeric slots for {limit} distinct numeric metadata keys and this "
                    f"write needs {used + len(missing)}; nothing was written. Store such values as strings, "
                    "or use a new collection made by a store with a larger numeric_slots")
            assigned = {fid: used + i for i, fid in enumerate(missing)}
            condition: dict[str, Any] = {"_id": info.name, "nslots": used}
            condition.update({f"slots.{fid}": {"$exists": False} for fid in missing})
            result = self._registry.update_one(condition, {"$set": {f"slots.{fid}": n for fid, n in assigned.items()},
                                                           "$inc": {"nslots": len(missing)}})
            if result.modified_count == 1:
                record = self._registries.setdefault(info.name, {})
                record["slots"] = {**slots, **assigned}
                record["nslots"] = used + len(missing)
                return record["slots"]  # type: ignore[no-any-return]
            self._engine_describe(info.name)  # another writer took slots: re-read and retry
            time.sleep(0.001 * attempt)
        raise OperationFailedError(f"could not assign numeric slots in {info.name!r} ({self._where}): too many "
                                   "concurrent writers")

    def _await_index(self, info: CollectionInfo, collection: Any, condition: dict[str, Any],
                     expected: int | None, stacklevel: int) -> None:
        """Poll until the search index holds ``expected`` documents matching ``condition`` (None: as many as
        the collection itself holds now); on timeout the write stands and a warning says so. The search is
        exact, so the query vector only has to be valid (non-zero)."""
        query = [0.0] * (info.dimension - 1) + [1.0]
        for _ in poll(self.sync_timeout):
            target = collection.count_documents(condition) if expected is None else expected
            found = list(collection.aggregate(v.visible_pipeline(query, condition, max(target, 1))))
            if (found[0]["n"] if found else 0) == target:
                return
        warnings.warn(SearchIndexLagWarning(
            f"the write to {info.name!r} is stored, but the vector search index of {self._where} had not caught up "
            f"after {self.sync_timeout:g} s (sync_timeout); searches may miss it for a while"), stacklevel=6)

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        compiled = self._compile(info, where)
        if compiled.nothing or (ids is not None and not ids):
            return 0
        collection = self._collection(info.name)
        removed = 0
        for doomed in self._doomed(collection, compiled, ids):
            removed += collection.delete_many(compiled.restricted({"_id": {"$in": doomed}})).deleted_count
            if self.sync_timeout > 0:
                self._await_index(info, collection, {"_id": {"$in": doomed}}, expected=0, stacklevel=4)
        return removed

    def _doomed(self, collection: Any, compiled: v.CompiledFilter, ids: list[str] | None) -> Iterator[list[str]]:
        """The ids to delete, a round at a time (the filter is checked again by the delete itself)."""
        if ids is not None:
            found = [str(d["_id"]) for d in collection.find(compiled.restricted({"_id": {"$in": ids}}), {"_id": 1})]
            if found:
                yield found
            return
        while True:
            found = [str(d["_id"]) for d in collection.find(compiled.mql or {}, {"_id": 1}).limit(WRITE_BATCH)]
            if not found:
                return
            yield found

    # -- reads ----------------------------------------------------------------------------------------------

    @staticmethod
    def _vector(stored: dict[str, Any]) -> np.ndarray | None:
        if stored.get(v.ORIG) is not None:
            return np.frombuffer(bytes(stored[v.ORIG]), dtype="<f4").astype(np.float32)
        if stored.get(v.VEC) is not None:
            return np.asarray(stored[v.VEC], dtype=np.float32)
        return None

    def _document(self, stored: dict[str, Any], with_vector: bool) -> KnowledgeDocument:
        vector = self._vector(stored) if with_vector else None
        return KnowledgeDocument(id=str(stored["_id"]), content=stored.get(v.CONTENT, ""),
                                 metadata=json.loads(stored.get(v.META) or "{}"), source_id=stored.get(v.SOURCE),
                                 embedding=None if vector is None else vector.tolist())

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        compiled = self._compile(info, where)
        if compiled.nothing:
            return []
        collection = self._collection(info.name)
        found = list(collection.aggregate(v.search_pipeline(query.tolist(), limit, compiled, exact=self.exact)))
        if not found:
            self._check_empty_answer(info, collection, compiled)
        candidates = []
        for stored in found:
            vector = self._vector(stored)
            if vector is None:
                raise OperationFailedError(f"document {stored.get('_id')!r} of {info.name!r} has no vector")
            candidates.append(Candidate(self._document(stored, False), vector))
        return candidates

    def _check_empty_answer(self, info: CollectionInfo, collection: Any, compiled: v.CompiledFilter) -> None:
        """$vectorSearch answers a missing or unusable index with no results: if documents match, make sure
        the index is there and queryable before believing an empty answer."""
        if collection.count_documents(compiled.mql or {}, limit=1) == 0:
            return
        indexes = list(collection.list_search_indexes(v.INDEX_NAME))
        if not indexes or indexes[0].get("queryable") is not True:
            state = indexes[0].get("status") if indexes else "missing"
            raise OperationFailedError(
                f"the vector search index of {info.name!r} in {self._where} is {state}, not queryable, so the search "
                "cannot answer; wait for it, or drop and re-create the collection")

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        projection = {**v.PROJECTION, **(v.VECTOR_PROJECTION if with_vectors else {})}
        return [self._document(stored, with_vectors)
                for stored in self._collection(info.name).find({"_id": {"$in": ids}}, projection)]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        compiled = self._compile(info, where)
        if compiled.nothing:
            return 0
        return int(self._collection(info.name).count_documents(compiled.mql or {}))

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        after = None if cursor is None else v.decode_cursor(cursor)
        compiled = self._compile(info, where)
        if compiled.nothing:
            return DocumentPage([], None)
        query = (compiled.mql or {}) if after is None else compiled.restricted({"_id": {"$gt": after}})
        projection = {**v.PROJECTION, **(v.VECTOR_PROJECTION if with_vectors else {})}
        found = list(self._collection(info.name).find(query, projection).sort("_id", 1).limit(limit + 1))
        page = [self._document(stored, with_vectors) for stored in found[:limit]]
        return DocumentPage(page, v.encode_cursor(page[-1].id) if len(found) > limit else None)


def _no_search(exc: Exception) -> bool:
    if not isinstance(exc, mongo_errors.OperationFailure):
        return False
    text = str(exc).lower()
    return (exc.code in _NO_SEARCH_CODES and ("search" in text or "no such command" in text)) or any(
        hint in text for hint in ("unrecognized pipeline stage name: '$vectorsearch'",
                                  "no such command: 'createsearchindexes'",
                                  "no such command: 'listsearchindexes'",
                                  "$listsearchindexes stage is only allowed",
                                  "search index commands are only supported"))


def _split_our_options(url: str) -> tuple[str, dict[str, str]]:
    """Take this store's options out of the URL's query; the rest reaches the driver untouched."""
    from urllib.parse import unquote

    base, sep, query = url.partition("?")
    if not sep:
        return url, {}
    ours: dict[str, str] = {}
    kept = []
    for part in query.replace(";", "&").split("&"):
        name, _, value = part.partition("=")
        if unquote(name) in _OUR_URL_OPTIONS:
            ours[unquote(name)] = unquote(value)
        elif part:
            kept.append(part)
    return base + ("?" + "&".join(kept) if kept else ""), ours


__all__ = ["MongoDBVectorKnowledgeStore", "SearchIndexLagWarning"]
