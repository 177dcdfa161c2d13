"""The Firestore state store: one document per key, with a sync class on ``firestore.Client`` and a
native async class on ``firestore.AsyncClient`` (the sync store's ``as_async()`` is its async twin).

* **Layout and ids**: see ``_layout``. All namespaces share one collection; ``keys()`` and ``clear()``
  query ``ns == namespace``, paginated by document id, which Firestore's automatic single-field
  indexes serve. ``keys(prefix=...)`` (or a glob with a literal start) adds a range on ``k``, which in
  production needs one composite index: ``gcloud firestore indexes composite create
  --collection-group=<collection> --field-config=field-path=ns,order=ascending
  --field-config=field-path=k,order=ascending``. Exempting ``v`` from indexing saves write cost.
* **TTL**: ``expires_at`` is a timestamp field and every read filters on it, so a key past its TTL is
  never returned. In production, a Firestore TTL policy on ``expires_at`` (``gcloud firestore fields
  ttls update expires_at --collection-group=<collection> --enable-ttl``) deletes expired documents
  some time (typically within a day) after they expire; the emulator runs no TTL policies.
* **Atomic read-modify-write** (``increment``, ``expire``, ``delete``/``delete_many``): each runs in a
  Firestore transaction (``@firestore.transactional``), which locks what it read until it commits, so
  it is atomic across processes. Contention aborts a transaction; the client library retries it, and
  past its attempts this store backs off (jittered) and starts over until ``conflict_timeout``.
  Threads or tasks of one process queue on a local lock per document first, so they do not contend
  with one another on the server. (The emulator resolves contended transactions only through its
  "Transaction lock timeout", which makes cross-process contention slow there, not wrong.)
* **Batches**: ``get_many`` is one ``BatchGetDocuments`` call per 500 keys; ``set_many`` is batched
  writes of at most 500; ``delete_many`` one transaction per 500 keys; ``clear`` deletes page by page.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import random
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar

from google.api_core import exceptions as google_exceptions
from google.api_core import retry as retries
from google.auth import exceptions as auth_exceptions
from google.cloud import firestore
from google.cloud.firestore_v1.field_path import FieldPath

from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
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
    check_ttl,
    decode_value,
    encode_value,
    incremented,
    key_matches,
    scan_prefix,
)
from storebridge.urls import StoreURL, mask_secrets, merge_url_option

from ._layout import (
    DEFAULT_COLLECTION,
    FIELD_EXPIRES_AT,
    FIELD_KEY,
    FIELD_NAMESPACE,
    FIELD_VALUE,
    document_fields,
    document_id,
    from_timestamp,
    options_from_url,
    stored_body,
    successor,
    to_timestamp,
    utf8,
    validate_collection,
)

T = TypeVar("T")

#: Firestore's limit on writes in one batch or transaction; reads are chunked the same way.
BATCH_SIZE = 500
#: Firestore accepts requests of up to 10 MiB; a batch of large values is split below that.
MAX_BATCH_BYTES = 9 * 1024 * 1024
PAGE_SIZE = 1000
#: The client library's own retries of an aborted transaction, before this store backs off.
TRANSACTION_ATTEMPTS = 5
_LOCK_STRIPES = 64
#: Threads of one process serialise read-modify-writes of a document here (process-wide, bounded).
_DOCUMENT_LOCKS = tuple(threading.Lock() for _ in range(_LOCK_STRIPES))
_TRANSIENT = retries.if_exception_type(
    google_exceptions.ServiceUnavailable, google_exceptions.InternalServerError, google_exceptions.ResourceExhausted
)


@dataclass(frozen=True)
class _Version:
    """What a state document holds."""

    expires_at: float | None
    body: bytes

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


def _version(snapshot: Any) -> _Version | None:
    if not snapshot.exists:
        return None
    data = snapshot.to_dict() or {}
    return _Version(from_timestamp(data.get(FIELD_EXPIRES_AT), snapshot.id),
                    stored_body(data.get(FIELD_VALUE), snapshot.id))


def _live(version: _Version | None, now: float | None = None) -> bool:
    return version is not None and version.live(time.time() if now is None else now)


def _ttl_left(version: _Version | None) -> float | None:
    now = time.time()
    if version is None or not version.live(now) or version.expires_at is None:
        return None
    return max(0.0, version.expires_at - now)


def _counter(version: _Version | None) -> tuple[Any, float | None]:
    """``(current value, expires_at)`` to increment: a missing or expired key counts as 0, no TTL."""
    if version is None or not version.live(time.time()):
        return 0, None
    return decode_value(version.body), version.expires_at


def _snapshot_expires_at(snapshot: Any) -> float | None:
    return from_timestamp((snapshot.to_dict() or {}).get(FIELD_EXPIRES_AT), snapshot.id)


def _matching_key(snapshot: Any, now: float, pattern: str | None, prefix: str | None) -> str | None:
    """The key of a ``keys()`` result if it is live and matches, else None."""
    data = snapshot.to_dict() or {}
    key, expires_at = data.get(FIELD_KEY), from_timestamp(data.get(FIELD_EXPIRES_AT), snapshot.id)
    live = expires_at is None or expires_at > now
    return key if isinstance(key, str) and live and key_matches(key, pattern, prefix) else None


def _chunks(items: Sequence[T], size: int = BATCH_SIZE) -> Iterator[Sequence[T]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _write_batches(rows: Sequence[tuple[str, dict[str, Any]]]) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """``(document id, fields)`` rows in batches of at most 500 writes and about 9 MiB."""
    batch: list[tuple[str, dict[str, Any]]] = []
    size = 0
    for row in rows:
        row_size = len(row[1][FIELD_VALUE]) + len(row[1][FIELD_KEY].encode("utf-8")) + 256
        if batch and (len(batch) == BATCH_SIZE or size + row_size > MAX_BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(row)
        size += row_size
    if batch:
        yield batch


def _positive(value: Any, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{option} must be a positive number of seconds, got {value!r}")
    return float(value)


def _check_text(text: str | None, what: str) -> None:
    if text is not None:
        if not isinstance(text, str):
            raise ValidationError(f"the {what} must be a string, got {text!r}")
        utf8(text, what)


def _stripe(*parts: str) -> int:
    digest = hashlib.blake2b("\x00".join(parts).encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") % _LOCK_STRIPES


def _underlying_failure(exc: ValueError) -> BaseException | None:
    """The driver error behind a plain ValueError from the transaction machinery (it rolls back on any
    error and, when the transaction never began, that rollback raises ValueError over the real error)."""
    if type(exc) is not ValueError:
        return None
    for inner in (exc.__cause__, exc.__context__):
        if isinstance(inner, (google_exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError)):
            return inner
    return None


def _contended(exc: BaseException) -> bool:
    """An aborted transaction: directly, or as the library's "failed after N attempts" ValueError."""
    return isinstance(exc, google_exceptions.Aborted) or (
        type(exc) is ValueError and isinstance(exc.__cause__, google_exceptions.Aborted)
    )


