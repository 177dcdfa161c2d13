"""Knowledge store on Azure Cosmos DB for NoSQL with vector search (sync, on ``azure.cosmos.CosmosClient``).

Targets the Azure service with the "Vector Search for NoSQL API" feature enabled (``VectorDistance``,
vector embedding policies, ``quantizedFlat`` / ``diskANN`` / ``flat`` vector indexes) through
azure-cosmos 4.14+ (``read_items``); written against azure-cosmos 4.17.1. Verified here: everything but
``search`` against the npm ``@vercel/cosmosdb-server`` 1.0.1 emulator (collections, writes, reads, ids,
count, scroll, delete, and every filter operator evaluated by the emulator's SQL engine against
:func:`storebridge.filters.evaluate`), and the exact query text by unit tests. The emulator has no
``VectorDistance``, so ``search`` raises :class:`~storebridge.errors.NotSupportedError` there; the whole
conformance suite, search included, runs only against a live account (``STOREBRIDGE_TEST_COSMOSDB_URL``)
and has not run on these machines.

URLs::

    cosmosdb://<account>.documents.azure.com:443/?key=<account key>&database=<db>&prefix=sb_
    cosmosdb+http://<host>:<port>/?key=...             (an endpoint served without TLS)
    AccountEndpoint=https://<account>.documents.azure.com:443/;AccountKey=<key>;   (connection string)

Options (URL query or keyword):

* ``key``: the account key. Percent-encode it in a URL; an unencoded ``+`` reads as a space, and since
  base64 keys never contain spaces, spaces are turned back into ``+``.
* ``database``: default ``storebridge`` (or the URL path); created on the first ``create_collection``.
* ``prefix``: container name prefix, default ``sb_``; a container is ``<prefix><collection>``.
* ``index``: ``quantizedFlat`` (default), ``diskANN`` or ``flat`` (exact, at most 505 dimensions).
* ``exact``: ``true`` makes every search brute force (``VectorDistance(..., true)``).
* ``verify``: ``false`` for a self-signed certificate (the SDK itself never verifies ``localhost`` or
  ``127.0.0.1``, where emulators run).
* ``throughput``: RU/s for each new container (default none: serverless, or shared database throughput).
* ``consistency``: the client's consistency level; ``workers``: concurrent requests of one write or
  delete (default 8).

``credential=`` takes an Azure ``TokenCredential`` instead of a key, and ``client=`` a ready
``CosmosClient`` (never closed by the store). Store objects in one process with the same endpoint, key
and options share one ``CosmosClient``, so they also share its session tokens: with the account's
default session consistency, what one store object wrote, another reads.

Layout: see ``_layout.py`` (one container per collection, partition key ``/id`` with UUIDv5 item ids,
metadata as exact JSON text plus a typed ``fields`` copy for filters). The partition key is the item id:
every document is its own logical partition, so point reads and deletes are single-partition and the
container scales out with no hot partition. A transactional batch works within one partition key only,
so it cannot group documents here; writes and deletes are instead sent as concurrent single-item
requests (``workers`` at a time). Cosmos has no multi-partition transaction: a write of many documents
that fails part-way (network, throttling after the SDK's retries) leaves the documents before the
failure written. Validation and the duplicate-id check of ``insert`` happen before the first request.

Filters: every operator, compiled by ``_query.py`` to a WHERE clause with bound parameters and typed
checks (``IS_NUMBER``, ``IS_STRING``, ``IS_BOOL``, ``IS_ARRAY``, ``IS_DEFINED``, ``ARRAY_CONTAINS``) so
each has FILTERS.md's meaning despite Cosmos's three-valued logic; top-level keys only (no dotted
paths). Cosmos numbers are doubles: integers beyond 2**53 are compared as their nearest double (two such
integers that round alike compare equal), and an integer beyond the double range is not filterable.

Search: ``SELECT TOP @limit ... WHERE <filter> ORDER BY VectorDistance(c.embedding, @vector)`` for
``k + 16`` candidates, re-scored in float64 from the stored vectors
(:func:`storebridge.vectors.exact_scores`), so scores follow :class:`~storebridge.models.Distance`
exactly. ``flat`` indexes and ``exact=true`` are exact (``recall_floor`` 1.0); ``quantizedFlat`` and
``diskANN`` are approximate above 1,000 vectors (declared 0.9, Microsoft's description, not measured
here). The SDK buffers at most ``AZURE_COSMOS_MAX_ITEM_BUFFER_VECTOR_SEARCH`` (default 50,000) results of
a vector query: a larger ``k`` raises ``NotSupportedError``.

Scroll pages by item id (keyset: ``c.id > @cursor ORDER BY c.id``); the cursor is the last item id.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import numpy as np

from storebridge.engine import Candidate, EngineKnowledgeStore, reconcile_collection
from storebridge.errors import (
    AlreadyExistsError,
    CollectionNotFoundError,
    ConfigurationError,
    ConnectionFailedError,
    NotSupportedError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.filters import ALL_OPS, Filter
from storebridge.identifiers import validate_table_prefix
from storebridge.knowledge import KnowledgeCapabilities
from storebridge.models import CollectionInfo, DocumentPage, KnowledgeDocument
from storebridge.urls import mask_secrets, merge_url_option, parse_url

from . import _layout as layout
from ._query import Query, count_query, existing_query, ids_query, nearest_query, page_query

try:  # imported lazily by the registry; the module needs the client
    from azure.core.exceptions import ServiceRequestError, ServiceResponseError
    from azure.cosmos import CosmosClient, PartitionKey
    from azure.cosmos import exceptions as cosmos_errors
except ImportError as exc:  # pragma: no cover - the registry checks first
    raise ImportError("the cosmosdb backend needs azure-cosmos: pip install \"storebridge[cosmosdb]\"") from exc

DEFAULT_DATABASE = "storebridge"
DEFAULT_PREFIX = "sb_"
DEFAULT_INDEX = "quantizedFlat"
DEFAULT_WORKERS = 8
#: Documents per write call (and per existence check, get and id-delete group).
WRITE_BATCH = 100
_URL_OPTIONS = frozenset({"key", "database", "prefix", "index", "exact", "verify", "throughput", "consistency",
                          "workers"})
_TRUE, _FALSE = frozenset({"1", "true", "yes", "on"}), frozenset({"0", "false", "no", "off"})
_T = TypeVar("_T")
_R = TypeVar("_R")


def _vector_buffer_limit() -> int:
    """The SDK's cap on the results of one vector query (its environment variable, default 50,000)."""
    try:
        return int(os.environ.get("AZURE_COSMOS_MAX_ITEM_BUFFER_VECTOR_SEARCH", "50000"))
    except ValueError:
        return 50000


