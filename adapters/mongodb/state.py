"""MongoDB state stores: :class:`MongoDBStateStore` on ``pymongo.MongoClient`` and
:class:`AsyncMongoDBStateStore` on PyMongo's native async API (``pymongo.AsyncMongoClient``,
PyMongo >= 4.9). Motor is deprecated in favour of that API, so there is no Motor-based store; the
``motor`` name is only an alias of ``async_mongodb`` for people looking for it.

UNVERIFIED AGAINST A LIVE MONGODB: no MongoDB server runs where this was written. The documents,
filters and updates are unit-tested as data and the conformance suite runs when
``STOREBRIDGE_TEST_MONGODB_URL`` is set, but it has not been run against a server here.

One collection holds every namespace (documents keyed ``_id: {ns, k}``, see ``_documents``). TTL:
an ``expires_at`` date with a TTL index (``expireAfterSeconds=0``) created on first use, so MongoDB
deletes expired documents itself; its monitor runs only every 60 s, so every read also filters
``expires_at > now``. Both classes build every filter and update with the same pure functions and
differ only in awaiting the driver.

``increment`` is an optimistic compare-and-set (values are stored encoded, so ``$inc`` or a pipeline
update cannot do arithmetic on them): read the document, compute the new value with the same type
rules as every store, then ``update_one`` conditioned on ``v`` still being the value read and the
document still live (or, for a missing key, an upsert that the unique ``_id`` makes fail if a live
document appeared). A lost race re-reads and retries with jittered backoff. Single-document writes
are atomic in MongoDB, so this holds across threads, processes and machines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from pymongo import AsyncMongoClient, MongoClient

from storebridge.errors import (
    ConfigurationError,
    OperationFailedError,
    StorebridgeError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import (
    AsyncStateStore,
    StateCapabilities,
    StateStore,
    check_amount,
    check_key,
    check_keys,
    check_namespace,
    decode_value,
    encode_value,
    key_matches,
)

from ._documents import (
    COLLECTION_OPTIONS,
    INDEXES,
    DuplicateKeyError,
    MongoOptions,
    PyMongoError,
    backoff_delay,
    check_text,
    chunks,
    doc_id,
    document,
    expire_update,
    expires_at,
    keys_filter,
    live,
    live_key_filter,
    live_keys_filter,
    plan_increment,
    remaining_ttl,
    replace_ops,
    resolve_options,
    stored_bytes,
    took_effect,
    translate_error,
    utc_now,
)

#: Give up on an increment after this many lost compare-and-set races in a row.
MAX_INCREMENT_ATTEMPTS = 200
_PROJECT_VALUE = {"v": 1, "expires_at": 1}


class _MongoStateBase:
    """What both classes share: options, validation, the closed flag and error translation."""

    backend_name = "mongodb"
    capabilities = StateCapabilities(persistent=True, native_ttl=True, atomic_increment=True)

    def _setup(self, url: str | None, namespace: str, database: str | None, collection: str | None,
               client: Any, client_type: type) -> None:
        self._options: MongoOptions = resolve_options(url, database=database, collection=collection,
                                                      namespace=namespace)
        self.namespace = check_namespace(self._options.namespace)
        self.database = self._options.database
        self.collection_name = self._options.collection
        self._owns_client = client is None
        self._closed = False
        self._indexed = False
        if client is not None and url is not None:
            raise ConfigurationError(
                "pass a URL or a client, not both; with a client, name the database and collection with "
                "database= and collection="
            )
        if client is None:
            try:
                client = client_type(self._options.driver_uri)
            except PyMongoError as exc:
                raise translate_error(exc, "connect", self._options) from exc
        else:  # messages should name the caller's servers, not the default
            self._options = dataclasses.replace(self._options, hosts=_hosts_of(client))
        self._client = client
        self._collection = client.get_database(self.database).get_collection(self.collection_name,
                                                                               **COLLECTION_OPTIONS)

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return (f"{type(self).__name__}(hosts={self._options.hosts!r}, database={self.database!r}, "
                f"collection={self.collection_name!r}, namespace={self.namespace!r}{closed})")

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(
                f"the MongoDB state store on {self._options.hosts} ({self.database}.{self.collection_name}) "
                "is closed; open a new one"
            )

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Refuse a closed store and turn driver exceptions into typed errors (``__cause__`` kept).
        A plain context manager works around ``await`` too, so both classes use it."""
        self._check_open()
        try:
            yield
        except StorebridgeError:
            raise
        except PyMongoError as exc:
            if self._closed:
                raise StoreClosedError(f"the MongoDB state store on {self._options.hosts} is closed") from exc
            raise translate_error(exc, action, self._options) from exc

    def _conflict_limit(self, key: str) -> OperationFailedError:
        return OperationFailedError(
            f"increment of state key {key!r} lost {MAX_INCREMENT_ATTEMPTS} compare-and-set races in a row on "
            f"MongoDB at {self._options.hosts}; too many concurrent writers on one key"
        )


