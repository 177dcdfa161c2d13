"""A storebridge state store over any LangChain ``BaseStore[str, bytes]`` (``InMemoryByteStore``, a
Redis or file byte store...): registry name ``langchain``.

Layout in the wrapped store. Every key of namespace ``ns`` lives under ``sb:<len(ns)>:<ns>:``, with the
value at ``...v:<key>`` (storebridge's tagged encoding, so str/bytes/JSON come back as their type) and,
for a key with a TTL, the wall-clock expiry in a sidecar key ``...t:<key>``. The length in the prefix
keeps namespaces ``a`` and ``a:x`` apart. Expiry is filtered on every read and expired keys are removed
lazily; wall-clock time is used because the sidecar must mean the same to another process.

Honest limits, declared in :attr:`capabilities`: ``increment`` is a read-modify-write under a lock shared
by the store objects of this process over the same wrapped store, so it is atomic across threads but
not across processes (``atomic_increment=False``); there is no native TTL. Keys reach the wrapped
store as they are: use a wrapped store that accepts any string key (``LocalFileStore`` does not).
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from langchain_core.stores import BaseStore

from storebridge.errors import ConfigurationError, StoreClosedError, ValidationError
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

_LOCKS: weakref.WeakKeyDictionary[Any, threading.RLock] = weakref.WeakKeyDictionary()
_LOCKS_GUARD = threading.Lock()


def _lock_for(store: Any) -> threading.RLock:
    """One lock per wrapped store object, shared by every storebridge store over it in this process."""
    with _LOCKS_GUARD:
        try:
            lock = _LOCKS.get(store)
            if lock is None:
                lock = _LOCKS[store] = threading.RLock()
            return lock
        except TypeError:  # not weak-referenceable: a lock of its own (atomic within this store object)
            return threading.RLock()


class LangChainStateStore(StateStore):
    """State (keys to values, TTL, namespaces) kept in a LangChain ``BaseStore[str, bytes]``.

    ``persistent`` says whether the wrapped store outlives this object (an ``InMemoryByteStore`` shared
    by several store objects does, a private one does not); it is what :attr:`capabilities` declares.
    """

    backend_name = "langchain"
    capabilities = StateCapabilities(persistent=False, native_ttl=False, atomic_increment=False)

    def __init__(self, store: BaseStore[str, bytes], *, namespace: str = "", persistent: bool = False) -> None:
        if not isinstance(store, BaseStore):
            raise ConfigurationError(f"expected a LangChain BaseStore[str, bytes], got {type(store).__name__}")
        self.store = store
        self.namespace = check_namespace(namespace)
        self._prefix = f"sb:{len(self.namespace)}:{self.namespace}:"
        self._lock = _lock_for(store)
        self._closed = False
        self.capabilities = StateCapabilities(persistent=persistent, native_ttl=False, atomic_increment=False)

    def __repr__(self) -> str:
        return f"LangChainStateStore({type(self.store).__name__}, namespace={self.namespace!r})"

    # -- plumbing -------------------------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosedError("this LangChain state store was closed; open a new one")

    def _value_key(self, key: str) -> str:
        return f"{self._prefix}v:{key}"

    def _ttl_key(self, key: str) -> str:
        return f"{self._prefix}t:{key}"

    def _read(self, keys: Sequence[str]) -> dict[str, tuple[bytes, float | None]]:
        """The live ``(value, expires_at)`` of each key that exists; expired ones are deleted on the way."""
        self._check_open()
        if not keys:
            return {}
        raw = self.store.mget([self._value_key(k) for k in keys] + [self._ttl_key(k) for k in keys])
        now = time.time()
        live: dict[str, tuple[bytes, float | None]] = {}
        expired: list[str] = []
        for key, value, deadline in zip(keys, raw[:len(keys)], raw[len(keys):]):
            expires_at = None if deadline is None else float(deadline.decode("ascii"))
            if value is None:
                if expires_at is not None:
                    expired.append(self._ttl_key(key))  # an orphaned sidecar: tidy it up
            elif expires_at is not None and expires_at <= now:
                expired += [self._value_key(key), self._ttl_key(key)]
            else:
                live[key] = (value, expires_at)
        if expired:
            self.store.mdelete(expired)
        return live

    def _write(self, items: Mapping[str, bytes], ttl: float | None) -> None:
        """Write encoded values; a TTL writes the sidecar in the same call, no TTL removes it."""
        pairs = [(self._value_key(k), v) for k, v in items.items()]
        if ttl is not None:
            expires_at = repr(time.time() + ttl).encode("ascii")
            pairs += [(self._ttl_key(k), expires_at) for k in items]
        self.store.mset(pairs)
        if ttl is None:
            self.store.mdelete([self._ttl_key(k) for k in items])

    def _all_keys(self) -> list[str]:
        self._check_open()
        prefix = self._prefix + "v:"
        return [key[len(prefix):] for key in self.store.yield_keys(prefix=prefix)]

    # -- reads ----------------------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        found = self._read([check_key(key)])
        return decode_value(found[key][0]) if key in found else default

    def exists(self, key: str) -> bool:
        return check_key(key) in self._read([key])

    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        wanted = check_keys(keys)
        return {key: decode_value(value) for key, (value, _) in self._read(wanted).items()}

    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        candidates = [key for key in self._all_keys() if key_matches(key, pattern, prefix)]
        return sorted(self._read(candidates))

    def ttl(self, key: str) -> float | None:
        found = self._read([check_key(key)])
        if key not in found or found[key][1] is None:
            return None
        return max(0.0, found[key][1] - time.time())  # type: ignore[operator]

    # -- writes ---------------------------------------------------------------------------------------

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        self.set_many({check_key(key): value}, ttl=ttl)

    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None:
        if not isinstance(items, Mapping):
            raise ValidationError(f"set_many takes a mapping of keys to values, got {type(items).__name__}")
        ttl = check_ttl(ttl)
        encoded = {check_key(key): encode_value(value) for key, value in items.items()}  # all or nothing
        self._check_open()
        if encoded:
            with self._lock:
                self._write(encoded, ttl)

    def delete(self, key: str) -> bool:
        return self.delete_many([check_key(key)]) == 1

    def delete_many(self, keys: Iterable[str]) -> int:
        doomed = check_keys(keys)
        with self._lock:
            live = self._read(doomed)
            if live:
                self.store.mdelete([self._value_key(k) for k in live] + [self._ttl_key(k) for k in live])
        return len(live)

    def expire(self, key: str, ttl: float | None) -> bool:
        key, ttl = check_key(key), check_ttl(ttl)
        with self._lock:
            found = self._read([key])
            if key not in found:
                return False
            self._write({key: found[key][0]}, ttl)
        return True

    def increment(self, key: str, amount: float = 1) -> int | float:
        """Read, add, write under the shared lock: atomic across this process's threads only."""
        key, amount = check_key(key), check_amount(amount)
        with self._lock:
            found = self._read([key])
            result = incremented(key, decode_value(found[key][0]) if key in found else 0, amount)
            if key in found and found[key][1] is not None:
                self.store.mset([(self._value_key(key), encode_value(result))])  # keeps the sidecar TTL
            else:
                self._write({key: encode_value(result)}, None)
        return result

    def clear(self) -> int:
        with self._lock:
            keys = self._all_keys()
            live = self._read(keys)
            sidecars = [key[len(self._prefix) + 2:] for key in self.store.yield_keys(prefix=self._prefix + "t:")]
            doomed = [self._value_key(k) for k in keys] + [self._ttl_key(k) for k in sidecars]
            if doomed:
                self.store.mdelete(doomed)
        return len(live)

    def close(self) -> None:
        """Mark this object closed; the wrapped store is the caller's and stays as it is."""
        self._closed = True


__all__ = ["LangChainStateStore"]