# -- option parsing -----------------------------------------------------------------------------------------

def _parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigurationError(f"cosmosdb option {name} must be true or false, got {value!r}")


def _parse_positive(name: str, value: Any) -> int | None:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if isinstance(value, bool) or number < 1:
        raise ConfigurationError(f"cosmosdb option {name} must be a positive integer, got {value!r}")
    return number


def _parse_index(value: Any) -> str:
    for known in layout.INDEX_TYPES:
        if str(value).lower() == known.lower():
            return known
    raise ConfigurationError(f"cosmosdb option index must be one of {list(layout.INDEX_TYPES)}, got {value!r}")


def _restore_key(key: str | None) -> str | None:
    """An unencoded ``+`` of a base64 key reads as a space from a URL query; base64 has no spaces."""
    return None if key is None else key.replace(" ", "+")


def parse_connection_string(text: str) -> tuple[str, str]:
    """``(endpoint, key)`` of an ``AccountEndpoint=...;AccountKey=...;`` connection string."""
    settings: dict[str, str] = {}
    for part in text.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            settings[name.strip().lower()] = value.strip()
    endpoint, key = settings.get("accountendpoint"), settings.get("accountkey")
    if not endpoint or not key:  # the text itself is never echoed: it may hold a key
        missing = " and ".join(name for name, value in (("AccountEndpoint", endpoint), ("AccountKey", key))
                               if not value)
        raise ConfigurationError(f"the Cosmos DB connection string has no {missing}; expected "
                                 "AccountEndpoint=https://<account>.documents.azure.com:443/;AccountKey=<key>;")
    if not endpoint.lower().startswith(("https://", "http://")):
        raise ConfigurationError(f"the connection string's AccountEndpoint must be an http(s) URL, got {endpoint!r}")
    return endpoint, key


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything a store needs to reach its account, resolved from the URL, a connection string and
    keyword arguments (secrets kept out of ``repr``)."""

    endpoint: str | None
    key: str | None = dataclasses.field(repr=False)
    database: str
    prefix: str
    index: str
    exact: bool
    verify: bool
    throughput: int | None
    consistency: str | None
    workers: int


def resolve_settings(url: str | None = None, *, connection_string: str | None = None, endpoint: str | None = None,
                     key: str | None = None, database: str | None = None, prefix: str | None = None,
                     index: str | None = None, exact: bool | str | None = None, verify: bool | str | None = None,
                     throughput: int | None = None, consistency: str | None = None,
                     workers: int | None = None) -> Settings:
    """The store's settings; a conflict or an unknown option is a :class:`ConfigurationError`."""
    from_url: dict[str, Any] = {}
    url_endpoint: str | None = None
    if url is not None and url.strip().lower().startswith("accountendpoint="):
        if connection_string is not None:
            raise ConfigurationError("a connection string is given twice (as url and connection_string); "
                                     "give it once")
        connection_string, url = url, None
    if url is not None:
        parsed = parse_url(url)
        if parsed.scheme not in ("cosmosdb", "cosmos"):
            raise ConfigurationError(f"not a cosmosdb URL: {parsed}; expected "
                                     "cosmosdb://<account>.documents.azure.com")
        if parsed.driver not in (None, "http", "https"):
            raise ConfigurationError(f"unknown cosmosdb URL scheme {parsed.full_scheme!r}; use cosmosdb:// "
                                     "(https) or cosmosdb+http://")
        if not parsed.host:
            raise ConfigurationError(f"the cosmosdb URL {parsed} names no account host")
        if parsed.username is not None or parsed.password is not None:
            raise ConfigurationError(f"the cosmosdb URL {parsed} has a user name or password; give the account "
                                     "key as ?key=...")
        unknown = sorted(set(parsed.query) - _URL_OPTIONS)
        if unknown:
            raise ConfigurationError(f"unknown cosmosdb URL options {unknown}; known: {sorted(_URL_OPTIONS)}")
        from_url = dict(parsed.query)
        from_url["key"] = _restore_key(from_url.get("key"))
        path_database = parsed.database
        if path_database:
            if "/" in path_database.strip("/"):
                raise ConfigurationError(f"the cosmosdb URL path names one database, got {path_database!r}")
            from_url["database"] = merge_url_option("database", from_url.get("database"), path_database.strip("/"))
        host = f"[{parsed.host}]" if ":" in parsed.host else parsed.host
        url_endpoint = f"{'http' if parsed.driver == 'http' else 'https'}://{host}:{parsed.port or 443}/"
    if connection_string is not None:
        if url_endpoint is not None:
            raise ConfigurationError("give a cosmosdb URL or a connection string, not both")
        url_endpoint, from_url["key"] = parse_connection_string(connection_string)
    endpoint = merge_url_option("endpoint", endpoint, url_endpoint)
    key = merge_url_option("key", key, from_url.get("key"))
    database = merge_url_option("database", database, from_url.get("database")) or DEFAULT_DATABASE
    if not isinstance(database, str) or not database or any(c in database for c in "/\\?#") or len(database) > 255:
        raise ConfigurationError(f"invalid Cosmos DB database name {database!r}")
    prefix = merge_url_option("prefix", prefix, from_url.get("prefix"))
    prefix = validate_table_prefix(DEFAULT_PREFIX if prefix is None else prefix)
    index_value = merge_url_option("index", index, from_url.get("index"))
    exact_value = merge_url_option("exact", None if exact is None else _parse_bool("exact", exact),
                                   None if "exact" not in from_url else _parse_bool("exact", from_url["exact"]))
    verify_value = merge_url_option("verify", None if verify is None else _parse_bool("verify", verify),
                                    None if "verify" not in from_url else _parse_bool("verify", from_url["verify"]))
    throughput_value = merge_url_option("throughput", _parse_positive("throughput", throughput),
                                        _parse_positive("throughput", from_url.get("throughput")))
    workers_value = merge_url_option("workers", _parse_positive("workers", workers),
                                     _parse_positive("workers", from_url.get("workers")))
    return Settings(
        endpoint=endpoint, key=key, database=database, prefix=prefix,
        index=_parse_index(index_value) if index_value is not None else DEFAULT_INDEX,
        exact=bool(exact_value), verify=True if verify_value is None else verify_value,
        throughput=throughput_value, consistency=merge_url_option("consistency", consistency,
                                                                   from_url.get("consistency")),
        workers=workers_value or DEFAULT_WORKERS,
    )