class MongoDBStateStore(_MongoStateBase, StateStore):
    """Key-value state with TTL in a MongoDB collection, one namespace per store object.

    ``MongoDBStateStore("mongodb://user:pw@host/app?collection=state&namespace=svc")`` (``mongodb+srv``
    too), keyword arguments, or ``client=`` a ``pymongo.MongoClient`` you own (not closed by ``close()``).
    Unverified against a live MongoDB here (see the module docstring).
    """

    def __init__(self, url: str | None = None, *, namespace: str = "", database: str | None = None,
                 collection: str | None = None, client: MongoClient | None = None) -> None:
        self._setup(url, namespace, database, collection, client, MongoClient)
        self._index_lock = threading.Lock()

    def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        with self._index_lock:
            if not self._indexed:
                self._collection.create_indexes(INDEXES)
                self._indexed = True

    @contextmanager
    def _op(self, action: str) -> Iterator[Any]:
        with self._errors(action):
            self._ensure_indexes()
            yield self._collection

    # -- the interface --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        key = check_key(key)
        with self._op("get") as coll:
            doc = coll.find_one(live_key_filter(self.namespace, key, utc_now()), {"v": 1})
        return default if doc is None else decode_value(stored_bytes(doc))

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        doc = document(self.namespace, check_key(key), encode_value(value), expires_at(ttl, utc_now()))
        with self._op("set") as coll:
            coll.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    def delete(self, key: str) -> bool:
        key = check_key(key)
        with self._op("delete") as coll:
            return coll.delete_one(live_key_filter(self.namespace, key, utc_now())).deleted_count > 0

    def exists(self, key: str) -> bool:
        key = check_key(key)
        with self._op("exists") as coll:
            return coll.find_one(live_key_filter(self.namespace, key, utc_now()), {"_id": 1}) is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = check_keys(keys)
        self._check_open()
        if not wanted:
            return {}
        found: dict[str, bytes] = {}
        with self._op("get_many") as coll:
            for chunk in chunks(wanted):
                for doc in coll.find(live_keys_filter(self.namespace, chunk, utc_now()), {"k": 1, "v": 1}):
                    found[doc["k"]] = stored_bytes(doc)
        return {key: decode_value(found[key]) for key in wanted if key in found}

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        _check_mapping(items)
        operations = replace_ops(self.namespace, items, expires_at(ttl, utc_now()))
        self._check_open()
        if operations:
            with self._op("set_many") as coll:
                coll.bulk_write(operations, ordered=False)

    def delete_many(self, keys: Iterable[str]) -> int:
        doomed = check_keys(keys)
        self._check_open()
        if not doomed:
            return 0
        with self._op("delete_many") as coll:
            return sum(coll.delete_many(live_keys_filter(self.namespace, chunk, utc_now())).deleted_count
                       for chunk in chunks(doomed))

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        _check_pattern(pattern, prefix)
        with self._op("keys") as coll:
            found = [doc["k"] for doc in coll.find(keys_filter(self.namespace, pattern, prefix, utc_now()),
                                                   {"k": 1, "_id": 0})]
        return sorted(key for key in found if key_matches(key, pattern, prefix))

    def ttl(self, key: str) -> float | None:
        key = check_key(key)
        with self._op("ttl") as coll:
            now = utc_now()
            doc = coll.find_one(live_key_filter(self.namespace, key, now), {"expires_at": 1})
        return None if doc is None else remaining_ttl(doc, now)

    def expire(self, key: str, ttl: float | None) -> bool:
        key = check_key(key)
        now = utc_now()
        update = expire_update(expires_at(ttl, now))
        with self._op("expire") as coll:
            return coll.update_one(live_key_filter(self.namespace, key, now), update).matched_count > 0

    def increment(self, key: str, amount: float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        with self._op("increment") as coll:
            id_filter = {"_id": doc_id(self.namespace, key)}
            for attempt in range(MAX_INCREMENT_ATTEMPTS):
                plan = plan_increment(self.namespace, key, coll.find_one(id_filter, _PROJECT_VALUE), amount,
                                      utc_now())
                try:
                    result = coll.update_one(plan.filter, plan.update, upsert=plan.upsert)
                    if took_effect(result.matched_count, result.upserted_id):
                        return plan.result
                except DuplicateKeyError:  # the upsert lost to a writer that created the key
                    pass
                time.sleep(backoff_delay(attempt))
        raise self._conflict_limit(key)

    def clear(self) -> int:
        with self._op("clear") as coll:
            removed = coll.delete_many({"ns": self.namespace, **live(utc_now())}).deleted_count
            coll.delete_many({"ns": self.namespace})  # expired leftovers the TTL monitor has not reached
        return int(removed)

    def close(self) -> None:
        """Refuse further calls and close the client if this store created it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            self._client.close()


class AsyncMongoDBStateStore(_MongoStateBase, AsyncStateStore):
    """The async twin of :class:`MongoDBStateStore` on ``pymongo.AsyncMongoClient`` (the driver's
    native asyncio API that replaces Motor). ``mongodb+async://`` URLs pick it in the registry.
    Unverified against a live MongoDB here (see the module docstring).
    """

    backend_name = "async_mongodb"

    def __init__(self, url: str | None = None, *, namespace: str = "", database: str | None = None,
                 collection: str | None = None, client: AsyncMongoClient | None = None) -> None:
        self._setup(url, namespace, database, collection, client, AsyncMongoClient)
        self._index_lock = asyncio.Lock()

    async def _ensure_indexes(self) -> None:
        if self._indexed:
            return
        async with self._index_lock:
            if not self._indexed:
                await self._collection.create_indexes(INDEXES)
                self._indexed = True

    # -- the interface --------------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        key = check_key(key)
        with self._errors("get"):
            await self._ensure_indexes()
            doc = await self._collection.find_one(live_key_filter(self.namespace, key, utc_now()), {"v": 1})
        return default if doc is None else decode_value(stored_bytes(doc))

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        doc = document(self.namespace, check_key(key), encode_value(value), expires_at(ttl, utc_now()))
        with self._errors("set"):
            await self._ensure_indexes()
            await self._collection.replace_one({"_id": doc["_id"]}, doc, upsert=True)

    async def delete(self, key: str) -> bool:
        key = check_key(key)
        with self._errors("delete"):
            await self._ensure_indexes()
            result = await self._collection.delete_one(live_key_filter(self.namespace, key, utc_now()))
        return result.deleted_count > 0

    async def exists(self, key: str) -> bool:
        key = check_key(key)
        with self._errors("exists"):
            await self._ensure_indexes()
            doc = await self._collection.find_one(live_key_filter(self.namespace, key, utc_now()), {"_id": 1})
        return doc is not None

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = check_keys(keys)
        self._check_open()
        if not wanted:
            return {}
        found: dict[str, bytes] = {}
        with self._errors("get_many"):
            await self._ensure_indexes()
            for chunk in chunks(wanted):
                async for doc in self._collection.find(live_keys_filter(self.namespace, chunk, utc_now()),
                                                       {"k": 1, "v": 1}):
                    found[doc["k"]] = stored_bytes(doc)
        return {key: decode_value(found[key]) for key in wanted if key in found}

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        _check_mapping(items)
        operations = replace_ops(self.namespace, items, expires_at(ttl, utc_now()))
        self._check_open()
        if operations:
            with self._errors("set_many"):
                await self._ensure_indexes()
                await self._collection.bulk_write(operations, ordered=False)

    async def delete_many(self, keys: Iterable[str]) -> int:
        doomed = check_keys(keys)
        self._check_open()
        if not doomed:
            return 0
        removed = 0
        with self._errors("delete_many"):
            await self._ensure_indexes()
            for chunk in chunks(doomed):
                result = await self._collection.delete_many(live_keys_filter(self.namespace, chunk, utc_now()))
                removed += result.deleted_count
        return removed

    async def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        _check_pattern(pattern, prefix)
        with self._errors("keys"):
            await self._ensure_indexes()
            found = [doc["k"] async for doc in self._collection.find(
                keys_filter(self.namespace, pattern, prefix, utc_now()), {"k": 1, "_id": 0})]
        return sorted(key for key in found if key_matches(key, pattern, prefix))

    async def ttl(self, key: str) -> float | None:
        key = check_key(key)
        with self._errors("ttl"):
            await self._ensure_indexes()
            now = utc_now()
            doc = await self._collection.find_one(live_key_filter(self.namespace, key, now), {"expires_at": 1})
        return None if doc is None else remaining_ttl(doc, now)

    async def expire(self, key: str, ttl: float | None) -> bool:
        key = check_key(key)
        now = utc_now()
        update = expire_update(expires_at(ttl, now))
        with self._errors("expire"):
            await self._ensure_indexes()
            result = await self._collection.update_one(live_key_filter(self.namespace, key, now), update)
        return result.matched_count > 0

    async def increment(self, key: str, amount: float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        with self._errors("increment"):
            await self._ensure_indexes()
            id_filter = {"_id": doc_id(self.namespace, key)}
            for attempt in range(MAX_INCREMENT_ATTEMPTS):
                current = await self._collection.find_one(id_filter, _PROJECT_VALUE)
                plan = plan_increment(self.namespace, key, current, amount, utc_now())
                try:
                    result = await self._collection.update_one(plan.filter, plan.update, upsert=plan.upsert)
                    if took_effect(result.matched_count, result.upserted_id):
                        return plan.result
                except DuplicateKeyError:  # the upsert lost to a writer that created the key
                    pass
                await asyncio.sleep(backoff_delay(attempt))
        raise self._conflict_limit(key)

    async def clear(self) -> int:
        with self._errors("clear"):
            await self._ensure_indexes()
            result = await self._collection.delete_many({"ns": self.namespace, **live(utc_now())})
            await self._collection.delete_many({"ns": self.namespace})  # expired leftovers
        return int(result.deleted_count)

    async def close(self) -> None:
        """Refuse further calls and close the client if this store created it."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()


def _hosts_of(client: Any) -> str:
    """The seed addresses of a caller's client, without blocking (no server selection)."""
    try:
        return ",".join(f"{host}:{port}" for host, port in sorted(client.topology_description.server_descriptions()))
    except (AttributeError, TypeError, ValueError):
        return "the given client"


def _check_mapping(items: Any) -> None:
    if not isinstance(items, Mapping):
        raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")


def _check_pattern(pattern: str | None, prefix: str | None) -> None:
    if pattern is not None:
        check_text(pattern, "key pattern")
    if prefix is not None:
        check_text(prefix, "key prefix")


__all__ = ["AsyncMongoDBStateStore", "MongoDBStateStore"]
