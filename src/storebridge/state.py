"""The state interface: keys to values with TTL, namespaced so several apps can share one server.

Values are ``str``, ``bytes`` or JSON-serialisable objects and come back as the type they went in
(JSON arrays come back as lists). A key past its TTL is never returned, whatever the engine's own
lazy expiry does. ``clear()`` removes only this store's namespace.
"""

from __future__ import annotations

import fnmatch
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ._base import AsyncStore, SyncStore
from .bridge import derive_async, derive_sync
from .errors import InvalidIdentifierError, ValidationError


@dataclass(frozen=True)
class StateCapabilities:
    persistent: bool = True
    #: The engine expires keys itself (reads still filter expired keys).
    native_ttl: bool = False
    #: ``increment`` is atomic across processes, not only threads.
    atomic_increment: bool = True


OPERATIONS = (
    "get", "set", "delete", "exists", "get_many", "set_many", "delete_many", "keys", "ttl", "expire",
    "increment", "clear", "close",
)

_STR, _BYTES, _JSON = b"s", b"b", b"j"


def encode_value(value: Any) -> bytes:
    """A tagged byte encoding that brings back str, bytes and JSON values as their own type."""
    if isinstance(value, str):
        try:
            return _STR + value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise ValidationError(f"state string values must be valid Unicode text: {exc}") from None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _BYTES + bytes(value)
    try:
        return _JSON + json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValidationError(f"state values must be str, bytes or JSON-serialisable: {exc}") from None


def decode_value(data: bytes) -> Any:
    tag, body = data[:1], data[1:]
    if tag == _STR:
        return body.decode("utf-8")
    if tag == _BYTES:
        return body
    if tag == _JSON:
        return json.loads(body)
    raise ValidationError(f"stored value has an unknown encoding tag {tag!r}")


def check_ttl(ttl: float | None) -> float | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not math.isfinite(ttl) or ttl <= 0:
        raise ValidationError(f"ttl must be a positive number of seconds or None, got {ttl!r}")
    return float(ttl)


def check_key(key: Any) -> str:
    if not isinstance(key, str) or not key:
        raise ValidationError(f"state keys must be non-empty strings, got {key!r}")
    if "\x00" in key:
        raise ValidationError("state keys must not contain NUL characters")
    try:
        key.encode("utf-8")
    except UnicodeEncodeError:
        raise ValidationError("state keys must be valid Unicode text (this one has a lone surrogate)") from None
    return key


def check_amount(amount: Any) -> int | float:
    if isinstance(amount, bool) or not isinstance(amount, (int, float)) or not math.isfinite(amount):
        raise ValidationError(f"increment amount must be a finite number, got {amount!r}")
    return amount


_NAMESPACE_RE = re.compile(r"^[\w.\-:/]{0,128}$")


def check_namespace(namespace: str) -> str:
    """Namespaces prefix every key; they are plain identifiers (no glob characters)."""
    if not isinstance(namespace, str) or not _NAMESPACE_RE.fullmatch(namespace):
        raise InvalidIdentifierError(
            f"invalid namespace {namespace!r}: use letters, digits and _ . - : / (at most 128 characters)"
        )
    return namespace


def check_keys(keys: Iterable[str]) -> list[str]:
    """Validated, de-duplicated keys in first-seen order. A bare string is refused: iterating it would
    silently treat each character as a key."""
    if isinstance(keys, (str, bytes)):
        raise ValidationError(f"expected an iterable of keys, got a single {type(keys).__name__}; wrap it in a list")
    return list(dict.fromkeys(check_key(key) for key in keys))


def incremented(key: str, current: Any, amount: int | float) -> int | float:
    """``current + amount`` with the one set of type rules every store follows: a missing key counts as 0
    (pass 0), int + int stays int, anything with a float is a float, bools and non-numbers are refused,
    and so is a float overflow."""
    if isinstance(current, bool) or not isinstance(current, (int, float)):
        raise ValidationError(
            f"cannot increment state key {key!r}: its value is a {type(current).__name__}, not a number"
        )
    try:
        result = current + amount
    except OverflowError:
        result = math.inf
    if isinstance(result, float) and not math.isfinite(result):
        raise ValidationError(f"incrementing state key {key!r} by {amount!r} overflows a float")
    return result


_GLOB_CHARS = "*?["


