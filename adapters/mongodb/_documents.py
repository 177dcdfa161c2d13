"""The pure half of the MongoDB state stores, shared by the sync and the async class: URL and options,
the document layout, every filter and update they send, the increment's compare-and-set plan and
the error translation. Nothing here does I/O, so all of it is unit-tested without a server.

Document layout (one collection, shared by every namespace)::

    {_id: {ns: <namespace>, k: <key>},   # unique per namespace + key; upserts match on it
     ns: <namespace>, k: <key>,          # for the {ns: 1, k: 1} index behind keys() and clear()
     v: <BinData: encode_value(value)>,
     expires_at: <date>}                 # absent: no TTL; a TTL index (expireAfterSeconds=0) on it
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from bson.codec_options import CodecOptions
from pymongo import IndexModel, ReadPreference, ReplaceOne
from pymongo import errors as mongo_errors

from storebridge.errors import (
    ConfigurationError,
    ConnectionFailedError,
    InvalidIdentifierError,
    OperationFailedError,
    StorebridgeError,
    ValidationError,
)
from storebridge.state import check_key, check_ttl, decode_value, encode_value, scan_prefix
from storebridge.state import incremented as add_amount
from storebridge.urls import mask_secrets, merge_url_option

DEFAULT_URI = "mongodb://localhost:27017"
DEFAULT_DATABASE = "storebridge"
DEFAULT_COLLECTION = "storebridge_state"
#: Schemes the stores accept; ``+async`` only picks the async backend in the registry.
DRIVER_SCHEMES = {"mongodb": "mongodb", "mongodb+srv": "mongodb+srv", "mongodb+async": "mongodb"}
_OUR_URL_OPTIONS = frozenset({"collection", "namespace"})

KEYS_INDEX = IndexModel([("ns", 1), ("k", 1)], name="storebridge_state_ns_k")
#: MongoDB's TTL monitor deletes a document once ``expires_at`` is past (it runs every 60 s).
TTL_INDEX = IndexModel([("expires_at", 1)], name="storebridge_state_expires_at", expireAfterSeconds=0)
INDEXES = [KEYS_INDEX, TTL_INDEX]
#: Datetimes come back timezone-aware whatever the caller's client says; reads always go to the
#: primary, so the next read from any store object sees a write.
COLLECTION_OPTIONS: dict[str, Any] = {
    "codec_options": CodecOptions(tz_aware=True, tzinfo=timezone.utc),
    "read_preference": ReadPreference.PRIMARY,
}

#: Keys per ``$in`` query; far below the 16 MB limit of a query document.
CHUNK = 1000
#: BSON's document limit, less room for the other fields.
MAX_DOCUMENT_BYTES = 16 * 1024 * 1024
_DATABASE_FORBIDDEN = re.compile(r'[/\\. "$*<>:|?\x00]')


# -- options --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MongoOptions:
    #: What the driver gets (secrets included): our own options removed, ``+async`` dropped.
    driver_uri: str = DEFAULT_URI
    database: str = DEFAULT_DATABASE
    collection: str = DEFAULT_COLLECTION
    namespace: str = ""
    #: The host list, for messages (never the user name or password).
    hosts: str = "localhost:27017"
    password: str | None = None

    def __repr__(self) -> str:
        return (f"MongoOptions(hosts={self.hosts!r}, database={self.database!r}, collection={self.collection!r}, "
                f"namespace={self.namespace!r})")


_URI_RE = re.compile(r"^(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<netloc>[^/?#]*)(?P<path>/[^?#]*)?"
                     r"(?:\?(?P<query>[^#]*))?$")


def split_uri(url: str) -> tuple[str, str, str, list[tuple[str, str]]]:
    """``(scheme, netloc, database, raw query pairs)`` of a MongoDB connection string.

    Not :func:`storebridge.urls.parse_url`: a replica-set URI lists several ``host:port`` pairs,
    which is not a URL authority, and the driver's own options must reach it byte for byte (their
    values keep their escaping; only our ``collection``/``namespace`` options are taken out).
    """
    match = _URI_RE.match(url) if isinstance(url, str) else None
    if match is None:
        raise ConfigurationError(
            f"not a MongoDB URL: {mask_secrets(url)!r}; expected mongodb://[user:password@]host[:port][,...]/database"
        )
    scheme = match["scheme"].lower()
    if scheme not in DRIVER_SCHEMES:
        raise ConfigurationError(
            f"not a MongoDB URL: {mask_secrets(url)!r}; the scheme must be one of {sorted(DRIVER_SCHEMES)}"
        )
    pairs: list[tuple[str, str]] = []
    for part in re.split(r"[&;]", match["query"] or ""):
        if part:
            name, _, value = part.partition("=")
            pairs.append((name, value))
    return scheme, match["netloc"], unquote((match["path"] or "/")[1:]), pairs


def resolve_options(url: str | None, *, database: str | None, collection: str | None,
                    namespace: str | None) -> MongoOptions:
    """Merge ``mongodb://.../<database>?collection=...&namespace=...`` with the explicit arguments."""
    if url is None:
        return MongoOptions(database=check_database_name(database or DEFAULT_DATABASE),
                            collection=check_collection_name(collection or DEFAULT_COLLECTION),
                            namespace=namespace or "")
    scheme, netloc, url_database, pairs = split_uri(url)
    ours = {unquote(name): unquote(value) for name, value in pairs if unquote(name) in _OUR_URL_OPTIONS}
    driver_query = "&".join(f"{name}={value}" for name, value in pairs if unquote(name) not in _OUR_URL_OPTIONS)
    userinfo, _, hosts = netloc.rpartition("@")
    password = unquote(userinfo.partition(":")[2]) if ":" in userinfo else None
    if not hosts:
        raise ConfigurationError(f"MongoDB URL {mask_secrets(url, password)!r} names no host")
    path = url.split("://", 1)[1][len(netloc):].split("?", 1)[0] or "/"
    driver_uri = f"{DRIVER_SCHEMES[scheme]}://{netloc}{path}" + (f"?{driver_query}" if driver_query else "")
    return MongoOptions(
        driver_uri=driver_uri,
        database=check_database_name(merge_url_option("database", database, url_database or None) or DEFAULT_DATABASE),
        collection=check_collection_name(merge_url_option("collection", collection, ours.get("collection")) or DEFAULT_COLLECTION),
        namespace=merge_url_option("namespace", namespace or None, ours.get("namespace") or None) or "",
        hosts=hosts,
        password=password,
    )


