"""storebridge: one registry for knowledge (vector), conversation (chat history) and state (key-value)
stores, each usable sync and async, and plugged both ways into LangChain and LlamaIndex.

    import storebridge
    store = storebridge.db()                      # embedded SQLite defaults, zero config
    store.conversation.add_message("s1", storebridge.ConversationMessage(role="user", content="hi"))

``import storebridge`` imports no backend client library: backends load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import _builtins
from .conversation import AsyncConversationStore, ConversationCapabilities, ConversationStore
from .errors import *
from .errors import __all__ as _error_names
from .filters import parse_filter
from .knowledge import AsyncKnowledgeStore, KnowledgeCapabilities, KnowledgeStore
from .models import (
    CollectionInfo,
    ConversationMessage,
    ConversationSession,
    Distance,
    DocumentPage,
    KnowledgeDocument,
    SearchHit,
)
from .registry import BackendSpec, Kind, PluginConflictWarning, StoreRegistry
from .state import AsyncStateStore, StateCapabilities, StateStore

if TYPE_CHECKING:
    from .database import Database, connect, connect_async, db
    from .embedders import Embedder, HashEmbedder, as_embedder

__version__ = "0.1.0"

KNOWLEDGE_STORES = StoreRegistry("knowledge", "storebridge.knowledge_stores", _builtins.KNOWLEDGE)
CONVERSATION_STORES = StoreRegistry("conversation", "storebridge.conversation_stores", _builtins.CONVERSATION)
STATE_STORES = StoreRegistry("state", "storebridge.state_stores", _builtins.STATE)


def registries() -> dict[Kind, StoreRegistry]:
    """The three registries by kind."""
    return {"knowledge": KNOWLEDGE_STORES, "conversation": CONVERSATION_STORES, "state": STATE_STORES}


_LAZY = {
    "Database": "database", "db": "database", "connect": "database", "connect_async": "database",
    "Embedder": "embedders", "HashEmbedder": "embedders", "as_embedder": "embedders",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'storebridge' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "AsyncConversationStore",
    "AsyncKnowledgeStore",
    "AsyncStateStore",
    "BackendSpec",
    "CONVERSATION_STORES",
    "CollectionInfo",
    "ConversationCapabilities",
    "ConversationMessage",
    "ConversationSession",
    "ConversationStore",
    "Database",
    "Distance",
    "DocumentPage",
    "Embedder",
    "HashEmbedder",
    "KNOWLEDGE_STORES",
    "KnowledgeCapabilities",
    "KnowledgeDocument",
    "KnowledgeStore",
    "PluginConflictWarning",
    "STATE_STORES",
    "SearchHit",
    "StateCapabilities",
    "StateStore",
    "StoreRegistry",
    "as_embedder",
    "connect",
    "connect_async",
    "db",
    "parse_filter",
    "registries",
    *_error_names,
]