# -- shared clients -------------------------------------------------------------------------------------------

_CLIENTS_LOCK = threading.Lock()
_CLIENTS: dict[tuple[Any, ...], list[Any]] = {}  # key -> [client, reference count]


def _client_key(settings: Settings) -> tuple[Any, ...]:
    digest = hashlib.sha256((settings.key or "").encode("utf-8")).hexdigest()  # never the key itself
    return settings.endpoint, digest, settings.verify, settings.consistency


def _new_client(settings: Settings, credential: Any) -> CosmosClient:
    if settings.endpoint is None:
        raise ConfigurationError("the cosmosdb store has no endpoint")
    return CosmosClient(settings.endpoint, credential=credential, connection_verify=settings.verify,
                        consistency_level=settings.consistency, user_agent_suffix="storebridge")


def _close_client(client: CosmosClient) -> None:
    """Close a client this store made. The SDK checks the account's endpoints in a background thread
    started with the client; closing under it makes that thread log an error, so wait for it first
    (bounded). The attribute path is the SDK's own (azure-cosmos 4.14-4.17); if it moves, close at once."""
    manager = getattr(getattr(client, "client_connection", None), "_global_endpoint_manager", None)
    thread = getattr(manager, "_refresh_thread", None)
    if isinstance(thread, threading.Thread) and thread.is_alive() and thread is not threading.current_thread():
        thread.join(timeout=10)
    client.close()


