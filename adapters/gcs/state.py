"""The Google Cloud Storage state store: one object per key, for state that must outlive any server.

GCS is not a key-value database; it suits modest traffic on many keys (sessions, checkpoints, flags),
not hot counters: Google documents a limit of about one write per second to the same object name.

* **Values**: the object body is ``encode_value`` bytes. Layout and key escaping: see ``_layout``.
* **TTL**: GCS has no per-object expiry and a bucket lifecycle rule cannot do a per-key TTL (rules run
  about once a day, at day granularity), so the deadline is stored as the custom metadata field
  ``expires_at`` (epoch seconds) and every read filters on it. Expired objects are garbage until
  overwritten, deleted or cleared. The deadline is also written as the object's ``customTime``, so a
  lifecycle rule ``{"action": {"type": "Delete"}, "condition": {"daysSinceCustomTime": 0,
  "matchesPrefix": ["<prefix>/"]}}`` can reclaim that garbage within about a day.
* **Atomic read-modify-write** (``increment``, ``expire``, ``delete``): read the object's generation,
  then write (or delete) with ``if_generation_match`` (0: "must not exist"; uploads also check the
  metageneration, so a metadata edit in between counts too); a 412 means another writer got there
  first, so read again and retry, with jittered backoff. That is atomic across processes and
  machines. Threads of one process queue on a local lock per object first, so they do not burn
  requests (and GCS's per-object write budget) conflicting with one another, and an increment first
  tries the version this process wrote last (one request instead of three; a 412 falls back to
  reading). Every conditional write carries a random ``write_id`` in its metadata: if the client
  library retried a write that had in fact succeeded, the retry's 412 is recognised as our own
  write, not applied twice.
* **Batches**: GCS has no multi-object read or write, so ``get_many``/``set_many``/``delete_many`` run
  their per-key requests concurrently on a small thread pool; ``clear`` lists the namespace (paginated)
  and deletes through GCS batch requests of 100.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import hashlib
import math
import random
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as auth_exceptions
from google.cloud import storage  # type: ignore[attr-defined]
from google.cloud.storage.retry import DEFAULT_RETRY, ConditionalRetryPolicy, is_generation_specified

from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    OperationFailedError,
    StoreClosedError,
    ValidationError,
)
from storebridge.state import (
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
    META_EXPIRES_AT,
    META_KEY,
    META_WRITE_ID,
    ObjectLayout,
    normalise_prefix,
    options_from_url,
    utf8,
    validate_bucket,
)

T = TypeVar("T")
R = TypeVar("R")

#: GCS accepts at most 100 calls in one batch request.
BATCH_SIZE = 100
#: Threads of one process serialise read-modify-writes of an object here (process-wide, bounded).
_OBJECT_LOCKS = tuple(threading.Lock() for _ in range(64))
_MISSING = object()


class _Conflict(Exception):
    """The object changed between our read and our conditional request: read again and retry."""


@dataclass(frozen=True)
class _Stat:
    """One version of an object, as a metadata read (or our own last write of it) describes it."""

    generation: int
    metageneration: int
    expires_at: float | None
    write_id: str | None = None
    #: The body, when known without downloading it (our own last write).
    body: bytes | None = None

    def live(self, now: float) -> bool:
        return self.expires_at is None or self.expires_at > now


class _KnownVersions:
    """Process-wide: the version of an object this process last wrote by ``increment``, so the next
    increment can try one conditional upload instead of metadata read + download + upload. Only a hint:
    the generation precondition decides, and a 412 sends the increment back to the full read. Every
    other write drops the entry first, so this process never builds on a version it replaced."""

    def __init__(self, capacity: int = 4096) -> None:
        self._lock = threading.Lock()
        self._versions: OrderedDict[tuple[str, str, str], _Stat] = OrderedDict()
        self._capacity = capacity

    def get(self, ident: tuple[str, str, str]) -> _Stat | None:
        with self._lock:
            return self._versions.get(ident)

    def put(self, ident: tuple[str, str, str], version: _Stat) -> None:
        with self._lock:
            self._versions[ident] = version
            self._versions.move_to_end(ident)
            while len(self._versions) > self._capacity:
                self._versions.popitem(last=False)

    def drop(self, ident: tuple[str, str, str]) -> None:
        with self._lock:
            self._versions.pop(ident, None)

    def drop_under(self, endpoint: str, bucket: str, name_prefix: str) -> None:
        with self._lock:
            for ident in [i for i in self._versions if i[:2] == (endpoint, bucket) and i[2].startswith(name_prefix)]:
                del self._versions[ident]


_KNOWN_VERSIONS = _KnownVersions()


def expires_at_from(metadata: Mapping[str, Any] | None, name: str) -> float | None:
    """The ``expires_at`` metadata as epoch seconds; a value this store cannot read is an error, not
    "no TTL" (that would revive keys)."""
    raw = (metadata or {}).get(META_EXPIRES_AT)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise OperationFailedError(f"GCS object {name!r} has an unreadable {META_EXPIRES_AT} metadata value {raw!r}")
    return value


def _positive(value: Any, option: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ConfigurationError(f"{option} must be a positive number of seconds, got {value!r}")
    return float(value)


class GCSStateStore(StateStore):
    """Key-value state with TTL in a GCS bucket, one object per key, one namespace per store object.

    ``GCSStateStore("gs://my-bucket/app-state?namespace=prod")``, or ``bucket=``/``prefix=``/``project=``.
    Credentials come from Application Default Credentials, or pass a ready ``client=``
    (a ``google.cloud.storage.Client``; the store never closes a client it did not create). An emulator
    is used through ``STORAGE_EMULATOR_HOST`` or ``endpoint="http://127.0.0.1:9023"`` (anonymous).
    """

    backend_name = "gcs"
    capabilities = StateCapabilities(persistent=True, native_ttl=False, atomic_increment=True)

    def __init__(self, url: str | StoreURL | None = None, *, namespace: str = "", bucket: str | None = None,
                 prefix: str | None = None, project: str | None = None, endpoint: str | None = None,
                 client: storage.Client | None = None, timeout: float = 60.0, conflict_timeout: float = 60.0,
                 max_workers: int = 16) -> None:
        from_url = options_from_url(url) if url is not None else {}
        self.namespace = check_namespace(merge_url_option("namespace", namespace or None, from_url.get("namespace")) or "")
        bucket_name = merge_url_option("bucket", bucket, from_url.get("bucket"))
        if bucket_name is None:
            raise ConfigurationError("the GCS state store needs a bucket: gs://<bucket>/<prefix> or bucket=")
        self.bucket_name = validate_bucket(bucket_name)
        self.prefix = merge_url_option("prefix", normalise_prefix(prefix) or None,
                              normalise_prefix(from_url.get("prefix")) or None) or ""
        project = merge_url_option("project", project, from_url.get("project"))
        endpoint = merge_url_option("endpoint", endpoint, from_url.get("endpoint"))
        if client is not None and (project is not None or endpoint is not None):
            raise ConfigurationError("give either client= or project=/endpoint= (the client already has its own)")
        self.timeout = _positive(timeout, "timeout")
        self.conflict_timeout = _positive(conflict_timeout, "conflict_timeout")
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ConfigurationError(f"max_workers must be a positive integer, got {max_workers!r}")
        self._layout = ObjectLayout(self.prefix, self.namespace)
        self._layout.check_fits()

        self._owns_client = client is None
        self._client = client if client is not None else _make_client(project, endpoint)
        self.endpoint = str(getattr(self._client, "api_endpoint", None) or endpoint or "https://storage.googleapis.com")
        self._bucket = self._client.bucket(self.bucket_name)
        # Reads and conditional writes retry transient errors up to ``timeout``; an unconditional upload
        # is retried only if it carries a precondition, as the client library does by default.
        self._retry = DEFAULT_RETRY.with_timeout(self.timeout)
        self._conditional_retry = ConditionalRetryPolicy(self._retry, is_generation_specified, ["query_params"])
        self._max_workers = max_workers
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return (f"GCSStateStore(bucket={self.bucket_name!r}, prefix={self.prefix!r}, namespace={self.namespace!r}, "
                f"endpoint={mask_secrets(self.endpoint)!r}{closed})")

    # -- the interface --------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        key = check_key(key)
        self._check_open()
        value = self._get_one(key)
        return default if value is _MISSING else value

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = check_keys(keys)
        self._check_open()
        values = self._map(self._get_one, wanted)
        return {key: value for key, value in zip(wanted, values) if value is not _MISSING}

    def exists(self, key: str) -> bool:
        name = self._name(key)
        self._check_open()
        stat = self._stat(name)
        return stat is not None and stat.live(time.time())

    def ttl(self, key: str) -> float | None:
        name = self._name(key)
        self._check_open()
        stat = self._stat(name)
        now = time.time()
        if stat is None or not stat.live(now) or stat.expires_at is None:
            return None
        return max(0.0, stat.expires_at - now)

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self.set_many({check_key(key): value}, ttl=ttl)

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        ttl = check_ttl(ttl)
        # Validate and encode everything first, so a bad item means nothing was written.
        rows = [(check_key(key), self._name(key), encode_value(value)) for key, value in items.items()]
        self._check_open()
        expires_at = None if ttl is None else time.time() + ttl
        self._map(lambda row: self._put(row[1], row[2], key=row[0], expires_at=expires_at), rows)

    def delete(self, key: str) -> bool:
        return self.delete_many([key]) == 1

    def delete_many(self, keys: Iterable[str]) -> int:
        doomed = check_keys(keys)
        names = [self._name(key) for key in doomed]
        self._check_open()
        return sum(self._map(self._delete_one, names))

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        for text, what in ((pattern, "key pattern"), (prefix, "key prefix")):
            if text is not None:
                if not isinstance(text, str):
                    raise ValidationError(f"the {what} must be a string, got {text!r}")
                utf8(text, what)
        self._check_open()
        now = time.time()
        found: set[str] = set()
        for listing_prefix in self._layout.listing_prefixes(scan_prefix(pattern, prefix)):
            for name, metadata in self._list(listing_prefix):
                key = self._layout.key_from(name, metadata)
                expires_at = expires_at_from(metadata, name)
                if key is not None and (expires_at is None or expires_at > now) and key_matches(key, pattern, prefix):
                    found.add(key)
        return sorted(found)

    def expire(self, key: str, ttl: float | None) -> bool:
        key = check_key(key)
        ttl = check_ttl(ttl)
        name = self._name(key)
        self._check_open()

        def attempt() -> bool:
            stat = self._stat(name)
            if stat is None or not stat.live(time.time()):
                return False
            body = self._read(name, stat)
            expires_at = None if ttl is None else time.time() + ttl
            self._put_conditionally(name, body, key=key, expires_at=expires_at, expected=stat)
            return True

        with self._object_lock(name):
            return self._until_settled(attempt, f"expire({key!r})")

    def increment(self, key: str, amount: float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        name = self._name(key)
        self._check_open()
        ident = self._ident(name)

        def attempt() -> int | float:
            stat = _KNOWN_VERSIONS.get(ident) or self._stat(name)
            if stat is None or not stat.live(time.time()):
                current: Any = 0  # missing or expired: counts as 0 and drops the old TTL
                expires_at = None
            else:
                current = decode_value(self._read(name, stat))
                expires_at = stat.expires_at
            result = incremented(key, current, amount)
            # encode_value also refuses what JSON cannot hold, before anything is written.
            body = encode_value(result)
            written = self._put_conditionally(name, body, key=key, expires_at=expires_at, expected=stat)
            _KNOWN_VERSIONS.put(ident, written)  # (every write dropped the old entry first, refused ones too)
            return result

        with self._object_lock(name):
            return self._until_settled(attempt, f"increment({key!r})")

    def clear(self) -> int:
        self._check_open()
        now = time.time()
        doomed: list[tuple[str, bool]] = []
        for name, metadata in self._list(self._layout.namespace_prefix):
            expires_at = expires_at_from(metadata, name)
            ours = self._layout.key_from(name, metadata) is not None
            doomed.append((name, ours and (expires_at is None or expires_at > now)))
        _KNOWN_VERSIONS.drop_under(self.endpoint, self.bucket_name, self._layout.namespace_prefix)
        removed = 0
        for start in range(0, len(doomed), BATCH_SIZE):
            chunk = doomed[start:start + BATCH_SIZE]
            statuses = self._delete_batch([name for name, _ in chunk])
            removed += sum(1 for (_, live), deleted in zip(chunk, statuses) if live and deleted)
        _KNOWN_VERSIONS.drop_under(self.endpoint, self.bucket_name, self._layout.namespace_prefix)
        return removed

    def close(self) -> None:
        """Release the thread pool and the client this store created (never a client passed in)."""
        if self._closed:
            return
        self._closed = True
        with self._pool_lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        if self._owns_client:
            self._client.close()

    # -- per-key operations ---------------------------------------------------------------------------

    def _get_one(self, key: str) -> Any:
        name = self._name(key)

        def attempt() -> Any:
            stat = self._stat(name)
            if stat is None or not stat.live(time.time()):
                return _MISSING
            return decode_value(self._read(name, stat))

        return self._until_settled(attempt, f"get({key!r})")

    def _delete_one(self, name: str) -> int:
        """1 if a live object was deleted, else 0 (an expired one is deleted too, as garbage)."""

        def attempt() -> int:
            stat = self._stat(name)
            if stat is None:
                return 0
            live = stat.live(time.time())
            try:
                deleted = self._delete(name, stat.generation)
            except _Conflict:
                if not live:
                    return 0  # an expired object was replaced meanwhile: it was missing when we looked
                raise
            return int(live and deleted)

        return self._until_settled(attempt, "delete")

    def _put_conditionally(self, name: str, body: bytes, *, key: str, expires_at: float | None,
                           expected: _Stat | None) -> _Stat:
        """Replace exactly the version ``expected`` (None: the object must not exist); returns the new one."""
        write_id = uuid.uuid4().hex
        try:
            return self._put(name, body, key=key, expires_at=expires_at, expected=expected, write_id=write_id)
        except _Conflict:
            # A transport-level retry of a write that had succeeded is refused with 412: it is ours.
            latest = self._stat(name)
            if latest is not None and latest.write_id == write_id:
                return dataclasses.replace(latest, body=body)
            raise

    def _stat(self, name: str) -> _Stat | None:
        with self._errors("read", name):
            blob = self._bucket.get_blob(name, timeout=self.timeout, retry=self._retry)
        if blob is None:
            return None
        metadata = blob.metadata or {}
        return _Stat(int(blob.generation), int(blob.metageneration), expires_at_from(metadata, name),
                     metadata.get(META_WRITE_ID))

    def _read(self, name: str, stat: _Stat) -> bytes:
        """The body of exactly the generation ``stat`` describes (412 or 404: it changed, retry)."""
        if stat.body is not None:
            return stat.body
        with self._errors("download", name):
            try:
                return self._bucket.blob(name).download_as_bytes(
                    if_generation_match=stat.generation, timeout=self.timeout, retry=self._retry
                )
            except (google_exceptions.PreconditionFailed, google_exceptions.NotFound) as exc:
                raise _Conflict from exc

    def _put(self, name: str, body: bytes, *, key: str, expires_at: float | None, expected: _Stat | None = None,
             write_id: str | None = None) -> _Stat:
        """Upload a whole object. Conditional (``write_id`` given): only over the version ``expected``,
        or, with ``expected=None``, only if there is no object (``if_generation_match=0``)."""
        _KNOWN_VERSIONS.drop(self._ident(name))
        blob = self._bucket.blob(name)
        metadata: dict[str, str] = {}
        if expires_at is not None:
            metadata[META_EXPIRES_AT] = repr(expires_at)
            blob.custom_time = datetime.datetime.fromtimestamp(expires_at, tz=datetime.timezone.utc)
        if self._layout.is_hashed(name):
            metadata[META_KEY] = key
        if write_id is not None:
            metadata[META_WRITE_ID] = write_id
        blob.metadata = metadata or None
        preconditions: dict[str, int | None] = {}
        if write_id is not None:
            preconditions = {"if_generation_match": 0} if expected is None else {
                "if_generation_match": expected.generation, "if_metageneration_match": expected.metageneration}
        with self._errors("write", name):
            try:
                blob.upload_from_string(body, content_type="application/octet-stream", timeout=self.timeout,
                                        retry=self._conditional_retry, **preconditions)
            except google_exceptions.PreconditionFailed as exc:
                raise _Conflict from exc
        return _Stat(int(blob.generation), int(blob.metageneration), expires_at, write_id, body)

    def _delete(self, name: str, generation: int) -> bool:
        """Delete exactly that generation; False if the object is already gone."""
        _KNOWN_VERSIONS.drop(self._ident(name))
        with self._errors("delete", name):
            try:
                self._bucket.blob(name).delete(if_generation_match=generation, timeout=self.timeout, retry=self._retry)
            except google_exceptions.NotFound:
                return False
            except google_exceptions.PreconditionFailed as exc:
                raise _Conflict from exc
        return True

    def _list(self, name_prefix: str) -> Iterator[tuple[str, dict[str, Any] | None]]:
        """``(name, metadata)`` of every object under ``name_prefix``, page by page."""
        with self._errors("list", name_prefix):
            pages = self._client.list_blobs(
                self._bucket, prefix=name_prefix, fields="items(name,metadata),nextPageToken", page_size=1000,
                timeout=self.timeout, retry=self._retry,
            )
            for blob in pages:
                yield blob.name, blob.metadata

    def _delete_batch(self, names: Sequence[str]) -> list[bool]:
        """Delete objects in one batch request; per object, True if deleted, False if already gone."""
        batch = self._client.batch(raise_exception=False)
        with self._errors("batch delete", names[0]), batch:
            for name in names:
                self._bucket.blob(name).delete(timeout=self.timeout)
        deleted = []
        for name, response in zip(names, batch._responses):  # what finish() returned, kept by the batch
            if 200 <= response.status_code < 300:
                deleted.append(True)
            elif response.status_code == 404:
                deleted.append(False)
            else:
                raise OperationFailedError(
                    f"GCS refused to delete gs://{self.bucket_name}/{name}: HTTP {response.status_code} "
                    f"{response.text[:300]}"
                )
        return deleted

    # -- plumbing -------------------------------------------------------------------------------------

    def _name(self, key: str) -> str:
        return self._layout.name_for(check_key(key))

    def _ident(self, name: str) -> tuple[str, str, str]:
        """An object's identity across store objects of this process."""
        return self.endpoint, self.bucket_name, name

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"the GCS state store on gs://{self.bucket_name}/{self.prefix} is closed; "
                                   "open a new one")

    @contextmanager
    def _errors(self, action: str, name: str) -> Iterator[None]:
        """Driver errors as storebridge's typed errors, the driver's exception kept as ``__cause__``."""
        where = f"gs://{self.bucket_name}/{name}"
        try:
            yield
        except google_exceptions.RetryError as exc:
            cause = exc.cause if exc.cause is not None else exc
            if _is_connection_error(cause):
                raise self._unreachable(cause) from exc
            raise OperationFailedError(f"GCS {action} of {where} failed after retrying: {mask_secrets(exc)}") from exc
        except google_exceptions.GoogleAPICallError as exc:
            hint = ""
            if isinstance(exc, google_exceptions.NotFound) and action in ("write", "list", "batch delete"):
                hint = f" (does bucket {self.bucket_name!r} exist?)"
            raise OperationFailedError(f"GCS {action} of {where} failed: {mask_secrets(exc)}{hint}") from exc
        except auth_exceptions.RefreshError as exc:
            raise OperationFailedError(f"GCS {action} of {where} failed: Google credentials were refused: "
                                       f"{mask_secrets(exc)}") from exc
        except _Conflict:
            raise
        except Exception as exc:
            if _is_connection_error(exc):
                raise self._unreachable(exc) from exc
            raise

    def _unreachable(self, exc: BaseException) -> ConnectionFailedError:
        return ConnectionFailedError(
            f"cannot reach Google Cloud Storage at {mask_secrets(self.endpoint)}: {mask_secrets(exc)}"
        )

    def _object_lock(self, name: str) -> threading.Lock:
        digest = hashlib.blake2b(f"{self.bucket_name}/{name}".encode(), digest_size=4).digest()
        return _OBJECT_LOCKS[int.from_bytes(digest, "big") % len(_OBJECT_LOCKS)]

    def _until_settled(self, attempt: Callable[[], T], what: str) -> T:
        """Run a read-then-conditional-write until no other writer interferes (jittered backoff)."""
        deadline = time.monotonic() + self.conflict_timeout
        delay = 0.01
        while True:
            try:
                return attempt()
            except _Conflict:
                if time.monotonic() > deadline:
                    raise OperationFailedError(
                        f"GCS {what} in gs://{self.bucket_name}/{self._layout.namespace_prefix} kept conflicting "
                        f"with other writers for {self.conflict_timeout:g}s; try again later"
                    ) from None
            time.sleep(random.uniform(0, delay))
            delay = min(delay * 2, 1.0)

    def _map(self, fn: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """``[fn(item) ...]`` with the requests in flight together (GCS has no multi-object calls)."""
        if len(items) <= 1:
            return [fn(item) for item in items]
        with self._pool_lock:
            self._check_open()
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(self._max_workers,
                                                                   thread_name_prefix="storebridge-gcs")
            futures = [self._pool.submit(fn, item) for item in items]
        return [future.result() for future in futures]


def _is_connection_error(exc: BaseException) -> bool:
    import requests

    return isinstance(exc, (requests.exceptions.ConnectionError, requests.exceptions.Timeout,
                            auth_exceptions.TransportError, ConnectionError, TimeoutError))


def _make_client(project: str | None, endpoint: str | None) -> storage.Client:
    from google.auth.credentials import AnonymousCredentials

    try:
        if endpoint is not None:
            return storage.Client(project=project, credentials=AnonymousCredentials(),
                                  client_options={"api_endpoint": endpoint}, use_auth_w_custom_endpoint=False)
        # Without a project the library infers one (and honours STORAGE_EMULATOR_HOST either way).
        return storage.Client() if project is None else storage.Client(project=project)
    except auth_exceptions.DefaultCredentialsError as exc:
        raise ConfigurationError(
            "no Google credentials found for the GCS state store: run `gcloud auth application-default login`, "
            "set GOOGLE_APPLICATION_CREDENTIALS, pass client=, or use an emulator (STORAGE_EMULATOR_HOST or "
            f"endpoint=): {mask_secrets(exc)}"
        ) from exc


__all__ = ["GCSStateStore"]