class _Lifecycle:
    """Open or closed, shared by a sync store and its async twin (closing either closes both)."""

    def __init__(self) -> None:
        self.closed = False


class _Backoff:
    """Jittered exponential delays until a deadline, for starting contended transactions over."""

    def __init__(self, timeout: float) -> None:
        self._deadline = time.monotonic() + timeout
        self._delay = 0.01

    def next_delay(self) -> float | None:
        """Seconds to wait before the next try, or None when time is up."""
        if time.monotonic() > self._deadline:
            return None
        delay, self._delay = random.uniform(0, self._delay), min(self._delay * 2, 1.0)
        return delay


class _FirestoreConfig:
    """What the sync and the async store share: options, names, error mapping, query shapes."""

    backend_name = "firestore"
    #: ``native_ttl`` is False: the store never relies on a TTL policy (the emulator has none; in
    #: production one only reclaims space, hours late). Reads always filter expired documents.
    capabilities = StateCapabilities(persistent=True, native_ttl=False, atomic_increment=True)

    def _configure(self, url: str | StoreURL | None, *, namespace: str, project: str | None,
                   collection: str | None, database: str | None, client: Any, timeout: float,
                   conflict_timeout: float) -> tuple[str | None, str | None]:
        """Validate every option; returns ``(project, database)`` for building a client."""
        from_url = options_from_url(url) if url is not None else {}
        self.namespace = check_namespace(merge_url_option("namespace", namespace or None, from_url.get("namespace")) or "")
        self.collection = validate_collection(
            merge_url_option("collection", collection, from_url.get("collection")) or DEFAULT_COLLECTION
        )
        project = merge_url_option("project", project, from_url.get("project"))
        database = merge_url_option("database", database, from_url.get("database"))
        if client is not None and (project is not None or database is not None):
            raise ConfigurationError("give either client= or project=/database= (the client already has its own)")
        self.timeout = _positive(timeout, "timeout")
        self.conflict_timeout = _positive(conflict_timeout, "conflict_timeout")
        self._lifecycle = _Lifecycle()
        return project, database

    def _adopt_client(self, client: Any) -> None:
        self._client = client
        self.project = str(client.project)
        self.database = str(getattr(client, "_database", None) or "(default)")
        self.host = str(getattr(client, "_emulator_host", None) or "firestore.googleapis.com")
        self._collection = client.collection(self.collection)

    def __repr__(self) -> str:
        closed = ", closed" if self._lifecycle.closed else ""
        return (f"{type(self).__name__}(project={self.project!r}, database={self.database!r}, "
                f"collection={self.collection!r}, namespace={self.namespace!r}, host={mask_secrets(self.host)!r}"
                f"{closed})")

    # -- names and shapes -----------------------------------------------------------------------------

    def _ref(self, key: str) -> Any:
        return self._collection.document(document_id(self.namespace, check_key(key)))

    def _rows(self, items: Mapping[str, Any], ttl: float | None) -> list[tuple[str, dict[str, Any]]]:
        """``(document id, fields)`` for ``set_many``; everything validated and encoded before any write."""
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        ttl = check_ttl(ttl)
        expires_at = None if ttl is None else time.time() + ttl
        return [(document_id(self.namespace, check_key(key)),
                 document_fields(self.namespace, key, encode_value(value), expires_at))
                for key, value in items.items()]

    def _counter_fields(self, key: str, value: float, expires_at: float | None) -> dict[str, Any]:
        return document_fields(self.namespace, key, encode_value(value), expires_at)

    def _page_query(self, narrow: str, fields: list[str]) -> Any:
        """This namespace's documents (those with keys from ``narrow`` on), in a stable paging order."""
        query = self._collection.where(filter=firestore.FieldFilter(FIELD_NAMESPACE, "==", self.namespace))
        if narrow:
            query = query.where(filter=firestore.FieldFilter(FIELD_KEY, ">=", narrow))
            upper = successor(narrow)
            if upper is not None:
                query = query.where(filter=firestore.FieldFilter(FIELD_KEY, "<", upper))
            query = query.order_by(FIELD_KEY)
        else:
            query = query.order_by(FieldPath.document_id())
        return query.select(fields)

    def _keys_query(self, pattern: str | None, prefix: str | None) -> Any:
        _check_text(pattern, "key pattern")
        _check_text(prefix, "key prefix")
        self._check_open()
        return self._page_query(scan_prefix(pattern, prefix), [FIELD_KEY, FIELD_EXPIRES_AT])

    def _lock_stripe(self, ref: Any) -> int:
        return _stripe(self.project, self.database, self.collection, ref.id)

    # -- lifecycle and errors -------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._lifecycle.closed:
            raise StoreClosedError(f"the Firestore state store on {self.project}/{self.collection} is closed; "
                                   "open a new one")

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """Driver errors as storebridge's typed errors (also around awaits), the cause kept."""
        where = f"{self.project}/{self.database}/{self.collection}"
        try:
            yield
        except google_exceptions.RetryError as exc:
            if isinstance(exc.cause, (google_exceptions.ServiceUnavailable, google_exceptions.DeadlineExceeded)):
                raise self._unreachable(exc.cause) from exc
            raise OperationFailedError(f"Firestore {action} on {where} failed after retrying: "
                                       f"{mask_secrets(exc)}") from exc
        except (google_exceptions.ServiceUnavailable, google_exceptions.DeadlineExceeded) as exc:
            raise self._unreachable(exc) from exc
        except google_exceptions.FailedPrecondition as exc:
            hint = ""
            if "index" in str(exc).lower():
                hint = (" (keys() with a prefix needs a composite index on (ns ASC, k ASC) for collection "
                        f"{self.collection!r}; see the storebridge.adapters.firestore docs)")
            raise OperationFailedError(f"Firestore {action} on {where} failed: {mask_secrets(exc)}{hint}") from exc
        except google_exceptions.GoogleAPICallError as exc:
            raise OperationFailedError(f"Firestore {action} on {where} failed: {mask_secrets(exc)}") from exc
        except auth_exceptions.GoogleAuthError as exc:
            raise OperationFailedError(f"Firestore {action} on {where} failed: Google credentials were "
                                       f"refused: {mask_secrets(exc)}") from exc

    def _reraise_typed(self, exc: ValueError, what: str) -> NoReturn:
        """Re-raise a transaction's ValueError as the typed error of the driver failure behind it."""
        underlying = _underlying_failure(exc)
        if underlying is None:
            raise exc
        with self._errors(what):
            raise underlying from None
        raise exc  # unreachable: _errors maps every driver error

    def _unreachable(self, exc: BaseException) -> ConnectionFailedError:
        return ConnectionFailedError(f"cannot reach Firestore at {mask_secrets(self.host)}: {mask_secrets(exc)}")

    def _gave_up(self, what: str, exc: BaseException) -> OperationFailedError:
        error = OperationFailedError(
            f"Firestore {what} in {self.collection!r} kept conflicting with other writers for "
            f"{self.conflict_timeout:g}s; try again later"
        )
        error.__cause__ = exc
        return error