def _open_shared(settings: Settings) -> CosmosClient:
    key = _client_key(settings)
    with _CLIENTS_LOCK:
        entry = _CLIENTS.get(key)
        if entry is None:
            client = _new_client(settings, settings.key)
            entry = _CLIENTS[key] = [client, 0]
        entry[1] += 1
        return entry[0]  # type: ignore[no-any-return]


def _release_shared(settings: Settings) -> None:
    key = _client_key(settings)
    with _CLIENTS_LOCK:
        entry = _CLIENTS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] > 0:
            return
        del _CLIENTS[key]
    _close_client(entry[0])  # outside the lock: it may wait for the SDK's background check


# -- the store ------------------------------------------------------------------------------------------------

class CosmosDBKnowledgeStore(EngineKnowledgeStore):
    """Knowledge collections as Cosmos DB for NoSQL containers with a vector policy (see the module docstring)."""

    backend_name = "cosmosdb"
    write_batch = WRITE_BATCH
    capabilities = KnowledgeCapabilities(
        filter_operators=ALL_OPS,
        nested_keys=False,
        client_side_filters=False,
        recall_floor=0.9,
        persistent=True,
        max_batch=WRITE_BATCH,
        notes=(("vector search needs an Azure Cosmos DB for NoSQL account with vector search enabled; the "
                "@vercel/cosmosdb-server emulator runs everything but search"),
               "filters on top-level metadata keys; every operator is evaluated by Cosmos DB",
               "numbers are compared as doubles: integers beyond 2**53 as their nearest double",
               ("writes of many documents are concurrent single-item upserts: a failure part-way leaves "
                "the documents before it written")),
    )

    def __init__(self, url: str | None = None, *, connection_string: str | None = None, endpoint: str | None = None,
                 key: str | None = None, credential: Any = None, database: str | None = None,
                 prefix: str | None = None, index: str | None = None, exact: bool | str | None = None,
                 verify: bool | str | None = None, throughput: int | None = None, consistency: str | None = None,
                 workers: int | None = None, client: CosmosClient | None = None) -> None:
        self._closed = False
        settings = resolve_settings(url, connection_string=connection_string, endpoint=endpoint, key=key,
                                    database=database, prefix=prefix, index=index, exact=exact, verify=verify,
                                    throughput=throughput, consistency=consistency, workers=workers)
        self._settings = settings
        self._secrets = (settings.key,)
        given = sum(x is not None for x in (settings.key, credential, client))
        if client is None and settings.endpoint is None:
            raise ConfigurationError("the cosmosdb store needs a URL, a connection string, endpoint= or client=")
        if client is not None and any(x is not None for x in (settings.endpoint, settings.key, credential)):
            raise ConfigurationError("pass client= alone (with database/prefix options), or an endpoint and a key")
        if client is None and given != 1:
            raise ConfigurationError("the cosmosdb store needs the account key (key=, ?key= or AccountKey=) or "
                                     "credential= (an Azure TokenCredential), not both")
        self._credential = credential
        self._given_client = client
        self._client: CosmosClient | None = client
        self._shared = False
        self._client_lock = threading.Lock()
        target = "the given CosmosClient" if client is not None else mask_secrets(settings.endpoint, settings.key)
        self._where = f"cosmosdb {target} database {settings.database!r}"
        if settings.index == "flat" or settings.exact:
            self.capabilities = dataclasses.replace(type(self).capabilities, recall_floor=1.0)

    def __repr__(self) -> str:
        s = self._settings
        target = "client=<CosmosClient>" if self._given_client is not None else mask_secrets(s.endpoint, s.key)
        return (f"CosmosDBKnowledgeStore({target}, database={s.database!r}, prefix={s.prefix!r}, "
                f"index={s.index!r}{', exact=True' if s.exact else ''})")

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        with self._client_lock:
            if self._shared:
                _release_shared(self._settings)
            elif self._client is not None and self._given_client is None:
                _close_client(self._client)
            self._client = None

    # -- plumbing -------------------------------------------------------------------------------------

    def _cosmos(self) -> CosmosClient:
        """The client, created on first use (its constructor already talks to the account)."""
        with self._client_lock:
            self._check_open()
            if self._client is None:
                s = self._settings
                if self._credential is None:
                    self._client = _open_shared(s)
                    self._shared = True
                else:
                    self._client = _new_client(s, self._credential)
            return self._client

    def _database(self) -> Any:
        return self._cosmos().get_database_client(self._settings.database)

    def _container_name(self, name: str) -> str:
        return f"{self._settings.prefix}{name}"

    def _container(self, info: CollectionInfo | str) -> Any:
        name = info.name if isinstance(info, CollectionInfo) else info
        return self._database().get_container_client(self._container_name(name))

    def _query(self, info: CollectionInfo, query: Query) -> list[Any]:
        return list(self._container(info).query_items(query=query.text, parameters=query.parameters,
                                                      enable_cross_partition_query=True))

    def _concurrently(self, function: Callable[[_T], _R], items: Sequence[_T]) -> list[_R]:
        """``function`` over ``items``, ``workers`` at a time; every call finishes before the first error
        (by position) is raised."""
        if len(items) <= 1:
            return [function(item) for item in items]
        with ThreadPoolExecutor(max_workers=min(self._settings.workers, len(items)),
                                thread_name_prefix="storebridge-cosmosdb") as pool:
            futures = [pool.submit(function, item) for item in items]
        for future in futures:
            error = future.exception()
            if error is not None:
                raise error
        return [future.result() for future in futures]

    def _translate_error(self, exc: Exception, what: str) -> StorebridgeError:
        text = mask_secrets(exc, *self._secrets)
        where = f"cosmosdb {what} failed on {self._where}"
        if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
            return ConnectionFailedError(f"{where}: cannot reach the account ({text}); check the endpoint, the "
                                         "network and, for an emulator with a self-signed certificate, verify=false")
        if isinstance(exc, cosmos_errors.CosmosHttpResponseError):
            status = exc.status_code
            if status in (401, 403):
                return ConfigurationError(f"{where}: the account refused the request ({status}): {text}; check the "
                                          "account key or the credential's role assignments")
            if status == 404:
                return CollectionNotFoundError(f"{where}: the container or database does not exist (any more): "
                                               f"{text}")
            if status == 409:
                return AlreadyExistsError(f"{where}: {text}")
            if status == 413:
                return ValidationError(f"{where}: a document is too large (Cosmos DB items hold at most 2 MB): "
                                       f"{text}")
            if status == 429:
                return OperationFailedError(f"{where}: throttled (429) after the client's retries; raise the "
                                            f"throughput or write less at once (workers=): {text}")
        return OperationFailedError(f"{where}: {text}")

    # -- collections ----------------------------------------------------------------------------------

    def _engine_describe(self, name: str) -> CollectionInfo | None:
        container = self._container_name(name)
        try:
            properties = self._container(name).read()
        except cosmos_errors.CosmosResourceNotFoundError:
            return None
        return layout.collection_info(name, container, properties)

    def _engine_create(self, info: CollectionInfo) -> None:
        s = self._settings
        if s.index == "flat" and info.dimension > layout.FLAT_MAX_DIMENSIONS:
            raise NotSupportedError(
                f"the flat vector index holds at most {layout.FLAT_MAX_DIMENSIONS} dimensions, not {info.dimension}; "
                "use index=quantizedFlat or index=diskANN")
        database = self._cosmos().create_database_if_not_exists(s.database)
        options: dict[str, Any] = {} if s.throughput is None else {"offer_throughput": s.throughput}
        try:
            database.create_container(
                self._container_name(info.name), partition_key=PartitionKey(path=layout.PARTITION_KEY_PATH),
                indexing_policy=layout.indexing_policy(s.index),
                vector_embedding_policy=layout.vector_embedding_policy(info), **options)
        except cosmos_errors.CosmosResourceExistsError:
            existing = self._engine_describe(info.name)  # made by someone else meanwhile: the same is fine
            if existing is None:
                raise AlreadyExistsError(f"knowledge collection {info.name!r} was being created and dropped "
                                         "concurrently; try again") from None
            reconcile_collection(existing, info, exist_ok=True)
        except cosmos_errors.CosmosHttpResponseError as exc:
            if exc.status_code == 400:
                raise ConfigurationError(
                    f"cosmosdb create collection failed on {self._where}: the account refused the container's "
                    f"vector policy ({mask_secrets(exc, *self._secrets)}); enable 'Vector Search for NoSQL API' "
                    "in the account's Features") from exc
            raise

    def _engine_drop(self, name: str) -> None:
        try:
            self._database().delete_container(self._container_name(name))
        except cosmos_errors.CosmosResourceNotFoundError:
            pass  # dropped by someone else since the template checked: gone either way

    def _engine_names(self) -> list[str]:
        prefix = self._settings.prefix
        try:
            containers = list(self._database().list_containers())
        except cosmos_errors.CosmosResourceNotFoundError:
            return []  # no database yet: no collections
        names = []
        for properties in containers:
            container = str(properties.get("id", ""))
            if not container.startswith(prefix):
                continue
            if "vectorEmbeddingPolicy" not in properties:  # a feed that leaves the policy out: read it
                try:
                    properties = self._database().get_container_client(container).read()
                except cosmos_errors.CosmosResourceNotFoundError:
                    continue  # dropped meanwhile
            if not layout.is_storebridge_container(properties):
                continue
            name = container[len(prefix):]
            try:
                names.append(self._collection_name(name))
            except StorebridgeError:
                continue  # not a name this store could have made
        return names

    # -- writes ---------------------------------------------------------------------------------------

    def _engine_existing(self, info: CollectionInfo, ids: list[str]) -> list[str]:
        found = set(self._query(info, existing_query([layout.item_id(i) for i in ids])))
        return [i for i in ids if i in found]

    def _engine_write(self, info: CollectionInfo, documents: list[KnowledgeDocument], vectors: np.ndarray) -> None:
        items = [layout.to_item(doc, vector) for doc, vector in zip(documents, vectors, strict=True)]
        container = self._container(info)
        self._concurrently(lambda item: container.upsert_item(item), items)

    def _delete_items(self, info: CollectionInfo, item_ids: Sequence[str]) -> int:
        container = self._container(info)

        def delete(item_id: str) -> int:
            try:
                container.delete_item(item_id, partition_key=item_id)
            except cosmos_errors.CosmosResourceNotFoundError:
                return 0  # not there (or deleted concurrently): not counted
            return 1

        return sum(self._concurrently(delete, list(item_ids)))

    def _engine_delete(self, info: CollectionInfo, ids: list[str] | None, where: Filter | None) -> int:
        wanted = None if ids is None else [layout.item_id(i) for i in ids]
        if wanted is not None and where is None:
            return self._delete_items(info, wanted)
        if wanted is not None and not wanted:
            return 0
        return self._delete_items(info, self._query(info, ids_query(where, wanted)))

    # -- reads ----------------------------------------------------------------------------------------

    def _engine_nearest(self, info: CollectionInfo, query: np.ndarray, limit: int,
                        where: Filter | None) -> list[Candidate]:
        cap = _vector_buffer_limit()
        if limit > cap:
            raise NotSupportedError(
                f"the Cosmos DB client returns at most {cap} results of a vector query, and k + 16 = {limit}; ask "
                "for fewer or raise AZURE_COSMOS_MAX_ITEM_BUFFER_VECTOR_SEARCH")
        statement = nearest_query(limit, query.tolist(), where, exact=self._settings.exact)
        try:
            items = self._query(info, statement)
        except cosmos_errors.CosmosHttpResponseError as exc:
            message = str(exc)
            if exc.status_code == 400 and any(word in message for word in ("ORDER BY", "VectorDistance", "ector")):
                raise NotSupportedError(
                    f"cosmosdb search failed on {self._where}: the engine refused the VectorDistance query "
                    f"({mask_secrets(message, *self._secrets)}); vector search needs Azure Cosmos DB for NoSQL with "
                    "vector search enabled (the @vercel/cosmosdb-server emulator has no VectorDistance)") from exc
            raise
        container = self._container_name(info.name)
        return [Candidate(layout.from_item(item, container, False), layout.vector_of(item)) for item in items]

    def _engine_get(self, info: CollectionInfo, ids: list[str], with_vectors: bool) -> list[KnowledgeDocument]:
        item_ids = [layout.item_id(i) for i in ids]
        items = self._container(info).read_items(items=[(i, i) for i in item_ids],
                                                 max_concurrency=self._settings.workers)
        container = self._container_name(info.name)
        return [layout.from_item(item, container, with_vectors) for item in items]

    def _engine_count(self, info: CollectionInfo, where: Filter | None) -> int:
        return sum(int(n) for n in self._query(info, count_query(where)))

    def _engine_page(self, info: CollectionInfo, limit: int, cursor: str | None, where: Filter | None,
                     with_vectors: bool) -> DocumentPage:
        after = None
        if cursor is not None:
            try:
                after = str(uuid.UUID(cursor))
            except ValueError:
                raise ValidationError(
                    f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page") from None
            if after != cursor:
                raise ValidationError(f"invalid scroll cursor {cursor!r}; pass the next_cursor of the previous page")
        items = self._query(info, page_query(limit + 1, after, where, with_vectors))
        container = self._container_name(info.name)
        documents = [layout.from_item(item, container, with_vectors) for item in items[:limit]]
        return DocumentPage(documents, str(items[limit - 1][layout.ID]) if len(items) > limit else None)


__all__ = ["CosmosDBKnowledgeStore", "Settings", "parse_connection_string", "resolve_settings"]
