"""The in-process state store: a dict behind a lock, with optional JSON snapshots on disk.

A :class:`MemoryBacking` is one database. Stores opened over the same backing (each with its own
namespace) see one another's data, which is how tests and apps open "a second store over the same
database". Expiry uses ``time.monotonic()`` so clock changes never revive or kill keys early;
snapshots store expiry as wall-clock time, since monotonic clocks mean nothing to another process.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from storebridge.errors import (
    ConfigurationError,
    OperationFailedError,
    SchemaVersionError,
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
)
from storebridge.urls import StoreURL, merge_url_option, parse_url

SNAPSHOT_FORMAT = "storebridge.memory.state"
SNAPSHOT_VERSION = 1
_URL_PARAMS = frozenset({"namespace"})
_URL_SCHEMES = frozenset({"memory", "mem"})  # as registered in storebridge._builtins


@dataclasses.dataclass(slots=True)
class _Entry:
    """A stored value: ``encode_value`` bytes, so the caller's object can change without touching it."""

    value: bytes
    #: ``time.monotonic()`` deadline, or None for no TTL.
    expires_at: float | None = None

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and self.expires_at <= now


def _deadline(ttl: float | None) -> float | None:
    return None if ttl is None else time.monotonic() + ttl


class MemoryBacking:
    """One in-process database shared by any number of :class:`MemoryStateStore` objects.

    With ``snapshot_path`` the whole database (every namespace) is loaded from that JSON file now and
    written back by :meth:`save_snapshot`, so stores over different namespaces never overwrite each
    other's data in the file.
    """

    def __init__(self, snapshot_path: str | os.PathLike[str] | None = None) -> None:
        #: Guards ``namespaces``; every read-modify-write of a store happens under it.
        self.lock = threading.Lock()
        #: namespace -> user key -> entry. Nesting (not a joined prefix) keeps namespaces unambiguous.
        self.namespaces: dict[str, dict[str, _Entry]] = {}
        self.snapshot_path = _abspath(snapshot_path)
        # Serialises whole snapshot writes so an older image can never replace a newer one.
        self._save_lock = threading.Lock()
        if self.snapshot_path is not None:
            _ensure_parent_dir(self.snapshot_path)
            self.namespaces = _load_snapshot(self.snapshot_path)

    def save_snapshot(self) -> None:
        """Write the database to ``snapshot_path`` atomically (no reader ever sees a half-written file)."""
        if self.snapshot_path is None:
            raise ConfigurationError("this memory store has no snapshot_path; pass one to save snapshots")
        with self._save_lock:
            with self.lock:
                payload = _snapshot_payload(self.namespaces)
            _write_atomically(self.snapshot_path, payload)

    def __repr__(self) -> str:
        return f"MemoryBacking(snapshot_path={self.snapshot_path!r})"