def check_database_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name.encode("utf-8", "replace")) > 63 \
            or _DATABASE_FORBIDDEN.search(name):
        raise InvalidIdentifierError(
            f"invalid MongoDB database name {name!r}: 1 to 63 bytes, none of / \\ . \" $ * < > : | ? space or NUL"
        )
    return name


def check_collection_name(name: str) -> str:
    if (not isinstance(name, str) or not name or "$" in name or "\x00" in name or name.startswith(("system.", "."))
            or name.endswith(".") or len(name.encode("utf-8", "replace")) > 200):
        raise InvalidIdentifierError(
            f"invalid MongoDB collection name {name!r}: 1 to 200 bytes, no '$' or NUL, not 'system.*', "
            "no leading or trailing dot"
        )
    return name


# -- keys, time and documents ---------------------------------------------------------------------------


def check_text(text: Any, what: str) -> str:
    """A str BSON can hold: valid UTF-8 (Python strings may carry lone surrogates)."""
    if not isinstance(text, str):
        raise ValidationError(f"{what} must be a string, got {text!r}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError(f"{what} {text!r} is not valid Unicode (it contains a lone surrogate)") from None
    return text


def chunks(items: Sequence[str], size: int = CHUNK) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def as_utc(moment: datetime) -> datetime:
    """Aware UTC; a naive datetime from BSON is UTC already."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def expires_at(ttl: float | None, now: datetime) -> datetime | None:
    ttl = check_ttl(ttl)
    return None if ttl is None else now + timedelta(seconds=ttl)


def doc_id(namespace: str, key: str) -> dict[str, str]:
    return {"ns": namespace, "k": key}


def document(namespace: str, key: str, encoded: bytes, expiry: datetime | None) -> dict[str, Any]:
    """A whole document, checked against BSON's 16 MB limit before anything is sent."""
    size = len(encoded) + 2 * (len(key.encode("utf-8")) + len(namespace)) + 64
    if size > MAX_DOCUMENT_BYTES:
        raise ValidationError(
            f"the value of state key {key!r} is too large for MongoDB: the document would be about {size} bytes, "
            f"over the 16 MB ({MAX_DOCUMENT_BYTES} byte) limit"
        )
    doc: dict[str, Any] = {"_id": doc_id(namespace, key), "ns": namespace, "k": key, "v": encoded}
    if expiry is not None:
        doc["expires_at"] = expiry
    return doc


def replace_ops(namespace: str, items: Mapping[str, Any], expiry: datetime | None) -> list[ReplaceOne]:
    """Upserts of whole documents (a replace drops any old TTL); everything is encoded first, so a
    bad value means nothing is written."""
    docs = [document(namespace, check_key(key), encode_value(value), expiry) for key, value in items.items()]
    return [ReplaceOne({"_id": doc["_id"]}, doc, upsert=True) for doc in docs]


def stored_bytes(doc: Mapping[str, Any]) -> bytes:
    return bytes(doc["v"])


def is_live(doc: Mapping[str, Any], now: datetime) -> bool:
    expiry = doc.get("expires_at")
    return expiry is None or as_utc(expiry) > now


def remaining_ttl(doc: Mapping[str, Any], now: datetime) -> float | None:
    expiry = doc.get("expires_at")
    return None if expiry is None else max(0.0, (as_utc(expiry) - now).total_seconds())


# -- filters --------------------------------------------------------------------------------------------


def live(now: datetime) -> dict[str, Any]:
    """Documents without a TTL or expiring after ``now``. The TTL monitor runs only every 60 s (and
    lags under load), so every read carries this condition."""
    return {"$or": [{"expires_at": None}, {"expires_at": {"$gt": now}}]}


def live_key_filter(namespace: str, key: str, now: datetime) -> dict[str, Any]:
    return {"_id": doc_id(namespace, key), **live(now)}


def live_keys_filter(namespace: str, keys: Sequence[str], now: datetime) -> dict[str, Any]:
    return {"ns": namespace, "k": {"$in": list(keys)}, **live(now)}


def prefix_regex(prefix: str) -> str:
    """An anchored regex matching exactly the strings that start with ``prefix`` (every character
    literal), which MongoDB answers from the ``{ns, k}`` index."""
    return "^" + re.escape(prefix)


def keys_filter(namespace: str, pattern: str | None, prefix: str | None, now: datetime) -> dict[str, Any]:
    """Live keys of the namespace, narrowed by the longest prefix every match must have; the glob
    itself is checked afterwards with ``key_matches`` (one definition for every store)."""
    narrowed = scan_prefix(pattern, prefix)
    query: dict[str, Any] = {"ns": namespace, **live(now)}
    if narrowed:
        query["k"] = {"$regex": prefix_regex(narrowed)}
    return query


def expire_update(expiry: datetime | None) -> dict[str, Any]:
    return {"$unset": {"expires_at": ""}} if expiry is None else {"$set": {"expires_at": expiry}}


# -- increment ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class IncrementPlan:
    """One compare-and-set attempt: ``update_one(filter, update, upsert=upsert)``; it took effect if a
    document matched or was inserted (a duplicate-key error on the upsert means another writer won)."""

    result: int | float
    filter: dict[str, Any]
    update: dict[str, Any]
    upsert: bool


def incremented(key: str, stored: bytes | None, amount: float) -> tuple[int | float, bytes]:
    """The new value (by the core's rules, :func:`storebridge.state.incremented`; a missing key, None,
    counts as 0) and its encoding."""
    result = add_amount(key, 0 if stored is None else decode_value(stored), amount)
    return result, encode_value(result)


def plan_increment(namespace: str, key: str, current: Mapping[str, Any] | None, amount: float,
                   now: datetime) -> IncrementPlan:
    """The write for ``current`` (the document as last read, expired or not, or None).

    A live document is updated only if ``v`` is still the value read and it is still live, so its
    TTL is kept and a concurrent change makes the write miss. A missing or expired key is written
    (without TTL) only if it is still missing or expired: the filter matches an expired document, or
    nothing, in which case the upsert inserts, and fails on the unique ``_id`` if a live one appeared.
    """
    old = stored_bytes(current) if current is not None and is_live(current, now) else None
    result, encoded = incremented(key, old, amount)
    if old is not None:
        return IncrementPlan(result, {**live_key_filter(namespace, key, now), "v": old}, {"$set": {"v": encoded}},
                             upsert=False)
    return IncrementPlan(
        result,
        {"_id": doc_id(namespace, key), "expires_at": {"$lte": now}},
        {"$set": {"ns": namespace, "k": key, "v": encoded}, "$unset": {"expires_at": ""}},
        upsert=True,
    )


def took_effect(matched_count: int, upserted_id: Any) -> bool:
    return matched_count > 0 or upserted_id is not None


def backoff_delay(attempt: int, *, base: float = 0.002, cap: float = 0.2) -> float:
    """Full-jitter exponential backoff between compare-and-set attempts."""
    return random.uniform(0, min(cap, base * (2 ** min(attempt, 16))))


# -- errors ---------------------------------------------------------------------------------------------


def translate_error(exc: BaseException, action: str, options: MongoOptions) -> StorebridgeError:
    """storebridge's typed error for a driver exception (raise it ``from exc``); messages name the
    hosts, never the password."""
    where = f"MongoDB at {options.hosts} ({options.database}.{options.collection})"
    detail = mask_secrets(exc, options.password)
    if isinstance(exc, mongo_errors.DocumentTooLarge):
        return ValidationError(f"{action}: a value is too large for {where}: {detail}")
    if isinstance(exc, (mongo_errors.ConnectionFailure, mongo_errors.ServerSelectionTimeoutError)):
        return ConnectionFailedError(f"cannot reach {where} during {action}: {detail}")
    if isinstance(exc, (mongo_errors.ConfigurationError, mongo_errors.InvalidURI)):
        return ConfigurationError(f"bad MongoDB configuration for {options.hosts}: {detail}")
    return OperationFailedError(f"MongoDB {action} on {where} failed: {detail}")


DuplicateKeyError = mongo_errors.DuplicateKeyError
PyMongoError = mongo_errors.PyMongoError

__all__ = [
    "COLLECTION_OPTIONS",
    "DEFAULT_COLLECTION",
    "DEFAULT_DATABASE",
    "INDEXES",
    "IncrementPlan",
    "MongoOptions",
    "backoff_delay",
    "document",
    "expire_update",
    "expires_at",
    "incremented",
    "keys_filter",
    "live",
    "live_key_filter",
    "live_keys_filter",
    "plan_increment",
    "prefix_regex",
    "replace_ops",
    "resolve_options",
    "split_uri",
    "translate_error",
]