def _client_error(exc: Exception) -> ConfigurationError:
    return ConfigurationError(
        "no Google credentials or project found for the Firestore state store: run `gcloud auth "
        "application-default login`, set GOOGLE_APPLICATION_CREDENTIALS and project=, pass client=, or use the "
        f"emulator (FIRESTORE_EMULATOR_HOST): {mask_secrets(exc)}"
    )


def _owned_api(client: Any) -> Any:
    """The client's GAPIC layer if it ever made one (so closing never opens a channel)."""
    return getattr(client, "_firestore_api_internal", None)


class FirestoreStateStore(_FirestoreConfig, StateStore):
    """Key-value state with TTL in Firestore, one document per key, one namespace per store object.

    ``FirestoreStateStore("firestore://my-project/app_state?namespace=prod")``, or keyword options.
    Credentials come from Application Default Credentials, or pass a ready ``client=``
    (``firestore.Client``; never closed by the store). The emulator is used through
    ``FIRESTORE_EMULATOR_HOST``. ``timeout`` bounds each read, query and batched write, retries of
    transient errors included; beginning and committing a transaction keep the client library's own
    deadlines. ``conflict_timeout`` bounds how long a contended transaction is started over.
    """

    def __init__(self, url: str | StoreURL | None = None, *, namespace: str = "", project: str | None = None,
                 collection: str | None = None, database: str | None = None, client: firestore.Client | None = None,
                 timeout: float = 60.0, conflict_timeout: float = 60.0) -> None:
        project, database = self._configure(url, namespace=namespace, project=project, collection=collection,
                                            database=database, client=client, timeout=timeout,
                                            conflict_timeout=conflict_timeout)
        self._owns_client = client is None
        if client is None:
            try:
                client = firestore.Client(project=project, database=database)
            except (auth_exceptions.DefaultCredentialsError, OSError, ValueError) as exc:
                raise _client_error(exc) from exc
        self._adopt_client(client)
        self._retry = retries.Retry(predicate=_TRANSIENT, initial=0.1, maximum=2.0, timeout=self.timeout)
        self._async_twin: AsyncFirestoreStateStore | None = None

    def as_async(self) -> Any:
        """The native async twin on ``firestore.AsyncClient`` over the same project and collection;
        closing either closes both. With a client passed in, the thread-pool face instead (the store
        cannot build an async client with that client's credentials)."""
        if not self._owns_client:
            return super().as_async()
        if self._async_twin is None:
            self._async_twin = AsyncFirestoreStateStore._twin_of(self)
        return self._async_twin

    # -- the interface --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        found = self.get_many([key])
        return found[key] if found else default

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        refs = {key: self._ref(key) for key in check_keys(keys)}
        self._check_open()
        versions: dict[str, _Version | None] = {}
        for chunk in _chunks(list(refs.values())):
            with self._errors("read"):
                for snapshot in self._client.get_all(chunk, retry=self._retry, timeout=self.timeout):
                    versions[snapshot.id] = _version(snapshot)
        now = time.time()
        return {key: decode_value(version.body) for key, ref in refs.items()
                if (version := versions.get(ref.id)) is not None and version.live(now)}

    def exists(self, key: str) -> bool:
        return _live(self._read(self._ref(key)))

    def ttl(self, key: str) -> float | None:
        return _ttl_left(self._read(self._ref(key)))

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self.set_many({check_key(key): value}, ttl=ttl)

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        rows = self._rows(items, ttl)
        self._check_open()
        for batch_rows in _write_batches(rows):
            batch = self._client.batch()
            for doc_id, fields in batch_rows:
                batch.set(self._collection.document(doc_id), fields)
            with self._errors("write"):
                batch.commit(retry=self._retry, timeout=self.timeout)

    def delete(self, key: str) -> bool:
        return self.delete_many([key]) == 1

    def delete_many(self, keys: Iterable[str]) -> int:
        refs = [self._ref(key) for key in check_keys(keys)]
        self._check_open()

        @firestore.transactional
        def delete_live(transaction: Any, chunk: Sequence[Any]) -> int:
            """Delete the chunk's documents (expired ones too, as garbage); count the live ones."""
            snapshots = list(self._client.get_all(chunk, transaction=transaction, retry=self._retry,
                                                  timeout=self.timeout))
            now = time.time()
            for snapshot in snapshots:
                if snapshot.exists:
                    transaction.delete(snapshot.reference)
            return sum(_live(_version(snapshot), now) for snapshot in snapshots)

        return sum(self._transact(functools.partial(delete_live, chunk=chunk), "delete") for chunk in _chunks(refs))

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        query = self._keys_query(pattern, prefix)
        now = time.time()
        return sorted(key for snapshot in self._pages(query)
                      if (key := _matching_key(snapshot, now, pattern, prefix)) is not None)

    def expire(self, key: str, ttl: float | None) -> bool:
        ttl = check_ttl(ttl)
        ref = self._ref(key)
        self._check_open()

        @firestore.transactional
        def set_expiry(transaction: Any) -> bool:
            if not _live(self._read(ref, transaction)):
                return False
            transaction.update(ref, {FIELD_EXPIRES_AT: to_timestamp(None if ttl is None else time.time() + ttl)})
            return True

        with _DOCUMENT_LOCKS[self._lock_stripe(ref)]:
            return self._transact(set_expiry, f"expire({key!r})")

    def increment(self, key: str, amount: float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        ref = self._ref(key)
        self._check_open()

        @firestore.transactional
        def add(transaction: Any) -> int | float:
            current, expires_at = _counter(self._read(ref, transaction))
            result = incremented(key, current, amount)
            transaction.set(ref, self._counter_fields(key, result, expires_at))
            return result

        with _DOCUMENT_LOCKS[self._lock_stripe(ref)]:
            return self._transact(add, f"increment({key!r})")

    def clear(self) -> int:
        self._check_open()
        removed = 0
        page: list[Any] = []
        for snapshot in self._pages(self._page_query("", [FIELD_EXPIRES_AT]), page_size=BATCH_SIZE):
            page.append(snapshot)
            if len(page) == BATCH_SIZE:
                removed += self._delete_page(page)
                page = []
        return removed + self._delete_page(page)

    def close(self) -> None:
        """Release the client this store created (never a client passed in); its async twin is closed
        too (its channel, bound to an event loop, is released when the twin is garbage-collected)."""
        if self._lifecycle.closed:
            return
        self._lifecycle.closed = True
        if self._owns_client and (api := _owned_api(self._client)) is not None:
            api.transport.close()

    # -- plumbing -------------------------------------------------------------------------------------

    def _read(self, ref: Any, transaction: Any = None) -> _Version | None:
        self._check_open()
        with self._errors("read"):
            return _version(ref.get(transaction=transaction, retry=self._retry, timeout=self.timeout))

    def _transact(self, fn: Callable[[Any], T], what: str) -> T:
        """Run ``fn(transaction)`` as a transaction, starting over with backoff while it is contended."""
        backoff = _Backoff(self.conflict_timeout)
        while True:
            try:
                with self._errors(what):
                    return fn(self._client.transaction(max_attempts=TRANSACTION_ATTEMPTS))
            except OperationFailedError as exc:
                if not _contended(exc.__cause__):
                    raise
                contention: BaseException = exc.__cause__
            except ValueError as exc:
                if not _contended(exc):
                    self._reraise_typed(exc, what)
                contention = exc
            delay = backoff.next_delay()
            if delay is None:
                raise self._gave_up(what, contention)
            time.sleep(delay)

    def _delete_page(self, snapshots: list[Any]) -> int:
        """Delete one page of ``clear()`` in a batch; returns how many of its documents were live."""
        if not snapshots:
            return 0
        batch = self._client.batch()
        now = time.time()
        live = 0
        for snapshot in snapshots:
            batch.delete(snapshot.reference)
            expires_at = _snapshot_expires_at(snapshot)
            live += expires_at is None or expires_at > now
        with self._errors("delete"):
            batch.commit(retry=self._retry, timeout=self.timeout)
        return live

    def _pages(self, query: Any, page_size: int = PAGE_SIZE) -> Iterator[Any]:
        """Every document of ``query``, fetched ``page_size`` at a time."""
        cursor = None
        while True:
            page_query = query.limit(page_size) if cursor is None else query.start_after(cursor).limit(page_size)
            with self._errors("query"):
                page = list(page_query.stream(retry=self._retry, timeout=self.timeout))
            yield from page
            if len(page) < page_size:
                return
            cursor = page[-1]


class AsyncFirestoreStateStore(_FirestoreConfig, AsyncStateStore):
    """The same store on ``firestore.AsyncClient``: every call awaits gRPC directly, no threads.

    Built directly, or as ``FirestoreStateStore(...).as_async()`` (then ``as_sync()`` gives the sync
    store back and closing either closes both). Its sync face runs it on storebridge's event loop.
    """

    def __init__(self, url: str | StoreURL | None = None, *, namespace: str = "", project: str | None = None,
                 collection: str | None = None, database: str | None = None,
                 client: firestore.AsyncClient | None = None, timeout: float = 60.0,
                 conflict_timeout: float = 60.0) -> None:
        project, database = self._configure(url, namespace=namespace, project=project, collection=collection,
                                            database=database, client=client, timeout=timeout,
                                            conflict_timeout=conflict_timeout)
        self._owns_client = client is None
        if client is None:
            try:
                client = firestore.AsyncClient(project=project, database=database)
            except (auth_exceptions.DefaultCredentialsError, OSError, ValueError) as exc:
                raise _client_error(exc) from exc
        self._adopt_client(client)
        self._retry = retries.AsyncRetry(predicate=_TRANSIENT, initial=0.1, maximum=2.0, timeout=self.timeout)
        # Tasks of this store serialise read-modify-writes of a document here (bound to its event loop).
        self._locks = tuple(asyncio.Lock() for _ in range(_LOCK_STRIPES))
        self._sync_parent: FirestoreStateStore | None = None
        self._client_released = False

    @classmethod
    def _twin_of(cls, parent: FirestoreStateStore) -> AsyncFirestoreStateStore:
        twin = cls(namespace=parent.namespace, project=parent.project, collection=parent.collection,
                   database=parent.database, timeout=parent.timeout, conflict_timeout=parent.conflict_timeout)
        twin._lifecycle = parent._lifecycle
        twin._sync_parent = parent
        return twin

    def as_sync(self) -> Any:
        return self._sync_parent if self._sync_parent is not None else super().as_sync()

    # -- the interface --------------------------------------------------------------------------------

    async def get(self, key: str, default: Any = None) -> Any:
        found = await self.get_many([key])
        return found[key] if found else default

    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        refs = {key: self._ref(key) for key in check_keys(keys)}
        self._check_open()
        versions: dict[str, _Version | None] = {}
        for chunk in _chunks(list(refs.values())):
            with self._errors("read"):
                async for snapshot in self._client.get_all(chunk, retry=self._retry, timeout=self.timeout):
                    versions[snapshot.id] = _version(snapshot)
        now = time.time()
        return {key: decode_value(version.body) for key, ref in refs.items()
                if (version := versions.get(ref.id)) is not None and version.live(now)}

    async def exists(self, key: str) -> bool:
        return _live(await self._read(self._ref(key)))

    async def ttl(self, key: str) -> float | None:
        return _ttl_left(await self._read(self._ref(key)))

    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        await self.set_many({check_key(key): value}, ttl=ttl)

    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        rows = self._rows(items, ttl)
        self._check_open()
        for batch_rows in _write_batches(rows):
            batch = self._client.batch()
            for doc_id, fields in batch_rows:
                batch.set(self._collection.document(doc_id), fields)
            with self._errors("write"):
                await batch.commit(retry=self._retry, timeout=self.timeout)

    async def delete(self, key: str) -> bool:
        return await self.delete_many([key]) == 1

    async def delete_many(self, keys: Iterable[str]) -> int:
        refs = [self._ref(key) for key in check_keys(keys)]
        self._check_open()

        @firestore.async_transactional
        async def delete_live(transaction: Any, chunk: Sequence[Any]) -> int:
            snapshots = [snapshot async for snapshot in self._client.get_all(
                chunk, transaction=transaction, retry=self._retry, timeout=self.timeout)]
            now = time.time()
            for snapshot in snapshots:
                if snapshot.exists:
                    transaction.delete(snapshot.reference)
            return sum(_live(_version(snapshot), now) for snapshot in snapshots)

        removed = 0
        for chunk in _chunks(refs):
            removed += await self._transact(functools.partial(delete_live, chunk=chunk), "delete")
        return removed

    async def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        query = self._keys_query(pattern, prefix)
        now = time.time()
        return sorted([key async for snapshot in self._pages(query)
                       if (key := _matching_key(snapshot, now, pattern, prefix)) is not None])

    async def expire(self, key: str, ttl: float | None) -> bool:
        ttl = check_ttl(ttl)
        ref = self._ref(key)
        self._check_open()

        @firestore.async_transactional
        async def set_expiry(transaction: Any) -> bool:
            if not _live(await self._read(ref, transaction)):
                return False
            transaction.update(ref, {FIELD_EXPIRES_AT: to_timestamp(None if ttl is None else time.time() + ttl)})
            return True

        async with self._locks[self._lock_stripe(ref)]:
            return await self._transact(set_expiry, f"expire({key!r})")

    async def increment(self, key: str, amount: float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        ref = self._ref(key)
        self._check_open()

        @firestore.async_transactional
        async def add(transaction: Any) -> int | float:
            current, expires_at = _counter(await self._read(ref, transaction))
            result = incremented(key, current, amount)
            transaction.set(ref, self._counter_fields(key, result, expires_at))
            return result

        async with self._locks[self._lock_stripe(ref)]:
            return await self._transact(add, f"increment({key!r})")

    async def clear(self) -> int:
        self._check_open()
        removed = 0
        page: list[Any] = []
        async for snapshot in self._pages(self._page_query("", [FIELD_EXPIRES_AT]), page_size=BATCH_SIZE):
            page.append(snapshot)
            if len(page) == BATCH_SIZE:
                removed += await self._delete_page(page)
                page = []
        return removed + await self._delete_page(page)

    async def close(self) -> None:
        """Close this store, its sync twin if it has one, and the async client it created."""
        self._lifecycle.closed = True
        if self._sync_parent is not None:
            self._sync_parent.close()
        if self._owns_client and not self._client_released:
            self._client_released = True
            if (api := _owned_api(self._client)) is not None:
                await api.transport.close()

    # -- plumbing -------------------------------------------------------------------------------------

    async def _read(self, ref: Any, transaction: Any = None) -> _Version | None:
        self._check_open()
        with self._errors("read"):
            return _version(await ref.get(transaction=transaction, retry=self._retry, timeout=self.timeout))

    async def _transact(self, fn: Callable[[Any], Awaitable[T]], what: str) -> T:
        backoff = _Backoff(self.conflict_timeout)
        while True:
            try:
                with self._errors(what):
                    return await fn(self._client.transaction(max_attempts=TRANSACTION_ATTEMPTS))
            except OperationFailedError as exc:
                if not _contended(exc.__cause__):
                    raise
                contention: BaseException = exc.__cause__
            except ValueError as exc:
                if not _contended(exc):
                    self._reraise_typed(exc, what)
                contention = exc
            delay = backoff.next_delay()
            if delay is None:
                raise self._gave_up(what, contention)
            await asyncio.sleep(delay)

    async def _delete_page(self, snapshots: list[Any]) -> int:
        if not snapshots:
            return 0
        batch = self._client.batch()
        now = time.time()
        live = 0
        for snapshot in snapshots:
            batch.delete(snapshot.reference)
            expires_at = _snapshot_expires_at(snapshot)
            live += expires_at is None or expires_at > now
        with self._errors("delete"):
            await batch.commit(retry=self._retry, timeout=self.timeout)
        return live

    async def _pages(self, query: Any, page_size: int = PAGE_SIZE) -> AsyncIterator[Any]:
        cursor = None
        while True:
            page_query = query.limit(page_size) if cursor is None else query.start_after(cursor).limit(page_size)
            with self._errors("query"):
                page = [snapshot async for snapshot in page_query.stream(retry=self._retry, timeout=self.timeout)]
            for snapshot in page:
                yield snapshot
            if len(page) < page_size:
                return
            cursor = page[-1]


__all__ = ["AsyncFirestoreStateStore", "FirestoreStateStore"]