class MemoryStateStore(StateStore):
    """A thread-safe in-process state store; persistent across processes only with a snapshot file.

    ``MemoryStateStore("memory:///state.json?namespace=app")`` or keyword arguments. Pass ``data=`` (a
    :class:`MemoryBacking`, e.g. from :meth:`new_backing`) to share one database between stores.
    """

    backend_name = "memory"
    #: Without a snapshot file; each instance replaces this with what its configuration gives.
    capabilities = StateCapabilities(persistent=False, native_ttl=False, atomic_increment=True)

    def __init__(self, url: str | StoreURL | None = None, *, namespace: str = "",
                 snapshot_path: str | os.PathLike[str] | None = None, data: MemoryBacking | None = None) -> None:
        url_namespace, url_snapshot_path = _options_from_url(url) if url is not None else ("", None)
        self.namespace = check_namespace(merge_url_option("namespace", namespace or None, url_namespace or None) or "")
        snapshot_path = merge_url_option("snapshot_path", _abspath(snapshot_path), _abspath(url_snapshot_path))
        if data is None:
            data = MemoryBacking(snapshot_path)
        elif not isinstance(data, MemoryBacking):
            raise ConfigurationError(f"data must be a MemoryBacking (see MemoryStateStore.new_backing()), "
                                     f"got {type(data).__name__}")
        elif snapshot_path is not None and snapshot_path != data.snapshot_path:
            raise ConfigurationError(
                f"snapshot_path {snapshot_path!r} differs from the shared backing's "
                f"({data.snapshot_path!r}); give the path to MemoryBacking(snapshot_path=...) instead"
            )
        self._backing = data
        self._closed = False
        # An instance attribute: a snapshot file makes this store persistent across processes.
        self.capabilities = dataclasses.replace(type(self).capabilities, persistent=data.snapshot_path is not None)

    @staticmethod
    def new_backing(snapshot_path: str | os.PathLike[str] | None = None) -> MemoryBacking:
        """A fresh database to share between several stores via ``data=``."""
        return MemoryBacking(snapshot_path)

    @property
    def snapshot_path(self) -> str | None:
        return self._backing.snapshot_path

    # -- reads ------------------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        key = check_key(key)
        with self._locked_entries() as entries:
            entry = _live_entry(entries, key, time.monotonic())
            stored = None if entry is None else entry.value
        return default if stored is None else decode_value(stored)

    def exists(self, key: str) -> bool:
        key = check_key(key)
        with self._locked_entries() as entries:
            return _live_entry(entries, key, time.monotonic()) is not None

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = check_keys(keys)
        with self._locked_entries() as entries:
            now = time.monotonic()
            found = {key: entry.value for key in wanted if (entry := _live_entry(entries, key, now)) is not None}
        return {key: decode_value(stored) for key, stored in found.items()}

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        with self._locked_entries() as entries:
            _purge_expired(entries, time.monotonic())
            return sorted(key for key in entries if key_matches(key, pattern, prefix))

    def ttl(self, key: str) -> float | None:
        key = check_key(key)
        with self._locked_entries() as entries:
            now = time.monotonic()
            entry = _live_entry(entries, key, now)
            if entry is None or entry.expires_at is None:
                return None
            return entry.expires_at - now

    # -- writes -----------------------------------------------------------------------------------------

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self.set_many({check_key(key): value}, ttl=ttl)

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        ttl = check_ttl(ttl)
        # Encode everything first so a bad value means nothing was written.
        encoded = {check_key(key): encode_value(value) for key, value in items.items()}
        with self._locked_entries() as entries:
            expires_at = _deadline(ttl)
            for key, stored in encoded.items():
                entries[key] = _Entry(stored, expires_at)

    def delete(self, key: str) -> bool:
        return self.delete_many([check_key(key)]) == 1

    def delete_many(self, keys: Iterable[str]) -> int:
        doomed = check_keys(keys)
        with self._locked_entries() as entries:
            now = time.monotonic()
            removed = 0
            for key in doomed:
                if _live_entry(entries, key, now) is not None:
                    del entries[key]
                    removed += 1
            return removed

    def expire(self, key: str, ttl: float | None) -> bool:
        key = check_key(key)
        ttl = check_ttl(ttl)
        with self._locked_entries() as entries:
            entry = _live_entry(entries, key, time.monotonic())
            if entry is None:
                return False
            entry.expires_at = _deadline(ttl)
            return True

    def increment(self, key: str, amount: int | float = 1) -> int | float:
        key = check_key(key)
        amount = check_amount(amount)
        with self._locked_entries() as entries:
            entry = _live_entry(entries, key, time.monotonic())
            result = incremented(key, 0 if entry is None else decode_value(entry.value), amount)
            stored = encode_value(result)
            if entry is None:
                entries[key] = _Entry(stored)
            else:
                entry.value = stored  # keeps the TTL
            return result

    def clear(self) -> int:
        with self._locked_entries() as entries:
            _purge_expired(entries, time.monotonic())
            count = len(entries)
            entries.clear()
            return count

    # -- lifecycle --------------------------------------------------------------------------------------

    def snapshot(self) -> None:
        """Write the whole backing database to the snapshot file now (close() does this too)."""
        self._check_open()
        self._backing.save_snapshot()

    def close(self) -> None:
        """Write the snapshot (if any) and refuse further calls. If the write fails the store stays
        open, so nothing is lost and close() can be retried."""
        if self._closed:
            return
        if self._backing.snapshot_path is not None:
            self._backing.save_snapshot()
        self._closed = True

    def __repr__(self) -> str:
        closed = ", closed" if self._closed else ""
        return f"MemoryStateStore(namespace={self.namespace!r}, snapshot_path={self.snapshot_path!r}{closed})"

    # -- internals --------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError(f"memory state store (namespace {self.namespace!r}) is closed; open a new one")

    def _locked_entries(self) -> _NamespaceLock:
        """Hold the backing's lock and hand over this namespace's entries (after the closed check)."""
        self._check_open()
        return _NamespaceLock(self._backing, self.namespace)


class _NamespaceLock:
    """Context manager: the backing's lock held, yielding the namespace's dict (created on demand)."""

    __slots__ = ("_backing", "_namespace")

    def __init__(self, backing: MemoryBacking, namespace: str) -> None:
        self._backing = backing
        self._namespace = namespace

    def __enter__(self) -> dict[str, _Entry]:
        self._backing.lock.acquire()
        return self._backing.namespaces.setdefault(self._namespace, {})

    def __exit__(self, *exc_info: object) -> None:
        self._backing.lock.release()


def _live_entry(entries: dict[str, _Entry], key: str, now: float) -> _Entry | None:
    """The key's entry if it has not expired; an expired one is dropped on the way (lazy expiry)."""
    entry = entries.get(key)
    if entry is not None and entry.expired(now):
        del entries[key]
        return None
    return entry


def _purge_expired(entries: dict[str, _Entry], now: float) -> None:
    for key in [key for key, entry in entries.items() if entry.expired(now)]:
        del entries[key]


