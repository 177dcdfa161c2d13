"""Zero-config entry points: ``db()`` bundles a conversation, a knowledge and a state store, and
``connect()`` opens one store from a URL.

With no URL (and no ``STOREBRIDGE_*_URL`` environment variable) every store is the embedded SQLite
default in one local file: ``$STOREBRIDGE_DB`` or ``./.storebridge/storebridge.db``.
"""

from __future__ import annotations

import os
import threading
from types import TracebackType
from typing import Any

from . import registries
from .conversation import AsyncConversationStore, ConversationStore
from .errors import ConfigurationError
from .knowledge import AsyncKnowledgeStore, KnowledgeStore
from .registry import KINDS, Kind, StoreRegistry
from .state import AsyncStateStore, StateStore
from .urls import mask_secrets, parse_url

ENV_URLS: dict[Kind, str] = {
    "conversation": "STOREBRIDGE_CONVERSATION_URL",
    "knowledge": "STOREBRIDGE_KNOWLEDGE_URL",
    "state": "STOREBRIDGE_STATE_URL",
}


def _registry(kind: Kind) -> StoreRegistry:
    if kind not in KINDS:
        raise ConfigurationError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
    return registries()[kind]


def infer_kind(url: str) -> Kind:
    """The kind whose registry alone handles this URL's scheme; ambiguous schemes need ``kind=``."""
    parsed = parse_url(url)
    kinds = [k for k in KINDS if parsed.full_scheme in _registry(k).scheme_map()
             or parsed.scheme in _registry(k).scheme_map()]
    if len(kinds) == 1:
        return kinds[0]
    if not kinds:
        raise ConfigurationError(f"no backend of any kind handles {mask_secrets(parsed)}")
    raise ConfigurationError(
        f"{parsed.full_scheme}:// URLs serve several kinds ({', '.join(kinds)}); pass kind=..."
    )


def connect(url: str, *, kind: Kind | None = None, **options: Any) -> Any:
    """Open the store a URL names, with the sync interface (``connect("postgresql://...", kind="conversation")``)."""
    return _registry(kind or infer_kind(url)).from_url(url, **options).as_sync()


def connect_async(url: str, *, kind: Kind | None = None, **options: Any) -> Any:
    """Open the store a URL names, with the async interface."""
    return _registry(kind or infer_kind(url)).from_url(url, **options).as_async()


class Database:
    """A conversation, a knowledge and a state store, each built on first use (race-free), each
    from its URL, its ``STOREBRIDGE_*_URL`` environment variable, or the embedded default."""

    def __init__(self, database_url: str | None = None, *, knowledge_url: str | None = None,
                 state_url: str | None = None, path: str | os.PathLike[str] | None = None) -> None:
        self._urls: dict[Kind, str | None] = {
            "conversation": database_url or os.environ.get(ENV_URLS["conversation"]),
            "knowledge": knowledge_url or os.environ.get(ENV_URLS["knowledge"]),
            "state": state_url or os.environ.get(ENV_URLS["state"]),
        }
        self._path = os.fspath(path) if path is not None else None
        self._stores: dict[Kind, Any] = {}
        self._lock = threading.Lock()
        self._closed = False

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={mask_secrets(u) if u else 'embedded'}" for k, u in self._urls.items())
        return f"Database({parts})"

    def _store(self, kind: Kind) -> Any:
        store = self._stores.get(kind)
        if store is not None:
            return store
        with self._lock:
            if self._closed:
                from .errors import StoreClosedError

                raise StoreClosedError("this Database was closed")
            store = self._stores.get(kind)
            if store is None:
                url = self._urls[kind]
                if url:
                    store = _registry(kind).from_url(url)
                else:
                    store = _registry(kind).create("sqlite", path=self._path)
                self._stores[kind] = store
        return store

    @property
    def conversation(self) -> ConversationStore:
        return self._store("conversation").as_sync()  # type: ignore[no-any-return]

    @property
    def knowledge(self) -> KnowledgeStore:
        return self._store("knowledge").as_sync()  # type: ignore[no-any-return]

    @property
    def state(self) -> StateStore:
        return self._store("state").as_sync()  # type: ignore[no-any-return]

    @property
    def async_conversation(self) -> AsyncConversationStore:
        return self._store("conversation").as_async()  # type: ignore[no-any-return]

    @property
    def async_knowledge(self) -> AsyncKnowledgeStore:
        return self._store("knowledge").as_async()  # type: ignore[no-any-return]

    @property
    def async_state(self) -> AsyncStateStore:
        return self._store("state").as_async()  # type: ignore[no-any-return]

    def close(self) -> None:
        with self._lock:
            self._closed = True
            stores, self._stores = list(self._stores.values()), {}
        errors = []
        for store in stores:
            try:
                store.as_sync().close()
            except Exception as exc:  # noqa: BLE001 - close the rest, then raise the first failure
                errors.append(exc)
        if errors:
            raise errors[0]

    def __enter__(self) -> Database:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def db(database_url: str | None = None, *, knowledge_url: str | None = None, state_url: str | None = None,
       path: str | os.PathLike[str] | None = None) -> Database:
    """The three stores in one object; with no arguments, the embedded defaults in one local file."""
    return Database(database_url, knowledge_url=knowledge_url, state_url=state_url, path=path)


__all__ = ["Database", "connect", "connect_async", "db", "infer_kind"]