def scan_prefix(pattern: str | None, prefix: str | None) -> str:
    """The longest literal prefix every key matching ``pattern`` (a glob) and ``prefix`` starts with:
    engines narrow their scan with it, then confirm each key with :func:`key_matches`."""
    literal = None
    if pattern is not None:
        end = next((i for i, char in enumerate(pattern) if char in _GLOB_CHARS), len(pattern))
        literal = pattern[:end]
    return max((p for p in (prefix, literal) if p), key=len, default="")


def key_matches(key: str, pattern: str | None, prefix: str | None) -> bool:
    """The one definition of ``keys(pattern, prefix=)``: fnmatch-style glob (case-sensitive) and/or prefix."""
    if prefix is not None and not key.startswith(prefix):
        return False
    return pattern is None or fnmatch.fnmatchcase(key, pattern)


class StateStore(SyncStore, ABC):
    """Sync state store. Implement the abstract methods; the async face is derived."""

    capabilities: StateCapabilities = StateCapabilities()

    @abstractmethod
    def get(self, key: str, default: Any = None) -> Any:
        """The value, or ``default`` if the key is missing or expired."""

    @abstractmethod
    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """Store a value, replacing any old one (and its TTL). ``ttl`` in seconds."""

    @abstractmethod
    def delete(self, key: str) -> bool:
        """Remove a key; False if it did not exist."""

    @abstractmethod
    def exists(self, key: str) -> bool: ...

    @abstractmethod
    def get_many(self, keys: Iterable[str]) -> dict[str, Any]:
        """Values of the keys that exist (missing and expired keys are left out)."""

    @abstractmethod
    def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None: ...

    @abstractmethod
    def delete_many(self, keys: Iterable[str]) -> int:
        """Remove keys; returns how many existed."""

    @abstractmethod
    def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]:
        """Live keys matching a glob ``pattern`` (``*``, ``?``, ``[abc]``) and/or a ``prefix``, sorted."""

    @abstractmethod
    def ttl(self, key: str) -> float | None:
        """Seconds until the key expires; None if it has no TTL or does not exist (see ``exists``)."""

    @abstractmethod
    def expire(self, key: str, ttl: float | None) -> bool:
        """Set (or with None, remove) a key's TTL; False if the key does not exist."""

    @abstractmethod
    def increment(self, key: str, amount: int | float = 1) -> int | float:
        """Add ``amount`` to a numeric value atomically (a missing key counts as 0) and return the new
        value. The key keeps its TTL. A non-numeric value raises ``ValidationError``."""

    @abstractmethod
    def clear(self) -> int:
        """Delete every key of this store's namespace (nothing else); returns how many."""


class AsyncStateStore(AsyncStore, ABC):
    """Async state store: the same methods as :class:`StateStore`, awaited."""

    capabilities: StateCapabilities = StateCapabilities()

    @abstractmethod
    async def get(self, key: str, default: Any = None) -> Any: ...

    @abstractmethod
    async def set(self, key: str, value: Any, *, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def delete(self, key: str) -> bool: ...

    @abstractmethod
    async def exists(self, key: str) -> bool: ...

    @abstractmethod
    async def get_many(self, keys: Iterable[str]) -> dict[str, Any]: ...

    @abstractmethod
    async def set_many(self, items: Mapping[str, Any], *, ttl: float | None = None) -> None: ...

    @abstractmethod
    async def delete_many(self, keys: Iterable[str]) -> int: ...

    @abstractmethod
    async def keys(self, pattern: str | None = None, *, prefix: str | None = None) -> list[str]: ...

    @abstractmethod
    async def ttl(self, key: str) -> float | None: ...

    @abstractmethod
    async def expire(self, key: str, ttl: float | None) -> bool: ...

    @abstractmethod
    async def increment(self, key: str, amount: int | float = 1) -> int | float: ...

    @abstractmethod
    async def clear(self) -> int: ...


StateStore._async_face = derive_async(AsyncStateStore, OPERATIONS)
AsyncStateStore._sync_face = derive_sync(StateStore, OPERATIONS)

__all__ = [
    "AsyncStateStore",
    "StateCapabilities",
    "StateStore",
    "check_amount",
    "check_key",
    "check_keys",
    "check_namespace",
    "check_ttl",
    "decode_value",
    "encode_value",
    "incremented",
    "key_matches",
    "scan_prefix",
]