# -- configuration --------------------------------------------------------------------------------------


def _options_from_url(url: str | StoreURL) -> tuple[str, str | None]:
    """``(namespace, snapshot_path)`` from ``memory://`` or ``memory:///path.json?namespace=x``."""
    parsed = parse_url(url)
    if parsed.scheme not in _URL_SCHEMES or parsed.driver:
        raise ConfigurationError(f"not a memory URL: {parsed}; expected memory:// or memory:///snapshot.json")
    if parsed.host or parsed.username or parsed.port is not None:
        raise ConfigurationError(
            f"memory URLs take no host: {parsed}; write the snapshot file as a path, e.g. memory:///state.json"
        )
    unknown = sorted(set(parsed.query) - _URL_PARAMS)
    if unknown:
        raise ConfigurationError(
            f"unknown memory URL option(s) {', '.join(unknown)}; supported: {', '.join(sorted(_URL_PARAMS))}"
        )
    return parsed.query.get("namespace", ""), parsed.file_path or None


def _abspath(path: str | os.PathLike[str] | None) -> str | None:
    return None if path is None else os.path.abspath(os.fspath(path))


# -- snapshot files ---------------------------------------------------------------------------------------


def _ensure_parent_dir(path: str) -> None:
    """Create the snapshot's directory now, so a bad path fails at open and not at close."""
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot create the directory of snapshot file {path!r}: {exc}") from exc


def _snapshot_payload(namespaces: dict[str, dict[str, _Entry]]) -> bytes:
    """The JSON image of the live entries, expiry converted to wall-clock seconds."""
    now_monotonic, now_wall = time.monotonic(), time.time()
    image = {
        namespace: {
            key: {
                "value": base64.b64encode(entry.value).decode("ascii"),
                "expires_at": None if entry.expires_at is None else now_wall + (entry.expires_at - now_monotonic),
            }
            for key, entry in entries.items() if not entry.expired(now_monotonic)
        }
        for namespace, entries in namespaces.items()
    }
    document = {"format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "saved_at": now_wall,
                "namespaces": {namespace: entries for namespace, entries in image.items() if entries}}
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def _write_atomically(path: str, payload: bytes) -> None:
    """Temp file in the same directory, fsync, then ``os.replace``: the file is old or new, never torn."""
    directory = os.path.dirname(path)
    try:
        fd, temp_path = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as exc:
        raise OperationFailedError(f"cannot write memory snapshot {path!r}: {exc}") from exc
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temp_path, path)
    except OSError as exc:
        try:
            os.unlink(temp_path)
        except OSError:
            pass
        raise OperationFailedError(f"cannot write memory snapshot {path!r}: {exc}") from exc
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable; best effort, as some platforms cannot open directories."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _load_snapshot(path: str) -> dict[str, dict[str, _Entry]]:
    """Read a snapshot file; a missing file is an empty database, a damaged one an error (never empty)."""
    try:
        with open(path, "rb") as file:
            raw = file.read()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        raise OperationFailedError(f"cannot read memory snapshot {path!r}: {exc}") from exc
    try:
        return _parse_snapshot(raw, path)
    except (ValueError, TypeError, KeyError, AttributeError, binascii.Error) as exc:
        raise OperationFailedError(
            f"memory snapshot {path!r} is corrupt ({type(exc).__name__}: {exc}); restore it from a backup, "
            "or move it aside to start with an empty store"
        ) from exc


def _parse_snapshot(raw: bytes, path: str) -> dict[str, dict[str, _Entry]]:
    document = json.loads(raw)
    if not isinstance(document, dict) or document.get("format") != SNAPSHOT_FORMAT:
        raise ValueError(f"not a {SNAPSHOT_FORMAT} file")
    version = document["version"]
    if not isinstance(version, int) or version > SNAPSHOT_VERSION:
        raise SchemaVersionError(
            f"memory snapshot {path!r} has format version {version!r}; this storebridge reads up to "
            f"{SNAPSHOT_VERSION}, upgrade storebridge to open it"
        )
    now_monotonic, now_wall = time.monotonic(), time.time()
    namespaces: dict[str, dict[str, _Entry]] = {}
    for namespace, entries in document["namespaces"].items():
        check_namespace(namespace)
        loaded = namespaces[namespace] = {}
        for key, record in entries.items():
            value = base64.b64decode(record["value"], validate=True)
            decode_value(value)  # a value that cannot be read back is corruption, found now and not later
            expires_at = record["expires_at"]
            if expires_at is not None and not isinstance(expires_at, (int, float)):
                raise ValueError(f"expires_at of key {key!r} is not a number")
            if expires_at is not None and expires_at <= now_wall:
                continue  # expired while the process was down
            loaded[check_key(key)] = _Entry(
                value, None if expires_at is None else now_monotonic + (expires_at - now_wall)
            )
    return namespaces
